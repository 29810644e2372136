"""fromzero vs NumPy vs PyTorch, side by side, in one table.

    python bench/compare.py [--threads N] [--repeat R] [--markdown] [--cases REGEX]
                            [--epoch-processes P] [--epochs E]

Runs the comparisons of bench/comparisons.py (the same ones the pytest
benchmarks run) with every engine pinned to N threads, and prints for each
operation the best time of R repeats per engine, the ratios (NumPy/fromzero
and PyTorch/fromzero: above 1 means fromzero is faster) and, for GEMMs,
GFLOP/s. Then one epoch of the MNIST MLP per engine, with the test accuracy
each reaches after that epoch: each engine trains in P fresh processes of its
own (bench/epoch_child.py says why), taking turns, and the table gives the
median of the processes' best epochs and their spread. Last, the peak memory
of this process. With --epochs E, also each engine's time for each of E
consecutive epochs of one model, all in this process (do they stay flat, or
drift, e.g. as denormal floats accumulate?).

Why best-of: with 2 threads on 2 cores, anything else that runs on the
machine stalls a parallel region, so timings wander by 20–40 %; the fastest
repeat is the one least disturbed. Engines take turns within each repeat, so
a slow spell hits all of them alike, and each repeat starts with the next
engine in turn: NumPy's BLAS threads keep spinning for tens of ms after a
call, so the engine timed right after NumPy loses part of a core — with a
fixed order, always the same one (PyTorch). (Repeats of 10 ms instead of
0.1 s were tried: then that spin reached every repeat, and the GEMM rows of
both other engines halved.) Progress goes to stderr, the tables to stdout.
"""

import argparse
import datetime
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

import comparisons
import fromzero as fz
from threads import bench_threads, pin_threads

ENGINE_TITLES = {"fromzero": "fromzero", "numpy": "NumPy", "torch": "PyTorch"}
SECONDS_PER_REPEAT = 0.1  # each repeat loops a call at least this long
DEFAULT_REPEATS = 5
EPOCHS_PER_PROCESS = 2    # MLP epochs per fresh process; the best counts


def timed(call, loops):
    """Seconds that `loops` calls take."""
    start = time.perf_counter()
    for _ in range(loops):
        call()
    return time.perf_counter() - start


def loops_per_repeat(call):
    """How many calls fill SECONDS_PER_REPEAT (doubling until they do)."""
    loops = 1
    while timed(call, loops) < SECONDS_PER_REPEAT:
        loops *= 2
    return loops


def time_case(case, repeat):
    """{engine: best seconds per call} over `repeat` rounds of every engine in
    turn, round r starting with engine r mod (number of engines)."""
    calls = {engine: case.prepare(engine) for engine in case.builders}
    loops = {engine: loops_per_repeat(call) for engine, call in calls.items()}
    engines = list(calls)
    best = dict.fromkeys(engines, float("inf"))
    for r in range(repeat):
        first = r % len(engines)
        for engine in engines[first:] + engines[:first]:
            best[engine] = min(best[engine], timed(calls[engine], loops[engine]) / loops[engine])
    return best


def epoch_series(batch_size, epochs):
    """{engine: [seconds of epoch 1, 2, ..., epochs]} for one model per engine, engines in turn."""
    trainers = {engine: comparisons.epoch_trainer(engine, batch_size)[0]
                for engine in comparisons.ENGINES if comparisons.engine_available(engine)}
    seconds = {engine: [] for engine in trainers}
    for _ in range(epochs):
        for engine, train_one_epoch in trainers.items():
            seconds[engine].append(timed(train_one_epoch, 1))
    return seconds


def time_epochs(batch_size, processes, epochs, threads):
    """({engine: [best seconds per epoch of each process]}, {engine: test accuracy after one epoch}).

    Each engine trains in `processes` fresh processes of its own
    (bench/epoch_child.py), `epochs` epochs each; the engines take turns.
    How fast a 2-thread process runs varies from process to process on a
    virtual machine, so one process per engine proves little.
    """
    engines = [e for e in comparisons.ENGINES if comparisons.engine_available(e)]
    child = os.path.join(os.path.dirname(os.path.abspath(__file__)), "epoch_child.py")
    best, accuracy = {e: [] for e in engines}, {}
    for _ in range(processes):
        for engine in engines:
            out = subprocess.run([sys.executable, child, engine, str(batch_size), str(epochs), str(threads)],
                                 capture_output=True, text=True, check=True).stdout
            result = json.loads(out.splitlines()[-1])
            best[engine].append(min(result["seconds"]))
            accuracy.setdefault(engine, result["accuracy"])
    return best, accuracy


