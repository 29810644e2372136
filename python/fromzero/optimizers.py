"""Optimizers: how a gradient becomes a step. All start from gradient descent,

    θ ← θ − α ∇J(θ)

and differ in how they shape the step (formulas in csrc/optimizers.h, which
follow Keras 3 exactly):
    SGD      momentum keeps a running velocity, Nesterov looks ahead along it
    Adam     per-weight steps from running means of g and g², bias-corrected
    AdamW    Adam with decoupled weight decay (θ ← θ − α·wd·θ before the step)
    RMSprop  divides the step by a running root-mean-square of g

``opt.apply_gradients(zip(grads, params))`` updates the float32 arrays in
place, all of them in one C++ call; the optimizer's state (velocities,
moments) is kept per parameter array and created on first use.
"""

import math

import numpy as np

from . import _core, utils


class Optimizer:
    #: how many state arrays (shaped like the parameter) the update needs
    num_slots = 0

    def __init__(self, learning_rate, weight_decay=None):
        name = type(self).__name__
        self.learning_rate = utils.check_number(name, "learning_rate", learning_rate, 0, low_open=True)
        self.weight_decay = 0.0 if weight_decay is None else utils.check_number(
            name, "weight_decay", weight_decay, 0)
        self.iterations = 0
        self._slots = {}  # id(param) -> (param, [state arrays])

    def apply_gradients(self, grads_and_vars):
        """One step: every (gradient, parameter) pair is updated in place. The
        C++ side checks every array (float32, writable, shapes) before it
        changes any."""
        pairs = list(grads_and_vars)
        grads = [g for g, _ in pairs]
        params = [p for _, p in pairs]
        states = [self._state(p) for p in params]
        # slots[s] lists state array s of every parameter, as the kernels take them
        slots = [[state[s] for state in states] for s in range(self.num_slots)]
        self._update(params, grads, slots, self.iterations + 1)
        self.iterations += 1

    def _state(self, p):
        entry = self._slots.get(id(p))
        if entry is None or entry[0] is not p:  # keep p alive so its id stays unique
            entry = self._slots[id(p)] = (p, [np.zeros_like(p) for _ in range(self.num_slots)])
        return entry[1]

    def _update(self, params, grads, slots, step):
        """Step number `step` (1, 2, ...) over all parameters: one call into C++."""
        raise NotImplementedError

    def get_config(self):
        config = {k: v for k, v in vars(self).items() if not k.startswith("_") and k != "iterations"}
        return {"name": type(self).__name__.lower(), **config}


class SGD(Optimizer):
    """θ ← θ − α g;  with momentum μ: v ← μ v − α g, θ ← θ + v (Nesterov: θ ← θ + μ v − α g)."""

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, weight_decay=None):
        super().__init__(learning_rate, weight_decay)
        self.momentum = utils.check_number("SGD", "momentum", momentum, 0, 1)
        self.nesterov = bool(nesterov)

    @property
    def num_slots(self):
        return 1 if self.momentum > 0 else 0

    def _update(self, params, grads, slots, step):
        _core.sgd_update(params, grads, slots[0] if slots else None, self.learning_rate,
                         self.momentum, self.nesterov, self.weight_decay)


class Adam(Optimizer):
    """m ← β1 m + (1−β1) g;  v ← β2 v + (1−β2) g²;  θ ← θ − α √(1−β2ᵗ)/(1−β1ᵗ) · m / (√v + ε)."""

    num_slots = 2

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 weight_decay=None):
        super().__init__(learning_rate, weight_decay)
        # β < 1: the bias correction divides by 1 − βᵗ.
        self.beta_1 = utils.check_number(type(self).__name__, "beta_1", beta_1, 0, 1, high_open=True)
        self.beta_2 = utils.check_number(type(self).__name__, "beta_2", beta_2, 0, 1, high_open=True)
        self.epsilon = utils.check_number(type(self).__name__, "epsilon", epsilon, 0)

    def _update(self, params, grads, slots, step):
        m, v = slots
        _core.adam_update(params, grads, m, v, self.learning_rate, self.beta_1, self.beta_2,
                          self.epsilon, step, self.weight_decay)


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
        self.rho = utils.check_number("RMSprop", "rho", rho, 0, 1)
        self.momentum = utils.check_number("RMSprop", "momentum", momentum, 0, 1)
        self.epsilon = utils.check_number("RMSprop", "epsilon", epsilon, 0)

    @property
    def num_slots(self):
        return 2 if self.momentum > 0 else 1

    def _update(self, params, grads, slots, step):
        _core.rmsprop_update(params, grads, slots[0], slots[1] if self.momentum > 0 else None,
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
