"""Tests for the image layers: Conv2D, MaxPool2D, AveragePooling2D,
GlobalAveragePooling2D and BatchNormalization — finite-difference gradient
checks, forward passes against NumPy written from the definitions, argument
errors, save/load, thread-count invariance, and a small CNN learning MNIST."""

import math

import numpy as np
import pytest

import fromzero as fz

L = fz.layers
TOL = 1e-2  # relative error of float32 central differences; a wrong gradient gives ~1


def inputs(shape, seed=0, offset=0.1):
    """Standard normal values pushed `offset` away from 0 (no input on a ReLU kink)."""
    x = np.random.default_rng(seed).standard_normal(shape)
    return (x + np.where(x >= 0, offset, -offset)).astype(np.float32)


def distinct(shape, seed=0):
    """A shuffled 0, 0.01, 0.02, ...: every max-pooling window has a unique
    maximum that the check's ±1e-3 nudges cannot change."""
    values = np.random.default_rng(seed).permutation(int(np.prod(shape))) * 0.01
    return values.reshape(shape).astype(np.float32)


def assert_gradients_ok(report, expected_names):
    assert set(report) == set(expected_names), report
    for name, err in report.items():
        assert err < TOL, f"{name}: relative error {err:.3g} (report {report})"


# ---------------------------------------------------------------- NumPy references

def same_padding(size, window, stride):
    """(before, after) padding of Keras/TensorFlow "same" along one axis."""
    out = -(-size // stride)
    total = max((out - 1) * stride + window - size, 0)
    return total // 2, total - total // 2


def pad_images(x, window, strides, padding, value):
    if padding == "valid":
        return x
    pads = [same_padding(x.shape[1], window[0], strides[0]),
            same_padding(x.shape[2], window[1], strides[1])]
    return np.pad(x, [(0, 0), pads[0], pads[1], (0, 0)], constant_values=value)


def windows(xp, window, strides):
    """Yields (i, j, view): view[n, oh, ow, c] = xp[n, oh·sh + i, ow·sw + j, c]."""
    (kh, kw), (sh, sw) = window, strides
    ho = (xp.shape[1] - kh) // sh + 1
    wo = (xp.shape[2] - kw) // sw + 1
    for i in range(kh):
        for j in range(kw):
            yield i, j, xp[:, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw, :]


def np_conv2d(x, kernel, bias, strides, padding):
    xp = pad_images(x.astype(np.float64), kernel.shape[:2], strides, padding, 0.0)
    y = sum(np.einsum("nhwc,cf->nhwf", view, kernel[i, j].astype(np.float64))
            for i, j, view in windows(xp, kernel.shape[:2], strides))
    return y if bias is None else y + bias


def np_max_pool(x, pool, strides, padding):
    xp = pad_images(x.astype(np.float64), pool, strides, padding, -np.inf)
    return np.max([view for _, _, view in windows(xp, pool, strides)], axis=0)


def np_avg_pool(x, pool, strides, padding):
    """The sum over the window divided by how many real inputs it covers."""
    xp = pad_images(x.astype(np.float64), pool, strides, padding, 0.0)
    ones = pad_images(np.ones_like(x, dtype=np.float64), pool, strides, padding, 0.0)
    total = sum(view for _, _, view in windows(xp, pool, strides))
    count = sum(view for _, _, view in windows(ones, pool, strides))
    return total / count


# (input shape, window, strides, padding): 1, odd, prime, stride 2, both paddings,
# and a window larger than the input with "same".
GEOMETRIES = [
    ((1, 1, 1, 1), (1, 1), (1, 1), "valid"),
    ((2, 5, 7, 3), (3, 3), (1, 1), "valid"),
    ((2, 5, 7, 3), (3, 3), (1, 1), "same"),
    ((2, 13, 11, 2), (3, 2), (2, 2), "same"),
    ((3, 7, 6, 4), (2, 3), (2, 1), "valid"),
    ((2, 2, 3, 3), (5, 4), (1, 1), "same"),
    ((2, 9, 8, 2), (2, 2), (3, 3), "same"),
]
GEOMETRY_IDS = [f"{s}-{w}-{st}-{p}" for s, w, st, p in GEOMETRIES]


# ---------------------------------------------------------------- forward against NumPy

@pytest.mark.parametrize("shape,window,strides,padding", GEOMETRIES, ids=GEOMETRY_IDS)
def test_conv2d_forward_matches_numpy(shape, window, strides, padding):
    fz.utils.set_random_seed(0)
    layer = L.Conv2D(5, window, strides=strides, padding=padding)
    x = inputs(shape)
    layer.build(shape)
    layer.bias[...] = inputs(5, seed=1)
    y = layer.forward(x)
    expected = np_conv2d(x, layer.kernel, layer.bias, strides, padding)
    assert y.shape == expected.shape == layer.compute_output_shape(shape)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape,window,strides,padding", GEOMETRIES, ids=GEOMETRY_IDS)
def test_pooling_forward_matches_numpy(shape, window, strides, padding):
    x = inputs(shape)
    for layer, reference in ((L.MaxPool2D(window, strides, padding), np_max_pool),
                             (L.AveragePooling2D(window, strides, padding), np_avg_pool)):
        y = layer.forward(x)
        expected = reference(x, window, strides, padding)
        assert y.shape == expected.shape == layer.compute_output_shape(shape)
        np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6, err_msg=type(layer).__name__)
    np.testing.assert_allclose(L.GlobalAveragePooling2D().forward(x), x.mean(axis=(1, 2)),
                               rtol=1e-5, atol=1e-6)


