"""The speed ladder: the same two kernels, climbed one rung at a time.

Kernels (the first layer of the textbook's MLP on a batch of 128):
    matmul         C = A·B, A (128, 784), B (784, 128): 12.8 million multiply-adds
    relu forward   y = max(x, 0) on (128, 1024)
    relu backward  dx = dy·[y > 0] on (128, 1024)

Rungs:
    1  pure Python      lists of floats and three nested for loops. Timed on
                        16 of the 128 rows and multiplied by 8 (every row is the
                        same work, so the time scales exactly with the rows)
    2  NumPy            whole-array operations; `a @ b` hands the product to
                        NumPy's BLAS (OpenBLAS), pinned to 1 thread
    3  Cython           the loops of rung 1 with C types (ladder_cy.pyx), built
                        on demand with `cythonize -i`
    4  C++ reference    fromzero's plain three-loop kernel (fz.ops.matmul_reference).
                        ReLU has no reference binding: this rung runs the fast
                        ReLU kernel on 1 thread (the same as rung 5's first row)
    5  C++ optimized    fromzero's kernels (fz.ops.matmul, fz.ops.activation_forward/
                        backward): blocked, packed, SIMD; on 1 thread, then on 2

Used by run.py (the table) and ../test_bench_ladder.py (pytest-benchmark).
"""

import contextlib
import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import fromzero as fz

HERE = Path(__file__).resolve().parent
M, K, N = 128, 784, 128
RELU_SHAPE = (128, 1024)
PYTHON_ROWS = 16  # rung 1 runs on this many rows of 128 and is scaled up
KERNELS = ("matmul", "relu forward", "relu backward")
KERNEL_LABELS = {"matmul": f"matmul {M}x{K}x{N}",
                 "relu forward": f"relu forward {RELU_SHAPE[0]}x{RELU_SHAPE[1]}",
                 "relu backward": f"relu backward {RELU_SHAPE[0]}x{RELU_SHAPE[1]}"}


class Unavailable(Exception):
    """A rung that cannot run here (no compiler, no Cython); the message says why."""


