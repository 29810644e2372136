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
    path = tmp_path / "ckpt" / "model-{epoch:02d}-{loss:.2f}.safetensors"
    history = model.fit(x, y, epochs=2, verbose=0, callbacks=[callbacks.ModelCheckpoint(path)])
    saved = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    expected = [f"model-{e + 1:02d}-{loss:.2f}.safetensors" for e, loss in enumerate(history.history["loss"])]
    assert saved == expected
    restored = fz.load_model(tmp_path / "ckpt" / saved[-1])
    assert all(np.array_equal(a, b) for a, b in zip(restored.get_weights(), model.get_weights()))


def test_model_checkpoint_save_best_only(tmp_path):
    path = tmp_path / "best.safetensors"
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
        callbacks.ModelCheckpoint(tmp_path / "w.safetensors", monitor="loss", save_best_only=True,
                                  save_weights_only=True)])
    fresh = tiny_model()
    fresh.build((None, 4))
    fresh.load_weights(tmp_path / "w.safetensors")
    assert all(np.array_equal(a, b) for a, b in zip(fresh.get_weights(), model.get_weights()))


def test_model_checkpoint_unknown_log_key_in_path(tmp_path):
    with pytest.raises(KeyError, match="val_f1"):
        run(callbacks.ModelCheckpoint(str(tmp_path / "{val_f1}.safetensors")), [1.0])


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
    for bad in (None, -0.1, float("nan"), "0.1", np.array([0.1, 0.2])):
        callback = callbacks.LearningRateScheduler(lambda epoch, lr, bad=bad: bad)
        callback.set_model(model)
        with pytest.raises(ValueError, match="positive finite number"):
            callback.on_epoch_begin(0)


@pytest.mark.parametrize("kind", [np.float32, np.float64, np.array, int])
def test_learning_rate_scheduler_accepts_numpy_numbers(kind):
    # np.float32 was refused (issue 10): a schedule written with NumPy returns one.
    model = ScriptedModel(learning_rate=0.1)
    callback = callbacks.LearningRateScheduler(lambda epoch, lr: kind(1 if kind is int else lr * 0.5))
    callback.set_model(model)
    callback.on_epoch_begin(0)
    assert model.optimizer.learning_rate == pytest.approx(1.0 if kind is int else 0.05)
    assert type(model.optimizer.learning_rate) is float


def test_learning_rate_scheduler_of_the_epoch_alone():
    # Keras's older form, schedule(epoch)
    model = ScriptedModel(learning_rate=0.1)
    callback = callbacks.LearningRateScheduler(lambda epoch: 0.01 * (epoch + 1))
    callback.set_model(model)
    callback.on_epoch_begin(2)
    assert model.optimizer.learning_rate == pytest.approx(0.03)


def test_learning_rate_callbacks_refuse_an_optimizer_with_a_schedule():
    model = ScriptedModel()
    model.optimizer = fz.optimizers.SGD(fz.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5))
    for callback in (callbacks.LearningRateScheduler(lambda epoch, lr: lr),
                     callbacks.ReduceLROnPlateau()):
        callback.set_model(model)
        with pytest.raises(TypeError, match=f"{type(callback).__name__} cannot .*(ExponentialDecay)"):
            callback.on_train_begin()


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


# ------------------------------------------------------------ the Callback protocol

from callback_order import (RecordingCallback, check_evaluate, check_fit,  # noqa: E402
                            check_predict, run_evaluate, run_fit, run_predict)


class FakeModel:
    stop_training = False


def test_callback_has_every_keras_hook_and_they_do_nothing():
    callback = callbacks.Callback()
    for hook in callbacks.HOOKS:
        method = getattr(callback, hook)
        if "batch" in hook or "epoch" in hook:
            assert method(0, {}) is None
        else:
            assert method({}) is None
    assert callback.params is None and callback.model is None
    callback.set_params({"epochs": 2})
    assert callback.params == {"epochs": 2}


