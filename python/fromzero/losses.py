"""Losses: how wrong a prediction is, and the gradient that says how to fix it.

    MeanSquaredError            L = mean_i mean_j (p_ij − t_ij)²
    SparseCategoricalCrossentropy  L = mean_i −log p_i,y_i          (y_i a class index)
    CategoricalCrossentropy     L = mean_i −Σ_j t_ij log p_ij        (t_i one-hot)
    BinaryCrossentropy          L = mean_i mean_j −[t log p + (1−t) log(1−p)]

``loss(y_true, y_pred)`` is the batch mean (Keras's reduction);
``loss.call(y_true, y_pred)`` the loss of each sample; ``loss.gradient(y_true,
y_pred)`` is ∂loss/∂y_pred, the gradient of the batch mean. With
``from_logits=True`` y_pred holds logits and softmax/sigmoid is applied inside
the loss, fused and numerically stable (log-sum-exp). Each value and gradient
of these four is one C++ pass (csrc/losses.h).

When a softmax output layer meets a cross-entropy loss, the model skips the
softmax Jacobian: ∂L/∂logits = (p − onehot) / batch, the fused gradient the
big frameworks use (see ``softmax_gradient``).

**Your own loss** subclasses Loss with two methods, ``call`` and ``gradient``
(see Loss). A plain function ``loss=my_fn`` is refused: fromzero has no
autodiff — every gradient is a backward pass written by hand — so a loss must
say what its gradient is.

What a training loop calls, for every loss (built-in or yours):
    targets = loss.prepare_targets(y_true, y_pred_shape)   once, before the batches
    total = loss.value_and_gradient(y_pred, targets, row_loss, grad)   per training batch:
            Σ of the per-sample losses; ∂(batch mean)/∂y_pred written into grad
    total = loss.value(y_pred, targets, row_loss)          per evaluation batch
and, only when ``loss.fuses_with_softmax`` and the output layer is a softmax,
``loss.softmax_gradient(probs, targets, out)`` instead of value_and_gradient's gradient.
"""

import re

import numpy as np

from . import _core, utils


_CLASSES = {}  # every Loss subclass by lower-case class name (from_config)


