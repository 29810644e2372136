"""A battery of bad inputs: each must raise a clear exception whose message names the
argument at fault. Plus fz.ops.matmul on awkward (but valid) array layouts."""

import numpy as np
import pytest

import fromzero as fz

L = fz.layers


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return rng.random((20, 12)).astype(np.float32), rng.integers(0, 10, 20)


@pytest.fixture
def model():
    fz.utils.set_random_seed(0)
    m = fz.Sequential([L.Dense(8, activation="relu"), L.Dense(10, activation="softmax")])
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return m


@pytest.fixture
def restore_threads():
    before = fz.get_num_threads()
    yield
    fz.set_num_threads(before)


# ---------------------------------------------------------------- fit / evaluate / predict

def test_fit_before_compile(data):
    x, y = data
    m = fz.Sequential([L.Dense(10, activation="softmax")])
    with pytest.raises(RuntimeError, match=r"fit: the model must be compiled first.*model\.compile"):
        m.fit(x, y, verbose=0)
    with pytest.raises(RuntimeError, match=r"evaluate: the model must be compiled first"):
        m.evaluate(x, y, verbose=0)


def test_compile_without_loss():
    with pytest.raises(ValueError, match="compile: a loss is required"):
        fz.Sequential([L.Dense(2)]).compile(optimizer="adam")


def test_model_without_layers(data):
    x, y = data
    m = fz.Sequential()
    m.compile("adam", "mse")
    with pytest.raises(ValueError, match="no layers"):
        m.fit(x, y, verbose=0)


def test_x_y_length_mismatch(model, data):
    x, y = data
    with pytest.raises(ValueError, match="fit: x has 20 samples but y has 19"):
        model.fit(x, y[:19], verbose=0)
    with pytest.raises(ValueError, match="evaluate: x has 20 samples but y has 21"):
        model.evaluate(x, np.r_[y, 0], verbose=0)
    with pytest.raises(ValueError, match="y has no length"):
        model.fit(x, None, verbose=0)


def test_label_equal_to_number_of_outputs(model, data):
    x, y = data
    y = y.copy()
    y[7] = 10
    with pytest.raises(ValueError, match=r"label 10 is outside \[0, 10\).*10 outputs"):
        model.fit(x, y, verbose=0)


def test_negative_label(model, data):
    x, y = data
    y = y.copy()
    y[0] = -1
    with pytest.raises(ValueError, match=r"label -1 is outside \[0, 10\)"):
        model.fit(x, y, verbose=0)
    with pytest.raises(ValueError, match=r"label -1 is outside"):
        model.evaluate(x, y, verbose=0)


def test_non_integral_and_string_labels(model, data):
    x, y = data
    with pytest.raises(ValueError, match="labels must be whole numbers"):
        model.fit(x, y + 0.5, verbose=0)
    with pytest.raises(TypeError, match="labels must be integers"):
        model.fit(x, y.astype(str), verbose=0)
    with pytest.raises(ValueError, match=r"labels must have shape \(20,\), got \(20, 10\)"):
        model.fit(x, np.eye(10)[y], verbose=0)  # one-hot targets with the sparse loss


def test_string_array_x(model, data):
    _, y = data
    x = np.full((20, 12), "0.5")
    with pytest.raises(TypeError, match=r"fit: x must hold numbers, got dtype <U3"):
        model.fit(x, y, verbose=0)
    with pytest.raises(TypeError, match=r"predict: x must hold numbers"):
        model.predict(x)


def test_object_array_x(model, data):
    x, y = data
    with pytest.raises(TypeError, match="fit: x must hold numbers, got dtype object"):
        model.fit(x.astype(object), y, verbose=0)


def test_empty_x(model):
    with pytest.raises(ValueError, match=r"fit: x is empty \(shape \(0, 12\)\)"):
        model.fit(np.empty((0, 12), np.float32), np.empty(0, np.int64), verbose=0)
    with pytest.raises(ValueError, match=r"predict: x is empty"):
        model.predict(np.empty((0, 12), np.float32))


def test_one_dimensional_x(model, data):
    x, y = data
    with pytest.raises(ValueError, match=r"fit: x must have a batch axis.*got shape \(12,\)"):
        model.fit(x[0], y[:1], verbose=0)
    with pytest.raises(ValueError, match=r"predict: x must have a batch axis"):
        model.predict(x[0])


