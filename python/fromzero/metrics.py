"""Metrics: numbers that say how good a model is, accumulated batch by batch.

    accuracy = correct predictions / all predictions

A metric has ``reset_state()``, ``update_state(y_true, y_pred)`` and
``result()``, as in Keras. "accuracy" picks its meaning from the shapes, as
Keras does from the loss: integer labels against (batch, classes) scores
compare the argmax with the label; one-hot targets compare argmaxes; a single
output column is a yes/no prediction thresholded at 0.5.
"""

import numpy as np

from . import _core, utils


class Metric:
    def __init__(self, name):
        self.name = name
        self.reset_state()

    def reset_state(self):
        raise NotImplementedError

    def update_state(self, y_true, y_pred):
        raise NotImplementedError

    def result(self):
        raise NotImplementedError


class Accuracy(Metric):
    def __init__(self, name="accuracy"):
        super().__init__(name)

    def reset_state(self):
        self.correct = 0
        self.total = 0

    def update_state(self, y_true, y_pred):
        y_pred = np.asarray(y_pred)
        y_true = np.asarray(y_true)
        if y_pred.ndim == 2 and y_pred.shape[1] > 1:
            if y_true.ndim == 2 and y_true.shape == y_pred.shape:  # one-hot targets
                labels = _core.argmax(y_true)
            else:
                labels = y_true.reshape(-1)
            self.correct += _core.count_correct(y_pred, labels)  # argmax(p) == label, in C++
        else:  # one output: a probability thresholded at 0.5
            if y_true.size != y_pred.size:
                raise ValueError(f"accuracy: y_true has shape {y_true.shape} but y_pred has "
                                 f"shape {y_pred.shape}")
            self.correct += int(np.count_nonzero((y_pred.reshape(-1) > 0.5) == (y_true.reshape(-1) > 0.5)))
        self.total += len(y_pred)

    def result(self):
        return self.correct / self.total if self.total else 0.0


_BY_NAME = {"accuracy": Accuracy, "acc": Accuracy}


def get(spec):
    """A Metric from a name or a Metric (returned as is)."""
    if isinstance(spec, Metric):
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"metric must be a name such as 'accuracy' or a fromzero.metrics.Metric, "
                        f"got {spec!r}")
    return utils.lookup("metric", spec, _BY_NAME)()
