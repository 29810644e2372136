"""Seeds, argument checks, and the finite-difference gradient check used to verify every layer and loss."""

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


def check_gradients(target, x, y_true=None, epsilon=1e-3, seed=0):
    """Compare analytic gradients with central finite differences.

    ``target`` is a layer (then ``x`` is its input) or a loss (then ``x`` is
    ``y_pred`` and ``y_true`` the targets). For a layer the scalar checked is
    ``L = Σ forward(x) · r + penalty`` for a fixed random r (penalty: the
    layer's weight regularization, if any), so backward(r) must return ∂L/∂x
    and fill ``layer.grads`` with ∂L/∂params. Each derivative is also
    estimated as (L(θ + ε) − L(θ − ε)) / 2ε, in float64 sums of float32 kernels.

    Returns {name: relative error ‖analytic − numeric‖ / (‖analytic‖ + ‖numeric‖)},
    with names "x" and "param_0", "param_1", ... (or "y_pred" for a loss).
    Errors below ~1e-2 are float32 rounding; a wrong gradient gives ~1.
    """
    rng = np.random.default_rng(seed)
    x = np.array(x, dtype=np.float32)
    # Stochastic layers (Dropout) must draw the same randomness at every
    # evaluation, so the generator they draw from is rewound before each one.
    gen = generator()
    start_state = gen.bit_generator.state
    if hasattr(target, "gradient"):  # a loss
        def objective():
            return float(target(y_true, x))
        analytic = {"y_pred": np.asarray(target.gradient(y_true, x), dtype=np.float64)}
        arrays = {"y_pred": x}
    else:  # a layer
        r = rng.standard_normal(np.shape(target.forward(x, training=True))).astype(np.float32)

        penalty = getattr(target, "regularization_loss", lambda: 0.0)

        def objective():
            gen.bit_generator.state = start_state
            y = target.forward(x, training=True).astype(np.float64)
            return float(np.sum(y * r)) + penalty()
        objective()
        dx = target.backward(r)
        analytic = {"x": np.array(dx, dtype=np.float64)}
        arrays = {"x": x}
        for i, (p, g) in enumerate(zip(target.params, target.grads)):
            analytic[f"param_{i}"] = np.array(g, dtype=np.float64)
            arrays[f"param_{i}"] = p
    report = {}
    for name, arr in arrays.items():
        numeric = np.zeros(arr.shape, dtype=np.float64)
        flat, out = arr.reshape(-1), numeric.reshape(-1)
        for i in range(flat.size):
            saved = flat[i]
            flat[i] = saved + epsilon
            plus = objective()
            flat[i] = saved - epsilon
            minus = objective()
            flat[i] = saved
            out[i] = (plus - minus) / (2 * epsilon)
        a = analytic[name]
        denom = np.linalg.norm(a) + np.linalg.norm(numeric)
        report[name] = 0.0 if denom == 0 else float(np.linalg.norm(a - numeric) / denom)
    return report


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


class Buffers:
    """Reusable arrays, allocated once per (name, shape, dtype).

    A training loop sees at most two batch shapes (the full batch and the
    last, smaller one), so each buffer is allocated at most twice per fit and
    never inside the steady state of a training step.
    """

    def __init__(self):
        self._arrays = {}

    def get(self, name, shape, dtype=np.float32):
        key = (name, tuple(shape), np.dtype(dtype).str)
        arr = self._arrays.get(key)
        if arr is None:
            arr = self._arrays[key] = np.empty(shape, dtype=dtype)
        return arr


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


def profile(model, x, y, steps=50, batch_size=32, warmup=3, restore=True, print_fn=print):
    """Where a training step's time goes: runs `steps` steps of `model` (compiled)
    on batches of (x, y), times every layer's forward and backward, the loss
    and the optimizer update, prints a table of milliseconds and shares of the
    step, and returns it as a Profile. restore=True puts the weights and the
    optimizer state back afterwards. Details: fromzero/profiler.py."""
    from .profiler import profile as run_profile
    return run_profile(model, x, y, steps=steps, batch_size=batch_size, warmup=warmup,
                       restore=restore, print_fn=print_fn)


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