def test_average_pooling_same_ignores_padding_like_keras():
    # 3×3 image 1..9, 2×2 windows, stride 2: the edge windows cover 2 and 1 pixels.
    x = np.arange(1, 10, dtype=np.float32).reshape(1, 3, 3, 1)
    y = L.AveragePooling2D(2, padding="same").forward(x)
    np.testing.assert_allclose(y[0, :, :, 0], [[3.0, 4.5], [7.5, 9.0]])
    np.testing.assert_allclose(L.MaxPool2D(2, padding="same").forward(x)[0, :, :, 0], [[5, 6], [8, 9]])


NP_ACTIVATIONS = {
    "relu": lambda z: np.maximum(z, 0),
    "tanh": np.tanh,
    "gelu": lambda z: z / 2 * (1 + np.vectorize(math.erf)(z / math.sqrt(2))),
    "softmax": lambda z: np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True),  # over the channels
}


@pytest.mark.parametrize("activation", sorted(NP_ACTIVATIONS))
def test_conv2d_activations_match_numpy(activation):
    fz.utils.set_random_seed(1)
    layer = L.Conv2D(4, 3, padding="same", activation=activation, bias_initializer="ones")
    x = inputs((2, 5, 5, 3), seed=1)
    y = layer.forward(x)
    z = np_conv2d(x, layer.kernel, layer.bias, (1, 1), "same")
    np.testing.assert_allclose(y, NP_ACTIVATIONS[activation](z), rtol=1e-5, atol=1e-5)


