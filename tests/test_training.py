"""The training loop with Keras 3's arguments: several outputs, sample and
class weights, initial_epoch, steps_per_epoch, datasets and generators,
*_on_batch, integer inputs, sequence targets, callback hooks, threads and
bounded memory."""

import gc
import os
import threading

import numpy as np
import pytest

import fromzero as fz

L = fz.layers


def blobs(n=120, features=6, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((classes, features)) * 2.5
    y = rng.integers(0, classes, n)
    return (centres[y] + rng.standard_normal((n, features))).astype(np.float32), y


def small_model(seed=0, classes=3, features=6):
    fz.utils.set_random_seed(seed)
    x = fz.Input((features,))
    return fz.Model(x, L.Dense(classes, activation="softmax")(L.Dense(8, activation="relu")(x)))


# ---------------------------------------------------------------- several outputs

def two_headed(seed=0):
    fz.utils.set_random_seed(seed)
    x = fz.Input((6,))
    h = L.Dense(8, activation="relu")(x)
    return fz.Model(x, [L.Dense(3, activation="softmax", name="kind")(h),
                        L.Dense(1, name="size")(h)])


@pytest.mark.parametrize("as_dict", [False, True], ids=["list", "dict"])
def test_one_loss_per_output_summed_with_keras_names(as_dict):
    x, y = blobs()
    size = x[:, :1] * 2
    model = two_headed()
    losses = ["sparse_categorical_crossentropy", "mse"]
    weights = [1.0, 0.5]
    metrics = [["accuracy"], []]
    if as_dict:
        losses, weights, metrics = (dict(zip(["kind", "size"], v)) for v in (losses, weights, metrics))
    model.compile("adam", losses, loss_weights=weights, metrics=metrics)
    targets = {"kind": y, "size": size} if as_dict else [y, size]
    history = model.fit(x, targets, epochs=2, verbose=0)
    assert list(history.history) == ["loss", "kind_accuracy", "kind_loss", "size_loss"]
    assert model.metrics_names == list(history.history)
    logs = model.evaluate(x, targets, verbose=0, return_dict=True)
    kind, scale = model.predict(x, verbose=0)
    ce = -np.mean(np.log(np.clip(kind[np.arange(len(y)), y], 1e-7, 1)))
    mse = np.mean((scale - size) ** 2)
    assert logs["kind_loss"] == pytest.approx(ce, rel=1e-4)
    assert logs["size_loss"] == pytest.approx(mse, rel=1e-4)
    assert logs["loss"] == pytest.approx(ce + 0.5 * mse, rel=1e-4)
    assert logs["kind_accuracy"] == pytest.approx(np.mean(kind.argmax(1) == y))


def test_output_without_a_loss_is_not_trained_on():
    x, y = blobs()
    model = two_headed()
    model.compile("sgd", ["sparse_categorical_crossentropy", None])
    size_layer = model.get_layer("size")
    before = size_layer.get_weights()
    model.fit(x, [y, None], epochs=1, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(before, size_layer.get_weights()))


# ---------------------------------------------------------------- weights

def linear_regression(seed=0):
    fz.utils.set_random_seed(seed)
    x = fz.Input((3,))
    model = fz.Model(x, L.Dense(2, use_bias=False)(x))
    model.compile(fz.optimizers.SGD(0.1), "mse")
    return model


def test_sample_weight_against_hand_computed_values():
    """Keras's weighted loss: L = Σ_i w_i l_i / N (not / Σ w); one SGD step."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 3)).astype(np.float32)
    t = rng.standard_normal((5, 2)).astype(np.float32)
    w = np.array([1.0, 0.0, 2.0, 0.5, 3.0], np.float32)
    model = linear_regression()
    w0 = model.trainable_params[0].copy().astype(np.float64)
    row = ((x @ w0 - t) ** 2).mean(axis=1)
    assert model.evaluate(x, t, sample_weight=w, verbose=0) == pytest.approx(np.sum(w * row) / 5,
                                                                             rel=1e-5)
    model.fit(x, t, sample_weight=w, batch_size=5, epochs=1, shuffle=False, verbose=0)
    grad = x.T.astype(np.float64) @ (w[:, None] * 2 * (x @ w0 - t) / (5 * 2))
    np.testing.assert_allclose(model.trainable_params[0], w0 - 0.1 * grad, rtol=1e-5, atol=1e-6)


def test_class_weight_is_a_sample_weight_per_class():
    x, y = blobs(n=64)
    class_weight = {0: 1.0, 1: 3.0, 2: 0.25}
    a, b = small_model(3), small_model(3)
    for model in (a, b):
        model.compile("adam", "sparse_categorical_crossentropy")
        model._rng = np.random.default_rng(0)
    a.fit(x, y, class_weight=class_weight, epochs=2, verbose=0)
    b.fit(x, y, sample_weight=np.array([class_weight[c] for c in y]), epochs=2, verbose=0)
    assert all(np.array_equal(p, q) for p, q in zip(a.get_weights(), b.get_weights()))
    with pytest.raises(ValueError, match="sample_weight or class_weight, not both"):
        a.fit(x, y, class_weight=class_weight, sample_weight=np.ones(64), verbose=0)


def test_initial_epoch_and_steps_per_epoch():
    x, y = blobs(n=100)
    model = small_model()
    model.compile("sgd", "sparse_categorical_crossentropy")
    history = model.fit(x, y, batch_size=32, epochs=3, initial_epoch=1, verbose=0)
    assert history.epoch == [1, 2]
    assert model.optimizer.iterations == 2 * 4  # ceil(100 / 32) batches per epoch
    history = model.fit(x, y, batch_size=32, epochs=3, steps_per_epoch=3, verbose=0)
    assert model.optimizer.iterations == 8 + 9  # 3 batches per epoch, going on across epochs


# ---------------------------------------------------------------- datasets and generators

class Batches(fz.utils.PyDataset):
    def __init__(self, x, y, batch_size=16, with_weights=False):
        super().__init__()
        self.x, self.y, self.batch_size, self.with_weights = x, y, batch_size, with_weights
        self.epochs_ended = 0
        self.seen = []

    def __len__(self):
        return -(-len(self.x) // self.batch_size)

    def __getitem__(self, i):
        self.seen.append(i)
        part = slice(i * self.batch_size, (i + 1) * self.batch_size)
        if self.with_weights:
            return self.x[part], self.y[part], np.ones(len(self.x[part]), np.float32)
        return self.x[part], self.y[part]

    def on_epoch_end(self):
        self.epochs_ended += 1


def test_fit_evaluate_predict_on_a_pydataset():
    x, y = blobs(n=80)
    model = small_model()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    data = Batches(x, y)
    history = model.fit(data, epochs=3, verbose=0)
    assert len(history.history["loss"]) == 3
    assert data.epochs_ended == 3
    assert sorted(data.seen[:5]) == list(range(5)) and data.seen[:5] != list(range(5))  # shuffled
    arrays = model.evaluate(x, y, batch_size=16, verbose=0)
    assert model.evaluate(Batches(x, y), verbose=0) == pytest.approx(arrays, rel=1e-6)
    assert model.evaluate(Batches(x, y, with_weights=True), verbose=0) == pytest.approx(arrays,
                                                                                      rel=1e-6)
    np.testing.assert_array_equal(model.predict(Batches(x, y), verbose=0),
                                  model.predict(x, verbose=0))
    with pytest.raises(ValueError, match="y and sample_weight come from its batches"):
        model.fit(data, y, verbose=0)


def test_fit_on_a_generator_with_steps_per_epoch():
    x, y = blobs(n=64)

    def batches():
        while True:
            for i in range(0, 64, 16):
                yield x[i:i + 16], y[i:i + 16]
    model = small_model()
    model.compile("sgd", "sparse_categorical_crossentropy")
    model.fit(batches(), steps_per_epoch=3, epochs=2, verbose=0)
    assert model.optimizer.iterations == 6
    assert isinstance(model.evaluate(batches(), steps=2, verbose=0), float)
    assert model.predict((xb for xb, _ in batches()), steps=2, verbose=0).shape == (32, 3)


def test_validation_data_as_a_dataset():
    x, y = blobs(n=64)
    model = small_model()
    model.compile("adam", "sparse_categorical_crossentropy")
    history = model.fit(x, y, validation_data=Batches(x, y), epochs=1, verbose=0)
    assert history.history["val_loss"][0] == pytest.approx(model.evaluate(x, y, verbose=0), rel=1e-5)


# ---------------------------------------------------------------- one batch at a time

def test_on_batch_methods_return_what_keras_returns():
    x, y = blobs(n=32)
    model = small_model()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    loss, accuracy = model.train_on_batch(x, y)
    assert np.isfinite(loss) and 0 <= accuracy <= 1
    assert set(model.train_on_batch(x, y, return_dict=True)) == {"loss", "accuracy"}
    assert model.test_on_batch(x, y) == pytest.approx(model.evaluate(x, y, batch_size=32, verbose=0))
    assert model.test_on_batch(x, y, return_dict=True)["loss"] == pytest.approx(
        model.evaluate(x, y, verbose=0, return_dict=True)["loss"])
    np.testing.assert_array_equal(model.predict_on_batch(x), model.predict(x, verbose=0))
    assert model.optimizer.iterations == 2
    model.compile("adam", "sparse_categorical_crossentropy")
    assert isinstance(model.train_on_batch(x, y), float)


def test_verbose_auto_is_a_progress_bar(capsys):
    x, y = blobs(n=32)
    model = small_model()
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, verbose="auto")
    assert "Epoch 1/1" in capsys.readouterr().out


# ---------------------------------------------------------------- integer inputs

class Lookup(L.Layer):
    """A table of vectors indexed by integer ids: (batch, n) int → (batch, n, dim).
    Its backward returns None for the ids (no gradient) and adds into the table's."""

    def __init__(self, rows, dim, **kwargs):
        super().__init__(**kwargs)
        self.rows, self.dim = rows, dim

    def build(self, input_shape):
        self.table = self.add_weight((self.rows, self.dim), "glorot_uniform", name="table")
        self.built = True

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.dim,)

    def forward(self, ids, training=False):
        assert ids.dtype == np.int32, ids.dtype  # integer inputs stay integer
        if not self.built:
            self.build(ids.shape)
        self.save(ids)
        return self.table[ids]

    def backward(self, dy):
        (ids,) = self.saved
        self.grads[0][...] = 0
        np.add.at(self.grads[0], ids.reshape(-1), dy.reshape(-1, self.dim))
        return None

    def get_config(self):
        return {"name": self.name, "rows": self.rows, "dim": self.dim}


