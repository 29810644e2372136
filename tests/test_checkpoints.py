"""Checkpoints in safetensors: names, resuming training bit for bit, extras,
the files of earlier formats, and how files are written (atomically, with the
umask's mode, no temporary file left behind).

Damaged and hostile files are in test_robustness.py (one case each) and
test_fuzz.py (mutations); a save killed by SIGKILL in test_robustness.py too.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import safetensors
import safetensors.numpy

import fromzero as fz

L = fz.layers
DATA = os.path.join(os.path.dirname(__file__), "data")


def blobs(n=96, features=6, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    x = rng.standard_normal((n, features)).astype(np.float32) + y[:, None].astype(np.float32)
    return x, y


def model_with_randomness(optimizer, seed=3):
    """Dense → BatchNormalization → Dropout → Dense: its training draws dropout
    masks and shuffles, and BatchNormalization keeps moving statistics."""
    fz.utils.set_random_seed(seed)
    model = fz.Sequential([fz.Input((6,)), L.Dense(16, activation="relu"), L.BatchNormalization(),
                           L.Dropout(0.3), L.Dense(3, activation="softmax")])
    model.compile(optimizer, "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def metadata_of(path):
    with safetensors.safe_open(path, framework="numpy") as f:
        return f.metadata()


# ---------------------------------------------------------------- what the file holds

def test_tensor_names_say_what_they_are(tmp_path):
    model = model_with_randomness(fz.optimizers.Adam(0.01))
    x, y = blobs()
    model.fit(x, y, epochs=1, batch_size=32, verbose=0)
    path = tmp_path / "model.safetensors"
    model.save(path)
    tensors = safetensors.numpy.load_file(path)
    dense, norm, _, out = (layer.name for layer in model.layers)
    weights = {f"{dense}/kernel": (6, 16), f"{dense}/bias": (16,), f"{norm}/gamma": (16,),
               f"{norm}/beta": (16,), f"{norm}/moving_mean": (16,),
               f"{norm}/moving_variance": (16,), f"{out}/kernel": (16, 3), f"{out}/bias": (3,)}
    trained = [f"{dense}/kernel", f"{dense}/bias", f"{norm}/gamma", f"{norm}/beta",
               f"{out}/kernel", f"{out}/bias"]
    slots = {f"optimizer/{name}/{slot}": weights[name]
             for name in trained for slot in ("momentum", "velocity")}
    assert {k: v.shape for k, v in tensors.items()} == {**weights, **slots}
    for name, w in zip(json.loads(metadata_of(path)["fromzero"])["weights"], model.get_weights()):
        np.testing.assert_array_equal(tensors[name], w)
    moments = model.optimizer.get_state(model.trainable_params)["slots"][0]
    np.testing.assert_array_equal(tensors[f"optimizer/{dense}/kernel/velocity"], moments[1])
    assert np.any(moments[1] != 0)


def test_torch_reads_the_weights(tmp_path):
    torch = pytest.importorskip("torch")
    import safetensors.torch
    fz.utils.set_random_seed(1)
    model = fz.Sequential([fz.Input((4,)), L.Dense(5, name="hidden"), L.Dense(2, name="out")])
    model.save_weights(tmp_path / "w.safetensors")
    tensors = safetensors.torch.load_file(tmp_path / "w.safetensors")
    assert sorted(tensors) == ["hidden/bias", "hidden/kernel", "out/bias", "out/kernel"]
    assert tensors["hidden/kernel"].dtype == torch.float32
    x = np.ones((3, 4), np.float32)
    by_torch = (torch.from_numpy(x) @ tensors["hidden/kernel"] + tensors["hidden/bias"]) \
        @ tensors["out/kernel"] + tensors["out/bias"]
    np.testing.assert_allclose(by_torch.numpy(), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def test_nested_model_weights_carry_its_name(tmp_path):
    fz.utils.set_random_seed(2)
    inner = fz.Sequential([fz.Input((4,)), L.Dense(3, name="proj")], name="encoder")
    x = fz.Input((4,))
    model = fz.Model(x, L.Dense(2, name="head")(inner(x)))
    model.save(tmp_path / "m.safetensors")
    assert sorted(safetensors.numpy.load_file(tmp_path / "m.safetensors")) == [
        "encoder/proj/bias", "encoder/proj/kernel", "head/bias", "head/kernel"]
    loaded = fz.load_model(tmp_path / "m.safetensors")
    ones = np.ones((2, 4), np.float32)
    np.testing.assert_array_equal(loaded.predict(ones, verbose=0), model.predict(ones, verbose=0))


def test_an_uncompiled_model_saves_no_optimizer_state(tmp_path):
    fz.utils.set_random_seed(4)
    model = fz.Sequential([fz.Input((3,)), L.Dense(2)])
    model.save(tmp_path / "m.safetensors")
    header = json.loads(metadata_of(tmp_path / "m.safetensors")["fromzero"])
    assert header["optimizer_state"] is None and header["compile"] is None
    assert fz.load_model(tmp_path / "m.safetensors").optimizer is None


# ---------------------------------------------------------------- resuming exactly

def schedule():
    return fz.optimizers.schedules.ExponentialDecay(0.05, decay_steps=2, decay_rate=0.7)


OPTIMIZERS = {
    "sgd_momentum": lambda: fz.optimizers.SGD(schedule(), momentum=0.9, nesterov=True),
    "adam": lambda: fz.optimizers.Adam(schedule()),
    "adamw": lambda: fz.optimizers.AdamW(schedule(), weight_decay=0.05),
    "rmsprop": lambda: fz.optimizers.RMSprop(schedule(), momentum=0.5),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_resume_from_a_file_is_bit_exact(tmp_path, name):
    """fit 2 epochs ≡ fit 1 epoch, save, load, fit 1 epoch: the same weights,
    optimizer state and loss to the last bit (the file holds the optimizer's
    slots and step count — the schedule's position — and the model's random
    generator, which draws the dropout masks and the shuffling)."""
    x, y = blobs()
    straight = model_with_randomness(OPTIMIZERS[name]())
    history = straight.fit(x, y, epochs=2, batch_size=20, verbose=0)

    first = model_with_randomness(OPTIMIZERS[name]())
    first.fit(x, y, epochs=1, batch_size=20, verbose=0)
    first.save(tmp_path / "epoch1.safetensors")
    resumed = fz.load_model(tmp_path / "epoch1.safetensors")
    resumed_history = resumed.fit(x, y, epochs=2, initial_epoch=1, batch_size=20, verbose=0)

    assert resumed.optimizer.iterations == straight.optimizer.iterations == 10
    assert resumed.optimizer.learning_rate == straight.optimizer.learning_rate
    for a, b in zip(resumed.get_weights(), straight.get_weights()):
        np.testing.assert_array_equal(a, b)
    params = straight.trainable_params
    for a, b in zip(straight.optimizer.get_state(params)["slots"],
                    resumed.optimizer.get_state(resumed.trainable_params)["slots"]):
        for sa, sb in zip(a, b):
            np.testing.assert_array_equal(sa, sb)
    assert resumed_history.history["loss"] == history.history["loss"][1:]


def test_resume_without_the_training_state_differs(tmp_path):
    """The test above can fail: the weights alone (load_weights into a freshly
    compiled model) restart Adam's moments and step count and the generator."""
    x, y = blobs()
    straight = model_with_randomness(fz.optimizers.Adam(0.01))
    straight.fit(x, y, epochs=2, batch_size=20, verbose=0)
    first = model_with_randomness(fz.optimizers.Adam(0.01))
    first.fit(x, y, epochs=1, batch_size=20, verbose=0)
    first.save_weights(tmp_path / "w.safetensors")
    fresh = model_with_randomness(fz.optimizers.Adam(0.01), seed=3)
    fresh.load_weights(tmp_path / "w.safetensors")
    fresh.fit(x, y, epochs=1, batch_size=20, verbose=0)
    assert not all(np.array_equal(a, b) for a, b in zip(fresh.get_weights(), straight.get_weights()))


