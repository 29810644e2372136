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
