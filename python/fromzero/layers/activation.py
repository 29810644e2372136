"""Activation layers: an activation function as a layer of its own."""

from .. import activations, ops
from .._core import Activation as Act
from .base import Layer, as_float32


class Activation(Layer):
    """Applies an activation function elementwise (softmax: over the last axis).

        forward  y = f(x)        backward  dx = dy ⊙ f'(x)   (softmax: y ⊙ (dy − Σ dy·y))
    """

    def __init__(self, activation, alpha=None, **kwargs):
        act = activations.get(activation)
        super().__init__(**kwargs)
        self.activation = act
        if alpha is None:
            alpha = activations.DEFAULT_LEAKY_SLOPE if act == Act.leaky_relu else 0.0
        # >= 0: leaky_relu's backward reads the sign of x from y.
        self.alpha = ops.check_limit("Activation", "alpha", alpha, "negative_slope")

    @property
    def outputs_softmax(self):
        return self.activation == Act.softmax

    def forward(self, x, training=False):
        x = as_float32(x)
        shape = x.shape
        if self.activation == Act.softmax:  # the kernel works on rows: (..., n) → (rows, n)
            if x.ndim < 1 or x.size == 0:
                raise ValueError(f"{self.name}: softmax needs a non-empty last axis, got {shape}")
            x = x.reshape(-1, shape[-1])
        y = ops.activation_forward(self.activation, x, self.alpha,
                                   out=self.buffer("y", x.shape))
        if training:
            self.save(x, y, shape)
        return y.reshape(shape)

    def backward(self, dy):
        x, y, shape = self.saved
        dy = self._check_dy(dy, shape)
        dx = ops.activation_backward(self.activation, x, y, dy.reshape(y.shape), self.alpha,
                                     out=self.buffer("dx", y.shape))
        return dx.reshape(shape)

    def backward_from_logits(self, dz):
        """The fused softmax + cross-entropy gradient is already ∂L/∂x."""
        return self._check_dy(dz, self.saved[2])

    def get_config(self):
        return {"name": self.name, "activation": activations.name_of(self.activation),
                "alpha": self.alpha}


class _NamedActivation(Activation):
    """An Activation whose class says which function (ReLU, Sigmoid, ...)."""

    function = None

    def __init__(self, **kwargs):
        super().__init__(self.function, **kwargs)

    def get_config(self):
        return {"name": self.name}


class ReLU(_NamedActivation):
    """y = max(x, 0)."""

    function = "relu"


class Sigmoid(_NamedActivation):
    """y = 1 / (1 + e^-x)."""

    function = "sigmoid"


class Tanh(_NamedActivation):
    """y = tanh(x)."""

    function = "tanh"


class GELU(_NamedActivation):
    """y = x Φ(x), Φ the standard normal CDF (the exact erf form)."""

    function = "gelu"


class Softmax(_NamedActivation):
    """y_j = e^x_j / Σ_k e^x_k over the last axis."""

    function = "softmax"

    def __init__(self, axis=-1, **kwargs):
        if axis != -1:
            raise ValueError(f"Softmax: only axis=-1 (the last axis) is supported, got {axis!r}")
        super().__init__(**kwargs)


class LeakyReLU(Activation):
    """y = x for x > 0, negative_slope · x otherwise (Keras's default slope 0.3)."""

    def __init__(self, negative_slope=0.3, **kwargs):
        slope = ops.check_limit("LeakyReLU", "negative_slope", negative_slope)
        super().__init__("leaky_relu", alpha=slope, **kwargs)

    def get_config(self):
        return {"name": self.name, "negative_slope": self.alpha}
