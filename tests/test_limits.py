"""One owner for every range: the kernels' hyperparameter ranges are declared in
csrc/bindings.cpp (_core.limits(), fz.ops.limits()), every kernel enforces the
ones it declares, and the Python layers and optimizers accept exactly the same
values — probed at both ends of each range and just outside them (Python
reads the ranges from the kernels through fz.ops.check_limit: one owner)."""

import math
import re

import numpy as np
import pytest

import fromzero as fz
from fromzero import _core

from test_aliasing import SPECS, Example

L, O = fz.layers, fz.optimizers
LIMITS = fz.ops.limits()

# Each Python argument that reaches a kernel, and the kernel range it must follow.
PYTHON = [
    ("SGD(learning_rate)", lambda v: O.SGD(learning_rate=v), "learning_rate"),
    ("Adam(learning_rate)", lambda v: O.Adam(learning_rate=v), "learning_rate"),
    ("RMSprop(learning_rate)", lambda v: O.RMSprop(learning_rate=v), "learning_rate"),
    ("SGD(momentum)", lambda v: O.SGD(momentum=v), "momentum"),
    ("RMSprop(momentum)", lambda v: O.RMSprop(momentum=v), "momentum"),
    ("SGD(weight_decay)", lambda v: O.SGD(weight_decay=v), "weight_decay"),
    ("AdamW(weight_decay)", lambda v: O.AdamW(weight_decay=v), "weight_decay"),
    ("Adam(beta_1)", lambda v: O.Adam(beta_1=v), "beta"),
    ("Adam(beta_2)", lambda v: O.Adam(beta_2=v), "beta"),
    ("Adam(epsilon)", lambda v: O.Adam(epsilon=v), "epsilon"),
    ("RMSprop(epsilon)", lambda v: O.RMSprop(epsilon=v), "epsilon"),
    ("RMSprop(rho)", lambda v: O.RMSprop(rho=v), "rho"),
    ("BatchNormalization(momentum)", lambda v: L.BatchNormalization(momentum=v), "batch_norm_momentum"),
    ("BatchNormalization(epsilon)", lambda v: L.BatchNormalization(epsilon=v), "batch_norm_epsilon"),
    ("Dropout(rate)", lambda v: L.Dropout(v), "dropout_rate"),
    ("LeakyReLU(negative_slope)", lambda v: L.LeakyReLU(v), "negative_slope"),
    ("Activation(alpha)", lambda v: L.Activation("leaky_relu", alpha=v), "negative_slope"),
    ("AdamW(learning_rate)", lambda v: O.AdamW(learning_rate=v), "learning_rate"),
    ("AdamW(beta_2)", lambda v: O.AdamW(beta_2=v), "beta"),
    ("RMSprop(weight_decay)", lambda v: O.RMSprop(weight_decay=v), "weight_decay"),
    ("ExponentialDecay(initial_learning_rate)",
     lambda v: O.schedules.ExponentialDecay(v, decay_steps=10, decay_rate=0.5), "learning_rate"),
    ("CosineDecay(initial_learning_rate)",
     lambda v: O.schedules.CosineDecay(v, decay_steps=10), "learning_rate"),
]


def kernel_accepts(limit, value):
    r = LIMITS[limit]
    return math.isfinite(value) and (value > r["low"] if r["low_open"] else value >= r["low"]) and \
        (value < r["high"] if r["high_open"] else value <= r["high"])


def probes(limit):
    """Both ends, the float32 values just inside and outside them, a middle, NaN and ±inf."""
    r = LIMITS[limit]
    values = [math.nan, math.inf, -math.inf, 0.5, 2.0, -1.0]
    for end, toward in ((r["low"], r["high"]), (r["high"], r["low"])):
        if math.isfinite(end):
            e = np.float32(end)
            values += [end, float(np.nextafter(e, np.float32(toward))),
                       float(np.nextafter(e, np.float32(-toward if toward else -1.0)))]
    return values


def python_accepts(make, value):
    try:
        make(value)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("what, make, limit", PYTHON, ids=[p[0] for p in PYTHON])
def test_python_accepts_exactly_the_kernel_range(what, make, limit):
    wrong = [v for v in probes(limit) if python_accepts(make, v) != kernel_accepts(limit, v)]
    assert not wrong, f"{what}: Python and the kernels ({LIMITS[limit]['interval']}) disagree on {wrong}"


@pytest.mark.parametrize("clip", ["clipnorm", "clipvalue", "global_clipnorm"])
def test_clipping_follows_the_kernel_range_except_zero(clip):
    """The kernels read a clip of 0 as "off"; Keras spells that None, so
    Python refuses 0 (the one rule the kernels cannot know) and otherwise
    accepts exactly the kernels' range."""
    wrong = [v for v in probes("clip")
             if python_accepts(lambda x: O.SGD(**{clip: x}), v) != (kernel_accepts("clip", v) and v != 0)]
    assert not wrong, wrong


def test_every_limit_is_used_and_described():
    used = {limit for spec in SPECS.values() for limit in spec["params"].values()}
    assert used == set(LIMITS)
    for name, r in LIMITS.items():
        assert r["why"] and r["interval"][0] in "[(" and r["interval"][-1] in "])", name
    assert LIMITS["beta"]["interval"] == "[0, 1)"  # Adam's bias correction divides by 1 − βᵗ


def test_check_limit_is_the_python_side_of_a_limit():
    assert fz.ops.check_limit("Adam", "beta_1", np.float32(0.5), "beta") == 0.5
    for bad in (1.0, -0.1, math.nan, True, "0.5", None):
        with pytest.raises(ValueError, match=r"Adam: beta_1 must be a number in \[0, 1\), got"):
            fz.ops.check_limit("Adam", "beta_1", bad, "beta")
    with pytest.raises(ValueError, match=r"Dropout: rate must be a number in \[0, 1\), got 1"):
        fz.ops.check_limit("Dropout", "rate", 1, "dropout_rate")


def declared_params():
    return [(name, i, p) for name in sorted(SPECS) for i in range(len(SPECS[name]["examples"]))
            for p in SPECS[name]["params"] if p != "alpha" or i == 0]


@pytest.mark.parametrize("name, index, param", declared_params(),
                         ids=[f"{n}[{i}].{p}" for n, i, p in declared_params()])
def test_every_kernel_enforces_its_declared_ranges(name, index, param):
    """Each ranged parameter of each kernel, just outside its range, NaN or inf:
    a ValueError naming it, before the kernel runs (the outputs stay as they were)."""
    limit = SPECS[name]["params"][param]
    for value in [v for v in probes(limit) if not kernel_accepts(limit, v)]:
        example = Example(name, index)
        example.kwargs[param] = value
        values = example.values()
        before = [np.array(v, copy=True) for v in values.values() if not isinstance(v, list)]
        with pytest.raises(ValueError, match=rf"{name}: {param} must be in {re.escape(LIMITS[limit]['interval'])}"):
            example.call(values)
        after = [np.array(v) for v in values.values() if not isinstance(v, list)]
        assert all(np.array_equal(a, b, equal_nan=True) for a, b in zip(before, after))
