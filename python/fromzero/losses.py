"""Losses: how wrong a prediction is, and the gradient that says how to fix it.

    MeanSquaredError            L = mean_i mean_j (p_ij − t_ij)²
    SparseCategoricalCrossentropy  L = mean_i −log p_i,y_i          (y_i a class index)
    CategoricalCrossentropy     L = mean_i −Σ_j t_ij log p_ij        (t_i one-hot)
    BinaryCrossentropy          L = mean_i mean_j −[t log p + (1−t) log(1−p)]

``loss(y_true, y_pred)`` is the batch mean (Keras's reduction);
``loss.gradient(y_true, y_pred)`` is ∂loss/∂y_pred. With ``from_logits=True``
y_pred holds logits and softmax/sigmoid is applied inside the loss, fused and
numerically stable (log-sum-exp). Each value and gradient is one C++ pass
(csrc/losses.h).

When a softmax output layer meets a cross-entropy loss, the model skips the
softmax Jacobian: ∂L/∂logits = (p − onehot) / batch, the fused gradient the
big frameworks use (see ``softmax_gradient``).
"""

import numpy as np

from . import _core, utils


class Loss:
    #: True for the cross-entropies that take probabilities, so that a softmax
    #: output layer can receive the fused gradient p − t directly.
    fuses_with_softmax = False
    sparse_targets = False

    def __init__(self, name):
        self.name = name

    def __call__(self, y_true, y_pred):
        """The mean loss over the batch, a Python float."""
        pred = self._as_pred(y_pred)
        return self._kernel(pred, self.prepare_targets(y_true, pred.shape)) / len(pred)

    def gradient(self, y_true, y_pred):
        """∂(mean loss)/∂y_pred, an array shaped like y_pred."""
        y_pred = np.asarray(y_pred)
        pred = self._as_pred(y_pred)
        _, grad = self._kernel(pred, self.prepare_targets(y_true, pred.shape),
                               1.0 / len(pred), want_grad=True)
        return grad.reshape(y_pred.shape)

    def value_and_gradient(self, y_pred, targets, row_loss, grad):
        """Sum of the row losses, with ∂(mean)/∂y_pred written into `grad`.
        `targets` comes from prepare_targets; the buffers from the caller."""
        total, _ = self._kernel(y_pred, targets, 1.0 / len(y_pred), row_loss=row_loss, grad=grad)
        return total

    def value(self, y_pred, targets, row_loss):
        """Sum of the row losses (no gradient)."""
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
        p = np.asarray(y_pred)
        if p.dtype.kind not in "fiub":
            raise TypeError(f"{self.name}: y_pred must hold numbers, got dtype {p.dtype}")
        if p.ndim == 1:
            p = p.reshape(-1, 1)
        if p.ndim != 2 or len(p) == 0:
            raise ValueError(f"{self.name}: y_pred must be a non-empty (batch, outputs) array, "
                             f"got shape {np.shape(y_pred)}")
        return np.ascontiguousarray(p, dtype=np.float32)

    def get_config(self):
        return {"name": self.name}


class _Crossentropy(Loss):
    def __init__(self, from_logits, name, kernel, kernel_from_logits):
        super().__init__(name)
        self.from_logits = bool(from_logits)
        self._kernel = kernel_from_logits if self.from_logits else kernel
        self.fuses_with_softmax = not self.from_logits

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


class MeanSquaredError(Loss):
    def __init__(self, name="mean_squared_error"):
        super().__init__(name)
        self._kernel = _core.mean_squared_error


class BinaryCrossentropy(Loss):
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
    """A Loss object from a Keras name or a Loss (returned as is)."""
    if isinstance(spec, Loss):
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"loss must be a name such as 'mse' or a fromzero.losses.Loss, got {spec!r}")
    return utils.lookup("loss", spec, _BY_NAME)()


def from_config(config):
    config = dict(config)
    cls = utils.lookup("loss", config.pop("name"), _BY_NAME)
    return cls(**config)
