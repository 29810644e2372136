"""MLP epochs on 1 and 2 threads, each in several fresh processes: the spread.

    python bench/thread_spread.py [--processes 6] [--batch-sizes 32 128] [--epochs 2]

Whether a 2-thread team runs in parallel depends on where the scheduler puts
its threads and on what else runs, and that can last a whole process: the same
epoch once took 0.31 s in one process and 1.2 s in the next. One process
proves little, so this starts P fresh processes per (batch size, threads),
taking turns, each training the textbook MLP (784-128-10, relu, softmax, Adam)
on MNIST's 60,000 images for E timed epochs after a short warm-up, and prints
every process's mean epoch, then min / median / max per row and the ratio of
the medians (1 thread / 2 threads: above 1 means 2 threads are faster).
/proc/loadavg is printed before and after: other programs make 2-thread
epochs fall back to 1 thread's speed (docs/09-making-it-fast.md).
"""

import argparse
import os
import statistics
import subprocess
import sys
import time


def child(threads, batch_size, epochs):
    import fromzero as fz
    import textbook_mlp

    x, y = textbook_mlp.mnist()[:2]
    fz.set_num_threads(threads)
    model = textbook_mlp.model(seed=0)
    model.fit(x[:2048], y[:2048], batch_size=batch_size, epochs=1, verbose=0)  # warm-up
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0)
        times.append(time.perf_counter() - start)
    print(sum(times) / len(times))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=6)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--child", type=int, nargs=2, metavar=("THREADS", "BATCH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(*args.child, args.epochs)
        return

    def load():
        return " ".join(open("/proc/loadavg").read().split()[:3])

    print(f"load average before: {load()}; {args.processes} processes per row, "
          f"mean of {args.epochs} epochs each")
    seconds = {}
    for _ in range(args.processes):
        for batch in args.batch_sizes:
            for threads in (1, 2):
                out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", str(threads),
                                      str(batch), "--epochs", str(args.epochs)],
                                     capture_output=True, text=True, check=True).stdout
                seconds.setdefault((batch, threads), []).append(float(out.split()[-1]))
    print(f"\n{'batch':>5} {'threads':>7} {'min':>7} {'median':>7} {'max':>7}  each process (s)")
    for batch in args.batch_sizes:
        for threads in (1, 2):
            s = seconds[(batch, threads)]
            print(f"{batch:>5} {threads:>7} {min(s):>7.3f} {statistics.median(s):>7.3f} {max(s):>7.3f}  "
                  + " ".join(f"{t:.3f}" for t in s))
        one, two = (statistics.median(seconds[(batch, t)]) for t in (1, 2))
        print(f"{batch:>5}   1 thread / 2 threads (medians): {one / two:.2f}×")
    print(f"\nload average after: {load()}")


if __name__ == "__main__":
    main()
