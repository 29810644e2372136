"""Sequential: a stack of layers with Keras's compile / fit / evaluate / predict.

One training step (``_train_step``) is the whole textbook algorithm:

    1. forward:   y = layer_n(... layer_1(x))
    2. loss:      L = loss(y_true, y) and ∂L/∂y (for softmax + cross-entropy
                  directly ∂L/∂logits = (p − onehot) / batch)
    3. backward:  each layer, last to first, turns ∂L/∂output into
                  ∂L/∂input and fills its grads
    4. update:    θ ← optimizer step(θ, ∂L/∂θ) for every parameter

Every array a step touches is allocated once per batch shape and reused.
"""

import functools
import json
import lzma
import math
import numbers
import os
import struct
import sys
import tempfile
import zipfile
import zlib

import numpy as np
from tqdm.auto import tqdm

from . import _core, callbacks as callbacks_module, layers as layers_module, losses, metrics as metrics_module
from . import optimizers, utils

FORMAT_NAME = "fromzero.Sequential"
FORMAT_VERSION = 1


def _as_inputs(x, what="x"):
    """Any array-like of numbers as float32 C-contiguous (batch, ...), copied only if needed."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{what} must hold numbers, got dtype {arr.dtype}")
    if arr.ndim < 2:
        raise ValueError(f"{what} must have a batch axis and at least one feature axis, "
                         f"got shape {arr.shape}")
    if arr.size == 0:  # no samples, or samples with no features
        raise ValueError(f"{what} is empty (shape {arr.shape})")
    return np.ascontiguousarray(arr, dtype=np.float32)


def _with_own_generator(method):
    """Run `method` with the model's own generator as utils.generator() in
    this thread, so the random draws inside (weight initialisation, fit's
    shuffling, Dropout masks) depend on this model only (utils.set_random_seed)."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with utils.using_generator(self._generator()):
            return method(self, *args, **kwargs)
    return wrapper


def _batch_size(owner, value):
    """Keras's batch_size: None means 32."""
    return 32 if value is None else utils.check_positive_int(owner, "batch_size", value)


