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

# What the layers' forward(x, training=True) saves for backward (Layer.__getattr__).
_SAVED_BY_FORWARD = frozenset({"_x", "_y", "_z", "_mask", "_input_shape", "_argmax",
                               "_mean", "_inv_std", "_batch_stats"})


class BackwardBeforeForwardError(RuntimeError, AttributeError):
    """backward() called before any forward(x, training=True). Also an
    AttributeError, so hasattr(layer, "_x") stays False rather than raising."""


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
        # Arrays saved and loaded with the model but never seen by the optimizer
        # (BatchNormalization's moving statistics), as Keras's non_trainable_weights.
        self.non_trainable_weights = []
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

    def __getattr__(self, name):
        # Python calls this only for an attribute that is not set. For what
        # forward(x, training=True) saves for backward, that means backward ran
        # first: say so, rather than "no attribute '_y'".
        if name in _SAVED_BY_FORWARD:
            raise BackwardBeforeForwardError(
                f"{self.__dict__.get('name', type(self).__name__)}: backward() needs a "
                f"forward(x, training=True) first, which saves what backward uses")
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def weights(self):
        """Every array get_weights, set_weights and save cover: params, then non-trainable ones."""
        return self.params + self.non_trainable_weights

    def get_weights(self):
        return [p.copy() for p in self.weights]

    def set_weights(self, weights):
        weights = list(weights)
        if len(weights) != len(self.weights):
            raise ValueError(f"{self.name}: expected {len(self.weights)} weight arrays, "
                             f"got {len(weights)}")
        for i, (p, w) in enumerate(zip(self.weights, weights)):
            w = np.asarray(w)
            if w.shape != p.shape:
                raise ValueError(f"{self.name}: weight {i} must have shape {p.shape}, "
                                 f"got {w.shape}")
            p[...] = w  # in place: optimizers and grads keep pointing at the same arrays

    def count_params(self):
        return sum(p.size for p in self.weights)

    def get_config(self):
        """The constructor arguments, as JSON-serialisable values (for save/load)."""
        return {"name": self.name}

    def _buffer(self, name, shape):
        """A float32 array owned by this layer, reused across calls (utils.Buffers)."""
        return self._buffers.get(name, shape)


def _snake_case(name):
    out = "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")
    return out.replace("re_l_u", "relu").replace("g_e_l_u", "gelu").replace("2_d", "2d")


class KernelLayer(Layer):
    """What Dense and Conv2D share: a kernel W and a bias b, an activation f
    applied to z = (x·W + b), initializers and an optional weight penalty.
    `units` is the number of outputs (Dense's units, Conv2D's filters)."""

    def __init__(self, owner, units, activation, use_bias, kernel_initializer, bias_initializer,
                 kernel_regularizer, name):
        super().__init__(name)
        self.units = utils.check_positive_int(owner, "units" if owner == "Dense" else "filters",
                                              units)
        self.activation = activations.get(activation)
        self.alpha = activations.DEFAULT_LEAKY_SLOPE if self.activation == Act.leaky_relu else 0.0
        self.use_bias = bool(use_bias)
        self.kernel_initializer = kernel_initializer
        self.bias_initializer = bias_initializer
        self._kernel_init = initializers.get(kernel_initializer)
        self._bias_init = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)

    def _build_kernel_and_bias(self, kernel_shape):
        """params = [kernel] or [kernel, bias], drawn by the initializers; grads alike, zero."""
        self.kernel = _as_float32(self._kernel_init(tuple(kernel_shape)), "kernel")
        self.params = [self.kernel]
        self.bias = None
        if self.use_bias:
            self.bias = _as_float32(self._bias_init((self.units,)), "bias")
            self.params.append(self.bias)
        self.grads = [np.zeros_like(p) for p in self.params]
        self.built = True

    def _add_penalty_gradient(self):
        """dW += ∂penalty/∂W when the layer has a kernel_regularizer."""
        if self.trainable and self.kernel_regularizer is not None:
            self.kernel_regularizer.add_gradient(self.kernel, self.grads[0])

    def regularization_loss(self):
        return 0.0 if self.kernel_regularizer is None else self.kernel_regularizer(self.kernel)

    def _kernel_config(self):
        """The constructor arguments both layers share, for get_config."""
        return {"activation": activations.name_of(self.activation), "use_bias": self.use_bias,
                "kernel_initializer": _init_name(self.kernel_initializer),
                "bias_initializer": _init_name(self.bias_initializer),
                "kernel_regularizer": regularizers.serialize(self.kernel_regularizer)}


