import sys


def leave(code):
    print("stdout stays the program's")
    sys.exit(code)


def main():
    assert sys.argv[1:] == ["a", "--b"], sys.argv
    leave(int(sys.argv[0] and 3))


main()
