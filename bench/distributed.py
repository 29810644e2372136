"""Data-parallel training on this machine: what the all-reduce costs and what 2 ranks gain.

    python bench/distributed.py [--repeat R] [--steps S] [--markdown]

Needs MPI (pip install fromzero[mpi]). It launches itself under
``mpiexec -n 2`` (and alone, for the one-process rows) and prints:

1. The exchange of one step's gradients between 2 ranks, for the MLP's
   101,770 parameters, a 0.8 M-parameter MLP (784-1000-10) and larger
   buffers, three ways:
     - MPI_Allreduce: MPI's own sum (its order is MPI's choice);
     - fixed order: what fz.distributed does (Alltoall, the pieces added in
       rank order, Allgather), on a bare buffer;
     - DataParallel: the whole allreduce_gradients call on a model of that
       size, with copying the gradients in (accumulate) and out;
   plus the latency (an 8-byte exchange) and the bandwidth, as the "bus
   bandwidth" 2·(N−1)/N · bytes / time of a ring all-reduce.
2. One training step of model.fit for the textbook MLP (784-128-10, Adam,
   accuracy metric, MNIST) at global batch 32 and 128, and of the
   784-1000-10 MLP at batch 128: 1 process × 1 thread and 1 process × 2
   threads (fit), 2 ranks × 1 thread (fit(distribute=True)), with the time
   spent in the gradient exchange (including waiting for the slower rank).
   The step time is fit's, from the first batch to the end (its checks at
   the start, which hash the data once, are left out).
3. A projection of the parallel efficiency on 2 to 64 nodes, each keeping a
   batch of 128: the measured compute time of one step against the cost
   model of the all-reduce, 2·(N−1)·α + 2·(N−1)/N · bytes/β, with α and β
   measured here (shared memory) and typical for 10 Gigabit Ethernet.

The exchanges are timed call by call (all ranks start each call together;
the slowest rank's time counts) and the fastest of 20·R calls is reported;
the training steps are the best of R runs. Both are best-of because other
work on the machine makes most calls wait for a rank that lost its core.
Timings on a 2-core machine shared with other work are noisy: the header
says how busy the other processes kept the cores.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import fromzero as fz

HERE = Path(__file__).resolve().parent
SIZES = {"latency (8 B)": 2, "MLP 784-128-10": 101_770, "MLP 784-1000-10": 795_010,
         "4 M floats": 4_000_000, "16 M floats": 16_000_000}
MODELS = {101_770: 128, 795_010: 1000}  # parameters → hidden units of a 784-h-10 MLP
STEPS = [(128, 32), (128, 128), (1000, 128)]  # (hidden units, global batch) of the timed steps
# Two networks for the projection: (name, α latency per message in s, β bandwidth in B/s).
# 10 Gigabit Ethernet with MPI over TCP: typical figures, not measured here.
ETHERNET = ("10 GbE (α 25 µs, β 1.1 GB/s, assumed)", 25e-6, 1.1e9)
NODES = (2, 4, 8, 16, 32, 64)


# ---------------------------------------------------------------- the worker (one rank)

def worker(args):
    rank, size = fz.distributed.init(threads=args.threads)
    comm = fz.distributed._world.comm
    result = {"rank": rank, "size": size, "threads": fz.get_num_threads()}
    if size > 1:
        result["exchange"] = {label: time_exchanges(comm, n, args.repeat)
                              for label, n in SIZES.items()}
    result["steps"] = {f"{hidden}/{batch}": time_training(hidden, batch, args.steps, args.repeat)
                       for hidden, batch in STEPS}
    if rank == 0:
        print(json.dumps(result))


def slowest(comm, seconds):
    """The slowest rank's time: a collective ends when its last rank does."""
    return seconds if comm is None else comm.allreduce(seconds, op=_mpi().MAX)


def _mpi():
    from mpi4py import MPI
    return MPI


def best_time(comm, call, repeat, calls=20):
    """Seconds of the fastest of `repeat`·`calls` calls, each started together
    on every rank (a barrier before it) and timed on the slowest rank.

    The fastest call, rather than the mean, because on a machine shared with
    other work most calls wait for a rank that lost its core: the fastest is
    the cost of the exchange itself (bench/compare.py takes best-of too)."""
    call()
    times = np.empty(repeat * calls)
    for i in range(len(times)):
        comm.Barrier()
        start = time.perf_counter()
        call()
        times[i] = time.perf_counter() - start
    comm.Allreduce(_mpi().IN_PLACE, times, op=_mpi().MAX)
    return float(times.min())


