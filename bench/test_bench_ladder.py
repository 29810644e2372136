"""The speed ladder (bench/ladder/, docs/speed-ladder.md) under pytest-benchmark.

One benchmark per (kernel, rung); each kernel's six rungs are one group, named
"ladder: <kernel>", so `--benchmark-group-by=group` sets them side by side:

    python -m pytest bench/test_bench_ladder.py --benchmark-only
    python -m pytest bench/ -k ladder --benchmark-only

Rung 1 (pure Python) is timed on 16 of the 128 rows (3 rounds): multiply its
time by 8 for the full size, as extra_info["full_size_seconds"] records.
The thread count of each rung is set here (1, or 2 for the last), overriding
FROMZERO_BENCH_THREADS for the duration of the benchmark. Without a C compiler
or Cython the Cython rung is skipped with the reason. run.py prints the same
ladder as a table with speedups.
"""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "ladder"))

from rungs import (KERNEL_LABELS, KERNELS, RUNGS, Unavailable, make_inputs,  # noqa: E402
                   reference_outputs, threads)

DATA = make_inputs()
EXPECTED = reference_outputs(DATA)

PARAMS = [pytest.param(kernel, rung, id=f"{kernel.replace(' ', '-')}-{rung.key}",
                       marks=pytest.mark.benchmark(group=f"ladder: {KERNEL_LABELS[kernel]}"))
          for kernel in KERNELS for rung in RUNGS]


def prepared(kernel, rung):
    try:
        return rung.prepare(kernel, DATA)
    except Unavailable as e:
        pytest.skip(f"{rung.label}: {e}")


@pytest.mark.parametrize(("kernel", "rung"), PARAMS)
def test_ladder(benchmark, kernel, rung):
    call, scale, note = prepared(kernel, rung)
    benchmark.extra_info.update({"rung": rung.label, "threads": rung.threads, "note": note,
                                 "scale_to_full_size": scale})
    with threads(rung.threads):
        if rung.key == "python":  # ~0.2 s a call: three are plenty
            benchmark.pedantic(call, rounds=3, iterations=1, warmup_rounds=0)
        else:
            benchmark(call)
    if benchmark.stats is not None:  # None under --benchmark-disable
        benchmark.extra_info["full_size_seconds"] = benchmark.stats.stats.min * scale


@pytest.mark.parametrize("rung", RUNGS, ids=[r.key for r in RUNGS])
@pytest.mark.parametrize("kernel", KERNELS)
def test_every_rung_computes_the_same(kernel, rung):
    """Before timing anything: every rung's answer is NumPy's."""
    call, _, _ = prepared(kernel, rung)
    with threads(rung.threads):
        result = np.asarray(call(), dtype=np.float32)
    expected = EXPECTED[kernel][:len(result)]
    if kernel == "matmul":
        np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-3)
    else:
        np.testing.assert_array_equal(result, expected)
