"""Tests for fromzero.layers: finite-difference gradient checks of every layer,
forward passes against NumPy, weights, initial values and Dropout's statistics."""

import math

import numpy as np
import pytest

import fromzero as fz

L = fz.layers
TOL = 1e-2  # relative error of float32 central differences; a wrong gradient gives ~1


def away_from_zero(x, offset=0.1):
    """x with every value pushed `offset` away from 0 (so no input sits on a ReLU kink)."""
    x = np.asarray(x, dtype=np.float64)
    return (x + np.where(x >= 0, offset, -offset)).astype(np.float32)


def inputs(shape, seed=0):
    return away_from_zero(np.random.default_rng(seed).standard_normal(shape))


def built_dense(units, in_features, seed=0, **kwargs):
    fz.utils.set_random_seed(seed)
    layer = L.Dense(units, **kwargs)
    layer.build((in_features,))
    return layer


def assert_gradients_ok(report, expected_names):
    assert set(report) == set(expected_names), report
    for name, err in report.items():
        assert err < TOL, f"{name}: relative error {err:.3g} (report {report})"


def np_activation(name, z, alpha=0.2):
    z = z.astype(np.float64)
    if name in (None, "linear"):
        return z
    if name == "relu":
        return np.maximum(z, 0)
    if name == "leaky_relu":
        return np.where(z > 0, z, alpha * z)
    if name == "sigmoid":
        return 1 / (1 + np.exp(-z))
    if name == "tanh":
        return np.tanh(z)
    if name == "gelu":
        erf = np.vectorize(math.erf)
        return 0.5 * z * (1 + erf(z / math.sqrt(2)))
    if name == "softmax":
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    raise AssertionError(name)


ACTIVATIONS = [None, "linear", "relu", "leaky_relu", "sigmoid", "tanh", "gelu", "softmax"]


# ---------------------------------------------------------------- gradient checks: Dense

@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_dense_gradients(activation):
    layer = built_dense(6, 5, activation=activation)
    x = inputs((4, 5))
    # The pre-activations must not sit on a kink either (relu, leaky_relu at 0).
    z = x.astype(np.float64) @ layer.kernel + layer.bias
    assert np.abs(z).min() > 5e-3, "test setup: a pre-activation is too close to 0"
    report = fz.utils.check_gradients(layer, x)
    assert_gradients_ok(report, ["x", "param_0", "param_1"])


def test_dense_without_bias_gradients():
    layer = built_dense(4, 6, use_bias=False, activation="tanh")
    assert len(layer.params) == 1 and layer.bias is None
    report = fz.utils.check_gradients(layer, inputs((3, 6), seed=1))
    assert_gradients_ok(report, ["x", "param_0"])


def test_dense_3d_input_gradients():
    """Dense acts on the last axis, as Keras: (batch, time, features) → (batch, time, units),
    the same W at every time step."""
    fz.utils.set_random_seed(2)
    layer = L.Dense(3, activation="sigmoid")
    x = inputs((5, 4, 5), seed=2)
    y = layer.forward(x)
    assert layer.kernel.shape == (5, 3)
    assert y.shape == (5, 4, 3)
    layer.forward(x, training=True)
    dx = layer.backward(np.ones((5, 4, 3), np.float32))
    assert dx.shape == (5, 4, 5)
    report = fz.utils.check_gradients(layer, x)
    assert_gradients_ok(report, ["x", "param_0", "param_1"])


def test_dense_3d_forward_is_the_2d_forward_of_every_row():
    layer = built_dense(3, 5, seed=3, activation="relu")
    x = inputs((4, 4, 5), seed=3)
    y3 = layer.forward(x).copy()
    y2 = layer.forward(x.reshape(16, 5)).copy()
    np.testing.assert_array_equal(y3, y2.reshape(4, 4, 3))


# ---------------------------------------------------------------- gradient checks: other layers

@pytest.mark.parametrize("make", [L.ReLU, lambda: L.LeakyReLU(0.3), L.Sigmoid, L.Tanh, L.GELU,
                                  L.Softmax, L.Flatten, lambda: L.Dropout(0.5),
                                  lambda: L.Activation("relu"), lambda: L.Activation("softmax")],
                         ids=["ReLU", "LeakyReLU0.3", "Sigmoid", "Tanh", "GELU", "Softmax", "Flatten",
                              "Dropout0.5", "Activation_relu", "Activation_softmax"])