class Dense(KernelLayer):
    """A fully connected layer: every output neuron sees every input.

        y = f(x · W + b)      x: (batch, in), W: (in, out), b: (out,)

    Backward, with dz = dy ⊙ f'(z) the gradient before the activation:
        dW = xᵀ · dz,   db = Σ_batch dz,   dx = dz · Wᵀ
    Input with more than two axes is read as (batch, features), the non-batch
    axes flattened, so (N, 28, 28) images go straight in.

    Forward is a single GEMM whose epilogue adds b and applies f while each
    tile of y is still in cache; backward is one call that computes dz and db
    in one pass and then the two GEMMs (csrc/dense.cpp).
    """

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, name=None):
        super().__init__("Dense", units, activation, use_bias, kernel_initializer,
                         bias_initializer, kernel_regularizer, name)

    @property
    def outputs_softmax(self):
        """True when the output is a softmax: then cross-entropy can hand
        backward_from_logits the fused gradient p − onehot."""
        return self.activation == Act.softmax

    def build(self, input_shape):
        self._build_kernel_and_bias((math.prod(input_shape), self.units))

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
        y = self._buffer("y", (len(x2), self.units))
        z = self._buffer("z", y.shape) if self.activation == Act.gelu else None
        ops.dense_forward(x2, self.kernel, self.bias, self.activation, self.alpha, out=y, z_out=z)
        if training:
            self._x, self._input_shape, self._y, self._z = x2, x.shape, y, z
        return y

    def backward(self, dy):
        return self._backward(dy, self.activation)

    def backward_from_logits(self, dz):
        """Backward from dz = ∂L/∂z, the gradient before the activation."""
        return self._backward(dz, Act.identity)

    def _backward(self, dy, activation):
        """dz = dy ⊙ f'(z); dW = xᵀ·dz, db = Σ dz (unless frozen); dx = dz·Wᵀ (if needed).
        One call: csrc/dense.cpp, dense_backward."""
        dy = _as_float32(dy, "dy")
        if dy.shape != self._y.shape:
            raise ValueError(f"{self.name}: dy must have shape {self._y.shape}, got {dy.shape}")
        train = self.trainable
        dx = ops.dense_backward(
            self._x, self.kernel, self._z, self._y, dy, activation, self.alpha,
            dz_out=self._buffer("dz", dy.shape),
            dw_out=self.grads[0] if train else None,
            db_out=self.grads[1] if train and self.use_bias else None,
            dx_out=self._buffer("dx", self._x.shape) if self.input_grad_needed else None)
        self._add_penalty_gradient()
        return None if dx is None else dx.reshape(self._input_shape)

    def get_config(self):
        return {"name": self.name, "units": self.units, **self._kernel_config()}


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
        # >= 0: leaky_relu's backward reads the sign of x from y.
        self.alpha = utils.check_number("Activation", "alpha", alpha, 0)

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
        slope = utils.check_number("LeakyReLU", "negative_slope", negative_slope, 0)
        super().__init__("leaky_relu", name, alpha=slope)

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
        self.rate = utils.check_number("Dropout", "rate", rate, 0, 1, high_open=True)

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


# ---------------------------------------------------------------- images
#
# Convolution, pooling and batch normalization on images stored as Keras's
# default channels_last: (batch, height, width, channels). The kernels are in
# csrc/conv.cpp; these layers own the buffers and remember what backward needs.

def _check_padding(cls_name, padding):
    mode = str(padding).lower()
    if mode not in ("valid", "same"):
        raise ValueError(f"{cls_name}: padding must be 'valid' or 'same', got {padding!r}")
    return mode


def _positive_pair(cls_name, name, value):
    values = ops.pair(value, f"{cls_name}: {name}")
    if min(values) < 1:
        raise ValueError(f"{cls_name}: {name} must be positive, got {value!r}")
    return values


def _image_shape(layer, shape):
    """(height, width, channels) from one sample's shape, or an error that says how to get there."""
    shape = tuple(shape)
    if len(shape) != 3:
        hint = (f"; for single-channel images add a channel axis: reshape the data to "
                f"(batch, {shape[0]}, {shape[1]}, 1), e.g. x[..., None]" if len(shape) == 2 else "")
        raise ValueError(f"{layer.name}: {type(layer).__name__} expects 4-D input (batch, height, "
                         f"width, channels), got samples of shape {shape}{hint}")
    return shape


