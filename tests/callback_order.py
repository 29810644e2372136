"""Checks that a training loop calls every callback hook in Keras 3's order.

For the tests of fit / evaluate / predict (and of any hand-written loop)::

    from callback_order import RecordingCallback, check_fit, check_evaluate, check_predict

    recorder = RecordingCallback()
    model.fit(x, y, epochs=2, batch_size=16, validation_split=0.25, callbacks=[recorder])
    check_fit(recorder.events, epochs=[0, 1], steps=3, validation_steps=1)

RecordingCallback overrides every hook of fromzero.callbacks.Callback and
records each call as an Event. check_fit / check_evaluate / check_predict
read the events as Keras 3's trainer emits them and fail with the position
and the event that broke the order; given the expected counts they also check
that every hook fired exactly once per event (an overridden hook that never
fires is a bug). They return what they saw, for further checks.

The order, from keras/src/backend/*/trainer.py:
    fit:       train_begin, then per epoch: epoch_begin(e),
               [train_batch_begin(b), train_batch_end(b, logs)] for b = 0, 1, ...,
               [the evaluate order below, for validation], epoch_end(e, logs),
               then train_end(logs)
    evaluate:  test_begin, [test_batch_begin(b), test_batch_end(b, logs)]..., test_end(logs)
    predict:   predict_begin, [predict_batch_begin(b), predict_batch_end(b, {"outputs"})]...,
               predict_end

run_fit / run_evaluate / run_predict drive a CallbackList in exactly that
order without a model: the reference a real loop is compared with.
"""

from dataclasses import dataclass, field

import numpy as np

from fromzero import callbacks

# The hooks a recorder overrides: all of them except the older aliases
# on_batch_begin / on_batch_end, which Callback's on_train_batch_* call.
RECORDED = [hook for hook in callbacks.HOOKS if hook not in ("on_batch_begin", "on_batch_end")]


@dataclass
class Event:
    hook: str          # "train_begin", "train_batch_end", ... (the hook without "on_")
    index: object      # the epoch or batch number, None for begin/end hooks
    logs: dict = field(default_factory=dict)  # a copy of the logs the hook received


def _recorder(hook):
    name = hook[len("on_"):]
    if hook.endswith(("_begin", "_end")) and ("batch" in hook or "epoch" in hook):
        def method(self, index, logs=None):
            self.events.append(Event(name, index, dict(logs or {})))
    else:
        def method(self, logs=None):
            self.events.append(Event(name, None, dict(logs or {})))
    method.__name__ = hook
    return method


class RecordingCallback(callbacks.Callback):
    """Records every hook call in `events`, and the params and model it was given."""

    def __init__(self):
        self.events = []

    def set_params(self, params):
        super().set_params(params)
        self.params_seen = dict(params)

    def names(self):
        return [e.hook for e in self.events]


for _hook in RECORDED:
    setattr(RecordingCallback, _hook, _recorder(_hook))


class _Reader:
    def __init__(self, events):
        self.events, self.i = list(events), 0

    def peek(self):
        return self.events[self.i].hook if self.i < len(self.events) else None

    def take(self, hook, index=None):
        assert self.i < len(self.events), f"expected {hook} after the last event"
        event = self.events[self.i]
        assert event.hook == hook, (f"event {self.i}: expected {hook}, got {event.hook}"
                                    f"({event.index}); events so far: "
                                    f"{[e.hook for e in self.events[:self.i + 1]]}")
        if index is not None:
            assert event.index == index, f"event {self.i}: {hook}({event.index}), expected {index}"
        self.i += 1
        return event

    def batches(self, kind):
        """[begin, end]* of `kind` ("train", "test", "predict"); the batch-end logs."""
        logs, b = [], 0
        while self.peek() == f"{kind}_batch_begin":
            self.take(f"{kind}_batch_begin", b)
            logs.append(self.take(f"{kind}_batch_end", b).logs)
            b += 1
        return logs

    def done(self):
        assert self.i == len(self.events), (f"unexpected events after the end: "
                                            f"{[e.hook for e in self.events[self.i:]]}")


def _evaluate_order(reader, steps, what):
    reader.take("test_begin")
    batch_logs = reader.batches("test")
    end = reader.take("test_end")
    if steps is not None:
        assert len(batch_logs) == steps, f"{what}: {len(batch_logs)} test batches, expected {steps}"
    for logs in batch_logs:
        assert "loss" in logs, f"{what}: test_batch_end logs lack 'loss': {logs}"
    assert "loss" in end.logs, f"{what}: test_end logs lack 'loss': {end.logs}"
    return {"batches": len(batch_logs), "batch_logs": batch_logs, "logs": end.logs}


