"""Seeds, argument checks, reusable buffers and PyDataset: the helpers every other module uses.

This module imports nothing of fromzero (the gradient check is in
fromzero.testing, the profiler in fromzero.profiler), so every other module
can import it."""

import contextlib
import difflib
import math
import numbers
import threading

import numpy as np

_generator = np.random.default_rng()
# The generator of the model building or training in this thread, if any
# (set by `using_generator`); each Python thread has its own.
_current = threading.local()


def set_random_seed(seed):
    """Make everything random in fromzero repeat bit for bit: initial weights,
    shuffling and dropout masks.

    The rule: this seeds one global generator. Each model draws one seed from
    it, the first time it needs randomness — at ``compile``, or ``build`` /
    ``fit`` if those come first — and from then on has its own generator,
    which its weight initialisation (at build), fit's shuffling and its
    Dropout layers draw from. So what a model computes depends only on the
    seed and on the order in which models were compiled (or first built),
    not on anything that runs meanwhile: two models compiled in the main
    thread and then trained at the same time in two Python threads give the
    same weights as when trained one after the other. Call set_random_seed
    before creating and compiling the models it should govern. Layers used on
    their own, outside a model, draw from the global generator directly.
    """
    global _generator
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    _generator = np.random.default_rng(int(seed))


def generator():
    """The generator random draws come from (initializers, dropout, shuffling):
    the one of the model being built or trained in this thread (see
    set_random_seed), else the global one set by set_random_seed."""
    current = getattr(_current, "generator", None)
    return _generator if current is None else current


@contextlib.contextmanager
def using_generator(gen):
    """Inside the `with`, generator() and next_seed() in this thread draw from `gen`."""
    previous = getattr(_current, "generator", None)
    _current.generator = gen
    try:
        yield gen
    finally:
        _current.generator = previous


def next_seed():
    """A fresh 63-bit seed for the C++ counter-based RNG (dropout, shuffling)."""
    return int(generator().integers(0, 2**63 - 1))


def __getattr__(name):
    """fz.utils.check_gradients, kept for old programs: it lives in
    fromzero.testing, imported only when asked for, so that this module
    imports nothing of fromzero."""
    if name == "check_gradients":
        from .testing import check_gradients
        return check_gradients
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def lookup(kind, name, table):
    """table[name.lower()] for a Keras-style string name, or a ValueError that
    suggests the closest valid names."""
    key = name.lower() if isinstance(name, str) else name
    if key in table:
        return table[key]
    close = difflib.get_close_matches(str(key), [str(k) for k in table], n=3)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    known = ", ".join(sorted(str(k) for k in table))
    raise ValueError(f"unknown {kind} {name!r}{hint} (known: {known})")


def array_key(a):
    """Which memory array `a` is: (address, shape, strides). A layer may hand
    out a fresh view of the same weight each time it is asked
    (MultiHeadAttention's Keras-shaped kernels), so id(a) does not identify a
    weight; whoever keys a dict by this must keep `a` (so its memory) alive,
    so that the address is not reused. (Anything else, by identity: the
    kernels refuse it with the reason.)"""
    if not isinstance(a, np.ndarray):
        return id(a)
    return (a.__array_interface__["data"][0], a.shape, a.strides)


def serialize(obj):
    """A metric, loss, initializer or regularizer as saved files hold it:
    {"class": its class name, "config": its get_config()} — keyed by class,
    so every constructor argument (a custom name, k, average, ...) comes back."""
    return {"class": type(obj).__name__, "config": obj.get_config()}


def deserialize(kind, spec, classes):
    """The object serialize(obj) described; `classes` maps lower-case class
    names to classes (each module registers its subclasses, users' too)."""
    if not (isinstance(spec, dict) and set(spec) == {"class", "config"}
            and isinstance(spec["config"], dict)):
        raise ValueError(f"a saved {kind} must be {{'class': name, 'config': {{...}}}}, got {spec!r}")
    cls = lookup(kind, spec["class"], classes)
    return cls.from_config(dict(spec["config"]))


def register_class(cls, classes):
    """Add a public class to `classes` under its lower-case name (for deserialize)."""
    if not cls.__name__.startswith("_"):
        classes[cls.__name__.lower()] = cls


def aligned_empty(shape, dtype=np.float32, alignment=64):
    """An uninitialised C-contiguous array whose data starts on a 64-byte
    boundary: one cache line, one AVX-512 vector. NumPy's own arrays start
    16 bytes past one, so every 64-byte load of a 512-byte row (a row of a
    Dense layer's kernel with 128 units) would straddle two cache lines, which
    halves the speed of the kernels that read whole rows (gemm_nonzero)."""
    dtype = np.dtype(dtype)
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    nbytes = math.prod(shape) * dtype.itemsize
    raw = np.empty(nbytes + alignment, dtype=np.uint8)
    offset = -raw.ctypes.data % alignment
    return raw[offset:offset + nbytes].view(dtype).reshape(shape)


def aligned_zeros(shape, dtype=np.float32):
    """aligned_empty, filled with zeros."""
    arr = aligned_empty(shape, dtype)
    arr.fill(0)
    return arr


