"""Callbacks: code that fit() calls at the start and end of training, of each
epoch and of each batch, as in Keras. History records the logs of every epoch."""


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
