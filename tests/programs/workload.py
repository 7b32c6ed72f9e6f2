"""Threads, generators, coroutines and exceptions: everything a run must balance."""
import asyncio
import sys
import threading


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def numbers(n):
    for i in range(n):
        yield fib(i)


async def child(i):
    await asyncio.sleep(0.001 * i)
    return fib(i)


async def amain():
    return await asyncio.gather(*(child(i) for i in range(5)))


def fails():
    raise KeyError("handled")


def worker():
    total = sum(numbers(10))
    try:
        fails()
    except KeyError:
        pass
    return total


def main():
    threads = [threading.Thread(target=worker, name=f"worker{i}") for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(asyncio.run(amain()))
    print(sys.argv[1:])


if __name__ == "__main__":
    main()
