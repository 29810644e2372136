"""Models: a graph of layers, run forward and backward. One executor for all.

A model is the graph from its inputs to its outputs (graph.py): the nodes,
each a call of a layer, in an order where every node comes after the nodes
that produce its inputs (a topological order). Running it is the textbook's
two passes over that list:

    forward:   for each node in order:    outputs = layer.forward(inputs)
    backward:  for each node in reverse:  input gradients = layer.backward(output gradients)

The one new idea of backpropagation on a graph is at a fork: when a tensor
feeds several nodes (x in y = x + f(x)), L depends on it along every path,
so by the chain rule ∂L/∂x is the *sum* of the gradients each consumer
sends back. backward adds them up (_GradientSum). A layer called at
several nodes (shared weights) likewise sums its parameter gradients over
its uses.

``Model(inputs, outputs)`` is Keras's functional model; ``Sequential`` is
the same Model whose graph is a chain, built from its list of layers. Both
train through trainer.Trainer (compile, fit, evaluate, predict); save and
load are in saving.py.
"""

import threading

import numpy as np

from . import graph, utils
from .layers.base import BackwardBeforeForwardError, CallContext, Layer, unique_name
from .layers.core import Dense, InputLayer
from .layers.reshaping import Flatten
from .trainer import Trainer

_INFERENCE, _TRAINING = 0, 1


class _Slot:
    """Where tensor number `tid` goes in a node's arguments (general calls only)."""

    __slots__ = ("tid",)

    def __init__(self, tid):
        self.tid = tid


def _fill(template, values):
    if isinstance(template, _Slot):
        return values[template.tid]
    if isinstance(template, (list, tuple)):
        return type(template)(_fill(item, values) for item in template)
    if isinstance(template, dict):
        return {key: _fill(item, values) for key, item in template.items()}
    return template


def _slots(template):
    """The tensor numbers in an argument template."""
    if isinstance(template, _Slot):
        return {template.tid}
    if isinstance(template, (list, tuple)):
        return set().union(*map(_slots, template)) if template else set()
    if isinstance(template, dict):
        return _slots(list(template.values()))
    return set()


class _Step:
    """One node, ready to run: how to call its layer with the values of the
    tensors (by number), and the numbers of its input and output tensors.

    kind 0: layer.forward(x, ...)        one tensor argument (most layers)
    kind 1: layer.forward([a, b], ...)   a list of tensors (merge layers, models)
    kind 2: anything else, arguments rebuilt from a template (attention's
            query, value, key=, attention_mask=)
    """

    __slots__ = ("node", "layer", "kind", "arg", "args", "kwargs", "training", "in_ids", "out_ids",
                 "single")

    def __init__(self, node, ids):
        self.node, self.layer = node, node.layer
        kwargs = dict(node.kwargs)
        # training= given in the call fixes the mode of this node (Keras's rule)
        self.training = kwargs.pop("training", None)
        self.in_ids = [ids[id(t)] for t in node.inputs]
        self.out_ids = [ids[id(t)] for t in node.outputs]
        self.single = len(node.outputs) == 1
        slot = lambda t: _Slot(ids[id(t)])  # noqa: E731
        args = node.args
        if not graph.flat_tensors(kwargs) and len(args) == 1 and graph.is_symbolic(args[0]):
            self.kind, self.arg = 0, ids[id(args[0])]
        elif (not graph.flat_tensors(kwargs) and len(args) == 1 and isinstance(args[0], list)
              and args[0] and all(graph.is_symbolic(t) for t in args[0])):
            self.kind, self.arg = 1, [ids[id(t)] for t in args[0]]
        else:
            self.kind, self.arg = 2, None
            args = graph.map_tensors(args, slot)
        self.args = args
        self.kwargs = graph.map_tensors(kwargs, slot) if self.kind == 2 else kwargs

    def run(self, values, training, extra=None):
        """layer.forward on the values, with the keyword arguments `extra`
        added to the node's own; its output(s) stored in values."""
        layer = self.layer
        if self.training is not None:
            training = self.training
        kwargs = self.kwargs if not extra else {**self.kwargs, **extra}
        if self.kind == 0 and not kwargs:  # (f(x, **{}) would build a dict per call)
            out = layer.forward(values[self.arg], training=training)
        elif self.kind == 0:
            out = layer.forward(values[self.arg], training=training, **kwargs)
        elif self.kind == 1:
            out = layer.forward([values[i] for i in self.arg], training=training, **kwargs)
        else:
            out = layer.forward(*_fill(self.args, values), training=training,
                                **_fill(kwargs, values))
        self._store(values, out, extra)

    def run_last_step(self, values, extra=None):
        """run, in inference, on the last time step of the inputs (all of
        them for a layer whose time_steps is "each", the query for "query"):
        the output's last time step (Model._last_step_plan)."""
        layer = self.layer
        kwargs = self.kwargs if not extra else {**self.kwargs, **extra}
        if self.kind == 0:
            out = layer.forward(values[self.arg][:, -1:], training=False, **kwargs)
        elif self.kind == 1:
            out = layer.forward([values[i][:, -1:] for i in self.arg], training=False, **kwargs)
        else:  # "query": the first argument
            query, *others = _fill(self.args, values)
            out = layer.forward(query[:, -1:], *others, training=False, **_fill(kwargs, values))
        self._store(values, out, extra)

    def _store(self, values, out, extra):
        if extra and "cache" in extra:
            out = out[0]  # a layer given a key/value cache returns (outputs, cache), as Keras-hub's
        if self.single:
            values[self.out_ids[0]] = out
        else:
            if len(out) != len(self.out_ids):
                raise ValueError(f"{self.layer.name}: forward returned {len(out)} outputs, its "
                                 f"node has {len(self.out_ids)}")
            for tid, value in zip(self.out_ids, out):
                values[tid] = value