# ---------------------------------------------------------------- extras, weights files

def test_extras_round_trip(tmp_path):
    fz.utils.set_random_seed(5)
    model = fz.Sequential([fz.Input((3,)), L.Dense(2)])
    extras = {"tokenizer": {"kind": "chars", "vocabulary": ["a", "b", "é", "诗"]}, "steps": 3}
    model.save(tmp_path / "m.safetensors", extras=extras)
    assert fz.saving.load_extras(tmp_path / "m.safetensors") == extras
    model.save(tmp_path / "plain.safetensors")
    assert fz.saving.load_extras(tmp_path / "plain.safetensors") == {}
    assert fz.saving.load_extras(os.path.join(DATA, "sequential_format1.npz")) == {}
    with pytest.raises(TypeError, match="extras must be a dict"):
        model.save(tmp_path / "bad.safetensors", extras=["not", "a", "dict"])


def test_weights_file_is_not_a_model(tmp_path):
    fz.utils.set_random_seed(6)
    model = fz.Sequential([fz.Input((3,)), L.Dense(2)])
    model.save_weights(tmp_path / "w.safetensors")
    header = json.loads(metadata_of(tmp_path / "w.safetensors")["fromzero"])
    assert header["format"] == "fromzero.Weights"
    assert header["weights"] == [f"{model.layers[0].name}/kernel", f"{model.layers[0].name}/bias"]
    with pytest.raises(ValueError, match="holds weights only .* call its load_weights"):
        fz.load_model(tmp_path / "w.safetensors")