class Loss:
    """The base class of every loss, and how to write your own.

    Subclass it and define two methods:

        call(y_true, y_pred)      the loss of each sample: an array whose first
                                  axis is the batch, e.g. shape (batch,)
        gradient(y_true, y_pred)  ∂L/∂y_pred, an array shaped like y_pred, where
                                  L = the mean of call(y_true, y_pred) — the
                                  number loss(y_true, y_pred) returns

    For example, the mean absolute error, |p − t| averaged over the outputs:

        class MeanAbsoluteError(fz.losses.Loss):
            def call(self, y_true, y_pred):
                return np.mean(np.abs(y_pred - y_true), axis=-1)

            def gradient(self, y_true, y_pred):
                return np.sign(y_pred - y_true) / y_pred.size  # 1/(batch·outputs) per value

    Both receive float32 arrays: y_pred of shape (batch, ...) and y_true as
    prepare_targets made it (float32, with a last axis of 1 added when y_pred
    has one output and y_true none, as Keras). ``fz.utils.check_gradients(
    loss, y_pred, y_true)`` compares gradient with finite differences.

    Why two methods, when Keras takes any function of (y_true, y_pred)?
    Keras differentiates your function automatically; fromzero has no
    autodiff. Every gradient in it — of each layer and of each loss — is a
    backward pass written by hand, as the textbook derives them. So a loss
    must say what its gradient is, and a plain function is refused.
    """

    #: True for the cross-entropies that take probabilities, so that a softmax
    #: output layer can receive the fused gradient p − t directly.
    fuses_with_softmax = False
    sparse_targets = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        utils.register_class(cls, _CLASSES)

    def __init__(self, name=None):
        # Keras's default name: the class name in snake_case (MeanAbsoluteError → mean_absolute_error)
        self.name = name or re.sub(r"(?<!^)(?=[A-Z])", "_", type(self).__name__).lower()

    # ------------------------------------------------------------ what a subclass defines

    def call(self, y_true, y_pred):
        """The loss of each sample, an array of shape (batch, ...)."""
        raise NotImplementedError(_how_to_subclass(type(self).__name__, "call"))

    def gradient(self, y_true, y_pred):
        """∂(mean loss)/∂y_pred, an array shaped like y_pred."""
        raise NotImplementedError(_how_to_subclass(type(self).__name__, "gradient"))

    # ------------------------------------------------------------ built on those two

    def __call__(self, y_true, y_pred):
        """The mean loss over the batch, a Python float."""
        pred = self._as_pred(y_pred)
        return float(np.mean(self._per_sample(self.prepare_targets(y_true, pred.shape), pred)))

    def value(self, y_pred, targets, row_loss):
        """Sum of the per-sample losses (no gradient). `targets` comes from
        prepare_targets; row_loss, of shape (batch,), receives each sample's loss."""
        row_loss[...] = self._per_sample(targets, y_pred)
        return float(np.sum(row_loss, dtype=np.float64))

    def value_and_gradient(self, y_pred, targets, row_loss, grad):
        """Sum of the per-sample losses, with ∂(mean)/∂y_pred written into `grad`."""
        total = self.value(y_pred, targets, row_loss)
        g = np.asarray(self.gradient(targets, y_pred))
        if g.shape != np.shape(y_pred):
            raise ValueError(f"{self.name}: gradient() returned shape {g.shape}, but it must have "
                             f"y_pred's shape {np.shape(y_pred)}")
        if g.dtype.kind not in "fiub":
            raise TypeError(f"{self.name}: gradient() returned dtype {g.dtype}, not numbers")
        grad[...] = g
        return total

    def prepare_targets(self, y_true, pred_shape):
        """y_true as `call` and `gradient` receive it: float32 (batch, ...); with
        one output, (batch,) targets become (batch, 1), as Keras does."""
        t = np.asarray(y_true)
        if t.dtype.kind not in "fiub":
            raise TypeError(f"{self.name}: y_true must hold numbers, got dtype {t.dtype}")
        t = np.ascontiguousarray(t, dtype=np.float32)
        if t.ndim == len(pred_shape) - 1 and pred_shape[-1] == 1:
            t = t.reshape(t.shape + (1,))
        if t.ndim == 0 or len(t) != pred_shape[0]:
            raise ValueError(f"{self.name}: y_true has {'no batch axis' if t.ndim == 0 else len(t)} "
                             f"samples but y_pred has {pred_shape[0]} (shape {tuple(pred_shape)})")
        return t

    def _per_sample(self, targets, y_pred):
        """call()'s result, checked, as one float per sample (the mean over any
        further axes, so that their mean over the batch is the loss)."""
        per = np.asarray(self.call(targets, y_pred))
        if per.dtype.kind not in "fiub":
            raise TypeError(f"{self.name}: call() returned dtype {per.dtype}, not numbers")
        if per.ndim == 0 or len(per) != len(y_pred):
            raise ValueError(f"{self.name}: call() must return one loss per sample (first axis "
                             f"{len(y_pred)}), got shape {per.shape}")
        return per.reshape(len(per), -1).mean(axis=1) if per.ndim > 1 else per

    def _as_pred(self, y_pred):
        p = np.asarray(y_pred)
        if p.dtype.kind not in "fiub":
            raise TypeError(f"{self.name}: y_pred must hold numbers, got dtype {p.dtype}")
        if p.ndim == 1:
            p = p.reshape(-1, 1)
        if p.ndim < 2 or len(p) == 0:
            raise ValueError(f"{self.name}: y_pred must be a non-empty (batch, outputs) array, "
                             f"got shape {np.shape(y_pred)}")
        return np.ascontiguousarray(p, dtype=np.float32)

    def get_config(self):
        """The constructor arguments (a subclass taking more than `name` adds its own)."""
        return {"name": self.name}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