def test_int32_inputs_stay_integer_through_every_entry_point(tmp_path):
    rng = np.random.default_rng(2)
    ids = rng.integers(0, 10, (40, 5))
    y = (ids[:, 0] > 4).astype(np.int64)
    fz.utils.set_random_seed(3)
    tokens = fz.Input((5,), dtype="int32")
    h = L.Flatten()(Lookup(10, 4)(tokens))
    model = fz.Model(tokens, L.Dense(2, activation="softmax")(h))
    model.compile(fz.optimizers.Adam(0.05), "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(ids, y, epochs=5, batch_size=8, verbose=0)
    assert history.history["accuracy"][-1] > 0.9
    model.evaluate(ids, y, verbose=0)
    model.train_on_batch(ids[:8], y[:8])
    model.test_on_batch(ids[:8], y[:8])
    assert model.predict(ids.astype(np.float64), verbose=0).shape == (40, 2)  # whole floats: fine
    with pytest.raises(ValueError, match="must hold whole numbers"):
        model.predict(ids + 0.5, verbose=0)
    model.save(tmp_path / "ids.safetensors")
    np.testing.assert_array_equal(fz.models.load_model(tmp_path / "ids.safetensors").predict(ids, verbose=0),
                                  model.predict(ids, verbose=0))


# ---------------------------------------------------------------- sequence targets

def sequence_model(vocab=7, softmax=False, seed=4):
    fz.utils.set_random_seed(seed)
    x = fz.Input((5, 3))
    h = L.Dense(6, activation="tanh")(x)
    return fz.Model(x, L.Dense(vocab, activation="softmax" if softmax else None)(h))


def sequence_data(seed=5, batch=4, time=5, vocab=7):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((batch, time, 3)).astype(np.float32),
            rng.integers(0, vocab, (batch, time)))


