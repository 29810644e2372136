"""Tests for fromzero.losses: values against NumPy references with Keras's semantics,
gradients by finite differences, tiny cases by hand, stability and argument errors."""

import math

import numpy as np
import pytest

import fromzero as fz

Ls = fz.losses
EPS = np.float32(1e-7)  # Keras's epsilon() for clipping probabilities
TOL = 1e-2


# ---------------------------------------------------------------- NumPy references (float64 math)

def clip(p):
    """Keras clips in float32: to [1e-7, 1 - 1e-7] as float32 values."""
    return np.clip(np.asarray(p, np.float32), EPS, np.float32(1) - EPS).astype(np.float64)


def softmax(z):
    z = np.asarray(z, np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def ref_mse(t, p):
    return float(np.mean(np.mean((np.asarray(p, np.float64) - t) ** 2, axis=-1)))


def ref_sparse_ce(labels, p, from_logits):
    if from_logits:
        z = np.asarray(p, np.float64)
        lse = np.log(np.exp(z - z.max(1, keepdims=True)).sum(1)) + z.max(1)
        return float(np.mean(lse - z[np.arange(len(z)), labels]))
    return float(np.mean(-np.log(clip(p)[np.arange(len(p)), labels])))


def ref_ce(t, p, from_logits):
    if from_logits:
        logp = np.log(softmax(p))
    else:
        p = np.asarray(p, np.float64)
        p = p / p.sum(axis=-1, keepdims=True)  # Keras normalises by the row sum first
        logp = np.log(clip(p))
    return float(np.mean(-np.sum(t * logp, axis=-1)))


def ref_bce(t, p, from_logits):
    if from_logits:
        z = np.asarray(p, np.float64)
        per = np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))
    else:
        q = clip(p)
        per = -(t * np.log(q) + (1 - t) * np.log(1 - q))
    return float(np.mean(np.mean(per, axis=-1)))


# ---------------------------------------------------------------- data

RNG = np.random.default_rng(0)
N, C = 5, 4
LOGITS = RNG.standard_normal((N, C)).astype(np.float32)
PROBS = softmax(LOGITS).astype(np.float32)
LABELS = np.array([0, 3, 1, 2, 3])
ONEHOT = np.eye(C, dtype=np.float32)[LABELS]
SOFT = softmax(RNG.standard_normal((N, C))).astype(np.float32)  # soft targets, rows sum to 1
BINARY = (RNG.random((N, C)) > 0.5).astype(np.float32)
SIGMOID = (1 / (1 + np.exp(-LOGITS.astype(np.float64)))).astype(np.float32)
# Probabilities that do not sum to 1 (Keras normalises them for categorical CE).
UNNORMALISED = (PROBS * np.array([[1.0], [2.0], [0.5], [1.5], [3.0]], np.float32)).astype(np.float32)

CASES = [
    ("mse", lambda: Ls.MeanSquaredError(), LOGITS, ONEHOT, lambda t, p: ref_mse(t, p)),
    ("mse_regression", lambda: Ls.MeanSquaredError(), LOGITS, SOFT * 3 - 1, lambda t, p: ref_mse(t, p)),
    ("sparse_probs", lambda: Ls.SparseCategoricalCrossentropy(), PROBS, LABELS,
     lambda t, p: ref_sparse_ce(t, p, False)),
    ("sparse_logits", lambda: Ls.SparseCategoricalCrossentropy(from_logits=True), LOGITS, LABELS,
     lambda t, p: ref_sparse_ce(t, p, True)),
    ("categorical_probs", lambda: Ls.CategoricalCrossentropy(), PROBS, ONEHOT,
     lambda t, p: ref_ce(t, p, False)),
    ("categorical_probs_soft", lambda: Ls.CategoricalCrossentropy(), PROBS, SOFT,
     lambda t, p: ref_ce(t, p, False)),
    ("categorical_unnormalised", lambda: Ls.CategoricalCrossentropy(), UNNORMALISED, SOFT,
     lambda t, p: ref_ce(t, p, False)),
    ("categorical_logits", lambda: Ls.CategoricalCrossentropy(from_logits=True), LOGITS, ONEHOT,
     lambda t, p: ref_ce(t, p, True)),
    ("categorical_logits_soft", lambda: Ls.CategoricalCrossentropy(from_logits=True), LOGITS, SOFT,
     lambda t, p: ref_ce(t, p, True)),
    ("binary_probs", lambda: Ls.BinaryCrossentropy(), SIGMOID, BINARY,
     lambda t, p: ref_bce(t, p, False)),
    ("binary_logits", lambda: Ls.BinaryCrossentropy(from_logits=True), LOGITS, BINARY,
     lambda t, p: ref_bce(t, p, True)),
    ("binary_logits_soft", lambda: Ls.BinaryCrossentropy(from_logits=True), LOGITS, SOFT,
     lambda t, p: ref_bce(t, p, True)),
]
IDS = [c[0] for c in CASES]