# What every refusal below shows: a loss is a Loss subclass with call and gradient.
_RECIPE = """fromzero has no autodiff — every gradient in it is written by hand — so a loss is a
subclass of fromzero.losses.Loss that gives its gradient too:

    class MeanAbsoluteError(fz.losses.Loss):
        def call(self, y_true, y_pred):        # the loss of each sample
            return np.mean(np.abs(y_pred - y_true), axis=-1)

        def gradient(self, y_true, y_pred):    # ∂(mean of call)/∂y_pred
            return np.sign(y_pred - y_true) / y_pred.size
"""


def _how_to_subclass(cls_name, missing):
    return f"{cls_name} must define {missing}(y_true, y_pred). " + _RECIPE


class _KernelLoss(Loss):
    """The built-in losses: each value and gradient is one C++ kernel
    (self._kernel) over (batch, outputs) rows. A subclass that overrides call
    or gradient is computed from them instead, so an override always runs."""

    def _uses_kernels(self):
        cls = type(self)
        return cls.call is _KernelLoss.call and cls.gradient is _KernelLoss.gradient

    def call(self, y_true, y_pred):
        pred = self._as_pred(y_pred)
        row_loss = np.empty(len(pred), np.float32)
        self._kernel(pred, self.prepare_targets(y_true, pred.shape), row_loss=row_loss)
        return row_loss

    def __call__(self, y_true, y_pred):
        if not self._uses_kernels():
            return super().__call__(y_true, y_pred)
        pred = self._as_pred(y_pred)
        return self._kernel(pred, self.prepare_targets(y_true, pred.shape)) / len(pred)

    def gradient(self, y_true, y_pred):
        y_pred = np.asarray(y_pred)
        pred = self._as_pred(y_pred)
        _, grad = self._kernel(pred, self.prepare_targets(y_true, pred.shape),
                               1.0 / len(pred), want_grad=True)
        return grad.reshape(y_pred.shape)

    def value_and_gradient(self, y_pred, targets, row_loss, grad):
        if not self._uses_kernels():
            return super().value_and_gradient(y_pred, targets, row_loss, grad)
        total, _ = self._kernel(y_pred, targets, 1.0 / len(y_pred), row_loss=row_loss, grad=grad)
        return total

    def value(self, y_pred, targets, row_loss):
        if not self._uses_kernels():
            return super().value(y_pred, targets, row_loss)
        return self._kernel(y_pred, targets, row_loss=row_loss)

    def prepare_targets(self, y_true, pred_shape):
        """y_true as the kernel wants it: float32 (batch, cols) like y_pred."""
        t = np.asarray(y_true)
        if t.dtype.kind not in "fiub":
            raise TypeError(f"{self.name}: y_true must hold numbers, got dtype {t.dtype}")
        t = np.ascontiguousarray(t, dtype=np.float32)
        if t.ndim == 1 and pred_shape[1] == 1:
            t = t.reshape(-1, 1)
        if t.shape != tuple(pred_shape):
            raise ValueError(f"{self.name}: y_true has shape {np.shape(y_true)} but y_pred has "
                             f"shape {tuple(pred_shape)}")
        return t

    def _as_pred(self, y_pred):
        p = super()._as_pred(y_pred)
        if p.ndim != 2:
            raise ValueError(f"{self.name}: y_pred must be a non-empty (batch, outputs) array, "
                             f"got shape {np.shape(y_pred)}")
        return p


class _Crossentropy(_KernelLoss):
    def __init__(self, from_logits, name, kernel, kernel_from_logits):
        super().__init__(name)
        self.from_logits = bool(from_logits)
        self._kernel = kernel_from_logits if self.from_logits else kernel

    @property
    def fuses_with_softmax(self):
        # The fused gradient p − t is this loss's own gradient through a softmax,
        # so it stands in for gradient() only when gradient() is the built-in one.
        return not self.from_logits and self._uses_kernels()

    def softmax_gradient(self, probs, targets, out):
        """∂(mean loss)/∂logits for probs = softmax(logits): (p − t) / batch."""
        return _core.softmax_crossentropy_backward(probs, targets, self.sparse_targets,
                                                   1.0 / len(probs), out)

    def get_config(self):
        return {"name": self.name, "from_logits": self.from_logits}


