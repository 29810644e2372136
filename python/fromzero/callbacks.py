"""Callbacks: code that fit(), evaluate() and predict() call at the start and
end of training, of each epoch and of each batch, as in Keras 3 (same names,
arguments, defaults and order).

fit() calls, through one CallbackList holding the user's callbacks, then the
progress bar (ProgbarLogger, unless verbose=0), then History:

    set_model(model), set_params({"verbose", "epochs", "steps"})   first
    on_train_begin()
      on_epoch_begin(epoch)                 epoch counts from 0 (from initial_epoch)
        on_train_batch_begin(batch)         batch counts from 0 in each epoch
        on_train_batch_end(batch, logs)     logs: the epoch's running "loss" and metrics
        ...
        on_test_begin()                     with validation data: the validation pass,
          on_test_batch_begin/end(batch, logs)   as evaluate() runs it
        on_test_end(logs)
      on_epoch_end(epoch, logs)             logs: "loss", metrics, "val_loss", "val_" metrics
    on_train_end(logs)                      logs: the last epoch's

evaluate() calls on_test_begin, on_test_batch_begin/end per batch, on_test_end(logs);
predict() calls on_predict_begin, on_predict_batch_begin/end(batch, {"outputs": ...}) per
batch, on_predict_end. A callback may change ``logs`` in on_epoch_end
(ReduceLROnPlateau adds "learning_rate"); History comes last, so it records the
change. Setting ``self.model.stop_training = True`` ends training after the
current batch.

Callbacks here:
    CallbackList         calls a hook on every callback of a list, in order
    History              records the logs of every epoch (model.history)
    ProgbarLogger        the progress bar (tqdm), or one line per epoch
    CSVLogger            writes the logs of every epoch to a CSV file
    LambdaCallback       a callback made of functions
    EarlyStopping        stops when a monitored value has stopped improving
    ModelCheckpoint      saves the model every epoch, or only when it improves
    ReduceLROnPlateau    divides the learning rate when improvement stalls
    LearningRateScheduler  sets the learning rate from schedule(epoch, lr)
    TerminateOnNaN       stops as soon as the loss is NaN or infinite
"""

import collections.abc
import csv
import inspect
import math
import numbers
import os
import sys
import warnings

import numpy as np
from tqdm.auto import tqdm


def resolve_verbose(verbose, owner="fit"):
    """Keras's `verbose` as 0 (silent), 1 (progress bar) or 2 (one line per
    epoch); "auto" is 1, as in Keras 3 for fit, evaluate and predict."""
    if verbose == "auto":
        return 1
    if isinstance(verbose, (bool, numbers.Integral)) and verbose in (0, 1, 2):
        return int(verbose)
    raise ValueError(f"{owner}: verbose must be 0, 1, 2 or 'auto', got {verbose!r}")


def format_logs(logs):
    """'loss: 0.1234 - accuracy: 0.9876'; a per-class metric prints as an array."""
    return " - ".join(f"{k}: {v:.4f}" if np.ndim(v) == 0 else
                      f"{k}: {np.array2string(np.asarray(v), precision=4)}" for k, v in logs.items())


