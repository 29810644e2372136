"""fromzero — a deep-learning engine built from zero to be read.

The textbook's program runs with only its names changed::

    import fromzero as fz
    model = fz.Sequential([fz.layers.Dense(128, activation="relu"),
                           fz.layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    (x_train, y_train), (x_test, y_test) = fz.datasets.mnist.load_data()
    model.fit(x_train / 255.0, y_train, epochs=5)
    model.evaluate(x_test / 255.0, y_test)

Reading order: trainer.py (fit) → models.py (the graph, forward and backward)
→ layers/ (each layer's forward/backward) → ops.py (the compiled kernels)
→ csrc/ (the C++ that does the arithmetic).
"""

import os as _os

# OpenMP's worker threads wait for the next parallel region by spinning, then
# sleeping. GCC's libgomp, which loads with _core, spins 300,000 times (about
# 9 ms) before it sleeps, and reads that count once, from GOMP_SPINCOUNT, as it
# loads. A worker spinning 9 ms after every burst of kernels takes that time
# from whatever shares its core — on a busy machine, often fromzero's own
# calling thread (docs/09-making-it-fast.md). 20,000 spins (~0.6 ms) still
# outlast the Python between the kernels of a training step, so the workers stay
# awake through training; after a longer pause a region pays one wake-up
# (~50 µs). A GOMP_SPINCOUNT or OMP_WAIT_POLICY of the user's wins, and the
# variable is removed again once libgomp has read it.
_SPIN_COUNT = "20000"
_set_spin = "GOMP_SPINCOUNT" not in _os.environ and "OMP_WAIT_POLICY" not in _os.environ
if _set_spin:
    _os.environ["GOMP_SPINCOUNT"] = _SPIN_COUNT
try:
    from . import _core
finally:
    if _set_spin:
        del _os.environ["GOMP_SPINCOUNT"]
    del _set_spin
from . import (_core, activations, augmentation, callbacks, datasets, distributed, finetuning,
               initializers, layers, lora, losses, metrics, models, ops, optimizers, pretrained,
               profiler, regularizers, saving, testing, text, utils)
from ._core import get_flush_denormal, get_num_threads, set_flush_denormal, set_num_threads
from .layers import Input
from .models import Model, Sequential, load_model
from . import plot  # matplotlib itself is imported only when a plot is drawn (pip install fromzero[plot])

__version__ = "0.1.0"


def info():
    """What the engine runs on: version, SIMD path of the GEMM, OpenMP, threads,
    denormal flushing, and the GEMM's micro-kernel and cache blocks for this CPU."""
    return {
        "version": __version__,
        "simd": ops.simd_path(),
        "openmp": ops.has_openmp(),
        "threads": get_num_threads(),
        "flush_denormal": get_flush_denormal(),
        "gemm": _core.gemm_info(),
    }


__all__ = ["Input", "Model", "Sequential", "load_model", "info", "get_num_threads",
           "set_num_threads", "get_flush_denormal", "set_flush_denormal", "activations",
           "augmentation", "callbacks", "datasets", "distributed", "finetuning", "initializers",
           "layers", "lora", "losses", "metrics", "models", "ops", "optimizers", "plot", "pretrained",
           "profiler", "regularizers",
           "saving", "testing", "text", "utils"]
