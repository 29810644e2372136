"""Tests for fromzero.optimizers: every update pinned to steps worked out by hand with
Keras 3's formulas (plain Python floats, never the package), plus the in-place contract,
argument checks and names."""

import math

import numpy as np
import pytest

import fromzero as fz

O = fz.optimizers
P0 = [1.0, -2.0]
G1 = [0.5, -1.0]
G2 = [0.25, 2.0]


def param(values=P0):
    return np.array(values, dtype=np.float32)


def grad(values):
    return np.array(values, dtype=np.float32)


def assert_close(actual, expected):
    # float32 arithmetic in the kernels against float64 by hand
    np.testing.assert_allclose(actual, expected, rtol=2e-6, atol=1e-7)


# ---------------------------------------------------------------- SGD

def test_sgd_plain():
    p = param()
    O.SGD(learning_rate=0.1).apply_gradients([(grad(G1), p)])
    # p − lr·g = [1 − 0.05, −2 + 0.1]
    assert_close(p, [0.95, -1.9])


def test_sgd_default_learning_rate_is_0_01():
    p = param()
    opt = O.SGD()
    assert opt.learning_rate == pytest.approx(0.01)
    opt.apply_gradients([(grad(G1), p)])
    assert_close(p, [0.995, -1.99])


def test_sgd_momentum_two_steps():
    p, opt = param(), O.SGD(learning_rate=0.1, momentum=0.9)
    opt.apply_gradients([(grad(G1), p)])
    # m = 0.9·0 − 0.1·[0.5, −1] = [−0.05, 0.1];  p = p + m
    assert_close(p, [0.95, -1.9])
    opt.apply_gradients([(grad(G2), p)])
    # m = 0.9·[−0.05, 0.1] − 0.1·[0.25, 2] = [−0.07, −0.11];  p = [0.95 − 0.07, −1.9 − 0.11]
    assert_close(p, [0.88, -2.01])


def test_sgd_nesterov_two_steps():
    p, opt = param(), O.SGD(learning_rate=0.1, momentum=0.9, nesterov=True)
    opt.apply_gradients([(grad(G1), p)])
    # m = [−0.05, 0.1];  p = p + 0.9·m − 0.1·g = [1 − 0.045 − 0.05, −2 + 0.09 + 0.1]
    assert_close(p, [0.905, -1.81])
    opt.apply_gradients([(grad(G2), p)])
    # m = [−0.07, −0.11];  p = [0.905 − 0.063 − 0.025, −1.81 − 0.099 − 0.2]
    assert_close(p, [0.817, -2.109])


def test_sgd_weight_decay():
    p = param()
    O.SGD(learning_rate=0.1, weight_decay=0.5).apply_gradients([(grad(G1), p)])
    # decay first: p ← p − 0.1·0.5·p = [0.95, −1.9]; then p − lr·g = [0.9, −1.8]
    assert_close(p, [0.9, -1.8])


def test_sgd_momentum_with_weight_decay():
    p = param()
    O.SGD(learning_rate=0.1, momentum=0.9, weight_decay=0.5).apply_gradients([(grad(G1), p)])
    # [0.95, −1.9] after the decay, + m = [−0.05, 0.1]
    assert_close(p, [0.9, -1.8])


# ---------------------------------------------------------------- Adam

def adam_by_hand(p, grads, lr, b1=0.9, b2=0.999, eps=1e-7, wd=0.0):
    """Keras 3 Adam on a list of floats, one step per gradient in `grads`."""
    p = list(p)
    m = [0.0] * len(p)
    v = [0.0] * len(p)
    for t, g in enumerate(grads, start=1):
        alpha = lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        for i in range(len(p)):
            p[i] = p[i] - lr * wd * p[i]
            m[i] = m[i] + (g[i] - m[i]) * (1 - b1)
            v[i] = v[i] + (g[i] * g[i] - v[i]) * (1 - b2)
            p[i] = p[i] - m[i] * alpha / (math.sqrt(v[i]) + eps)
    return p


