"""Saving and loading models: architecture, compile settings, weights and
training state in one safetensors file.

safetensors (the format Hugging Face and PyTorch use for weights) is a JSON
header followed by the raw tensors; the header names each tensor with its
dtype, shape and byte range and holds string metadata. A fromzero file has

    tensors     every weight by name: dense_1/kernel, dense_1/bias, ...; then the
                optimizer's state arrays: optimizer/dense_1/kernel/momentum, ...
    metadata    "fromzero": one JSON object {"format": "fromzero.Model",
                "format_version": 3, "class": "Model" or "Sequential",
                "config": the architecture, "compile": the optimizer, losses and
                metrics, "weights": the weight names in model.weights order,
                "optimizer_state": {"iterations", "params", "slots"},
                "rng": the model's random generator state}
                "extras": JSON the caller stores beside the model (save(path, extras=...))

so any safetensors reader (safetensors.numpy.load_file, torch) gets the
weights by name, and load_model gets the model back ready to resume training
bit for bit. save_weights writes the weights alone ("format":
"fromzero.Weights").

The architecture of a graph model lists every layer once (its class, its
constructor arguments, trainable) and every node in the order the model runs
them: which layer, and the arguments of the call, where a tensor is written
{"tensor": [node, output]} — the output of an earlier node, so the file
cannot describe a cycle; non-tensor arguments (use_causal_mask=True, ...)
are stored as they are. A layer called at several nodes (shared weights)
appears once in "layers" and at each of its nodes; a nested model is a
layer whose config is a model's. Loading replays the calls on fz.Input
tensors: the same graph, then the weights.

Nothing in a file is trusted: nothing is unpickled or run, headers are
checked before any data is read (_SafetensorsFile), and writes are atomic.
The .npz files of fromzero's earlier formats (1 and 2) still load (_Checkpoint).
"""

import contextlib
import json
import lzma
import math
import os
import secrets
import struct
import zipfile
import zlib

import numpy as np
import safetensors
import safetensors.numpy

from . import graph, losses, models, optimizers, utils
from . import metrics as metrics_module
from .layers import base as layers_base
from .layers.core import Dense, Input, InputLayer
from .layers.reshaping import Flatten

FORMAT_NAME = "fromzero.Model"
WEIGHTS_FORMAT_NAME = "fromzero.Weights"
FORMAT_VERSION = 3  # 3: safetensors; 1 and 2 (.npz) are still read
_V1_NAME = "fromzero.Sequential"  # format version 1: a Sequential, Dense flattening its input


# ---------------------------------------------------------------- architecture

def _layer_entry(layer):
    return {"class": type(layer).__name__, "config": layer.get_config(),
            "trainable": bool(layer.trainable)}


def _layer_from_entry(entry):
    entry = _check_type(entry, dict, "each layer")
    cls = layers_base.get_class(entry.get("class"))
    layer = cls.from_config(_check_type(entry.get("config", {}), dict, "a layer's config"))
    if "trainable" in entry:  # not for the model itself: its setter would reset every layer's
        layer.trainable = bool(entry["trainable"])
    return layer


def _json_value(value, where):
    """A non-tensor call argument as JSON, or an error saying which."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_json_value(v, where) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _json_value(v, where) for k, v in value.items()}
    raise ValueError(f"cannot save {where}: {value!r} is not a number, string, list or dict")


def graph_config(model):
    """A functional model's architecture as JSON-serialisable values."""
    layers = model.layers  # inputs first, then every layer once, in run order
    layer_index = {id(layer): i for i, layer in enumerate(layers)}
    nodes = [t.node for t in model.inputs] + [step.node for step in model._steps]
    refs = {}
    for i, node in enumerate(nodes):
        for j, t in enumerate(node.outputs):
            refs[id(t)] = [i, j]

    def encode(value, where):
        if graph.is_symbolic(value):
            return {"tensor": refs[id(value)]}
        if isinstance(value, (list, tuple)):
            return [encode(v, where) for v in value]
        if isinstance(value, dict):
            return {k: encode(v, f"{where}[{k!r}]") for k, v in value.items()}
        return _json_value(value, where)

    return {
        "name": model.name,
        "layers": [_layer_entry(layer) for layer in layers],
        "nodes": [{"layer": layer_index[id(node.layer)],
                   "args": encode(list(node.args), f"the arguments of {node.layer.name}"),
                   "kwargs": encode(node.kwargs, f"the arguments of {node.layer.name}")}
                  for node in nodes],
        "inputs": encode(model._inputs_spec, "inputs"),
        "outputs": encode(model._outputs_spec, "outputs"),
    }


