"""The base of every layer: the forward/backward protocol, weights, names,
and what one call of a layer keeps for its backward pass.

The protocol, as backpropagation is taught::

    y  = layer.forward(x, training=True)   # compute; save what backward needs (self.save)
    dx = layer.backward(dy)                # dy = ∂L/∂y in, dx = ∂L/∂x out; fills layer.grads
    layer.params, layer.grads              # lists of float32 arrays, same order and shapes

A layer with several tensor inputs (Add()([a, b]), or attention's query,
value and key) returns from backward one gradient per tensor input, in the
order of forward's parameters (a list argument counts as its elements in
order) — a list or tuple, or the array itself when there is one input —
and None for an input that takes no gradient (integer token ids, masks).
backward *writes* (does not add to) layer.grads; a model whose graph calls
one layer at several places sums the uses (models.Model.backward).

The arrays forward and backward return are buffers owned by the layer
(``self.buffer``), reused by its next call with the same shapes, so a
training step allocates nothing; copy one to keep it. ``layer(x)`` returns
fresh arrays, as Keras does.

What forward saves for backward, and those buffers, belong to one *call
context*: a layer used on its own has one per thread; inside a model every
node (every place the layer is called) has its own, one for training and one
for inference, per thread (models.Model.forward switches them). So one layer
object can appear at several places of a graph, and several threads can run
inference on one model at once, without overwriting each other's arrays.
"""

import inspect
import itertools
import re
import threading
import weakref

import numpy as np

from .. import graph, initializers, utils

# Every layer class by name (and by its aliases), filled in as classes are
# defined (Layer.__init_subclass__): load_model finds classes here.
_REGISTRY = {}
_name_counters = {}
_signatures = {}
# Every weight add_weight made, by the address of its data: (a weak
# reference to it, its path "layer_name/weight_name", as Keras's
# variable.path). Optimizers read it (exclude_from_weight_decay's var_names).
# By address, so a reshaped view of a weight (MultiHeadAttention shows its
# Dense sublayers' kernels as (C, heads, head_dim)) is found too.
_weight_paths = {}


def data_address(array):
    """Where an array's data starts: the same for a weight and its views."""
    return array.__array_interface__["data"][0]


def weight_path(array):
    """The path "layer_name/weight_name" of a weight made by add_weight (or a
    view of one with the same data), or None."""
    entry = _weight_paths.get(data_address(array))
    if entry is None or entry[0]() is None:
        return None
    return entry[1] if np.shares_memory(entry[0](), array) else None