def test_adam_first_step_by_hand():
    # t = 1: m = 0.1·g, v = 0.001·g², α̂ = 0.1·√0.001/0.1 = √0.001, so each step is
    # α̂ · 0.1|g| / (√0.001·|g| + 1e-7) ≈ lr = 0.1 in the direction of −g.
    p = param()
    O.Adam(learning_rate=0.1).apply_gradients([(grad(G1), p)])
    step0 = math.sqrt(0.001) * 0.05 / (math.sqrt(0.001 * 0.25) + 1e-7)
    step1 = math.sqrt(0.001) * 0.1 / (math.sqrt(0.001 * 1.0) + 1e-7)
    assert step0 == pytest.approx(0.1, rel=1e-4)
    assert_close(p, [1.0 - step0, -2.0 + step1])


def test_adam_two_steps():
    p, opt = param(), O.Adam(learning_rate=0.1)
    opt.apply_gradients([(grad(G1), p)])
    assert_close(p, adam_by_hand(P0, [G1], 0.1))
    opt.apply_gradients([(grad(G2), p)])
    # t = 2 by hand for the first weight:
    m = 0.9 * 0.05 + 0.1 * 0.25                         # 0.07
    v = 0.999 * (0.001 * 0.25) + 0.001 * 0.25 ** 2      # 0.00031225
    alpha = 0.1 * math.sqrt(1 - 0.999 ** 2) / (1 - 0.9 ** 2)
    first = adam_by_hand(P0, [G1], 0.1)[0] - alpha * m / (math.sqrt(v) + 1e-7)
    assert m == pytest.approx(0.07) and v == pytest.approx(0.00031225)
    assert_close(p, [first, adam_by_hand(P0, [G1, G2], 0.1)[1]])
    assert_close(p, adam_by_hand(P0, [G1, G2], 0.1))


def test_adam_epsilon_is_outside_the_sqrt():
    # With g tiny, √v ≈ 1e-8 and ε = 1e-7 dominates: the step is α̂·m/(√v + ε).
    p, g = param([0.0]), 1e-8
    O.Adam(learning_rate=1.0, epsilon=1e-7).apply_gradients([(grad([g]), p)])
    alpha = math.sqrt(0.001) / 0.1
    expected = -alpha * 0.1 * g / (math.sqrt(0.001) * g + 1e-7)
    # ≈ −3.15e-3; ε inside the sqrt would give α̂·m/√(v + ε) ≈ −1e-6 instead
    assert_close(p, [expected])
    assert -3.2e-3 < p[0] < -3.1e-3


def test_adam_custom_betas():
    p, opt = param(), O.Adam(learning_rate=0.05, beta_1=0.5, beta_2=0.9, epsilon=1e-3)
    opt.apply_gradients([(grad(G1), p)])
    opt.apply_gradients([(grad(G2), p)])
    assert_close(p, adam_by_hand(P0, [G1, G2], 0.05, 0.5, 0.9, 1e-3))


def test_adamw_two_steps():
    p, opt = param(), O.AdamW(learning_rate=0.1, weight_decay=0.5)
    opt.apply_gradients([(grad(G1), p)])
    # decay first: p ← p − 0.1·0.5·p = [0.95, −1.9], then the Adam step of ≈ 0.1
    step0 = math.sqrt(0.001) * 0.05 / (math.sqrt(0.001 * 0.25) + 1e-7)
    step1 = math.sqrt(0.001) * 0.1 / (math.sqrt(0.001) + 1e-7)
    assert_close(p, [0.95 - step0, -1.9 + step1])
    opt.apply_gradients([(grad(G2), p)])
    assert_close(p, adam_by_hand(P0, [G1, G2], 0.1, wd=0.5))


