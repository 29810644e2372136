"""fromzero — a deep-learning engine built from zero to be read.

The textbook's program runs with only its names changed::

    import fromzero as fz
    model = fz.Sequential([fz.layers.Dense(128, activation="relu"),
                           fz.layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    (x_train, y_train), (x_test, y_test) = fz.datasets.mnist.load_data()
    model.fit(x_train / 255.0, y_train, epochs=5)
    model.evaluate(x_test / 255.0, y_test)

Reading order: models.py (fit) → layers.py (forward/backward) → ops.py (the
compiled kernels) → csrc/ (the C++ that does the arithmetic).
"""

from . import (activations, augmentation, callbacks, datasets, distributed, initializers, layers, losses,
               metrics, models, ops, optimizers, regularizers, text, utils)
from ._core import get_num_threads, set_num_threads
from .models import Sequential, load_model
from . import plot  # matplotlib itself is imported only when a plot is drawn (pip install fromzero[plot])

__version__ = "0.1.0"


def info():
    """What the engine runs on: version, SIMD path of the GEMM, OpenMP and threads."""
    return {
        "version": __version__,
        "simd": ops.simd_path(),
        "openmp": ops.has_openmp(),
        "threads": get_num_threads(),
    }


__all__ = ["Sequential", "load_model", "info", "get_num_threads", "set_num_threads", "activations",
           "augmentation", "callbacks", "datasets", "distributed", "initializers", "layers", "losses", "metrics",
           "models", "ops", "optimizers", "plot", "regularizers", "text", "utils"]