def to_snake_case(name):
    """Keras's rule for default names: Dense → dense, Conv2D → conv2d,
    BatchNormalization → batch_normalization, ReLU → re_lu."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def unique_name(base):
    """Keras-style default names: dense, dense_1, dense_2, ..."""
    count = next(_name_counters.setdefault(base, itertools.count()))
    return base if count == 0 else f"{base}_{count}"


# Keras arguments fromzero does not implement, accepted at the value that
# means "not used" (what Keras programs often spell out), refused otherwise.
_KERAS_DEFAULTS = {
    "activity_regularizer": [None], "bias_regularizer": [None], "kernel_constraint": [None],
    "bias_constraint": [None], "data_format": [None, "channels_last"],
    "dilation_rate": [1, (1, 1)], "groups": [1], "noise_shape": [None], "seed": [None],
    "autocast": [True], "lora_rank": [None], "mask_zero": [False], "embeddings_regularizer": [None],
    "embeddings_constraint": [None], "attention_axes": [None], "flash_attention": [None],
    "kernel_regularizer": [None], "beta_regularizer": [None], "gamma_regularizer": [None],
    "beta_constraint": [None], "gamma_constraint": [None],
}


def _is_default(value, defaults):
    value = tuple(value) if isinstance(value, list) else value
    return any(value is d or (type(value) is type(d) and value == d) for d in defaults)


def _default_hint(names):
    known = [n for n in names if n in _KERAS_DEFAULTS]
    return "".join(f"; {n} can only be {' or '.join(repr(d) for d in _KERAS_DEFAULTS[n])}"
                   for n in known)


def get_class(name):
    """The layer class registered under `name` (a class name or an alias)."""
    cls = _REGISTRY.get(name)
    if cls is None:
        raise ValueError(f"unknown layer {name!r}")
    return cls


class BackwardBeforeForwardError(RuntimeError, AttributeError):
    """backward() called before any forward(x, training=True)."""


class CallContext:
    """What one call site of a layer keeps between its forward and its
    backward: the arrays forward saved (``saved``), its reusable buffers,
    a kernel's own state (``kernel_state``: Dense's index of its input's
    non-zero entries), and, for a model used as a layer, the contexts of its
    own nodes."""

    __slots__ = ("saved", "buffers", "kernel_state", "nodes")

    def __init__(self):
        self.saved = None
        self.buffers = utils.Buffers()
        self.kernel_state = None
        self.nodes = None


_FLOAT32 = np.dtype(np.float32)


def as_float32(x, what="input"):
    """x as a float32 C-contiguous array (no copy when it already is one)."""
    if type(x) is np.ndarray and x.dtype is _FLOAT32 and x.flags.c_contiguous:
        return x  # already one (every array the engine makes): nothing to convert
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{what} must hold numbers, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.float32)


def _copy(outputs):
    if isinstance(outputs, np.ndarray):
        return outputs.copy()
    if isinstance(outputs, (list, tuple)):
        return type(outputs)(_copy(o) for o in outputs)
    if isinstance(outputs, dict):
        return {k: _copy(v) for k, v in outputs.items()}
    return outputs


def _forward_signature(cls):
    sig = _signatures.get(cls)
    if sig is None:
        sig = _signatures[cls] = inspect.signature(cls.forward)
    return sig


class Layer:
    """The base of every layer: names, weights, per-call state, and the protocol above.

    A subclass defines forward and backward, and when it has weights
    ``build(input_shape)`` (creating them with ``add_weight``); for graph
    models also ``compute_output_shape(input_shape)`` when its output shape
    differs from its input's. Shapes given to build and compute_output_shape
    have the batch axis first (None), as in Keras. Defining the class
    registers it under its name for load_model; ``aliases`` adds other names.
    """

    #: other names the class is known by (MaxPool2D for MaxPooling2D)
    aliases = ()
    #: the dtype of the outputs; None: that of the first input (shape layers)
    output_dtype = "float32"
    #: How the output at time step t (axis 1 of (batch, time, ...)) depends on
    #: the inputs, which lets generation compute only the last time step where
    #: that is all it needs (Model's last-step inference, models.py):
    #: "each" — on step t of each input only (Dense, LayerNormalization, Add):
    #: given the inputs' last steps, forward gives the output's last step;
    #: "query" — on step t of the first input (the query) and on every step of
    #: the others (attention with a key/value cache); "all" — the output keeps
    #: the time axis but its step t may read any step of the inputs or t itself
    #: (PositionEmbedding); None — not known to keep a time axis (Flatten).
    #: "all" and None layers always run on whole sequences.
    time_steps = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if not cls.__name__.startswith("_"):
            for name in (cls.__name__, *cls.__dict__.get("aliases", ())):
                _REGISTRY[name] = cls

    def __init__(self, name=None, trainable=True, dtype=None, input_shape=None, input_dim=None,
                 **kwargs):
        cls = type(self).__name__
        unsupported = sorted(k for k, v in kwargs.items()
                             if not (k in _KERAS_DEFAULTS and _is_default(v, _KERAS_DEFAULTS[k])))
        if unsupported:
            raise TypeError(f"{cls}: unsupported argument(s) {', '.join(unsupported)} "
                            f"(fromzero does not implement them"
                            f"{_default_hint(unsupported)})")
        if dtype not in (None, "float32", np.float32):
            raise ValueError(f"{cls}: dtype must be 'float32' (fromzero's layers compute in "
                             f"float32), got {dtype!r}")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"{cls}: name must be a string, got {name!r}")
        self.name = name or unique_name(to_snake_case(cls))
        # params and grads: lists of float32 arrays, same order and shapes.
        # non_trainable_weights: saved and loaded with the model but never seen
        # by the optimizer (BatchNormalization's moving statistics), as Keras's.
        # (A model defines them as properties: its weights are its layers'.)
        for attr in ("params", "grads", "non_trainable_weights"):
            if not isinstance(getattr(type(self), attr, None), property):
                setattr(self, attr, [])
        self.trainable = bool(trainable)
        self.built = False
        # A model turns this off where nobody needs ∂L/∂input (its first layer).
        self.input_grad_needed = True
        # Set by a model while it runs a second use of this layer in one
        # backward pass: its gradients are then added to the first use's.
        self._accumulating = False
        # Keras's input_shape= (or input_dim=) on a first layer: the shape of
        # one sample; Sequential reads it to build at once.
        if input_dim is not None:
            input_shape = (input_dim,)
        self._build_input_shape = None if input_shape is None else (None,) + tuple(
            utils.check_positive_int(cls, "input_shape", d) if d is not None else None
            for d in (input_shape if isinstance(input_shape, (tuple, list)) else (input_shape,)))
        self._local = threading.local()  # this thread's current CallContext

    # ------------------------------------------------------------ the protocol

    def build(self, input_shape):
        """Create the weights for inputs of `input_shape` (batch axis first)."""
        self.built = True

    def compute_output_shape(self, input_shape):
        """The output's shape for an input of `input_shape` (batch axis first)."""
        return tuple(input_shape)

    def forward(self, x, training=False):
        raise NotImplementedError

    def backward(self, dy):
        raise NotImplementedError

    # ------------------------------------------------------------ per-call state

    def _context(self):
        """This thread's current CallContext. A layer that reads it several
        times in one forward or backward fetches it once (Dense): each look-up
        of a thread-local attribute costs about as much as a small kernel call's
        argument checks."""
        try:
            return self._local.context
        except AttributeError:
            context = self._local.context = CallContext()
            return context

    def save(self, *arrays):
        """Keep `arrays` for backward (as PyTorch's ctx.save_for_backward):
        forward(x, training=True) calls it, backward reads ``self.saved``."""
        try:
            self._local.context.saved = arrays
        except AttributeError:
            self._context().saved = arrays

    @property
    def saved(self):
        """What the last forward(..., training=True) of this call saved."""
        return self.saved_in(self._context())

    def saved_in(self, context):
        """`saved`, from a CallContext the caller already holds (Layer._context)."""
        saved = context.saved
        if saved is None:
            raise BackwardBeforeForwardError(
                f"{self.name}: backward() needs a forward(x, training=True) first, which "
                f"saves what backward uses")
        return saved

    def _check_dy(self, dy, shape):
        """dy as float32, checked to have the shape forward's output had."""
        dy = as_float32(dy, "dy")
        if dy.shape != shape:
            raise ValueError(f"{self.name}: dy must have shape {shape}, got {dy.shape}")
        return dy

    def buffer(self, name, shape, dtype=np.float32):
        """A reusable array of this call (utils.Buffers): allocated the first
        time a shape is asked for, then the same array every call."""
        try:
            return self._local.context.buffers.get(name, shape, dtype)
        except AttributeError:  # the first call in this thread
            return self._context().buffers.get(name, shape, dtype)

    # ------------------------------------------------------------ calling

    def __call__(self, *args, **kwargs):
        """On arrays: forward(..., training=False by default), returning new
        arrays. On symbolic tensors (fz.Input): a node of a graph (graph.py)."""
        if graph.flat_tensors(args) or graph.flat_tensors(kwargs):
            return self._call_symbolic(args, kwargs)
        return _copy(self.forward(*args, **kwargs))

    def _call_symbolic(self, args, kwargs):
        try:
            bound = _forward_signature(type(self)).bind(self, *args, **kwargs)
        except TypeError as e:
            raise TypeError(f"{self.name}: cannot be called this way: {e}") from None
        training = bound.arguments.get("training")
        if not (training is None or isinstance(training, (bool, np.bool_))):
            raise TypeError(f"{self.name}: training= must be True, False or None, got {training!r}")
        arguments = list(bound.arguments.values())[1:]  # in forward's order, without self
        inputs = graph.flat_tensors(arguments)
        if not self.built:
            self.build_for_call(*args, **kwargs)
        outputs = self.compute_output_spec(*args, **kwargs)
        single = isinstance(outputs, graph.SymbolicTensor)
        outputs = [outputs] if single else list(outputs)
        node = graph.Node(self, args, kwargs, inputs)
        for i, t in enumerate(outputs):
            t.node, t.index = node, i
            t.name = self.name if single else f"{self.name}_{i}"
        node.outputs = outputs
        return outputs[0] if single else outputs

    def build_for_call(self, *args, **kwargs):
        """Build from the symbolic tensors of a call: build() gets the shape
        (or list of shapes) of the first argument. Override for layers whose
        weights depend on several arguments."""
        first = args[0] if args else next(iter(kwargs.values()))
        self.build(graph.map_tensors(first, lambda t: t.shape))

    def compute_output_spec(self, *args, **kwargs):
        """The output SymbolicTensor(s) of a call: compute_output_shape of the
        first argument's shape(s), in output_dtype. A list of shapes means
        several outputs."""
        first = args[0] if args else next(iter(kwargs.values()))
        shape = self.compute_output_shape(graph.map_tensors(first, lambda t: t.shape))
        dtype = self.output_dtype or graph.flat_tensors(first)[0].dtype
        if isinstance(shape, list):
            return [graph.SymbolicTensor(s, dtype, None) for s in shape]
        return graph.SymbolicTensor(shape, dtype, None)

    # ------------------------------------------------------------ weights

    def add_weight(self, shape, initializer="glorot_uniform", trainable=True, name=None):
        """A new float32 weight of `shape`, drawn by `initializer` (a name or
        a callable shape -> array) and copied, so the layer never trains an
        array its caller holds. Trainable weights join params (with a zero
        gradient in grads), the others non_trainable_weights."""
        shape = tuple(int(d) for d in shape)
        values = np.asarray(initializers.get(initializer)(shape))
        if values.shape != shape:
            raise ValueError(f"{self.name}: initializer for weight {name or ''} returned shape "
                             f"{values.shape}, expected {shape}")
        weight = utils.aligned_empty(shape)  # (64-byte aligned: see utils.aligned_empty)
        weight[...] = as_float32(values, f"{self.name}: initial {name or 'weight'}")
        # its name in saved files: <layer name>/<name> (saving.named_weights)
        index = len(self.weights)
        self.__dict__.setdefault("_weight_names", []).append((weight, name or f"weight_{index}"))
        key = data_address(weight)  # and the same path for the optimizers (weight_path)
        _weight_paths[key] = (weakref.ref(weight, lambda _, key=key: _weight_paths.pop(key, None)),
                              f"{self.name}/{name or f'weight_{index}'}")
        if trainable:
            self.params.append(weight)
            self.grads.append(utils.aligned_zeros(shape))
        else:
            self.non_trainable_weights.append(weight)
        return weight

    @property
    def weights(self):
        """Every array get_weights, set_weights and save cover: params, then non-trainable ones."""
        return self.params + self.non_trainable_weights

    @property
    def trainable_params(self):
        return self.params if self.trainable else []

    @property
    def trainable_grads(self):
        return self.grads if self.trainable else []

    def get_weights(self):
        return [p.copy() for p in self.weights]

    def set_weights(self, weights):
        weights = list(weights)
        own = self.weights
        if len(weights) != len(own):
            raise ValueError(f"{self.name}: expected {len(own)} weight arrays, got {len(weights)}")
        for i, (p, w) in enumerate(zip(own, weights)):
            w = np.asarray(w)
            if w.shape != p.shape:
                raise ValueError(f"{self.name}: weight {i} must have shape {p.shape}, "
                                 f"got {w.shape}")
        for p, w in zip(own, weights):
            p[...] = w  # in place: optimizers and grads keep pointing at the same arrays

    def count_params(self):
        return sum(p.size for p in self.weights)

    def get_config(self):
        """The constructor arguments, as JSON-serialisable values (for save/load)."""
        return {"name": self.name}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} {self.name}>"
