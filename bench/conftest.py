"""pytest setup for the benchmarks: every engine on the same number of threads.

Run with ``python -m pytest bench/ --benchmark-only``; the thread count is
FROMZERO_BENCH_THREADS (default 2), applied to fromzero, NumPy's BLAS and
PyTorch before any benchmark runs.
"""

import fromzero as fz
from threads import bench_threads, pin_threads

_pinned = {}


def pytest_configure(config):
    _pinned.update(pin_threads(bench_threads()))


def pytest_report_header(config):
    threads = ", ".join(f"{engine} {n}" for engine, n in _pinned.items())
    return f"fromzero bench: {fz.info()}; threads: {threads}"


def pytest_benchmark_update_machine_info(config, machine_info):
    """Saved with --benchmark-save / --benchmark-json, so results say how they were run."""
    machine_info["threads"] = dict(_pinned)
    machine_info["fromzero"] = fz.info()