@pytest.mark.parametrize("name, make, y_pred, y_true, ref", CASES, ids=IDS)
def test_value_matches_numpy_reference(name, make, y_pred, y_true, ref):
    value = make()(y_true, y_pred)
    assert isinstance(value, float)
    assert value == pytest.approx(ref(y_true, y_pred), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("name, make, y_pred, y_true, ref", CASES, ids=IDS)
def test_gradient_by_finite_differences(name, make, y_pred, y_true, ref):
    loss = make()
    report = fz.utils.check_gradients(loss, y_pred.copy(), y_true)
    assert set(report) == {"y_pred"}
    assert report["y_pred"] < TOL, report
    grad = loss.gradient(y_true, y_pred)
    assert grad.shape == y_pred.shape and grad.dtype == np.float32


@pytest.mark.parametrize("name, make, y_pred, y_true, ref", CASES, ids=IDS)
def test_gradient_is_of_the_batch_mean(name, make, y_pred, y_true, ref):
    """Doubling the batch (same rows twice) halves each row's gradient."""
    loss = make()
    g1 = loss.gradient(y_true, y_pred)
    g2 = loss.gradient(np.concatenate([y_true, y_true]), np.concatenate([y_pred, y_pred]))
    np.testing.assert_allclose(g2[:N], g1 / 2, rtol=1e-5, atol=1e-8)
    assert loss(np.concatenate([y_true, y_true]), np.concatenate([y_pred, y_pred])) == \
        pytest.approx(loss(y_true, y_pred), rel=1e-6)


def test_fd_check_catches_a_wrong_loss_gradient():
    class HalfGradMSE(Ls.MeanSquaredError):
        def gradient(self, y_true, y_pred):
            return super().gradient(y_true, y_pred) * 0.5

    report = fz.utils.check_gradients(HalfGradMSE(), LOGITS.copy(), ONEHOT)
    assert report["y_pred"] > 0.1


# ---------------------------------------------------------------- hand-computed cases

def test_sparse_from_logits_by_hand():
    # softmax([0, ln 3]) = [1/4, 3/4]; label 1 → −ln(3/4) = ln(4/3)
    loss = Ls.SparseCategoricalCrossentropy(from_logits=True)
    assert loss([1], [[0.0, math.log(3)]]) == pytest.approx(math.log(4 / 3), rel=1e-6)
    # gradient of the mean: softmax − onehot
    np.testing.assert_allclose(loss.gradient([1], [[0.0, math.log(3)]]), [[0.25, -0.25]], rtol=1e-6)


def test_sparse_from_probs_by_hand():
    loss = Ls.SparseCategoricalCrossentropy()
    # mean of −ln 0.5 and −ln 0.25
    assert loss([0, 2], [[0.5, 0.25, 0.25], [0.25, 0.5, 0.25]]) == pytest.approx(
        (math.log(2) + math.log(4)) / 2, rel=1e-6)
    # ∂/∂p of mean(−ln p_label) = −1/(batch · p_label) at the label, 0 elsewhere
    np.testing.assert_allclose(loss.gradient([0, 2], [[0.5, 0.25, 0.25], [0.25, 0.5, 0.25]]),
                               [[-1.0, 0, 0], [0, 0, -2.0]], rtol=1e-6)


def test_mse_by_hand():
    loss = Ls.MeanSquaredError()
    # row 1: ((1)² + (2)²)/2 = 2.5, row 2: (0 + 4²)/2 = 8 → mean 5.25
    assert loss([[0, 0], [1, 1]], [[1, 2], [1, 5]]) == pytest.approx(5.25)
    # grad = 2 (p − t) / (cols · batch)
    np.testing.assert_allclose(loss.gradient([[0, 0], [1, 1]], [[1, 2], [1, 5]]),
                               [[0.5, 1.0], [0.0, 2.0]], rtol=1e-6)


def test_mse_one_output_column_accepts_1d_targets():
    loss = Ls.MeanSquaredError()
    assert loss([1.0, 2.0], [[2.0], [4.0]]) == pytest.approx((1 + 4) / 2)
    assert loss([1.0, 2.0], [2.0, 4.0]) == pytest.approx(2.5)


def test_categorical_by_hand():
    loss = Ls.CategoricalCrossentropy()
    assert loss([[0, 1, 0]], [[0.2, 0.5, 0.3]]) == pytest.approx(math.log(2), rel=1e-6)
    # unnormalised [0.4, 1.0, 0.6] → normalised [0.2, 0.5, 0.3]: the same loss
    assert loss([[0, 1, 0]], [[0.4, 1.0, 0.6]]) == pytest.approx(math.log(2), rel=1e-6)


def test_binary_by_hand():
    loss = Ls.BinaryCrossentropy()
    # −[ln 0.8 + ln(1 − 0.4)]/2
    assert loss([[1, 0]], [[0.8, 0.4]]) == pytest.approx(-(math.log(0.8) + math.log(0.6)) / 2,
                                                         rel=1e-6)
    lg = Ls.BinaryCrossentropy(from_logits=True)
    assert lg([[1.0]], [[0.0]]) == pytest.approx(math.log(2), rel=1e-6)
    np.testing.assert_allclose(lg.gradient([[1.0]], [[0.0]]), [[-0.5]], rtol=1e-6)


def test_probabilities_are_clipped_like_keras():
    # p = 0 at the label: −ln(1e-7), not inf
    sparse = Ls.SparseCategoricalCrossentropy()
    assert sparse([0], [[0.0, 1.0]]) == pytest.approx(-math.log(1e-7), rel=1e-5)
    cat = Ls.CategoricalCrossentropy()
    assert cat([[1, 0]], [[0.0, 1.0]]) == pytest.approx(-math.log(1e-7), rel=1e-5)
    bce = Ls.BinaryCrossentropy()
    v = bce([[0, 1]], [[1.0, 0.0]])
    assert math.isfinite(v)
    assert v == pytest.approx(ref_bce(np.array([[0.0, 1.0]]), np.array([[1.0, 0.0]]), False), rel=1e-5)
    # clipped entries get no gradient (the derivative of clip is 0 there)
    np.testing.assert_array_equal(bce.gradient([[0, 1]], [[1.0, 0.0]]), [[0.0, 0.0]])
    np.testing.assert_array_equal(sparse.gradient([0], [[0.0, 1.0]]), [[0.0, 0.0]])


# ---------------------------------------------------------------- stability

def test_huge_logits_stay_finite():
    z = np.array([[1e4, -1e4, 0.0], [-3e4, 3e4, 1.0]], np.float32)
    sparse = Ls.SparseCategoricalCrossentropy(from_logits=True)
    assert sparse([0, 0], z) == pytest.approx((0 + 6e4) / 2, rel=1e-6)
    g = sparse.gradient([0, 0], z)
    assert np.all(np.isfinite(g))
    np.testing.assert_allclose(g, [[0, 0, 0], [-0.5, 0.5, 0]], atol=1e-7)

    cat = Ls.CategoricalCrossentropy(from_logits=True)
    onehot = np.array([[0, 1, 0], [0, 1, 0]], np.float32)
    assert cat(onehot, z) == pytest.approx(2e4 / 2, rel=1e-6)
    assert np.all(np.isfinite(cat.gradient(onehot, z)))

    bce = Ls.BinaryCrossentropy(from_logits=True)
    t = np.array([[0, 1, 1], [1, 0, 1]], np.float32)
    expected = ref_bce(t, z, True)
    assert bce(t, z) == pytest.approx(expected, rel=1e-6)
    g = bce.gradient(t, z)
    assert np.all(np.isfinite(g))
    sigmoid = 0.5 * (1 + np.tanh(z.astype(np.float64) / 2))
    np.testing.assert_allclose(g, (sigmoid - t) / 6, atol=1e-7)


def test_float64_and_int_inputs_are_accepted():
    loss = Ls.MeanSquaredError()
    assert loss(ONEHOT.astype(np.int64), LOGITS.astype(np.float64)) == pytest.approx(
        ref_mse(ONEHOT, LOGITS), rel=1e-5)
    sparse = Ls.SparseCategoricalCrossentropy()
    assert sparse(LABELS.astype(np.float64), PROBS) == pytest.approx(
        ref_sparse_ce(LABELS, PROBS, False), rel=1e-5)  # integral floats are labels, as Keras
    assert sparse(LABELS.reshape(-1, 1), PROBS) == pytest.approx(
        ref_sparse_ce(LABELS, PROBS, False), rel=1e-5)  # (batch, 1) labels too
    assert sparse(LABELS.astype(np.uint8), PROBS.tolist()) == pytest.approx(
        ref_sparse_ce(LABELS, PROBS, False), rel=1e-5)


# ---------------------------------------------------------------- errors

@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("label", [4, 7, -1])
def test_sparse_label_out_of_range(from_logits, label):
    loss = Ls.SparseCategoricalCrossentropy(from_logits=from_logits)
    labels = LABELS.copy()
    labels[2] = label
    with pytest.raises(ValueError, match=rf"label {label} is outside \[0, 4\)"):
        loss(labels, PROBS)
    with pytest.raises(ValueError, match="outside"):
        loss.gradient(labels, PROBS)


@pytest.mark.parametrize("bad", [0.5, np.nan, np.inf])
def test_sparse_non_integral_labels(bad):
    loss = Ls.SparseCategoricalCrossentropy()
    labels = LABELS.astype(np.float64)
    labels[1] = bad
    with pytest.raises(ValueError, match="whole numbers"):
        loss(labels, PROBS)


def test_sparse_labels_wrong_type_or_shape():
    loss = Ls.SparseCategoricalCrossentropy()
    with pytest.raises(ValueError, match=r"labels must have shape \(5,\), got \(4,\)"):
        loss(LABELS[:4], PROBS)
    with pytest.raises(ValueError, match=r"labels must have shape \(5,\), got \(5, 4\)"):
        loss(ONEHOT, PROBS)  # one-hot targets given to the sparse loss
    with pytest.raises(TypeError, match="labels must be integers"):
        loss(np.array(["a", "b", "c", "d", "e"]), PROBS)


@pytest.mark.parametrize("make", [Ls.MeanSquaredError, Ls.CategoricalCrossentropy,
                                  Ls.BinaryCrossentropy,
                                  lambda: Ls.CategoricalCrossentropy(from_logits=True)])
def test_dense_targets_wrong_shape(make):
    loss = make()
    with pytest.raises(ValueError, match=r"y_true has shape \(5, 3\) but y_pred has shape \(5, 4\)"):
        loss(ONEHOT[:, :3], PROBS)
    with pytest.raises(ValueError, match=r"y_true has shape \(4, 4\)"):
        loss.gradient(ONEHOT[:4], PROBS)


@pytest.mark.parametrize("make", [Ls.MeanSquaredError, Ls.SparseCategoricalCrossentropy])
def test_bad_predictions(make):
    loss = make()
    with pytest.raises(ValueError, match="y_pred must be a non-empty"):
        loss(np.zeros((2, 2, 2)), np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="y_pred must be a non-empty"):
        loss(np.zeros(0, np.int64), np.zeros((0, 3)))
    with pytest.raises(TypeError, match="y_pred must hold numbers"):
        loss([0, 1], np.array([["a", "b"], ["c", "d"]]))


def test_dense_targets_must_be_numbers():
    with pytest.raises(TypeError, match="y_true must hold numbers"):
        Ls.MeanSquaredError()(np.array([["a"]]), [[1.0]])


# ---------------------------------------------------------------- names

@pytest.mark.parametrize("name, cls", [
    ("mse", Ls.MeanSquaredError), ("mean_squared_error", Ls.MeanSquaredError),
    ("MSE", Ls.MeanSquaredError),
    ("sparse_categorical_crossentropy", Ls.SparseCategoricalCrossentropy),
    ("categorical_crossentropy", Ls.CategoricalCrossentropy),
    ("binary_crossentropy", Ls.BinaryCrossentropy),
])
def test_get_by_name(name, cls):
    loss = Ls.get(name)
    assert type(loss) is cls
    assert getattr(loss, "from_logits", False) is False


def test_get_passes_objects_through():
    loss = Ls.SparseCategoricalCrossentropy(from_logits=True)
    assert Ls.get(loss) is loss


def test_get_unknown_name_suggests_close_names():
    with pytest.raises(ValueError, match="unknown loss") as info:
        Ls.get("sparse_categorical_crosentropy")
    assert "did you mean 'sparse_categorical_crossentropy'" in str(info.value)
    with pytest.raises(ValueError, match="did you mean 'mse'"):
        Ls.get("mse2")
    with pytest.raises(TypeError, match="loss must be a name"):
        Ls.get(42)


# ---------------------------------------------------------------- losses of your own

class MeanAbsoluteError(Ls.Loss):
    """The docs' example: |p − t| averaged over the outputs, per sample."""

    def call(self, y_true, y_pred):
        return np.mean(np.abs(y_pred - y_true), axis=-1)

    def gradient(self, y_true, y_pred):
        return np.sign(y_pred - y_true) / y_pred.size


class Huber(Ls.Loss):
    """½e² for |e| ≤ δ, δ(|e| − ½δ) beyond: smooth, so finite differences are exact."""

    def __init__(self, delta=1.0):
        super().__init__()
        self.delta = delta

    def call(self, y_true, y_pred):
        e = np.abs(y_pred - y_true)
        return np.mean(np.where(e <= self.delta, 0.5 * e**2, self.delta * (e - 0.5 * self.delta)),
                       axis=-1)

    def gradient(self, y_true, y_pred):
        e = y_pred - y_true
        return np.clip(e, -self.delta, self.delta) / y_pred.size


def test_user_loss_value_and_name():
    loss = MeanAbsoluteError()
    assert loss.name == "mean_absolute_error"  # Keras's default: the class name in snake_case
    # rows: (1 + 2)/2 = 1.5 and (0 + 4)/2 = 2 → 1.75
    assert loss([[0, 0], [1, 1]], [[1, 2], [1, 5]]) == pytest.approx(1.75)
    np.testing.assert_allclose(loss.call(np.float32([[0, 0]]), np.float32([[1, -2]])), [1.5])
    assert MeanAbsoluteError(name="robust").name == "robust"


@pytest.mark.parametrize("loss", [Huber(), Huber(delta=0.3)], ids=["delta1", "delta0.3"])
def test_user_loss_gradient_by_finite_differences(loss):
    y_pred = (LOGITS * 2).copy()
    report = fz.utils.check_gradients(loss, y_pred, SOFT)
    assert report["y_pred"] < TOL, report


def test_user_loss_with_a_wrong_gradient_is_caught():
    class HalfHuber(Huber):
        def gradient(self, y_true, y_pred):
            return super().gradient(y_true, y_pred) / 2

    assert fz.utils.check_gradients(HalfHuber(), (LOGITS * 2).copy(), SOFT)["y_pred"] > 0.1


def test_user_loss_targets_get_a_last_axis_like_y_pred():
    # one output and (batch,) targets: (batch, 1), not a (batch, batch) broadcast
    loss = MeanAbsoluteError()
    assert loss([1.0, 2.0], [[2.0], [4.0]]) == pytest.approx((1 + 2) / 2)
    with pytest.raises(ValueError, match="y_true has 3 samples but y_pred has 2"):
        loss([1.0, 2.0, 3.0], [[2.0], [4.0]])


def test_user_loss_through_the_training_loop_interface():
    """What fit calls: prepare_targets once, then value / value_and_gradient per batch."""
    loss = Huber(delta=0.5)
    pred = LOGITS.copy()
    targets = loss.prepare_targets(SOFT, pred.shape)
    row_loss, grad = np.empty(N, np.float32), np.empty_like(pred)
    total = loss.value_and_gradient(pred, targets, row_loss, grad)
    assert total / N == pytest.approx(loss(SOFT, pred), rel=1e-6)
    np.testing.assert_allclose(row_loss, loss.call(targets, pred), rtol=1e-6)
    np.testing.assert_allclose(grad, loss.gradient(targets, pred), rtol=1e-6)
    assert loss.value(pred, targets, row_loss) == pytest.approx(total, rel=1e-6)
    assert not loss.fuses_with_softmax


def test_user_loss_mistakes_are_named():
    class WrongShape(Huber):
        def gradient(self, y_true, y_pred):
            return np.zeros(3)

    class OneNumber(Huber):
        def call(self, y_true, y_pred):
            return 1.0

    pred = LOGITS.copy()
    row_loss, grad = np.empty(N, np.float32), np.empty_like(pred)
    with pytest.raises(ValueError, match=r"gradient\(\) returned shape \(3,\).*\(5, 4\)"):
        WrongShape().value_and_gradient(pred, SOFT, row_loss, grad)
    with pytest.raises(ValueError, match=r"call\(\) must return one loss per sample"):
        OneNumber()(SOFT, pred)


def test_user_loss_trains_a_model():
    fz.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 3)).astype(np.float32)
    y = x @ np.array([[1.0], [-2.0], [0.5]], np.float32) + 0.3
    model = fz.Sequential([fz.layers.Dense(1)])
    model.compile(fz.optimizers.SGD(0.1), loss=Huber())
    history = model.fit(x, y, epochs=20, batch_size=16, verbose=0)
    assert history.history["loss"][-1] < 0.05 * history.history["loss"][0]
    assert model.evaluate(x, y, verbose=0) == pytest.approx(Huber()(y, model.predict(x)), rel=1e-5)