def test_older_batch_hook_names_still_fire():
    """A callback written for on_batch_begin / on_batch_end (Keras 2) runs in a
    training loop that calls on_train_batch_*, as in Keras 3."""
    class Legacy(callbacks.Callback):
        def __init__(self):
            self.seen = []

        def on_batch_begin(self, batch, logs=None):
            self.seen.append(("begin", batch))

        def on_batch_end(self, batch, logs=None):
            self.seen.append(("end", batch, logs["loss"]))

    legacy = Legacy()
    run_fit(callbacks.CallbackList([legacy], model=FakeModel()), epochs=1, steps=2)
    assert legacy.seen == [("begin", 0), ("end", 0, 1.0), ("begin", 1), ("end", 1, 0.5)]


def test_recorder_and_checker_on_the_reference_driver():
    recorder = RecordingCallback()
    model = FakeModel()
    cbs = callbacks.CallbackList([recorder], add_history=True, model=model, verbose=0, epochs=3,
                                 steps=2)
    run_fit(cbs, epochs=3, steps=2, validation_steps=1, initial_epoch=1)
    seen = check_fit(recorder.events, epochs=[1, 2], steps=2, validation_steps=1)
    assert seen["epoch_logs"][0] == {"loss": 0.5, "val_loss": 1.0}
    assert recorder.params_seen == {"verbose": 0, "epochs": 3, "steps": 2}
    assert recorder.model is model and model.history.epoch == [1, 2]

    recorder.events.clear()
    run_evaluate(cbs, steps=3)
    assert check_evaluate(recorder.events, steps=3)["logs"] == {"loss": 1.0}
    recorder.events.clear()
    run_predict(cbs, steps=2)
    assert check_predict(recorder.events, steps=2)["batches"] == 2


@pytest.mark.parametrize("broken, message", [
    (lambda e: e.pop(2), "expected train_batch_begin|expected train_batch_end|expected epoch_end"),
    (lambda e: e.insert(3, e[2]), "expected train_batch_end"),
    (lambda e: e.pop(), "expected train_end"),
    (lambda e: e.append(e[-1]), "unexpected events"),
    (lambda e: e.__setitem__(0, e[1]), "expected train_begin"),
])
def test_checker_catches_a_broken_order(broken, message):
    recorder = RecordingCallback()
    run_fit(callbacks.CallbackList([recorder], model=FakeModel()), epochs=2, steps=2)
    check_fit(recorder.events, epochs=[0, 1], steps=2)
    broken(recorder.events)
    with pytest.raises(AssertionError, match=message):
        check_fit(recorder.events, epochs=[0, 1], steps=2)


def test_checker_catches_missing_or_unexpected_validation_and_counts():
    recorder = RecordingCallback()
    run_fit(callbacks.CallbackList([recorder], model=FakeModel()), epochs=2, steps=3)
    with pytest.raises(AssertionError, match="validation missing"):
        check_fit(recorder.events, epochs=[0, 1], steps=3, validation_steps=1)
    with pytest.raises(AssertionError, match="batches per epoch"):
        check_fit(recorder.events, epochs=[0, 1], steps=2)
    with pytest.raises(AssertionError, match="epochs"):
        check_fit(recorder.events, epochs=[0, 1, 2], steps=3)


def test_callback_list_calls_each_callback_in_order_with_the_same_logs():
    calls = []

    class Tagged(callbacks.Callback):
        def __init__(self, tag):
            self.tag = tag

        def on_epoch_end(self, epoch, logs=None):
            calls.append((self.tag, epoch, dict(logs)))
            logs[self.tag] = epoch  # the next callback sees it

    cbs = callbacks.CallbackList([Tagged("a"), [Tagged("b")]], add_history=True, model=FakeModel())
    logs = {"loss": 1.0}
    cbs.on_epoch_end(4, logs)
    assert calls == [("a", 4, {"loss": 1.0}), ("b", 4, {"loss": 1.0, "a": 4})]
    assert logs == {"loss": 1.0, "a": 4, "b": 4}
    assert cbs.model.history.history == {"loss": [1.0], "a": [4], "b": [4]}