def test_wrong_feature_count_for_built_model(model, data):
    x, y = data
    model.fit(x, y, verbose=0)  # builds for 12 features
    bad = np.ones((5, 13), np.float32)
    with pytest.raises(ValueError, match=r"expected inputs of shape \(batch, 12\), got \(5, 13\)"):
        model.predict(bad)
    with pytest.raises(ValueError, match=r"expected inputs of shape \(batch, 12\)"):
        model.fit(bad, y[:5], verbose=0)
    with pytest.raises(ValueError, match=r"expected inputs of shape \(batch, 12\)"):
        model.evaluate(bad, y[:5], verbose=0)


def test_wrong_feature_count_for_a_layer():
    layer = L.Dense(3)
    layer.build((4,))
    with pytest.raises(ValueError, match=r"expected 4 input features, got input of shape \(2, 5\)"):
        layer.forward(np.ones((2, 5), np.float32))
    with pytest.raises(ValueError, match=r"input must have a batch axis and features, got shape \(4,\)"):
        layer.forward(np.ones(4, np.float32))


def test_validation_data_must_be_a_pair(model, data):
    x, y = data
    with pytest.raises(ValueError, match=r"validation_data must be a tuple \(x_val, y_val\)"):
        model.fit(x, y, validation_data=(x,), verbose=0)
    with pytest.raises(ValueError, match=r"validation_data: x has 20 samples but y has 3"):
        model.fit(x, y, validation_data=(x, y[:3]), verbose=0)


# ---------------------------------------------------------------- fit arguments

@pytest.mark.parametrize("kwargs, name", [
    ({"batch_size": 0}, "batch_size"),
    ({"batch_size": -4}, "batch_size"),
    ({"batch_size": 2.5}, "batch_size"),
    ({"epochs": -1}, "epochs"),
    ({"epochs": 1.5}, "epochs"),
    ({"validation_split": 1.5}, "validation_split"),
    ({"validation_split": 1.0}, "validation_split"),
    ({"validation_split": -0.1}, "validation_split"),
])
def test_bad_fit_arguments(model, data, kwargs, name):
    x, y = data
    with pytest.raises(ValueError, match=name):
        model.fit(x, y, verbose=0, **kwargs)


def test_bad_evaluate_predict_batch_size(model, data):
    x, y = data
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 0"):
        model.evaluate(x, y, batch_size=0, verbose=0)
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got -1"):
        model.predict(x, batch_size=-1)


def test_validation_split_leaving_no_samples(model, data):
    x, y = data
    # floor(20 · 0.04) = 0 training samples
    with pytest.raises(ValueError, match="validation_split=0.96 leaves no training samples"):
        model.fit(x, y, validation_split=0.96, verbose=0)


def test_numpy_float32_scalars_are_accepted(model, data):
    """Was a bug: 'validation_split must be in [0, 1), got np.float32(0.25)'."""
    x, y = data
    layer = L.Dropout(np.float32(0.5))
    assert layer.rate == 0.5
    history = model.fit(x, y, validation_split=np.float32(0.25), verbose=0)
    assert "val_loss" in history.history


def test_batch_size_none_means_default(model, data):
    """As Keras 3, batch_size=None means 32. (Was a bug: it raised.)"""
    x, y = data
    model.fit(x, y, batch_size=None, verbose=0)
    model.evaluate(x, y, batch_size=None, verbose=0)
    assert model.predict(x, batch_size=None).shape == (20, 10)


# ---------------------------------------------------------------- names

def test_unknown_optimizer_name():
    m = fz.Sequential([L.Dense(2)])
    with pytest.raises(ValueError, match=r"unknown optimizer 'adamm'; did you mean 'adam'"):
        m.compile(optimizer="adamm", loss="mse")
    with pytest.raises(ValueError, match=r"did you mean 'rmsprop'"):
        m.compile(optimizer="rmsprp", loss="mse")


def test_unknown_loss_name():
    m = fz.Sequential([L.Dense(2)])
    with pytest.raises(ValueError, match=r"unknown loss 'sparse_categorical_crosentropy'; did you "
                                         r"mean 'sparse_categorical_crossentropy'"):
        m.compile(optimizer="adam", loss="sparse_categorical_crosentropy")
    with pytest.raises(ValueError, match=r"unknown loss 'binary_crossentrophy'; did you mean "
                                         r"'binary_crossentropy'"):
        m.compile(optimizer="adam", loss="binary_crossentrophy")