class _BackwardStep:
    """A step of backward: which node, whether it must pass gradients to its
    inputs (and to which), whether it adds to parameter gradients written by
    another use of its layer, and whether it receives ∂L/∂logits."""

    __slots__ = ("index", "step", "need_inputs", "input_grad_needed", "accumulate", "logits")

    def __init__(self, index, step, need_inputs, accumulate, logits):
        self.index, self.step = index, step
        self.need_inputs = need_inputs
        self.input_grad_needed = any(need_inputs)
        self.accumulate, self.logits = accumulate, logits


class _GradientSum:
    """∂L/∂tensor for every tensor of one backward pass. The first gradient
    a tensor receives is kept as is (no copy); a second one — the tensor
    feeds several nodes — is added into a buffer of the model's, and so on:
    the sum over every path from the tensor to the loss (the chain rule at a
    fork), in the fixed reverse order of the nodes, so bit for bit repeatable."""

    __slots__ = ("grads", "counts", "buffers")

    def __init__(self, n, buffers):
        self.grads, self.counts, self.buffers = [None] * n, [0] * n, buffers

    def add(self, tid, g, who):
        count = self.counts[tid]
        if count == 0:
            self.grads[tid] = g
        else:
            first = self.grads[tid]
            if np.shape(g) != first.shape:
                raise ValueError(f"{who}: backward returned a gradient of shape {np.shape(g)} for "
                                 f"a tensor whose other gradient has shape {first.shape}")
            total = first if count > 1 else self.buffers.get(("gradient sum", tid), first.shape)
            np.add(first, g, out=total)
            self.grads[tid] = total
        self.counts[tid] = count + 1


def _describe_shape(shape):
    return "(batch, " + ", ".join(str(d) for d in shape[1:]) + ")"