def test_sparse_crossentropy_on_batch_time_vocab_is_the_mean_over_tokens():
    x, labels = sequence_data()
    model = sequence_model()
    model.compile("sgd", fz.losses.SparseCategoricalCrossentropy(from_logits=True))
    logits = model.predict(x, verbose=0).astype(np.float64)
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    expected = -np.mean(np.take_along_axis(log_p, labels[..., None], -1))
    assert model.evaluate(x, labels, verbose=0) == pytest.approx(expected, rel=1e-5)


def test_sequence_step_against_pytorch_and_the_fused_softmax():
    torch = pytest.importorskip("torch")
    x, labels = sequence_data()
    logits_model = sequence_model()
    fused_model = sequence_model(softmax=True)
    fused_model.set_weights(logits_model.get_weights())
    w = [torch.tensor(a, dtype=torch.float64, requires_grad=True)
         for a in logits_model.get_weights()]
    out = torch.tanh(torch.tensor(x, dtype=torch.float64) @ w[0] + w[1]) @ w[2] + w[3]
    loss = torch.nn.functional.cross_entropy(out.reshape(-1, 7), torch.tensor(labels.reshape(-1)))
    loss.backward()  # the mean over every token
    expected = [a.detach().numpy() - 0.5 * a.grad.numpy() for a in w]
    logits_model.compile(fz.optimizers.SGD(0.5),
                         fz.losses.SparseCategoricalCrossentropy(from_logits=True))
    fused_model.compile(fz.optimizers.SGD(0.5), "sparse_categorical_crossentropy")
    for model in (logits_model, fused_model):
        model.train_on_batch(x, labels)
        for ours, theirs in zip(model.get_weights(), expected):
            np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)
    assert fused_model._output_losses[0].fused  # p − onehot on every token's row