def test_unknown_activation_name():
    with pytest.raises(ValueError, match=r"unknown activation 'rellu'; did you mean 'relu'"):
        L.Dense(3, activation="rellu")
    with pytest.raises(ValueError, match=r"unknown activation 'softmx'; did you mean 'softmax'"):
        L.Activation("softmx")
    with pytest.raises(TypeError, match="activation must be a name"):
        L.Dense(3, activation=3)


def test_unknown_metric_name():
    m = fz.Sequential([L.Dense(2)])
    with pytest.raises(ValueError, match=r"unknown metric 'acuracy'; did you mean 'accuracy'"):
        m.compile(optimizer="adam", loss="mse", metrics=["acuracy"])


def test_unknown_initializer_name():
    with pytest.raises(ValueError, match=r"unknown initializer 'glorot_unifrom'; did you mean "
                                         r"'glorot_uniform'"):
        L.Dense(3, kernel_initializer="glorot_unifrom")


# ---------------------------------------------------------------- layer arguments

@pytest.mark.parametrize("units", [0, -1, 2.5, "3", True, None])
def test_bad_dense_units(units):
    with pytest.raises(ValueError, match=r"Dense: units must be a positive integer, got"):
        L.Dense(units)


def test_dense_units_numpy_integer_is_fine():
    assert L.Dense(np.int64(4)).units == 4


@pytest.mark.parametrize("rate", [1.0, 1.5, -0.1, "0.5"])
def test_bad_dropout_rate(rate):
    with pytest.raises(ValueError, match=r"Dropout: rate must be (a number )?in \[0, 1\)"):
        L.Dropout(rate)


def test_bad_leaky_relu_slope():
    with pytest.raises(ValueError, match="negative_slope"):
        L.LeakyReLU(-0.1)


# ---------------------------------------------------------------- fz.ops.matmul

RNG = np.random.default_rng(1)
A = RNG.standard_normal((5, 3)).astype(np.float32)
B = RNG.standard_normal((3, 4)).astype(np.float32)


def test_matmul_shape_mismatch_names_both_shapes():
    b = RNG.standard_normal((4, 6)).astype(np.float32)
    with pytest.raises(ValueError, match=r"inner dimensions differ.*a has shape \(5, 3\), "
                                         r"b has shape \(4, 6\)"):
        fz.ops.matmul(A, b)
    with pytest.raises(ValueError, match=r"a has shape \(5, 3\), b has shape \(3, 4\), "
                                         r"transpose_a=True"):
        fz.ops.matmul(A, B, transpose_a=True)


def test_matmul_inputs_must_be_2d_numbers():
    with pytest.raises(ValueError, match=r"matmul: a must be 2-D, got shape \(3,\)"):
        fz.ops.matmul(np.ones(3), B)
    with pytest.raises(ValueError, match=r"matmul: b must be 2-D"):
        fz.ops.matmul(A, np.ones((3, 4, 1)))
    with pytest.raises(TypeError, match=r"matmul: a must hold numbers"):
        fz.ops.matmul(np.array([["x"]]), np.ones((1, 1)))


def test_matmul_out_wrong_dtype():
    with pytest.raises(TypeError, match=r"matmul: out must be a float32 array, got float64"):
        fz.ops.matmul(A, B, out=np.empty((5, 4), np.float64))


def test_matmul_out_wrong_shape():
    with pytest.raises(ValueError, match=r"matmul: out must have shape \(5, 4\), got \(4, 5\)"):
        fz.ops.matmul(A, B, out=np.empty((4, 5), np.float32))


def test_matmul_out_non_contiguous():
    with pytest.raises(ValueError, match=r"matmul: out must be C-contiguous"):
        fz.ops.matmul(A, B, out=np.empty((5, 8), np.float32)[:, ::2])
    with pytest.raises(ValueError, match=r"matmul: out must be C-contiguous"):
        fz.ops.matmul(A, B, out=np.empty((5, 4), np.float32, order="F"))


def test_matmul_out_read_only():
    out = np.empty((5, 4), np.float32)
    out.flags.writeable = False
    with pytest.raises(ValueError, match=r"matmul: out is read-only"):
        fz.ops.matmul(A, B, out=out)


def test_matmul_out_is_written_in_place():
    out = np.full((5, 4), np.nan, np.float32)
    result = fz.ops.matmul(A, B, out=out)
    assert result is out
    np.testing.assert_allclose(out, A.astype(np.float64) @ B, rtol=1e-5, atol=1e-6)


BIG_A = RNG.standard_normal((130, 70)).astype(np.float32)
BIG_B = RNG.standard_normal((70, 90)).astype(np.float32)


