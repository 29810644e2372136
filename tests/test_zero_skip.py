"""Dense skips the exact zeros of its input (csrc/gemm_nonzero.cpp) with the
same bits as the full products. Each test runs both paths — the private
threshold forces them: 0 always skips, above 1 never does — and checks that
the path it meant was taken (DenseZeroSkip.skipped), so it can fail."""

import numpy as np
import pytest

import fromzero as fz
from fromzero import _core

ALWAYS, NEVER = 0.0, 2.0


@pytest.fixture
def threshold():
    """Sets the zero-skipping threshold for one test, then restores it."""
    saved = _core._zero_skip_threshold()
    yield _core._set_zero_skip_threshold
    _core._set_zero_skip_threshold(saved)


def sparse_input(shape, zeros=0.8, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32)
    x[rng.random(shape) < zeros] = 0.0
    x[..., 3] = -0.0  # negative zeros are zeros too
    return x


def same_bits(a, b):
    return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


def forward_backward(layer, x, dy):
    y = layer.forward(x, training=True).copy()
    dx = layer.backward(dy)
    return y, [g.copy() for g in layer.grads], None if dx is None else dx.copy()


@pytest.mark.parametrize("activation", ["relu", None, "gelu", "softmax", "sigmoid"])
@pytest.mark.parametrize("shape", [(32, 784), (7, 5, 33)])
def test_dense_forward_and_backward_are_the_dense_path_bit_for_bit(threshold, activation, shape):
    x = sparse_input(shape)
    layer = fz.layers.Dense(24, activation=activation)
    layer.build(x.shape)
    layer.input_grad_needed = True
    dy = np.random.default_rng(1).standard_normal(shape[:-1] + (24,)).astype(np.float32)
    results = {}
    for mode in (NEVER, ALWAYS):
        threshold(mode)
        results[mode] = forward_backward(layer, x, dy)
        assert layer._zero_skip().skipped == (mode == ALWAYS)
    (y0, g0, dx0), (y1, g1, dx1) = results[NEVER], results[ALWAYS]
    assert same_bits(y0, y1)
    assert all(same_bits(a, b) for a, b in zip(g0, g1))
    assert same_bits(dx0, dx1)


def test_the_measured_threshold_skips_mnist_pixels_and_not_half_zero_relu_outputs():
    assert 0.5 < _core._zero_skip_threshold() <= 0.81
    layer = fz.layers.Dense(16)
    layer(sparse_input((32, 784), zeros=0.81))  # MNIST: 81% of the pixels are 0
    assert layer._zero_skip().skipped
    layer(sparse_input((32, 784), zeros=0.5))  # a ReLU's output: about half
    assert not layer._zero_skip().skipped
    layer(sparse_input((32, 784), zeros=0.0))
    assert not layer._zero_skip().skipped


def mnist_subset(n=640):
    (x, y), _ = fz.datasets.mnist.load_data()
    return x[:n].reshape(n, -1).astype(np.float32) / 255.0, y[:n]


def fit_mlp(x, y, threads=1):
    fz.set_num_threads(threads)
    fz.utils.set_random_seed(0)
    model = fz.Sequential([fz.layers.Dense(128, activation="relu"),
                           fz.layers.Dense(10, activation="softmax")])
    model.compile(optimizer=fz.optimizers.Adam(learning_rate=1e-3),
                  loss="sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=32, epochs=2, verbose=0)
    return model


def test_mnist_fit_gives_the_dense_paths_weights(threshold):
    x, y = mnist_subset()
    saved_threads = fz.get_num_threads()
    try:
        threshold(NEVER)
        dense = fit_mlp(x, y)
        assert not dense.layers[0]._zero_skip().skipped
        threshold(ALWAYS)
        skipping = [fit_mlp(x, y, threads) for threads in (1, 2)]
    finally:
        fz.set_num_threads(saved_threads)
    for model in skipping:
        assert model.layers[0]._zero_skip().skipped
        for a, b in zip(dense.get_weights(), model.get_weights()):
            assert same_bits(a, b)


def test_weights_grads_and_buffers_are_64_byte_aligned():
    layer = fz.layers.Dense(10)
    y = layer.forward(sparse_input((5, 33)), training=True)
    layer.backward(np.ones_like(y))
    for arr in [*layer.params, *layer.grads, y, layer.buffer("dz", y.shape)]:
        assert arr.ctypes.data % 64 == 0
        assert arr.flags.c_contiguous and arr.flags.writeable
    arr = fz.utils.aligned_empty((3, 5), np.int32)
    assert arr.shape == (3, 5) and arr.dtype == np.int32 and arr.ctypes.data % 64 == 0


@pytest.mark.parametrize("bad", [-0.1, float("nan")])
def test_the_private_threshold_is_checked(bad):
    with pytest.raises(ValueError):
        _core._set_zero_skip_threshold(bad)


def test_a_state_given_to_another_kernel_call_is_refused():
    x = sparse_input((4, 8))
    w = np.ones((8, 3), np.float32)
    with pytest.raises(TypeError, match="zero_skip"):
        fz.ops.dense_forward(x, w, None, fz.ops.Activation.relu, zero_skip="not a state")