# ---------------------------------------------------------------- callback hooks

class Recorder(fz.callbacks.Callback):
    HOOKS = [f"on_{kind}_{when}" for kind in ("train", "test", "predict")
             for when in ("begin", "end", "batch_begin", "batch_end")] + \
        ["on_epoch_begin", "on_epoch_end"]

    def __init__(self):
        self.calls = []
        for name in self.HOOKS:
            setattr(self, name, self._recording(name))

    def _recording(self, name):
        def hook(*args, logs=None):
            self.calls.append((name,) + tuple(a for a in args if isinstance(a, int)))
        return hook


def test_every_hook_fires_once_per_event_in_keras_order():
    x, y = blobs(n=40)
    model = small_model()
    model.compile("adam", "sparse_categorical_crossentropy")
    rec = Recorder()
    model.fit(x, y, batch_size=16, epochs=2, validation_split=0.25, verbose=0, callbacks=[rec])
    epoch = lambda e: [("on_epoch_begin", e), ("on_train_batch_begin", 0),  # noqa: E731
                       ("on_train_batch_end", 0), ("on_train_batch_begin", 1),
                       ("on_train_batch_end", 1), ("on_test_begin",), ("on_test_batch_begin", 0),
                       ("on_test_batch_end", 0), ("on_test_end",), ("on_epoch_end", e)]
    assert rec.calls == [("on_train_begin",)] + epoch(0) + epoch(1) + [("on_train_end",)]
    rec.calls.clear()
    model.evaluate(x, y, batch_size=32, verbose=0, callbacks=[rec])
    assert rec.calls == [("on_test_begin",), ("on_test_batch_begin", 0), ("on_test_batch_end", 0),
                         ("on_test_batch_begin", 1), ("on_test_batch_end", 1), ("on_test_end",)]
    rec.calls.clear()
    model.predict(x, batch_size=40, verbose=0, callbacks=[rec])
    assert rec.calls == [("on_predict_begin",), ("on_predict_batch_begin", 0),
                         ("on_predict_batch_end", 0), ("on_predict_end",)]


# ---------------------------------------------------------------- threads

def test_inference_from_many_threads_is_correct():
    """Was a defect: 30 of 60 concurrent predict calls returned another
    thread's results (shared per-layer buffers, GIL released in the kernels)."""
    fz.utils.set_random_seed(6)
    model = fz.Sequential([L.Dense(64, activation="relu"), L.Dense(64, activation="relu"),
                           L.Dense(10, activation="softmax")])
    rng = np.random.default_rng(7)
    data = [rng.standard_normal((int(n), 32)).astype(np.float32) for n in rng.integers(20, 200, 60)]
    expected = [model.predict(d, batch_size=64, verbose=0) for d in data]
    results, errors = [None] * len(data), []
    barrier = threading.Barrier(6)

    def work(k):
        try:
            barrier.wait(60)
            for i in range(k, len(data), 6):
                results[i] = model.predict(data[i], batch_size=64, verbose=0)
        except BaseException as e:  # noqa: B902 — reported below
            errors.append(e)
    threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    wrong = sum(not np.array_equal(r, e) for r, e in zip(results, expected))
    assert wrong == 0, f"{wrong} of {len(data)} concurrent predictions were wrong"