def check_fit(events, epochs=None, steps=None, validation_steps=None):
    """The events of one fit() (from set_model on: begin/end hooks only).

    epochs: the expected epoch numbers, e.g. [0, 1] or range(2, 4) after
    initial_epoch=2; steps: batches per epoch; validation_steps: batches of
    each validation pass (None: no validation expected). Returns
    {"epochs": [...], "batches": [...], "epoch_logs": [...], "validation": [...]}."""
    reader = _Reader(events)
    reader.take("train_begin")
    seen = {"epochs": [], "batches": [], "epoch_logs": [], "batch_logs": [], "validation": []}
    while reader.peek() == "epoch_begin":
        epoch = reader.take("epoch_begin").index
        if seen["epochs"]:
            assert epoch == seen["epochs"][-1] + 1, f"epoch {epoch} follows {seen['epochs'][-1]}"
        batch_logs = reader.batches("train")
        for logs in batch_logs:
            assert "loss" in logs, f"epoch {epoch}: train_batch_end logs lack 'loss': {logs}"
        validation = None
        if reader.peek() == "test_begin":
            validation = _evaluate_order(reader, validation_steps, f"epoch {epoch} validation")
        end = reader.take("epoch_end", epoch)
        assert "loss" in end.logs, f"epoch {epoch}: epoch_end logs lack 'loss': {end.logs}"
        if validation is not None:
            for key in validation["logs"]:
                assert f"val_{key}" in end.logs, f"epoch {epoch}: epoch_end logs lack 'val_{key}'"
        seen["epochs"].append(epoch)
        seen["batches"].append(len(batch_logs))
        seen["batch_logs"].append(batch_logs)
        seen["epoch_logs"].append(end.logs)
        seen["validation"].append(validation)
    reader.take("train_end")
    reader.done()
    if epochs is not None:
        assert seen["epochs"] == list(epochs), f"epochs {seen['epochs']}, expected {list(epochs)}"
    if steps is not None:
        assert all(n == steps for n in seen["batches"]), f"batches per epoch {seen['batches']}, " \
                                                          f"expected {steps}"
    if epochs is not None:
        expected_validation = validation_steps is not None
        for epoch, validation in zip(seen["epochs"], seen["validation"]):
            assert (validation is not None) == expected_validation, \
                f"epoch {epoch}: validation {'missing' if expected_validation else 'unexpected'}"
    return seen


def check_evaluate(events, steps=None):
    """The events of one evaluate(). Returns {"batches", "batch_logs", "logs"}."""
    reader = _Reader(events)
    seen = _evaluate_order(reader, steps, "evaluate")
    reader.done()
    return seen


def check_predict(events, steps=None):
    """The events of one predict(). Returns {"batches", "outputs"}."""
    reader = _Reader(events)
    reader.take("predict_begin")
    batch_logs = reader.batches("predict")
    reader.take("predict_end")
    reader.done()
    for logs in batch_logs:
        assert set(logs) == {"outputs"}, f"predict_batch_end logs must be {{'outputs'}}: {logs}"
    if steps is not None:
        assert len(batch_logs) == steps, f"{len(batch_logs)} predict batches, expected {steps}"
    return {"batches": len(batch_logs), "outputs": [logs["outputs"] for logs in batch_logs]}


# ------------------------------------------------------------ the reference driver

def run_evaluate(callback_list, steps, loss=1.0):
    """evaluate()'s hook calls, as Keras 3's trainer makes them; returns the logs."""
    callback_list.on_test_begin()
    logs = {}
    for batch in range(steps):
        callback_list.on_test_batch_begin(batch)
        logs = {"loss": loss}
        callback_list.on_test_batch_end(batch, logs)
    callback_list.on_test_end(logs)
    return logs


def run_fit(callback_list, epochs, steps, validation_steps=None, initial_epoch=0, model=None):
    """fit()'s hook calls, as Keras 3's trainer makes them (validation through
    the same list, as Keras passes its CallbackList to evaluate). Stops early
    when model.stop_training is set."""
    model = model if model is not None else callback_list.model
    if model is not None:
        model.stop_training = False
    callback_list.on_train_begin()
    epoch_logs = {}
    for epoch in range(initial_epoch, epochs):
        callback_list.on_epoch_begin(epoch)
        for batch in range(steps):
            callback_list.on_train_batch_begin(batch)
            callback_list.on_train_batch_end(batch, {"loss": 1.0 / (epoch + batch + 1)})
            if model is not None and model.stop_training:
                break
        epoch_logs = {"loss": 1.0 / (epoch + 1)}
        if validation_steps is not None:
            val = run_evaluate(callback_list, validation_steps, loss=2.0 / (epoch + 1))
            epoch_logs.update({f"val_{k}": v for k, v in val.items()})
        callback_list.on_epoch_end(epoch, epoch_logs)
        if model is not None and model.stop_training:
            break
    callback_list.on_train_end(epoch_logs)


def run_predict(callback_list, steps):
    callback_list.on_predict_begin()
    for batch in range(steps):
        callback_list.on_predict_batch_begin(batch)
        callback_list.on_predict_batch_end(batch, {"outputs": np.full((2, 1), batch, np.float32)})
    callback_list.on_predict_end()
