"""Instruction counts of a training step and of every kernel: a performance record free of noise.

    python bench/callgrind_record.py [--cases REGEX] [--no-wall] [--save]

Wall-clock timings on a shared 2-core machine drift by 20–40 %, so a 10 %
regression hides in them. The number of instructions a piece of code executes
does not depend on what else runs: this script counts them with
`valgrind --tool=callgrind` and prints them next to the stored record
(bench/callgrind_record.json) and, unless --no-wall, next to the wall-clock
time and the PyTorch/fromzero ratio of the same case measured natively.

What is counted (each a *region*; inputs fixed by seeds, so every run counts
the same work):
- `mlp_step_b32`, `mlp_step_b128`: one training step of the textbook MLP
  (784-128-10, relu, softmax + sparse cross-entropy, Adam) on MNIST, Python
  included. A step is measured as the difference between `model.fit` over 16
  batches and over 8 batches, divided by 8, so fit's fixed per-call cost
  (shuffling, callbacks, history) drops out.
- every fromzero case of bench/comparisons.py (the GEMM shapes of the MLP, the
  square GEMMs up to 1024, activations, softmax, losses, Adam): one call;
- `cnn_step_b8` and the forward and backward of each Conv2D layer of Keras's
  mnist_convnet at batch 8.

How the regions are delimited: the child process (run under callgrind)
brackets each region with callgrind's client requests CALLGRIND_ZERO_STATS
and CALLGRIND_DUMP_STATS_AT(name), from a 3-line C file compiled on the fly
(valgrind's own header, <valgrind/callgrind.h>) and called through ctypes.
Everything outside the brackets — interpreter start-up, imports, building the
inputs, the warm-up calls that grow buffers and fill caches — is zeroed away
before a region starts, and each region's count is read from its own dump
file. The cost of the bracketing itself (an empty region, a few thousand
instructions) is subtracted.

Repeatable: one thread (OMP_NUM_THREADS=1 and fz.set_num_threads(1): a
second thread would add spin-waiting at barriers, whose length depends on
timing), PYTHONHASHSEED=0 (dict and set layouts fixed), and Python's garbage
collector run before each region and kept off during it. Two runs agree to
within a few hundred instructions. Note that valgrind presents a CPU without
AVX-512, so the counts are of the AVX2 kernels (fz.info() under valgrind says
which); they measure the work the code does, comparable from run to run and
from commit to commit, not the speed of this machine's fastest path.
"""

import argparse
import ctypes
import gc
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RECORD = os.path.join(HERE, "callgrind_record.json")

CLIENT_REQUESTS_C = r"""
#include <valgrind/callgrind.h>
void region_begin(void) { CALLGRIND_ZERO_STATS; }
void region_end(const char* name) { CALLGRIND_DUMP_STATS_AT(name); }
"""


# ---------------------------------------------------------------- the child, under callgrind

def compile_client_requests(directory):
    """ctypes handle on region_begin/region_end (no-ops when not under valgrind)."""
    source = os.path.join(directory, "regions.c")
    library = os.path.join(directory, "libregions.so")
    with open(source, "w") as f:
        f.write(CLIENT_REQUESTS_C)
    subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", library, source], check=True)
    return ctypes.CDLL(library)


def mlp_step_regions(batch):
    """Two fits of the MLP (8 and 16 batches); the step is their difference / 8."""
    import comparisons
    import fromzero as fz

    x, y = comparisons.mnist()[:2]
    fz.utils.set_random_seed(0)
    model = fz.Sequential([fz.layers.Dense(128, activation="relu"),
                           fz.layers.Dense(10, activation="softmax")])
    model.compile(optimizer=fz.optimizers.Adam(learning_rate=1e-3),
                  loss="sparse_categorical_crossentropy")

    def fit(steps):
        return lambda: model.fit(x[:steps * batch], y[:steps * batch], batch_size=batch,
                                 epochs=1, verbose=0)
    return [(f"mlp_step_b{batch}@8", fit(8)), (f"mlp_step_b{batch}@16", fit(16))]


def cnn_regions(batch=8):
    """mnist_convnet at a small batch: a whole step, and each Conv2D's forward and backward."""
    import comparisons
    import fromzero as fz
    import numpy as np
    from fromzero import cli

    x_all, y_all = comparisons.mnist()[:2]
    images = x_all.reshape(-1, 28, 28, 1)
    fz.utils.set_random_seed(0)
    model = cli.build_model("cnn")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")

    def fit(steps):
        return lambda: model.fit(images[:steps * batch], y_all[:steps * batch],
                                 batch_size=batch, epochs=1, verbose=0)
    regions = [(f"cnn_step_b{batch}@8", fit(8)), (f"cnn_step_b{batch}@16", fit(16))]
    fit(1)()  # builds the model
    x = images[:batch]
    convs = 0
    for layer in model.layers:
        y = np.array(layer.forward(x, training=True))  # a copy: forward returns its buffer
        if isinstance(layer, fz.layers.Conv2D):
            dy = comparisons.random_array(*y.shape, seed=20 + convs)
            regions += [(f"conv{convs}_forward_b{batch}",
                         lambda layer=layer, x=x: layer.forward(x, training=True)),
                        (f"conv{convs}_backward_b{batch}",
                         lambda layer=layer, x=x, dy=dy: layer.backward(dy))]
            convs += 1
        x = y
    return regions


def all_regions(pattern):
    """[(name, call)] of the regions whose name matches, made ready (warm) here."""
    import comparisons

    selected = lambda name: re.search(pattern, name)
    regions = [("empty", lambda: None)]
    for batch in (32, 128):
        if selected(f"mlp_step_b{batch}"):
            regions += mlp_step_regions(batch)
    for case in comparisons.GEMM_CASES + comparisons.KERNEL_CASES:
        if case.key == "gemm_square_2048":
            continue  # ~0.5 billion instructions, a minute under callgrind: 1024 says the same
        if selected(case.key):
            regions.append((case.key, case.prepare("fromzero", warmup=2)))
    if selected("cnn_step_b8") or selected("conv"):
        regions += [r for r in cnn_regions() if selected(r[0].split("@")[0])]
    return regions