def model_from_graph_config(config):
    """The functional model a graph config describes (uncompiled, built)."""
    config = _check_type(config, dict, "a model's config")
    layers = [_layer_from_entry(e) for e in _check_type(config.get("layers"), list, "layers")]
    produced = []  # per node: its output tensors

    def decode(value):
        if isinstance(value, dict) and set(value) == {"tensor"}:
            ref = _check_type(value["tensor"], list, "a tensor reference")
            if len(ref) != 2 or not all(isinstance(i, int) and not isinstance(i, bool) for i in ref):
                raise ValueError(f"a tensor reference must be [node, output], got {ref!r}")
            node, out = ref
            if not 0 <= node < len(produced):
                raise ValueError(f"node {len(produced)} uses the output of node {node}, which "
                                 f"does not come before it: the graph has a cycle or is out of "
                                 f"order")
            if not 0 <= out < len(produced[node]):
                raise ValueError(f"node {node} has no output {out}")
            return produced[node][out]
        if isinstance(value, list):
            return [decode(v) for v in value]
        if isinstance(value, dict):
            return {k: decode(v) for k, v in value.items()}
        return value

    for entry in _check_type(config.get("nodes"), list, "nodes"):
        entry = _check_type(entry, dict, "each node")
        index = entry.get("layer")
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(layers):
            raise ValueError(f"a node names layer {index!r}: there are {len(layers)} layers")
        layer = layers[index]
        if isinstance(layer, InputLayer):
            produced.append([layer.output])
            continue
        args = decode(_check_type(entry.get("args", []), list, "a node's args"))
        kwargs = decode(_check_type(entry.get("kwargs", {}), dict, "a node's kwargs"))
        out = layer(*args, **kwargs)
        produced.append([out] if graph.is_symbolic(out) else list(out))
    name = config.get("name")
    return models.Model(decode(config.get("inputs")), decode(config.get("outputs")),
                        name=None if name is None else str(name))


def sequential_config(model):
    input_spec = None
    if model.built:
        t = model.inputs[0]
        input_spec = {"shape": list(t.shape[1:]), "dtype": t.dtype, "name": t.node.layer.name}
    elif model._input is not None:
        t = model._input
        input_spec = {"shape": list(t.shape[1:]), "dtype": t.dtype, "name": t.node.layer.name}
    return {"name": model.name, "layers": [_layer_entry(layer) for layer in model.layers],
            "input": input_spec}


def sequential_from_config(config):
    config = _check_type(config, dict, "a model's config")
    layers = [_layer_from_entry(e) for e in _check_type(config.get("layers"), list, "layers")]
    name = config.get("name")
    model = models.Sequential(name=None if name is None else str(name))
    spec = config.get("input")
    if spec is not None:
        spec = _check_type(spec, dict, "input")
        model.add(Input(shape=_check_input_shape(spec.get("shape"), free=True),
                        dtype=spec.get("dtype"), name=spec.get("name")))
    for layer in layers:
        model.add(layer)
    return model


def _sequential_from_v1(config):
    """A format-1 file's Sequential. Version 1 fed Dense the flattened
    sample whatever its shape; a Flatten before such a Dense says so now."""
    layers = [_layer_from_entry(e) for e in _check_type(config.get("layers"), list, "layers")]
    name = config.get("name")
    model = models.Sequential(name=None if name is None else str(name))
    shape = None
    if config.get("input_shape") is not None:
        shape = (None,) + _check_input_shape(config["input_shape"])
        model.add(Input(shape=shape[1:]))
    for layer in layers:
        if shape is not None and isinstance(layer, Dense) and len(shape) > 2:
            model.add(Flatten())
            shape = (None, math.prod(shape[1:]))
        if shape is not None:
            shape = layer.compute_output_shape(shape)
        model.add(layer)
    return model