class SparseCategoricalCrossentropy(_Crossentropy):
    """Cross-entropy with integer class labels y_true of shape (batch,)."""

    sparse_targets = True

    def __init__(self, from_logits=False, name="sparse_categorical_crossentropy"):
        super().__init__(from_logits, name, _core.sparse_categorical_crossentropy,
                         _core.sparse_categorical_crossentropy_from_logits)

    def prepare_targets(self, y_true, pred_shape):
        """Labels as an integer array of shape (batch,). Integral floats
        (3.0) are accepted as Keras does; the range is checked in C++."""
        y = np.asarray(y_true)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y.reshape(-1)
        if y.ndim != 1 or len(y) != pred_shape[0]:
            raise ValueError(f"{self.name}: labels must have shape ({pred_shape[0]},), "
                             f"got {np.shape(y_true)}")
        if y.dtype.kind == "f":
            if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
                raise ValueError(f"{self.name}: labels must be whole numbers (class indices)")
        elif y.dtype.kind not in "iub":
            raise TypeError(f"{self.name}: labels must be integers, got dtype {y.dtype}")
        if y.size and (y.min() < 0 or y.max() >= pred_shape[1]):
            bad = y[(y < 0) | (y >= pred_shape[1])][0]
            raise ValueError(f"{self.name}: label {bad} is outside [0, {pred_shape[1]}) — the "
                             f"model has {pred_shape[1]} outputs")
        return np.ascontiguousarray(y, dtype=np.int32)


class CategoricalCrossentropy(_Crossentropy):
    """Cross-entropy with one-hot (or soft) targets y_true of shape (batch, classes)."""

    def __init__(self, from_logits=False, name="categorical_crossentropy"):
        super().__init__(from_logits, name, _core.categorical_crossentropy,
                         _core.categorical_crossentropy_from_logits)


class MeanSquaredError(_KernelLoss):
    def __init__(self, name="mean_squared_error"):
        super().__init__(name)
        self._kernel = _core.mean_squared_error


class BinaryCrossentropy(_KernelLoss):
    """Cross-entropy for independent yes/no outputs (sigmoid)."""

    def __init__(self, from_logits=False, name="binary_crossentropy"):
        super().__init__(name)
        self.from_logits = bool(from_logits)
        self._kernel = (_core.binary_crossentropy_from_logits if self.from_logits
                        else _core.binary_crossentropy)

    def get_config(self):
        return {"name": self.name, "from_logits": self.from_logits}


_BY_NAME = {
    "mse": MeanSquaredError,
    "mean_squared_error": MeanSquaredError,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "binary_crossentropy": BinaryCrossentropy,
}


def get(spec):
    """A Loss object from a Keras name or a Loss (returned as is). A plain
    function is refused with the reason (no autodiff) and the way to write it
    as a Loss; so is a Loss subclass that lacks call or gradient."""
    if isinstance(spec, Loss):
        cls = type(spec)
        for method in ("call", "gradient"):
            if getattr(cls, method) is getattr(Loss, method):
                raise TypeError(_how_to_subclass(cls.__name__, method))
        return spec
    if isinstance(spec, type) and issubclass(spec, Loss):
        raise TypeError(f"loss must be a Loss object, got the class {spec.__name__}: write "
                        f"{spec.__name__}() to create one")
    if callable(spec):
        name = getattr(spec, "__name__", type(spec).__name__)
        raise TypeError(f"loss={name!r} is a plain function, but fromzero also needs its gradient. "
                        + _RECIPE)
    if not isinstance(spec, str):
        raise TypeError(f"loss must be a name such as 'mse' or a fromzero.losses.Loss, got {spec!r}")
    return utils.lookup("loss", spec, _BY_NAME)()


def from_config(config):
    """The loss utils.serialize saved ({"class", "config"}), or, from files
    before format 3, a config keyed by its Keras name."""
    if set(config) == {"class", "config"}:
        return utils.deserialize("loss", config, _CLASSES)
    config = dict(config)
    cls = utils.lookup("loss", config.pop("name"), _BY_NAME)
    return cls(**config)
