"""Learning-rate schedules: Keras 3's formulas pinned by values worked out by
hand, nanoGPT's recipe expressed exactly, and a schedule inside an optimizer
(the step is optimizer.iterations, 0 for the first update)."""

import json
import math

import numpy as np
import pytest

import fromzero as fz

S = fz.optimizers.schedules
O = fz.optimizers


def values(schedule, steps):
    return [schedule(step) for step in steps]


# ---------------------------------------------------------------- the formulas

def test_exponential_decay_by_hand():
    # 0.1 · 0.5^(step/10)
    schedule = S.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5)
    assert values(schedule, [0, 5, 10, 25]) == pytest.approx(
        [0.1, 0.0707106781187, 0.05, 0.0176776695297], rel=1e-11)


def test_exponential_decay_staircase_floors_the_exponent():
    schedule = S.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5, staircase=True)
    assert values(schedule, [0, 5, 9, 10, 19, 25]) == pytest.approx(
        [0.1, 0.1, 0.1, 0.05, 0.05, 0.025], rel=1e-12)


def test_cosine_decay_by_hand():
    # ½(1 + cos(π·step/4)) for step 0..4, then held at the end
    schedule = S.CosineDecay(1.0, decay_steps=4)
    assert values(schedule, [0, 1, 2, 3, 4, 10]) == pytest.approx(
        [1.0, 0.8535533906, 0.5, 0.1464466094, 0.0, 0.0], abs=1e-10)
    # alpha = 0.2: 0.8 · cosine + 0.2, so it ends at 0.2 · 1.0
    schedule = S.CosineDecay(1.0, decay_steps=4, alpha=0.2)
    assert values(schedule, [0, 2, 4, 100]) == pytest.approx([1.0, 0.6, 0.2, 0.2], abs=1e-12)


def test_cosine_decay_with_warmup_by_hand():
    # a line from 0 to 1 over 2 steps, then 0.9 · cosine + 0.1 over the next 4
    schedule = S.CosineDecay(0.0, decay_steps=4, alpha=0.1, warmup_target=1.0, warmup_steps=2)
    assert values(schedule, [0, 1, 2, 3, 4, 5, 6, 50]) == pytest.approx(
        [0.0, 0.5, 1.0, 0.8681980515, 0.55, 0.2318019485, 0.1, 0.1], abs=1e-10)
    # the line starts at initial_learning_rate
    schedule = S.CosineDecay(0.2, decay_steps=4, warmup_target=1.0, warmup_steps=4)
    assert values(schedule, [0, 1, 4]) == pytest.approx([0.2, 0.4, 1.0], abs=1e-12)


def test_cosine_decay_ignores_warmup_steps_without_a_target():
    # as Keras: no warmup_target, no warm-up
    schedule = S.CosineDecay(1.0, decay_steps=4, warmup_steps=10)
    assert schedule(0) == 1.0 and schedule(2) == pytest.approx(0.5)


def test_piecewise_constant_by_hand():
    # Keras's example: 1.0 up to step 10 included, 0.5 up to 20, then 0.1
    schedule = S.PiecewiseConstantDecay([10, 20], [1.0, 0.5, 0.1])
    assert values(schedule, [0, 10, 11, 20, 21, 1000]) == [1.0, 1.0, 0.5, 0.5, 0.1, 0.1]


def nanogpt_lr(it, learning_rate, min_lr, warmup_iters, lr_decay_iters, plus_one=False):
    """nanoGPT's train.py get_lr (its older and newer warm-up)."""
    if it < warmup_iters:
        if plus_one:
            return learning_rate * (it + 1) / (warmup_iters + 1)
        return learning_rate * it / warmup_iters
    if it > lr_decay_iters:
        return min_lr
    decay_ratio = (it - warmup_iters) / (lr_decay_iters - warmup_iters)
    coeff = 0.5 * (1.0 + math.cos(math.pi * decay_ratio))
    return min_lr + coeff * (learning_rate - min_lr)


@pytest.mark.parametrize("plus_one", [False, True])
def test_nanogpt_recipe_is_a_cosine_decay(plus_one):
    """The GPT stream's recipe: warm up over 100 steps to 1e-3, cosine down to
    1e-4 at step 2000, 1e-4 after. Keras's CosineDecay gives it exactly with
    initial_learning_rate = the warm-up start (0, or 1e-3/101 for nanoGPT's
    (it + 1)/(warmup + 1) form), warmup_target = 1e-3, alpha = 1e-4/1e-3 and
    decay_steps = 2000 − 100."""
    start = 1e-3 / 101 if plus_one else 0.0
    schedule = S.CosineDecay(start, decay_steps=1900, alpha=0.1, warmup_target=1e-3,
                             warmup_steps=100)
    for step in range(2200):
        assert schedule(step) == pytest.approx(
            nanogpt_lr(step, 1e-3, 1e-4, 100, 2000, plus_one), rel=1e-12, abs=1e-18), step