@pytest.mark.parametrize("shape", [(4, 6), (3, 4, 5)], ids=["2d", "3d"])
def test_layer_gradients(make, shape):
    fz.utils.set_random_seed(4)
    layer = make()
    report = fz.utils.check_gradients(layer, inputs(shape, seed=4))
    assert_gradients_ok(report, ["x"])


def test_dropout_gradient_check_really_drops():
    """The Dropout check above must not pass trivially: the mask is active."""
    fz.utils.set_random_seed(5)
    layer = L.Dropout(0.5)
    x = inputs((8, 16), seed=5)
    y = layer.forward(x, training=True)
    assert 0 < np.count_nonzero(y == 0) < y.size
    dx = layer.backward(np.ones_like(y))
    np.testing.assert_array_equal(dx == 0, y == 0)
    np.testing.assert_allclose(dx[y != 0], 2.0)


@pytest.mark.parametrize("regularizer", [fz.regularizers.L2(1.0), fz.regularizers.L1(1.0)],
                         ids=["l2", "l1"])
def test_dense_with_regularizer_gradients(regularizer):
    layer = built_dense(3, 5, activation="tanh", kernel_regularizer=regularizer)
    report = fz.utils.check_gradients(layer, inputs((4, 5), seed=20))
    assert_gradients_ok(report, ["x", "param_0", "param_1"])


class DoubledDense(L.Dense):
    """A Dense whose backward is wrong: every gradient is twice too large."""

    def backward(self, dy):
        dx = super().backward(dy)
        for g in self.grads:
            g *= 2
        return dx * 2


def test_wrong_gradient_is_detected():
    fz.utils.set_random_seed(6)
    layer = DoubledDense(4, activation="tanh")
    layer.build((5,))
    report = fz.utils.check_gradients(layer, inputs((3, 5), seed=6))
    assert set(report) == {"x", "param_0", "param_1"}
    for name, err in report.items():
        assert err > 0.1, f"{name}: a doubled gradient went unnoticed ({err})"


def test_wrong_activation_gradient_is_detected():
    class BadSigmoid(L.Sigmoid):
        def backward(self, dy):
            return np.asarray(dy, np.float32).copy()  # forgets f'(x)

    report = fz.utils.check_gradients(BadSigmoid(), inputs((3, 4)))
    assert report["x"] > 0.1


# ---------------------------------------------------------------- Dense forward against NumPy

@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_dense_forward_matches_numpy(activation):
    layer = built_dense(7, 5, seed=7, activation=activation)
    layer.bias[...] = np.linspace(-0.5, 0.5, 7, dtype=np.float32)
    x = inputs((4, 5), seed=7)
    expected = np_activation(activation, x.astype(np.float64) @ layer.kernel + layer.bias)
    y = layer.forward(x)
    assert y.dtype == np.float32 and y.shape == (4, 7)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)


def test_dense_leaky_relu_uses_keras_slope_0_2():
    layer = built_dense(1, 1, use_bias=False, activation="leaky_relu")
    layer.kernel[...] = 1.0
    y = layer.forward(np.array([[-1.0], [2.0]], np.float32))
    np.testing.assert_allclose(y, [[-0.2], [2.0]], rtol=1e-6)


def test_dense_accepts_float64_and_int_inputs():
    layer = built_dense(3, 4, seed=8)
    x = np.arange(8).reshape(2, 4)
    expected = x @ layer.kernel.astype(np.float64) + layer.bias
    np.testing.assert_allclose(layer.forward(x), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layer.forward(x.astype(np.float64)), expected, rtol=1e-5, atol=1e-6)