class Sequential:
    def __init__(self, layers=None, name=None):
        self.name = name or "sequential"
        self._layers = []
        self.optimizer = None
        self.loss = None
        self.metrics = []
        self.stop_training = False
        self.input_shape = None
        self._buffers = utils.Buffers()
        self._rng = None  # this model's generator, made on first need (_generator)
        for layer in layers or []:
            self.add(layer)

    # ------------------------------------------------------------ structure

    def add(self, layer):
        if not isinstance(layer, layers_module.Layer):
            raise TypeError(f"Sequential.add expects a fromzero layer, got {type(layer).__name__}")
        self._layers.append(layer)
        self.input_shape = None  # shapes are inferred again on next use

    @property
    def layers(self):
        return list(self._layers)

    def _generator(self):
        """This model's random generator, seeded by one draw from the global
        generator the first time the model needs it: at compile, or at build or
        fit if they come first (the rule is in utils.set_random_seed)."""
        if self._rng is None:
            self._rng = np.random.default_rng(utils.next_seed())
        return self._rng

    @_with_own_generator
    def build(self, input_shape):
        """Create every layer's weights for inputs of `input_shape` (no batch axis)."""
        if not self._layers:
            raise ValueError("the model has no layers: add some before using it")
        shape = tuple(int(d) for d in input_shape)
        for layer in self._layers:
            if not layer.built:
                layer.build(shape)
            shape = layer.output_shape(shape)
        self.input_shape = tuple(int(d) for d in input_shape)
        self._mark_input_grads_needed()

    def _mark_input_grads_needed(self):
        """Only a layer after one with trainable weights must pass ∂L/∂input back:
        backward stops at the first trainable layer, so frozen layers below it
        (layer.trainable = False) cost no gradient work at all."""
        needed = False
        for layer in self._layers:
            layer.input_grad_needed = needed
            needed = needed or (layer.trainable and bool(layer.params))

    def output_shape(self):
        shape = self.input_shape
        for layer in self._layers:
            shape = layer.output_shape(shape)
        return shape

    def _ensure_built(self, x):
        if self.input_shape is None:
            self.build(x.shape[1:])
        elif x.shape[1:] != self.input_shape and math.prod(x.shape[1:]) != math.prod(self.input_shape):
            raise ValueError(f"{self.name}: expected inputs of shape (batch, "
                             f"{', '.join(map(str, self.input_shape))}), got {x.shape}")

    # ------------------------------------------------------------ low level

    def forward(self, x, training=False):
        for layer in self._layers:
            x = layer.forward(x, training=training)
        return x

    def backward(self, dy):
        for layer in reversed(self._layers):
            if dy is None:
                break
            dy = layer.backward(dy)
        return dy

    @property
    def trainable_params(self):
        return [p for layer in self._layers if layer.trainable for p in layer.params]

    @property
    def trainable_grads(self):
        return [g for layer in self._layers if layer.trainable for g in layer.grads]

    # ------------------------------------------------------------ training

    def compile(self, optimizer="rmsprop", loss=None, metrics=None):
        if loss is None:
            raise ValueError("compile: a loss is required, e.g. loss='sparse_categorical_crossentropy'")
        self.optimizer = optimizers.get(optimizer)
        self.loss = losses.get(loss)
        self.metrics = [metrics_module.get(m) for m in (metrics or [])]
        self._generator()  # seeded now, in the compiling thread

    def _check_compiled(self, what):
        if self.loss is None:
            raise RuntimeError(f"{what}: the model must be compiled first: call model.compile("
                               f"optimizer='adam', loss='sparse_categorical_crossentropy')")

    def _fused_softmax(self):
        """Softmax output + cross-entropy on probabilities: train through ∂L/∂logits = p − t."""
        return self.loss.fuses_with_softmax and getattr(self._layers[-1], "outputs_softmax", False)

    def _regularization_loss(self):
        return sum(getattr(layer, "regularization_loss", lambda: 0.0)() for layer in self._layers)

    def _train_step(self, x, targets, fused, grads_and_params, regularized=False):
        """Forward, loss, backward, update for one batch. Returns (loss sum, predictions);
        with `regularized`, the sum includes the weight penalty (before the update)."""
        y = self.forward(x, training=True)
        row_loss = self._buffers.get("row_loss", (len(y),))
        grad = self._buffers.get("dy", y.shape)
        last = self._layers[-1]
        if fused:
            total = self.loss.value(y, targets, row_loss)
            dy = last.backward_from_logits(self.loss.softmax_gradient(y, targets, out=grad))
        else:
            total = self.loss.value_and_gradient(y, targets, row_loss, grad)
            dy = last.backward(grad)
        for layer in reversed(self._layers[:-1]):
            if dy is None:
                break
            dy = layer.backward(dy)
        if regularized:
            total += self._regularization_loss() * len(x)
        self.optimizer.apply_gradients(grads_and_params)
        return total, y

    def _prepare(self, x, y, what):
        """Inputs and targets as the kernels want them, after every check."""
        x = _as_inputs(x, f"{what}: x")
        if np.ndim(y) == 0 or len(y) != len(x):
            raise ValueError(f"{what}: x has {len(x)} samples but y has "
                             f"{'no length' if np.ndim(y) == 0 else len(y)}")
        self._ensure_built(x)
        out_shape = self.output_shape()
        if len(out_shape) != 1:
            raise ValueError(f"{what}: the model's output must be (batch, outputs), "
                             f"got (batch, {', '.join(map(str, out_shape))}); add a Flatten")
        return x, self.loss.prepare_targets(y, (len(x),) + tuple(out_shape))

    @_with_own_generator
    def fit(self, x, y, batch_size=32, epochs=1, verbose=1, validation_split=0.0,
            validation_data=None, shuffle=True, callbacks=None):
        """Train for `epochs` passes over (x, y) in shuffled minibatches; returns a History."""
        self._check_compiled("fit")
        batch_size = _batch_size("fit", batch_size)
        if isinstance(epochs, bool) or not isinstance(epochs, numbers.Integral) or epochs < 0:
            raise ValueError(f"fit: epochs must be a non-negative integer, got {epochs!r}")
        validation_split = utils.check_number("fit", "validation_split", validation_split, 0, 1,
                                              high_open=True)
        x, targets = self._prepare(x, y, "fit")
        val = None
        if validation_data is not None:
            if len(validation_data) != 2:
                raise ValueError("validation_data must be a tuple (x_val, y_val)")
            val = self._prepare(*validation_data, "fit: validation_data")
        elif validation_split > 0:
            # As Keras: the last fraction of the data, taken before shuffling.
            n_val = len(x) - math.floor(len(x) * (1.0 - validation_split))
            if n_val == 0 or n_val == len(x):
                raise ValueError(f"validation_split={validation_split} leaves no "
                                 f"{'validation' if n_val == 0 else 'training'} samples "
                                 f"out of {len(x)}")
            val = (x[-n_val:], targets[-n_val:])
            x, targets = x[:-n_val], targets[:-n_val]

        history = callbacks_module.History()
        user_callbacks = list(callbacks or [])
        callback_list = user_callbacks + [history]  # History last, as Keras: it sees their logs
        for cb in callback_list:
            cb.set_model(self)
        self._mark_input_grads_needed()  # `trainable` may have changed since build
        fused = self._fused_softmax()
        grads_and_params = list(zip(self.trainable_grads, self.trainable_params))
        regularized = any(getattr(layer, "kernel_regularizer", None) is not None
                          for layer in self._layers)
        n = len(x)
        steps = math.ceil(n / batch_size)
        self.stop_training = False
        for cb in callback_list:
            cb.on_train_begin()
        for epoch in range(epochs):
            for cb in callback_list:
                cb.on_epoch_begin(epoch)
            for m in self.metrics:
                m.reset_state()
            order = (_core.random_permutation(n, utils.next_seed()) if shuffle
                     else np.arange(n, dtype=np.int64))
            bar = tqdm(total=steps, desc=f"Epoch {epoch + 1}/{epochs}", unit="batch",
                       disable=verbose != 1, file=sys.stdout, mininterval=0.2, leave=True)
            loss_sum, seen = 0.0, 0
            for step in range(steps):
                index = order[step * batch_size:(step + 1) * batch_size]
                xb = _core.gather_rows(x, index, self._buffers.get("x", (len(index),) + x.shape[1:]))
                tb = _core.gather_rows(targets, index, self._buffers.get(
                    "t", (len(index),) + targets.shape[1:], targets.dtype))
                total, pred = self._train_step(xb, tb, fused, grads_and_params, regularized)
                if not math.isfinite(total):
                    # Keras's TerminateOnNaN: running on would only spread NaN into every weight.
                    print(f"Batch {step}: invalid loss {total}, terminating training", file=sys.stderr)
                    self.stop_training = True
                    loss_sum, seen = total, 1
                    break
                loss_sum += total
                seen += len(index)
                for m in self.metrics:
                    m.update_state(tb, pred)
                bar.update(1)
                if step % 25 == 0 or step == steps - 1:
                    bar.set_postfix_str(self._format_logs(loss_sum / seen), refresh=False)
                for cb in user_callbacks:
                    cb.on_train_batch_end(step, {"loss": loss_sum / seen})
                if self.stop_training:
                    break
            logs = {"loss": loss_sum / seen}
            logs.update({m.name: m.result() for m in self.metrics})
            if val is not None:
                val_logs = self._evaluate_prepared(*val, batch_size)
                logs.update({f"val_{k}": v for k, v in val_logs.items()})
            bar.set_postfix_str(_format(logs), refresh=True)
            bar.close()
            if verbose == 2:
                print(f"Epoch {epoch + 1}/{epochs} - {_format(logs)}")
            for cb in callback_list:
                cb.on_epoch_end(epoch, logs)
            if self.stop_training:
                break
        for cb in callback_list:
            cb.on_train_end()
        return history

    def _format_logs(self, loss):
        logs = {"loss": loss}
        logs.update({m.name: m.result() for m in self.metrics})
        return _format(logs)

    # ------------------------------------------------------------ inference

    def _evaluate_prepared(self, x, targets, batch_size, verbose=0):
        for m in self.metrics:
            m.reset_state()
        total = 0.0
        steps = range(0, len(x), batch_size)
        for start in tqdm(steps, desc="Evaluate", unit="batch", disable=verbose != 1,
                          file=sys.stdout, mininterval=0.2):
            xb, tb = x[start:start + batch_size], targets[start:start + batch_size]
            pred = self.forward(xb, training=False)
            total += self.loss.value(pred, tb, self._buffers.get("row_loss", (len(xb),)))
            for m in self.metrics:
                m.update_state(tb, pred)
        logs = {"loss": total / len(x) + self._regularization_loss()}
        logs.update({m.name: m.result() for m in self.metrics})
        return logs

    def evaluate(self, x, y, batch_size=32, verbose=1):
        """The mean loss on (x, y), or [loss, metric, ...] when metrics were compiled."""
        self._check_compiled("evaluate")
        batch_size = _batch_size("evaluate", batch_size)
        logs = self._evaluate_prepared(*self._prepare(x, y, "evaluate"), batch_size, verbose)
        if verbose == 1:
            print(_format(logs))
        values = list(logs.values())
        return values[0] if len(values) == 1 else values

    def predict(self, x, batch_size=32, verbose=0):
        """The model's outputs for x, a float32 array of shape (len(x), outputs...)."""
        batch_size = _batch_size("predict", batch_size)
        x = _as_inputs(x, "predict: x")
        self._ensure_built(x)
        out = np.empty((len(x),) + tuple(self.output_shape()), dtype=np.float32)
        for start in tqdm(range(0, len(x), batch_size), desc="Predict", unit="batch",
                          disable=verbose != 1, file=sys.stdout):
            out[start:start + batch_size] = self.forward(x[start:start + batch_size]).reshape(
                (-1,) + out.shape[1:])
        return out

    # ------------------------------------------------------------ weights, files

    def count_params(self):
        return sum(layer.count_params() for layer in self._layers)

    def get_weights(self):
        return [w for layer in self._layers for w in layer.get_weights()]

    def set_weights(self, weights):
        weights = list(weights)
        expected = sum(len(layer.weights) for layer in self._layers)
        if len(weights) != expected:
            raise ValueError(f"set_weights: the model has {expected} weight arrays, got {len(weights)}")
        i = 0
        for layer in self._layers:
            layer.set_weights(weights[i:i + len(layer.weights)])
            i += len(layer.weights)

    def summary(self, print_fn=print):
        rows = [("Layer (type)", "Output Shape", "Param #")]
        shape = self.input_shape
        for layer in self._layers:
            shape = layer.output_shape(shape) if shape is not None else None
            out = "?" if shape is None else str((None,) + tuple(shape))
            rows.append((f"{layer.name} ({type(layer).__name__})", out, f"{layer.count_params():,}"))
        widths = [max(len(r[i]) for r in rows) + 2 for i in range(3)]
        line = "─" * sum(widths)
        print_fn(f'Model: "{self.name}"')
        print_fn(line)
        for i, row in enumerate(rows):
            print_fn("".join(cell.ljust(w) for cell, w in zip(row, widths)))
            if i == 0:
                print_fn(line)
        print_fn(line)
        trainable = sum(p.size for l in self._layers if l.trainable for p in l.params)
        print_fn(f"Total params: {self.count_params():,}")
        print_fn(f"Trainable params: {trainable:,}")
        print_fn(f"Non-trainable params: {self.count_params() - trainable:,}")

    def get_config(self):
        return {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "input_shape": None if self.input_shape is None else list(self.input_shape),
            "layers": [{"class": type(l).__name__, "config": l.get_config(),
                        "trainable": l.trainable} for l in self._layers],
            "compile": None if self.loss is None else {
                "optimizer": self.optimizer.get_config(),
                "loss": self.loss.get_config(),
                "metrics": [m.name for m in self.metrics],
            },
        }

    def save(self, path):
        """Save architecture, compile settings and weights to one .npz file.

        The architecture is JSON inside the archive, the weights are plain
        arrays: loading never unpickles (so never runs code). The file is
        written beside `path` under a temporary name and renamed over it, so a
        crash mid-save leaves the old file intact.
        """
        arrays = {"config": np.array(json.dumps(self.get_config()))}
        arrays.update({f"weight_{i}": w for i, w in enumerate(self.get_weights())})
        _write_npz_atomically(path, arrays)

    def save_weights(self, path):
        """Save only the weights, as arrays weight_0, weight_1, ... in one .npz
        file (atomically, as save). Read them back with load_weights."""
        _write_npz_atomically(path, {f"weight_{i}": w for i, w in enumerate(self.get_weights())})

    def load_weights(self, path):
        """Set the weights from a file written by save_weights or save.

        The model must have the architecture the file was saved from: the
        number of weight arrays and every shape are checked before any weight
        changes. An unbuilt model is first built for the input shape stored by
        save (a save_weights file does not store it).
        """
        path = os.fspath(path)
        try:
            with _Checkpoint(path) as archive:
                config = archive.read_config() if archive.has("config") else {}
                if self.input_shape is None:
                    if config.get("input_shape") is None:
                        raise _LoadError(f"load_weights: build the model first (model.build("
                                         f"input_shape) or call it on data): {path} does not "
                                         f"store an input shape")
                    self.build(_check_input_shape(config["input_shape"]))
                weights = archive.read_weights(self)
        except _WeightMismatch as e:
            raise ValueError(f"load_weights: {e.describe(path)}") from None
        except _LoadError as e:
            raise ValueError(str(e)) from None
        except FileNotFoundError:
            raise
        except _ARCHIVE_ERRORS as e:
            raise ValueError(f"cannot load weights from {path}: {e}") from e
        self.set_weights(weights)


