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

Every optimizer also takes, as Keras 3:
    learning_rate    a number, or a schedule of the step (fromzero.optimizers.schedules)
    clipnorm         clip each gradient array to this L2 norm:      g ← g · c / max(‖g‖, c)
    global_clipnorm  clip all gradients together to this global norm: g ← g · min(1, c / ‖(g₁, g₂, ...)‖)
    clipvalue        clip each gradient value to [−c, c]
At most one of the three clippings may be set (Keras refuses more). The
norms are summed in C++ in a fixed order (the same bits for any thread
count) and the clipping is applied as the update pass reads each gradient.

``opt.exclude_from_weight_decay(var_list, var_names)`` exempts some
parameters from the weight decay, as Keras 3: nanoGPT decays only the
matrices (``var_list=[p for p in model.trainable_params if p.ndim < 2]``
exempts the biases and LayerNorm's γ and β).
"""

import itertools
import operator
import re

import numpy as np

from .. import _core, ops, utils
from ..layers.base import data_address, weight_path
from . import schedules
from .schedules import LearningRateSchedule

class Optimizer:
    #: how many state arrays (shaped like the parameter) the update needs
    num_slots = 0
    #: their names, as Keras calls the optimizer's variables ("momentum", "velocity")
    slot_names = ()

    def __init__(self, learning_rate, weight_decay=None, clipnorm=None, clipvalue=None,
                 global_clipnorm=None):
        name = type(self).__name__
        self.learning_rate = learning_rate  # the property below checks it
        self.weight_decay = 0.0 if weight_decay is None else ops.check_limit(
            name, "weight_decay", weight_decay)
        clips = {"clipnorm": clipnorm, "clipvalue": clipvalue, "global_clipnorm": global_clipnorm}
        if sum(v is not None for v in clips.values()) > 1:
            raise ValueError(f"{name}: only one of `clipnorm`, `clipvalue` and `global_clipnorm` can "
                             f"be set. Received: clipnorm={clipnorm}, clipvalue={clipvalue}, "
                             f"global_clipnorm={global_clipnorm}")
        for arg, value in clips.items():
            if value is not None:
                value = ops.check_limit(name, arg, value, "clip")
                if value == 0:  # the kernels read 0 as "off"; in Keras, None is off
                    raise ValueError(f"{name}: {arg} must be > 0 (None turns clipping off), got 0")
            setattr(self, arg, value)
        self.iterations = 0
        self._slots = {}  # utils.array_key(param) -> (param, [state arrays])
        self._exempt_ids = {}  # data address -> param: exempt from weight decay (kept alive)
        self._exempt_pattern = None  # weight paths matching it are exempt too
        self._decays = {}  # id(param) -> (param, decays or not), decided on first use
        self._last_step = None  # (_slots, (g0, p0, g1, ...), grads, params, slots) of the last step

    # ------------------------------------------------------------ learning rate

    @property
    def learning_rate(self):
        """The learning rate the next step uses: the number given, or the
        schedule's value at step ``iterations``."""
        if isinstance(self._learning_rate, LearningRateSchedule):
            return self._scheduled_rate()
        return self._learning_rate

    @learning_rate.setter
    def learning_rate(self, value):
        owner = type(self).__name__
        if isinstance(value, LearningRateSchedule):
            self._learning_rate = value
            return
        if isinstance(getattr(self, "_learning_rate", None), LearningRateSchedule):
            raise TypeError(f"{owner} was created with a LearningRateSchedule "
                            f"({type(self._learning_rate).__name__}) as its learning_rate, so its "
                            f"learning rate cannot be set to a number: the schedule decides it at "
                            f"every step. To set it by hand, create the optimizer with a number.")
        if callable(value):
            raise TypeError(f"{owner}: learning_rate must be a number or a fromzero.optimizers."
                            f"schedules.LearningRateSchedule, got the callable {value!r}; to "
                            f"schedule it yourself, subclass LearningRateSchedule and define "
                            f"__call__(self, step)")
        self._learning_rate = ops.check_limit(owner, "learning_rate", value)

    @property
    def learning_rate_schedule(self):
        """The LearningRateSchedule deciding the rate, or None for a fixed number."""
        rate = self._learning_rate
        return rate if isinstance(rate, LearningRateSchedule) else None

    def _scheduled_rate(self):
        schedule = self._learning_rate
        rate = schedule(self.iterations)
        return ops.check_limit(type(schedule).__name__, f"the learning rate at step "
                               f"{self.iterations}", rate, "learning_rate")

    # ------------------------------------------------------------ weight decay

    def exclude_from_weight_decay(self, var_list=None, var_names=None):
        """Exempt parameters from ``weight_decay`` (Keras 3's method): the
        arrays in `var_list` (the very arrays, e.g. ``model.trainable_params``'
        vectors), and every weight whose path ("layer_name/weight_name", e.g.
        "dense/bias") contains one of the strings of `var_names` (regular
        expressions, searched as Keras does). Call it before the first step."""
        owner = type(self).__name__
        if self._slots:
            raise ValueError(f"{owner}.exclude_from_weight_decay() can only be called before "
                             f"the optimizer's first step")
        arrays = list(var_list or [])
        for i, p in enumerate(arrays):
            if not isinstance(p, np.ndarray):
                raise TypeError(f"{owner}.exclude_from_weight_decay: var_list[{i}] must be a "
                                f"parameter array, got {type(p).__name__}")
        names = [var_names] if isinstance(var_names, str) else list(var_names or [])
        for name in names:
            if not isinstance(name, str):
                raise TypeError(f"{owner}.exclude_from_weight_decay: var_names must be strings, "
                                f"got {name!r}")
        # by the address of their data, so a view of an exempt weight is exempt
        self._exempt_ids = {data_address(p): p for p in arrays}
        self._exempt_pattern = re.compile("|".join(sorted(set(names)))) if names else None
        self._decays = {}

    def _decays_param(self, p):
        """Whether weight decay applies to parameter p."""
        entry = self._decays.get(id(p))
        if entry is None or entry[0] is not p:
            exempt = data_address(p) in self._exempt_ids
            if not exempt and self._exempt_pattern is not None:
                path = weight_path(p)
                exempt = path is not None and self._exempt_pattern.search(path) is not None
            entry = self._decays[id(p)] = (p, not exempt)
        return entry[1]

    # ------------------------------------------------------------ the step

    def apply_gradients(self, grads_and_vars):
        """One step: every (gradient, parameter) pair is updated in place. The
        C++ side checks every array (float32, writable, shapes) before it
        changes any. The step uses ``self.learning_rate`` (with a schedule, its
        value at step ``iterations``), then ``iterations`` grows by 1."""
        grads, params, slots = self._step_lists(list(grads_and_vars))
        # the kernels' optional arguments, only those in use (their defaults are off)
        options = {}
        if self.clipnorm or self.global_clipnorm or self.clipvalue:
            options = {name: value for name, value in (("clipnorm", self.clipnorm),
                                                       ("global_clipnorm", self.global_clipnorm),
                                                       ("clipvalue", self.clipvalue)) if value}
        if self.weight_decay > 0 and (self._exempt_ids or self._exempt_pattern is not None):
            options["decays"] = [self._decays_param(p) for p in params]
        self._update(params, grads, slots, self.iterations + 1, self.learning_rate, options)
        self.iterations += 1

    def _step_lists(self, pairs):
        """(grads, params, slots) for the kernels, slots[s] listing state array s
        of every parameter. A training loop passes the same arrays every step,
        so the lists of the last step are kept and reused while every pair is
        the very same two arrays and the state table is the same (finding a
        parameter's state by its memory, utils.array_key, cost more than the
        rest of the update's Python)."""
        arrays = tuple(itertools.chain.from_iterable(pairs))  # g0, p0, g1, p1, ...
        last = self._last_step
        if (last is not None and last[0] is self._slots and len(last[1]) == len(arrays)
                and len(last[4]) == self.num_slots and all(map(operator.is_, arrays, last[1]))):
            return last[2:]
        grads = [g for g, _ in pairs]
        params = [p for _, p in pairs]
        states = [self._state(p) for p in params]
        slots = [[state[s] for state in states] for s in range(self.num_slots)]
        self._last_step = (self._slots, arrays, grads, params, slots)
        return grads, params, slots

    def _state(self, p):
        # keyed by p's memory, not id(p): a layer may give a new view of the same
        # weight each time; the entry keeps p alive, so its address stays unique
        key = utils.array_key(p)
        entry = self._slots.get(key)
        if entry is None:
            entry = self._slots[key] = (p, [np.zeros_like(p) for _ in range(self.num_slots)])
        return entry[1]

    def _update(self, params, grads, slots, step, learning_rate, options):
        """Step number `step` (1, 2, ...) over all parameters at `learning_rate`,
        with `options` the kernels' keyword arguments clipnorm, global_clipnorm,
        clipvalue and decays, only those in use: one call into C++."""
        raise NotImplementedError

    # ------------------------------------------------------------ state

    def get_state(self, params):
        """What a checkpoint must hold to resume this optimizer exactly, for the
        parameter arrays `params` (the model's trainable parameters, in order):

            {"iterations": steps taken (also the schedule's position),
             "slots": [[state arrays of params[0]], [of params[1]], ...]}

        with the state arrays in ``slot_names`` order, copied. A parameter not
        updated yet has zeros, as its first step would start from."""
        return {"iterations": int(self.iterations),
                "slots": [[s.copy() for s in self._state(p)] for p in params]}

    def set_state(self, state, params):
        """Restore what get_state returned, for the same parameters. Every
        count and shape is checked before anything changes."""
        owner = type(self).__name__
        iterations, slots = state.get("iterations"), state.get("slots")
        if isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer)) or iterations < 0:
            raise ValueError(f"{owner}.set_state: iterations must be an integer >= 0, got {iterations!r}")
        params = list(params)
        if slots is None or len(slots) != len(params):
            raise ValueError(f"{owner}.set_state: expected state for {len(params)} parameters, got "
                             f"{'none' if slots is None else len(slots)}")
        for i, (p, arrays) in enumerate(zip(params, slots)):
            if len(arrays) != self.num_slots:
                raise ValueError(f"{owner}.set_state: parameter {i} needs {self.num_slots} state "
                                 f"arrays {self.slot_names}, got {len(arrays)}")
            for name, a in zip(self.slot_names, arrays):
                if np.shape(a) != p.shape:
                    raise ValueError(f"{owner}.set_state: {name} of parameter {i} has shape "
                                     f"{np.shape(a)}, the parameter {p.shape}")
        for p, arrays in zip(params, slots):
            for target, a in zip(self._state(p), arrays):
                target[...] = a
        self.iterations = int(iterations)

    def get_config(self):
        config = {k: v for k, v in vars(self).items() if not k.startswith("_") and k != "iterations"}
        rate = self._learning_rate
        config["learning_rate"] = (schedules.serialize(rate) if isinstance(rate, LearningRateSchedule)
                                   else rate)
        return {"name": type(self).__name__.lower(), **config}