def test_adamw_exclude_from_weight_decay_by_array_hand_computed():
    # nanoGPT's rule: the matrix decays, the vector (a bias) does not.
    w, b = param(), param()
    opt = O.AdamW(learning_rate=0.1, weight_decay=0.5, global_clipnorm=10.0)
    opt.exclude_from_weight_decay(var_list=[b])
    opt.apply_gradients([(grad(G1), w), (grad(G1), b)])
    # both: m = 0.1·g, v = 0.001·g², α̂ = 0.1·√0.001/0.1, step ≈ 0.1·sign(g) (ε aside)
    step0 = math.sqrt(0.001) * 0.05 / (math.sqrt(0.001 * 0.25) + 1e-7)
    step1 = math.sqrt(0.001) * 0.1 / (math.sqrt(0.001) + 1e-7)
    assert_close(w, [0.95 - step0, -1.9 + step1])   # p ← p − 0.1·0.5·p first
    assert_close(b, [1.0 - step0, -2.0 + step1])    # no decay
    opt.apply_gradients([(grad(G2), w), (grad(G2), b)])
    assert_close(w, adam_by_hand(P0, [G1, G2], 0.1, wd=0.5))
    assert_close(b, adam_by_hand(P0, [G1, G2], 0.1, wd=0.0))


def test_exclude_from_weight_decay_by_name():
    model = fz.Sequential([fz.layers.Dense(3, name="hidden"), fz.layers.Dense(2, name="out")])
    model.build((None, 4))
    kernel, bias = model.layers[0].params
    assert fz.layers.base.weight_path(kernel) == "hidden/kernel"
    assert fz.layers.base.weight_path(kernel.copy()) is None
    for opt in (O.SGD(0.1, weight_decay=0.5), O.AdamW(0.1, weight_decay=0.5),
                O.RMSprop(0.1, weight_decay=0.5)):
        params = [p.copy() for p in model.trainable_params]
        ref = [p.copy() for p in params]
        zeros = [np.zeros_like(p) for p in params]
        opt.exclude_from_weight_decay(var_list=[p for p in params if p.ndim < 2])
        opt.apply_gradients(zip(zeros, params))
        for p, r in zip(params, ref):
            # zero gradients: only the decay moves p (Adam's and RMSprop's step is 0 at g = 0)
            expected = r if r.ndim < 2 else r * np.float32(1 - 0.1 * 0.5)
            np.testing.assert_allclose(p, expected, rtol=1e-6)
    opt = O.AdamW(0.1, weight_decay=0.5)
    opt.exclude_from_weight_decay(var_names=["bias"])
    ref = [p.copy() for p in model.trainable_params]
    opt.apply_gradients(zip([np.zeros_like(p) for p in ref], model.trainable_params))
    for p, r in zip(model.trainable_params, ref):
        expected = r if p.ndim < 2 else r * np.float32(1 - 0.1 * 0.5)
        np.testing.assert_allclose(p, expected, rtol=1e-6)


def test_exclude_from_weight_decay_errors():
    opt = O.AdamW()
    with pytest.raises(TypeError, match="var_list"):
        opt.exclude_from_weight_decay(var_list=["kernel"])
    with pytest.raises(TypeError, match="var_names"):
        opt.exclude_from_weight_decay(var_names=[3])
    opt.apply_gradients([(grad(G1), param())])
    with pytest.raises(ValueError, match="before"):
        opt.exclude_from_weight_decay(var_names=["bias"])
    with pytest.raises(ValueError, match="one bool per parameter"):
        fz._core.adam_update([param()], [grad(G1)], [param()], [param()], 0.1, 0.9, 0.99, 1e-8, 1,
                             0.1, decays=[True, False])


def test_adamw_default_weight_decay_is_0_004():
    opt = O.AdamW()
    assert opt.weight_decay == pytest.approx(0.004)
    assert opt.learning_rate == pytest.approx(0.001)
    p = param()
    opt.apply_gradients([(grad(G1), p)])
    assert_close(p, adam_by_hand(P0, [G1], 0.001, wd=0.004))


# ---------------------------------------------------------------- RMSprop

