"""Callbacks: Keras 3 behaviour on scripted logs, then inside fit()."""

import math

import numpy as np
import pytest

import fromzero as fz
from fromzero import callbacks


class ScriptedModel:
    """Just what callbacks touch: stop_training, metrics, an optimizer, and
    weights that record the epoch they were set in."""

    def __init__(self, learning_rate=0.1):
        self.stop_training = False
        self.metrics = [fz.metrics.Accuracy()]
        self.optimizer = fz.optimizers.SGD(learning_rate)
        self.weights = [np.array([-1.0])]

    def get_weights(self):
        return [w.copy() for w in self.weights]

    def set_weights(self, weights):
        self.weights = [np.array(w) for w in weights]


def run(callback, values, monitor="val_loss", model=None):
    """Drive `callback` through epochs whose logs hold `values` for `monitor`,
    as fit() would; returns (model, number of epochs run, the logs)."""
    model = model or ScriptedModel()
    callback.set_model(model)
    callback.on_train_begin()
    all_logs = []
    for epoch, value in enumerate(values):
        model.weights = [np.array([float(epoch)])]
        callback.on_epoch_begin(epoch)
        logs = {monitor: value}
        callback.on_epoch_end(epoch, logs)
        all_logs.append(logs)
        if model.stop_training:
            break
    callback.on_train_end()
    return model, len(all_logs), all_logs


def tiny_data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 4)).astype(np.float32)
    return x, (x[:, 0] > 0).astype(np.int64)


def tiny_model(learning_rate=0.05, metrics=("accuracy",)):
    fz.utils.set_random_seed(0)
    model = fz.Sequential([fz.layers.Dense(8, activation="relu"),
                           fz.layers.Dense(2, activation="softmax")])
    model.compile(fz.optimizers.SGD(learning_rate), "sparse_categorical_crossentropy", metrics=list(metrics))
    return model


# ------------------------------------------------------------ EarlyStopping

def test_early_stopping_waits_patience_epochs_after_the_best():
    _, epochs, _ = run(callbacks.EarlyStopping(patience=2), [1.0, 0.5, 0.6, 0.7, 0.4])
    assert epochs == 4  # best at epoch 1; epochs 2 and 3 without improvement


def test_early_stopping_min_delta_and_mode_max():
    # improvements smaller than min_delta do not count
    _, epochs, _ = run(callbacks.EarlyStopping(patience=1, min_delta=0.1), [1.0, 0.95, 0.9])
    assert epochs == 2
    # accuracy is a metric with direction "up": auto mode maximises it
    _, epochs, _ = run(callbacks.EarlyStopping(monitor="val_accuracy", patience=1),
                       [0.5, 0.6, 0.7, 0.6], monitor="val_accuracy")
    assert epochs == 4


def test_early_stopping_restores_best_weights():
    callback = callbacks.EarlyStopping(patience=1, restore_best_weights=True)
    model, epochs, _ = run(callback, [1.0, 0.3, 0.5, 0.2])
    assert epochs == 3 and callback.stopped_epoch == 2 and callback.best_epoch == 1
    assert model.weights[0][0] == 1.0  # the weights of epoch 1


def test_early_stopping_start_from_epoch():
    callback = callbacks.EarlyStopping(patience=0, start_from_epoch=3)
    run(callback, [1.0, 2.0, 3.0, 4.0, 5.0])
    assert callback.stopped_epoch == 4  # epochs 0-2 are warm-up; 3 sets the best, 4 stops


def test_early_stopping_baseline():
    values = [1.0, 0.9, 0.95, 0.97]
    _, epochs, _ = run(callbacks.EarlyStopping(patience=2), values)
    assert epochs == 4
    # Improving on the best but not on the baseline does not reset the patience.
    _, epochs, _ = run(callbacks.EarlyStopping(patience=2, baseline=0.1), values)
    assert epochs == 3


