"""Symbolic tensors and nodes: what a functional model is made of.

``fz.Input(shape)`` returns a SymbolicTensor: a shape and a dtype, no values.
Calling a layer on symbolic tensors computes nothing; it records a Node (this
layer, called on these tensors with these other arguments) and returns new
symbolic tensors whose shapes the layer infers (``compute_output_shape``).
``fz.Model(inputs, outputs)`` then walks back from the outputs through the
nodes to the inputs, and from then on runs the nodes in that order on arrays
(models.Model.forward) and in the reverse order for backpropagation.

    x = fz.Input((784,))                       SymbolicTensor (None, 784)
    h = fz.layers.Dense(64)(x)                 Node(dense, [x]) → SymbolicTensor (None, 64)
    y = fz.layers.Dense(10)(h)                 Node(dense_1, [h]) → SymbolicTensor (None, 10)
    model = fz.Model(x, y)
"""


class SymbolicTensor:
    """A placeholder for the arrays that will flow through the graph: its
    shape (None for the batch axis and any axis whose size is free), dtype,
    and the node that produces it (``node``, output number ``index``)."""

    __slots__ = ("shape", "dtype", "name", "node", "index")

    def __init__(self, shape, dtype, name, node=None, index=0):
        self.shape = tuple(None if d is None else int(d) for d in shape)
        self.dtype = dtype
        self.name = name
        self.node = node
        self.index = index

    @property
    def ndim(self):
        return len(self.shape)

    def __repr__(self):
        return f"<SymbolicTensor shape={self.shape}, dtype={self.dtype}, name={self.name}>"

    def __array__(self, *args, **kwargs):
        raise TypeError(f"{self.name} is a symbolic tensor (shape {self.shape}): it has no values. "
                        f"It describes a model's graph; pass NumPy arrays to fit, evaluate, "
                        f"predict or model(x)")

    def __bool__(self):
        raise TypeError(f"{self.name} is a symbolic tensor: it has no truth value")

    def __len__(self):
        raise TypeError(f"{self.name} is a symbolic tensor: its batch size is not known")


class Node:
    """One call of a layer in a graph.

    ``args`` and ``kwargs`` are the call's arguments as given, with
    SymbolicTensors where arrays will go; ``inputs`` lists those tensors in
    the order of the layer's forward() parameters (see flat_tensors), which is
    the order in which its backward returns their gradients; ``outputs`` are
    the tensors the call returned.
    """

    __slots__ = ("layer", "args", "kwargs", "inputs", "outputs")

    def __init__(self, layer, args, kwargs, inputs):
        self.layer = layer
        self.args = args
        self.kwargs = kwargs
        self.inputs = inputs
        self.outputs = []

    def __repr__(self):
        return f"<Node {self.layer.name}({', '.join(t.name for t in self.inputs)})>"


def is_symbolic(value):
    return isinstance(value, SymbolicTensor)


def flat_tensors(structure):
    """The SymbolicTensors in nested lists, tuples and dicts, depth first, in order."""
    if isinstance(structure, SymbolicTensor):
        return [structure]
    if isinstance(structure, (list, tuple)):
        return [t for item in structure for t in flat_tensors(item)]
    if isinstance(structure, dict):
        return [t for item in structure.values() for t in flat_tensors(item)]
    return []


def map_tensors(structure, fn):
    """The same structure with every SymbolicTensor t replaced by fn(t)."""
    if isinstance(structure, SymbolicTensor):
        return fn(structure)
    if isinstance(structure, (list, tuple)):
        return type(structure)(map_tensors(item, fn) for item in structure)
    if isinstance(structure, dict):
        return {key: map_tensors(item, fn) for key, item in structure.items()}
    return structure
