"""Callbacks: code that fit() calls at the start and end of training, of each
epoch and of each batch, as in Keras 3 (same names, arguments and defaults).

fit() calls, for every callback in ``callbacks=[...]`` and then its History:

    set_model(model)                      before anything else
    on_train_begin()
      on_epoch_begin(epoch)               epoch counts from 0
        on_train_batch_end(batch, logs)   logs = {"loss": running mean loss of the epoch}
      on_epoch_end(epoch, logs)           logs = {"loss", metrics..., "val_loss", "val_" metrics...}
    on_train_end()

A callback may change ``logs`` in on_epoch_end (ReduceLROnPlateau adds
"learning_rate"); History comes last, so it records the change. Setting
``self.model.stop_training = True`` ends training after the current batch.

Callbacks here:
    History              records the logs of every epoch
    EarlyStopping        stops when a monitored value has stopped improving
    ModelCheckpoint      saves the model every epoch, or only when it improves
    ReduceLROnPlateau    divides the learning rate when improvement stalls
    LearningRateScheduler  sets the learning rate from schedule(epoch, lr)
    TerminateOnNaN       stops as soon as the loss is NaN or infinite
"""

import math
import os
import sys
import warnings


class Callback:
    """Override any of these; ``self.model`` is set by fit(). Setting
    ``self.model.stop_training = True`` ends training after the current batch."""

    model = None

    def set_model(self, model):
        self.model = model

    def on_train_begin(self, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        pass

    def on_train_batch_end(self, batch, logs=None):
        pass


class History(Callback):
    """``history.history`` maps "loss", "accuracy", "val_loss", ... to one value per epoch."""

    def __init__(self):
        self.history = {}
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)


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
    The rate in use is written into the epoch logs as "learning_rate".
    """

    def __init__(self, schedule, verbose=0):
        self.schedule = schedule
        self.verbose = verbose

    def on_epoch_begin(self, epoch, logs=None):
        lr = self.schedule(epoch, float(self.model.optimizer.learning_rate))
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
            raise ValueError(f"LearningRateScheduler: schedule({epoch}, lr) must return a positive "
                             f"finite number, got {lr!r}")
        self.model.optimizer.learning_rate = float(lr)
        if self.verbose > 0:
            print(f"Epoch {epoch + 1}: LearningRateScheduler setting learning rate to {lr}.")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(self.model.optimizer.learning_rate)


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