def test_rmsprop_two_steps():
    p, opt = param(), O.RMSprop(learning_rate=0.1, rho=0.9, epsilon=1e-7)
    opt.apply_gradients([(grad(G1), p)])
    # v = 0.1·g² = [0.025, 0.1];  p − 0.1·g/√(v + ε)
    v1 = [0.1 * 0.25, 0.1 * 1.0]
    p1 = [1.0 - 0.1 * 0.5 / math.sqrt(v1[0] + 1e-7), -2.0 + 0.1 * 1.0 / math.sqrt(v1[1] + 1e-7)]
    assert p1[0] == pytest.approx(1 - 0.1 * math.sqrt(10), rel=1e-5)  # ≈ 0.6838
    assert_close(p, p1)
    opt.apply_gradients([(grad(G2), p)])
    v2 = [0.9 * v1[0] + 0.1 * 0.25 ** 2, 0.9 * v1[1] + 0.1 * 4.0]   # [0.02875, 0.49]
    p2 = [p1[0] - 0.1 * 0.25 / math.sqrt(v2[0] + 1e-7), p1[1] - 0.1 * 2.0 / math.sqrt(v2[1] + 1e-7)]
    assert_close(p, p2)


def test_rmsprop_epsilon_is_inside_the_sqrt():
    # g = 1e-4: v = 0.1·1e-8 = 1e-9, so √(v + ε) = √(1.01e-7) while √v + ε would be ≈ 3.2e-5.
    p = param([0.0])
    O.RMSprop(learning_rate=0.01, epsilon=1e-7).apply_gradients([(grad([1e-4]), p)])
    assert_close(p, [-0.01 * 1e-4 / math.sqrt(1e-9 + 1e-7)])


def test_rmsprop_momentum_two_steps():
    p, opt = param(), O.RMSprop(learning_rate=0.1, rho=0.9, momentum=0.5)
    opt.apply_gradients([(grad(G1), p)])
    v1 = [0.025, 0.1]
    d1 = [0.1 * 0.5 / math.sqrt(v1[0] + 1e-7), 0.1 * -1.0 / math.sqrt(v1[1] + 1e-7)]
    mom1 = d1  # 0.5·0 + Δ
    p1 = [1.0 - mom1[0], -2.0 - mom1[1]]
    assert_close(p, p1)
    opt.apply_gradients([(grad(G2), p)])
    v2 = [0.02875, 0.49]
    d2 = [0.1 * 0.25 / math.sqrt(v2[0] + 1e-7), 0.1 * 2.0 / math.sqrt(v2[1] + 1e-7)]
    mom2 = [0.5 * mom1[0] + d2[0], 0.5 * mom1[1] + d2[1]]
    assert_close(p, [p1[0] - mom2[0], p1[1] - mom2[1]])


def test_rmsprop_defaults():
    opt = O.RMSprop()
    assert (opt.learning_rate, opt.rho, opt.momentum, opt.epsilon) == pytest.approx(
        (0.001, 0.9, 0.0, 1e-7))


# ---------------------------------------------------------------- the in-place contract

@pytest.mark.parametrize("make", [lambda: O.SGD(0.1), lambda: O.SGD(0.1, momentum=0.9),
                                  lambda: O.Adam(0.1), lambda: O.AdamW(0.1),
                                  lambda: O.RMSprop(0.1), lambda: O.RMSprop(0.1, momentum=0.5)],
                         ids=["sgd", "momentum", "adam", "adamw", "rmsprop", "rmsprop_momentum"])
def test_apply_gradients_updates_in_place_and_counts(make):
    opt = make()
    kernel = np.ones((3, 2), np.float32)
    bias = np.zeros(2, np.float32)
    ids = (id(kernel), id(bias))
    assert opt.iterations == 0
    for step in (1, 2, 3):
        before = kernel.copy(), bias.copy()
        opt.apply_gradients(zip([np.full((3, 2), 0.5, np.float32), np.ones(2, np.float32)],
                                [kernel, bias]))
        assert opt.iterations == step
        assert (id(kernel), id(bias)) == ids
        assert kernel.dtype == np.float32 and kernel.shape == (3, 2)
        assert np.all(kernel < before[0]) and np.all(bias < before[1])


def test_state_is_kept_per_parameter():
    """Two parameters with momentum: each has its own velocity."""
    opt = O.SGD(learning_rate=0.1, momentum=0.9)
    a, b = param(), param()
    opt.apply_gradients([(grad(G1), a), (grad([0.0, 0.0]), b)])
    opt.apply_gradients([(grad(G2), a), (grad([0.0, 0.0]), b)])
    assert_close(a, [0.88, -2.01])
    assert_close(b, P0)