@pytest.mark.parametrize("make_a, make_b", [
    (np.asfortranarray, lambda b: b),
    (lambda a: a, np.asfortranarray),
    (lambda a: a[::-1], lambda b: b),
    (lambda a: a[:, ::-1], lambda b: b[::-1]),
    (lambda a: a[::-1, ::-1], lambda b: b[:, ::-1]),
    (lambda a: a[::2], lambda b: b[:, 1::3]),
], ids=["fortran_a", "fortran_b", "neg_rows_a", "neg_cols_a", "neg_both", "strided"])
@pytest.mark.parametrize("size", ["small", "big"])
def test_matmul_on_awkward_views_matches_numpy(make_a, make_b, size):
    a0, b0 = (A, B) if size == "small" else (BIG_A, BIG_B)
    a, b = make_a(a0), make_b(b0)
    a_before, b_before = a.copy(), b.copy()
    expected = a.astype(np.float64) @ b.astype(np.float64)
    result = fz.ops.matmul(a, b)
    assert result.dtype == np.float32 and result.shape == expected.shape
    np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(a, a_before)  # inputs untouched
    np.testing.assert_array_equal(b, b_before)


def test_matmul_transposed_views():
    a_t = BIG_A.T  # a Fortran-order view of BIG_A.T
    expected = BIG_A.astype(np.float64) @ BIG_B
    np.testing.assert_allclose(fz.ops.matmul(a_t, BIG_B, transpose_a=True), expected,
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(fz.ops.matmul(BIG_A, BIG_B.T.copy(), transpose_b=True), expected,
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype_a, dtype_b", [(np.float64, np.float64), (np.int64, np.float32),
                                              (np.int32, np.int64), (np.uint8, np.float64),
                                              (bool, np.float32)])
def test_matmul_converts_other_dtypes(dtype_a, dtype_b):
    a = (np.abs(A) * 3).astype(dtype_a)
    b = (B * 3).astype(dtype_b)
    result = fz.ops.matmul(a, b)
    assert result.dtype == np.float32
    np.testing.assert_allclose(result, a.astype(np.float64) @ b.astype(np.float64),
                               rtol=1e-5, atol=1e-4)


def test_matmul_accepts_nested_lists():
    np.testing.assert_array_equal(fz.ops.matmul([[1, 2], [3, 4]], [[0, 1], [1, 0]]),
                                  np.array([[2, 1], [4, 3]], np.float32))


def test_model_accepts_float64_and_int_inputs(model, data):
    x, y = data
    model.fit(x.astype(np.float64), y.astype(np.int32), epochs=1, verbose=0)
    p32 = model.predict(x)
    np.testing.assert_array_equal(model.predict(x.astype(np.float64)), p32)
    x_int = (x * 10).astype(np.int64)
    assert model.predict(x_int).dtype == np.float32
    np.testing.assert_array_equal(model.predict(x_int), model.predict(x_int.astype(np.float32)))
    assert model.predict(x.tolist()).shape == (20, 10)


# ---------------------------------------------------------------- threads

@pytest.mark.parametrize("n", [0, -1])
def test_set_num_threads_rejects_non_positive(n, restore_threads):
    with pytest.raises(ValueError, match=rf"set_num_threads: n must be >= 1, got {n}"):
        fz.set_num_threads(n)


def test_set_num_threads_round_trip(restore_threads):
    fz.set_num_threads(1)
    assert fz.get_num_threads() == 1
    assert fz.info()["threads"] == 1


# ---------------------------------------------------------------- issue 10: arrays shared unsafely
#
# Each of these was accepted without a word before the kernels' arguments were
# declared (csrc/bindings.cpp) and every written array checked against every
# other: some gave wrong results, the optimizer ones a data race across threads.

def conv_case(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 6, 5, 3)).astype(np.float32)
    kernel = rng.standard_normal((3, 2, 3, 4)).astype(np.float32)
    y = fz.ops.conv2d_forward(x, kernel)
    return x, kernel, rng.standard_normal(y.shape).astype(np.float32)


def test_conv2d_backward_refuses_dkernel_out_aliasing_the_kernel():
    """Was a silently wrong dx: dkernel was written over the kernel before dx = col2im(dz·Kᵀ) read it."""
    x, kernel, dy = conv_case()
    before = kernel.copy()
    with pytest.raises(ValueError, match=r"conv2d_backward: dkernel_out must not overlap kernel "
                                         r"\(they are the same array\)"):
        fz.ops.conv2d_backward(dy, kernel, x, dkernel_out=kernel)
    np.testing.assert_array_equal(kernel, before)  # refused before anything was written