def _images(layer, x):
    """x as float32 NHWC images, checked to be 4-D."""
    x = _as_float32(x)
    if x.ndim < 1:
        raise ValueError(f"{layer.name}: input needs a batch axis, got a scalar")
    _image_shape(layer, x.shape[1:])
    return x


def _window_output_shape(layer, input_shape, window, strides, padding, depth):
    """(Ho, Wo, depth) of a window sliding over images of input_shape, as Keras:
    "same": Ho = ⌈H / sh⌉;  "valid": Ho = ⌊(H − kh) / sh⌋ + 1 (the window must fit)."""
    h, w, _ = _image_shape(layer, input_shape)
    size = []
    for n, k, s in ((h, window[0], strides[0]), (w, window[1], strides[1])):
        size.append(-(-n // s) if padding == "same" else (n - k) // s + 1)
    if min(size) < 1:
        raise ValueError(f"{layer.name}: a window of {window} does not fit in {h}x{w} images with "
                         f"padding='valid'; use padding='same' or a smaller window")
    return (size[0], size[1], depth)


class Conv2D(KernelLayer):
    """A 2-D convolution: F filters of kh×kw×C weights slide over the image.

        y[n,oh,ow,f] = f(b[f] + Σ_{i,j,c} x[n, oh·sh − pt + i, ow·sw − pl + j, c] · K[i,j,c,f])

    x: (batch, H, W, C), K: (kh, kw, C, F), b: (F,), y: (batch, Ho, Wo, F);
    inputs outside the image (padding="same") read as 0. Laid out as a matrix,
    cols = im2col(x) has one row per output pixel holding the kh·kw·C inputs
    its window sees, so the layer is a Dense layer applied to every window:

        forward   y  = f(cols · K + b)           one GEMM, b and f in its epilogue
        backward  dK = colsᵀ · dz,  db = Σ dz,  dx = col2im(dz · Kᵀ)

    col2im adds each window's gradient back onto the pixels it read. The
    kernels build cols a block of rows at a time, in cache (csrc/conv2d.cpp),
    so backward needs only x.
    """

    def __init__(self, filters, kernel_size, strides=1, padding="valid", activation=None,
                 use_bias=True, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, name=None):
        super().__init__("Conv2D", filters, activation, use_bias, kernel_initializer,
                         bias_initializer, kernel_regularizer, name)
        self.kernel_size = _positive_pair("Conv2D", "kernel_size", kernel_size)
        self.strides = _positive_pair("Conv2D", "strides", strides)
        self.padding = _check_padding("Conv2D", padding)
        # The GEMM epilogue applies activations whose derivative needs only y.
        # GELU's needs z and softmax spans the channels, so those two run as
        # an Activation layer after the convolution.
        self._activation_layer = (Activation(self.activation, name=f"{self.name}_activation")
                                  if self.activation in (Act.gelu, Act.softmax) else None)

    def build(self, input_shape):
        channels = _image_shape(self, input_shape)[2]
        self._build_kernel_and_bias(self.kernel_size + (channels, self.filters))

    def output_shape(self, input_shape):
        return _window_output_shape(self, input_shape, self.kernel_size, self.strides,
                                    self.padding, self.filters)

    def forward(self, x, training=False):
        x = _images(self, x)
        if not self.built:
            self.build(x.shape[1:])
        if x.shape[3] != self.kernel.shape[2]:
            raise ValueError(f"{self.name}: expected {self.kernel.shape[2]} input channels, "
                             f"got input of shape {x.shape}")
        out_shape = (len(x),) + self.output_shape(x.shape[1:])
        fused = self._activation_layer is None
        z = self._buffer("y" if fused else "z", out_shape)
        ops.conv2d_forward(x, self.kernel, self.bias, self.strides, self.padding,
                           self.activation if fused else Act.identity, self.alpha, out=z)
        y = z if fused else self._activation_layer.forward(z, training)
        if training:
            self._x, self._y = x, y
        return y

    def backward(self, dy):
        dy = _as_float32(dy, "dy")
        if dy.shape != self._y.shape:
            raise ValueError(f"{self.name}: dy must have shape {self._y.shape}, got {dy.shape}")
        # The kernel folds the activation's derivative in (dz = dy·f'(y)),
        # except for the activations applied by a separate layer.
        activation = self.activation
        if self._activation_layer is not None:
            dy, activation = self._activation_layer.backward(dy), Act.identity
        train, need_dx = self.trainable, self.input_grad_needed
        dx, _, _ = ops.conv2d_backward(
            dy, self.kernel, self._x, self.strides, self.padding,
            use_bias=self.use_bias, need_dx=need_dx, need_dparams=train,
            dx_out=self._buffer("dx", self._x.shape) if need_dx else None,
            dkernel_out=self.grads[0] if train else None,
            dbias_out=self.grads[1] if train and self.use_bias else None,
            activation=activation, y=self._y, alpha=self.alpha)
        self._add_penalty_gradient()
        return dx

    @property
    def filters(self):
        return self.units

    def get_config(self):
        return {"name": self.name, "filters": self.filters, "kernel_size": list(self.kernel_size),
                "strides": list(self.strides), "padding": self.padding, **self._kernel_config()}


class _Pooling2D(Layer):
    """What the 2-D pooling layers share: a pool_size window moving by strides
    (default: pool_size, so windows tile the image), each channel pooled alone."""

    def __init__(self, pool_size=2, strides=None, padding="valid", name=None):
        super().__init__(name)
        cls = type(self).__name__
        self.pool_size = _positive_pair(cls, "pool_size", pool_size)
        self.strides = self.pool_size if strides is None else _positive_pair(cls, "strides", strides)
        self.padding = _check_padding(cls, padding)

    def output_shape(self, input_shape):
        return _window_output_shape(self, input_shape, self.pool_size, self.strides, self.padding,
                                    _image_shape(self, input_shape)[2])

    def _output_buffer(self, x):
        return self._buffer("y", (len(x),) + self.output_shape(x.shape[1:]))

    def get_config(self):
        return {"name": self.name, "pool_size": list(self.pool_size),
                "strides": list(self.strides), "padding": self.padding}


class MaxPool2D(_Pooling2D):
    """The largest value of each window, per channel.

        forward   y = max over the window       (and remember which input won)
        backward  dx = dy at the winning input, 0 at the others
    """

    def forward(self, x, training=False):
        x = _images(self, x)
        y = self._output_buffer(x)
        argmax = self._buffers.get("argmax", y.shape, np.int32)
        ops.max_pool2d_forward(x, self.pool_size, self.strides, self.padding, out=y, argmax=argmax)
        if training:
            self._input_shape, self._argmax = x.shape, argmax
        return y

    def backward(self, dy):
        if not self.input_grad_needed:
            return None
        return ops.max_pool2d_backward(_as_float32(dy, "dy"), self._argmax, self._input_shape,
                                       self.pool_size, self.strides, self.padding,
                                       out=self._buffer("dx", self._input_shape))


MaxPooling2D = MaxPool2D  # Keras's longer name


class AveragePooling2D(_Pooling2D):
    """The mean of each window, per channel; with padding="same" the edge
    windows average the inputs they cover, not the padding (as Keras).

        forward   y = (1/count) Σ window        backward  dx = dy / count at every input of the window
    """

    def forward(self, x, training=False):
        x = _images(self, x)
        y = ops.avg_pool2d_forward(x, self.pool_size, self.strides, self.padding,
                                   out=self._output_buffer(x))
        if training:
            self._input_shape = x.shape
        return y

    def backward(self, dy):
        if not self.input_grad_needed:
            return None
        return ops.avg_pool2d_backward(_as_float32(dy, "dy"), self._input_shape, self.pool_size,
                                       self.strides, self.padding,
                                       out=self._buffer("dx", self._input_shape))


AvgPool2D = AveragePooling2D


class GlobalAveragePooling2D(Layer):
    """(batch, H, W, C) → (batch, C): the mean of each channel over the whole image.

        forward  y[n,c] = (1/HW) Σ_{h,w} x[n,h,w,c]      backward  dx[n,h,w,c] = dy[n,c] / HW
    """

    def output_shape(self, input_shape):
        return (_image_shape(self, input_shape)[2],)

    def forward(self, x, training=False):
        x = _images(self, x)
        y = ops.global_avg_pool2d_forward(x, out=self._buffer("y", (len(x), x.shape[3])))
        if training:
            self._input_shape = x.shape
        return y

    def backward(self, dy):
        if not self.input_grad_needed:
            return None
        return ops.global_avg_pool2d_backward(_as_float32(dy, "dy"), self._input_shape,
                                              out=self._buffer("dx", self._input_shape))


GlobalAvgPool2D = GlobalAveragePooling2D


class BatchNormalization(Layer):
    """Normalizes each channel (the last axis) to zero mean and unit variance,
    then scales and shifts it by learned γ and β:

        y = γ · (x − μ) / √(σ² + ε) + β

    Training uses the batch's μ and σ² (biased) over every axis but the last,
    and keeps exponential moving averages of them for inference:
        moving_mean ← momentum · moving_mean + (1 − momentum) · μ   (and likewise moving_variance)
    The moving averages are weights (saved, loaded, counted) but not trained:
    they are in non_trainable_weights, not in params. As in Keras, a layer with
    trainable = False runs in inference mode even while the model trains.
    Backward (training mode), with x̂ = (x − μ)/√(σ² + ε) and m values per channel:
        dβ = Σ dy,   dγ = Σ dy·x̂,   dx = γ/√(σ² + ε) · (dy − dβ/m − x̂·dγ/m)
    """

    def __init__(self, momentum=0.99, epsilon=1e-3, name=None):
        super().__init__(name)
        # utils.check_number, so NumPy scalars (np.float32(0.99)) are accepted too.
        self.momentum = utils.check_number("BatchNormalization", "momentum", momentum, 0, 1)
        self.epsilon = utils.check_number("BatchNormalization", "epsilon", epsilon, 0, low_open=True)

    def build(self, input_shape):
        if len(input_shape) < 1:
            raise ValueError(f"{self.name}: input needs a channel axis, got samples of shape "
                             f"{tuple(input_shape)}")
        channels = int(input_shape[-1])
        self.gamma = np.ones(channels, dtype=np.float32)
        self.beta = np.zeros(channels, dtype=np.float32)
        self.moving_mean = np.zeros(channels, dtype=np.float32)
        self.moving_variance = np.ones(channels, dtype=np.float32)
        self.params = [self.gamma, self.beta]
        self.grads = [np.zeros_like(p) for p in self.params]
        self.non_trainable_weights = [self.moving_mean, self.moving_variance]
        self.built = True

    def forward(self, x, training=False):
        x = _as_float32(x)
        if x.ndim < 2:
            raise ValueError(f"{self.name}: input must have a batch axis and channels, "
                             f"got shape {x.shape}")
        if not self.built:
            self.build(x.shape[1:])
        channels = len(self.gamma)
        if x.shape[-1] != channels:
            raise ValueError(f"{self.name}: expected {channels} channels on the last axis, "
                             f"got input of shape {x.shape}")
        batch_stats = training and self.trainable
        y, mean, inv_std = ops.batch_norm_forward(
            x, self.gamma, self.beta, self.moving_mean, self.moving_variance, batch_stats,
            self.momentum, self.epsilon, out=self._buffer("y", x.shape),
            mean=self._buffer("mean", (channels,)), inv_std=self._buffer("inv_std", (channels,)))
        if training:
            self._x, self._mean, self._inv_std, self._batch_stats = x, mean, inv_std, batch_stats
        return y

    def backward(self, dy):
        dy = _as_float32(dy, "dy")
        if dy.shape != self._x.shape:
            raise ValueError(f"{self.name}: dy must have shape {self._x.shape}, got {dy.shape}")
        dx, _, _ = ops.batch_norm_backward(self._x, self.gamma, self._mean, self._inv_std, dy,
                                           self._batch_stats, out=self._buffer("dx", dy.shape),
                                           dgamma=self.grads[0], dbeta=self.grads[1])
        return dx if self.input_grad_needed else None

    def get_config(self):
        return {"name": self.name, "momentum": self.momentum, "epsilon": self.epsilon}


LAYERS.update({cls.__name__: cls for cls in (Conv2D, MaxPool2D, AveragePooling2D,
                                             GlobalAveragePooling2D, BatchNormalization)})

__all__ += ["Conv2D", "MaxPool2D", "MaxPooling2D", "AveragePooling2D", "AvgPool2D",
            "GlobalAveragePooling2D", "GlobalAvgPool2D", "BatchNormalization"]