def test_gradient_may_be_any_array_like():
    p = param()
    O.SGD(learning_rate=0.1).apply_gradients([(G1, p)])  # a list of Python floats
    assert_close(p, [0.95, -1.9])
    p = param()
    O.SGD(learning_rate=0.1).apply_gradients([(np.array(G1, np.float64), p)])
    assert_close(p, [0.95, -1.9])


# ---------------------------------------------------------------- bad arguments

@pytest.mark.parametrize("make, name", [
    (lambda: O.SGD(learning_rate=-0.1), "learning_rate"),
    (lambda: O.SGD(learning_rate=float("nan")), "learning_rate"),
    (lambda: O.Adam(learning_rate=-1), "learning_rate"),
    (lambda: O.SGD(momentum=-0.5), "momentum"),
    (lambda: O.SGD(momentum=1.5), "momentum"),
    (lambda: O.SGD(weight_decay=-0.1), "weight_decay"),
    (lambda: O.Adam(beta_1=1.5), "beta_1"),
    (lambda: O.Adam(beta_1=-0.1), "beta_1"),
    (lambda: O.Adam(beta_2=2.0), "beta_2"),
    (lambda: O.Adam(epsilon=-1e-7), "epsilon"),
    (lambda: O.AdamW(weight_decay=-1.0), "weight_decay"),
    (lambda: O.RMSprop(rho=1.5), "rho"),
    (lambda: O.RMSprop(momentum=-1), "momentum"),
    (lambda: O.SGD(learning_rate="0.1"), "learning_rate"),
])
def test_bad_hyperparameters_raise(make, name):
    with pytest.raises(ValueError, match=name):
        make()


@pytest.mark.parametrize("kwargs, name", [({"beta_1": 1.0}, "beta_1"), ({"beta_2": 1.0}, "beta_2")])
@pytest.mark.parametrize("cls", [O.Adam, O.AdamW])
def test_adam_betas_equal_to_one_are_rejected(cls, kwargs, name):
    """Was a bug: beta_1 = 1 passed the range check, then the bias correction divided by
    1 − β1ᵗ = 0 and the first step turned every weight into NaN (β2 = 1 froze them)."""
    with pytest.raises(ValueError, match=name):
        cls(**kwargs)


SHAPES_NAMED = r"(?s)(?=.*grad)(?=.*param)(?=.*shape)"  # names gradient, parameter and shape


@pytest.mark.parametrize("make", [lambda: O.SGD(), lambda: O.SGD(momentum=0.9), lambda: O.Adam(),
                                  lambda: O.RMSprop()], ids=["sgd", "momentum", "adam", "rmsprop"])
def test_shape_mismatch_raises(make):
    opt = make()
    with pytest.raises(ValueError, match=SHAPES_NAMED) as info:
        opt.apply_gradients([(np.zeros(3, np.float32), param())])
    assert "(3,)" in str(info.value) and "(2,)" in str(info.value)  # both shapes shown
    assert opt.iterations == 0  # nothing was applied


def test_shape_mismatch_leaves_earlier_params_untouched():
    opt = O.SGD(0.1)
    a = param()
    with pytest.raises(ValueError, match=SHAPES_NAMED):
        opt.apply_gradients([(grad(G1), a), (np.zeros(5, np.float32), param())])
    assert_close(a, P0)
    assert opt.iterations == 0


@pytest.mark.parametrize("bad", [
    np.array(P0, np.float64),
    np.array([1, 2], np.int32),
    np.asfortranarray(np.ones((2, 3), np.float32))[:, :2],
    [1.0, -2.0],
], ids=["float64", "int32", "non_contiguous", "list"])
def test_parameter_must_be_float32_array(bad):
    opt = O.Adam()
    with pytest.raises((TypeError, ValueError), match=r"(?i)param.*(float32|contiguous|numpy array)"):
        opt.apply_gradients([(np.zeros(np.shape(bad), np.float32), bad)])
    assert opt.iterations == 0


