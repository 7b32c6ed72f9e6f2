def inner():
    raise ValueError("boom from the program")


def outer():
    inner()


outer()