# ---------------------------------------------------------------- formatting

def format_seconds(s):
    if s < 1e-3:
        return f"{s * 1e6:.1f} µs"
    if s < 1:
        return f"{s * 1e3:.2f} ms"
    return f"{s:.2f} s"


def format_ratio(other, fromzero):
    return "—" if other is None else f"{other / fromzero:.2f}×"


def table(headers, rows, markdown):
    """Rows of strings as a Markdown table, or as aligned plain text."""
    if markdown:
        lines = ["| " + " | ".join(headers) + " |",
                 "|" + "|".join([":---"] + ["---:"] * (len(headers) - 1)) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in [headers] + rows) for i in range(len(headers))]

    def line(row):
        return "  ".join([row[0].ljust(widths[0])] +
                         [cell.rjust(w) for cell, w in zip(row[1:], widths[1:])])
    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


def others(engines):
    """The engines compared with fromzero in this run."""
    return [e for e in ("numpy", "torch") if e in engines]


def operation_table(results, engines, markdown):
    """results: [(case, {engine: seconds})] → the table of times, ratios, GFLOP/s."""
    headers = ["operation", "fromzero"]
    for e in others(engines):
        headers += [ENGINE_TITLES[e], f"{ENGINE_TITLES[e]}/fz"]
    show_gflops = any(case.flops for case, _ in results)
    if show_gflops:
        headers += [f"GFLOP/s {ENGINE_TITLES[e]}" for e in engines]
    rows = []
    for case, best in results:
        fz_time = best["fromzero"]
        row = [case.label, format_seconds(fz_time)]
        for e in others(engines):
            t = best.get(e)
            row += ["—" if t is None else format_seconds(t), format_ratio(t, fz_time)]
        if show_gflops:
            row += [f"{case.flops / best[e] / 1e9:.1f}" if e in best else "—" for e in engines]
        rows.append(row)
    return table(headers, rows, markdown)


def epoch_table(results, engines, markdown):
    """results: [(batch, {engine: [s per process]}, {engine: accuracy})] → the median s/epoch
    (min–max over the processes), ratios of the medians, accuracy."""
    headers = ["MLP 784-128-10, 1 epoch", "fromzero"]
    for e in others(engines):
        headers += [ENGINE_TITLES[e], f"{ENGINE_TITLES[e]}/fz"]
    headers += [f"test acc. {ENGINE_TITLES[e]}" for e in engines]

    def cell(seconds):
        return f"{statistics.median(seconds):.3f} s ({min(seconds):.3f}–{max(seconds):.3f})"
    rows = []
    for batch, seconds, accuracy in results:
        fz_median = statistics.median(seconds["fromzero"])
        row = [f"batch {batch}", cell(seconds["fromzero"])]
        for e in others(engines):
            row += [cell(seconds[e]), format_ratio(statistics.median(seconds[e]), fz_median)]
        row += [f"{accuracy[e]:.4f}" for e in engines]
        rows.append(row)
    return table(headers, rows, markdown)


def epoch_series_table(batch, seconds, markdown):
    """seconds: {engine: [s per epoch]} → one row per epoch, one column per engine."""
    engines = list(seconds)
    headers = [f"batch {batch}, epoch"] + [ENGINE_TITLES[e] for e in engines]
    rows = [[str(i + 1)] + [f"{seconds[e][i]:.3f} s" for e in engines]
            for i in range(len(seconds[engines[0]]))]
    return table(headers, rows, markdown)


def machine_header(threads, repeat, pinned, others_busy, markdown):
    """Lines that say where and how the numbers were measured."""
    cpu = "unknown CPU"
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name")), cpu)
    versions = [f"NumPy {np.__version__} ({blas_description()})"]
    if comparisons.torch is not None:
        versions.append(f"PyTorch {comparisons.torch.__version__}")
    lines = [
        f"date: {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}",
        f"machine: {cpu}, {os.cpu_count()} logical cores, Python {sys.version.split()[0]}",
        f"fromzero: {fz.info()}",
        "libraries: " + ", ".join(versions),
        f"threads: {threads} ({', '.join(f'{e} {n}' for e, n in pinned.items())}); "
        f"best of {repeat} repeats",
        f"other processes kept {others_busy:.2f} cores busy on average during the run "
        f"(0 = a quiet machine)",
    ]
    if markdown:
        return "## fromzero benchmark (bench/compare.py)\n\n" + "\n".join(f"- {l}" for l in lines)
    return "\n".join(lines)


