"""One thread count for every engine, so a comparison is side by side.

fromzero (OpenMP), NumPy's BLAS (OpenBLAS) and PyTorch each keep their own
thread pool. Left alone they may use different counts, and a comparison
would measure the pools rather than the code. ``pin_threads(n)`` sets all
three to n; the count comes from FROMZERO_BENCH_THREADS (default 2).
NumPy's BLAS is limited through threadpoolctl (in the ``bench`` extra).
"""

import os
import warnings

import fromzero as fz

DEFAULT_THREADS = 2


def bench_threads():
    """The thread count asked for by FROMZERO_BENCH_THREADS (default 2)."""
    value = os.environ.get("FROMZERO_BENCH_THREADS", str(DEFAULT_THREADS))
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"FROMZERO_BENCH_THREADS must be a positive integer, got {value!r}")
    return int(value)


def pin_threads(n):
    """Run fromzero, NumPy's BLAS and PyTorch (when installed) on n threads.

    Returns {engine: threads it now uses}, for a report header.
    """
    fz.set_num_threads(n)
    pinned = {"fromzero": fz.get_num_threads(), "numpy BLAS": _pin_blas(n)}
    try:
        import torch
    except ImportError:
        return pinned
    torch.set_num_threads(n)
    pinned["torch"] = torch.get_num_threads()
    return pinned


def _pin_blas(n):
    try:
        from threadpoolctl import threadpool_info, threadpool_limits
    except ImportError:
        warnings.warn("threadpoolctl is not installed: NumPy's BLAS keeps its default thread "
                      "count (pip install threadpoolctl)")
        return "not pinned"
    threadpool_limits(limits=n, user_api="blas")  # stays in force: the limits are never restored
    return max(pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas")