def run_child(pattern):
    sys.modules["torch"] = None  # importing PyTorch under callgrind takes minutes; not needed
    sys.path.insert(0, HERE)
    import fromzero as fz

    fz.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        requests = compile_client_requests(tmp)
        requests.region_begin()  # the first calls through ctypes cost more than the next ones
        requests.region_end(b"bracket warm-up#0")
        for name, call in all_regions(pattern):
            start = time.perf_counter()
            call()  # warm: buffers allocated, code paths taken once (a second time for prepared cases)
            # Cheap regions are counted three times and the least count kept:
            # now and then a region picks up ~0.1 million instructions from
            # outside (Python's housekeeping), which only matters for them.
            repeats = 3 if time.perf_counter() - start < 0.5 else 1
            for repeat in range(repeats):
                gc.collect()
                gc.disable()  # a garbage collection must not start inside a region
                requests.region_begin()
                call()
                requests.region_end(f"{name}#{repeat}".encode())
                gc.enable()
            print(f"  counted {name}", file=sys.stderr, flush=True)
    print(json.dumps(fz.info()))


# ---------------------------------------------------------------- the parent

def count_instructions(pattern):
    """({region: instructions}, fz.info() under valgrind) from one callgrind run."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONHASHSEED="0")
        command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                   sys.executable, os.path.abspath(__file__), "--child", "--cases", pattern]
        done = subprocess.run(command, env=env, stdout=subprocess.PIPE, text=True, check=True)
        info = json.loads(done.stdout.strip().splitlines()[-1])
        counts = {}
        for name in os.listdir(tmp):
            if not name.startswith("callgrind.out."):
                continue
            with open(os.path.join(tmp, name)) as f:
                text = f.read()
            trigger = re.search(r"^desc: Trigger: Client Request: (.+)$", text, re.M)
            summary = re.search(r"^summary: (\d+)", text, re.M)
            if trigger and summary:  # "name#repeat": the least count of the repeats
                region = trigger.group(1).rsplit("#", 1)[0]
                counts[region] = min(counts.get(region, float("inf")), int(summary.group(1)))
    return combine(counts), info


def combine(raw):
    """Subtract the empty region; turn the fit pairs into per-step counts."""
    raw.pop("bracket warm-up")
    empty = raw.pop("empty")
    counts = {name: n - empty for name, n in raw.items() if "@" not in name}
    for name in {n.split("@")[0] for n in raw if "@" in n}:
        counts[name] = round((raw[f"{name}@16"] - raw[f"{name}@8"]) / 8)
    return counts


def wall_clock(keys, threads, repeat):
    """{case key: (fromzero seconds, PyTorch/fromzero)} for the comparisons.py cases, natively."""
    sys.path.insert(0, HERE)
    import comparisons
    import compare
    from threads import pin_threads

    pin_threads(threads)
    result = {}
    for case in comparisons.GEMM_CASES + comparisons.KERNEL_CASES:
        if case.key in keys:
            best = compare.time_case(case, repeat)
            ratio = best["torch"] / best["fromzero"] if "torch" in best else None
            result[case.key] = (best["fromzero"], ratio)
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default=".", help="regular expression on the region names")
    parser.add_argument("--no-wall", action="store_true", help="skip the native timings")
    parser.add_argument("--threads", type=int, default=2, help="threads for the native timings")
    parser.add_argument("--save", action="store_true", help=f"store the counts as the record ({RECORD})")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return run_child(args.cases)
    if shutil.which("valgrind") is None:
        parser.error("valgrind is not installed (apt-get install valgrind)")

    start = time.perf_counter()
    counts, info = count_instructions(args.cases)
    record = {}
    if os.path.exists(RECORD):
        with open(RECORD) as f:
            record = json.load(f)
    wall = {} if args.no_wall else wall_clock(set(counts), args.threads, repeat=3)

    def millions(n):
        return f"{n / 1e6:.3f}"
    print(f"callgrind instruction counts (millions), 1 thread, {info['simd']} kernels under "
          f"valgrind; record: {record.get('commit', 'none')}")
    header = (f"{'region':<28} {'now':>10} {'record':>10} {'now/rec':>8}   "
              f"{'fz time':>10} {'PyTorch/fz':>10}  ({args.threads} threads, native)")
    print(header)
    print("-" * len(header))
    for name in sorted(counts, key=lambda n: (not n.startswith(("mlp", "cnn")), n)):
        old = record.get("counts", {}).get(name)
        seconds, ratio = wall.get(name, (None, None))
        print(f"{name:<28} {millions(counts[name]):>10} "
              f"{millions(old) if old else '—':>10} "
              f"{counts[name] / old if old else float('nan'):>8.3f}   "
              f"{f'{seconds * 1e6:.1f} µs' if seconds else '—':>10} "
              f"{f'{ratio:.2f}×' if ratio else '—':>10}")
    print(f"({time.perf_counter() - start:.0f} s)")
    if args.save:
        commit = subprocess.run(["git", "-C", HERE, "rev-parse", "--short", "HEAD"],
                                stdout=subprocess.PIPE, text=True).stdout.strip()
        merged = dict(record.get("counts", {}), **counts)
        with open(RECORD, "w") as f:
            json.dump({"commit": commit, "simd": info["simd"], "counts": merged}, f, indent=1,
                      sort_keys=True)
            f.write("\n")


if __name__ == "__main__":
    main()