def test_missing_monitor_warns_and_goes_on():
    with pytest.warns(UserWarning, match="val_loss.*not available"):
        _, epochs, _ = run(callbacks.EarlyStopping(patience=0), [1.0, 1.0, 1.0], monitor="loss")
    assert epochs == 3


def test_auto_mode_needs_a_known_direction():
    with pytest.raises(ValueError, match="mode='max'"):
        run(callbacks.EarlyStopping(monitor="mystery"), [1.0], monitor="mystery")
    _, epochs, _ = run(callbacks.EarlyStopping(monitor="mystery", mode="max"), [1.0, 0.5],
                       monitor="mystery")
    assert epochs == 2


def test_early_stopping_in_fit():
    # A learning rate too small to move the loss by min_delta: no epoch improves on the first.
    model = tiny_model(learning_rate=1e-9)
    x, y = tiny_data()
    history = model.fit(x, y, epochs=10, verbose=0,
                        callbacks=[callbacks.EarlyStopping(monitor="loss", min_delta=0.01, patience=3)])
    assert len(history.history["loss"]) == 4  # as Keras's doctest: patience=3 runs 4 epochs


# ------------------------------------------------------------ ModelCheckpoint

def test_model_checkpoint_formats_path_and_saves_every_epoch(tmp_path):
    model = tiny_model()
    x, y = tiny_data()
    path = tmp_path / "ckpt" / "model-{epoch:02d}-{loss:.2f}.npz"
    history = model.fit(x, y, epochs=2, verbose=0, callbacks=[callbacks.ModelCheckpoint(path)])
    saved = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    expected = [f"model-{e + 1:02d}-{loss:.2f}.npz" for e, loss in enumerate(history.history["loss"])]
    assert saved == expected
    restored = fz.load_model(tmp_path / "ckpt" / saved[-1])
    assert all(np.array_equal(a, b) for a, b in zip(restored.get_weights(), model.get_weights()))


def test_model_checkpoint_save_best_only(tmp_path):
    path = tmp_path / "best.npz"
    saves = []

    class RecordingModel(ScriptedModel):
        def save(self, p):
            saves.append((p, self.weights[0][0]))

    run(callbacks.ModelCheckpoint(path, save_best_only=True), [1.0, 0.5, 0.7, 0.4],
        model=RecordingModel())
    assert saves == [(str(path), 0.0), (str(path), 1.0), (str(path), 3.0)]


def test_model_checkpoint_weights_only_round_trip(tmp_path):
    model = tiny_model()
    x, y = tiny_data()
    model.fit(x, y, epochs=1, verbose=0, callbacks=[
        callbacks.ModelCheckpoint(tmp_path / "w.npz", monitor="loss", save_best_only=True,
                                  save_weights_only=True)])
    fresh = tiny_model()
    fresh.build((None, 4))
    fresh.load_weights(tmp_path / "w.npz")
    assert all(np.array_equal(a, b) for a, b in zip(fresh.get_weights(), model.get_weights()))


def test_model_checkpoint_unknown_log_key_in_path(tmp_path):
    with pytest.raises(KeyError, match="val_f1"):
        run(callbacks.ModelCheckpoint(str(tmp_path / "{val_f1}.npz")), [1.0])


# ------------------------------------------------------------ learning rate

def test_reduce_lr_on_plateau_patience_cooldown_min_lr():
    callback = callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=2, cooldown=1,
                                           min_lr=0.03)
    model, _, logs = run(callback, [1.0] * 7, monitor="loss")
    # logged before the epoch's decision, as Keras
    assert [log["learning_rate"] for log in logs] == pytest.approx(
        [0.1, 0.1, 0.1, 0.05, 0.05, 0.03, 0.03])
    assert model.optimizer.learning_rate == pytest.approx(0.03)


def test_reduce_lr_on_plateau_rejects_factor_at_least_one():
    with pytest.raises(ValueError, match="factor"):
        callbacks.ReduceLROnPlateau(factor=1.0)


