"""Weight penalties against overfitting: they add a cost for large weights.

    L1(l):  penalty = l · Σ|W|     gradient  l · sign(W)
    L2(l):  penalty = l · Σ W²     gradient  2 l · W      (Keras's default l = 0.01)
The penalty is added to the loss and its gradient to ∂L/∂W, so gradient
descent shrinks the weights a little at every step ("weight decay").
"""

import numpy as np

from . import utils


_CLASSES = {}  # every Regularizer subclass by lower-case class name (get)


class Regularizer:
    """penalty = l1 · Σ|W| + l2 · Σ W². A subclass (a penalty of your own)
    defines __call__, add_gradient and get_config."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        utils.register_class(cls, _CLASSES)

    def __init__(self, l1=0.0, l2=0.0):
        self.l1 = utils.check_number(type(self).__name__, "l1", l1, 0)
        self.l2 = utils.check_number(type(self).__name__, "l2", l2, 0)

    def __call__(self, w):
        return self.l1 * float(np.abs(w).sum()) + self.l2 * float(np.square(w, dtype=np.float64).sum())

    def add_gradient(self, w, grad):
        """grad += ∂penalty/∂w, in place."""
        if self.l1:
            grad += self.l1 * np.sign(w)
        if self.l2:
            grad += (2 * self.l2) * w

    def get_config(self):
        return {"l1": self.l1, "l2": self.l2}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class L1(Regularizer):
    def __init__(self, l1=0.01):
        super().__init__(l1=l1)

    def get_config(self):
        return {"l1": self.l1}


class L2(Regularizer):
    def __init__(self, l2=0.01):
        super().__init__(l2=l2)

    def get_config(self):
        return {"l2": self.l2}


class L1L2(Regularizer):
    pass


def get(spec):
    """None, a Regularizer, a name ("l1", "l2", "l1_l2") with Keras's defaults,
    or a saved config: {"class", "config"} (serialize), or {"l1": ..., "l2": ...}
    (files before format 3)."""
    if spec is None or isinstance(spec, Regularizer):
        return spec
    if isinstance(spec, dict):
        if set(spec) == {"class", "config"}:
            return utils.deserialize("regularizer", spec, _CLASSES)
        return L1L2(**spec)
    names = {"l1": L1, "l2": L2, "l1_l2": lambda: L1L2(0.01, 0.01)}
    return utils.lookup("regularizer", spec, names)()


def serialize(reg):
    return None if reg is None else utils.serialize(reg)