def _model_from_file_config(config):
    if config.get("format") == _V1_NAME:
        version = config.get("format_version")
        if isinstance(version, bool) or version != 1:
            raise ValueError(f"format version {version!r} is not supported (this fromzero reads "
                             f"1 to {FORMAT_VERSION})")
        return _sequential_from_v1(config)
    if config.get("format") != FORMAT_NAME:
        raise ValueError("not a fromzero model file")
    version = config.get("format_version")
    if isinstance(version, bool) or version not in (2, FORMAT_VERSION):
        raise ValueError(f"format version {version!r} is not supported (this fromzero reads "
                         f"1 to {FORMAT_VERSION})")
    cls = config.get("class")
    if cls not in ("Model", "Sequential"):
        raise ValueError(f"unknown model class {cls!r}")
    return _layer_from_entry({"class": cls, "config": config.get("config")})


def _compile_config(model):
    """The optimizer, losses and metrics, each keyed by class with all its
    arguments ({"class", "config"}: utils.serialize), so each comes back as it was."""
    if model.loss is None:
        return None

    def loss_config(loss):
        return None if loss is None else utils.serialize(loss)
    if isinstance(model.loss, list):
        loss = [loss_config(l) for l in model.loss]
    elif isinstance(model.loss, dict):
        loss = {k: loss_config(l) for k, l in model.loss.items()}
    else:
        loss = loss_config(model.loss)
    if isinstance(model.loss, (list, dict)):
        metrics = {o.name: [utils.serialize(m) for m in o.metrics] for o in model._losses()}
    else:
        metrics = [utils.serialize(m) for m in model.metrics]
    return {"optimizer": model.optimizer.get_config(), "loss": loss,
            "loss_weights": model._compiled["loss_weights"], "metrics": metrics}


def _compile_from_config(model, c):
    c = _check_type(c, dict, "compile")
    loss = c.get("loss")

    def loss_from(config):
        return None if config is None else losses.from_config(_check_type(config, dict, "loss"))

    def is_one_loss(config):  # {"class", "config"}, or (format 1 and 2) {"name", ...}
        return set(config) == {"class", "config"} or "name" in config
    if isinstance(loss, list):
        loss = [loss_from(l) for l in loss]
    elif isinstance(loss, dict) and not is_one_loss(loss):
        loss = {k: loss_from(l) for k, l in loss.items()}
    else:
        loss = loss_from(loss)
    metrics = c.get("metrics", [])
    if isinstance(metrics, list):
        metrics = [metrics_module.deserialize(m) for m in metrics]
    elif isinstance(metrics, dict):
        metrics = {k: [metrics_module.deserialize(m) for m in _check_type(ms, list, "metrics")]
                   for k, ms in metrics.items()}
    else:
        raise ValueError(f"metrics must be a list or a dict in the model's config, got {metrics!r}")
    model.compile(optimizers.from_config(_check_type(c.get("optimizer"), dict, "optimizer")), loss,
                  loss_weights=c.get("loss_weights"), metrics=metrics or None)


def file_config(model):
    return {"format": FORMAT_NAME, "format_version": FORMAT_VERSION,
            "class": "Sequential" if isinstance(model, models.Sequential) else "Model",
            "config": model.get_config(), "compile": _compile_config(model)}


# ---------------------------------------------------------------- names

def named_weights(model):
    """(name, array) for every weight of the model, in model.weights order.

    A weight's name is its layer's and its own, as Keras names them:
    ``dense_1/kernel``, ``batch_normalization/moving_mean``; a model used as
    a layer adds its name in front (``encoder/dense/kernel``). These are the
    tensor names in a saved file.
    """
    named = []

    def visit(layer, prefix):
        inner = getattr(layer, "_unique_layers", None)
        if inner is not None:  # a model: its weights are its layers'
            for sub in inner():
                visit(sub, f"{prefix}{sub.name}/")
            return
        own = _own_weight_names(layer)
        for i, w in enumerate(layer.weights):
            named.append((prefix.rstrip("/") + "/" + own.get(_memory(w), f"weight_{i}"), w))

    for layer in model._unique_layers():
        visit(layer, f"{layer.name}/")
    seen = set()
    for name, _ in named:
        if name in seen:
            raise ValueError(f"cannot save {model.name}: two weights are both named {name!r} "
                             f"(give its layers distinct names)")
        seen.add(name)
    return named