def test_read_only_parameter_raises():
    p = param()
    p.flags.writeable = False
    with pytest.raises((TypeError, ValueError), match=r"(?i)param.*(writable|writeable|read-only)"):
        O.SGD().apply_gradients([(grad(G1), p)])
    assert_close(p, P0)


# ---------------------------------------------------------------- names

@pytest.mark.parametrize("name, cls", [("sgd", O.SGD), ("adam", O.Adam), ("adamw", O.AdamW),
                                       ("rmsprop", O.RMSprop), ("Adam", O.Adam), ("SGD", O.SGD)])
def test_get_by_name(name, cls):
    assert type(O.get(name)) is cls


def test_get_defaults_match_keras():
    assert O.get("adam").learning_rate == pytest.approx(0.001)
    assert O.get("sgd").learning_rate == pytest.approx(0.01)
    assert O.get("rmsprop").learning_rate == pytest.approx(0.001)
    adam = O.get("adam")
    assert (adam.beta_1, adam.beta_2, adam.epsilon) == pytest.approx((0.9, 0.999, 1e-7))


def test_get_passes_objects_through_and_rejects_unknown():
    opt = O.SGD(0.5)
    assert O.get(opt) is opt
    with pytest.raises(ValueError, match="unknown optimizer 'adamm'; did you mean 'adam'"):
        O.get("adamm")
    with pytest.raises(TypeError, match="optimizer must be a name"):
        O.get(3)


# ---------------------------------------------------------------- gradient clipping (Keras 3)
# G1 = [0.5, −1] has norm √1.25 = 1.1180339887.

def test_clipnorm_scales_a_long_gradient_to_the_norm():
    p = param()
    O.SGD(0.1, clipnorm=1.0).apply_gradients([(grad(G1), p)])
    # g · 1/‖g‖ = [0.4472135955, −0.8944271910]
    assert_close(p, [1 - 0.04472135955, -2 + 0.08944271910])


def test_clipnorm_leaves_a_short_gradient_alone():
    p = param()
    O.SGD(0.1, clipnorm=2.0).apply_gradients([(grad(G1), p)])
    assert_close(p, [0.95, -1.9])


def test_clipnorm_is_per_array_global_clipnorm_over_all():
    # a: G1 (‖·‖² = 1.25), b: [2, 0] (‖·‖² = 4); together ‖g‖ = √5.25 = 2.2912878475
    def step(**clip):
        a, b = param(), param()
        O.SGD(0.1, **clip).apply_gradients([(grad(G1), a), (grad([2.0, 0.0]), b)])
        return a, b

    a, b = step(clipnorm=1.0)  # scales 1/1.1180339887 and 1/2
    assert_close(a, [1 - 0.04472135955, -2 + 0.08944271910])
    assert_close(b, [0.9, -2.0])
    a, b = step(global_clipnorm=1.0)  # one scale, 1/2.2912878475 = 0.4364357805, keeps directions
    assert_close(a, [1 - 0.1 * 0.5 * 0.4364357805, -2 + 0.1 * 0.4364357805])
    assert_close(b, [1 - 0.1 * 2 * 0.4364357805, -2.0])
    a, b = step(global_clipnorm=3.0)  # under the limit: unchanged
    assert_close(a, [0.95, -1.9])
    assert_close(b, [0.8, -2.0])


def test_clipvalue_clips_each_value():
    p = param()
    O.SGD(0.1, clipvalue=0.6).apply_gradients([(grad(G1), p)])
    # [0.5, −1] → [0.5, −0.6]
    assert_close(p, [0.95, -1.94])