def test_conv2d_backward_refuses_dx_out_sharing_memory_with_x():
    """dx of one block of images would overwrite x that another block still reads."""
    x, kernel, dy = conv_case()
    buffer = np.zeros(2 * x.size, np.float32)
    x_view = buffer[:x.size].reshape(x.shape)
    x_view[...] = x
    dx_out = buffer[x.size - 7:2 * x.size - 7].reshape(x.shape)
    with pytest.raises(ValueError, match=r"conv2d_backward: dx_out must not overlap x"):
        fz.ops.conv2d_backward(dy, kernel, x_view, dx_out=dx_out)


def test_conv2d_backward_into_disjoint_views_of_one_buffer():
    """Disjoint views of one buffer give the result of separate arrays."""
    x, kernel, dy = conv_case()
    expected = fz.ops.conv2d_backward(dy, kernel, x)
    buffer = np.zeros(x.size + kernel.size, np.float32)
    got = fz.ops.conv2d_backward(dy, kernel, x, dx_out=buffer[:x.size].reshape(x.shape),
                                 dkernel_out=buffer[x.size:].reshape(kernel.shape))
    for e, g in zip(expected, got):
        np.testing.assert_array_equal(e, g)


def bn_case():
    x = np.random.default_rng(1).standard_normal((8, 3)).astype(np.float32)
    return x, np.ones(3, np.float32), np.zeros(3, np.float32)


def test_batch_norm_forward_refuses_one_array_for_both_moving_statistics():
    x, gamma, beta = bn_case()
    stats = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match=r"batch_norm_forward: moving_var must not overlap moving_mean"):
        fz.ops.batch_norm_forward(x, gamma, beta, stats, stats, True, 0.99, 1e-3)
    both = np.zeros(5, np.float32)  # overlapping views
    with pytest.raises(ValueError, match=r"batch_norm_forward: moving_var must not overlap moving_mean"):
        fz.ops.batch_norm_forward(x, gamma, beta, both[:3], both[2:], True, 0.99, 1e-3)


def test_batch_norm_backward_refuses_one_array_for_dgamma_and_dbeta():
    x, gamma, beta = bn_case()
    _, mean, inv_std = fz.ops.batch_norm_forward(x, gamma, beta, np.zeros(3, np.float32),
                                                 np.ones(3, np.float32), True, 0.99, 1e-3)
    grads = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match=r"batch_norm_backward: dbeta must not overlap dgamma"):
        fz.ops.batch_norm_backward(x, gamma, mean, inv_std, np.ones_like(x), True, dgamma=grads, dbeta=grads)


def test_optimizer_refuses_a_state_array_shared_by_two_parameters():
    """Two threads would update the same m at once (a data race), and each
    parameter would see the other's moments."""
    p = [np.ones(4, np.float32), np.ones(4, np.float32)]
    g = [np.full(4, 0.5, np.float32), np.full(4, 0.25, np.float32)]
    shared = np.zeros(4, np.float32)
    with pytest.raises(ValueError, match=r"adam_update: m\[1\] must not overlap m\[0\]"):
        fz.ops._core.adam_update(p, g, [shared, shared], [np.zeros(4, np.float32), np.zeros(4, np.float32)],
                                 0.01, 0.9, 0.999, 1e-7, 1, 0.0)
    with pytest.raises(ValueError, match=r"sgd_update: params\[1\] must not overlap momentum_buffers\[0\]"):
        fz.ops._core.sgd_update(p, g, [p[1], np.zeros(4, np.float32)], 0.1, 0.9, False, 0.0)
    np.testing.assert_array_equal(p[0], 1)  # refused before any update


def test_optimizer_refuses_overlapping_or_repeated_parameters():
    buffer = np.ones(10, np.float32)
    g = np.full(6, 0.5, np.float32)
    opt = fz.optimizers.Adam()
    with pytest.raises(ValueError, match=r"adam_update: params\[1\] must not overlap params\[0\]"):
        opt.apply_gradients([(g, buffer[:6]), (g, buffer[4:])])
    p = np.ones(6, np.float32)
    with pytest.raises(ValueError, match=r"must not overlap .*\(they are the same array\)"):
        fz.optimizers.SGD(momentum=0.9).apply_gradients([(g, p), (g, p)])
    assert opt.iterations == 0
    np.testing.assert_array_equal(buffer, 1)