# ---------------------------------------------------------------- arguments

@pytest.mark.parametrize("make, message", [
    (lambda: S.ExponentialDecay(0.1, 0, 0.5), "decay_steps` must be > 0"),
    (lambda: S.ExponentialDecay(0.1, -3, 0.5), "decay_steps` must be > 0"),
    (lambda: S.ExponentialDecay(0.1, 10, 0.0), "decay_rate"),
    (lambda: S.ExponentialDecay(-0.1, 10, 0.5), "initial_learning_rate"),
    (lambda: S.CosineDecay(0.1, 0), "decay_steps` must be > 0"),
    (lambda: S.CosineDecay(0.1, 10, alpha=1.5), "alpha"),
    (lambda: S.CosineDecay(0.1, 10, warmup_steps=-1), "warmup_steps` must be >= 0"),
    (lambda: S.CosineDecay(0.1, 10, warmup_target=float("nan")), "warmup_target"),
    (lambda: S.PiecewiseConstantDecay([10, 20], [1.0, 0.5]), "1 less than the length of values"),
    (lambda: S.PiecewiseConstantDecay([20, 10], [1.0, 0.5, 0.1]), "strictly increasing"),
    (lambda: S.PiecewiseConstantDecay([10], [1.0, -0.5]), "each value"),
])
def test_bad_arguments_are_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_the_base_class_says_what_to_override():
    with pytest.raises(NotImplementedError, match=r"must override `__call__\(self, step\)`"):
        S.LearningRateSchedule()(0)
    with pytest.raises(NotImplementedError, match="get_config"):
        S.LearningRateSchedule().get_config()


@pytest.mark.parametrize("schedule", [
    S.ExponentialDecay(0.1, 10, 0.5, staircase=True),
    S.CosineDecay(0.0, 100, alpha=0.1, warmup_target=1e-3, warmup_steps=10),
    S.PiecewiseConstantDecay([10, 20], [1.0, 0.5, 0.1]),
])
def test_config_round_trip(schedule):
    data = json.loads(json.dumps(S.serialize(schedule)))
    again = S.deserialize(data)
    assert type(again) is type(schedule) and again.get_config() == schedule.get_config()
    assert values(again, range(0, 120, 7)) == values(schedule, range(0, 120, 7))


# ---------------------------------------------------------------- inside an optimizer

def test_the_step_is_iterations_from_zero():
    # lr 0.1 at step 0, 0.05 at step 1: p = [1, −2] − 0.1·g − 0.05·g, g = [0.5, −1]
    opt = O.SGD(learning_rate=S.ExponentialDecay(0.1, decay_steps=1, decay_rate=0.5))
    p = np.array([1.0, -2.0], np.float32)
    assert opt.learning_rate == pytest.approx(0.1)
    opt.apply_gradients([(np.array([0.5, -1.0], np.float32), p)])
    np.testing.assert_allclose(p, [0.95, -1.9], rtol=1e-6)
    assert opt.learning_rate == pytest.approx(0.05)  # what the next step will use
    opt.apply_gradients([(np.array([0.5, -1.0], np.float32), p)])
    np.testing.assert_allclose(p, [0.925, -1.85], rtol=1e-6)
    assert opt.iterations == 2 and opt.learning_rate == pytest.approx(0.025)


@pytest.mark.parametrize("make", [O.SGD, O.Adam, O.AdamW, O.RMSprop])
def test_every_optimizer_follows_a_schedule(make):
    """A schedule equals setting the same rate by hand before each step."""
    schedule = S.PiecewiseConstantDecay([1], [0.1, 0.01])
    scheduled, by_hand = make(learning_rate=schedule), make(learning_rate=0.1)
    p, q = np.ones(3, np.float32), np.ones(3, np.float32)
    for step in range(3):
        g = np.array([0.5, -1.0, 2.0], np.float32) * (step + 1)
        by_hand.learning_rate = schedule(step)
        scheduled.apply_gradients([(g, p)])
        by_hand.apply_gradients([(g, q)])
        np.testing.assert_array_equal(p, q)