def test_the_moments_see_the_clipped_gradient():
    """Clipping happens before the update: Adam's m = (1 − β1)·g and v = (1 − β2)·g²
    hold the clipped g, RMSprop's v = (1 − ρ)·g² too."""
    p = param()
    adam = O.Adam(0.1, clipnorm=1.0)
    adam.apply_gradients([(grad(G1), p)])
    m, v = adam.get_state([p])["slots"][0]
    clipped = np.array([0.4472135955, -0.8944271910])
    np.testing.assert_allclose(m, 0.1 * clipped, rtol=1e-6)
    np.testing.assert_allclose(v, (1 - np.float32(0.999)) * clipped ** 2, rtol=1e-5)
    p = param()
    rms = O.RMSprop(0.1, clipvalue=0.6)
    rms.apply_gradients([(grad(G1), p)])
    (v,) = rms.get_state([p])["slots"][0]
    np.testing.assert_allclose(v, 0.1 * np.array([0.25, 0.36]), rtol=1e-6)


def test_clipping_does_not_touch_weight_decay_or_the_gradient_array():
    p, g = param(), grad(G1)
    O.SGD(0.1, weight_decay=0.5, clipvalue=0.6).apply_gradients([(g, p)])
    # decay first, [0.95, −1.9]; then − 0.1·[0.5, −0.6]
    assert_close(p, [0.9, -1.84])
    np.testing.assert_array_equal(g, G1)  # clipped as it is read, never written


@pytest.mark.parametrize("make", [O.SGD, O.Adam, O.AdamW, O.RMSprop])
@pytest.mark.parametrize("clip", ["clipnorm", "clipvalue", "global_clipnorm"])
def test_every_optimizer_takes_every_clipping(make, clip):
    opt = make(**{clip: 0.25})
    assert getattr(opt, clip) == 0.25 and opt.get_config()[clip] == 0.25
    p = param()
    opt.apply_gradients([(grad([100.0, -100.0]), p)])
    assert np.all(np.isfinite(p)) and not np.array_equal(p, P0)
    assert O.from_config(opt.get_config()).get_config() == opt.get_config()


@pytest.mark.parametrize("clips", [{"clipnorm": 1.0, "global_clipnorm": 1.0},
                                   {"clipnorm": 1.0, "clipvalue": 1.0},
                                   {"clipvalue": 1.0, "global_clipnorm": 1.0}])
def test_only_one_clipping_may_be_set(clips):
    with pytest.raises(ValueError, match="only one of `clipnorm`, `clipvalue` and `global_clipnorm`"):
        O.Adam(**clips)


@pytest.mark.parametrize("value", [0.0, -1.0, float("nan"), float("inf"), "1"])
@pytest.mark.parametrize("clip", ["clipnorm", "clipvalue", "global_clipnorm"])
def test_clipping_values_must_be_positive_numbers(clip, value):
    with pytest.raises(ValueError, match=clip):
        O.SGD(**{clip: value})


def test_nan_gradient_with_global_clipnorm_makes_the_whole_step_nan():
    """As Keras: a NaN global norm gives a NaN scale for every array, rather
    than a step that silently ignores the bad gradient; clipnorm spoils only
    the array that holds the NaN."""
    def step(**clip):
        a, b = param(), param()
        O.SGD(0.1, **clip).apply_gradients([(grad([np.nan, 1.0]), a), (grad(G1), b)])
        return a, b

    a, b = step(global_clipnorm=1.0)
    assert np.all(np.isnan(a)) and np.all(np.isnan(b))
    a, b = step(clipnorm=1.0)
    assert np.all(np.isnan(a)) and np.all(np.isfinite(b))


def test_gradient_norms_are_exact_and_the_same_for_any_thread_count():
    rng = np.random.default_rng(1)
    grads = [rng.standard_normal(n).astype(np.float32) * 3 for n in (100_003, 4096, 1, 0, 70_001)]
    threads = fz.get_num_threads()
    try:
        results = []
        for n in (1, 2):
            fz.set_num_threads(n)
            results.append(fz._core.grad_sum_of_squares(grads))
    finally:
        fz.set_num_threads(threads)
    assert results[0].dtype == np.float64
    np.testing.assert_array_equal(results[0], results[1])
    exact = [math.fsum(float(x) ** 2 for x in g) for g in grads]
    np.testing.assert_allclose(results[0], exact, rtol=1e-13)