class SGD(Optimizer):
    """θ ← θ − α g;  with momentum μ: v ← μ v − α g, θ ← θ + v (Nesterov: θ ← θ + μ v − α g)."""

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, weight_decay=None,
                 clipnorm=None, clipvalue=None, global_clipnorm=None):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm)
        self.momentum = ops.check_limit("SGD", "momentum", momentum)
        self.nesterov = bool(nesterov)

    @property
    def num_slots(self):
        return 1 if self.momentum > 0 else 0

    @property
    def slot_names(self):
        return ("momentum",) if self.momentum > 0 else ()

    def _update(self, params, grads, slots, step, learning_rate, options):
        _core.sgd_update(params, grads, slots[0] if slots else None, learning_rate,
                         self.momentum, self.nesterov, self.weight_decay, **options)


class Adam(Optimizer):
    """m ← β1 m + (1−β1) g;  v ← β2 v + (1−β2) g²;  θ ← θ − α √(1−β2ᵗ)/(1−β1ᵗ) · m / (√v + ε)."""

    num_slots = 2
    slot_names = ("momentum", "velocity")  # m, v

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm)
        owner = type(self).__name__
        self.beta_1 = ops.check_limit(owner, "beta_1", beta_1, "beta")
        self.beta_2 = ops.check_limit(owner, "beta_2", beta_2, "beta")
        self.epsilon = ops.check_limit(owner, "epsilon", epsilon)

    def _update(self, params, grads, slots, step, learning_rate, options):
        m, v = slots
        _core.adam_update(params, grads, m, v, learning_rate, self.beta_1, self.beta_2,
                          self.epsilon, step, self.weight_decay, **options)