def test_a_schedule_cannot_be_overwritten_by_a_number():
    opt = O.Adam(S.CosineDecay(1e-3, 100))
    assert opt.learning_rate_schedule is not None
    with pytest.raises(TypeError, match="created with a LearningRateSchedule.*CosineDecay"):
        opt.learning_rate = 0.01
    opt.learning_rate = S.ExponentialDecay(0.1, 10, 0.5)  # a schedule may replace a schedule
    assert opt.learning_rate == pytest.approx(0.1)
    fixed = O.Adam(0.01)
    assert fixed.learning_rate_schedule is None
    fixed.learning_rate = S.ExponentialDecay(0.1, 10, 0.5)  # and a number, as in Keras
    assert fixed.learning_rate == pytest.approx(0.1)


def test_a_plain_function_is_not_a_schedule():
    with pytest.raises(TypeError, match="subclass LearningRateSchedule"):
        O.SGD(learning_rate=lambda step: 0.1)


def test_a_schedule_of_your_own():
    class InverseTime(S.LearningRateSchedule):
        def __init__(self, initial_learning_rate):
            self.initial_learning_rate = initial_learning_rate

        def __call__(self, step):
            return self.initial_learning_rate / (step + 1)

        def get_config(self):
            return {"initial_learning_rate": self.initial_learning_rate}

    opt = O.SGD(InverseTime(1.0))
    p = np.zeros(1, np.float32)
    for _ in range(3):
        opt.apply_gradients([(np.ones(1, np.float32), p)])
    np.testing.assert_allclose(p, [-(1 + 1 / 2 + 1 / 3)], rtol=1e-6)
    again = O.from_config(json.loads(json.dumps(opt.get_config())))
    assert isinstance(again.learning_rate_schedule, InverseTime)


def test_a_schedule_giving_a_bad_rate_is_named():
    class Broken(S.LearningRateSchedule):
        def __call__(self, step):
            return -1.0 if step == 1 else 0.1

    opt = O.SGD(Broken())
    p = np.zeros(1, np.float32)
    opt.apply_gradients([(np.ones(1, np.float32), p)])
    with pytest.raises(ValueError, match=r"Broken: the learning rate at step 1 must be a number"):
        opt.apply_gradients([(np.ones(1, np.float32), p)])
    assert opt.iterations == 1


def test_optimizer_config_keeps_the_schedule():
    opt = O.AdamW(S.CosineDecay(0.0, 1900, alpha=0.1, warmup_target=1e-3, warmup_steps=100),
                  global_clipnorm=1.0)
    config = json.loads(json.dumps(opt.get_config()))
    assert config["learning_rate"]["class_name"] == "CosineDecay"
    again = O.from_config(config)
    assert again.get_config() == opt.get_config()
    assert again.learning_rate_schedule.get_config() == opt.learning_rate_schedule.get_config()


def test_a_model_saved_with_a_schedule_loads_with_it(tmp_path):
    fz.utils.set_random_seed(0)
    model = fz.Sequential([fz.layers.Dense(4, activation="relu"), fz.layers.Dense(2)])
    model.compile(O.Adam(S.ExponentialDecay(0.01, 10, 0.9), clipnorm=1.0), "mse")
    x = np.random.default_rng(0).standard_normal((16, 3)).astype(np.float32)
    model.fit(x, np.zeros((16, 2), np.float32), epochs=1, verbose=0)
    model.save(tmp_path / "m.safetensors")
    loaded = fz.load_model(tmp_path / "m.safetensors")
    assert isinstance(loaded.optimizer.learning_rate_schedule, S.ExponentialDecay)
    assert loaded.optimizer.clipnorm == 1.0
    assert loaded.optimizer.get_config() == model.optimizer.get_config()


def test_fit_with_a_schedule_uses_one_rate_per_step():
    """PiecewiseConstantDecay([0], [0.1, 0.0]): only the very first step moves the weights."""
    fz.utils.set_random_seed(0)
    model = fz.Sequential([fz.layers.Dense(2)])
    model.compile(O.SGD(S.PiecewiseConstantDecay([0], [0.1, 0.0])), "mse")
    x = np.ones((8, 3), np.float32)
    model.fit(x, np.zeros((8, 2), np.float32), batch_size=4, epochs=1, verbose=0, shuffle=False)
    after_epoch = model.get_weights()
    model.fit(x, np.zeros((8, 2), np.float32), batch_size=4, epochs=1, verbose=0, shuffle=False)
    assert model.optimizer.iterations == 4
    for a, b in zip(after_epoch, model.get_weights()):
        np.testing.assert_array_equal(a, b)