def test_callback_list_adds_progbar_then_history_last_unless_given():
    user = RecordingCallback()
    cbs = callbacks.CallbackList([user], add_history=True, add_progbar=True)
    assert [type(c) for c in cbs] == [RecordingCallback, callbacks.ProgbarLogger, callbacks.History]
    late = RecordingCallback()
    cbs.append(late)
    assert [type(c) for c in cbs][-2:] == [callbacks.ProgbarLogger, callbacks.History]
    assert list(cbs)[1] is late

    history = callbacks.History()
    model = FakeModel()
    cbs = callbacks.CallbackList([history, user], add_history=True, model=model, epochs=1)
    assert len(cbs) == 2 and model.history is history
    assert history.params == {"epochs": 1} and user.params == {"epochs": 1}
    assert callbacks.CallbackList(None).callbacks == []


def test_callback_list_passes_model_and_params_to_appended_callbacks():
    model = FakeModel()
    cbs = callbacks.CallbackList([], model=model, verbose=2, epochs=3, steps=7)
    late = RecordingCallback()
    cbs.append(late)
    assert late.model is model and late.params == {"verbose": 2, "epochs": 3, "steps": 7}


def test_callback_list_refuses_what_is_not_a_callback():
    with pytest.raises(TypeError, match="Callback objects, got function.*LambdaCallback"):
        callbacks.CallbackList([lambda epoch, logs: None])
    with pytest.raises(TypeError, match="got int"):
        callbacks.CallbackList([]).append(3)


def test_history_params_and_model_history():
    model = FakeModel()
    cbs = callbacks.CallbackList(None, add_history=True, model=model, verbose="auto", epochs=2,
                                 steps=5)
    run_fit(cbs, epochs=2, steps=5)
    assert model.history.params == {"verbose": "auto", "epochs": 2, "steps": 5}
    assert model.history.epoch == [0, 1]
    assert model.history.history == {"loss": [1.0, 0.5]}