def _convert(value, dtype, what):
    """An input array in the dtype of its Input: float32, or integers kept integer."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{what} must hold numbers, got dtype {arr.dtype}")
    if dtype == "float32":
        return np.ascontiguousarray(arr, dtype=np.float32)
    if arr.dtype.kind == "f" and (not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr))):
        raise ValueError(f"{what} must hold whole numbers: the model's input is {dtype}")
    if arr.dtype != np.dtype(dtype) and arr.size:  # a cast would wrap 2**32 to 0 silently
        limits, low, high = np.iinfo(dtype), arr.min(), arr.max()
        if low < limits.min or high > limits.max:
            raise ValueError(f"{what} holds {(low if low < limits.min else high).item()}, outside "
                             f"the range of the model's {dtype} input [{limits.min}, {limits.max}]")
    return np.ascontiguousarray(arr, dtype=dtype)


class Model(Trainer, Layer):
    """A graph of layers from `inputs` to `outputs` (Keras's functional API)::

        x = fz.Input(shape=(784,))
        h = fz.layers.Dense(64, activation="relu")(x)
        y = fz.layers.Dense(10, activation="softmax")(fz.layers.Add()([h, fz.layers.Dense(64)(h)]))
        model = fz.Model(x, y)

    inputs and outputs are one symbolic tensor, a list, or a dict of them;
    predict and model(x) return the same structure. A model is a layer: it
    can be called on symbolic tensors inside another model.
    """

    def __init__(self, inputs, outputs, name=None, trainable=True):
        Layer.__init__(self, name=name or unique_name("functional"), trainable=trainable)
        self._init_trainer()
        self._init_graph(inputs, outputs)

    # ------------------------------------------------------------ the graph

    def _init_graph(self, inputs, outputs):
        input_list, output_list = graph.flat_tensors(inputs), graph.flat_tensors(outputs)
        if not input_list or not output_list:
            raise ValueError(f"{self.name}: a model needs at least one input and one output "
                             f"symbolic tensor (fz.Input(...) and a layer called on it)")
        for t in input_list:
            if not isinstance(t.node.layer, InputLayer):
                raise ValueError(f"{self.name}: inputs must be the tensors fz.Input returns; "
                                 f"{t.name} is the output of layer {t.node.layer.name}")
        if len({id(t) for t in input_list}) != len(input_list):
            raise ValueError(f"{self.name}: the same Input is given twice")
        nodes = self._nodes_in_order(input_list, output_list)
        ids, tensors = {}, list(input_list)
        for node in nodes:
            tensors.extend(node.outputs)
        for t in tensors:
            ids[id(t)] = len(ids)
        # ∂L/∂t exists for float tensors only: token ids and masks get none
        self._differentiable = [np.dtype(t.dtype).kind == "f" for t in tensors]
        self._inputs_spec, self._outputs_spec = inputs, outputs
        self.inputs, self.outputs = input_list, output_list
        self._n_tensors = len(ids)
        self._input_ids = [ids[id(t)] for t in input_list]
        self._output_ids = [ids[id(t)] for t in output_list]
        # The one place that decides whether the model has a single output: one
        # tensor given alone or as a one-element list or tuple (Keras 3 unpacks
        # such singletons: calls and predict return the array itself). A dict
        # of one output stays a dict.
        self._single_output = len(output_list) == 1 and not isinstance(outputs, dict)
        self._steps = [_Step(node, ids) for node in nodes]
        self._consumers = [0] * len(ids)
        for step in self._steps:
            for tid in step.in_ids:
                self._consumers[tid] += 1
        layers, seen = [t.node.layer for t in input_list], set()
        for node in nodes:
            if id(node.layer) not in seen and not isinstance(node.layer, InputLayer):
                seen.add(id(node.layer))
                layers.append(node.layer)
        names = [l.name for l in layers]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"{self.name}: the name {name!r} is used by {names.count(name)} "
                                 f"layers of the model; layer names must be unique")
        self._all_layers = layers
        self._output_losses = None  # compiled losses follow the outputs: resolved again
        leaves, seen = [], set()
        for layer in layers:
            for leaf in (layer._leaves if isinstance(layer, Model) else [layer]):
                if id(leaf) not in seen:
                    seen.add(id(leaf))
                    leaves.append(leaf)
        self._leaves = leaves  # every layer that is not a model, nested models opened up
        self._backward_plans = {}
        self._last_step_cuts = None  # _last_step_plan's, made on first use
        self.built = True

    def _nodes_in_order(self, inputs, outputs):
        """The nodes between inputs and outputs, each after the nodes it depends
        on (depth-first from the outputs). A path back to an Input that is not
        among `inputs`, or a node that depends on itself, is an error naming
        the layers."""
        input_ids = {id(t) for t in inputs}
        state, order = {}, []

        def visit(tensor, path):
            if id(tensor) in input_ids:
                return
            node = tensor.node
            if node is None:
                raise ValueError(f"{self.name}: {tensor.name} was not produced by a layer call")
            if isinstance(node.layer, InputLayer):
                route = " → ".join([node.layer.name] + [n.layer.name for n in reversed(path)])
                output = path[0].layer.name if path else tensor.name
                raise ValueError(
                    f"{self.name}: the graph is disconnected: output {output} depends on input "
                    f"{node.layer.name!r} ({route}), which is not among the model's inputs "
                    f"({', '.join(t.node.layer.name for t in inputs)})")
            seen = state.get(id(node))
            if seen == "done":
                return
            if seen == "visiting":
                cycle = [n.layer.name for n in path[path.index(node):]] + [node.layer.name]
                raise ValueError(f"{self.name}: the graph has a cycle: "
                                 f"{' → '.join(reversed(cycle))}")
            state[id(node)] = "visiting"
            for t in node.inputs:
                visit(t, path + [node])
            state[id(node)] = "done"
            order.append(node)

        for t in outputs:
            visit(t, [])
        return order

    @property
    def layers(self):
        """Every layer of the graph once, inputs first, in the order they run."""
        return list(self._all_layers)

    def get_layer(self, name=None, index=None):
        """The layer called `name`, or number `index` in model.layers."""
        if index is not None:
            if not 0 <= index < len(self.layers):
                raise ValueError(f"{self.name}: index {index} is out of range: the model has "
                                 f"{len(self.layers)} layers")
            return self.layers[index]
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ValueError(f"{self.name}: no layer named {name!r} (layers: "
                         f"{', '.join(l.name for l in self.layers)})")

    @property
    def input(self):
        return self._inputs_spec

    @property
    def output(self):
        return self._outputs_spec

    @property
    def input_names(self):
        return [t.node.layer.name for t in self.inputs]

    @property
    def output_names(self):
        return [t.node.layer.name for t in self.outputs]

    @property
    def input_shape(self):
        """Keras's input_shape: (None, ...) for one input, a list for several."""
        shapes = [t.shape for t in self.inputs]
        return shapes[0] if len(shapes) == 1 else shapes

    @property
    def output_shape(self):
        shapes = [t.shape for t in self.outputs]
        return shapes[0] if len(shapes) == 1 else shapes

    # ------------------------------------------------------------ weights

    @property
    def trainable(self):
        return self._trainable

    @trainable.setter
    def trainable(self, value):
        """As in Keras: setting it on a model sets it on every layer inside."""
        self._trainable = bool(value)
        for layer in self.__dict__.get("_layers") or self.__dict__.get("_all_layers") or []:
            layer.trainable = self._trainable

    @property
    def params(self):
        return [p for layer in self._unique_layers() for p in layer.params]

    @property
    def grads(self):
        return [g for layer in self._unique_layers() for g in layer.grads]

    @property
    def non_trainable_weights(self):
        return [w for layer in self._unique_layers() for w in layer.non_trainable_weights]

    @property
    def weights(self):
        return [w for layer in self._unique_layers() for w in layer.weights]

    @property
    def trainable_params(self):
        return [p for layer in self._unique_layers() for p in layer.trainable_params]

    @property
    def trainable_grads(self):
        return [g for layer in self._unique_layers() for g in layer.trainable_grads]

    def _unique_layers(self):
        return self.layers if self.built else []

    def set_weights(self, weights):
        """Set every weight, in get_weights order; every count and shape is
        checked before any weight changes."""
        weights = list(weights)
        layers = self._unique_layers()
        expected = sum(len(layer.weights) for layer in layers)
        if len(weights) != expected:
            raise ValueError(f"set_weights: the model has {expected} weight arrays, got "
                             f"{len(weights)}")
        chunks, i = [], 0
        for layer in layers:
            chunk = weights[i:i + len(layer.weights)]
            i += len(chunk)
            for k, (p, w) in enumerate(zip(layer.weights, chunk)):
                if np.shape(w) != p.shape:
                    raise ValueError(f"{layer.name}: weight {k} must have shape {p.shape}, "
                                     f"got {np.shape(w)}")
            chunks.append((layer, chunk))
        for layer, chunk in chunks:
            layer.set_weights(chunk)

    def regularization_loss(self):
        """The weight penalties of every layer (each layer once)."""
        return sum(getattr(layer, "regularization_loss", lambda: 0.0)()
                   for layer in self._unique_layers())

    # ------------------------------------------------------------ running

    def _check_inputs(self, inputs, what):
        """The arrays for the model's inputs, in order: converted to each
        Input's dtype and checked against its shape."""
        n = len(self.inputs)
        if isinstance(inputs, dict):
            names = self.input_names
            unknown = [k for k in inputs if k not in names]
            missing = [k for k in names if k not in inputs]
            if unknown or missing:
                raise ValueError(f"{what}: the dict of inputs must have the keys {names} (the "
                                 f"Input names), got {list(inputs)}")
            inputs = [inputs[k] for k in names]
        elif n == 1:
            if isinstance(inputs, (list, tuple)) and len(inputs) == 1 and \
                    isinstance(inputs[0], np.ndarray):
                inputs = inputs[0]
            inputs = [inputs]
        elif not isinstance(inputs, (list, tuple)) or len(inputs) != n:
            raise ValueError(f"{what}: the model has {n} inputs ({', '.join(self.input_names)}): "
                             f"give a list of {n} arrays or a dict keyed by their names")
        arrays = []
        for k, (value, t) in enumerate(zip(inputs, self.inputs)):
            label = what if n == 1 else f"{what} {t.node.layer.name!r}"
            if graph.is_symbolic(value):
                raise TypeError(f"{label}: got the symbolic tensor {value.name}: fit, evaluate "
                                f"and predict take arrays (symbolic tensors are for building "
                                f"models: call the model on them)")
            arr = _convert(value, t.dtype, label)
            if arr.ndim != len(t.shape) or any(
                    s is not None and s != d for s, d in zip(t.shape[1:], arr.shape[1:])):
                raise ValueError(f"{self.name}: expected inputs of shape {_describe_shape(t.shape)}"
                                 f"{'' if n == 1 else ' for ' + t.node.layer.name}, got "
                                 f"{arr.shape}")
            arrays.append(arr)
        if len({len(a) for a in arrays}) > 1:
            raise ValueError(f"{what}: the inputs have different numbers of samples: "
                             f"{[len(a) for a in arrays]}")
        return arrays

    def forward(self, inputs, training=False):
        """The outputs for `inputs` (an array, a list or a dict, as the model's
        inputs): each node's layer.forward in order. The arrays returned are
        the layers' buffers (see layers.base)."""
        return self._run_forward(self._check_inputs(inputs, f"{self.name}: inputs"), training)

    def _run_forward(self, arrays, training, extra=None, last_step=False):
        """forward on arrays already checked (the training loop's own batches).
        extra: {id(layer): keyword arguments} added to those layers' calls
        (generation passes the attention layers their key/value caches).
        last_step: inference of the outputs' last time step only (generation:
        the next token's logits): the steps _last_step_plan cuts run on their
        inputs' last step."""
        context = self._context()
        if context.nodes is None:
            context.nodes = ([], [])
        contexts = context.nodes[_TRAINING if training else _INFERENCE]
        if len(contexts) != len(self._steps):
            contexts[:] = [CallContext() for _ in self._steps]
        values = [None] * self._n_tensors
        for tid, arr in zip(self._input_ids, arrays):
            values[tid] = arr
        cuts = self._last_step_plan() if last_step and not training else None
        for k, (step, ctx) in enumerate(zip(self._steps, contexts)):
            step.layer._local.context = ctx
            more = extra.get(id(step.layer)) if extra else None
            if cuts is not None and cuts[k]:
                step.run_last_step(values, more)
            else:
                step.run(values, training, more)
        if training:
            context.saved = True  # backward may follow
        if self._single_output:
            return values[self._output_ids[0]]
        return self._pack_outputs([values[tid] for tid in self._output_ids])

    def _last_step_plan(self):
        """Which steps may run on their inputs' last time step only when only
        the outputs' last step is wanted: for each step, True or False.

        In a causal language model, the next token's logits are a function of
        the last position of every row-wise layer after the last attention —
        but of every position of the keys and values the attention reads. So,
        from the outputs back (as backward visits the graph): a tensor is
        needed at every step when a consumer needs it so (a layer of
        time_steps None, the key/value arguments of a "query" layer, a step
        not cut); a step is cut when none of its outputs is needed whole and
        its inputs have a time axis (axis 1 from the model's inputs, kept by
        "each" and "all" layers and by the query of "query" layers)."""
        if self._last_step_cuts is not None:
            return self._last_step_cuts
        timed = [False] * self._n_tensors  # axis 1 is time
        for tid in self._input_ids:
            timed[tid] = True
        sliced = []  # per step, the input tensors it would read at their last step
        for step in self._steps:
            mode = step.layer.time_steps
            if mode == "each" and step.kind in (0, 1):
                cut_ins = list(step.in_ids)
            elif mode == "query" and step.kind == 2 and isinstance(step.args[0], _Slot):
                cut_ins = [step.args[0].tid]
            else:
                cut_ins = None
            ok = cut_ins is not None and all(timed[t] for t in cut_ins)
            sliced.append(cut_ins if ok else None)
            for tid in step.out_ids:
                timed[tid] = ok or (mode == "all" and all(timed[t] for t in step.in_ids))
        whole = [not timed[tid] for tid in range(self._n_tensors)]  # needed at every step
        cuts = [False] * len(self._steps)
        for k in range(len(self._steps) - 1, -1, -1):
            step, cut_ins = self._steps[k], sliced[k]
            cuts[k] = cut_ins is not None and not any(whole[t] for t in step.out_ids)
            # An input is read whole unless the step is cut and reads it only at
            # its last step (self-attention's query is also its value: whole).
            read_whole = set(step.in_ids)
            if cuts[k]:
                read_whole -= set(cut_ins)
                if step.kind == 2:
                    read_whole |= _slots(step.args[1:]) | _slots(step.kwargs)
            for tid in read_whole:
                whole[tid] = True
        self._last_step_cuts = cuts
        return cuts

    def _pack_outputs(self, arrays):
        spec = self._outputs_spec
        if self._single_output:
            return arrays[0]
        if isinstance(spec, dict):
            return dict(zip(spec, arrays))
        return list(arrays)

    def _output_list(self, grads, what="dy"):
        spec = self._outputs_spec
        if self._single_output:
            return list(grads) if isinstance(grads, (list, tuple)) and len(grads) == 1 else [grads]
        if isinstance(spec, dict):
            return [grads.get(k) for k in spec] if isinstance(grads, dict) else list(grads)
        if not isinstance(grads, (list, tuple)) or len(grads) != len(self.outputs):
            raise ValueError(f"{self.name}: {what} must be a list of {len(self.outputs)} "
                             f"gradients, one per output")
        return list(grads)

    def backward(self, dy):
        """Backpropagation through the graph from dy = ∂L/∂outputs (one array
        per output, None for an output L does not depend on). Fills every
        layer's grads; returns ∂L/∂inputs when input_grad_needed (else None)."""
        return self._run_backward(self._output_list(dy), None)

    def backward_from_logits(self, dz):
        """backward from ∂L/∂(the logits of the softmax that ends the model)."""
        return self._run_backward([dz], (True,))

    @property
    def outputs_softmax(self):
        """True when the model's one output comes out of a softmax whose node
        can take the fused gradient p − onehot (trainer.py)."""
        return len(self.outputs) == 1 and self.output_ends_in_softmax(0)

    def output_ends_in_softmax(self, k):
        """Output k is the output of a softmax (Dense(activation="softmax"),
        Softmax, a nested model ending in one) that nothing else reads."""
        tid = self._output_ids[k]
        if tid in self._input_ids or self._consumers[tid] or self._output_ids.count(tid) > 1:
            return False
        step = next(s for s in self._steps if tid in s.out_ids)
        return step.single and bool(getattr(step.layer, "outputs_softmax", False))

    def _backward_plan(self, output_grads, from_logits):
        """The plan for these seeds and which layers now have trainable weights (cached:
        layer.trainable and LoRA change them)."""
        key = (self.input_grad_needed, self._accumulating, from_logits,
               tuple(g is not None for g in output_grads),
               tuple(bool(layer.trainable_params) for layer in self._leaves))
        plan = self._backward_plans.get(key)
        if plan is None:
            plan = self._backward_plans[key] = self._plan_backward(key)
        return plan

    def _run_backward(self, output_grads, from_logits, plan=None):
        """backward from one gradient per output (None: no loss on it); `plan`
        is _backward_plan's, which a training loop decides once."""
        context = self._context()
        if context.nodes is None or not context.saved:
            raise BackwardBeforeForwardError(
                f"{self.name}: backward() needs a forward(x, training=True) first")
        contexts = context.nodes[_TRAINING]
        if plan is None:
            plan = self._backward_plan(output_grads, from_logits)
        sums = _GradientSum(self._n_tensors, context.buffers)
        for tid, g in zip(self._output_ids, output_grads):
            if g is not None:
                sums.add(tid, g, self.name)
        grads = sums.grads
        for b in plan:
            step = b.step
            layer = step.layer
            dy = grads[step.out_ids[0]] if step.single else tuple(grads[t] for t in step.out_ids)
            layer._local.context = contexts[b.index]
            layer.input_grad_needed = b.input_grad_needed
            if b.accumulate:
                result = _backward_adding_grads(layer, dy, b.logits, contexts[b.index])
            elif b.logits:
                result = layer.backward_from_logits(dy)
            else:
                result = layer.backward(dy)
            if not b.input_grad_needed:
                continue
            if len(step.in_ids) == 1:
                result = (result,)
            elif result is None or len(result) != len(step.in_ids):
                raise ValueError(f"{layer.name}: backward must return {len(step.in_ids)} "
                                 f"gradients, one per tensor input, got "
                                 f"{'None' if result is None else len(result)}")
            for tid, need, g in zip(step.in_ids, b.need_inputs, result):
                if need and g is not None:
                    sums.add(tid, g, layer.name)
        if not self.input_grad_needed:
            return None
        dx = [grads[tid] for tid in self._input_ids]
        return dx[0] if len(dx) == 1 else dx

    def _plan_backward(self, key):
        """Which nodes backward runs, in reverse order. A float tensor needs
        ∂L/∂it when trainable weights lie upstream of it (or it is an input
        and input_grad_needed), an integer one (ids, a mask) never; a node
        runs when it receives a gradient and either has trainable weights or
        passes gradients on. The first node of a layer to run writes its
        grads, later ones add to them."""
        input_grad_needed, accumulate_all, from_logits, seeded, _ = key
        needs = [False] * self._n_tensors
        for tid in self._input_ids:
            needs[tid] = input_grad_needed and self._differentiable[tid]
        for step in self._steps:
            own = bool(step.layer.trainable_params)
            for tid in step.out_ids:
                needs[tid] = self._differentiable[tid] and (
                    own or any(needs[t] for t in step.in_ids))
        reached = [False] * self._n_tensors
        logits = set()
        for k, (tid, given) in enumerate(zip(self._output_ids, seeded)):
            reached[tid] = given and needs[tid]
            if from_logits and from_logits[k]:
                logits.add(tid)
        plan, written = [], set()
        for index in range(len(self._steps) - 1, -1, -1):
            step = self._steps[index]
            if not any(reached[t] and needs[t] for t in step.out_ids):
                continue
            need_inputs = [needs[t] for t in step.in_ids]
            for t, need in zip(step.in_ids, need_inputs):
                reached[t] = reached[t] or need
            own = bool(step.layer.trainable_params)
            accumulate = own and (accumulate_all or id(step.layer) in written)
            if own:
                written.add(id(step.layer))
            plan.append(_BackwardStep(index, step, need_inputs, accumulate,
                                      step.single and step.out_ids[0] in logits))
        return plan

    # ------------------------------------------------------------ as a layer

    def build_for_call(self, *args, **kwargs):
        self.built = True

    def compute_output_spec(self, inputs, training=None):
        given = graph.flat_tensors(inputs)
        if len(given) != len(self.inputs):
            raise ValueError(f"{self.name}: called on {len(given)} tensors, the model has "
                             f"{len(self.inputs)} inputs")
        for t, spec in zip(given, self.inputs):
            if len(t.shape) != len(spec.shape) or any(
                    a is not None and b is not None and a != b
                    for a, b in zip(t.shape[1:], spec.shape[1:])):
                raise ValueError(f"{self.name}: expected inputs of shape "
                                 f"{_describe_shape(spec.shape)}, got {t.shape}")
        outputs = [graph.SymbolicTensor((given[0].shape[0],) + t.shape[1:], t.dtype, None)
                   for t in self.outputs]
        return outputs[0] if len(outputs) == 1 else outputs

    def get_config(self):
        from . import saving
        return saving.graph_config(self)

    @classmethod
    def from_config(cls, config):
        from . import saving
        return saving.model_from_graph_config(config)

    def summary(self, print_fn=print):
        from . import saving
        saving.print_summary(self, print_fn)

    def save(self, path, extras=None):
        """Architecture, compile settings, weights and training state in one
        safetensors file; `extras`, a dict of JSON values, is stored beside
        them (fz.saving.load_extras reads it back). See saving.py."""
        from . import saving
        saving.save_model(self, path, extras=extras)

    def save_weights(self, path, lora_only=False):
        """Every weight (saving.py); lora_only=True: the LoRA adapters alone, in a
        safetensors file (lora.py)."""
        from . import lora, saving
        if lora_only:
            lora.save_adapters(self, path)
        else:
            saving.save_weights(self, path)

    def load_weights(self, path, lora_only=False):
        """lora_only=True: adapters saved with save_weights(..., lora_only=True),
        applied to this (base) model (lora.load_adapters)."""
        from . import lora, saving
        if lora_only:
            lora.load_adapters(self, path)
        else:
            saving.load_weights(self, path)

    # ------------------------------------------------------------ LoRA (lora.py)

    def enable_lora(self, rank, target=None, lora_alpha=None, a_initializer="he_uniform",
                    b_initializer="zeros"):
        """Rank-`rank` adapters on the layers `target` picks (default: the query
        and value projections of every attention layer); every other weight
        freezes. Returns the adapted layers' paths. See fromzero.lora."""
        from . import lora
        return lora.enable_lora(self, rank, target, lora_alpha, a_initializer, b_initializer)

    def merge_lora(self):
        """Fold every adapter into its kernel, W ← W + (α/r)·A·B (fromzero.lora)."""
        from . import lora
        lora.merge_lora(self)


def _backward_adding_grads(layer, dy, logits, context):
    """layer.backward for a second (third, ...) use of a layer in one pass:
    its parameter gradients are added to those of the first use. A plain
    layer writes its grads, so it writes them into scratch arrays here,
    which are then added; a model passes the request on to its own nodes."""
    backward = layer.backward_from_logits if logits else layer.backward
    layer._accumulating = True
    if isinstance(layer, Model):
        try:
            return backward(dy)
        finally:
            layer._accumulating = False
    own = layer.grads
    scratch = [context.buffers.get(("scratch gradient", i), g.shape) for i, g in enumerate(own)]
    layer.grads = scratch
    try:
        result = backward(dy)
    finally:
        layer.grads = own
        layer._accumulating = False
    for g, s in zip(own, scratch):
        np.add(g, s, out=g)
    return result


class Sequential(Model):
    """A stack of layers, each feeding the next: a Model whose graph is a chain.

        model = fz.Sequential([fz.layers.Dense(128, activation="relu"),
                               fz.layers.Dense(10, activation="softmax")])

    The graph is built as soon as the input shape is known: from fz.Input(...)
    as the first element, input_shape= on the first layer, build((None, ...)),
    or the first data the model sees. Built from data alone (no Input, no
    input_shape), a model that starts with a Dense and receives samples of
    more than one axis (images) gets a Flatten in front, as Keras's MNIST
    tutorial writes it and the textbook's program leaves it out: it shows in
    model.layers and summary() like any layer.
    """

    def __init__(self, layers=None, name=None, trainable=True):
        Layer.__init__(self, name=name or unique_name("sequential"), trainable=trainable)
        self._init_trainer()
        self._layers = []
        self._input = None  # the fz.Input given as the first element, if any
        self._built_for = None  # (input shape, dtype) of the graph once built
        self._build_lock = threading.Lock()
        self.built = False
        for layer in layers or []:
            self.add(layer)

    @property
    def layers(self):
        return list(self._layers)

    def _unique_layers(self):
        return self._layers

    def add(self, layer):
        """Append a layer (or, first, an fz.Input). A built model rebuilds its graph."""
        if graph.is_symbolic(layer):
            if self._layers or self._input is not None:
                raise ValueError(f"{self.name}: an Input can only be the first element of a "
                                 f"Sequential")
            if not isinstance(layer.node.layer, InputLayer):
                raise ValueError(f"{self.name}: only tensors made by fz.Input can start a "
                                 f"Sequential, got {layer.name}")
            self._input = layer
            return
        if isinstance(layer, InputLayer):
            return self.add(layer.output)
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential.add expects a fromzero layer, got {type(layer).__name__}")
        if any(layer is other for other in self._layers):
            raise ValueError(f"{self.name}: layer {layer.name} is already in the model")
        self._layers.append(layer)
        if self.built or self._known_input_shape() is not None:
            try:
                self._build_graph()
            except Exception:
                self._layers.pop()
                if self.built:
                    self._build_graph()
                raise

    def pop(self):
        """Remove the last layer (the graph is rebuilt without it)."""
        if not self._layers:
            raise IndexError(f"{self.name}: there are no layers to pop")
        layer = self._layers.pop()
        self.built = False
        if self._layers and self._known_input_shape() is not None:
            self._build_graph()
        return layer

    def _known_input_shape(self):
        """(shape with the batch axis, dtype) when known before any data: an
        Input, input_shape= on the first layer, or a model as first layer."""
        if self._input is not None:
            return self._input.shape, self._input.dtype
        if self._built_for is not None:  # built before (build(), or data): the same inputs
            return self._built_for
        if not self._layers:
            return None
        first = self._layers[0]
        if isinstance(first, Model) and first.built and len(first.inputs) == 1:
            return first.inputs[0].shape, first.inputs[0].dtype
        if first._build_input_shape is not None:
            return first._build_input_shape, "float32"
        return None

    def build(self, input_shape=None):
        """Build the graph and every layer's weights for inputs of
        `input_shape`, Keras's shape with the batch axis: (None, 784)."""
        if input_shape is None:
            known = self._known_input_shape()
            if known is None:
                raise ValueError(f"{self.name}: build needs an input shape, e.g. "
                                 f"build((None, 784)), or an fz.Input as the first layer")
            self._build_graph()
            return
        shape = tuple(input_shape)
        if len(shape) < 2:
            raise ValueError(f"{self.name}: build takes Keras's input shape with the batch axis "
                             f"first, e.g. (None, 784); got {input_shape!r}")
        self._build_graph((None,) + shape[1:])

    def build_for_call(self, *args, **kwargs):
        if not self.built:
            first = args[0] if args else next(iter(kwargs.values()))
            (t,) = graph.flat_tensors(first)
            self._build_graph(t.shape, t.dtype)

    def _build_graph(self, shape=None, dtype="float32"):
        """The chain Input → layer → layer → ..., each layer built on the way
        (weights drawn from the model's own generator, see utils.set_random_seed)."""
        if not self._layers:
            raise ValueError(f"{self.name}: the model has no layers: add some before using it")
        if shape is None:
            shape, dtype = self._known_input_shape()
        if self._input is not None:
            if shape != self._input.shape:
                raise ValueError(f"{self.name}: the model's Input has shape {self._input.shape}, "
                                 f"not {shape}")
            x = inputs = self._input
        else:
            from .layers.core import Input
            x = inputs = Input(shape=shape[1:], dtype=dtype, name=f"{self.name}_input")
        with utils.using_generator(self._generator()):
            for layer in self._layers:
                x = layer(x)
        self._init_graph(inputs, x)
        self._built_for = (shape, dtype)

    def _build_from_data(self, arrays):
        """Build for the first batch the model sees (see the class docstring)."""
        (x,) = arrays
        if isinstance(self._layers[0] if self._layers else None, Dense) and x.ndim > 2:
            self._layers.insert(0, Flatten())
        self._build_graph((None,) + x.shape[1:])

    def _check_inputs(self, inputs, what):
        if not self.built:
            if not self._layers:
                raise ValueError(f"{self.name}: the model has no layers: add some before using it")
            data = inputs[0] if isinstance(inputs, (list, tuple)) and len(inputs) == 1 \
                and isinstance(inputs[0], np.ndarray) else inputs
            data = _convert(data, "float32", what)
            with self._build_lock:  # two threads predicting at once build it once
                if not self.built:
                    self._build_from_data([data])
        return super()._check_inputs(inputs, what)

    def get_config(self):
        from . import saving
        return saving.sequential_config(self)

    @classmethod
    def from_config(cls, config):
        from . import saving
        return saving.sequential_from_config(config)


from .saving import load_model  # noqa: E402 — saving imports this module


# A GPT built from these models' layers, and the bridge to nanoGPT (gpt.py).
from .gpt import gpt, gpt_attention, gpt_from_nanogpt, gpt_to_nanogpt  # noqa: E402