class Callback:
    """The base class: override any hook. ``self.model`` is set by fit() (and
    evaluate/predict) through set_model, ``self.params`` ({"verbose",
    "epochs", "steps"}) through set_params. Setting
    ``self.model.stop_training = True`` ends training after the current batch.

    Every hook Keras 3 defines is here, doing nothing; on_train_batch_begin
    and on_train_batch_end also call the older names on_batch_begin and
    on_batch_end, so a callback written for those still runs, as in Keras."""

    model = None
    params = None
    #: True for a callback whose only effect is to write files or print (the
    #: progress bar, CSVLogger, ModelCheckpoint): in a fit with distribute=,
    #: rank 0 alone runs it (CallbackList(chief=False) leaves it out).
    chief_only = False

    def set_model(self, model):
        self.model = model

    def set_params(self, params):
        self.params = params

    def on_train_begin(self, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        pass

    def on_train_batch_begin(self, batch, logs=None):
        self.on_batch_begin(batch, logs=logs)

    def on_train_batch_end(self, batch, logs=None):
        self.on_batch_end(batch, logs=logs)

    def on_batch_begin(self, batch, logs=None):
        """The older name of on_train_batch_begin (called by it)."""

    def on_batch_end(self, batch, logs=None):
        """The older name of on_train_batch_end (called by it)."""

    def on_test_begin(self, logs=None):
        pass

    def on_test_end(self, logs=None):
        pass

    def on_test_batch_begin(self, batch, logs=None):
        pass

    def on_test_batch_end(self, batch, logs=None):
        pass

    def on_predict_begin(self, logs=None):
        pass

    def on_predict_end(self, logs=None):
        pass

    def on_predict_batch_begin(self, batch, logs=None):
        pass

    def on_predict_batch_end(self, batch, logs=None):
        pass


#: Every hook of Callback, in the order of a training run (for LambdaCallback and tests).
HOOKS = ("on_train_begin", "on_epoch_begin", "on_train_batch_begin", "on_train_batch_end",
         "on_batch_begin", "on_batch_end", "on_test_begin", "on_test_batch_begin",
         "on_test_batch_end", "on_test_end", "on_epoch_end", "on_train_end", "on_predict_begin",
         "on_predict_batch_begin", "on_predict_batch_end", "on_predict_end")


class CallbackList(Callback):
    """Calls a hook on every callback of a list, in order — what fit(),
    evaluate() and predict() hold, and what a hand-written training loop can
    use, as Keras 3's::

        callbacks = CallbackList([EarlyStopping()], add_history=True, model=model,
                                 verbose=1, epochs=5, steps=100)
        callbacks.on_train_begin()
        ...

    ``add_history`` / ``add_progbar`` add a History / ProgbarLogger when the
    list has none; they go after the given callbacks — the progress bar, then
    History last — so that both see what the others wrote into the logs.
    ``model`` goes to every callback's set_model (and the History becomes
    ``model.history``); ``**params`` to every set_params. ``chief=False``
    (the ranks other than 0 of a distributed fit) leaves out the callbacks
    that are ``chief_only`` and adds no progress bar.

    Hooks are called with Keras's arguments: (logs) for begin/end,
    (epoch, logs) for epochs, (batch, logs=logs) for batches. Every callback
    receives the same logs dict, so a change one makes is seen by the next.
    """

    def __init__(self, callbacks=None, add_history=False, add_progbar=False, model=None,
                 chief=True, **params):
        self.callbacks = []
        for callback in _flatten(callbacks):
            self._check(callback)
            if chief or not callback.chief_only:
                self.callbacks.append(callback)
        add_progbar = add_progbar and chief
        self._added = 0  # how many callbacks at the end this list added itself
        self._history = next((c for c in self.callbacks if isinstance(c, History)), None)
        self._progbar = next((c for c in self.callbacks if isinstance(c, ProgbarLogger)), None)
        if self._progbar is None and add_progbar:
            self._progbar = ProgbarLogger()
            self.callbacks.append(self._progbar)
            self._added += 1
        if self._history is None and add_history:
            self._history = History()
            self.callbacks.append(self._history)
            self._added += 1
        self.model = None
        self.params = {}
        self.set_model(model)
        self.set_params(params)

    @staticmethod
    def _check(callback):
        if not isinstance(callback, Callback):
            raise TypeError(f"callbacks must be fromzero.callbacks.Callback objects, got "
                            f"{type(callback).__name__} ({callback!r}); subclass Callback, or wrap "
                            f"functions in a LambdaCallback")

    def append(self, callback):
        """Add a callback before those the list added itself (the progress bar
        and History stay last), with the list's model and params."""
        self._check(callback)
        self.callbacks.insert(len(self.callbacks) - self._added, callback)
        if self.model is not None:
            callback.set_model(self.model)
        if self.params:
            callback.set_params(self.params)

    def set_model(self, model):
        if model is None:
            return
        self.model = model
        if self._history is not None:
            model.history = self._history
        for callback in self.callbacks:
            callback.set_model(model)

    def set_params(self, params):
        self.params = params
        if params:
            for callback in self.callbacks:
                callback.set_params(params)

    def uses_train_batch_begin(self):
        """Whether a callback does anything at the start of a training batch
        (on_train_batch_begin, or its older name on_batch_begin, other than
        Callback's). When none does, fit does not call the hook."""
        return self._overrides("on_train_batch_begin", "on_batch_begin")

    def uses_train_batch_end(self):
        """Whether a callback does anything at the end of a training batch
        (on_train_batch_end, or its older name on_batch_end, other than
        Callback's). When none does, fit neither builds the batch's logs nor
        calls the hook: the step costs less, and nothing can tell."""
        return self._overrides("on_train_batch_end", "on_batch_end")

    def _overrides(self, *hooks):
        """Whether any callback has its own version of one of these hooks."""
        if type(self) is not CallbackList:  # a subclass may do it itself
            return True
        return any(getattr(getattr(callback, hook), "__func__", None) is not getattr(Callback, hook)
                   for callback in self.callbacks for hook in hooks)

    def __iter__(self):
        return iter(self.callbacks)

    def __len__(self):
        return len(self.callbacks)

    def on_train_begin(self, logs=None):
        logs = {} if logs is None else logs
        for callback in self.callbacks:
            callback.on_train_begin(logs)

    def on_train_end(self, logs=None):
        logs = {} if logs is None else logs
        for callback in self.callbacks:
            callback.on_train_end(logs)

    def on_epoch_begin(self, epoch, logs=None):
        logs = {} if logs is None else logs
        for callback in self.callbacks:
            callback.on_epoch_begin(epoch, logs)

    def on_epoch_end(self, epoch, logs=None):
        logs = {} if logs is None else logs
        for callback in self.callbacks:
            callback.on_epoch_end(epoch, logs)

    def on_train_batch_begin(self, batch, logs=None):
        logs = {} if logs is None else logs
        for callback in self.callbacks:
            callback.on_train_batch_begin(batch, logs=logs)

    def on_train_batch_end(self, batch, logs=None):
        logs = {} if logs is None else logs
        for callback in self.callbacks:
            callback.on_train_batch_end(batch, logs=logs)

    def on_batch_begin(self, batch, logs=None):
        logs = {} if logs is None else logs
        for callback in self.callbacks:
            callback.on_batch_begin(batch, logs=logs)

    def on_batch_end(self, batch, logs=None):
        logs = {} if logs is None else logs
        for callback in self.callbacks:
            callback.on_batch_end(batch, logs=logs)

    def on_test_begin(self, logs=None):
        logs = {} if logs is None else logs
        for callback in self.callbacks:
            callback.on_test_begin(logs)

    def on_test_end(self, logs=None):
        logs = {} if logs is None else logs
        for callback in self.callbacks:
            callback.on_test_end(logs)

    def on_test_batch_begin(self, batch, logs=None):
        logs = {} if logs is None else logs
        for callback in self.callbacks:
            callback.on_test_batch_begin(batch, logs=logs)

    def on_test_batch_end(self, batch, logs=None):
        logs = {} if logs is None else logs
        for callback in self.callbacks:
            callback.on_test_batch_end(batch, logs=logs)

    def on_predict_begin(self, logs=None):
        logs = {} if logs is None else logs
        for callback in self.callbacks:
            callback.on_predict_begin(logs)

    def on_predict_end(self, logs=None):
        logs = {} if logs is None else logs
        for callback in self.callbacks:
            callback.on_predict_end(logs)

    def on_predict_batch_begin(self, batch, logs=None):
        logs = {} if logs is None else logs
        for callback in self.callbacks:
            callback.on_predict_batch_begin(batch, logs=logs)

    def on_predict_batch_end(self, batch, logs=None):
        logs = {} if logs is None else logs
        for callback in self.callbacks:
            callback.on_predict_batch_end(batch, logs=logs)


def _flatten(callbacks):
    """The callbacks of a (possibly nested) list, tuple or CallbackList, in order."""
    if callbacks is None:
        return []
    if isinstance(callbacks, Callback) and not isinstance(callbacks, CallbackList):
        return [callbacks]
    out = []
    for item in callbacks:
        out.extend(_flatten(item) if isinstance(item, (list, tuple, CallbackList)) else [item])
    return out


class History(Callback):
    """``history.history`` maps "loss", "accuracy", "val_loss", ... to one value
    per epoch; ``history.epoch`` lists the epochs; ``history.params`` is what
    fit was called with ({"verbose", "epochs", "steps"}). fit() returns it and
    makes it ``model.history``."""

    def __init__(self):
        self.history = {}
        self.epoch = []

    def on_train_begin(self, logs=None):
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)