def test_training_one_model_from_two_threads_is_refused():
    x, y = blobs(n=64)
    model = small_model()
    model.compile("adam", "sparse_categorical_crossentropy")
    started, release = threading.Event(), threading.Event()

    class Hold(fz.callbacks.Callback):
        def on_train_begin(self, logs=None):
            started.set()
            release.wait(60)
    thread = threading.Thread(target=lambda: model.fit(x, y, epochs=1, verbose=0,
                                                       callbacks=[Hold()]))
    thread.start()
    try:
        assert started.wait(60)
        with pytest.raises(RuntimeError, match="is already being trained"):
            model.fit(x, y, epochs=1, verbose=0)
        with pytest.raises(RuntimeError, match="is already being trained"):
            model.train_on_batch(x, y)
        model.predict(x, verbose=0)  # inference meanwhile is fine
    finally:
        release.set()
        thread.join(60)
    model.fit(x, y, epochs=1, verbose=0)  # and training again afterwards


# ---------------------------------------------------------------- bounded memory

def rss_bytes():
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc")
def test_predict_memory_stays_flat_whatever_the_batch_sizes():
    """Was a defect: every new batch shape kept new buffers for ever (400
    lengths: +164 MB)."""
    fz.utils.set_random_seed(8)
    model = fz.Sequential([L.Dense(96, activation="relu"), L.Dense(96, activation="relu"),
                           L.Dense(10)])
    rng = np.random.default_rng(9)
    x = rng.standard_normal((800, 32)).astype(np.float32)
    sizes = rng.integers(1, 800, 1000)  # ~200 KB of buffers per new size: ~130 MB if kept
    threads = fz.get_num_threads()
    fz.set_num_threads(1)  # small GEMMs; quicker on a busy machine
    try:
        for n in sizes[:50]:  # warm up: allocator pools, first buffers
            model.predict(x[:n], batch_size=int(n), verbose=0)
        gc.collect()
        before = rss_bytes()
        for n in sizes:
            model.predict(x[:n], batch_size=int(n), verbose=0)
        gc.collect()
        grown = rss_bytes() - before
    finally:
        fz.set_num_threads(threads)
    assert grown < 20 * 2**20, f"RSS grew by {grown / 2**20:.1f} MB over 1,000 predict calls"


def test_next_token_training_on_random_windows():
    """The GPT recipe's plumbing: int32 token windows from fz.text.RandomWindows
    (an endless PyDataset), (batch, time, vocab) logits, (batch, time) labels."""
    vocab, T = 11, 8
    ids = np.tile(np.arange(vocab), 300)  # the next token is always (t + 1) mod 11
    train = fz.text.RandomWindows(ids, T, batch_size=16, seed=0)
    fz.utils.set_random_seed(16)
    tokens = fz.Input((T,), dtype="int32")
    logits = L.Dense(vocab)(Lookup(vocab, 16)(tokens))
    model = fz.Model(tokens, logits)
    model.compile(fz.optimizers.Adam(0.05),
                  fz.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    history = model.fit(train, epochs=3, steps_per_epoch=20, verbose=0)
    assert history.history["loss"][0] < np.log(vocab)
    assert history.history["loss"][-1] < 0.2 * np.log(vocab)
    assert train.epoch == 3  # on_epoch_end after every epoch
    val_loss, val_accuracy = model.evaluate(fz.text.RandomWindows(ids, T, 16, seed=1), steps=3,
                                            verbose=0)
    assert val_accuracy > 0.95
    with pytest.raises(ValueError, match="endless"):
        model.fit(train, epochs=1, verbose=0)


def test_class_weight_on_a_binary_output_weighs_by_the_label():
    """Keras: for one yes/no column the class is the rounded target (not an
    argmax over that single column, which would make every sample class 0)."""
    x, y = blobs(n=40, classes=2)
    labels = y.astype(np.float32)
    trained = []
    for weights in ({"class_weight": {0: 0.25, 1: 2.0}},
                    {"sample_weight": np.where(y == 1, 2.0, 0.25)}):
        fz.utils.set_random_seed(0)
        inp = fz.Input((6,))
        binary = fz.Model(inp, L.Dense(1, activation="sigmoid")(inp))
        binary.compile(fz.optimizers.SGD(0.5), "binary_crossentropy")
        binary.fit(x, labels, epochs=1, batch_size=40, shuffle=False, verbose=0, **weights)
        trained.append(binary.get_weights())
    for a, b in zip(*trained):
        np.testing.assert_array_equal(a, b)
