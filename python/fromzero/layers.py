"""Layers: the building blocks of a network, each a forward/backward pair.

Every layer speaks the protocol used to teach backpropagation by hand::

    y  = layer.forward(x, training=True)   # compute, remember what backward needs
    dx = layer.backward(dy)                # dy = ∂L/∂y in, dx = ∂L/∂x out; fills layer.grads
    layer.params, layer.grads              # lists of float32 arrays, same order and shapes

The arrays that forward and backward return are buffers owned by the layer,
reused by the next call with the same batch shape (so a training step
allocates nothing); copy one if you need it to outlive the next call.
"""

import itertools
import math

import numpy as np

from . import activations, initializers, ops, regularizers, utils
# The kernels' enum of activation functions; `Activation` in this module is the layer.
from ._core import Activation as Act

_name_counters = {}


def _unique_name(base):
    """Keras-style default names: dense, dense_1, dense_2, ..."""
    count = next(_name_counters.setdefault(base, itertools.count()))
    return base if count == 0 else f"{base}_{count}"


def _as_float32(x, what="input"):
    """x as a float32 C-contiguous array (no copy when it already is one)."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{what} must hold numbers, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.float32)


class Layer:
    """The base of every layer: names, weights, buffers and the protocol above."""

    def __init__(self, name=None):
        self.name = name or _unique_name(_snake_case(type(self).__name__))
        self.params = []
        self.grads = []
        self.trainable = True
        self.built = False
        # The model turns this off for its first layer: nobody needs ∂L/∂input.
        self.input_grad_needed = True
        self._buffers = utils.Buffers()

    def build(self, input_shape):
        """Create the weights for inputs of `input_shape` (without the batch axis)."""
        self.built = True

    def output_shape(self, input_shape):
        """The shape of one output for one input of `input_shape` (no batch axis)."""
        return tuple(input_shape)

    def forward(self, x, training=False):
        raise NotImplementedError

    def backward(self, dy):
        raise NotImplementedError

    def __call__(self, x, training=False):
        return self.forward(x, training=training)

    def get_weights(self):
        return [p.copy() for p in self.params]

    def set_weights(self, weights):
        weights = list(weights)
        if len(weights) != len(self.params):
            raise ValueError(f"{self.name}: expected {len(self.params)} weight arrays, "
                             f"got {len(weights)}")
        for i, (p, w) in enumerate(zip(self.params, weights)):
            w = np.asarray(w)
            if w.shape != p.shape:
                raise ValueError(f"{self.name}: weight {i} must have shape {p.shape}, "
                                 f"got {w.shape}")
            p[...] = w  # in place: optimizers and grads keep pointing at the same arrays

    def count_params(self):
        return sum(p.size for p in self.params)

    def get_config(self):
        """The constructor arguments, as JSON-serialisable values (for save/load)."""
        return {"name": self.name}

    def _buffer(self, name, shape):
        """A float32 array owned by this layer, reused across calls (utils.Buffers)."""
        return self._buffers.get(name, shape)


def _snake_case(name):
    out = "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")
    return out.replace("re_l_u", "relu").replace("g_e_l_u", "gelu").replace("_2_d", "2d")


class Dense(Layer):
    """A fully connected layer: every output neuron sees every input.

        y = f(x · W + b)      x: (batch, in), W: (in, out), b: (out,)

    Backward, with dz = dy ⊙ f'(z) the gradient before the activation:
        dW = xᵀ · dz,   db = Σ_batch dz,   dx = dz · Wᵀ
    Input with more than two axes is read as (batch, features), the non-batch
    axes flattened, so (N, 28, 28) images go straight in.

    Forward is a single GEMM whose epilogue adds b and applies f while each
    tile of y is still in cache (csrc/gemm.cpp).
    """

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, name=None):
        super().__init__(name)
        if isinstance(units, bool) or not isinstance(units, (int, np.integer)) or units < 1:
            raise ValueError(f"Dense: units must be a positive integer, got {units!r}")
        self.units = int(units)
        self.activation = activations.get(activation)
        self.alpha = activations.DEFAULT_LEAKY_SLOPE if self.activation == Act.leaky_relu else 0.0
        self.use_bias = bool(use_bias)
        self.kernel_initializer = kernel_initializer
        self.bias_initializer = bias_initializer
        self._kernel_init = initializers.get(kernel_initializer)
        self._bias_init = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        # Softmax is row-wise, and GELU's derivative needs z: neither fits the
        # elementwise epilogue that keeps only y.
        self._epilogue_activation = (Act.identity if self.activation in
                                     (Act.softmax, Act.gelu) else self.activation)

    @property
    def outputs_softmax(self):
        """True when the output is a softmax: then cross-entropy can hand
        backward_from_logits the fused gradient p − onehot."""
        return self.activation == Act.softmax

    def build(self, input_shape):
        fan_in = math.prod(input_shape)
        self.kernel = _as_float32(self._kernel_init((fan_in, self.units)), "kernel")
        self.params = [self.kernel]
        if self.use_bias:
            self.bias = _as_float32(self._bias_init((self.units,)), "bias")
            self.params.append(self.bias)
        else:
            self.bias = None
        self.grads = [np.zeros_like(p) for p in self.params]
        self.built = True

    def output_shape(self, input_shape):
        return (self.units,)

    def forward(self, x, training=False):
        x = _as_float32(x)
        if x.ndim < 2:
            raise ValueError(f"{self.name}: input must have a batch axis and features, "
                             f"got shape {x.shape}")
        if not self.built:
            self.build(x.shape[1:])
        x2 = x.reshape(len(x), -1)
        if x2.shape[1] != self.kernel.shape[0]:
            raise ValueError(f"{self.name}: expected {self.kernel.shape[0]} input features, "
                             f"got input of shape {x.shape}")
        batch = len(x2)
        y = self._buffer("y", (batch, self.units))
        if self.activation == Act.gelu:
            z = ops.matmul(x2, self.kernel, bias=self.bias, out=self._buffer("z", y.shape))
            ops.activation_forward(Act.gelu, z, out=y)
            self._z = z
        else:
            ops.matmul(x2, self.kernel, bias=self.bias, activation=self._epilogue_activation,
                       alpha=self.alpha, out=y)
            if self.activation == Act.softmax:
                ops.activation_forward(Act.softmax, y, out=y)
        if training:
            self._x, self._input_shape, self._y = x2, x.shape, y
        return y

    def backward(self, dy):
        dy = _as_float32(dy, "dy")
        if dy.shape != self._y.shape:
            raise ValueError(f"{self.name}: dy must have shape {self._y.shape}, got {dy.shape}")
        if self.activation == Act.identity:
            dz = dy
        else:
            z = self._z if self.activation == Act.gelu else None
            dz = ops.activation_backward(self.activation, z, self._y, dy, self.alpha,
                                         out=self._buffer("dz", dy.shape))
        return self.backward_from_logits(dz)

    def backward_from_logits(self, dz):
        """Backward from dz = ∂L/∂z, the gradient before the activation."""
        if self.trainable:
            ops.matmul(self._x, dz, transpose_a=True, out=self.grads[0])  # dW = xᵀ · dz
            if self.use_bias:
                ops.bias_grad(dz, out=self.grads[1])                       # db = Σ dz
            if self.kernel_regularizer is not None:
                self.kernel_regularizer.add_gradient(self.kernel, self.grads[0])
        if not self.input_grad_needed:
            return None
        dx = ops.matmul(dz, self.kernel, transpose_b=True,                 # dx = dz · Wᵀ
                        out=self._buffer("dx", self._x.shape))
        return dx.reshape(self._input_shape)

    def regularization_loss(self):
        return 0.0 if self.kernel_regularizer is None else self.kernel_regularizer(self.kernel)

    def get_config(self):
        return {"name": self.name, "units": self.units,
                "activation": activations.name_of(self.activation), "use_bias": self.use_bias,
                "kernel_initializer": _init_name(self.kernel_initializer),
                "bias_initializer": _init_name(self.bias_initializer),
                "kernel_regularizer": regularizers.serialize(self.kernel_regularizer)}


def _init_name(init):
    return init if isinstance(init, str) else "glorot_uniform"


class Activation(Layer):
    """Applies an activation function elementwise (softmax: over the last axis).

        forward  y = f(x)        backward  dx = dy ⊙ f'(x)   (softmax: y ⊙ (dy − Σ dy·y))
    """

    def __init__(self, activation, name=None, alpha=None):
        act = activations.get(activation)
        super().__init__(name or _unique_name(activations.name_of(act)))
        self.activation = act
        if alpha is None:
            alpha = activations.DEFAULT_LEAKY_SLOPE if act == Act.leaky_relu else 0.0
        self.alpha = float(alpha)

    @property
    def outputs_softmax(self):
        return self.activation == Act.softmax

    def forward(self, x, training=False):
        x = _as_float32(x)
        shape = x.shape
        if self.activation == Act.softmax:
            if x.ndim < 1 or x.size == 0:
                raise ValueError(f"{self.name}: softmax needs a non-empty last axis, got {shape}")
            x = x.reshape(-1, shape[-1])
        y = ops.activation_forward(self.activation, x, self.alpha,
                                   out=self._buffer("y", x.shape)).reshape(shape)
        if training:
            self._x, self._y = x.reshape(shape), y
        return y

    def backward(self, dy):
        dy = _as_float32(dy, "dy")
        if dy.shape != self._y.shape:
            raise ValueError(f"{self.name}: dy must have shape {self._y.shape}, got {dy.shape}")
        y, x, shape = self._y, self._x, dy.shape
        if self.activation == Act.softmax:
            y, dy = y.reshape(-1, shape[-1]), dy.reshape(-1, shape[-1])
        dx = ops.activation_backward(self.activation, x, y, dy, self.alpha,
                                     out=self._buffer("dx", dy.shape))
        return dx.reshape(shape)

    def backward_from_logits(self, dz):
        """The fused softmax + cross-entropy gradient is already ∂L/∂x."""
        return dz

    def get_config(self):
        if type(self) is not Activation:  # ReLU, Sigmoid, ...: the class says which
            return {"name": self.name}
        return {"name": self.name, "activation": activations.name_of(self.activation),
                "alpha": self.alpha}


class ReLU(Activation):
    """y = max(x, 0)."""

    def __init__(self, name=None):
        super().__init__("relu", name)


class LeakyReLU(Activation):
    """y = x for x > 0, negative_slope · x otherwise (Keras's default slope 0.3)."""

    def __init__(self, negative_slope=0.3, name=None):
        if not (isinstance(negative_slope, (int, float)) and 0 <= negative_slope < math.inf):
            raise ValueError(f"LeakyReLU: negative_slope must be a number >= 0, got {negative_slope!r}")
        super().__init__("leaky_relu", name, alpha=negative_slope)

    def get_config(self):
        return {"name": self.name, "negative_slope": self.alpha}


class Sigmoid(Activation):
    """y = 1 / (1 + e^-x)."""

    def __init__(self, name=None):
        super().__init__("sigmoid", name)


class Tanh(Activation):
    """y = tanh(x)."""

    def __init__(self, name=None):
        super().__init__("tanh", name)


class GELU(Activation):
    """y = x Φ(x), Φ the standard normal CDF (the exact erf form)."""

    def __init__(self, name=None):
        super().__init__("gelu", name)


class Softmax(Activation):
    """y_j = e^x_j / Σ_k e^x_k over the last axis."""

    def __init__(self, name=None):
        super().__init__("softmax", name)


class Flatten(Layer):
    """(batch, d1, d2, ...) → (batch, d1·d2·...): a reshape, no arithmetic."""

    def output_shape(self, input_shape):
        return (math.prod(input_shape),)

    def forward(self, x, training=False):
        x = _as_float32(x)
        if x.ndim < 1:
            raise ValueError(f"{self.name}: input needs a batch axis, got a scalar")
        if training:
            self._input_shape = x.shape
        return x.reshape(len(x), -1)

    def backward(self, dy):
        return _as_float32(dy, "dy").reshape(self._input_shape)


class Dropout(Layer):
    """Randomly zeroes a fraction `rate` of the inputs while training.

        training:  y = x ⊙ m,  m_i = 1/(1 − rate) with probability 1 − rate, else 0
        inference: y = x
    Scaling the kept values by 1/(1 − rate) ("inverted dropout") keeps the
    expected activation unchanged, so nothing changes at inference. The mask
    comes from the C++ counter-based generator, seeded from fz.utils, so it
    does not depend on the number of threads.
    """

    def __init__(self, rate, name=None):
        super().__init__(name)
        if not (isinstance(rate, (int, float)) and 0 <= rate < 1):
            raise ValueError(f"Dropout: rate must be in [0, 1), got {rate!r}")
        self.rate = float(rate)

    def forward(self, x, training=False):
        x = _as_float32(x)
        if not training or self.rate == 0:
            self._mask = None
            return x
        y, self._mask = ops.dropout_forward(x, self.rate, utils.next_seed(),
                                            out=self._buffer("y", x.shape),
                                            mask=self._buffer("mask", x.shape))
        return y

    def backward(self, dy):
        dy = _as_float32(dy, "dy")
        if self._mask is None:
            return dy
        return ops.dropout_backward(dy, self._mask, out=self._buffer("dx", dy.shape))

    def get_config(self):
        return {"name": self.name, "rate": self.rate}


# Layer classes by name, for load_model.
LAYERS = {cls.__name__: cls for cls in (Dense, Activation, ReLU, LeakyReLU, Sigmoid, Tanh, GELU,
                                        Softmax, Flatten, Dropout)}

__all__ = ["Layer", "Dense", "Activation", "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "GELU", "Softmax",
           "Flatten", "Dropout"]