def _memory(a):
    """Where a weight's values live: a view of it in another shape (a layer
    may show its weights reshaped, as MultiHeadAttention does) has the same."""
    return (a.__array_interface__["data"][0], a.size)


def _own_weight_names(layer):
    """{_memory(weight): its name} for the weights the layer made with
    add_weight, and those of its sublayers (as "<sublayer>/<name>")."""
    names = {_memory(w): name for w, name in getattr(layer, "_weight_names", [])}
    for sub in getattr(layer, "sublayers", None) or []:
        names.update({key: f"{sub.name}/{name}" for key, name in _own_weight_names(sub).items()})
    return names


def weights_to_save(model):
    """The weights save_weights writes, by name: the one place that decides
    which weights a weights file holds (every weight of the model)."""
    return dict(named_weights(model))


# ---------------------------------------------------------------- files

def save_model(model, path, extras=None):
    """Save architecture, compile settings, weights and training state to one
    safetensors file at `path` (whatever its extension).

    The tensors are the weights by name (``dense_1/kernel``), then the
    optimizer's state arrays (``optimizer/dense_1/kernel/momentum``). The
    metadata "fromzero" is one JSON object: the architecture and compile
    settings (as in get_config), the weight names in order, the optimizer's
    step count (which is also its schedule's position) and the model's random
    generator state — so training resumed from the file takes the steps,
    draws the dropout masks and shuffles the data exactly as if it had never
    stopped. `extras`, a dict of JSON values (a tokenizer's config, ...), is
    stored as the metadata "extras" and read back by load_extras(path).
    """
    named = named_weights(model)
    tensors = dict(named)
    header = file_config(model)
    header["weights"] = [name for name, _ in named]
    header["optimizer_state"] = _optimizer_state(model, named, tensors)
    rng = getattr(model, "_rng", None)
    header["rng"] = None if rng is None else rng.bit_generator.state
    _write_safetensors(path, tensors, header, extras)


def save_weights(model, path):
    """Only the weights (weights_to_save), by name, in a safetensors file
    (atomically, as save). Read them back with load_weights."""
    tensors = weights_to_save(model)
    header = {"format": WEIGHTS_FORMAT_NAME, "format_version": FORMAT_VERSION,
              "weights": list(tensors)}
    _write_safetensors(path, tensors, header, None)


