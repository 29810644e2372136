"""Low-rank adaptation (LoRA) of a whole model: which layers get adapters,
freezing the rest, folding the adapters in, and files of adapters alone.

Fine-tuning changes a pretrained W by some ΔW. LoRA (Hu et al., 2021)
bets that ΔW has low rank and trains it as a product, ΔW = (α/r)·A·B with
A (in, r) and B (r, out): r·(in + out) numbers instead of in·out. B starts
at zero, so training starts from the pretrained model exactly::

    model.enable_lora(8)                 # every attention layer's query and value projections
    model.enable_lora(8, target="fc*")   # or: layers by name (a glob), by class, a list, a predicate
    model.fit(...)                       # only A and B of the adapted layers change
    model.save_weights("adapters.safetensors", lora_only=True)   # the adapters alone
    base.load_weights("adapters.safetensors", lora_only=True)    # onto the pretrained model
    model.merge_lora()                   # W ← W + (α/r)·A·B: a plain model for inference

A layer takes adapters when it has ``enable_lora(rank, lora_alpha,
a_initializer, b_initializer)``, ``merge_lora()``, ``lora_enabled``,
``lora_rank``, ``lora_alpha``, ``lora_shapes(rank)`` and ``lora_weights()``
(Dense). A layer made of other layers lists them in ``sublayers``; an
attention layer (class attribute ``lora_default_target = True``) names in
``lora_targets`` the sublayers the default adapts (MultiHeadAttention: its
query_dense and value_dense). Adapters are saved under the sublayers' paths
("block_0_attention/query.lora_kernel_a").
"""

import fnmatch
import json
import os

import numpy as np

_FORMAT = "fromzero-lora"
_VERSION = "1"


def _walk(layers, prefix=""):
    """(path, layer) for every layer inside `layers`, depth first, each once:
    nested models and layers' sublayers opened up, the path naming them
    from the outside in ("encoder/attention/query")."""
    from .models import Model
    for layer in layers:
        path = prefix + layer.name
        yield path, layer
        inner = layer.layers if isinstance(layer, Model) else getattr(layer, "sublayers", ())
        yield from _walk(inner, path + "/")


def _layers(model):
    if not model.built:
        raise ValueError(f"{model.name}: build the model before using LoRA (call it on data or "
                         f"build(input_shape))")
    seen, found = set(), []
    for path, layer in _walk(model.layers):
        if id(layer) not in seen:
            seen.add(id(layer))
            found.append((path, layer))
    return found


def _matcher(target):
    """A predicate (path, layer) -> bool for enable_lora's target."""
    if callable(target) and not isinstance(target, type):
        return lambda path, layer: bool(target(layer))
    if isinstance(target, (str, type)):
        target = [target]
    if not isinstance(target, (list, tuple)) or not target or not all(
            isinstance(t, (str, type)) for t in target):
        raise TypeError(f"enable_lora: target must be a layer name or glob (str), a layer class, "
                        f"a list of those or a function of the layer, got {target!r}")
    names = [t for t in target if isinstance(t, str)]
    classes = tuple(t for t in target if isinstance(t, type))
    return lambda path, layer: (isinstance(layer, classes) or any(
        fnmatch.fnmatchcase(layer.name, n) or fnmatch.fnmatchcase(path, n) for n in names))


def enable_lora(model, rank, target=None, lora_alpha=None, a_initializer="he_uniform",
                b_initializer="zeros"):
    """Add rank-`rank` adapters to the layers `target` picks and freeze every
    other weight of the model. Returns the paths of the adapted layers.

    target None: the query and value projections of every attention layer
    (the LoRA paper's choice, and keras_hub's); else a layer name or glob
    ("dense*", matched against names and paths), a layer class, a list of
    those, or a function layer -> bool."""
    layers = _layers(model)
    if target is None:
        path_of = {id(layer): p for p, layer in layers}
        chosen = [(path_of[id(t)], t) for _, layer in layers
                  if getattr(type(layer), "lora_default_target", False)
                  for t in layer.lora_targets]
        if not chosen:
            raise ValueError(f"{model.name}: enable_lora: the model has no attention layer, the "
                             f"default target; pass target= (a layer name, glob or class, e.g. "
                             f"target=fz.layers.Dense)")
    else:
        match = _matcher(target)
        chosen = [(p, layer) for p, layer in layers if match(p, layer)]
        if not chosen:
            raise ValueError(f"{model.name}: enable_lora: no layer matches target={target!r}; "
                             f"the layers are {[p for p, _ in layers]}")
        wrong = [p for p, layer in chosen if not hasattr(layer, "enable_lora")]
        if wrong:
            raise ValueError(f"{model.name}: enable_lora: {wrong} cannot take LoRA adapters "
                             f"(layers with enable_lora: Dense, MultiHeadAttention)")
    inside = {id(sub) for _, layer in chosen for _, sub in _walk(getattr(layer, "sublayers", ()))}
    chosen = [(p, layer) for p, layer in chosen if id(layer) not in inside]
    from .layers.core import check_lora
    check_lora("enable_lora", rank, lora_alpha)  # every check first: nothing changes if one fails
    for p, layer in chosen:
        if any(getattr(sub, "lora_enabled", False) for _, sub in _walk([layer])):
            raise ValueError(f"{p}: LoRA is already enabled; merge_lora() first")
    for _, layer in layers:
        layer.trainable = False
    for _, layer in chosen:
        layer.trainable = True
        layer.enable_lora(rank, lora_alpha=lora_alpha, a_initializer=a_initializer,
                          b_initializer=b_initializer)
    return [p for p, _ in chosen]


