"""Learning-rate schedules: the learning rate as a function of the step.

A schedule goes wherever a learning rate goes::

    schedule = fz.optimizers.schedules.CosineDecay(1e-3, decay_steps=1000)
    optimizer = fz.optimizers.Adam(learning_rate=schedule)

The optimizer calls ``schedule(step)`` before every update, with step =
``optimizer.iterations``: 0 for the first update, 1 for the second, ... (as
Keras 3). ``optimizer.learning_rate`` reads the value the next update will use.

    ExponentialDecay        lr₀ · rateˢᵗᵉᵖ/ᵈᵉᶜᵃʸ_ˢᵗᵉᵖˢ   (the exponent floored with staircase=True)
    CosineDecay             lr₀ · ((1 − α) · ½(1 + cos(π·step/decay_steps)) + α),
                            after an optional linear warm-up to warmup_target
    PiecewiseConstantDecay  values[i] between boundaries[i−1] and boundaries[i]

The formulas are Keras 3's; so are the names, arguments and defaults. To write
your own, subclass LearningRateSchedule and define ``__call__(self, step)``
(and ``get_config`` if the model is to be saved with it).
"""

import math
import numbers

from .. import ops, utils

_BY_NAME = {}


class LearningRateSchedule:
    """The base class: a callable from the step (0, 1, 2, ...) to a learning rate.

    A subclass defines ``__call__(self, step)`` returning a number >= 0, and,
    so that a saved model can be loaded with its schedule, ``get_config()``
    returning the constructor's arguments. Subclasses register themselves by
    class name when they are defined (for ``deserialize``).
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _BY_NAME[cls.__name__.lower()] = cls  # utils.lookup compares lower-case names

    def __call__(self, step):
        raise NotImplementedError(f"Learning rate schedule '{type(self).__name__}' must override "
                                  f"`__call__(self, step)`.")

    def get_config(self):
        raise NotImplementedError(f"Learning rate schedule '{type(self).__name__}' must override "
                                  f"`get_config()` in order to be serializable.")

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _check_steps(owner, name, value, allow_zero=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
            or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{owner}: argument `{name}` must be {'>= 0' if allow_zero else '> 0'}. "
                         f"Received: {name}={value!r}")
    return value


class ExponentialDecay(LearningRateSchedule):
    """lr(step) = initial_learning_rate · decay_rate ^ (step / decay_steps).

    With ``staircase=True`` the exponent is floored, so the rate drops by a
    factor decay_rate once every decay_steps steps instead of smoothly.
    """

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False,
                 name="ExponentialDecay"):
        owner = type(self).__name__
        self.initial_learning_rate = ops.check_limit(owner, "initial_learning_rate",
                                                     initial_learning_rate, "learning_rate")
        self.decay_steps = _check_steps(owner, "decay_steps", decay_steps)
        self.decay_rate = utils.check_number(owner, "decay_rate", decay_rate, 0, low_open=True)
        self.staircase = bool(staircase)
        self.name = name

    def __call__(self, step):
        p = step / self.decay_steps
        if self.staircase:
            p = math.floor(p)
        return self.initial_learning_rate * self.decay_rate ** p

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "decay_rate": self.decay_rate, "staircase": self.staircase, "name": self.name}


class CosineDecay(LearningRateSchedule):
    """Half a cosine from a rate down to alpha times it, after an optional warm-up.

    Without ``warmup_target`` (warmup_steps is then ignored, as in Keras):

        s = min(step, decay_steps)
        lr = initial_learning_rate · ((1 − alpha) · ½(1 + cos(π·s/decay_steps)) + alpha)

    With ``warmup_target``: a straight line from initial_learning_rate to
    warmup_target over the first warmup_steps steps,

        lr = initial_learning_rate + (warmup_target − initial_learning_rate) · step / warmup_steps

    then the cosine above from warmup_target, over the next decay_steps steps,
    and warmup_target · alpha for ever after.

    nanoGPT's recipe (linear warm-up from 0 over W steps to lr_max, cosine to
    lr_min at step D, lr_min after) is exactly
    ``CosineDecay(0.0, decay_steps=D - W, alpha=lr_min / lr_max, warmup_target=lr_max, warmup_steps=W)``.
    """

    def __init__(self, initial_learning_rate, decay_steps, alpha=0.0, name="CosineDecay",
                 warmup_target=None, warmup_steps=0):
        owner = type(self).__name__
        self.initial_learning_rate = ops.check_limit(owner, "initial_learning_rate",
                                                     initial_learning_rate, "learning_rate")
        self.decay_steps = _check_steps(owner, "decay_steps", decay_steps)
        self.alpha = utils.check_number(owner, "alpha", alpha, 0, 1)
        self.name = name
        self.warmup_target = None if warmup_target is None else utils.check_number(
            owner, "warmup_target", warmup_target, 0)
        self.warmup_steps = _check_steps(owner, "warmup_steps", warmup_steps, allow_zero=True)

    def _decay(self, step, start):
        cosine = 0.5 * (1.0 + math.cos(math.pi * step / self.decay_steps))
        return start * ((1.0 - self.alpha) * cosine + self.alpha)

    def __call__(self, step):
        if self.warmup_target is None:
            return self._decay(min(step, self.decay_steps), self.initial_learning_rate)
        step = min(step, self.decay_steps + self.warmup_steps)
        if step < self.warmup_steps:
            delta = self.warmup_target - self.initial_learning_rate
            return delta * step / self.warmup_steps + self.initial_learning_rate
        return self._decay(step - self.warmup_steps, self.warmup_target)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "alpha": self.alpha, "name": self.name, "warmup_target": self.warmup_target,
                "warmup_steps": self.warmup_steps}


class PiecewiseConstantDecay(LearningRateSchedule):
    """values[0] while step <= boundaries[0], values[1] while step <= boundaries[1],
    ..., values[-1] once step > boundaries[-1]. E.g. boundaries=[100, 110],
    values=[1.0, 0.5, 0.1]: 1.0 for steps 0–100, 0.5 for 101–110, 0.1 after."""

    def __init__(self, boundaries, values, name="PiecewiseConstant"):
        owner = type(self).__name__
        boundaries, values = list(boundaries), list(values)
        if len(boundaries) != len(values) - 1:
            raise ValueError(f"The length of boundaries should be 1 less than the length of values. "
                             f"Received: boundaries={boundaries} of length {len(boundaries)}, and "
                             f"values={values} of length {len(values)}.")
        for b in boundaries:
            if isinstance(b, bool) or not isinstance(b, numbers.Real) or not math.isfinite(b):
                raise ValueError(f"{owner}: boundaries must be finite numbers, got {boundaries}")
        if any(a >= b for a, b in zip(boundaries, boundaries[1:])):
            raise ValueError(f"{owner}: boundaries must be strictly increasing, got {boundaries}")
        self.boundaries = boundaries
        self.values = [utils.check_number(owner, "each value", v, 0) for v in values]
        self.name = name

    def __call__(self, step):
        for boundary, value in zip(self.boundaries, self.values):
            if step <= boundary:
                return value
        return self.values[-1]

    def get_config(self):
        return {"boundaries": self.boundaries, "values": self.values, "name": self.name}


def serialize(schedule):
    """A schedule as JSON-ready data: {"class_name": ..., "config": get_config()}."""
    return {"class_name": type(schedule).__name__, "config": schedule.get_config()}


def deserialize(config):
    """The schedule `serialize` described. Its class must be defined (built-in,
    or a user subclass imported before loading)."""
    if not isinstance(config, dict) or not isinstance(config.get("config"), dict):
        raise ValueError(f"a learning rate schedule's config must be a dict with 'class_name' and "
                         f"'config', got {config!r}")
    cls = utils.lookup("learning rate schedule", config.get("class_name"), _BY_NAME)
    return cls.from_config(dict(config["config"]))


__all__ = ["LearningRateSchedule", "ExponentialDecay", "CosineDecay", "PiecewiseConstantDecay",
           "serialize", "deserialize"]