def _write_npz_atomically(path, arrays):
    """np.savez(path, **arrays), written beside `path` under a temporary name and
    renamed over it, so a crash mid-save leaves the old file intact."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".fromzero-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _format(logs):
    """'loss: 0.1234 - accuracy: 0.9876'; a per-class metric prints as an array."""
    return " - ".join(f"{k}: {v:.4f}" if np.ndim(v) == 0 else
                      f"{k}: {np.array2string(np.asarray(v), precision=4)}" for k, v in logs.items())


def load_model(path):
    """A Sequential saved by model.save(path), compiled again if it was compiled.

    The file is not trusted (see _Checkpoint): anything wrong with it — not a
    zip archive, truncated, another program's .npz, pickled objects, another
    format version, a malformed architecture, weights of the wrong shape — is
    a ValueError naming the file, raised before any array of the size the
    file claims is allocated. Nothing in it is ever unpickled.
    """
    path = os.fspath(path)
    try:
        with _Checkpoint(path) as archive:
            if not archive.has("config"):
                raise ValueError("no 'config' entry: not a fromzero model file")
            config = archive.read_config()
            if config.get("format") != FORMAT_NAME:
                raise ValueError("not a fromzero model file")
            version = config.get("format_version")
            if isinstance(version, bool) or version != FORMAT_VERSION:
                raise ValueError(f"format version {version!r} is not supported (this fromzero "
                                 f"reads {FORMAT_VERSION})")
            model = _model_from_config(config)
            try:
                weights = archive.read_weights(model)
            except _WeightMismatch as e:
                raise ValueError(f"weights do not fit the architecture: {e}") from None
            model.set_weights(weights)
            if config.get("compile"):
                c = _check_type(config["compile"], dict, "compile")
                model.compile(optimizers.from_config(_check_type(c.get("optimizer"), dict, "optimizer")),
                              losses.from_config(_check_type(c.get("loss"), dict, "loss")),
                              _check_type(c.get("metrics", []), list, "metrics"))
    except FileNotFoundError:
        raise
    except _ARCHIVE_ERRORS as e:
        raise ValueError(f"cannot load model from {path}: {e}") from e
    return model


class _LoadError(ValueError):
    """A load_weights / load_model error whose message is already complete."""


# What reading a damaged or foreign file can raise: zipfile's own errors
# (RuntimeError for an encrypted entry, NotImplementedError for an unknown
# compression method), those of the decompressors a zip entry may name
# (zlib, bz2 → OSError, lzma), the .npy header parser's, and — from a
# malformed architecture — the layer constructors' TypeError, KeyError, ...
# load_model and load_weights turn each into a ValueError naming the file.
_ARCHIVE_ERRORS = (OSError, ValueError, EOFError, KeyError, TypeError, AttributeError, IndexError,
                   RuntimeError, RecursionError, OverflowError, struct.error, zlib.error,
                   lzma.LZMAError, zipfile.BadZipFile)
_MAX_CONFIG_BYTES = 1 << 24  # a model's architecture is a few kilobytes of JSON


def _check_type(value, kind, what):
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ValueError(f"{what} must be a {kind.__name__} in the model's config, got {value!r}")
    return value


def _check_input_shape(shape):
    """The config's input_shape as a tuple of positive ints (no batch axis)."""
    ok = isinstance(shape, list) and len(shape) >= 1 and all(
        isinstance(d, int) and not isinstance(d, bool) and 1 <= d < 2**31 for d in shape)
    if not ok or math.prod(shape) >= 2**40:
        raise ValueError(f"input_shape must be a list of positive integers, got {shape!r}")
    return tuple(shape)