def blas_description():
    """NumPy's BLAS, and the CPU kernels it picked at run time (from threadpoolctl)."""
    blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    description = f"{blas['name']} {blas['version']}"
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return description
    kernels = {p.get("architecture") for p in threadpool_info()
               if p["user_api"] == "blas" and p["version"] == blas["version"]}
    return description + "".join(f", {k} kernels" for k in kernels if k)


def busy_cpu_seconds():
    """CPU seconds that all processes together have been busy since boot (Linux /proc/stat)."""
    with open("/proc/stat") as f:
        user, nice, system, idle, iowait, irq, softirq, steal = map(int, f.readline().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds():
    """CPU seconds of this process and of its children that have ended (the epoch processes)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


# ---------------------------------------------------------------- main

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=bench_threads(),
                        help="threads for every engine (default: FROMZERO_BENCH_THREADS or 2)")
    parser.add_argument("--repeat", type=int, default=DEFAULT_REPEATS,
                        help=f"repeats of at least {SECONDS_PER_REPEAT:g} s per engine; the best counts "
                             f"(default {DEFAULT_REPEATS})")
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables")
    parser.add_argument("--cases", metavar="REGEX",
                        help="only the operations whose label matches (e.g. 'softmax|gelu'; "
                             "'epoch' for the MLP epochs)")
    parser.add_argument("--epoch-processes", type=int, default=3,
                        help="fresh processes per engine for the MLP epoch rows (default 3)")
    parser.add_argument("--epochs", type=int, default=0,
                        help="also time E consecutive epochs of one model per engine (default 0: no)")
    args = parser.parse_args(argv)
    if args.threads < 1 or args.repeat < 1 or args.epoch_processes < 1 or args.epochs < 0:
        parser.error("--threads, --repeat and --epoch-processes must be at least 1, --epochs at least 0")

    start = time.perf_counter(), busy_cpu_seconds(), own_cpu_seconds()
    pinned = pin_threads(args.threads)
    engines = [e for e in comparisons.ENGINES if comparisons.engine_available(e)]

    def progress(what):
        print(f"  {what}", file=sys.stderr, flush=True)

    def wanted(label):
        return args.cases is None or re.search(args.cases, label) is not None

    sections = []
    for title, cases in (("GEMM", comparisons.GEMM_CASES),
                         ("Activations, losses, optimizer", comparisons.KERNEL_CASES)):
        results = []
        for case in filter(lambda c: wanted(c.label), cases):
            progress(case.label)
            results.append((case, time_case(case, args.repeat)))
        if results:
            sections.append((title, operation_table(results, engines, args.markdown)))
    epochs = []
    for batch in comparisons.EPOCH_BATCHES:
        if wanted(f"MLP epoch, batch {batch}"):
            progress(f"MLP epoch, batch {batch}")
            epochs.append((batch, *time_epochs(batch, args.epoch_processes, EPOCHS_PER_PROCESS,
                                               args.threads)))
    if epochs:
        sections.append((f"One epoch of the MNIST MLP: the median of {args.epoch_processes} fresh "
                         f"processes per engine (min–max), each the best of {EPOCHS_PER_PROCESS} epochs",
                         epoch_table(epochs, engines, args.markdown)))
    for batch in comparisons.EPOCH_BATCHES if args.epochs else ():
        progress(f"MLP, {args.epochs} consecutive epochs, batch {batch}")
        sections.append((f"{args.epochs} consecutive epochs of the MNIST MLP, batch {batch}",
                         epoch_series_table(batch, epoch_series(batch, args.epochs), args.markdown)))

    wall = time.perf_counter() - start[0]
    others_busy = (busy_cpu_seconds() - start[1] - (own_cpu_seconds() - start[2])) / wall
    peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    print(machine_header(args.threads, args.repeat, pinned, others_busy, args.markdown))
    for title, text in sections:
        print(f"\n### {title}\n" if args.markdown else f"\n{title}")
        print(text)
    print(f"\npeak RSS of the process: {peak_rss_mib:.0f} MiB")


if __name__ == "__main__":
    main()
