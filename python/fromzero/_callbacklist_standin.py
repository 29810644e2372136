"""TEMPORARY stand-in for fromzero.callbacks.CallbackList (helper "keras" is
writing the real one, with ProgbarLogger); deleted when that lands."""

import sys

from tqdm.auto import tqdm

from .callbacks import History


class _Progbar:
    def __init__(self, verbose, epochs, steps):
        self.verbose, self.epochs, self.steps, self.bar = verbose, epochs, steps, None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self.bar = tqdm(total=self.steps, desc=f"Epoch {epoch + 1}/{self.epochs}", unit="batch",
                        disable=self.verbose != 1, file=sys.stdout, mininterval=0.2, leave=True)

    def on_train_batch_end(self, batch, logs=None):
        self.bar.update(1)
        if batch % 25 == 0:
            self.bar.set_postfix_str(_fmt(logs), refresh=False)

    def on_epoch_end(self, epoch, logs=None):
        self.bar.set_postfix_str(_fmt(logs), refresh=True)
        self.bar.close()
        if self.verbose == 2:
            print(f"Epoch {epoch + 1}/{self.epochs} - {_fmt(logs)}")

    def on_test_end(self, logs=None):
        if self.bar is None and self.verbose == 1:
            print(_fmt(logs))


def _fmt(logs):
    import numpy as np
    return " - ".join(f"{k}: {v:.4f}" if np.ndim(v) == 0 else f"{k}: {v}" for k, v in (logs or {}).items())


class CallbackList:
    def __init__(self, callbacks=None, add_history=False, add_progbar=False, model=None, **params):
        self.callbacks = list(callbacks or [])
        if add_progbar:
            self.callbacks.append(_Progbar(params.get("verbose"), params.get("epochs"),
                                           params.get("steps")))
        if add_history:
            history = History()
            self.callbacks.append(history)
            model.history = history
        for cb in self.callbacks:
            if hasattr(cb, "set_model"):
                cb.set_model(model)

    def __getattr__(self, name):
        if not name.startswith("on_"):
            raise AttributeError(name)

        def call(*args, **kwargs):
            for cb in self.callbacks:
                hook = getattr(cb, name, None)
                if hook is not None:
                    hook(*args, **kwargs)
        return call
