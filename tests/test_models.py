"""Tests for fromzero.models.Sequential: the textbook program, fit/evaluate/predict,
History, determinism, save/load, summary, progress output, optimizers and losses end
to end, the fused softmax + cross-entropy gradient, NaN handling and the CLI."""

import contextlib
import json
import os
import signal

import numpy as np
import pytest
import safetensors
import safetensors.numpy

import fromzero as fz
from fromzero import cli

L = fz.layers


# ---------------------------------------------------------------- fixtures and helpers

@pytest.fixture(scope="module")
def mnist():
    (x_train, y_train), (x_test, y_test) = fz.datasets.mnist.load_data()
    return (x_train, y_train), (x_test, y_test)


@pytest.fixture
def restore_threads():
    before = fz.get_num_threads()
    yield
    fz.set_num_threads(before)


@contextlib.contextmanager
def time_limit(seconds):
    """Fail instead of hanging (SIGALRM, main thread on POSIX)."""
    def handler(signum, frame):
        raise TimeoutError(f"did not finish within {seconds} s")
    old = signal.signal(signal.SIGALRM, handler)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def blobs(n=300, features=6, classes=3, seed=0):
    """A small, learnable classification problem: Gaussian blobs around class centres."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((classes, features)) * 2.5
    y = rng.integers(0, classes, n)
    x = (centres[y] + rng.standard_normal((n, features))).astype(np.float32)
    return x, y


def mlp(hidden=16, classes=3, out_activation="softmax", dropout=None):
    layers = [L.Dense(hidden, activation="relu")]
    if dropout:
        layers.append(L.Dropout(dropout))
    layers.append(L.Dense(classes, activation=out_activation))
    return fz.Sequential(layers)


def trained_small_model(seed=0, epochs=2):
    x, y = blobs()
    fz.utils.set_random_seed(seed)
    model = mlp(dropout=0.2)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    return model, x, y


# ---------------------------------------------------------------- the textbook program

def test_textbook_program_on_a_subset(mnist, restore_threads):
    (x_train, y_train), (x_test, y_test) = mnist
    x_train, y_train = x_train[:10000], y_train[:10000]
    fz.utils.set_random_seed(0)
    # One kernel thread: results do not depend on the thread count (see
    # test_thread_count_does_not_change_results), and on a shared, busy 2-core machine
    # two OpenMP threads spin at every barrier and make these 1,565 small steps
    # 10-30x slower (~0.7 s with one thread, 15-60 s with two under load).
    fz.set_num_threads(1)

    model = fz.Sequential([
        fz.layers.Dense(128, activation="relu"),
        fz.layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x_train / 255.0, y_train, epochs=5, batch_size=32, verbose=0)
    loss, accuracy = model.evaluate(x_test / 255.0, y_test, verbose=0)

    assert accuracy >= 0.92, f"test accuracy {accuracy:.4f}"
    assert len(history.history["loss"]) == 5
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert history.history["accuracy"][-1] > 0.9
    assert 0 < loss < 0.35
    # The (N, 28, 28) images met a Dense first: the model put a Flatten in front of it.
    assert [type(l).__name__ for l in model.layers] == ["Flatten", "Dense", "Dense"]
    assert model.layers[1].kernel.shape == (784, 128)


# ---------------------------------------------------------------- History, evaluate, predict

def test_history_records_every_epoch():
    x, y = blobs()
    fz.utils.set_random_seed(1)
    model = mlp()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, epochs=3, verbose=0)
    assert isinstance(history, fz.callbacks.History)
    assert set(history.history) == {"loss", "accuracy"}
    for key in ("loss", "accuracy"):
        assert len(history.history[key]) == 3
        assert all(np.isfinite(v) for v in history.history[key])
    assert all(0 <= a <= 1 for a in history.history["accuracy"])
    assert history.epoch == [0, 1, 2]


def test_history_with_validation_split():
    x, y = blobs()
    fz.utils.set_random_seed(2)
    model = mlp()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, epochs=2, validation_split=0.1, verbose=0)
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(v) == 2 for v in history.history.values())
    # As Keras: the validation set is the last 10% of the data, taken before shuffling,
    # evaluated with the weights at the end of the epoch.
    val_loss, val_acc = model.evaluate(x[-30:], y[-30:], verbose=0)
    assert history.history["val_loss"][-1] == pytest.approx(val_loss, rel=1e-6)
    assert history.history["val_accuracy"][-1] == pytest.approx(val_acc)


def test_history_with_validation_data():
    x, y = blobs()
    x_val, y_val = blobs(n=50, seed=0)
    fz.utils.set_random_seed(3)
    model = mlp()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, epochs=2, validation_data=(x_val, y_val), verbose=0)
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(v) == 2 for v in history.history.values())
    val_loss, val_acc = model.evaluate(x_val, y_val, verbose=0)
    assert history.history["val_loss"][-1] == pytest.approx(val_loss, rel=1e-6)
    assert history.history["val_accuracy"][-1] == pytest.approx(val_acc)


def test_validation_split_sizes_follow_keras():
    """As Keras 3: train on the first floor(n · (1 − split)) samples, validate on the rest.
    (Was a bug: fromzero validated on int(n · split), one sample fewer for 10 × 0.25, and
    rejected validation_split=0.05 on 10 samples.)"""
    x, y = blobs(n=10)
    fz.utils.set_random_seed(24)
    model = mlp()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, epochs=1, validation_split=0.25, verbose=0)
    n_val = 10 - int(np.floor(10 * (1 - 0.25)))  # Keras: 3
    val_loss, _ = model.evaluate(x[-n_val:], y[-n_val:], verbose=0)
    assert history.history["val_loss"][-1] == pytest.approx(val_loss, rel=1e-6)
    model.fit(x, y, epochs=1, validation_split=0.05, verbose=0)  # Keras: 9 train, 1 validation


def test_evaluate_returns_loss_and_metrics():
    model, x, y = trained_small_model()
    result = model.evaluate(x, y, verbose=0)
    assert isinstance(result, list) and len(result) == 2
    loss, acc = result
    # the loss is the mean cross-entropy of the predictions, the accuracy their argmax hit rate
    p = model.predict(x)
    expected_loss = float(np.mean(-np.log(np.clip(p[np.arange(len(y)), y], 1e-7, 1))))
    assert loss == pytest.approx(expected_loss, rel=1e-5)
    assert acc == pytest.approx(float(np.mean(p.argmax(axis=1) == y)))


def test_evaluate_without_metrics_returns_the_loss():
    x, y = blobs()
    fz.utils.set_random_seed(4)
    model = mlp()
    model.compile("sgd", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, verbose=0)
    result = model.evaluate(x, y, verbose=0)
    assert isinstance(result, float)


def test_predict_float32_rows_sum_to_one(mnist):
    (x_train, _), _ = mnist
    fz.utils.set_random_seed(5)
    model = fz.Sequential([L.Dense(32, activation="relu"), L.Dense(10, activation="softmax")])
    p = model.predict(x_train[:100] / 255.0)  # never compiled or fitted: built on first use
    assert p.dtype == np.float32 and p.shape == (100, 10)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
    # batch size does not change the result
    np.testing.assert_array_equal(model.predict(x_train[:100] / 255.0, batch_size=7), p)


# ---------------------------------------------------------------- determinism

def weights_after_training(x, y, seed, epochs=1, batch_size=64):
    fz.utils.set_random_seed(seed)
    model = fz.Sequential([L.Dense(128, activation="relu"), L.Dropout(0.3),
                           L.Dense(10, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0)
    return model.get_weights(), history.history


def test_same_seed_gives_bit_identical_weights(mnist):
    (x_train, y_train), _ = mnist
    x, y = x_train[:1024] / 255.0, y_train[:1024]
    w1, h1 = weights_after_training(x, y, seed=7)
    w2, h2 = weights_after_training(x, y, seed=7)
    assert len(w1) == len(w2) == 4
    assert all(np.array_equal(a, b) for a, b in zip(w1, w2))
    assert h1 == h2
    w3, _ = weights_after_training(x, y, seed=8)
    assert not np.array_equal(w1[0], w3[0])


def test_thread_count_does_not_change_results(mnist, restore_threads):
    (x_train, y_train), _ = mnist
    # batches of 256 × 128 units: big enough for the GEMM, dropout and optimizer
    # kernels to split work across threads
    x, y = x_train[:1024] / 255.0, y_train[:1024]
    fz.set_num_threads(1)
    w1, h1 = weights_after_training(x, y, seed=9, batch_size=256)
    fz.set_num_threads(2)
    assert fz.get_num_threads() == 2
    w2, h2 = weights_after_training(x, y, seed=9, batch_size=256)
    assert all(np.array_equal(a, b) for a, b in zip(w1, w2))
    assert h1 == h2


# ---------------------------------------------------------------- save / load

def test_save_load_round_trip_is_bit_exact(tmp_path):
    model, x, y = trained_small_model(seed=10)
    path = tmp_path / "model.safetensors"
    model.save(path)
    loaded = fz.models.load_model(path)
    assert len(loaded.layers) == 3
    assert [type(l) for l in loaded.layers] == [L.Dense, L.Dropout, L.Dense]
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), loaded.get_weights()))
    assert all(a.dtype == np.float32 for a in loaded.get_weights())
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert fz.load_model is fz.models.load_model


def test_loaded_model_is_compiled_and_keeps_training(tmp_path):
    model, x, y = trained_small_model(seed=11)
    path = tmp_path / "model.safetensors"
    model.save(str(path))
    loaded = fz.models.load_model(str(path))
    assert isinstance(loaded.optimizer, fz.optimizers.Adam)
    assert loaded.optimizer.learning_rate == pytest.approx(model.optimizer.learning_rate)
    assert isinstance(loaded.loss, fz.losses.SparseCategoricalCrossentropy)
    assert [m.name for m in loaded.metrics] == ["accuracy"]
    before = loaded.evaluate(x, y, verbose=0)
    history = loaded.fit(x, y, epochs=3, verbose=0)
    assert set(history.history) == {"loss", "accuracy"}
    after = loaded.evaluate(x, y, verbose=0)
    assert after[0] < before[0]


@pytest.mark.parametrize("optimizer, loss, one_hot", [
    (fz.optimizers.SGD(0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
     fz.losses.SparseCategoricalCrossentropy(from_logits=True), False),
    (fz.optimizers.AdamW(0.01, weight_decay=0.1), "mse", True),
    (fz.optimizers.RMSprop(0.01, momentum=0.5), fz.losses.CategoricalCrossentropy(from_logits=True),
     True),
], ids=["sgd_nesterov", "adamw_mse", "rmsprop_categorical"])
def test_save_load_keeps_every_layer_and_compile_setting(tmp_path, optimizer, loss, one_hot):
    x, y = blobs(n=40)
    targets = np.eye(3, dtype=np.float32)[y] if one_hot else y
    fz.utils.set_random_seed(26)
    model = fz.Sequential([L.Dense(5, activation="gelu", kernel_regularizer="l2"), L.LeakyReLU(0.1),
                           L.Dropout(0.1), L.Activation("tanh"), L.Flatten(), L.Dense(3)])
    model.compile(optimizer, loss, metrics=["accuracy"])
    model.fit(x, targets, epochs=1, verbose=0)
    model.save(tmp_path / "m.safetensors")
    loaded = fz.models.load_model(tmp_path / "m.safetensors")
    assert [type(l) for l in loaded.layers] == [type(l) for l in model.layers]
    assert loaded.layers[1].alpha == pytest.approx(0.1)
    assert loaded.layers[2].rate == pytest.approx(0.1)
    assert loaded.layers[0].kernel_regularizer.get_config() == {"l2": 0.01}
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    assert loaded.loss.get_config() == model.loss.get_config()
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert loaded.evaluate(x, targets, verbose=0) == model.evaluate(x, targets, verbose=0)
    loaded.fit(x, targets, epochs=1, verbose=0)


def test_saved_file_is_plain_safetensors(tmp_path):
    model, _, _ = trained_small_model(seed=12)
    path = tmp_path / "model.safetensors"
    model.save(path)
    tensors = safetensors.numpy.load_file(path)
    with safetensors.safe_open(path, framework="numpy") as f:
        config = json.loads(f.metadata()["fromzero"])
    assert config["class"] == "Sequential"
    assert config["config"]["layers"][0]["class"] == "Dense"
    names = config["weights"]
    assert [n.split("/")[1] for n in names] == ["kernel", "bias", "kernel", "bias"]
    assert all(np.array_equal(tensors[n], w) for n, w in zip(names, model.get_weights()))


def test_save_over_existing_file_leaves_no_temp_files(tmp_path):
    model, x, _ = trained_small_model(seed=13)
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"old content")
    model.save(path)
    model.save(path)
    assert sorted(os.listdir(tmp_path)) == ["model.safetensors"]
    np.testing.assert_array_equal(fz.models.load_model(path).predict(x), model.predict(x))


def test_load_truncated_file(tmp_path):
    model, _, _ = trained_small_model(seed=14)
    path = tmp_path / "model.safetensors"
    model.save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cannot load model from"):
        fz.models.load_model(path)


def test_load_random_bytes(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(ValueError, match="cannot load model from"):
        fz.models.load_model(path)


def test_load_npz_without_config(tmp_path):  # an .npz goes to the reader of the old format
    path = tmp_path / "model.npz"
    np.savez(path, weight_0=np.zeros((3, 2), np.float32))
    with pytest.raises(ValueError, match="no 'config' entry: not a fromzero model file"):
        fz.models.load_model(path)


def test_load_file_with_altered_weight_shape(tmp_path):
    model, _, _ = trained_small_model(seed=15)
    path = tmp_path / "model.safetensors"
    model.save(path)
    with safetensors.safe_open(path, framework="numpy") as f:
        tensors = {k: f.get_tensor(k).copy() for k in f.keys()}
        metadata = f.metadata()
    first = json.loads(metadata["fromzero"])["weights"][0]
    tensors[first] = tensors[first][:-1]  # one input feature fewer
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(safetensors.numpy.save(tensors, metadata))
    with pytest.raises(ValueError, match=r"weights do not fit the architecture.*weight 0 must have "
                                         r"shape \(6, 16\), got \(5, 16\)"):
        fz.models.load_model(bad)


def test_load_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        fz.models.load_model(tmp_path / "nope.npz")


# ---------------------------------------------------------------- summary and progress output

def test_summary_prints_parameter_counts(capsys):
    model = fz.Sequential([L.Dense(128, activation="relu"), L.Dense(10, activation="softmax")])
    model.build((None, 784))
    model.summary()
    out = capsys.readouterr().out
    assert "100,480" in out and "1,290" in out
    assert "Total params: 101,770" in out
    assert "(None, 128)" in out and "(None, 10)" in out
    lines = []
    model.summary(print_fn=lines.append)
    assert any("100,480" in line for line in lines)


def test_fit_shows_progress_with_verbose_1(capsys):
    x, y = blobs(n=100)
    fz.utils.set_random_seed(16)
    model = mlp()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=2, batch_size=32, verbose=1)
    out = capsys.readouterr().out
    assert "Epoch 1/2" in out and "Epoch 2/2" in out
    assert "4/4" in out  # ceil(100 / 32) batches
    assert "loss:" in out and "accuracy:" in out


def test_fit_is_silent_with_verbose_0(capsys):
    x, y = blobs(n=100)
    fz.utils.set_random_seed(17)
    model = mlp()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=2, verbose=0, validation_split=0.2)
    model.evaluate(x, y, verbose=0)
    model.predict(x, verbose=0)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


# ---------------------------------------------------------------- other optimizers and losses

@pytest.mark.parametrize("optimizer", [
    fz.optimizers.SGD(learning_rate=0.05),
    fz.optimizers.SGD(learning_rate=0.05, momentum=0.9, nesterov=True),
    fz.optimizers.RMSprop(learning_rate=0.005),
    fz.optimizers.AdamW(learning_rate=0.01),
    "adam",
], ids=["sgd", "nesterov", "rmsprop", "adamw", "adam"])
def test_optimizers_decrease_the_loss(optimizer):
    x, y = blobs()
    fz.utils.set_random_seed(18)
    model = mlp()
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, epochs=5, verbose=0)
    loss = history.history["loss"]
    assert loss[-1] < 0.8 * loss[0], loss


@pytest.mark.parametrize("loss, out_activation", [
    ("mse", "softmax"),
    ("categorical_crossentropy", "softmax"),
    (fz.losses.CategoricalCrossentropy(from_logits=True), None),
], ids=["mse_one_hot", "categorical", "categorical_logits"])
def test_one_hot_losses_decrease_the_loss(loss, out_activation):
    x, y = blobs()
    onehot = np.eye(3, dtype=np.float32)[y]
    fz.utils.set_random_seed(19)
    model = mlp(out_activation=out_activation)
    model.compile(optimizer=fz.optimizers.Adam(0.01), loss=loss, metrics=["accuracy"])
    history = model.fit(x, onehot, epochs=5, verbose=0)
    h = history.history
    assert h["loss"][-1] < 0.8 * h["loss"][0], h["loss"]
    assert h["accuracy"][-1] > 0.8  # accuracy compares argmaxes of one-hot targets


def test_binary_crossentropy_on_one_sigmoid_output():
    x, y = blobs(classes=2)
    fz.utils.set_random_seed(20)
    model = fz.Sequential([L.Dense(8, activation="tanh"), L.Dense(1, activation="sigmoid")])
    model.compile(fz.optimizers.Adam(0.01), "binary_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y.astype(np.float32), epochs=5, verbose=0)
    assert history.history["loss"][-1] < 0.8 * history.history["loss"][0]
    assert history.history["accuracy"][-1] > 0.8


# ---------------------------------------------------------------- fused softmax + cross-entropy

def one_sgd_step(model, loss, x, y, weights):
    model.build((None,) + x.shape[1:])
    model.set_weights(weights)
    model.compile(optimizer=fz.optimizers.SGD(learning_rate=0.5), loss=loss)
    model.fit(x, y, batch_size=len(x), epochs=1, shuffle=False, verbose=0)
    return model.get_weights()


@pytest.mark.parametrize("sparse", [True, False], ids=["sparse", "categorical"])
def test_fused_softmax_gradient_matches_from_logits(sparse):
    x, y = blobs(n=40, classes=10, seed=21)
    targets = y if sparse else np.eye(10, dtype=np.float32)[y]
    cls = (fz.losses.SparseCategoricalCrossentropy if sparse
           else fz.losses.CategoricalCrossentropy)
    fz.utils.set_random_seed(21)
    init = fz.Sequential([L.Dense(12, activation="tanh"), L.Dense(10)])
    init.build((None, 6))
    weights = init.get_weights()

    fused = fz.Sequential([L.Dense(12, activation="tanh"), L.Dense(10, activation="softmax")])
    w_fused = one_sgd_step(fused, cls(), x, targets, weights)
    assert fused._output_losses[0].fused  # softmax output + cross-entropy on probabilities
    logits = fz.Sequential([L.Dense(12, activation="tanh"), L.Dense(10)])
    w_logits = one_sgd_step(logits, cls(from_logits=True), x, targets, weights)
    assert not logits._output_losses[0].fused
    for a, b, w0 in zip(w_fused, w_logits, weights):
        assert not np.array_equal(a, w0)  # the step did something
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)


def test_fused_softmax_gradient_matches_unfused_jacobian():
    """p − onehot through the fused path equals loss.gradient pushed through the
    softmax Jacobian (Dense.backward), computed with the low-level protocol."""
    x, y = blobs(n=20, classes=5, seed=22)
    fz.utils.set_random_seed(22)
    layer = L.Dense(5, activation="softmax")
    loss = fz.losses.SparseCategoricalCrossentropy()
    p = layer.forward(x, training=True).copy()
    layer.backward(loss.gradient(y, p))
    unfused = [g.copy() for g in layer.grads]
    layer.forward(x, training=True)
    layer.backward_from_logits(loss.softmax_gradient(p, y.astype(np.int32),
                                                     out=np.empty_like(p)))
    for a, b in zip(unfused, layer.grads):
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)


def test_softmax_layer_and_softmax_activation_train_identically():
    """Dense(10) + Softmax() and Dense(10, activation="softmax") are the same model."""
    x, y = blobs(n=64, classes=10, seed=25)
    results = []
    for split in (False, True):
        fz.utils.set_random_seed(25)
        layers = ([L.Dense(12, activation="relu"), L.Dense(10), L.Softmax()] if split else
                  [L.Dense(12, activation="relu"), L.Dense(10, activation="softmax")])
        model = fz.Sequential(layers)
        model.compile("adam", "sparse_categorical_crossentropy")
        model.fit(x, y, epochs=2, batch_size=16, verbose=0)
        results.append((model.get_weights(), model.predict(x)))
    (w1, p1), (w2, p2) = results
    for a, b in zip(w1, w2):
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)
    np.testing.assert_allclose(p1, p2, atol=1e-6, rtol=0)


# ---------------------------------------------------------------- NaN

def test_nan_input_stops_training_with_a_message(capsys):
    x, y = blobs(n=128)
    x[5, 2] = np.nan
    fz.utils.set_random_seed(23)
    model = mlp()
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    with time_limit(30):
        history = model.fit(x, y, epochs=5, batch_size=16, verbose=0)
    err = capsys.readouterr().err
    assert "invalid loss" in err and "terminating training" in err
    assert model.stop_training
    assert len(history.history["loss"]) == 1  # stopped in the first epoch
    assert np.isnan(history.history["loss"][0])


def test_nan_labels_are_rejected_before_training():
    x, y = blobs(n=32)
    labels = y.astype(np.float64)
    labels[3] = np.nan
    model = mlp()
    model.compile("sgd", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="whole numbers"):
        model.fit(x, labels, verbose=0)


# ---------------------------------------------------------------- command line

def test_cli_info(capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert "simd:" in out and "threads:" in out and "version: " + fz.__version__ in out
    assert fz.info()["simd"] in ("avx512", "avx2", "generic")


def test_cli_train_help_lists_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for option in ("--dataset", "--model", "--epochs", "--batch-size", "--optimizer",
                   "--learning-rate", "--seed", "--threads"):
        assert option in out, option


def test_cli_without_command_fails(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([])
    assert exit_info.value.code == 2


# ---------------------------------------------------------------- files of the first format

DATA = os.path.join(os.path.dirname(__file__), "data")


def test_format_1_files_still_load():
    """A Sequential saved by fromzero's first format (format_version 1, written
    by the previous engine): its Dense read (N, 4, 3) samples flattened, which a
    Flatten in front now says; same weights, same predictions, still compiled."""
    model = fz.models.load_model(os.path.join(DATA, "sequential_format1.npz"))
    assert [type(l).__name__ for l in model.layers] == ["Flatten", "Dense", "Dropout", "Dense"]
    assert model.input_shape == (None, 4, 3)
    x = np.random.default_rng(0).standard_normal((40, 4, 3)).astype(np.float32)
    expected = np.load(os.path.join(DATA, "sequential_format1_predictions.npy"))
    np.testing.assert_array_equal(model.predict(x[:6], verbose=0), expected)
    assert isinstance(model.optimizer, fz.optimizers.Adam)
    assert [m.name for m in model.metrics] == ["accuracy"]
    model.fit(x, np.zeros(40, int), epochs=1, verbose=0)
