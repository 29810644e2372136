"""Merge layers: several tensors in, one out — the joins of a graph, such as
the residual connection y = x + f(x) (Add). Called on a list:
``fz.layers.Add()([a, b])``; backward returns one gradient per input, in
the same order. Each pass reads and writes every value once, so they are
NumPy ufuncs writing into the layer's buffers (out=), no kernels.

    Add          y = Σ xᵢ               ∂y/∂xᵢ = 1:            dxᵢ = dy
    Subtract     y = x₀ − x₁            dx₀ = dy,  dx₁ = −dy
    Multiply     y = Π xᵢ               dxᵢ = dy ⊙ Π_{j≠i} xⱼ
    Average      y = (1/n) Σ xᵢ         dxᵢ = dy / n
    Concatenate  y = [x₀, x₁, ...] along an axis   dxᵢ = the slice of dy that xᵢ became
"""

import numpy as np

from .base import Layer, as_float32


def _describe(shapes):
    return ", ".join(str(tuple(s)) for s in shapes)


class _Merge(Layer):
    """What the merge layers share: a list of at least two inputs, checked."""

    min_inputs, max_inputs = 2, None

    def _check_count(self, n):
        if n < self.min_inputs or (self.max_inputs is not None and n > self.max_inputs):
            count = (self.min_inputs if self.max_inputs == self.min_inputs
                     else f"at least {self.min_inputs}")
            raise ValueError(f"{self.name}: {type(self).__name__} takes a list of {count} inputs, "
                             f"got {n}")

    def compute_output_shape(self, input_shape):
        shapes = _shape_list(self, input_shape)
        out = list(shapes[0])
        for shape in shapes[1:]:
            if len(shape) != len(out) or any(a is not None and b is not None and a != b
                                             for a, b in zip(shape, out)):
                raise ValueError(f"{self.name}: {type(self).__name__} needs inputs of the same "
                                 f"shape, got {_describe(shapes)}")
            out = [a if a is not None else b for a, b in zip(out, shape)]
        return tuple(out)

    def _input_list(self, inputs):
        if not isinstance(inputs, (list, tuple)):
            raise TypeError(f"{self.name}: {type(self).__name__} is called on a list of "
                            f"tensors, e.g. {type(self).__name__}()([a, b])")
        self._check_count(len(inputs))
        return [as_float32(x) for x in inputs]

    def _inputs(self, inputs):
        xs = self._input_list(inputs)
        if any(x.shape != xs[0].shape for x in xs):
            raise ValueError(f"{self.name}: {type(self).__name__} needs inputs of the same "
                             f"shape, got {_describe(x.shape for x in xs)}")
        return xs

    def _sum(self, xs):
        """x₀ + x₁ + ..., summed in order into the buffer "y"."""
        y = self.buffer("y", xs[0].shape)
        np.add(xs[0], xs[1], out=y)
        for x in xs[2:]:
            np.add(y, x, out=y)
        return y


def _shape_list(layer, input_shape):
    if not isinstance(input_shape, list) or not all(isinstance(s, tuple) for s in input_shape):
        raise TypeError(f"{layer.name}: {type(layer).__name__} is called on a list of tensors, "
                        f"e.g. {type(layer).__name__}()([a, b])")
    layer._check_count(len(input_shape))
    return input_shape


class Add(_Merge):
    """y = x₀ + x₁ + ...; each input's gradient is dy itself."""

    time_steps = "each"  # (Layer.time_steps)

    def forward(self, inputs, training=False):
        xs = self._inputs(inputs)
        y = self._sum(xs)
        self.save(y.shape, len(xs))
        return y

    def backward(self, dy):
        shape, n = self.saved
        dy = self._check_dy(dy, shape)
        return [dy] * n


class Subtract(_Merge):
    """y = x₀ − x₁; dx₀ = dy, dx₁ = −dy."""

    time_steps = "each"  # (Layer.time_steps)

    max_inputs = 2

    def forward(self, inputs, training=False):
        x0, x1 = self._inputs(inputs)
        y = np.subtract(x0, x1, out=self.buffer("y", x0.shape))
        self.save(y.shape)
        return y

    def backward(self, dy):
        (shape,) = self.saved
        dy = self._check_dy(dy, shape)
        return [dy, np.negative(dy, out=self.buffer("dx1", shape))]