def time_exchanges(comm, n, repeat):
    """Seconds for each way of summing n float32 across the ranks."""
    size = comm.Get_size()
    chunk = -(-n // size)
    send = np.random.default_rng(comm.Get_rank()).standard_normal(chunk * size).astype(np.float32)
    total = np.empty_like(send)
    received = np.empty((size, chunk), np.float32)
    piece = np.empty(chunk, np.float32)

    def fixed_order():
        comm.Alltoall(send.reshape(size, chunk), received)
        np.copyto(piece, received[0])
        for part in received[1:]:
            np.add(piece, part, out=piece)
        comm.Allgather(piece, total.reshape(size, chunk))

    times = {"MPI_Allreduce": best_time(comm, lambda: comm.Allreduce(send, total), repeat),
             "fixed order": best_time(comm, fixed_order, repeat)}
    if n in MODELS:
        model = mlp(MODELS[n])
        dp = fz.distributed.DataParallel(model, check_every=None)
        assert dp.num_parameters == n
        shard = dp.shards(np.arange(32))[0]

        def data_parallel():
            dp.accumulate(shard)
            dp.allreduce_gradients()

        times["DataParallel"] = best_time(comm, data_parallel, repeat)
        times["copy in (accumulate)"] = best_time(comm, lambda: dp.accumulate(shard), repeat)
    return times


def mlp(hidden):
    fz.utils.set_random_seed(0)
    model = fz.Sequential([fz.layers.Dense(hidden, activation="relu"),
                           fz.layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.build((None, 784))
    return model


class _StepClock(fz.callbacks.Callback):
    """perf_counter at fit's first batch and at its end."""

    def on_train_batch_begin(self, batch, logs=None):
        if batch == 0:
            self.start = time.perf_counter()

    def on_train_end(self, logs=None):
        self.end = time.perf_counter()


def time_training(hidden, batch_size, steps, repeat):
    """(seconds per step, seconds of it in the gradient exchange): best of
    `repeat` fits of `steps` steps of a 784-hidden-10 MLP, distributed
    across the ranks when there are several."""
    comm = fz.distributed._world.comm
    model = mlp(hidden)
    (x, y), _ = fz.datasets.mnist.load_data()
    x = np.divide(x.reshape(-1, 784), 255, dtype=np.float32)
    dp = fz.distributed.DataParallel(model, check_every=None) if comm.Get_size() > 1 else None
    clock = _StepClock()
    best = (float("inf"), 0.0)
    for _ in range(repeat):
        exchanged = 0.0 if dp is None else dp.exchange_seconds
        model.fit(x, y, batch_size=batch_size, epochs=1, steps_per_epoch=steps, verbose=0,
                  callbacks=[clock], distribute=dp)
        elapsed = clock.end - clock.start
        if comm is not None:
            elapsed = comm.allreduce(elapsed, op=_mpi().MAX)
        if elapsed / steps < best[0]:
            best = (elapsed / steps, 0.0 if dp is None else (dp.exchange_seconds - exchanged) / steps)
    return best


# ---------------------------------------------------------------- the launcher

def launch(ranks, threads, args):
    mpiexec = Path(sys.executable).parent / "mpiexec"
    command = [str(mpiexec) if mpiexec.exists() else "mpiexec", "-n", str(ranks), sys.executable,
               __file__, "--worker", "--threads", str(threads), "--repeat", str(args.repeat),
               "--steps", str(args.steps)]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def table(headers, rows, markdown):
    if markdown:
        lines = ["| " + " | ".join(headers) + " |",
                 "|:---|" + "---:|" * (len(headers) - 1)]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *rows)]
    return "\n".join("  ".join(str(c).rjust(w) for c, w in zip(row, widths))
                     for row in [headers] + rows)


def microseconds(s):
    return f"{s * 1e6:.0f} µs" if s < 1e-3 else f"{s * 1e3:.2f} ms"


def exchange_table(exchange, size, markdown):
    rows = []
    for label, n in SIZES.items():
        t = exchange[label]
        nbytes = 4 * n
        bus = 2 * (size - 1) / size * nbytes
        row = [label, f"{nbytes / 1e6:.3f} MB" if nbytes >= 1e3 else f"{nbytes} B",
               microseconds(t["MPI_Allreduce"]), microseconds(t["fixed order"]),
               microseconds(t["DataParallel"]) if "DataParallel" in t else "",
               microseconds(t["copy in (accumulate)"]) if "copy in (accumulate)" in t else "",
               f"{bus / t['fixed order'] / 1e9:.2f} GB/s" if nbytes >= 1e5 else ""]
        rows.append(row)
    headers = ["buffer", "size", "MPI_Allreduce", "fixed order", "DataParallel (all)",
               "of it: copy in", "bus bandwidth (fixed order)"]
    return table(headers, rows, markdown)


def step_table(runs, markdown):
    base = runs[0][1]["steps"]
    rows = []
    for hidden, batch in STEPS:
        key = f"{hidden}/{batch}"
        for label, result in runs:
            step, reducing = result["steps"][key]
            rows.append([f"784-{hidden}-10", str(batch), label, f"{step * 1e3:.3f} ms",
                         f"{batch / step:,.0f}", f"{base[key][0] / step:.2f}×",
                         f"{reducing * 1e3:.3f} ms ({reducing / step:.0%})" if result["size"] > 1
                         else "—"])
    headers = ["MLP", "global batch", "processes × threads", "time per step", "samples/s",
               "speed-up vs 1×1", "all-reduce per step"]
    return table(headers, rows, markdown)


def latency_and_bandwidth(exchange, size=2):
    """α (seconds per message) and β (bytes per second) of this machine, from
    the fixed-order exchange: 2·(N−1) messages of 8 bytes take 2·(N−1)·α; the
    largest buffer adds 2·(N−1)/N · bytes / β."""
    messages = 2 * (size - 1)
    alpha = exchange["latency (8 B)"]["fixed order"] / messages
    label, n = list(SIZES.items())[-1]
    moved = 2 * (size - 1) / size * 4 * n
    return alpha, moved / (exchange[label]["fixed order"] - messages * alpha)


def allreduce_seconds(nodes, nbytes, alpha, beta):
    """The ring's (and the fixed-order exchange's) cost model."""
    return 2 * (nodes - 1) * alpha + 2 * (nodes - 1) / nodes * nbytes / beta


def projection_table(runs, exchange, markdown):
    """Weak scaling: each node keeps a batch of 128 and its compute time
    (measured, 1 process × 1 thread); the global batch grows to 128·N; the
    all-reduce grows by the cost model. Parallel efficiency = compute / step."""
    alpha, beta = latency_and_bandwidth(exchange)
    networks = [(f"this machine (α {alpha * 1e6:.1f} µs, β {beta / 1e9:.2f} GB/s, measured)",
                 alpha, beta), ETHERNET]
    rows = []
    for hidden, parameters in ((128, 101_770), (1000, 795_010)):
        compute = runs[0][1]["steps"][f"{hidden}/128"][0]
        for name, a, b in networks:
            rows.append([f"784-{hidden}-10 ({parameters:,} parameters)", name] +
                        [f"{compute / (compute + allreduce_seconds(n, 4 * parameters, a, b)):.0%}"
                         for n in NODES])
    headers = ["model, batch 128 per node", "network"] + [f"{n} nodes" for n in NODES]
    return alpha, beta, table(headers, rows, markdown)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="repeats; the best counts")
    parser.add_argument("--steps", type=int, default=500, help="training steps per repeat")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)

    from compare import busy_cpu_seconds, own_cpu_seconds
    start = time.perf_counter(), busy_cpu_seconds(), own_cpu_seconds()
    runs = []
    for label, ranks, threads in [("1 × 1", 1, 1), ("1 × 2", 1, 2), ("2 × 1", 2, 1)]:
        print(f"  {label}", file=sys.stderr, flush=True)
        runs.append((label, launch(ranks, threads, args)))
    children = os.times().children_user + os.times().children_system
    wall = time.perf_counter() - start[0]
    others = (busy_cpu_seconds() - start[1] - (own_cpu_seconds() - start[2]) - children) / wall
    from mpi4py import MPI
    library = MPI.Get_library_version().splitlines()[0]
    info = fz.info()
    print(f"{'- ' if args.markdown else ''}machine: {os.cpu_count()} logical cores; {library}; "
          f"fromzero {info['version']} ({info['simd']}); best of {args.repeat} repeats")
    print(f"{'- ' if args.markdown else ''}other processes kept {others:.2f} cores busy on "
          f"average during the run (0 = a quiet machine)")
    print(f"\n{'### ' if args.markdown else ''}Summing gradients across 2 ranks (one step)\n")
    print(exchange_table(runs[2][1]["exchange"], 2, args.markdown))
    print(f"\n{'### ' if args.markdown else ''}A training step of the MNIST MLP\n")
    print(step_table(runs, args.markdown))
    exchange = runs[2][1]["exchange"]
    alpha, beta, projection = projection_table(runs, exchange, args.markdown)
    print(f"\n{'### ' if args.markdown else ''}Projected parallel efficiency, 2 to 64 nodes\n")
    print(projection)


if __name__ == "__main__":
    main()