def _optimizer_state(model, named, tensors):
    """The optimizer's step count and slot names; its state arrays go into
    `tensors` as optimizer/<weight name>/<slot name>."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        return None
    names = {utils.array_key(w): name for name, w in named}
    params = model.trainable_params
    state = optimizer.get_state(params)
    for p, arrays in zip(params, state["slots"]):
        for slot, array in zip(optimizer.slot_names, arrays):
            key = f"optimizer/{names[utils.array_key(p)]}/{slot}"
            if key in tensors:
                raise ValueError(f"cannot save {model.name}: the optimizer state {key!r} has the "
                                 f"name of a weight")
            tensors[key] = array
    return {"iterations": state["iterations"], "params": [names[utils.array_key(p)] for p in params],
            "slots": list(optimizer.slot_names)}


def _write_safetensors(path, tensors, header, extras):
    metadata = {"fromzero": json.dumps(header)}
    if extras is not None:
        if not isinstance(extras, dict):
            raise TypeError(f"extras must be a dict of JSON values, got {type(extras).__name__}")
        metadata["extras"] = json.dumps(_json_value(extras, "extras"))
    arrays = {name: np.ascontiguousarray(a) for name, a in tensors.items()}
    _write_atomically(path, safetensors.numpy.save(arrays, metadata=metadata))


def load_extras(path):
    """The `extras` dict model.save(path, extras=...) stored ({} if none)."""
    path = os.fspath(path)
    try:
        if _is_zip(path):
            return {}
        with _SafetensorsFile(path) as f:
            return f.extras()
    except FileNotFoundError:
        raise
    except _ARCHIVE_ERRORS as e:
        raise ValueError(f"cannot read extras from {path}: {e}") from e


def load_weights(model, path):
    """Set the model's weights from a file written by save_weights or save
    (or an .npz file of fromzero's earlier formats).

    The model must have the architecture the file was saved from: weights
    are matched in order, and their number and every shape are checked
    before any weight changes. An unbuilt Sequential is first built for the
    input shape a save stored (a save_weights file does not store it).
    """
    path = os.fspath(path)
    try:
        reader = _Checkpoint if _is_zip(path) else _SafetensorsFile
        with reader(path) as archive:
            if not model.built:
                config = archive.read_config() if archive.has("config") else {}
                shape = _stored_input_shape(config)
                if shape is None:
                    raise _LoadError(f"load_weights: build the model first (model.build(input_shape) "
                                     f"or call it on data): {path} does not store an input shape")
                model.build((None,) + shape)
            weights = archive.read_weights(model)
    except _WeightMismatch as e:
        raise ValueError(f"load_weights: {e.describe(path)}") from None
    except _LoadError as e:
        raise ValueError(str(e)) from None
    except FileNotFoundError:
        raise
    except _ARCHIVE_ERRORS as e:
        raise ValueError(f"cannot load weights from {path}: {e}") from e
    model.set_weights(weights)


def _stored_input_shape(config):
    """The sample shape a model file's config stores, if any (any format)."""
    if config.get("format") == _V1_NAME:
        shape = config.get("input_shape")
        return None if shape is None else _check_input_shape(shape)
    spec = (config.get("config") or {}).get("input") if config.get("class") == "Sequential" else None
    return None if not spec else _check_input_shape(spec.get("shape"), free=True)


def load_model(path):
    """The model saved by model.save(path), compiled again if it was
    compiled, with its optimizer state and random generator as they were.

    The file is not trusted: anything wrong with it — not a safetensors file
    (nor an .npz of fromzero's earlier formats), truncated, another program's
    file, another format version, a malformed architecture, weights or state
    of the wrong shape — is a ValueError naming the file, raised before any
    array of the size the file claims is allocated. Nothing in it is ever
    unpickled or run.
    """
    path = os.fspath(path)
    try:
        reader = _Checkpoint if _is_zip(path) else _SafetensorsFile
        with reader(path) as archive:
            if not archive.has("config"):
                raise ValueError(archive.why_not_a_model())
            config = archive.read_config()
            try:
                model = _model_from_file_config(config)
            except MemoryError as e:
                raise ValueError(f"the architecture it describes does not fit in memory: {e}") from None
            try:
                weights = archive.read_weights(model)
            except _WeightMismatch as e:
                raise ValueError(f"weights do not fit the architecture: {e}") from None
            model.set_weights(weights)
            if config.get("compile"):
                _compile_from_config(model, config["compile"])
                if config.get("optimizer_state") is not None and reader is _SafetensorsFile:
                    _restore_optimizer(model, config["optimizer_state"], archive)
            if config.get("rng") is not None:
                model._rng = _generator_from_state(config["rng"])
    except FileNotFoundError:
        raise
    except _ARCHIVE_ERRORS as e:
        raise ValueError(f"cannot load model from {path}: {e}") from e
    return model


def _restore_optimizer(model, saved, archive):
    saved = _check_type(saved, dict, "optimizer_state")
    optimizer = model.optimizer
    params = model.trainable_params
    by_key = {utils.array_key(w): name for name, w in named_weights(model)}
    names = [by_key.get(utils.array_key(p)) for p in params]
    if saved.get("params") != names:
        raise ValueError(f"the optimizer state is for the weights {saved.get('params')!r}, the "
                         f"model trains {names!r}")
    if saved.get("slots") != list(optimizer.slot_names):
        raise ValueError(f"the optimizer state holds {saved.get('slots')!r}, "
                         f"{type(optimizer).__name__} needs {list(optimizer.slot_names)!r}")
    slots = [[archive.read_tensor(f"optimizer/{name}/{slot}", p.shape)
              for slot in optimizer.slot_names] for name, p in zip(names, params)]
    optimizer.set_state({"iterations": saved.get("iterations"), "slots": slots}, params)


def _generator_from_state(state):
    """A NumPy generator in the state bit_generator.state gave (PCG64 only)."""
    state = _check_type(state, dict, "rng")
    if state.get("bit_generator") != "PCG64":
        raise ValueError(f"rng: expected a PCG64 generator state, got {state.get('bit_generator')!r}")
    generator = np.random.default_rng()
    generator.bit_generator.state = state  # checks every field (ValueError / TypeError)
    return generator


def _is_zip(path):
    """Whether `path` starts as a zip archive (fromzero's earlier .npz format)."""
    with open(path, "rb") as f:  # FileNotFoundError goes to the caller as is
        return f.read(4) in (b"PK\x03\x04", b"PK\x05\x06")


_TEMP_SUFFIX = ".fromzero-tmp"


def _write_atomically(path, data):
    """Write the bytes `data` to `path` atomically: into a temporary file
    beside it (mode 0666 less the umask, as any new file), flushed to disk,
    then renamed over `path`, so a crash mid-save leaves the old file intact.
    Any error removes the temporary file; one left by a process killed
    mid-save (SIGKILL cannot be caught) is removed by the next save to the
    same path."""
    path = os.fspath(path)
    folder, base = os.path.split(os.path.abspath(path))
    _remove_stale_temporaries(folder, base)
    tmp = os.path.join(folder, f".{base}.{os.getpid()}-{secrets.token_hex(4)}{_TEMP_SUFFIX}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    except OSError as e:
        raise type(e)(e.errno, f"cannot save to {path}: {e.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.errno is not None:
            raise type(e)(e.errno, f"cannot save to {path}: {e.strerror}") from None
        raise


def _remove_stale_temporaries(folder, base):
    """Remove .<base>.<pid>-<random>.fromzero-tmp files of processes that no longer run."""
    prefix = f".{base}."
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        if not (name.startswith(prefix) and name.endswith(_TEMP_SUFFIX)):
            continue
        pid = name[len(prefix):-len(_TEMP_SUFFIX)].split("-")[0]
        if not pid.isdigit() or int(pid) == os.getpid() or _process_runs(int(pid)):
            continue
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(folder, name))


def _process_runs(pid):
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:  # it runs, as another user
        return True
    return True


# ---------------------------------------------------------------- summary

def print_summary(model, print_fn=print):
    """Keras's summary table: each layer, its output shape, its parameter
    count and, for a graph model, the tensors it reads ("Connected to":
    layer[call][output])."""
    chain = isinstance(model, models.Sequential)
    headers = ("Layer (type)", "Output Shape", "Param #") + (() if chain else ("Connected to",))
    rows = [headers]
    calls, outputs = {}, {}
    if model.built:
        for node in [t.node for t in model.inputs] + [s.node for s in model._steps]:
            index = calls.get(id(node.layer), 0)
            calls[id(node.layer)] = index + 1
            for j, t in enumerate(node.outputs):
                outputs[id(t)] = f"{node.layer.name}[{index}][{j}]"
    for layer in model.layers:
        nodes = [] if not model.built else [
            n for n in [t.node for t in model.inputs] + [s.node for s in model._steps]
            if n.layer is layer]
        shapes = [t.shape for t in nodes[0].outputs] if nodes else []
        shape = "?" if not shapes else str(shapes[0]) if len(shapes) == 1 else str(shapes)
        row = (f"{layer.name} ({type(layer).__name__})", shape, f"{layer.count_params():,}")
        if not chain:
            links = [outputs[id(t)] for n in nodes for t in n.inputs]
            row += (", ".join(links) or "-",)
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) + 2 for i in range(len(headers))]
    line = "─" * sum(widths)
    print_fn(f'Model: "{model.name}"')
    print_fn(line)
    for i, row in enumerate(rows):
        print_fn("".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        if i == 0:
            print_fn(line)
    print_fn(line)
    total = model.count_params()
    trainable = sum(p.size for p in model.trainable_params)
    print_fn(f"Total params: {total:,}")
    print_fn(f"Trainable params: {trainable:,}")
    print_fn(f"Non-trainable params: {total - trainable:,}")


# ---------------------------------------------------------------- the container, read safely

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
                   lzma.LZMAError, zipfile.BadZipFile, safetensors.SafetensorError)