def test_batch_norm_forward_matches_numpy_and_keras_moving_stats():
    layer = L.BatchNormalization()
    x = inputs((4, 3, 5, 6)) * 3 + 2
    y = layer.forward(x, training=True)
    x64 = x.astype(np.float64)
    mean, var = x64.mean(axis=(0, 1, 2)), x64.var(axis=(0, 1, 2))  # biased, as Keras
    np.testing.assert_allclose(y, (x64 - mean) / np.sqrt(var + 1e-3), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(layer.moving_mean, 0.01 * mean, rtol=1e-5)
    np.testing.assert_allclose(layer.moving_variance, 0.99 + 0.01 * var, rtol=1e-5)
    # Inference uses the moving statistics, and changes nothing.
    layer.gamma[...], layer.beta[...] = 2.0, 0.5
    moving = [w.copy() for w in layer.non_trainable_weights]
    y = layer.forward(x)
    np.testing.assert_allclose(y, 2 * (x64 - moving[0]) / np.sqrt(moving[1] + 1e-3) + 0.5,
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(layer.moving_mean, moving[0])


def test_batch_norm_on_vectors_normalizes_over_the_batch():
    x = inputs((16, 5)) * 4 - 1
    y = L.BatchNormalization().forward(x, training=True)
    np.testing.assert_allclose(y.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(y.var(axis=0), x.var(axis=0) / (x.var(axis=0) + 1e-3), rtol=1e-4)


# ---------------------------------------------------------------- gradient checks

@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("strides", [1, 2])
@pytest.mark.parametrize("activation", [None, "relu"])
def test_conv2d_gradients(padding, strides, activation):
    fz.utils.set_random_seed(2)
    layer = L.Conv2D(4, (3, 2), strides=strides, padding=padding, activation=activation,
                     bias_initializer="ones")
    report = fz.utils.check_gradients(layer, inputs((2, 6, 5, 3), seed=2))
    assert_gradients_ok(report, ["x", "param_0", "param_1"])


@pytest.mark.parametrize("activation", ["gelu", "softmax", "leaky_relu", "tanh", "sigmoid"])
def test_conv2d_gradients_other_activations(activation):
    fz.utils.set_random_seed(3)
    layer = L.Conv2D(3, 2, activation=activation, use_bias=False)
    report = fz.utils.check_gradients(layer, inputs((2, 4, 4, 2), seed=3))
    assert_gradients_ok(report, ["x", "param_0"])


@pytest.mark.parametrize("channels,kernel,strides,padding", [
    (1, 3, 1, "valid"),          # a first layer: window rows of 3 values, gathered
    (1, 5, 1, "same"),
    (3, (5, 3), (2, 1), "same"),
    (20, 3, 1, "valid"),         # window rows copied whole
])
def test_conv2d_gradients_input_channels(channels, kernel, strides, padding):
    fz.utils.set_random_seed(4)
    layer = L.Conv2D(5, kernel, strides=strides, padding=padding, activation="relu",
                     bias_initializer="ones")
    report = fz.utils.check_gradients(layer, inputs((2, 7, 6, channels), seed=4))
    assert_gradients_ok(report, ["x", "param_0", "param_1"])


@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("pool,strides", [(2, None), (3, 2), ((2, 3), (1, 2))])
def test_pooling_gradients(padding, pool, strides):
    x = distinct((2, 7, 5, 3))
    assert_gradients_ok(fz.utils.check_gradients(L.MaxPool2D(pool, strides, padding), x), ["x"])
    assert_gradients_ok(fz.utils.check_gradients(L.AveragePooling2D(pool, strides, padding), x),
                        ["x"])


def test_global_average_pooling_gradients():
    assert_gradients_ok(fz.utils.check_gradients(L.GlobalAveragePooling2D(), inputs((3, 4, 5, 2))),
                        ["x"])


@pytest.mark.parametrize("shape", [(4, 3, 3, 5), (6, 4)], ids=["images", "vectors"])
def test_batch_norm_gradients(shape):
    layer = L.BatchNormalization()
    layer.build(shape[1:])
    layer.gamma[...] = inputs(shape[-1], seed=4)
    layer.beta[...] = inputs(shape[-1], seed=5)
    report = fz.utils.check_gradients(layer, inputs(shape, seed=6))
    assert_gradients_ok(report, ["x", "param_0", "param_1"])


def test_frozen_batch_norm_uses_moving_stats_and_its_gradient():
    layer = L.BatchNormalization()
    x = inputs((5, 4), seed=7)
    layer.build((4,))
    layer.moving_mean[...], layer.moving_variance[...] = 0.3, 2.0
    layer.trainable = False
    np.testing.assert_array_equal(layer.forward(x, training=True), layer.forward(x))
    assert_gradients_ok(fz.utils.check_gradients(layer, x), ["x", "param_0", "param_1"])
    np.testing.assert_array_equal(layer.moving_mean, np.float32(0.3))  # not updated while frozen


# ---------------------------------------------------------------- layer protocol

def test_conv2d_weights_shapes_and_config_round_trip():
    layer = L.Conv2D(8, (3, 5), strides=(2, 1), padding="SAME", activation="relu")
    layer.build((None, 10, 12, 3))  # Keras's shapes: the batch axis first
    assert layer.kernel.shape == (3, 5, 3, 8) and layer.bias.shape == (8,)
    assert [p.shape for p in layer.params] == [g.shape for g in layer.grads]
    assert layer.compute_output_shape((None, 10, 12, 3)) == (None, 5, 12, 8)
    assert layer.count_params() == 3 * 5 * 3 * 8 + 8
    config = layer.get_config()
    assert config["padding"] == "same" and config["kernel_size"] == [3, 5]
    assert L.Conv2D(**config).get_config() == config
    # Glorot uniform with Keras's conv fans: kh·kw·C in, kh·kw·F out.
    assert np.abs(layer.kernel).max() <= np.sqrt(6 / (15 * 3 + 15 * 8))


def test_default_names_are_keras_style():
    names = [L.Conv2D(1, 1).name, L.MaxPool2D().name, L.AveragePooling2D().name,
             L.GlobalAveragePooling2D().name, L.BatchNormalization().name]
    assert [n.rsplit("_", 1)[0] if n[-1].isdigit() else n for n in names] == [
        "conv2d", "max_pooling2d", "average_pooling2d", "global_average_pooling2d",
        "batch_normalization"]  # Keras's names: MaxPool2D is an alias of MaxPooling2D
    assert L.MaxPooling2D is L.MaxPool2D


def test_buffers_are_reused_for_the_same_shape():
    x = inputs((2, 6, 6, 2))
    for layer in (L.Conv2D(3, 3), L.MaxPool2D(), L.AveragePooling2D(), L.BatchNormalization(),
                  L.GlobalAveragePooling2D()):
        y1 = layer.forward(x, training=True)
        dx1 = layer.backward(np.ones_like(y1))
        y2 = layer.forward(x, training=True)
        assert y1 is y2 and layer.backward(np.ones_like(y2)) is dx1, type(layer).__name__


def test_first_layer_computes_no_input_gradient():
    layer = L.Conv2D(2, 3)
    x = inputs((2, 5, 5, 1))
    y = layer.forward(x, training=True)
    layer.input_grad_needed = False
    assert layer.backward(np.ones_like(y)) is None
    assert np.abs(layer.grads[0]).sum() > 0


def test_batch_norm_moving_stats_are_weights_but_not_params():
    model = fz.Sequential([L.Conv2D(2, 3), L.BatchNormalization(), L.Flatten(), L.Dense(2)])
    model.build((None, 5, 5, 1))
    bn = model.layers[1]
    assert len(bn.params) == len(bn.grads) == 2
    assert len(bn.get_weights()) == 4
    assert bn.count_params() == 4 * 2
    assert not any(w is p for w in bn.non_trainable_weights for p in model.trainable_params)
    assert len(model.get_weights()) == 2 + 4 + 2
    lines = []
    model.summary(print_fn=lines.append)
    assert "Non-trainable params: 4" in "\n".join(lines)


@pytest.mark.parametrize("make,shape,message", [
    (lambda: L.Conv2D(4, 3), (8, 28, 28), r"reshape the data to \(batch, 28, 28, 1\)"),
    (lambda: L.MaxPool2D(), (8, 28, 28), "expects 4-D input"),
    (lambda: L.MaxPool2D(3), (2, 2, 2, 1), r"does not fit in 2x2 images"),
    (lambda: L.Conv2D(2, 5), (1, 4, 6, 1), "use padding='same'"),
])
def test_shape_errors_are_helpful(make, shape, message):
    with pytest.raises(ValueError, match=message):
        make().forward(np.zeros(shape, np.float32))


def test_argument_errors():
    with pytest.raises(ValueError, match="filters"):
        L.Conv2D(0, 3)
    with pytest.raises(ValueError, match="kernel_size"):
        L.Conv2D(2, (3, 0))
    with pytest.raises(ValueError, match="padding"):
        L.Conv2D(2, 3, padding="full")
    with pytest.raises(ValueError, match="strides"):
        L.MaxPool2D(2, strides=(1, 2, 3))
    with pytest.raises(ValueError, match="momentum"):
        L.BatchNormalization(momentum=1.5)
    layer = L.Conv2D(2, 3)
    layer.forward(np.zeros((1, 5, 5, 3), np.float32))
    with pytest.raises(ValueError, match="expected 3 input channels"):
        layer.forward(np.zeros((1, 5, 5, 1), np.float32))


def test_ops_validate_before_running():
    x = np.zeros((1, 4, 4, 2), np.float32)
    with pytest.raises(ValueError, match=r"kernel has shape \(3, 3, 1, 2\) for 1 input channels"):
        fz.ops.conv2d(x, np.zeros((3, 3, 1, 2), np.float32))
    with pytest.raises(ValueError, match="strides must be >= 1"):
        fz.ops.max_pool2d(x, 2, (0, 1))
    y, argmax = fz.ops.max_pool2d_forward(x, 2)
    argmax[0, 0, 0, 0] = 10_000  # would write outside the image
    with pytest.raises(ValueError, match="outside"):
        fz.ops.max_pool2d_backward(np.ones_like(y), argmax, x.shape, 2)
    with pytest.raises(ValueError, match="dy must have shape"):
        fz.ops.conv2d_backward(np.zeros((1, 2, 2, 3), np.float32), np.zeros((3, 3, 2, 2), np.float32), x)
    with pytest.raises(TypeError, match="moving_mean must be a float32 array"):
        fz.ops.batch_norm_forward(x, np.ones(2), np.zeros(2), np.zeros(2), np.ones(2, np.float32), True,
                                  0.99, 1e-3)


def test_conv2d_ops_backward_folds_the_activation():
    rng = np.random.default_rng(10)
    x = inputs((3, 8, 7, 4), seed=10)
    kernel = rng.standard_normal((3, 3, 4, 6)).astype(np.float32)
    bias = rng.standard_normal(6).astype(np.float32)
    y = fz.ops.conv2d_forward(x, kernel, bias, activation=fz.ops.Activation.relu)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    folded = fz.ops.conv2d_backward(dy, kernel, x, activation=fz.ops.Activation.relu, y=y)
    unfolded = fz.ops.conv2d_backward(dy * (y > 0), kernel, x)
    for a, b in zip(folded, unfolded):
        np.testing.assert_array_equal(a, b)
    first_layer = fz.ops.conv2d_backward(dy * (y > 0), kernel, x, need_dx=False)
    assert first_layer[0] is None
    np.testing.assert_array_equal(first_layer[1], unfolded[1])
    with pytest.raises(ValueError, match="y .* is needed"):
        fz.ops.conv2d_backward(dy, kernel, x, activation=fz.ops.Activation.relu)
    for act, message in ((fz.ops.Activation.gelu, "not gelu"),
                         (fz.ops.Activation.softmax, "elementwise activations only")):
        with pytest.raises(ValueError, match=message):
            fz.ops.conv2d_backward(dy, kernel, x, activation=act, y=y)
    with pytest.raises(ValueError, match="y must have shape"):
        fz.ops.conv2d_backward(dy, kernel, x, activation=fz.ops.Activation.relu, y=y[:, :-1])


TORCH_CASES = [  # (batch, H, W, C, filters, kernel, strides, padding, activation)
    (24, 28, 28, 1, 32, 3, 1, "valid", "relu"),    # MNIST's first layer: several blocks
    (20, 13, 13, 32, 64, 3, 1, "valid", "relu"),   # ... and its second
    (3, 9, 11, 3, 5, 5, 2, "same", "tanh"),
    (2, 10, 7, 6, 9, (2, 3), (1, 2), "same", None),
]


@pytest.mark.parametrize("case", TORCH_CASES, ids=lambda c: f"{c[3]}ch-{c[4]}f-{c[7]}")
def test_conv2d_and_max_pool_match_pytorch(case):
    torch = pytest.importorskip("torch")
    fnn = torch.nn.functional
    n, h, w, c, filters, kernel, strides, padding, activation = case
    fz.utils.set_random_seed(11)
    conv = L.Conv2D(filters, kernel, strides=strides, padding=padding, activation=activation,
                    bias_initializer="glorot_uniform")
    pool = L.MaxPool2D(2)
    x = inputs((n, h, w, c), seed=11)
    y = pool.forward(conv.forward(x, training=True), training=True)
    dy = np.random.default_rng(12).standard_normal(y.shape).astype(np.float32)
    dx = conv.backward(pool.backward(dy))

    # PyTorch on the same weights, NCHW, with TensorFlow's "same" padding (the odd pixel after).
    xt = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    kt = torch.tensor(conv.kernel.transpose(3, 2, 0, 1), requires_grad=True)
    bt = torch.tensor(conv.bias, requires_grad=True)
    (kh, kw), (sh, sw) = conv.kernel_size, conv.strides
    xp = xt
    if padding == "same":
        (top, bottom), (left, right) = same_padding(h, kh, sh), same_padding(w, kw, sw)
        xp = fnn.pad(xt, (left, right, top, bottom))
    zt = fnn.conv2d(xp, kt, bt, stride=(sh, sw))
    zt = {"relu": torch.relu, "tanh": torch.tanh, None: lambda t: t}[activation](zt)
    yt = fnn.max_pool2d(zt, 2)
    yt.backward(torch.tensor(dy.transpose(0, 3, 1, 2)))
    np.testing.assert_allclose(y, yt.detach().numpy().transpose(0, 2, 3, 1), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dx, xt.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(conv.grads[0], kt.grad.numpy().transpose(2, 3, 1, 0),
                               rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(conv.grads[1], bt.grad.numpy(), rtol=1e-4, atol=1e-3)


def test_results_do_not_depend_on_the_thread_count():
    x = inputs((48, 12, 12, 3), seed=8)  # 3 backward blocks in the first layer
    results = []
    saved = fz.get_num_threads()
    try:
        for threads in (1, 2):
            fz.set_num_threads(threads)
            fz.utils.set_random_seed(8)
            model = fz.Sequential([L.Conv2D(8, 3, activation="relu"), L.Conv2D(6, 3, activation="tanh"),
                                   L.BatchNormalization(),
                                   L.MaxPool2D(), L.Conv2D(5, 3, padding="same"),
                                   L.AveragePooling2D(), L.GlobalAveragePooling2D()])
            y = model.forward(x, training=True).copy()
            model.backward(np.ones_like(y))
            results.append([y] + [g.copy() for g in model.trainable_grads])
    finally:
        fz.set_num_threads(saved)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- models

def small_cnn():
    return fz.Sequential([
        L.Conv2D(8, 3, activation="relu"),
        L.BatchNormalization(),
        L.MaxPool2D(2),
        L.Conv2D(8, 3, padding="same", strides=2, activation="relu"),
        L.AveragePooling2D(2, padding="same"),
        L.Flatten(),
        L.Dense(10, activation="softmax"),
    ])


def test_cnn_save_load_round_trip_is_bit_exact(tmp_path):
    fz.utils.set_random_seed(9)
    model = small_cnn()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x = inputs((40, 12, 12, 1), seed=9)
    y = np.arange(40) % 10
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    bn = model.layers[1]
    assert not np.all(bn.moving_mean == 0)  # training moved the statistics
    path = tmp_path / "cnn.safetensors"
    model.save(path)
    loaded = fz.load_model(path)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(model.predict(x), loaded.predict(x))
    assert [type(l) for l in loaded.layers] == [type(l) for l in model.layers]
    assert [l.get_config() for l in loaded.layers] == [l.get_config() for l in model.layers]


def test_small_cnn_learns_mnist_subset():
    fz.utils.set_random_seed(0)
    (x, y), _ = fz.datasets.mnist.load_data()
    x = (x[:1000] / 255.0).reshape(-1, 28, 28, 1)
    y = y[:1000]
    model = fz.Sequential([L.Conv2D(8, 3, activation="relu"), L.MaxPool2D(2), L.Flatten(),
                           L.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, batch_size=32, epochs=3, verbose=0).history
    assert history["loss"][-1] < 0.6 * history["loss"][0]
    assert history["accuracy"][-1] > 0.8


def test_cli_cnn_is_keras_mnist_convnet():
    from fromzero import cli
    model = cli.build_model("cnn")
    assert model.predict(np.zeros((2, 28, 28, 1), np.float32)).shape == (2, 10)
    assert model.count_params() == 34_826  # as Keras's model.summary() for mnist_convnet
    assert cli.DEFAULT_BATCH_SIZE["cnn"] == 128