def test_stop_training_from_a_batch_ends_the_epoch_and_training():
    class Stop(callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 1:
                self.model.stop_training = True

    recorder = RecordingCallback()
    run_fit(callbacks.CallbackList([Stop(), recorder], model=FakeModel()), epochs=3, steps=4)
    seen = check_fit(recorder.events)
    assert seen["epochs"] == [0] and seen["batches"] == [2]


def test_fit_evaluate_predict_call_every_hook_in_keras_order():
    model = tiny_model()
    x, y = tiny_data(n=40)
    recorder = RecordingCallback()
    model.fit(x, y, epochs=2, batch_size=16, verbose=0, validation_split=0.2, callbacks=[recorder])
    seen = check_fit(recorder.events, epochs=[0, 1], steps=2, validation_steps=1)
    assert set(seen["epoch_logs"][0]) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert recorder.params_seen == {"verbose": 0, "epochs": 2, "steps": 2}
    assert model.history is not None and model.history.params == recorder.params_seen
    recorder.events.clear()
    model.evaluate(x, y, batch_size=16, verbose=0, callbacks=[recorder])
    check_evaluate(recorder.events, steps=3)
    recorder.events.clear()
    model.predict(x, batch_size=16, verbose=0, callbacks=[recorder])
    assert sum(len(o) for o in check_predict(recorder.events, steps=3)["outputs"]) == 40


# ------------------------------------------------------------ verbose and the progress bar

@pytest.mark.parametrize("given, resolved", [("auto", 1), (0, 0), (1, 1), (2, 2), (True, 1),
                                             (np.int64(2), 2)])
def test_resolve_verbose(given, resolved):
    assert callbacks.resolve_verbose(given) == resolved


@pytest.mark.parametrize("bad", [3, -1, "1", 1.0, None])
def test_resolve_verbose_refuses_anything_else(bad):
    with pytest.raises(ValueError, match="predict: verbose must be 0, 1, 2 or 'auto'"):
        callbacks.resolve_verbose(bad, "predict")


def progbar_run(verbose, kind="fit"):
    cbs = callbacks.CallbackList(None, add_progbar=True, model=FakeModel(), verbose=verbose,
                                 epochs=2, steps=3)
    if kind == "fit":
        run_fit(cbs, epochs=2, steps=3, validation_steps=2)
    elif kind == "evaluate":
        run_evaluate(cbs, steps=3, loss=0.25)
    else:
        run_predict(cbs, steps=3)


def test_progbar_verbose_1_shows_a_bar_per_epoch_with_the_logs(capsys):
    progbar_run(1)
    out = capsys.readouterr().out
    assert "Epoch 1/2" in out and "Epoch 2/2" in out and "3/3" in out
    # the epoch's logs, validation included, on the finished bar
    assert "loss: 1.0000 - val_loss: 2.0000" in out and "loss: 0.5000 - val_loss: 1.0000" in out
    assert "Evaluate" not in out  # validation inside fit is silent


def test_progbar_verbose_2_prints_one_line_per_epoch(capsys):
    progbar_run(2)
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["Epoch 1/2 - loss: 1.0000 - val_loss: 2.0000",
                     "Epoch 2/2 - loss: 0.5000 - val_loss: 1.0000"]


def test_progbar_evaluate_and_predict(capsys):
    progbar_run(1, "evaluate")
    out = capsys.readouterr().out
    assert "Evaluate" in out and out.rstrip().endswith("loss: 0.2500")
    progbar_run(2, "evaluate")
    assert capsys.readouterr().out == "loss: 0.2500\n"
    progbar_run(1, "predict")
    assert "Predict" in capsys.readouterr().out
    progbar_run(2, "predict")
    assert capsys.readouterr().out == ""


def test_progbar_after_fit_shows_evaluate_again(capsys):
    progbar = callbacks.ProgbarLogger()
    cbs = callbacks.CallbackList([progbar], model=FakeModel(), verbose=1, epochs=1, steps=1)
    run_fit(cbs, epochs=1, steps=1)
    run_evaluate(cbs, steps=1)
    assert "Evaluate" in capsys.readouterr().out


# ------------------------------------------------------------ CSVLogger, LambdaCallback

def test_csv_logger_writes_one_row_per_epoch(tmp_path):
    path = tmp_path / "log.csv"
    cbs = callbacks.CallbackList([callbacks.CSVLogger(path)], model=FakeModel())
    run_fit(cbs, epochs=2, steps=1, validation_steps=1)
    assert path.read_bytes() == (b"epoch,loss,val_loss\r\n"
                                 b"0,1.0,2.0\r\n"
                                 b"1,0.5,1.0\r\n")


def test_csv_logger_append_separator_missing_keys_and_arrays(tmp_path):
    path = tmp_path / "log.tsv"
    logger = callbacks.CSVLogger(str(path), separator="\t", append=True)
    logger.set_model(FakeModel())
    logger.on_train_begin()
    logger.on_epoch_end(0, {"loss": 0.5, "recall": np.array([0.25, 1.0])})
    logger.on_epoch_end(1, {"loss": 0.25})
    logger.on_train_end()
    logger.on_train_begin()  # continuing: rows are added, the header is not repeated
    logger.on_epoch_end(2, {"recall": [0.5, 0.5], "loss": 0.125})
    logger.on_train_end()
    assert path.read_text().splitlines() == ["epoch\tloss\trecall", "0\t0.5\t[0.25, 1.0]",
                                             "1\t0.25\tNA", "2\t0.125\t[0.5, 0.5]"]


def test_csv_logger_without_append_overwrites(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("old contents\n")
    logger = callbacks.CSVLogger(path)
    logger.on_train_begin()
    logger.on_epoch_end(0, {"loss": 2.0})
    logger.on_train_end()
    assert path.read_text().splitlines() == ["epoch,loss", "0,2.0"]


def test_csv_logger_in_fit(tmp_path):
    model = tiny_model()
    x, y = tiny_data()
    history = model.fit(x, y, epochs=2, verbose=0, validation_split=0.25,
                        callbacks=[callbacks.CSVLogger(tmp_path / "log.csv")])
    lines = (tmp_path / "log.csv").read_text().splitlines()
    assert lines[0] == "epoch,accuracy,loss,val_accuracy,val_loss"
    assert [float(v) for v in lines[2].split(",")[1:]] == [
        history.history[k][1] for k in ("accuracy", "loss", "val_accuracy", "val_loss")]


def test_lambda_callback_calls_its_functions_with_keras_arguments():
    seen = []
    lam = callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: seen.append(("epoch_begin", epoch)),
        on_epoch_end=lambda epoch, logs: seen.append(("epoch_end", epoch, logs["loss"])),
        on_train_begin=lambda logs: seen.append("train_begin"),
        on_train_end=lambda logs: seen.append("train_end"),
        on_train_batch_begin=lambda batch, logs: seen.append(("batch_begin", batch)),
        on_train_batch_end=lambda batch, logs: seen.append(("batch_end", batch)),
        on_test_end=lambda logs: seen.append(("test_end", logs["loss"])))
    run_fit(callbacks.CallbackList([lam], model=FakeModel()), epochs=1, steps=2, validation_steps=1)
    assert seen == ["train_begin", ("epoch_begin", 0), ("batch_begin", 0), ("batch_end", 0),
                    ("batch_begin", 1), ("batch_end", 1), ("test_end", 2.0),
                    ("epoch_end", 0, 1.0), "train_end"]
    # hooks not given stay no-ops
    assert lam.on_predict_begin({}) is None


def test_lambda_callback_refuses_unknown_hooks_and_non_functions():
    with pytest.raises(TypeError, match="unknown hook.*on_epoch_ends"):
        callbacks.LambdaCallback(on_epoch_ends=print)
    with pytest.raises(TypeError, match="on_epoch_end must be a function"):
        callbacks.LambdaCallback(on_epoch_end=3)


def test_lambda_callback_in_fit():
    losses = []
    model = tiny_model()
    x, y = tiny_data()
    model.fit(x, y, epochs=3, verbose=0, callbacks=[
        callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: losses.append(logs["loss"]))])
    assert len(losses) == 3 and losses[2] < losses[0]