class AdamW(Adam):
    """Adam with decoupled weight decay, default 0.004 as Keras."""

    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-7, clipnorm=None, clipvalue=None, global_clipnorm=None):
        super().__init__(learning_rate, beta_1, beta_2, epsilon, weight_decay, clipnorm, clipvalue,
                         global_clipnorm)


class RMSprop(Optimizer):
    """v ← ρ v + (1−ρ) g²;  θ ← θ − α g / √(v + ε)   (with momentum: a velocity of those steps)."""

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7,
                 weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm)
        self.rho = ops.check_limit("RMSprop", "rho", rho)
        self.momentum = ops.check_limit("RMSprop", "momentum", momentum)
        self.epsilon = ops.check_limit("RMSprop", "epsilon", epsilon)

    @property
    def num_slots(self):
        return 2 if self.momentum > 0 else 1

    @property
    def slot_names(self):
        return ("velocity", "momentum") if self.momentum > 0 else ("velocity",)

    def _update(self, params, grads, slots, step, learning_rate, options):
        _core.rmsprop_update(params, grads, slots[0], slots[1] if self.momentum > 0 else None,
                             learning_rate, self.rho, self.momentum, self.epsilon,
                             self.weight_decay, **options)


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
    """The optimizer get_config described (without its state: see set_state)."""
    config = dict(config)
    cls = utils.lookup("optimizer", config.pop("name"), _BY_NAME)
    if isinstance(config.get("learning_rate"), dict):
        config["learning_rate"] = schedules.deserialize(config["learning_rate"])
    return cls(**config)
