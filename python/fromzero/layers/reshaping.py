"""Shape layers: the same numbers in another arrangement. No arithmetic, so
no kernels: a reshape is a view, a permutation one NumPy copy into a buffer."""

import math

import numpy as np

from .base import Layer


def _samples(layer, x):
    x = np.asarray(x)
    if x.dtype.kind not in "fiub":
        raise TypeError(f"{layer.name}: input must hold numbers, got dtype {x.dtype}")
    if x.ndim < 1:
        raise ValueError(f"{layer.name}: input needs a batch axis, got a scalar")
    return x


class Flatten(Layer):
    """(batch, d1, d2, ...) → (batch, d1·d2·...): a reshape, no arithmetic."""

    output_dtype = None

    def compute_output_shape(self, input_shape):
        rest = input_shape[1:]
        return (input_shape[0], None if None in rest else math.prod(rest))

    def forward(self, x, training=False):
        x = _samples(self, x)
        self.save(x.shape)
        return x.reshape(len(x), -1)

    def backward(self, dy):
        (shape,) = self.saved
        return self._check_dy(dy, (shape[0], math.prod(shape[1:]))).reshape(shape)


class Reshape(Layer):
    """(batch, ...) → (batch, *target_shape), the samples' values in the same
    order (one entry of target_shape may be -1: whatever size is left)."""

    output_dtype = None

    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        target = tuple(int(d) for d in target_shape)
        if any(d == 0 or d < -1 for d in target) or target.count(-1) > 1:
            raise ValueError(f"Reshape: target_shape must hold positive sizes and at most one "
                             f"-1, got {target_shape!r}")
        self.target_shape = target

    def compute_output_shape(self, input_shape):
        size = None if None in input_shape[1:] else math.prod(input_shape[1:])
        known = math.prod(d for d in self.target_shape if d != -1)
        if -1 in self.target_shape:
            if size is not None and size % known:
                raise ValueError(f"{self.name}: cannot reshape samples of shape "
                                 f"{tuple(input_shape[1:])} to {self.target_shape}")
            free = None if size is None else size // known
            return (input_shape[0],) + tuple(free if d == -1 else d for d in self.target_shape)
        if size is not None and size != known:
            raise ValueError(f"{self.name}: cannot reshape samples of shape "
                             f"{tuple(input_shape[1:])} ({size} values) to {self.target_shape} "
                             f"({known} values)")
        return (input_shape[0],) + self.target_shape

    def forward(self, x, training=False):
        x = _samples(self, x)
        try:
            y = x.reshape((len(x),) + self.target_shape)
        except ValueError:
            raise ValueError(f"{self.name}: cannot reshape samples of shape {x.shape[1:]} to "
                             f"{self.target_shape}") from None
        self.save(x.shape, y.shape)
        return y

    def backward(self, dy):
        x_shape, y_shape = self.saved
        return self._check_dy(dy, y_shape).reshape(x_shape)

    def get_config(self):
        return {"name": self.name, "target_shape": list(self.target_shape)}


class Permute(Layer):
    """Reorders the axes of each sample: dims is a permutation of 1..rank
    (the batch axis 0 stays first), e.g. Permute((2, 1)) swaps the last two
    axes of (batch, a, b). The result is copied into a buffer, so the layers
    after it read a contiguous array."""

    output_dtype = None

    def __init__(self, dims, **kwargs):
        super().__init__(**kwargs)
        dims = tuple(int(d) for d in dims)
        if sorted(dims) != list(range(1, len(dims) + 1)):
            raise ValueError(f"Permute: dims must be a permutation of 1..{len(dims)}, got {dims!r}")
        self.dims = dims
        self._axes = (0,) + dims
        self._inverse = tuple(int(a) for a in np.argsort(self._axes))

    def compute_output_shape(self, input_shape):
        if len(input_shape) != len(self._axes):
            raise ValueError(f"{self.name}: dims {self.dims} needs samples with {len(self.dims)} "
                             f"axes, got shape {tuple(input_shape)}")
        return tuple(input_shape[a] for a in self._axes)

    def forward(self, x, training=False):
        x = _samples(self, x)
        if x.ndim != len(self._axes):
            raise ValueError(f"{self.name}: dims {self.dims} needs samples with {len(self.dims)} "
                             f"axes, got input of shape {x.shape}")
        view = x.transpose(self._axes)
        y = self.buffer("y", view.shape, x.dtype)
        np.copyto(y, view)
        self.save(x.shape, y.shape)
        return y

    def backward(self, dy):
        x_shape, y_shape = self.saved
        dx = self.buffer("dx", x_shape)
        np.copyto(dx, self._check_dy(dy, y_shape).transpose(self._inverse))
        return dx

    def get_config(self):
        return {"name": self.name, "dims": list(self.dims)}