def fit_two_batches(callbacks):
    """One epoch of two batches of a tiny model, with these callbacks."""
    model = fz.Sequential([fz.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    x, y = np.ones((4, 3), np.float32), np.array([0, 1, 0, 1])
    model.fit(x, y, batch_size=2, epochs=1, verbose=0, callbacks=callbacks)


def test_batch_end_logs_are_built_only_when_a_callback_reads_them():
    plain = fz.callbacks.CallbackList([], add_history=True)
    assert not plain.uses_train_batch_end()
    seen = []
    hook = fz.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: seen.append(logs))

    class OldName(fz.callbacks.Callback):
        def on_batch_end(self, batch, logs=None):
            seen.append(logs)

    assert fz.callbacks.CallbackList([hook]).uses_train_batch_end()
    assert fz.callbacks.CallbackList([OldName()]).uses_train_batch_end()
    fit_two_batches([hook, OldName()])
    assert len(seen) == 4 and all("loss" in logs for logs in seen)


def test_batch_begin_hooks_run_only_when_a_callback_has_one():
    assert not fz.callbacks.CallbackList([], add_history=True, add_progbar=True,
                                         epochs=1, steps=2).uses_train_batch_begin()
    seen = []
    hook = fz.callbacks.LambdaCallback(on_train_batch_begin=lambda batch, logs: seen.append(batch))

    class OldName(fz.callbacks.Callback):
        def on_batch_begin(self, batch, logs=None):
            seen.append(("old", batch))

    assert fz.callbacks.CallbackList([hook]).uses_train_batch_begin()
    assert fz.callbacks.CallbackList([OldName()]).uses_train_batch_begin()
    fit_two_batches([hook, OldName()])
    assert seen == [0, ("old", 0), 1, ("old", 1)]