def test_load_weights_matches_by_position_whatever_the_layer_names(tmp_path):
    """A model rebuilt in the same program gets new default names (dense_7 ...):
    weights load in order, each shape checked."""
    fz.utils.set_random_seed(7)
    model = fz.Sequential([fz.Input((3,)), L.Dense(4), L.Dense(2)])
    model.save_weights(tmp_path / "w.safetensors")
    again = fz.Sequential([fz.Input((3,)), L.Dense(4), L.Dense(2)])
    assert again.layers[0].name != model.layers[0].name
    again.load_weights(tmp_path / "w.safetensors")
    for a, b in zip(again.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_format_2_npz_files_still_load():
    """A graph model saved by fromzero's format 2 (.npz, before safetensors):
    same predictions, compiled again (tests/data/model_format2.npz, made from
    x = default_rng(0).standard_normal((32, 6)))."""
    model = fz.load_model(os.path.join(DATA, "model_format2.npz"))
    assert [type(l).__name__ for l in model.layers] == ["InputLayer", "Dense",
                                                         "BatchNormalization", "Dropout", "Dense"]
    x = np.random.default_rng(0).standard_normal((32, 6)).astype(np.float32)
    expected = np.load(os.path.join(DATA, "model_format2_predictions.npy"))
    np.testing.assert_array_equal(model.predict(x[:5], verbose=0), expected)
    assert isinstance(model.optimizer, fz.optimizers.Adam)
    assert [m.name for m in model.metrics] == ["accuracy"]
    fresh = fz.Sequential([fz.Input((6,)), L.Dense(8), L.BatchNormalization(), L.Dropout(0.2),
                           L.Dense(3)])
    fresh.load_weights(os.path.join(DATA, "model_format2.npz"))
    np.testing.assert_array_equal(fresh.get_weights()[0], model.get_weights()[0])


# ---------------------------------------------------------------- how files are written

@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_saved_files_have_the_umasks_mode(tmp_path, umask):
    fz.utils.set_random_seed(8)
    model = fz.Sequential([fz.Input((3,)), L.Dense(2)])
    old = os.umask(umask)
    try:
        model.save(tmp_path / "m.safetensors")
        model.save_weights(tmp_path / "w.safetensors")
    finally:
        os.umask(old)
    for name in ("m.safetensors", "w.safetensors"):
        assert os.stat(tmp_path / name).st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.parametrize("failing", ["write", "fsync", "replace"])
@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), KeyboardInterrupt()],
                         ids=["ENOSPC", "KeyboardInterrupt"])
def test_a_failed_save_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch, failing, error):
    fz.utils.set_random_seed(9)
    model = fz.Sequential([fz.Input((3,)), L.Dense(2)])
    path = tmp_path / "m.safetensors"
    model.save(path)
    before = path.read_bytes()
    model.layers[0].kernel[...] += 1

    def fail(*args, **kwargs):
        raise error

    if failing == "write":
        real_fdopen = os.fdopen
        monkeypatch.setattr(os, "fdopen", lambda *a, **k: _FailingWriter(real_fdopen(*a, **k), error))
    else:
        monkeypatch.setattr(os, failing, fail)
    with pytest.raises(type(error)):
        model.save(path)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["m.safetensors"]
    assert path.read_bytes() == before


