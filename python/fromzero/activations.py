"""Activation functions by name, as Keras spells them, mapped to the C++ kernels.

    relu(x) = max(x, 0)            sigmoid(x) = 1 / (1 + e^-x)      tanh(x)
    leaky_relu(x) = x or αx        gelu(x) = x Φ(x)                 softmax(x)_j = e^x_j / Σ e^x_k
The formulas and their derivatives are in csrc/activations.h.
"""

from . import utils
from ._core import Activation

_BY_NAME = {
    "linear": Activation.identity,
    "relu": Activation.relu,
    "leaky_relu": Activation.leaky_relu,
    "sigmoid": Activation.sigmoid,
    "tanh": Activation.tanh,
    "gelu": Activation.gelu,
    "softmax": Activation.softmax,
}

# Keras's `activation="leaky_relu"` uses slope 0.2 (the LeakyReLU layer defaults to 0.3).
DEFAULT_LEAKY_SLOPE = 0.2


def get(name):
    """The Activation for a name (None means linear), raising ValueError with suggestions."""
    if name is None:
        return Activation.identity
    if isinstance(name, Activation):
        if name not in _BY_NAME.values():  # Activation(99): pybind11 enums take any int
            raise ValueError(f"activation must be one of {sorted(_BY_NAME)}, got {name!r}")
        return name
    if not isinstance(name, str):
        raise TypeError(f"activation must be a name such as 'relu', got {name!r}")
    return utils.lookup("activation", name, _BY_NAME)


def name_of(activation):
    """The Keras name of an Activation (inverse of get)."""
    return next(n for n, a in _BY_NAME.items() if a == activation)
