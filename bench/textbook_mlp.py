"""The textbook MLP that every epoch benchmark trains, and its data.

784-128-10 on MNIST: a relu hidden layer, softmax output, sparse categorical
cross-entropy, Adam with learning rate 1e-3 — the book's Keras program with
fromzero's names. bench/comparisons.py (compare.py's epoch rows),
bench/thread_spread.py and bench/busy_machine.py all build it here.
"""

import numpy as np

import fromzero as fz


def mnist(images=None):
    """(x_train, y_train, x_test, y_test): (N, 784) float32 in [0, 1], uint8 labels.

    With `images`, only the first that many training images.
    """
    (x_train, y_train), (x_test, y_test) = fz.datasets.mnist.load_data()
    if images is not None:
        x_train, y_train = x_train[:images], y_train[:images]

    def scale(x):
        return x.reshape(len(x), -1).astype(np.float32) / 255.0
    return scale(x_train), y_train, scale(x_test), y_test


def model(seed=0):
    """A fresh, compiled 784-128-10 MLP whose weights the seed fixes."""
    fz.utils.set_random_seed(seed)
    mlp = fz.Sequential([fz.layers.Dense(128, activation="relu"),
                         fz.layers.Dense(10, activation="softmax")])
    mlp.compile(optimizer=fz.optimizers.Adam(learning_rate=1e-3),
                loss="sparse_categorical_crossentropy")
    return mlp
