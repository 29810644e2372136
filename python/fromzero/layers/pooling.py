"""Pooling: each channel of an image summarised window by window (max or
mean), or over the whole image (global average). Kernels in csrc/conv.cpp."""

import numpy as np

from .. import ops
from .base import Layer, as_float32
from .convolutional import check_padding, image_shape, images, positive_pair, window_output_shape


class _Pooling2D(Layer):
    """What the 2-D pooling layers share: a pool_size window moving by strides
    (default: pool_size, so windows tile the image), each channel pooled alone."""

    def __init__(self, pool_size=2, strides=None, padding="valid", **kwargs):
        super().__init__(**kwargs)
        cls = type(self).__name__
        self.pool_size = positive_pair(cls, "pool_size", pool_size)
        self.strides = self.pool_size if strides is None else positive_pair(cls, "strides", strides)
        self.padding = check_padding(cls, padding)

    def compute_output_shape(self, input_shape):
        return window_output_shape(self, input_shape, self.pool_size, self.strides, self.padding,
                                   image_shape(self, input_shape)[2])

    def _output_buffer(self, x):
        return self.buffer("y", self.compute_output_shape(x.shape))

    def get_config(self):
        return {"name": self.name, "pool_size": list(self.pool_size),
                "strides": list(self.strides), "padding": self.padding}


class MaxPooling2D(_Pooling2D):
    """The largest value of each window, per channel.

        forward   y = max over the window       (and remember which input won)
        backward  dx = dy at the winning input, 0 at the others
    """

    aliases = ("MaxPool2D",)

    def forward(self, x, training=False):
        x = images(self, x)
        y = self._output_buffer(x)
        argmax = self.buffer("argmax", y.shape, np.int32)
        ops.max_pool2d_forward(x, self.pool_size, self.strides, self.padding, out=y, argmax=argmax)
        if training:
            self.save(x.shape, argmax)
        return y

    def backward(self, dy):
        input_shape, argmax = self.saved
        if not self.input_grad_needed:
            return None
        return ops.max_pool2d_backward(as_float32(dy, "dy"), argmax, input_shape, self.pool_size,
                                       self.strides, self.padding,
                                       out=self.buffer("dx", input_shape))


class AveragePooling2D(_Pooling2D):
    """The mean of each window, per channel; with padding="same" the edge
    windows average the inputs they cover, not the padding (as Keras).

        forward   y = (1/count) Σ window        backward  dx = dy / count at every input of the window
    """

    aliases = ("AvgPool2D",)

    def forward(self, x, training=False):
        x = images(self, x)
        y = ops.avg_pool2d_forward(x, self.pool_size, self.strides, self.padding,
                                   out=self._output_buffer(x))
        if training:
            self.save(x.shape)
        return y

    def backward(self, dy):
        (input_shape,) = self.saved
        if not self.input_grad_needed:
            return None
        return ops.avg_pool2d_backward(as_float32(dy, "dy"), input_shape, self.pool_size,
                                       self.strides, self.padding,
                                       out=self.buffer("dx", input_shape))


class GlobalAveragePooling2D(Layer):
    """(batch, H, W, C) → (batch, C): the mean of each channel over the whole image.

        forward  y[n,c] = (1/HW) Σ_{h,w} x[n,h,w,c]      backward  dx[n,h,w,c] = dy[n,c] / HW
    """

    aliases = ("GlobalAvgPool2D",)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], image_shape(self, input_shape)[2])

    def forward(self, x, training=False):
        x = images(self, x)
        y = ops.global_avg_pool2d_forward(x, out=self.buffer("y", (len(x), x.shape[3])))
        if training:
            self.save(x.shape)
        return y

    def backward(self, dy):
        (input_shape,) = self.saved
        if not self.input_grad_needed:
            return None
        return ops.global_avg_pool2d_backward(as_float32(dy, "dy"), input_shape,
                                              out=self.buffer("dx", input_shape))


class GlobalAveragePooling1D(Layer):
    """(batch, time, features) → (batch, features): the mean over time, of the
    steps the mask keeps (Keras's layer; sentence embeddings' mean pooling).

        forward   y[b] = Σ_t m[b,t]·x[b,t] / c[b],   c[b] = max(Σ_t m[b,t], 1e-9)
        backward  dx[b,t] = m[b,t]·dy[b] / c[b]

    ``mask`` (batch, time) or (batch, 1, time), nonzero = keep (padding
    masks: 0 at the padding), or None: every step. Two GEMV-sized NumPy
    operations: O(batch·time·features), nothing next to the encoder's GEMMs.
    """

    aliases = ("GlobalAvgPool1D",)

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"{self.name}: input must be (batch, time, features), got shape "
                             f"{tuple(input_shape)}")
        return (input_shape[0], input_shape[2])

    def forward(self, x, mask=None, training=False):
        x = as_float32(x)
        if x.ndim != 3:
            raise ValueError(f"{self.name}: input must be (batch, time, features), got shape "
                             f"{x.shape}")
        B, T, _ = x.shape
        weights = self.buffer("weights", (B, T))
        if mask is None:
            weights.fill(1.0)
        else:
            mask = np.asarray(mask)
            if mask.shape not in ((B, T), (B, 1, T)) or mask.dtype.kind not in "biuf":
                raise ValueError(f"{self.name}: mask must be (batch, time) = {(B, T)} or "
                                 f"{(B, 1, T)} of numbers or booleans, got {mask.dtype} "
                                 f"{mask.shape}")
            np.not_equal(mask.reshape(B, T), 0, out=weights, casting="unsafe")  # 1.0 or 0.0
        count = np.sum(weights, axis=1, keepdims=True, out=self.buffer("count", (B, 1)))
        np.maximum(count, np.float32(1e-9), out=count)
        y = self.buffer("y", (B, x.shape[2]))
        np.matmul(weights[:, None, :], x, out=y[:, None, :])  # Σ_t m·x, one GEMV per sample
        y /= count
        if training:
            self.save(np.divide(weights, count, out=self.buffer("scale", (B, T))), x.shape,
                      mask is not None)
        return y

    def backward(self, dy):
        scale, shape, has_mask = self.saved  # scale = m / c, (B, T)
        dy = self._check_dy(dy, (shape[0], shape[2]))
        dx = None
        if self.input_grad_needed:
            dx = np.multiply(scale[:, :, None], dy[:, None, :], out=self.buffer("dx", shape))
        return (dx, None) if has_mask else dx