def test_clipped_training_is_the_same_for_any_thread_count():
    rng = np.random.default_rng(2)
    start = [rng.standard_normal(n).astype(np.float32) for n in (50_000, 33, 20_000)]
    grads = [rng.standard_normal(len(p)).astype(np.float32) for p in start]
    threads = fz.get_num_threads()
    try:
        results = []
        for n in (1, 2):
            fz.set_num_threads(n)
            params = [p.copy() for p in start]
            opt = O.Adam(0.01, global_clipnorm=1.0)
            for _ in range(3):
                opt.apply_gradients(zip(grads, params))
            results.append(params)
    finally:
        fz.set_num_threads(threads)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- state, for checkpoints

@pytest.mark.parametrize("make", [lambda: O.SGD(0.1, momentum=0.9), lambda: O.Adam(0.01),
                                  lambda: O.AdamW(0.01), lambda: O.RMSprop(0.01, momentum=0.5),
                                  lambda: O.Adam(O.schedules.CosineDecay(0.01, 5, warmup_target=0.1,
                                                                         warmup_steps=2))],
                         ids=["sgd_momentum", "adam", "adamw", "rmsprop_momentum", "adam_schedule"])
def test_state_round_trip_resumes_bit_for_bit(make):
    """3 steps in one go ≡ 1 step, get_state, a new optimizer set_state, 2 steps."""
    rng = np.random.default_rng(3)
    start = [rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal(3).astype(np.float32)]
    grads = [[rng.standard_normal(p.shape).astype(np.float32) for p in start] for _ in range(3)]
    straight = [p.copy() for p in start]
    opt = make()
    for g in grads:
        opt.apply_gradients(zip(g, straight))

    resumed = [p.copy() for p in start]
    first = make()
    first.apply_gradients(zip(grads[0], resumed))
    state = first.get_state(resumed)
    assert state["iterations"] == 1 and len(state["slots"]) == 2
    assert all(len(s) == len(first.slot_names) for s in state["slots"])
    second = make()
    second.set_state(state, resumed)
    assert second.iterations == 1 and second.learning_rate == first.learning_rate
    for g in grads[1:]:
        second.apply_gradients(zip(g, resumed))
    for a, b in zip(straight, resumed):
        np.testing.assert_array_equal(a, b)


def test_slot_names_follow_keras():
    assert O.SGD().slot_names == () and O.SGD(momentum=0.9).slot_names == ("momentum",)
    assert O.Adam().slot_names == ("momentum", "velocity")
    assert O.RMSprop().slot_names == ("velocity",)
    assert O.RMSprop(momentum=0.9).slot_names == ("velocity", "momentum")


def test_set_state_checks_before_changing_anything():
    opt = O.Adam()
    p = param()
    good = opt.get_state([p])
    for bad, message in [({"iterations": -1, "slots": good["slots"]}, "iterations"),
                         ({"iterations": 2, "slots": []}, "1 parameters"),
                         ({"iterations": 2, "slots": [[np.zeros(2)]]}, "2 state arrays"),
                         ({"iterations": 2, "slots": [[np.zeros(2), np.zeros(3)]]},
                          r"velocity of parameter 0 has shape \(3,\)")]:
        with pytest.raises(ValueError, match=message):
            opt.set_state(bad, [p])
    assert opt.iterations == 0


def test_a_step_reuses_the_last_steps_lists_only_for_the_very_same_arrays():
    # apply_gradients keeps the last step's (grads, params, slots) lists; a
    # different parameter array must get its own moments, not the last one's.
    g = np.full(3, 0.5, np.float32)
    opt = fz.optimizers.Adam(learning_rate=0.1)
    p1, p2 = np.ones(3, np.float32), np.ones(3, np.float32)
    opt.apply_gradients([(g, p1)])
    opt.apply_gradients([(g, p1)])
    before = p1.copy()
    opt.apply_gradients([(g, p2)])  # step 3, p2's first: zero moments
    ref = fz.optimizers.Adam(learning_rate=0.1)
    q = np.ones(3, np.float32)
    ref.iterations = 2
    ref.apply_gradients([(g, q)])
    np.testing.assert_array_equal(p1, before)
    np.testing.assert_array_equal(p2, q)