def test_learning_rate_in_history_from_fit():
    model = tiny_model(learning_rate=0.1)
    x, y = tiny_data()
    schedule = callbacks.LearningRateScheduler(lambda epoch, lr: 0.1 / (epoch + 1))
    history = model.fit(x, y, epochs=3, verbose=0, callbacks=[schedule])
    assert history.history["learning_rate"] == pytest.approx([0.1, 0.05, 0.1 / 3])
    assert model.optimizer.learning_rate == pytest.approx(0.1 / 3)

    plateau = callbacks.ReduceLROnPlateau(monitor="loss", min_delta=10.0, patience=1)
    history = model.fit(x, y, epochs=2, verbose=0, callbacks=[plateau])
    assert history.history["learning_rate"] == pytest.approx([0.1 / 3, 0.1 / 3])
    assert model.optimizer.learning_rate == pytest.approx(0.1 / 30)


def test_learning_rate_scheduler_checks_the_schedule():
    model = ScriptedModel()
    callback = callbacks.LearningRateScheduler(lambda epoch, lr: None)
    callback.set_model(model)
    with pytest.raises(ValueError, match="positive finite number"):
        callback.on_epoch_begin(0)


# ------------------------------------------------------------ TerminateOnNaN, protocol

def test_terminate_on_nan_by_hand(capsys):
    model = ScriptedModel()
    callback = callbacks.TerminateOnNaN()
    callback.set_model(model)
    callback.on_train_batch_end(0, {"loss": 0.5})
    assert not model.stop_training
    callback.on_train_batch_end(1, {"loss": math.inf})
    assert model.stop_training
    assert "Batch 1: invalid loss inf" in capsys.readouterr().err


def test_fit_stops_on_nan_with_or_without_terminate_on_nan():
    x, y = tiny_data()
    x[:] = np.nan
    for extra in ([], [callbacks.TerminateOnNaN()]):
        model = tiny_model()
        history = model.fit(x, y, epochs=3, batch_size=16, verbose=0, callbacks=extra)
        assert len(history.history["loss"]) == 1 and math.isnan(history.history["loss"][0])


def test_custom_callback_sees_model_batches_and_epochs():
    class Recorder(callbacks.Callback):
        def __init__(self):
            self.events = []

        def on_train_begin(self, logs=None):
            self.events.append(("train_begin", self.model))

        def on_epoch_begin(self, epoch, logs=None):
            self.events.append(("epoch_begin", epoch))

        def on_train_batch_end(self, batch, logs=None):
            self.events.append(("batch_end", batch, sorted(logs)))

        def on_epoch_end(self, epoch, logs=None):
            self.events.append(("epoch_end", epoch, sorted(logs)))

    model = tiny_model()
    x, y = tiny_data(n=40)
    recorder = Recorder()
    model.fit(x, y, epochs=2, batch_size=16, verbose=0, validation_split=0.2, callbacks=[recorder])
    assert recorder.events[0] == ("train_begin", model)
    epoch_logs = ["accuracy", "loss", "val_accuracy", "val_loss"]
    batch_logs = ["accuracy", "loss"]  # as Keras 3: the running loss and metrics of the epoch
    assert recorder.events[1:] == [("epoch_begin", 0), ("batch_end", 0, batch_logs),
                                   ("batch_end", 1, batch_logs), ("epoch_end", 0, epoch_logs),
                                   ("epoch_begin", 1), ("batch_end", 0, batch_logs),
                                   ("batch_end", 1, batch_logs), ("epoch_end", 1, epoch_logs)]


def test_stop_training_from_a_batch_callback():
    class StopAfterFirstBatch(callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            self.model.stop_training = True

    model = tiny_model()
    x, y = tiny_data()
    history = model.fit(x, y, epochs=5, verbose=0, callbacks=[StopAfterFirstBatch()])
    assert len(history.history["loss"]) == 1
