"""Optimizers: how a gradient becomes a step. All start from gradient descent,

    θ ← θ − α ∇J(θ)

and differ in how they shape the step (formulas in csrc/optimizers.h, which
follow Keras 3 exactly):
    SGD      momentum keeps a running velocity, Nesterov looks ahead along it
    Adam     per-weight steps from running means of g and g², bias-corrected
    AdamW    Adam with decoupled weight decay (θ ← θ − α·wd·θ before the step)
    RMSprop  divides the step by a running root-mean-square of g

``opt.apply_gradients(zip(grads, params))`` updates the float32 arrays in
place, one C++ call per array; the optimizer's state (velocities, moments)
is kept per parameter array and created on first use.
"""

import math

import numpy as np

from . import _core, utils


def _check_number(owner, name, value, low, high, low_inclusive=True):
    ok = isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool)
    ok = ok and math.isfinite(value) and (value >= low if low_inclusive else value > low) and value <= high
    if not ok:
        bracket = "[" if low_inclusive else "("
        raise ValueError(f"{owner}: {name} must be a number in {bracket}{low}, {high}], got {value!r}")
    return float(value)


class Optimizer:
    #: how many state arrays (shaped like the parameter) the update needs
    num_slots = 0

    def __init__(self, learning_rate, weight_decay=None):
        name = type(self).__name__
        self.learning_rate = _check_number(name, "learning_rate", learning_rate, 0, math.inf, False)
        self.weight_decay = 0.0 if weight_decay is None else _check_number(
            name, "weight_decay", weight_decay, 0, math.inf)
        self.iterations = 0
        self._slots = {}  # id(param) -> (param, [state arrays])

    def apply_gradients(self, grads_and_vars):
        """One step: every (gradient, parameter) pair is updated in place."""
        pairs = list(grads_and_vars)
        for i, (g, p) in enumerate(pairs):
            if not (isinstance(p, np.ndarray) and p.dtype == np.float32 and p.flags.c_contiguous
                    and p.flags.writeable):
                raise TypeError(f"{type(self).__name__}: parameter {i} must be a writable float32 "
                                f"C-contiguous numpy array, got "
                                f"{type(p).__name__} {getattr(p, 'dtype', '')}")
            if np.shape(g) != p.shape:
                raise ValueError(f"{type(self).__name__}: gradient {i} has shape {np.shape(g)} "
                                 f"but its parameter has shape {p.shape}")
        self.iterations += 1
        for g, p in pairs:
            self._update(p, g, self._state(p))

    def _state(self, p):
        entry = self._slots.get(id(p))
        if entry is None or entry[0] is not p:  # keep p alive so its id stays unique
            entry = self._slots[id(p)] = (p, [np.zeros_like(p) for _ in range(self.num_slots)])
        return entry[1]

    def _update(self, param, grad, state):
        raise NotImplementedError

    def get_config(self):
        config = {k: v for k, v in vars(self).items() if not k.startswith("_") and k != "iterations"}
        return {"name": type(self).__name__.lower(), **config}


class SGD(Optimizer):
    """θ ← θ − α g;  with momentum μ: v ← μ v − α g, θ ← θ + v (Nesterov: θ ← θ + μ v − α g)."""

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, weight_decay=None):
        super().__init__(learning_rate, weight_decay)
        self.momentum = _check_number("SGD", "momentum", momentum, 0, 1)
        self.nesterov = bool(nesterov)

    @property
    def num_slots(self):
        return 1 if self.momentum > 0 else 0

    def _update(self, p, g, state):
        _core.sgd_update(p, g, state[0] if state else None, self.learning_rate, self.momentum,
                         self.nesterov, self.weight_decay)


class Adam(Optimizer):
    """m ← β1 m + (1−β1) g;  v ← β2 v + (1−β2) g²;  θ ← θ − α √(1−β2ᵗ)/(1−β1ᵗ) · m / (√v + ε)."""

    num_slots = 2

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 weight_decay=None):
        super().__init__(learning_rate, weight_decay)
        self.beta_1 = _check_number("Adam", "beta_1", beta_1, 0, 1)
        self.beta_2 = _check_number("Adam", "beta_2", beta_2, 0, 1)
        self.epsilon = _check_number("Adam", "epsilon", epsilon, 0, math.inf)

    def _update(self, p, g, state):
        m, v = state
        _core.adam_update(p, g, m, v, self.learning_rate, self.beta_1, self.beta_2, self.epsilon,
                          self.iterations, self.weight_decay)


class AdamW(Adam):
    """Adam with decoupled weight decay, default 0.004 as Keras."""

    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-7):
        super().__init__(learning_rate, beta_1, beta_2, epsilon, weight_decay)


class RMSprop(Optimizer):
    """v ← ρ v + (1−ρ) g²;  θ ← θ − α g / √(v + ε)   (with momentum: a velocity of those steps)."""

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7,
                 weight_decay=None):
        super().__init__(learning_rate, weight_decay)
        self.rho = _check_number("RMSprop", "rho", rho, 0, 1)
        self.momentum = _check_number("RMSprop", "momentum", momentum, 0, 1)
        self.epsilon = _check_number("RMSprop", "epsilon", epsilon, 0, math.inf)

    @property
    def num_slots(self):
        return 2 if self.momentum > 0 else 1

    def _update(self, p, g, state):
        _core.rmsprop_update(p, g, state[0], state[1] if self.momentum > 0 else None,
                             self.learning_rate, self.rho, self.momentum, self.epsilon,
                             self.weight_decay)


_BY_NAME = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop}


def get(spec):
    """An optimizer from a Keras name (with its defaults) or an Optimizer (returned as is)."""
    if isinstance(spec, Optimizer):
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"optimizer must be a name such as 'adam' or a fromzero.optimizers."
                        f"Optimizer, got {spec!r}")
    return utils.lookup("optimizer", spec, _BY_NAME)()


def from_config(config):
    config = dict(config)
    cls = utils.lookup("optimizer", config.pop("name"), _BY_NAME)
    return cls(**config)