_MAX_CONFIG_BYTES = 1 << 24  # a model's architecture is a few kilobytes of JSON


def _check_type(value, kind, what):
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ValueError(f"{what} must be a {kind.__name__} in the model's config, got {value!r}")
    return value


def _check_input_shape(shape, free=False):
    """The config's input_shape as a tuple of positive ints (no batch axis);
    with `free`, None (a free size) is allowed too."""
    ok = isinstance(shape, list) and len(shape) >= 1 and all(
        (free and d is None) or (isinstance(d, int) and not isinstance(d, bool) and 1 <= d < 2**31)
        for d in shape)
    if not ok or math.prod(d or 1 for d in shape) >= 2**40:
        raise ValueError(f"input_shape must be a list of positive integers, got {shape!r}")
    return tuple(shape)


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

    def why_not_a_model(self):
        return "no 'config' entry: not a fromzero model file"

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
        params = model.weights
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


class _SafetensorsFile:
    """A safetensors file written by save / save_weights, read without trusting it.

    The safetensors library checks the container before anything is read:
    the header's length (at most 100 MB) and JSON, every tensor's dtype,
    shape and byte range inside the file, and that the ranges cover the
    file exactly; its tensors are memory-mapped, so reading allocates only
    what is copied into the model. Here, in addition, the metadata must be
    fromzero's, and every tensor's dtype and shape are checked against the
    model before its data is touched.
    """

    _NUMBER_DTYPES = {"F16", "F32", "F64", "I8", "I16", "I32", "I64", "U8", "U16", "U32", "U64"}

    def __init__(self, path):
        self.path = path
        self.file = safetensors.safe_open(path, framework="numpy")
        self.metadata = self.file.metadata() or {}
        self.names = set(self.file.keys())
        self.header = None
        if "fromzero" in self.metadata:
            header = _json_loads(self.metadata["fromzero"], "the metadata 'fromzero'")
            if not isinstance(header, dict):
                raise ValueError("not a fromzero file: its metadata 'fromzero' is not a JSON object")
            if header.get("format") not in (FORMAT_NAME, WEIGHTS_FORMAT_NAME):
                raise ValueError(f"not a fromzero file: format {header.get('format')!r}")
            version = header.get("format_version")
            if isinstance(version, bool) or version != FORMAT_VERSION:
                raise ValueError(f"format version {version!r} is not supported (this fromzero "
                                 f"writes {FORMAT_VERSION} and reads 1 to {FORMAT_VERSION})")
            self.header = header

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.__exit__(*exc)

    def why_not_a_model(self):
        if self.header is None:
            self.read_config()  # raises, saying why
        return (f"{self.path} holds weights only (written by save_weights), no architecture: "
                f"create the model and call its load_weights")

    def has(self, name):
        """Only "config": whether the file holds a model (architecture and all)."""
        return name == "config" and self.header is not None and self.header["format"] == FORMAT_NAME

    def read_config(self):
        if self.header is None:
            raise ValueError("not a fromzero file: a safetensors file without fromzero's "
                             "metadata (another program's weights?)")
        return self.header

    def extras(self):
        self.read_config()
        if "extras" not in self.metadata:
            return {}
        extras = _json_loads(self.metadata["extras"], "the metadata 'extras'")
        return _check_type(extras, dict, "extras")

    def read_tensor(self, name, shape):
        """Tensor `name`, its dtype and shape checked before its data is read."""
        if name not in self.names:
            raise ValueError(f"the file has no tensor {name!r}")
        view = self.file.get_slice(name)
        dtype = view.get_dtype()
        if dtype not in self._NUMBER_DTYPES:
            raise ValueError(f"tensor {name!r} has dtype {dtype}, not a number type")
        found = tuple(view.get_shape())
        if found != tuple(shape):
            raise _ShapeError(found)
        return self.file.get_tensor(name)

    def read_weights(self, model):
        """The model's weights in order, from the tensors the header lists."""
        names = _check_type(self.read_config().get("weights"), list, "weights")
        params = model.weights
        if len(names) != len(params):
            raise _WeightMismatch(None, len(names), len(params))
        weights = []
        for i, (name, p) in enumerate(zip(names, params)):
            try:
                weights.append(self.read_tensor(_check_type(name, str, "a weight's name"), p.shape))
            except _ShapeError as e:
                raise _WeightMismatch(i, e.found, p.shape) from None
        return weights


def _json_loads(text, what):
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{what} is not valid JSON: {e}") from None


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