def test_dense_backward_formulas():
    """dW = xᵀ·dy, db = Σ dy, dx = dy·Wᵀ for a linear Dense."""
    layer = built_dense(3, 4, seed=9)
    x = inputs((5, 4), seed=9)
    dy = inputs((5, 3), seed=10)
    layer.forward(x, training=True)
    dx = layer.backward(dy)
    x64, dy64, w64 = x.astype(np.float64), dy.astype(np.float64), layer.kernel.astype(np.float64)
    np.testing.assert_allclose(layer.grads[0], x64.T @ dy64, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layer.grads[1], dy64.sum(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dx, dy64 @ w64.T, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- weights

def test_dense_kernel_shape_and_glorot_uniform_range():
    fz.utils.set_random_seed(11)
    layer = L.Dense(300)
    layer.build((200,))
    assert layer.kernel.shape == (200, 300) and layer.kernel.dtype == np.float32
    assert layer.bias.shape == (300,) and layer.bias.dtype == np.float32
    np.testing.assert_array_equal(layer.bias, 0)  # bias_initializer="zeros"
    limit = math.sqrt(6 / (200 + 300))
    assert np.abs(layer.kernel).max() <= limit
    # Uniform on [-limit, limit]: spread over the whole range, mean 0, variance limit²/3.
    assert np.abs(layer.kernel).max() > 0.99 * limit
    assert abs(float(layer.kernel.mean())) < 0.01 * limit
    assert float(layer.kernel.var()) == pytest.approx(limit ** 2 / 3, rel=0.02)


def test_dense_build_on_first_forward():
    layer = L.Dense(3)
    assert not layer.built and layer.params == []
    layer.forward(np.zeros((2, 5), np.float32))
    assert layer.built and layer.kernel.shape == (5, 3)


@pytest.mark.parametrize("use_bias", [True, False])
def test_params_and_grads_match(use_bias):
    layer = built_dense(4, 6, use_bias=use_bias)
    assert len(layer.params) == len(layer.grads) == (2 if use_bias else 1)
    for p, g in zip(layer.params, layer.grads):
        assert p.shape == g.shape
        assert p.dtype == g.dtype == np.float32
    assert layer.params[0] is layer.kernel
    assert layer.count_params() == 6 * 4 + (4 if use_bias else 0)
    for make in (L.ReLU, L.Softmax, L.Flatten, lambda: L.Dropout(0.3)):
        other = make()
        assert other.params == [] and other.grads == [] and other.count_params() == 0


def test_set_weights_get_weights_round_trip():
    layer = built_dense(3, 4)
    kernel_obj, bias_obj = layer.kernel, layer.bias
    new = [np.arange(12, dtype=np.float32).reshape(4, 3), np.array([1, 2, 3], np.float32)]
    layer.set_weights(new)
    got = layer.get_weights()
    for a, b in zip(got, new):
        np.testing.assert_array_equal(a, b)
    # set_weights writes in place (optimizers keep pointing at the same arrays) ...
    assert layer.kernel is kernel_obj and layer.bias is bias_obj and layer.params[0] is kernel_obj
    # ... and get_weights returns copies.
    got[0][...] = -1
    assert layer.kernel[0, 0] == 0
    np.testing.assert_allclose(layer.forward(np.ones((1, 4), np.float32)), [[19, 24, 29]])


def test_set_weights_accepts_float64_lists():
    layer = built_dense(2, 2)
    layer.set_weights([[[1.0, 2.0], [3.0, 4.0]], [0.5, -0.5]])
    np.testing.assert_array_equal(layer.kernel, [[1, 2], [3, 4]])
    assert layer.kernel.dtype == np.float32


def test_set_weights_shape_errors():
    layer = built_dense(3, 4)
    with pytest.raises(ValueError, match=r"expected 2 weight arrays, got 1"):
        layer.set_weights([np.zeros((4, 3))])
    with pytest.raises(ValueError, match=r"weight 0 must have shape \(4, 3\), got \(3, 4\)"):
        layer.set_weights([np.zeros((3, 4)), np.zeros(3)])
    with pytest.raises(ValueError, match=r"weight 1 must have shape \(3,\), got \(4,\)"):
        layer.set_weights([np.zeros((4, 3)), np.zeros(4)])


# ---------------------------------------------------------------- Dropout

def test_dropout_inference_is_identity():
    layer = L.Dropout(0.5)
    x = inputs((10, 10))
    y = layer.forward(x, training=False)
    np.testing.assert_array_equal(y, x)
    np.testing.assert_array_equal(layer(x), x)  # __call__ defaults to inference
    # backward after an inference forward passes the gradient straight through
    dy = inputs((10, 10), seed=1)
    np.testing.assert_array_equal(layer.backward(dy), dy)


@pytest.mark.parametrize("rate", [0.2, 0.5, 0.8])
def test_dropout_training_statistics(rate):
    fz.utils.set_random_seed(12)
    layer = L.Dropout(rate)
    x = np.ones((200, 250), np.float32)
    y = layer.forward(x, training=True)
    dropped = np.mean(y == 0)
    # 50,000 Bernoulli draws: the standard deviation of the fraction is < 0.0023
    assert dropped == pytest.approx(rate, abs=0.015)
    kept = y[y != 0]
    np.testing.assert_allclose(kept, 1 / (1 - rate), rtol=1e-6)
    # inverted dropout keeps the mean
    assert float(y.mean()) == pytest.approx(1.0, abs=0.05)


def test_dropout_rate_zero_is_identity_in_training():
    x = inputs((3, 4))
    np.testing.assert_array_equal(L.Dropout(0.0).forward(x, training=True), x)


def test_dropout_masks_repeat_with_seed_and_differ_between_calls():
    x = np.ones((20, 30), np.float32)
    fz.utils.set_random_seed(13)
    layer = L.Dropout(0.5)
    a = layer.forward(x, training=True).copy()
    b = layer.forward(x, training=True).copy()
    fz.utils.set_random_seed(13)
    c = layer.forward(x, training=True).copy()
    np.testing.assert_array_equal(a, c)
    assert not np.array_equal(a, b)


# ---------------------------------------------------------------- activation layers

def test_softmax_rows_sum_to_one():
    x = np.random.default_rng(14).standard_normal((6, 9)).astype(np.float32) * 5
    x[0] += 1000  # large logits stay finite (the row maximum is subtracted)
    y = L.Softmax().forward(x)
    assert np.all(np.isfinite(y)) and np.all(y >= 0)
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(y, np_activation("softmax", x), rtol=1e-5, atol=1e-7)


def test_softmax_3d_acts_on_last_axis():
    x = inputs((2, 3, 4))
    y = L.Softmax().forward(x)
    assert y.shape == (2, 3, 4)
    np.testing.assert_allclose(y.sum(axis=-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(y, np_activation("softmax", x), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("layer, name, alpha", [
    (L.ReLU(), "relu", 0), (L.LeakyReLU(0.3), "leaky_relu", 0.3), (L.LeakyReLU(), "leaky_relu", 0.3),
    (L.Sigmoid(), "sigmoid", 0), (L.Tanh(), "tanh", 0), (L.GELU(), "gelu", 0),
    (L.Activation("tanh"), "tanh", 0),
], ids=["ReLU", "LeakyReLU0.3", "LeakyReLU_default", "Sigmoid", "Tanh", "GELU", "Activation_tanh"])
def test_activation_forward_matches_numpy(layer, name, alpha):
    x = inputs((5, 7), seed=15) * 2
    np.testing.assert_allclose(layer.forward(x), np_activation(name, x, alpha), rtol=1e-5, atol=1e-6)


def test_flatten_shapes():
    layer = L.Flatten()
    x = inputs((3, 4, 5))
    y = layer.forward(x, training=True)
    assert y.shape == (3, 20)
    np.testing.assert_array_equal(y, x.reshape(3, 20))
    assert layer.backward(np.ones((3, 20), np.float32)).shape == (3, 4, 5)
    assert layer.compute_output_shape((None, 4, 5)) == (None, 20)


def test_backward_rejects_wrong_dy_shape():
    layer = built_dense(3, 4)
    layer.forward(inputs((2, 4)), training=True)
    with pytest.raises(ValueError, match=r"dy must have shape \(2, 3\)"):
        layer.backward(np.ones((2, 4), np.float32))
    relu = L.ReLU()
    relu.forward(inputs((2, 4)), training=True)
    with pytest.raises(ValueError, match=r"dy must have shape \(2, 4\)"):
        relu.backward(np.ones((4, 2), np.float32))