def _model_from_config(config):
    """An uncompiled Sequential, built when the config gives an input shape."""
    layers = []
    for entry in _check_type(config.get("layers"), list, "layers"):
        entry = _check_type(entry, dict, "each layer")
        cls = layers_module.LAYERS.get(entry.get("class"))
        if cls is None:
            raise ValueError(f"unknown layer {entry.get('class')!r}")
        layer = cls(**_check_type(entry.get("config", {}), dict, "a layer's config"))
        layer.trainable = bool(entry.get("trainable", True))
        layers.append(layer)
    name = config.get("name")
    model = Sequential(layers, name=None if name is None else str(name))
    if config.get("input_shape") is not None:
        input_shape = _check_input_shape(config["input_shape"])
        try:
            model.build(input_shape)
        except MemoryError as e:
            raise ValueError(f"the architecture it describes does not fit in memory: {e}") from None
    return model


class _Checkpoint:
    """A .npz file written by save / save_weights, read without trusting it.

    np.load alone would read a .npy file whole, at whatever size its header
    claims, try to unpickle anything else (refused with allow_pickle=False,
    but only after reading it), and allocate every entry at its header's size
    before reading the data. Here the file must be a zip archive, and every
    entry's .npy header is checked first: plain numbers (never Python objects,
    so nothing is unpickled), the shape the model expects, and exactly that
    many data bytes in the archive.
    """

    def __init__(self, path):
        self.path = path
        with open(path, "rb") as f:  # FileNotFoundError goes to the caller as is
            magic = f.read(4)
        if magic not in (b"PK\x03\x04", b"PK\x05\x06"):
            raise ValueError(f"not a .npz archive: a zip file starts with b'PK\\x03\\x04', "
                             f"this one with {magic!r}")
        self.zip = zipfile.ZipFile(path)
        # np.savez stores array `name` as the entry "name.npy".
        self.entries = {info.filename[:-4]: info for info in self.zip.infolist()
                        if info.filename.endswith(".npy")}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.zip.close()

    def has(self, name):
        return name in self.entries

    def read(self, name, shape=None, max_bytes=None):
        """Entry `name` as an array, its header checked before its data is read."""
        info = self.entries[name]
        with self.zip.open(info) as f:
            version = np.lib.format.read_magic(f)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                           (2, 0): np.lib.format.read_array_header_2_0}.get(version)
            if read_header is None:
                raise ValueError(f"entry {name!r} is in .npy format {version}, not 1.0 or 2.0")
            try:
                found, fortran, dtype = read_header(f)
            except Exception as e:  # noqa: BLE001 — NumPy's header parser raises
                # ValueError, but also tokenize.TokenError, SyntaxError, ... on a damaged header
                raise ValueError(f"entry {name!r} has a damaged .npy header ({e!r})") from e
            if dtype.hasobject or dtype.kind not in "biufU" or dtype.fields is not None:
                raise ValueError(f"entry {name!r} has dtype {dtype}: a checkpoint holds plain "
                                 f"numbers (Python objects would need unpickling)")
            if shape is not None and found != tuple(shape):
                raise _ShapeError(found)
            nbytes = math.prod(found) * dtype.itemsize
            if max_bytes is not None and nbytes > max_bytes:
                raise ValueError(f"entry {name!r} claims {nbytes} bytes, more than {max_bytes}")
            stored = info.file_size - f.tell()
            if stored != nbytes:
                raise ValueError(f"entry {name!r} has shape {found} and dtype {dtype}: "
                                 f"{nbytes} data bytes, but the archive stores {stored}")
            data = f.read(nbytes)
        if len(data) != nbytes:
            raise ValueError(f"entry {name!r} is truncated: {len(data)} of {nbytes} bytes")
        return np.frombuffer(data, dtype).reshape(found, order="F" if fortran else "C").copy()

    def read_config(self):
        """The architecture: the JSON string in the entry "config", as a dict."""
        try:
            config = self.read("config", shape=(), max_bytes=_MAX_CONFIG_BYTES)
        except _ShapeError as e:
            raise ValueError(f"the 'config' entry has shape {e.found}, not () (one JSON "
                             f"string)") from None
        if config.dtype.kind != "U":
            raise ValueError(f"the 'config' entry holds {config.dtype}, not a JSON string")
        config = json.loads(str(config))
        if not isinstance(config, dict):
            raise ValueError("not a fromzero model file: its config is not a JSON object")
        return config

    def read_weights(self, model):
        """The arrays weight_0, weight_1, ... for `model`, their count and each
        shape checked against the model's weights before the array is read."""
        params = [p for layer in model.layers for p in layer.weights]
        count = sum(name.startswith("weight_") for name in self.entries)
        if count != len(params):
            raise _WeightMismatch(None, count, len(params))
        weights = []
        for i, p in enumerate(params):
            if not self.has(f"weight_{i}"):
                raise ValueError(f"the weight arrays are not numbered 0 to {count - 1}: "
                                 f"no weight_{i}")
            try:
                w = self.read(f"weight_{i}", shape=p.shape)
            except _ShapeError as e:
                raise _WeightMismatch(i, e.found, p.shape) from None
            if w.dtype.kind not in "biuf":
                raise ValueError(f"weight {i} has dtype {w.dtype}, not a number type")
            weights.append(w)
        return weights


class _ShapeError(ValueError):
    """An entry's header shape is not the one asked for."""

    def __init__(self, found):
        super().__init__(f"shape {found}")
        self.found = found


class _WeightMismatch(ValueError):
    """The file's weights do not fit the model: their number (index None) or
    the shape of weight `index`."""

    def __init__(self, index, found, expected):
        self.index, self.found, self.expected = index, found, expected
        super().__init__(f"the file holds {found} weight arrays, the model has {expected}"
                         if index is None else
                         f"weight {index} must have shape {expected}, got {found}")

    def describe(self, path):
        """The message load_weights gives, naming the file."""
        if self.index is None:
            return f"{path} holds {self.found} weight arrays, the model has {self.expected}"
        return (f"weight {self.index} in {path} has shape {self.found}, "
                f"the model's has shape {self.expected}")