def test_overriding_a_builtin_gradient_is_what_training_uses():
    """A subclass of a built-in loss that overrides gradient (or call) is computed
    from its methods, not from the fused kernels it would otherwise bypass."""
    class Zero(Ls.SparseCategoricalCrossentropy):
        def gradient(self, y_true, y_pred):
            return np.zeros_like(y_pred)

    loss = Zero()
    assert not loss.fuses_with_softmax and Ls.SparseCategoricalCrossentropy().fuses_with_softmax
    pred = PROBS.copy()
    targets = loss.prepare_targets(LABELS, pred.shape)
    grad = np.ones_like(pred)
    total = loss.value_and_gradient(pred, targets, np.empty(N, np.float32), grad)
    assert total / N == pytest.approx(ref_sparse_ce(LABELS, PROBS, False), rel=1e-5)
    np.testing.assert_array_equal(grad, 0.0)


@pytest.mark.parametrize("name, make, y_pred, y_true, ref", CASES, ids=IDS)
def test_builtin_call_gives_the_loss_of_each_sample(name, make, y_pred, y_true, ref):
    loss = make()
    per_sample = loss.call(y_true, y_pred)
    assert per_sample.shape == (N,)
    assert [ref(y_true[i:i + 1], y_pred[i:i + 1]) for i in range(N)] == pytest.approx(
        per_sample.tolist(), rel=1e-5, abs=1e-6)


def test_plain_functions_are_refused_with_the_reason_and_the_way():
    def my_mse(y_true, y_pred):
        return np.mean((y_pred - y_true) ** 2)

    with pytest.raises(TypeError) as info:
        Ls.get(my_mse)
    message = str(info.value)
    assert "loss='my_mse' is a plain function" in message
    assert "no autodiff" in message and "def gradient(self, y_true, y_pred)" in message
    with pytest.raises(TypeError, match="no autodiff"):
        fz.Sequential([fz.layers.Dense(1)]).compile("sgd", loss=lambda t, p: 0.0)


def test_incomplete_loss_classes_are_refused():
    class OnlyCall(Ls.Loss):
        def call(self, y_true, y_pred):
            return np.zeros(len(y_pred))

    with pytest.raises(TypeError, match=r"OnlyCall must define gradient\(y_true, y_pred\)"):
        Ls.get(OnlyCall())
    with pytest.raises(NotImplementedError, match="must define gradient"):
        OnlyCall().gradient([[0.0]], [[1.0]])
    with pytest.raises(TypeError, match=r"got the class MeanSquaredError: write MeanSquaredError\(\)"):
        Ls.get(Ls.MeanSquaredError)