def make_inputs(seed=0):
    """The arrays every rung works on, float32 C-contiguous."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(RELU_SHAPE).astype(np.float32)
    return {
        "a": rng.standard_normal((M, K)).astype(np.float32),
        "b": rng.standard_normal((K, N)).astype(np.float32),
        "x": x,
        "y": np.maximum(x, 0),
        "dy": rng.standard_normal(RELU_SHAPE).astype(np.float32),
    }


def reference_outputs(data):
    """What every rung must compute (NumPy, in float64 for the product)."""
    return {"matmul": (data["a"].astype(np.float64) @ data["b"]).astype(np.float32),
            "relu forward": np.maximum(data["x"], 0),
            "relu backward": np.where(data["y"] > 0, data["dy"], 0).astype(np.float32)}


# ---------------------------------------------------------------- rung 1: pure Python


def py_matmul(a, b):
    """a: m lists of k floats, b: k lists of n floats → m lists of n floats."""
    n, k_dim = len(b[0]), len(b)
    c = []
    for i in range(len(a)):
        row = []
        for j in range(n):
            s = 0.0
            for k in range(k_dim):
                s += a[i][k] * b[k][j]
            row.append(s)
        c.append(row)
    return c


def py_relu_forward(x):
    y = []
    for row in x:
        out = []
        for v in row:
            out.append(v if v > 0.0 else 0.0)
        y.append(out)
    return y


def py_relu_backward(y, dy):
    dx = []
    for y_row, dy_row in zip(y, dy):
        out = []
        for v, g in zip(y_row, dy_row):
            out.append(g if v > 0.0 else 0.0)
        dx.append(out)
    return dx


# ---------------------------------------------------------------- rung 2: NumPy


def np_matmul(a, b, out):
    return np.matmul(a, b, out=out)


def np_relu_forward(x, out):
    return np.maximum(x, 0, out=out)


def np_relu_backward(y, dy, out):
    return np.multiply(dy, y > 0, out=out)


# ---------------------------------------------------------------- rung 3: Cython

_cython_module = None


def load_cython(verbose=False):
    """ladder_cy.pyx compiled (once, into _build/ beside this file) and imported.
    Raises Unavailable with the reason when Cython or a C compiler is missing."""
    global _cython_module
    if _cython_module is not None:
        return _cython_module
    if importlib.util.find_spec("Cython") is None:
        raise Unavailable("Cython is not installed (pip install cython)")
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        raise Unavailable(f"no C compiler ({cc!r} is not on PATH) to build ladder_cy.pyx")
    build = HERE / "_build"
    build.mkdir(exist_ok=True)
    source = build / "ladder_cy.pyx"
    if not source.exists() or source.read_bytes() != (HERE / "ladder_cy.pyx").read_bytes():
        shutil.copyfile(HERE / "ladder_cy.pyx", source)
    built = sorted(build.glob("ladder_cy.*.so")) + sorted(build.glob("ladder_cy.*.pyd"))
    if not built or built[0].stat().st_mtime < source.stat().st_mtime:
        # The same as running `cythonize -i -3 ladder_cy.pyx` in _build/.
        result = subprocess.run([sys.executable, "-m", "Cython.Build.Cythonize", "-i", "-3", "-q",
                                 source.name], cwd=build, capture_output=True, text=True)
        if verbose or result.returncode != 0:
            sys.stderr.write(result.stdout + result.stderr)
        if result.returncode != 0:
            raise Unavailable("building ladder_cy.pyx with cythonize failed (see the "
                              "compiler output above)")
        built = sorted(build.glob("ladder_cy.*.so")) + sorted(build.glob("ladder_cy.*.pyd"))
    spec = importlib.util.spec_from_file_location("ladder_cy", built[0])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    _cython_module = module
    return module


# ---------------------------------------------------------------- the rungs


@dataclass
class Rung:
    key: str        # short id: python, numpy, cython, reference, fromzero-1t, fromzero-2t
    label: str      # for the table
    threads: int    # fromzero's and the BLAS's thread count while it runs

    def prepare(self, kernel, data):
        """(call, scale, note): a zero-argument function that runs the kernel
        once, the factor that turns its time into the full-size time, and a
        note for the table. Raises Unavailable when the rung cannot run."""
        return _PREPARE[self.key](kernel, data)


RUNGS = [
    Rung("python", "1 pure Python loops", 1),
    Rung("numpy", "2 NumPy (1 thread)", 1),
    Rung("cython", "3 Cython typed loops", 1),
    Rung("reference", "4 C++ reference kernel", 1),
    Rung("fromzero-1t", "5 C++ optimized, 1 thread", 1),
    Rung("fromzero-2t", "5 C++ optimized, 2 threads", 2),
]


def _python(kernel, data):
    rows = PYTHON_ROWS
    scale = (M if kernel == "matmul" else RELU_SHAPE[0]) / rows
    note = f"timed on {rows} of {int(rows * scale)} rows, x{scale:g}"
    if kernel == "matmul":
        a, b = data["a"][:rows].tolist(), data["b"].tolist()
        return (lambda: py_matmul(a, b)), scale, note
    if kernel == "relu forward":
        x = data["x"][:rows].tolist()
        return (lambda: py_relu_forward(x)), scale, note
    y, dy = data["y"][:rows].tolist(), data["dy"][:rows].tolist()
    return (lambda: py_relu_backward(y, dy)), scale, note


def _numpy(kernel, data):
    if kernel == "matmul":
        out = np.empty((M, N), np.float32)
        return (lambda: np_matmul(data["a"], data["b"], out)), 1.0, "a @ b calls OpenBLAS"
    out = np.empty(RELU_SHAPE, np.float32)
    if kernel == "relu forward":
        return (lambda: np_relu_forward(data["x"], out)), 1.0, "np.maximum(x, 0)"
    return (lambda: np_relu_backward(data["y"], data["dy"], out)), 1.0, "dy * (y > 0)"


def _cython(kernel, data):
    cy = load_cython()
    if kernel == "matmul":
        out = np.empty((M, N), np.float32)
        return (lambda: cy.matmul(data["a"], data["b"], out) or out), 1.0, ""
    flat = {k: v.reshape(-1) for k, v in data.items() if k in ("x", "y", "dy")}
    out = np.empty(RELU_SHAPE, np.float32)
    flat_out = out.reshape(-1)
    if kernel == "relu forward":
        return (lambda: cy.relu_forward(flat["x"], flat_out) or out), 1.0, ""
    return (lambda: cy.relu_backward(flat["y"], flat["dy"], flat_out) or out), 1.0, ""


def _reference(kernel, data):
    if kernel == "matmul":
        return (lambda: fz.ops.matmul_reference(data["a"], data["b"])), 1.0, "three loops, i-j-k"
    call, _, _ = _fromzero(kernel, data)
    return call, 1.0, "no reference ReLU binding: the fast kernel"


def _fromzero(kernel, data):
    if kernel == "matmul":
        out = np.empty((M, N), np.float32)
        return (lambda: fz.ops.matmul(data["a"], data["b"], out=out)), 1.0, ""
    out = np.empty(RELU_SHAPE, np.float32)
    relu = fz.ops.Activation.relu
    if kernel == "relu forward":
        return (lambda: fz.ops.activation_forward(relu, data["x"], out=out)), 1.0, ""
    return (lambda: fz.ops.activation_backward(relu, data["x"], data["y"], data["dy"], out=out)), \
        1.0, ""


_PREPARE = {"python": _python, "numpy": _numpy, "cython": _cython, "reference": _reference,
            "fromzero-1t": _fromzero, "fromzero-2t": _fromzero}


# ---------------------------------------------------------------- threads and timing


@contextlib.contextmanager
def threads(n):
    """fromzero and NumPy's BLAS on n threads inside the block, as before after it."""
    before = fz.get_num_threads()
    fz.set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # without threadpoolctl NumPy's BLAS keeps its own count
        limits = contextlib.nullcontext()
    else:
        limits = threadpool_limits(limits=n, user_api="blas")
    try:
        with limits:
            yield
    finally:
        fz.set_num_threads(before)


def measure(call, min_time=0.2, repeat=5):
    """Seconds per call: the best of `repeat` rounds, each long enough
    (>= min_time / repeat) for the clock. The minimum is the run least
    disturbed by everything else the machine does."""
    start = time.perf_counter()
    call()  # warm up: caches, lazy allocation, thread pool start
    once = time.perf_counter() - start
    number = max(1, int(min_time / repeat / max(once, 1e-9)))
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            call()
        best = min(best, (time.perf_counter() - start) / number)
    return best


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return os.uname().machine if hasattr(os, "uname") else "unknown CPU"
