"""Convolution on images stored as Keras's default channels_last:
(batch, height, width, channels). The kernels are in csrc/conv.cpp; the
layers own the buffers and save what backward needs. The shape helpers
here are shared with the pooling layers."""


from .. import ops
from .._core import Activation as Act
from .base import as_float32
from .core import KernelLayer


def check_padding(cls_name, padding):
    mode = str(padding).lower()
    if mode not in ("valid", "same"):
        raise ValueError(f"{cls_name}: padding must be 'valid' or 'same', got {padding!r}")
    return mode


def positive_pair(cls_name, name, value):
    values = ops.pair(value, f"{cls_name}: {name}")
    if min(values) < 1:
        raise ValueError(f"{cls_name}: {name} must be positive, got {value!r}")
    return values


def image_shape(layer, input_shape):
    """(height, width, channels) from a batch's shape, or an error that says how to get there."""
    shape = tuple(input_shape)[1:]
    if len(shape) != 3:
        hint = (f"; for single-channel images add a channel axis: reshape the data to "
                f"(batch, {shape[0]}, {shape[1]}, 1), e.g. x[..., None]" if len(shape) == 2 else "")
        raise ValueError(f"{layer.name}: {type(layer).__name__} expects 4-D input (batch, height, "
                         f"width, channels), got samples of shape {shape}{hint}")
    return shape


def images(layer, x):
    """x as float32 NHWC images, checked to be 4-D."""
    x = as_float32(x)
    if x.ndim < 1:
        raise ValueError(f"{layer.name}: input needs a batch axis, got a scalar")
    image_shape(layer, x.shape)
    return x


def window_output_shape(layer, input_shape, window, strides, padding, depth):
    """(batch, Ho, Wo, depth) of a window sliding over images of input_shape, as Keras:
    "same": Ho = ⌈H / sh⌉;  "valid": Ho = ⌊(H − kh) / sh⌋ + 1 (the window must fit)."""
    h, w, _ = image_shape(layer, input_shape)
    size = []
    for n, k, s in ((h, window[0], strides[0]), (w, window[1], strides[1])):
        size.append(None if n is None else -(-n // s) if padding == "same" else (n - k) // s + 1)
    known = [s for s in size if s is not None]
    if known and min(known) < 1:
        raise ValueError(f"{layer.name}: a window of {window} does not fit in {h}x{w} images with "
                         f"padding='valid'; use padding='same' or a smaller window")
    return (input_shape[0], size[0], size[1], depth)


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
    so backward needs only x (and y, for the activation's derivative).
    """

    def __init__(self, filters, kernel_size, strides=1, padding="valid", activation=None,
                 use_bias=True, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, **kwargs):
        super().__init__("Conv2D", filters, activation, use_bias, kernel_initializer,
                         bias_initializer, kernel_regularizer, **kwargs)
        self.kernel_size = positive_pair("Conv2D", "kernel_size", kernel_size)
        self.strides = positive_pair("Conv2D", "strides", strides)
        self.padding = check_padding("Conv2D", padding)
        # The GEMM epilogue applies activations whose derivative needs only y.
        # GELU's needs z and softmax spans the channels: those two run after
        # the convolution, on z = conv + b (rows of channels).
        self._epilogue = self.activation not in (Act.gelu, Act.softmax)

    def build(self, input_shape):
        channels = image_shape(self, input_shape)[2]
        if channels is None:
            raise ValueError(f"{self.name}: the number of channels must be known, got shape "
                             f"{tuple(input_shape)}")
        self._build_kernel_and_bias(self.kernel_size + (channels, self.filters))

    def compute_output_shape(self, input_shape):
        if self.built and image_shape(self, input_shape)[2] not in (None, self.kernel.shape[2]):
            raise ValueError(f"{self.name}: expected {self.kernel.shape[2]} input channels, "
                             f"got input of shape {tuple(input_shape)}")
        return window_output_shape(self, input_shape, self.kernel_size, self.strides,
                                   self.padding, self.filters)

    def forward(self, x, training=False):
        x = images(self, x)
        if not self.built:
            self.build(x.shape)
        if x.shape[3] != self.kernel.shape[2]:
            raise ValueError(f"{self.name}: expected {self.kernel.shape[2]} input channels, "
                             f"got input of shape {x.shape}")
        out_shape = window_output_shape(self, x.shape, self.kernel_size, self.strides,
                                        self.padding, self.filters)
        z = self.buffer("y" if self._epilogue else "z", out_shape)
        ops.conv2d_forward(x, self.kernel, self.bias, self.strides, self.padding,
                           self.activation if self._epilogue else Act.identity, self.alpha, out=z)
        y = z
        if not self._epilogue:  # y = f(z) over rows of channels
            y = self.buffer("y", out_shape)
            ops.activation_forward(self.activation, z.reshape(-1, self.filters), self.alpha,
                                   out=y.reshape(-1, self.filters))
        if training:
            self.save(x, z, y)
        return y

    def backward(self, dy):
        x, z, y = self.saved
        dy = self._check_dy(dy, y.shape)
        # The kernel folds an epilogue activation's derivative in (dz = dy ⊙ f'(y),
        # block by block); GELU's and softmax's are applied here first.
        activation = self.activation
        if not self._epilogue:
            rows = (-1, self.filters)
            dz = self.buffer("dz", dy.shape)
            ops.activation_backward(self.activation, z.reshape(rows), y.reshape(rows),
                                    dy.reshape(rows), self.alpha, out=dz.reshape(rows))
            dy, activation = dz, Act.identity
        train, need_dx = self.trainable, self.input_grad_needed
        dx, _, _ = ops.conv2d_backward(
            dy, self.kernel, x, self.strides, self.padding,
            use_bias=self.use_bias, need_dx=need_dx, need_dparams=train,
            dx_out=self.buffer("dx", x.shape) if need_dx else None,
            dkernel_out=self.grads[0] if train else None,
            dbias_out=self.grads[1] if train and self.use_bias else None,
            activation=activation, y=y, alpha=self.alpha)
        self._add_penalty_gradient()
        return dx

    @property
    def filters(self):
        return self.units

    def get_config(self):
        return {"name": self.name, "filters": self.filters, "kernel_size": list(self.kernel_size),
                "strides": list(self.strides), "padding": self.padding, **self._kernel_config()}