class ProgbarLogger(Callback):
    """The progress display of fit, evaluate and predict, on tqdm.

    verbose (from set_params, as fit was called; "auto" is 1):
        1  a bar per epoch ("Epoch 3/5"), its postfix the running logs and, at
           the end of the epoch, the epoch's logs with validation
        2  one line per epoch: "Epoch 3/5 - loss: ... - val_loss: ..."
        0  nothing (fit does not even add the logger)
    Inside fit the validation pass is silent. evaluate shows an "Evaluate"
    bar then its logs; predict a "Predict" bar.
    """

    chief_only = True

    #: the postfix is refreshed every this many batches (and at the last one)
    postfix_every = 25

    def __init__(self):
        self.verbose = 1
        self.epochs = 1
        self.target = None
        self._bar = None
        self._seen = 0  # batches of the current bar done
        self._in_fit = False

    def set_params(self, params):
        super().set_params(params)
        self.verbose = resolve_verbose(params.get("verbose", 1), "ProgbarLogger")
        self.epochs = params.get("epochs", 1)
        self.target = params.get("steps")

    def _open(self, description):
        self._close()
        if self.verbose == 1:
            self._bar = tqdm(total=self.target, desc=description, unit="batch", file=sys.stdout,
                             mininterval=0.2, leave=True)
        self._seen = 0

    def _update(self, batch, logs=None):
        if self._bar is None:
            return
        self._bar.update(batch + 1 - self._seen)
        self._seen = batch + 1
        if logs and (batch % self.postfix_every == 0 or batch + 1 == self.target):
            self._bar.set_postfix_str(format_logs(logs), refresh=False)

    def _close(self, logs=None):
        if self._bar is not None:
            if logs:
                self._bar.set_postfix_str(format_logs(logs), refresh=True)
            self._bar.close()
            self._bar = None

    def on_train_begin(self, logs=None):
        self._in_fit = True

    def on_train_end(self, logs=None):
        self._close()
        self._in_fit = False

    def on_epoch_begin(self, epoch, logs=None):
        self._open(f"Epoch {epoch + 1}/{self.epochs}")

    def on_train_batch_end(self, batch, logs=None):
        self._update(batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._close(logs)
        if self.verbose == 2:
            print(f"Epoch {epoch + 1}/{self.epochs} - {format_logs(logs or {})}", file=sys.stdout)

    def on_test_begin(self, logs=None):
        if not self._in_fit:
            self._open("Evaluate")

    def on_test_batch_end(self, batch, logs=None):
        if not self._in_fit:
            self._update(batch)

    def on_test_end(self, logs=None):
        if not self._in_fit:
            self._close()
            if self.verbose in (1, 2):
                print(format_logs(logs or {}), file=sys.stdout)

    def on_predict_begin(self, logs=None):
        self._open("Predict")

    def on_predict_batch_end(self, batch, logs=None):
        self._update(batch)  # the outputs are not shown

    def on_predict_end(self, logs=None):
        self._close()


class CSVLogger(Callback):
    """Write the logs of every epoch to a CSV file, one row per epoch, as Keras 3.

    The first row names the columns: "epoch" (counted from 0), then the log
    keys in sorted order. ``append=True`` adds rows to an existing file
    (writing the header only if the file is empty), e.g. to continue a
    training run; otherwise the file is overwritten when training starts. A
    key missing from an epoch's logs is written "NA"; an array as "[a, b, c]".
    Rows are flushed as they are written, so the file can be read during training.
    """

    chief_only = True

    def __init__(self, filename, separator=",", append=False):
        self.filename = os.fspath(filename)
        self.sep = separator
        self.append = append
        self.keys = None
        self.writer = None
        self.csv_file = None
        self.append_header = True

    def on_train_begin(self, logs=None):
        self.append_header = True
        if self.append and os.path.exists(self.filename):
            with open(self.filename, encoding="utf-8") as f:
                self.append_header = not f.readline()
        self._close_file()
        self.csv_file = open(self.filename, "a" if self.append else "w", newline="",
                             encoding="utf-8")
        self.keys = None
        self.writer = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.keys is None:
            self.keys = sorted(logs)
            # validation metrics the model will report, even if this epoch had none
            for name in getattr(self.model, "metrics_names", []):
                if name.startswith("val_") and name not in self.keys:
                    self.keys.append(name)
        if self.writer is None:
            self.writer = csv.DictWriter(self.csv_file, fieldnames=["epoch"] + self.keys,
                                         delimiter=self.sep)
            if self.append_header:
                self.writer.writeheader()
        row = {"epoch": epoch}
        row.update((key, _csv_value(logs.get(key, "NA"))) for key in self.keys)
        self.writer.writerow(row)
        self.csv_file.flush()

    def on_train_end(self, logs=None):
        self._close_file()
        self.writer = None

    def _close_file(self):
        if self.csv_file is not None and not self.csv_file.closed:
            self.csv_file.close()


def _csv_value(value):
    if isinstance(value, str):
        return value
    if isinstance(value, collections.abc.Iterable) or np.ndim(value) > 0:
        return f"[{', '.join(map(str, np.ravel(value)))}]"
    return value


class LambdaCallback(Callback):
    """A callback made of functions, as Keras 3's::

        LambdaCallback(on_epoch_end=lambda epoch, logs: print(epoch, logs["loss"]))

    on_epoch_begin / on_epoch_end take (epoch, logs); on_train_begin /
    on_train_end take (logs); on_train_batch_begin / on_train_batch_end take
    (batch, logs). Any other hook of Callback can be given by its name as a
    keyword (on_test_end=..., on_predict_batch_end=...); an unknown name is
    an error rather than a function that would never be called.
    """

    def __init__(self, on_epoch_begin=None, on_epoch_end=None, on_train_begin=None,
                 on_train_end=None, on_train_batch_begin=None, on_train_batch_end=None, **kwargs):
        unknown = sorted(set(kwargs) - set(HOOKS))
        if unknown:
            raise TypeError(f"LambdaCallback: unknown hook(s) {', '.join(unknown)}; the hooks are "
                            f"{', '.join(HOOKS)}")
        functions = dict(kwargs, on_epoch_begin=on_epoch_begin, on_epoch_end=on_epoch_end,
                         on_train_begin=on_train_begin, on_train_end=on_train_end,
                         on_train_batch_begin=on_train_batch_begin,
                         on_train_batch_end=on_train_batch_end)
        for hook, function in functions.items():
            if function is None:
                continue
            if not callable(function):
                raise TypeError(f"LambdaCallback: {hook} must be a function, got {function!r}")
            setattr(self, hook, function)


class MonitorCallback(Callback):
    """The shared part of callbacks that watch one value of the epoch logs.

    ``monitor`` names the value ("val_loss", "accuracy", ...). ``mode`` says
    which way is better: "min", "max", or "auto" — a loss is better lower, a
    compiled metric better in its ``direction`` (all of fromzero's are "up").
    A value counts as an improvement on ``best`` only when it beats it by more
    than ``min_delta``:

        mode min:  current < best − min_delta        mode max:  current > best + min_delta
    """

    def __init__(self, monitor="val_loss", mode="auto", min_delta=0.0):
        if mode not in ("auto", "min", "max"):
            warnings.warn(f"{type(self).__name__} mode {mode!r} is unknown, fallback to auto mode.",
                          stacklevel=3)
            mode = "auto"
        self.monitor = monitor
        self.mode = mode
        self.min_delta = abs(min_delta)
        self.lower_is_better = None  # decided once the model (and its metrics) is known

    def _resolve_mode(self):
        if self.mode != "auto":
            self.lower_is_better = self.mode == "min"
            return
        name = self.monitor[len("val_"):] if self.monitor.startswith("val_") else self.monitor
        if name == "loss":
            self.lower_is_better = True
            return
        for metric in getattr(self.model, "metrics", []):
            if metric.name == name:
                self.lower_is_better = metric.direction != "up"
                return
        raise ValueError(f"{type(self).__name__} received monitor={self.monitor!r} but cannot tell "
                         f"whether it should be maximized or minimized: pass mode='max' to "
                         f"track its highest value or mode='min' for its lowest")

    def _worst(self):
        """The starting `best`: any value improves on it."""
        return math.inf if self.lower_is_better else -math.inf

    def _is_improvement(self, current, best):
        if self.lower_is_better:
            return current < best - self.min_delta
        return current > best + self.min_delta

    def _monitored_value(self, logs, consequence):
        """logs[monitor], or None with a warning (as Keras) when it is missing."""
        logs = logs or {}
        value = logs.get(self.monitor)
        if value is None:
            warnings.warn(f"{type(self).__name__}: {consequence} is conditioned on `{self.monitor}`, "
                          f"which is not available. Available metrics are: {', '.join(logs)}",
                          stacklevel=3)
        elif self.lower_is_better is None:
            self._resolve_mode()
        return value


class EarlyStopping(MonitorCallback):
    """Stop training when `monitor` has not improved for `patience` epochs.

    An epoch improves when its value beats the best so far by more than
    `min_delta` (MonitorCallback). After `patience` epochs without improvement
    fit() stops; epochs before `start_from_epoch` are a warm-up and not
    watched. With a `baseline`, an epoch must also beat the baseline to reset
    the patience. With `restore_best_weights=True` the model ends with the
    weights of its best epoch (as Keras 3, also when training was not stopped).
    """

    def __init__(self, monitor="val_loss", min_delta=0, patience=0, verbose=0, mode="auto",
                 baseline=None, restore_best_weights=False, start_from_epoch=0):
        super().__init__(monitor, mode, min_delta)
        self.patience = patience
        self.verbose = verbose
        self.baseline = baseline
        self.restore_best_weights = restore_best_weights
        self.start_from_epoch = start_from_epoch

    def on_train_begin(self, logs=None):
        self.wait = 0           # epochs since the last improvement
        self.stopped_epoch = 0  # the epoch at which training was stopped (0: not stopped)
        self.best = None
        self.best_epoch = 0
        self.best_weights = None

    def on_epoch_end(self, epoch, logs=None):
        current = self._monitored_value(logs, "early stopping")
        if current is None or epoch < self.start_from_epoch:
            return
        if self.best is None:
            self.best = self._worst()
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights, self.best_epoch = self.model.get_weights(), epoch
        self.wait += 1
        if self._is_improvement(current, self.best):
            self.best, self.best_epoch = current, epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose > 0:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                print(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)


class ModelCheckpoint(MonitorCallback):
    """Save the model at the end of every epoch with model.save (an atomic write).

    `filepath` may hold format fields: the epoch (counted from 1) and any log
    value, e.g. "ckpt-{epoch:02d}-{val_loss:.3f}.npz". With `save_best_only`
    a save happens only when `monitor` improved (MonitorCallback); when
    `monitor` is missing it warns and saves anyway, as Keras 3. With
    `save_weights_only` it calls model.save_weights instead.
    """

    chief_only = True

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False,
                 save_weights_only=False, mode="auto"):
        super().__init__(monitor, mode)
        self.filepath = os.fspath(filepath)
        self.verbose = verbose
        self.save_best_only = save_best_only
        self.save_weights_only = save_weights_only
        self.best = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        try:
            path = self.filepath.format(epoch=epoch + 1, **logs)
        except KeyError as e:
            raise KeyError(f"ModelCheckpoint: cannot format filepath {self.filepath!r}: "
                           f"no log value named {e}") from None
        if self.save_best_only and not self._improved(epoch, logs, path):
            return
        folder = os.path.dirname(path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        if self.verbose > 0:
            print(f"Epoch {epoch + 1}: saving model to {path}")
        if self.save_weights_only:
            self.model.save_weights(path)
        else:
            self.model.save(path)

    def _improved(self, epoch, logs, path):
        current = self._monitored_value(logs, "saving the best model")
        if current is None:
            return True
        best = self._worst() if self.best is None else self.best
        if self._is_improvement(current, best):
            if self.verbose > 0:
                print(f"Epoch {epoch + 1}: {self.monitor} improved from {best:.5f} to {current:.5f}")
            self.best = current
            return True
        if self.verbose > 0:
            print(f"Epoch {epoch + 1}: {self.monitor} did not improve from {best:.5f}")
        return False


class ReduceLROnPlateau(MonitorCallback):
    """Multiply the learning rate by `factor` when `monitor` stalls:

        after `patience` epochs without improvement by more than min_delta:
            lr ← max(lr · factor, min_lr)
        then wait `cooldown` epochs before counting epochs without improvement again.

    Every epoch it writes the current rate into the logs as "learning_rate",
    so History records it.
    """

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0, mode="auto",
                 min_delta=1e-4, cooldown=0, min_lr=0.0):
        if factor >= 1.0:
            raise ValueError(f"ReduceLROnPlateau does not support a factor >= 1.0, got {factor}")
        super().__init__(monitor, mode, min_delta)
        self.factor = factor
        self.patience = patience
        self.verbose = verbose
        self.cooldown = cooldown
        self.min_lr = min_lr

    def on_train_begin(self, logs=None):
        _refuse_schedule(self, "reduce")
        self.wait = 0              # epochs without improvement, outside cooldown
        self.cooldown_counter = 0  # epochs of cooldown left
        self.best = None

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            logs = {}
        logs["learning_rate"] = float(self.model.optimizer.learning_rate)
        current = self._monitored_value(logs, "learning rate reduction")
        if current is None:
            return
        if self.best is None:
            self.best = self._worst()
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._is_improvement(current, self.best):
            self.best = current
            self.wait = 0
            return
        if self.cooldown_counter > 0:
            return
        self.wait += 1
        old_lr = float(self.model.optimizer.learning_rate)
        if self.wait >= self.patience and old_lr > self.min_lr:
            new_lr = max(old_lr * self.factor, self.min_lr)
            self.model.optimizer.learning_rate = new_lr
            if self.verbose > 0:
                print(f"Epoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {new_lr}.")
            self.cooldown_counter = self.cooldown
            self.wait = 0