class Multiply(_Merge):
    """y = x₀ ⊙ x₁ ⊙ ...; dxᵢ = dy ⊙ (the product of the other inputs)."""

    time_steps = "each"  # (Layer.time_steps)

    def forward(self, inputs, training=False):
        xs = self._inputs(inputs)
        y = self.buffer("y", xs[0].shape)
        np.multiply(xs[0], xs[1], out=y)
        for x in xs[2:]:
            np.multiply(y, x, out=y)
        if training:
            self.save(y.shape, xs)
        return y

    def backward(self, dy):
        shape, xs = self.saved
        dy = self._check_dy(dy, shape)
        grads = []
        for i in range(len(xs)):
            dx = self.buffer(f"dx{i}", shape)
            np.copyto(dx, dy)
            for j, x in enumerate(xs):
                if j != i:
                    np.multiply(dx, x, out=dx)
            grads.append(dx)
        return grads


class Average(_Merge):
    """y = (x₀ + x₁ + ...) / n; each input's gradient is dy / n."""

    time_steps = "each"  # (Layer.time_steps)

    def forward(self, inputs, training=False):
        xs = self._inputs(inputs)
        y = self._sum(xs)
        np.multiply(y, np.float32(1 / len(xs)), out=y)
        self.save(y.shape, len(xs))
        return y

    def backward(self, dy):
        shape, n = self.saved
        dx = np.multiply(self._check_dy(dy, shape), np.float32(1 / n), out=self.buffer("dx", shape))
        return [dx] * n


class Concatenate(_Merge):
    """Joins the inputs along `axis` (default the last); the other axes must
    agree. Backward hands each input its slice of dy (copied, contiguous)."""

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise TypeError(f"Concatenate: axis must be an integer, got {axis!r}")
        self.axis = int(axis)

    def _axis(self, rank):
        axis = self.axis + rank if self.axis < 0 else self.axis
        if not 1 <= axis < rank:
            raise ValueError(f"{self.name}: axis {self.axis} is not a sample axis of inputs with "
                             f"{rank} axes (the batch axis 0 cannot be concatenated)")
        return axis

    def compute_output_shape(self, input_shape):
        shapes = _shape_list(self, input_shape)
        rank = len(shapes[0])
        axis = self._axis(rank)
        out = list(shapes[0])
        for shape in shapes[1:]:
            if len(shape) != rank or any(k != axis and a is not None and b is not None and a != b
                                         for k, (a, b) in enumerate(zip(shape, out))):
                raise ValueError(f"{self.name}: Concatenate(axis={self.axis}) needs inputs that "
                                 f"agree on every other axis, got {_describe(shapes)}")
            out = [a if a is not None else b for a, b in zip(out, shape)]
        sizes = [s[axis] for s in shapes]
        out[axis] = None if None in sizes else sum(sizes)
        return tuple(out)

    def forward(self, inputs, training=False):
        xs = self._input_list(inputs)
        axis = self._axis(xs[0].ndim)
        shape = list(xs[0].shape)
        shape[axis] = sum(x.shape[axis] for x in xs)
        try:
            y = np.concatenate(xs, axis=axis, out=self.buffer("y", tuple(shape)))
        except ValueError:
            raise ValueError(f"{self.name}: Concatenate(axis={self.axis}) needs inputs that agree "
                             f"on every other axis, got {_describe(x.shape for x in xs)}") from None
        self.save(y.shape, axis, [x.shape[axis] for x in xs])
        return y

    def backward(self, dy):
        shape, axis, sizes = self.saved
        dy = self._check_dy(dy, shape)
        grads, start = [], 0
        for i, size in enumerate(sizes):
            piece = dy[(slice(None),) * axis + (slice(start, start + size),)]
            dx = self.buffer(f"dx{i}", piece.shape)
            np.copyto(dx, piece)
            grads.append(dx)
            start += size
        return grads

    def get_config(self):
        return {"name": self.name, "axis": self.axis}