class _FailingWriter:
    """A file whose write raises `error` (a full disk, or Ctrl-C mid-write)."""

    def __init__(self, f, error):
        self.f, self.error = f, error

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()

    def write(self, data):
        self.f.write(data[:len(data) // 2])
        raise self.error


def test_a_temporary_file_left_by_a_killed_save_is_removed_by_the_next(tmp_path):
    """SIGKILL cannot be caught: a save killed mid-write leaves its temporary
    file, named after the path and the process. The next save to the same path
    removes those of processes that no longer run, and keeps a running one's."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    stale = tmp_path / f".m.safetensors.{dead}-0a1b2c3d.fromzero-tmp"
    running = tmp_path / f".m.safetensors.{os.getppid()}-0a1b2c3d.fromzero-tmp"
    other = tmp_path / f".other.safetensors.{dead}-0a1b2c3d.fromzero-tmp"
    for f in (stale, running, other):
        f.write_bytes(b"half a checkpoint")
    fz.utils.set_random_seed(10)
    fz.Sequential([fz.Input((3,)), L.Dense(2)]).save(tmp_path / "m.safetensors")
    assert sorted(os.listdir(tmp_path)) == sorted(["m.safetensors", running.name, other.name])


# ---------------------------------------------------------------- every argument comes back

class AbsoluteErrorOfMine(fz.losses.Loss):
    """A loss of the user's own: found again by its class when loading."""

    def call(self, y_true, y_pred):
        return np.abs(y_pred - y_true).mean(axis=-1)

    def gradient(self, y_true, y_pred):
        return np.sign(y_pred - y_true) / y_pred.size


METRICS = [fz.metrics.TopKCategoricalAccuracy(k=3), fz.metrics.SparseTopKCategoricalAccuracy(k=2),
           fz.metrics.Precision(average="micro"), fz.metrics.Recall(average=None, name="recall_each"),
           fz.metrics.F1Score(average="weighted", name="f1_w"), fz.metrics.Accuracy(name="acc")]


@pytest.mark.parametrize("metric", METRICS, ids=lambda m: type(m).__name__)
def test_metrics_round_trip_with_every_argument(metric):
    again = fz.metrics.deserialize(json.loads(json.dumps(fz.utils.serialize(metric))))
    assert type(again) is type(metric) and again.get_config() == metric.get_config()


@pytest.mark.parametrize("loss", [
    fz.losses.SparseCategoricalCrossentropy(from_logits=True, name="ce_logits"),
    fz.losses.CategoricalCrossentropy(name="cce"), fz.losses.BinaryCrossentropy(from_logits=True),
    fz.losses.MeanSquaredError(name="l2_loss"), AbsoluteErrorOfMine(name="mae_mine")],
    ids=lambda l: type(l).__name__)
def test_losses_round_trip_with_every_argument(loss):
    again = fz.losses.from_config(json.loads(json.dumps(fz.utils.serialize(loss))))
    assert type(again) is type(loss) and again.get_config() == loss.get_config()


@pytest.mark.parametrize("init", [
    fz.initializers.RandomNormal(0.5, 0.1), fz.initializers.RandomUniform(-1, 2),
    fz.initializers.Constant(0.25), fz.initializers.HeNormal(), fz.initializers.Zeros()],
    ids=lambda i: type(i).__name__)
def test_initializers_round_trip(init):
    again = fz.initializers.get(json.loads(json.dumps(fz.initializers.serialize(init))))
    assert again == init
    fz.utils.set_random_seed(0)
    first = init((3, 4))
    fz.utils.set_random_seed(0)
    np.testing.assert_array_equal(again((3, 4)), first)


@pytest.mark.parametrize("reg", [fz.regularizers.L1(0.2), fz.regularizers.L2(0.03),
                                 fz.regularizers.L1L2(0.1, 0.2)], ids=lambda r: type(r).__name__)
def test_regularizers_round_trip_keyed_by_class(reg):
    again = fz.regularizers.get(json.loads(json.dumps(fz.regularizers.serialize(reg))))
    assert type(again) is type(reg) and again.get_config() == reg.get_config()


def test_a_saved_model_keeps_every_argument(tmp_path):
    """Before: TopKCategoricalAccuracy(k=3) came back with k=5, Precision('micro')
    as macro, a custom loss name or class did not load, and an initializer
    object was saved as 'glorot_uniform'."""
    fz.utils.set_random_seed(11)
    model = fz.Sequential([
        fz.Input((4,)),
        L.Dense(5, kernel_initializer=fz.initializers.RandomNormal(0.1, 0.2),
                bias_initializer=fz.initializers.Constant(0.5),
                kernel_regularizer=fz.regularizers.L2(0.03)),
        L.Dense(6, activation="softmax", kernel_initializer="he_normal")])
    model.compile("adam", fz.losses.SparseCategoricalCrossentropy(name="my_ce"),
                  metrics=[fz.metrics.TopKCategoricalAccuracy(k=3),
                           fz.metrics.Precision(average="micro", name="p_micro"), "accuracy"])
    model.save(tmp_path / "m.safetensors")
    loaded = fz.load_model(tmp_path / "m.safetensors")
    assert [(type(m), m.get_config()) for m in loaded.metrics] == \
        [(type(m), m.get_config()) for m in model.metrics]
    assert loaded.metrics[0].k == 3 and loaded.metrics[1].average == "micro"
    assert loaded.loss.name == "my_ce"
    assert loaded.layers[0].get_config() == model.layers[0].get_config()
    assert loaded.layers[0].kernel_initializer == fz.initializers.RandomNormal(0.1, 0.2)
    assert type(loaded.layers[0].kernel_regularizer) is fz.regularizers.L2
    assert loaded.layers[1].kernel_initializer == "he_normal"

    custom = fz.Sequential([fz.Input((2,)), L.Dense(1)])
    custom.compile("sgd", AbsoluteErrorOfMine(name="mae_mine"))
    custom.save(tmp_path / "c.safetensors")
    again = fz.load_model(tmp_path / "c.safetensors")
    assert type(again.loss) is AbsoluteErrorOfMine and again.loss.name == "mae_mine"


def test_a_plain_function_initializer_is_refused_at_save_not_replaced(tmp_path):
    fz.utils.set_random_seed(12)
    model = fz.Sequential([fz.Input((2,)), L.Dense(3, kernel_initializer=lambda s: np.ones(s))])
    with pytest.raises(ValueError, match="its initializer .* is a plain function, and a file holds "
                                         "no code; write it as a subclass of fromzero.initializers"):
        model.save(tmp_path / "m.safetensors")
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------- weights shown as views

class ViewScale(L.Layer):
    """y = x · w per feature. Its weight lives as a (1, n) array and is shown
    as (n,) — a fresh view each time params is read, as MultiHeadAttention
    shows its Dense sublayers' kernels in Keras's shapes. The optimizer's state
    and the saved file must follow the weight, not the view object."""

    def build(self, input_shape):
        n = input_shape[-1]
        self._w = np.linspace(0.5, 1.5, n, dtype=np.float32).reshape(1, n)
        self._g = np.zeros((1, n), np.float32)
        self.built = True

    @property
    def params(self):
        return [self._w.reshape(-1)] if self.built else []

    @property
    def grads(self):
        return [self._g.reshape(-1)] if self.built else []

    def forward(self, x, training=False):
        x = np.asarray(x, np.float32)
        if not self.built:
            self.build(x.shape)
        if training:
            self.save(x)
        return x * self._w

    def backward(self, dy):
        (x,) = self.saved
        self._g[...] = (dy * x).sum(axis=0)
        return dy * self._w


def view_model():
    fz.utils.set_random_seed(13)
    model = fz.Sequential([fz.Input((6,)), L.Dense(5, activation="relu"), ViewScale(),
                           L.Dense(3, activation="softmax")])
    model.compile(fz.optimizers.Adam(0.02), "sparse_categorical_crossentropy")
    return model


def test_optimizer_state_follows_weights_shown_as_fresh_views(tmp_path):
    x, y = blobs()
    straight = view_model()
    straight.fit(x, y, epochs=2, batch_size=32, verbose=0)
    twice = view_model()  # two fits: Adam's moments of the view weight carry over
    twice.fit(x, y, epochs=1, batch_size=32, verbose=0)
    twice.save(tmp_path / "m.safetensors")
    twice.fit(x, y, epochs=1, batch_size=32, verbose=0)
    resumed = fz.load_model(tmp_path / "m.safetensors")
    resumed.fit(x, y, epochs=1, batch_size=32, verbose=0)
    for a, b, c in zip(straight.get_weights(), twice.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    scale = twice.layers[1].name
    tensors = safetensors.numpy.load_file(tmp_path / "m.safetensors")
    assert tensors[f"optimizer/{scale}/weight_0/velocity"].shape == (5,)