class LearningRateScheduler(Callback):
    """At the start of every epoch: optimizer.learning_rate = schedule(epoch, current rate).

    epoch counts from 0. For example, halve the rate every 10 epochs with
    ``LearningRateScheduler(lambda epoch, lr: lr * 0.5 if epoch and epoch % 10 == 0 else lr)``.
    A schedule of the epoch alone, ``schedule(epoch)``, works too (Keras's
    older form). The rate in use is written into the epoch logs as "learning_rate".
    To change the rate at every step rather than every epoch, give the
    optimizer a schedule instead (fromzero.optimizers.schedules).
    """

    def __init__(self, schedule, verbose=0):
        self.schedule = schedule
        self.verbose = verbose
        self._takes_lr = _positional_count(schedule) != 1

    def on_train_begin(self, logs=None):
        _refuse_schedule(self, "set")

    def on_epoch_begin(self, epoch, logs=None):
        current = float(self.model.optimizer.learning_rate)
        lr = self.schedule(epoch, current) if self._takes_lr else self.schedule(epoch)
        # Any real number: Python's, NumPy's (np.float32 too), a 0-d array.
        if isinstance(lr, np.ndarray) and lr.ndim == 0:
            lr = lr.item()
        if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not math.isfinite(lr) or lr <= 0:
            raise ValueError(f"LearningRateScheduler: schedule({epoch}, lr) must return a positive "
                             f"finite number, got {lr!r}")
        self.model.optimizer.learning_rate = float(lr)
        if self.verbose > 0:
            print(f"Epoch {epoch + 1}: LearningRateScheduler setting learning rate to {float(lr)}.")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(self.model.optimizer.learning_rate)


def _positional_count(function):
    """How many positional arguments `function` takes (None: cannot tell, or any number)."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_POSITIONAL for p in parameters):
        return None
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in parameters)


def _refuse_schedule(callback, verb):
    """A callback that sets the learning rate cannot work over a schedule: the
    optimizer's schedule decides the rate at every step. Said at the start of
    training, not after epochs of work."""
    schedule = getattr(callback.model.optimizer, "learning_rate_schedule", None)
    if schedule is not None:
        raise TypeError(f"{type(callback).__name__} cannot {verb} the learning rate of an optimizer "
                        f"created with a LearningRateSchedule ({type(schedule).__name__}): the "
                        f"schedule sets it at every step. Use one or the other.")


class TerminateOnNaN(Callback):
    """Stop training as soon as a batch's loss is NaN or infinite: from then on
    every weight the update touches would be NaN too.

    fit() already does this for every model, so passing it there changes
    nothing; it is for training loops written by hand, which call
    ``on_train_batch_end(batch, {"loss": loss})`` themselves."""

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            print(f"Batch {batch}: invalid loss {loss}, terminating training", file=sys.stderr)
            self.model.stop_training = True
