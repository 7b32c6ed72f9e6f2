"""multiprocessing children with one start method, and a python subprocess."""
import multiprocessing as mp
import subprocess
import sys


def square(x):
    return x * x


def child_work(q):
    q.put(sum(square(i) for i in range(10)))


def main(method):
    ctx = mp.get_context(method)
    q = ctx.Queue()
    p = ctx.Process(target=child_work, args=(q,), name=f"{method}-child")
    p.start()
    print(q.get())
    p.join()
    subprocess.run([sys.executable, "-c", "def sub(): return 1\nsub()"], check=True)
    return p.exitcode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