class Buffers:
    """Reusable arrays, allocated once per (name, shape, dtype) and reused.

    At most `max_shapes` shapes are kept per name, the oldest dropped first,
    so memory stays bounded whatever sequence of batch sizes arrives. Two
    cover a training loop (the full batch and the last, smaller one), so in
    its steady state a step allocates nothing. Not shared between threads:
    each thread running a layer has its own (layers.base.CallContext).
    """

    def __init__(self, max_shapes=2):
        self._arrays = {}
        self._shapes = {}  # name -> keys of its arrays, oldest first
        self._max_shapes = max_shapes

    def get(self, name, shape, dtype=np.float32):
        key = (name, shape, dtype)
        arr = self._arrays.get(key)
        if arr is None:
            arr = aligned_empty(shape, dtype)
            kept = self._shapes.setdefault(name, [])
            if len(kept) == self._max_shapes:
                del self._arrays[kept.pop(0)]
            kept.append(key)
            self._arrays[key] = arr
        return arr

    def nbytes(self):
        return sum(a.nbytes for a in self._arrays.values())


class Workspace:
    """Reusable arrays that grow rather than multiply: one array per (name,
    dtype), as large as the largest shape asked for so far; ``get`` returns
    a view of its start in the shape asked for. For loops whose shapes change
    at every call (the sentence encoder's batches, each with its own number
    of tokens), where Buffers would allocate — and the OS zero new pages —
    every time: after the largest shape, nothing is allocated. The views of
    one name share memory, so an array is valid until the next ``get`` of its
    name. A drop-in for Buffers in a layer's CallContext.
    """

    def __init__(self):
        self._arrays = {}

    def get(self, name, shape, dtype=np.float32):
        size = math.prod(shape)
        key = (name, np.dtype(dtype))
        arr = self._arrays.get(key)
        if arr is None or arr.size < size:
            arr = self._arrays[key] = np.empty(size, dtype)
        return arr[:size].reshape(shape)

    def nbytes(self):
        return sum(a.nbytes for a in self._arrays.values())


class PyDataset:
    """Batches for fit, evaluate and predict, computed on demand (Keras 3's
    ``keras.utils.PyDataset``). Subclass it and define

        __len__()        the number of batches in an epoch
        __getitem__(i)   batch i: (x, y) or (x, y, sample_weight); x alone for predict
        on_epoch_end()   optional, called after every epoch (e.g. to reshuffle)

    fit(dataset, epochs=...) then draws batches 0, 1, ..., len − 1 each epoch
    (in a shuffled order with shuffle=True) or `steps_per_epoch` of them. Any
    object with __len__ and __getitem__ works the same; this base class only
    accepts Keras's constructor arguments. fromzero reads the batches in the
    calling thread: workers > 1 and use_multiprocessing are refused.
    """

    def __init__(self, workers=1, use_multiprocessing=False, max_queue_size=10):
        if workers not in (None, 0, 1) or use_multiprocessing:
            raise ValueError("PyDataset: fromzero reads batches in the training thread: "
                             "workers > 1 and use_multiprocessing=True are not supported")
        self.workers = workers
        self.use_multiprocessing = use_multiprocessing
        self.max_queue_size = max_queue_size

    def __len__(self):
        raise NotImplementedError

    def __getitem__(self, index):
        raise NotImplementedError

    def on_epoch_end(self):
        pass

    @property
    def num_batches(self):
        return len(self)


def check_number(owner, name, value, low=-math.inf, high=math.inf, low_open=False, high_open=False):
    """`value` as a float, after checking it is a finite real number (NumPy
    scalars included) in the interval; otherwise a ValueError naming the
    owner, the argument, the interval and the value received."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise ValueError(f"{owner}: {name} must be a number in {interval}, got {value!r}")
    return float(value)


def check_positive_int(owner, name, value):
    """`value` as an int after checking it is a whole number >= 1."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{owner}: {name} must be a positive integer, got {value!r}")
    return int(value)


def to_categorical(y, num_classes=None):
    """Class labels as one-hot rows, as Keras: label k becomes a row of zeros
    with a 1 at index k. Shape (..., num_classes) for labels of shape (...);
    labels of shape (n, 1) give (n, num_classes). float32.

    num_classes defaults to the largest label + 1. Labels must be whole
    numbers (3 or 3.0) in [0, num_classes): anything else is a ValueError
    naming the first bad label (Keras would wrap a negative label around or
    truncate 2.5 to 2 without a word).

        >>> to_categorical([0, 2, 1])
        array([[1., 0., 0.],
               [0., 0., 1.],
               [0., 1., 0.]], dtype=float32)
    """
    labels = np.asarray(y)
    if labels.dtype.kind == "f":
        bad = ~np.isfinite(labels) | (labels != np.round(labels))
        if np.any(bad):
            raise ValueError(f"to_categorical: labels must be whole numbers (class indices), got "
                             f"{labels[bad][0]}")
    elif labels.dtype.kind not in "iub":
        raise TypeError(f"to_categorical: labels must be integers, got dtype {labels.dtype}")
    shape = labels.shape
    if len(shape) > 1 and shape[-1] == 1:
        shape = shape[:-1]
    flat = labels.reshape(-1)
    if num_classes is None:
        if flat.size == 0:
            raise ValueError("to_categorical: no labels to infer num_classes from; pass num_classes")
        num_classes = int(flat.max()) + 1
    else:
        num_classes = check_positive_int("to_categorical", "num_classes", num_classes)
    if flat.size and (flat.min() < 0 or flat.max() >= num_classes):
        bad = flat[(flat < 0) | (flat >= num_classes)][0]
        raise ValueError(f"to_categorical: label {bad} is outside [0, {num_classes})")
    onehot = np.zeros((flat.size, num_classes), dtype=np.float32)
    onehot[np.arange(flat.size), flat.astype(np.int64)] = 1.0
    return onehot.reshape(shape + (num_classes,))