def adapted_layers(model):
    """(path, layer) for every layer of the model that has LoRA enabled now."""
    return [(p, layer) for p, layer in _layers(model) if getattr(layer, "lora_enabled", False)]


def merge_lora(model):
    """Fold every adapter into its kernel (W ← W + (α/r)·A·B) and remove it."""
    adapted = [layer for _, layer in adapted_layers(model)]
    if not adapted:
        raise ValueError(f"{model.name}: merge_lora: no layer has LoRA enabled")
    for layer in adapted:
        layer.merge_lora()


# ---------------------------------------------------------------- files

def save_adapters(model, path):
    """The adapters alone, in a safetensors file: "<layer path>.<name>" for the
    arrays of every adapted layer's lora_weights() (a Dense layer's
    lora_kernel_a and lora_kernel_b), and in the metadata each layer's rank
    and α. Written atomically, as every fromzero file."""
    from safetensors.numpy import save

    from . import saving
    adapted = adapted_layers(model)
    if not adapted:
        raise ValueError(f"{model.name}: save_weights(lora_only=True): no layer has LoRA "
                         f"enabled")
    tensors, layers = {}, {}
    for p, layer in adapted:
        for name, array in layer.lora_weights().items():
            tensors[f"{p}.{name}"] = array
        layers[p] = {"rank": layer.lora_rank, "lora_alpha": layer.lora_alpha}
    data = save(tensors, metadata={"format": _FORMAT, "version": _VERSION,
                                   "layers": json.dumps(layers)})
    saving._write_atomically(path, data)  # beside `path`, then renamed over it


def load_adapters(model, path):
    """Set the adapters of `model` from a file of save_adapters: layers
    without LoRA get it enabled with the file's rank and α (the rest of the
    model is left as it is). Everything is checked before anything changes:
    the file's format, every layer it names exists with a kernel of the
    shape it adapted, every tensor is used exactly once, with its shape."""
    path = os.fspath(path)
    try:
        layers, tensors = _read_adapter_file(path)
    except (FileNotFoundError, ValueError):
        raise
    except Exception as e:  # noqa: BLE001 — safetensors raises its own error types
        raise ValueError(f"cannot load LoRA adapters from {path}: {e}") from None
    by_path = dict(_layers(model))
    plan = []
    for p, entry in layers.items():
        layer = by_path.get(p)
        if layer is None or not hasattr(layer, "lora_shapes"):
            raise ValueError(f"{path}: adapters for layer {p!r}, which the model "
                             f"{model.name!r} does not have (its layers: {list(by_path)})")
        try:
            rank, alpha = int(entry["rank"]), float(entry["lora_alpha"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{path}: damaged metadata for layer {p!r}: {entry!r}") from None
        if layer.lora_enabled and (layer.lora_rank, layer.lora_alpha) != (rank, alpha):
            raise ValueError(f"{path}: {p!r} has rank-{rank} adapters (lora_alpha={alpha}), the "
                             f"layer has LoRA of rank {layer.lora_rank} "
                             f"(lora_alpha={layer.lora_alpha})")
        arrays = {}
        for name, shape in layer.lora_shapes(rank).items():
            key = f"{p}.{name}"
            if key not in tensors:
                raise ValueError(f"{path}: no tensor {key!r}")
            if tensors[key].shape != tuple(shape):
                raise ValueError(f"{path}: {key!r} has shape {tensors[key].shape}, this model's "
                                 f"layer needs {tuple(shape)}: adapters of another base model")
            arrays[name] = tensors.pop(key)
        plan.append((layer, rank, alpha, arrays))
    if tensors:
        raise ValueError(f"{path}: tensors no layer uses: {sorted(tensors)}")
    for layer, rank, alpha, arrays in plan:
        if not layer.lora_enabled:
            layer.enable_lora(rank, lora_alpha=alpha)
        own = layer.lora_weights()
        for name, array in arrays.items():
            own[name][...] = array


def _read_adapter_file(path):
    """(layers metadata, {name: float32 array}) of an adapter file, its format checked."""
    from safetensors import safe_open
    with open(path, "rb"):  # FileNotFoundError as is
        pass
    with safe_open(path, framework="numpy") as f:
        meta = f.metadata() or {}
        if meta.get("format") != _FORMAT:
            raise ValueError(f"{path} is not a fromzero LoRA adapter file (its metadata has "
                             f"format={meta.get('format')!r}, expected {_FORMAT!r})")
        if meta.get("version") != _VERSION:
            raise ValueError(f"{path}: adapter file version {meta.get('version')!r}, this "
                             f"fromzero reads {_VERSION!r}")
        try:
            layers = json.loads(meta.get("layers", ""))
        except json.JSONDecodeError:
            layers = None
        if not isinstance(layers, dict) or not all(isinstance(v, dict) for v in layers.values()):
            raise ValueError(f"{path}: damaged metadata: 'layers' is not a JSON object of layers")
        tensors = {}
        for name in f.keys():
            t = f.get_tensor(name)
            if t.dtype != np.float32:
                raise ValueError(f"{path}: tensor {name!r} is {t.dtype}, not float32")
            tensors[name] = t
    return layers, tensors
