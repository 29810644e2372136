"""What the benchmarks compare: one operation, done each engine's best way.

A ``Case`` is one operation on fixed shapes (a GEMM, an activation, a loss,
an optimizer step). For every engine it holds a *builder*: a function that
allocates that engine's inputs and outputs once (the same values for every
engine) and returns the zero-argument call to time. Outputs go into those
preallocated arrays (``out=``) wherever the engine allows, so the timings
measure arithmetic, not allocation — and fresh pages, which are slow to
touch on this kind of host, are touched by the warm-up, not by the timing.

The engines of one case share their arrays (``shared_arrays``): measured here
at 4096×1024, the same ReLU call on two sets of identical arrays took 800 and
1150 µs — arrays of that size are different physical pages whose spread over
the L3 cache's sets decides how much stays cached between calls — and with
arrays of its own, each engine drew its luck separately, a ±15% swing in the
ratio. On the same memory, what differs is the kernels.

Every shared array starts 64 bytes past a page boundary (``placed``), where
both fromzero (``fz.utils.aligned_empty``) and PyTorch (``torch.empty``) put
a large array of their own. Left where NumPy's allocator put them, the
arrays' offsets within their pages depended on which cases ran before:
glibc raises its threshold for serving a request by a fresh mmap each time a
large mapped block is freed, so after the first 4096×1024 case the next ones
came from the heap, one after another — dx 16 bytes past y and 32 past dy
within the page for softmax's backward in a full run, all three at 16 bytes
past a page with ``--cases softmax``. A load whose page offset matches an
older store in flight waits for it (4K aliasing), so the same row timed
0.91× one way and 1.13–1.29× the other, for reasons that were neither
engine's.

``epoch_trainer`` does the same for one epoch of the textbook MLP.

Both front ends import this module: the pytest-benchmark files and
compare.py. An engine that is not installed (PyTorch; SciPy, whose erf the
NumPy GELU needs) simply has no builder.
"""

import math
import weakref
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

import fromzero as fz
import numpy_mlp
import textbook_mlp

try:
    import torch
    import torch.nn.functional as F
    import torch_mlp
    aten = torch.ops.aten  # the kernels autograd calls, which take out=
except ImportError:
    torch = None
try:
    from scipy.special import erf
except ImportError:
    erf = None

ENGINES = ("fromzero", "numpy", "torch")
Act = fz.ops.Activation


def engine_available(engine):
    return engine != "torch" or torch is not None


@dataclass
class Case:
    key: str          # short id for pytest: "gemm_forward_b32"
    label: str        # what the operation is, for tables and benchmark groups
    builders: dict    # engine → builder: () → the call to time
    flops: float = 0.0  # per call (GEMMs), for GFLOP/s

    def prepare(self, engine, warmup=3):
        """The engine's call with inputs allocated and run `warmup` times."""
        call = self.builders[engine]()
        for _ in range(warmup):
            call()
        return call


def make_case(key, label, fromzero, numpy, torch_builder, flops=0.0):
    """A Case with builders for the engines that can run here (numpy=None: NumPy cannot)."""
    builders = {"fromzero": fromzero}
    if numpy is not None:
        builders["numpy"] = numpy
    if torch is not None:
        builders["torch"] = torch_builder
    return Case(key, label, builders, flops)


def random_array(*shape, seed=0):
    """Standard-normal float32 values, the same for every engine that asks with the same seed."""
    return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)


_SHARED = weakref.WeakValueDictionary()


PAGE_BYTES = 4096
PLACE_OFFSET = 64  # bytes past a page boundary: where fz.utils.aligned_empty and torch.empty start a large array


def placed(array):
    """A copy of `array` whose data starts PLACE_OFFSET bytes past a page
    boundary, whatever the allocator did before (see the module's docstring)."""
    raw = np.empty(array.nbytes + PAGE_BYTES + PLACE_OFFSET, np.uint8)
    start = -raw.ctypes.data % PAGE_BYTES + PLACE_OFFSET
    copy = raw[start:start + array.nbytes].view(array.dtype).reshape(array.shape)
    copy[...] = array
    return copy


def shared_arrays(key, *makers):
    """(make() for make in makers), each array made once, placed (``placed``),
    and handed to every engine that asks with the same key while an engine
    still holds it — so the engines of a case time their calls on the same
    memory (see the module's docstring); it is freed once the last engine's
    call is."""
    arrays = []
    for i, make in enumerate(makers):
        array = _SHARED.get((key, i))
        if array is None:
            array = _SHARED[(key, i)] = placed(make())
        arrays.append(array)
    return tuple(arrays)


def as_torch(*arrays):
    """Tensors sharing memory with the NumPy arrays."""
    return [torch.from_numpy(a) for a in arrays]


# ---------------------------------------------------------------- GEMM

MLP_BATCHES = (32, 128, 512)
SQUARE_SIZES = (256, 1024, 2048)


def gemm_forward_case(batch, inputs=784, units=128):
    """Dense forward: relu(X·W + b). fromzero fuses bias and relu into the GEMM."""
    def arrays():
        return shared_arrays(f"gemm_forward_b{batch}", lambda: random_array(batch, inputs, seed=1),
                             lambda: random_array(inputs, units, seed=2),
                             lambda: random_array(units, seed=3),
                             lambda: np.empty((batch, units), np.float32))

    def fromzero():
        x, w, b, out = arrays()
        return lambda: fz.ops.matmul(x, w, bias=b, activation=Act.relu, out=out)

    def numpy():
        x, w, b, out = arrays()

        def call():
            np.matmul(x, w, out=out)
            np.add(out, b, out=out)
            np.maximum(out, 0, out=out)
        return call

    def torch_():
        x, w, b, out = as_torch(*arrays())

        def call():
            torch.addmm(b, x, w, out=out)
            torch.relu_(out)
        return call

    return make_case(f"gemm_forward_b{batch}",
                     f"relu(X·W+b)  ({batch}×{inputs})·({inputs}×{units})",
                     fromzero, numpy, torch_, flops=2.0 * batch * inputs * units)


def gemm_weight_grad_case(batch, inputs=784, units=128):
    """Dense backward, the kernel's gradient: dW = Xᵀ·dY (X read transposed in place)."""
    def arrays():
        return shared_arrays(f"gemm_xt_dy_b{batch}", lambda: random_array(batch, inputs, seed=1),
                             lambda: random_array(batch, units, seed=4),
                             lambda: np.empty((inputs, units), np.float32))

    def fromzero():
        x, dy, out = arrays()
        return lambda: fz.ops.matmul(x, dy, transpose_a=True, out=out)

    def numpy():
        x, dy, out = arrays()
        return lambda: np.matmul(x.T, dy, out=out)

    def torch_():
        x, dy, out = as_torch(*arrays())
        return lambda: torch.mm(x.T, dy, out=out)

    return make_case(f"gemm_xt_dy_b{batch}",
                     f"Xᵀ·dY  ({inputs}×{batch})·({batch}×{units})",
                     fromzero, numpy, torch_, flops=2.0 * batch * inputs * units)


def gemm_input_grad_case(batch, inputs=784, units=128):
    """Dense backward, the input's gradient: dX = dY·Wᵀ (W read transposed in place)."""
    def arrays():
        return shared_arrays(f"gemm_dy_wt_b{batch}", lambda: random_array(batch, units, seed=4),
                             lambda: random_array(inputs, units, seed=2),
                             lambda: np.empty((batch, inputs), np.float32))

    def fromzero():
        dy, w, out = arrays()
        return lambda: fz.ops.matmul(dy, w, transpose_b=True, out=out)

    def numpy():
        dy, w, out = arrays()
        return lambda: np.matmul(dy, w.T, out=out)

    def torch_():
        dy, w, out = as_torch(*arrays())
        return lambda: torch.mm(dy, w.T, out=out)

    return make_case(f"gemm_dy_wt_b{batch}",
                     f"dY·Wᵀ  ({batch}×{units})·({units}×{inputs})",
                     fromzero, numpy, torch_, flops=2.0 * batch * inputs * units)


def gemm_square_case(n):
    """C = A·B for square n×n matrices: the GEMM at full tilt."""
    def arrays():
        return shared_arrays(f"gemm_square_{n}", lambda: random_array(n, n, seed=5),
                             lambda: random_array(n, n, seed=6), lambda: np.empty((n, n), np.float32))

    def fromzero():
        a, b, out = arrays()
        return lambda: fz.ops.matmul(a, b, out=out)

    def numpy():
        a, b, out = arrays()
        return lambda: np.matmul(a, b, out=out)

    def torch_():
        a, b, out = as_torch(*arrays())
        return lambda: torch.mm(a, b, out=out)

    return make_case(f"gemm_square_{n}", f"A·B  square {n}", fromzero, numpy, torch_,
                     flops=2.0 * n ** 3)


GEMM_CASES = ([make(b) for make in (gemm_forward_case, gemm_weight_grad_case, gemm_input_grad_case)
               for b in MLP_BATCHES]
              + [gemm_square_case(n) for n in SQUARE_SIZES])


# ---------------------------------------------------------------- activations

ACTIVATIONS = ("relu", "leaky_relu", "sigmoid", "tanh", "gelu", "softmax", "log_softmax")
# A hidden layer of a small MLP (128×1024), and a batch of GPT tokens or a
# big layer (4096×1024, 16 MiB per array: beyond the caches).
KERNEL_SHAPES = ((128, 1024), (4096, 1024))
LEAKY_SLOPE = 0.2
INV_SQRT2 = 1 / math.sqrt(2)
INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)


def shape_key(shape):
    """'' for the first shape (the keys of earlier records), '_4096x1024' for others."""
    return "" if shape == KERNEL_SHAPES[0] else f"_{shape[0]}x{shape[1]}"


def numpy_activation(name, x, y, dy, dx):
    """NumPy's (forward, backward) calls for y = f(x) and dx = dy·f'(x), written in place."""
    if name == "relu":
        return (lambda: np.maximum(x, 0, out=y),
                lambda: np.multiply(dy, y > 0, out=dx))
    if name == "leaky_relu":
        def forward():                      # max(x, αx) for α < 1
            np.multiply(x, LEAKY_SLOPE, out=y)
            np.maximum(x, y, out=y)

        def backward():                     # dy where y > 0, else α·dy
            np.multiply(dy, LEAKY_SLOPE, out=dx)
            np.copyto(dx, dy, where=y > 0)
        return forward, backward
    if name == "sigmoid":
        def forward():                      # 1 / (1 + e^−x)
            np.negative(x, out=y)
            np.exp(y, out=y)
            np.add(y, 1, out=y)
            np.reciprocal(y, out=y)

        def backward():                     # dy · y (1 − y)
            np.subtract(1, y, out=dx)
            np.multiply(dx, y, out=dx)
            np.multiply(dx, dy, out=dx)
        return forward, backward
    if name == "tanh":
        def backward():                     # dy · (1 − y²)
            np.square(y, out=dx)
            np.subtract(1, dx, out=dx)
            np.multiply(dx, dy, out=dx)
        return lambda: np.tanh(x, out=y), backward
    if name == "gelu":
        scratch = np.empty_like(x)

        def forward():                      # x Φ(x) = x/2 (1 + erf(x/√2))
            np.multiply(x, INV_SQRT2, out=y)
            erf(y, out=y)
            np.add(y, 1, out=y)
            np.multiply(y, x, out=y)
            np.multiply(y, 0.5, out=y)

        def backward():                     # dy · (Φ(x) + x φ(x))
            np.multiply(x, INV_SQRT2, out=dx)
            erf(dx, out=dx)
            np.add(dx, 1, out=dx)
            np.multiply(dx, 0.5, out=dx)            # Φ(x)
            np.square(x, out=scratch)
            np.multiply(scratch, -0.5, out=scratch)
            np.exp(scratch, out=scratch)
            np.multiply(scratch, x, out=scratch)
            np.multiply(scratch, INV_SQRT_2PI, out=scratch)  # x φ(x)
            np.add(dx, scratch, out=dx)
            np.multiply(dx, dy, out=dx)
        return forward, backward
    if name == "softmax":
        def forward():                      # e^(x − max) / Σ e^(x − max), row by row
            np.subtract(x, x.max(axis=1, keepdims=True), out=y)
            np.exp(y, out=y)
            np.divide(y, y.sum(axis=1, keepdims=True), out=y)

        def backward():                     # y · (dy − Σ dy·y), row by row
            np.multiply(dy, y, out=dx)
            row_dot = dx.sum(axis=1, keepdims=True)
            np.subtract(dy, row_dot, out=dx)
            np.multiply(dx, y, out=dx)
        return forward, backward
    if name == "log_softmax":
        scratch = np.empty_like(x)

        def forward():                      # x − max − log Σ e^(x − max), row by row
            np.subtract(x, x.max(axis=1, keepdims=True), out=y)
            np.exp(y, out=scratch)
            np.subtract(y, np.log(scratch.sum(axis=1, keepdims=True)), out=y)

        def backward():                     # dy − e^y Σ dy, row by row
            np.exp(y, out=dx)
            np.multiply(dx, dy.sum(axis=1, keepdims=True), out=dx)
            np.subtract(dy, dx, out=dx)
        return forward, backward
    raise ValueError(name)


def torch_activation(name, x, y, dy, dx):
    """PyTorch's (forward, backward) calls: the ATen kernels autograd runs, with out=."""
    forward = {
        "relu": lambda: torch.clamp_min(x, 0, out=y),
        "leaky_relu": lambda: aten.leaky_relu.out(x, LEAKY_SLOPE, out=y),
        "sigmoid": lambda: torch.sigmoid(x, out=y),
        "tanh": lambda: torch.tanh(x, out=y),
        "gelu": lambda: aten.gelu.out(x, out=y),
        "softmax": lambda: torch.softmax(x, 1, out=y),
        "log_softmax": lambda: aten._log_softmax.out(x, 1, False, out=y),
    }[name]
    backward = {
        "relu": lambda: aten.threshold_backward.grad_input(dy, y, 0.0, grad_input=dx),
        "leaky_relu": lambda: aten.leaky_relu_backward.grad_input(dy, x, LEAKY_SLOPE, False,
                                                                  grad_input=dx),
        "sigmoid": lambda: aten.sigmoid_backward.grad_input(dy, y, grad_input=dx),
        "tanh": lambda: aten.tanh_backward.grad_input(dy, y, grad_input=dx),
        "gelu": lambda: aten.gelu_backward.grad_input(dy, x, grad_input=dx),
        "softmax": lambda: aten._softmax_backward_data.out(dy, y, 1, torch.float32,
                                                           grad_input=dx),
        "log_softmax": lambda: aten._log_softmax_backward_data.out(dy, y, 1, torch.float32,
                                                                   out=dx),
    }[name]
    return forward, backward


def fromzero_activation(name, x, y, dy, dx):
    """fromzero's (forward, backward) calls, as the layers make them."""
    if name == "log_softmax":
        return (lambda: fz.ops.log_softmax(x, out=y),
                lambda: fz.ops.log_softmax_backward(y, dy, out=dx))
    act = Act.__members__[name]
    return (lambda: fz.ops.activation_forward(act, x, LEAKY_SLOPE, out=y),
            lambda: fz.ops.activation_backward(act, x, y, dy, LEAKY_SLOPE, out=dx))


def activation_case(name, direction, shape=KERNEL_SHAPES[0]):
    """f(x) forward, or dx = dy·f'(x) backward (given y = f(x)), on a (rows, cols) batch."""
    which = 0 if direction == "forward" else 1
    key = f"{name}_{direction}{shape_key(shape)}"

    def builder(engine_calls, to_engine=lambda *a: a):
        def build():
            x, dy, y, dx = shared_arrays(key, lambda: random_array(*shape, seed=7),
                                         lambda: random_array(*shape, seed=8),
                                         lambda: np.empty(shape, np.float32),
                                         lambda: np.empty(shape, np.float32))
            calls = engine_calls(name, *to_engine(x, y, dy, dx))
            calls[0]()  # y = f(x), which backward reads
            return calls[which]
        return build

    numpy = builder(numpy_activation) if name != "gelu" or erf is not None else None
    return make_case(key, f"{name} {direction}  {shape[0]}×{shape[1]}",
                     builder(fromzero_activation), numpy, builder(torch_activation, as_torch))


# ---------------------------------------------------------------- losses

EPSILON = 1e-7  # Keras's probability clip, which fromzero's losses apply too


def loss_inputs(name, shape):
    """(y_pred, y_true) for a loss: logits, probabilities or values; labels, soft or binary targets."""
    rows, cols = shape
    rng = np.random.default_rng(12)
    logits = random_array(rows, cols, seed=10)
    if name in ("sparse CE from logits", "CE from logits", "BCE from logits", "MSE"):
        pred = logits
    elif name in ("sparse CE", "CE"):
        pred = np.exp(logits - logits.max(axis=1, keepdims=True))
        pred /= pred.sum(axis=1, keepdims=True)          # softmax rows
    else:
        pred = (1 / (1 + np.exp(-logits))).astype(np.float32)  # sigmoid outputs
    if name.startswith("sparse"):
        target = rng.integers(0, cols, rows)
    elif name.startswith("CE"):
        target = np.exp(random_array(rows, cols, seed=11))
        target /= target.sum(axis=1, keepdims=True)      # soft targets, rows sum to 1
    elif name.startswith("BCE"):
        target = rng.integers(0, 2, shape).astype(np.float32)
    else:
        target = random_array(rows, cols, seed=11)
    return pred.astype(np.float32), target


FROMZERO_LOSSES = {
    "sparse CE from logits": lambda: fz.losses.SparseCategoricalCrossentropy(from_logits=True),
    "sparse CE": lambda: fz.losses.SparseCategoricalCrossentropy(),
    "CE from logits": lambda: fz.losses.CategoricalCrossentropy(from_logits=True),
    "CE": lambda: fz.losses.CategoricalCrossentropy(),
    "BCE from logits": lambda: fz.losses.BinaryCrossentropy(from_logits=True),
    "BCE": lambda: fz.losses.BinaryCrossentropy(),
    "MSE": lambda: fz.losses.MeanSquaredError(),
}


def numpy_loss(name, p, t, grad):
    """The batch-mean loss, and (grad not None) ∂loss/∂p written into grad, in NumPy."""
    n, cols = p.shape
    if name == "sparse CE from logits":
        return numpy_mlp.softmax_cross_entropy(p, t, grad) if grad is not None else \
            float(np.mean(np.log(np.exp(p - p.max(1, keepdims=True)).sum(1)) + p.max(1)
                          - p[np.arange(n), t]))
    if name == "sparse CE":
        picked = np.clip(p[np.arange(n), t], EPSILON, 1 - EPSILON)
        if grad is not None:
            grad[...] = 0
            grad[np.arange(n), t] = -1 / (n * picked)
        return float(-np.log(picked).mean())
    if name == "CE from logits":
        z = p - p.max(1, keepdims=True)
        log_sum = np.log(np.exp(z).sum(1, keepdims=True))
        if grad is not None:
            np.exp(z - log_sum, out=grad)
            grad *= t.sum(1, keepdims=True)
            grad -= t
            grad /= n
        return float((t * (log_sum - z)).sum() / n)
    if name == "CE":
        q = np.clip(p / p.sum(1, keepdims=True), EPSILON, 1 - EPSILON)
        if grad is not None:  # ignoring the clip, as it is inactive here
            np.divide(-t, p, out=grad)
            grad += t.sum(1, keepdims=True) / p.sum(1, keepdims=True)
            grad /= n
        return float(-(t * np.log(q)).sum() / n)
    if name == "BCE from logits":
        e = np.exp(-np.abs(p))
        if grad is not None:
            np.divide(np.where(p >= 0, 1, e), 1 + e, out=grad)
            grad -= t
            grad /= p.size
        return float((np.maximum(p, 0) - p * t + np.log1p(e)).mean())
    if name == "BCE":
        c = np.clip(p, EPSILON, 1 - EPSILON)
        if grad is not None:
            np.divide(c - t, c * (1 - c) * p.size, out=grad)
        return float(-(t * np.log(c) + (1 - t) * np.log(1 - c)).mean())
    if name == "MSE":
        if grad is not None:
            np.subtract(p, t, out=grad)
            grad *= 2 / p.size
        return float(np.square(p - t).mean())
    raise ValueError(name)


def torch_loss(name, p, t):
    """PyTorch's batch-mean loss, the way a PyTorch user writes it."""
    if name in ("sparse CE from logits", "CE from logits"):
        return F.cross_entropy(p, t)
    if name == "sparse CE":
        return F.nll_loss(torch.log(p.clamp(EPSILON, 1 - EPSILON)), t)
    if name == "CE":
        q = (p / p.sum(1, keepdim=True)).clamp(EPSILON, 1 - EPSILON)
        return -(t * torch.log(q)).sum(1).mean()
    if name == "BCE from logits":
        return F.binary_cross_entropy_with_logits(p, t)
    if name == "BCE":
        return F.binary_cross_entropy(p, t)
    if name == "MSE":
        return F.mse_loss(p, t)
    raise ValueError(name)


def loss_case(name, with_grad, shape=KERNEL_SHAPES[0]):
    """A loss's value (its forward), or value and ∂loss/∂y_pred together (forward and backward)."""
    def fromzero():
        p, t = loss_inputs(name, shape)
        loss = FROMZERO_LOSSES[name]()
        targets = loss.prepare_targets(t, p.shape)
        row_loss, grad = np.empty(shape[0], np.float32), np.empty_like(p)
        if with_grad:
            return lambda: loss.value_and_gradient(p, targets, row_loss, grad)
        return lambda: loss.value(p, targets, row_loss)

    def numpy():
        p, t = loss_inputs(name, shape)
        grad = np.empty_like(p) if with_grad else None
        return lambda: numpy_loss(name, p, t, grad)

    def torch_():
        p, t = loss_inputs(name, shape)
        p, t = torch.from_numpy(p), torch.from_numpy(t)
        if with_grad:
            p.requires_grad_()

            def call():
                loss = torch_loss(name, p, t)
                return loss.item(), torch.autograd.grad(loss, p)[0]
            return call

        def value():
            with torch.no_grad():
                return torch_loss(name, p, t).item()
        return value

    what = "value+grad" if with_grad else "value"
    key = name.replace(" ", "_").lower() + ("_grad" if with_grad else "_value")
    return make_case(f"{key}{shape_key(shape)}", f"{name} {what}  {shape[0]}×{shape[1]}",
                     fromzero, numpy, torch_)


def sparse_crossentropy_case(batch, classes):
    """Sparse cross-entropy from logits: the mean loss and ∂loss/∂logits together."""
    def arrays():
        labels = np.random.default_rng(9).integers(0, classes, batch)
        return random_array(batch, classes, seed=10), labels, np.empty((batch, classes), np.float32)

    def fromzero():
        logits, labels, grad = arrays()
        loss = fz.losses.SparseCategoricalCrossentropy(from_logits=True)
        targets = loss.prepare_targets(labels, logits.shape)
        row_loss = np.empty(batch, np.float32)
        return lambda: loss.value_and_gradient(logits, targets, row_loss, grad)

    def numpy():
        logits, labels, grad = arrays()
        return lambda: numpy_mlp.softmax_cross_entropy(logits, labels, grad)

    def torch_():
        logits, labels, _ = arrays()
        logits, labels = as_torch(logits, labels)
        logits.requires_grad_()

        def call():
            loss = F.cross_entropy(logits, labels)
            return loss.item(), torch.autograd.grad(loss, logits)[0]
        return call

    return make_case(f"sparse_ce_{batch}x{classes}",
                     f"sparse CE from logits, value+grad  {batch}×{classes}",
                     fromzero, numpy, torch_)


def softmax_crossentropy_backward_case(shape=KERNEL_SHAPES[0]):
    """∂(mean CE)/∂logits from the saved softmax output: p − onehot, over the batch."""
    rows, cols = shape

    def arrays():
        logits = random_array(rows, cols, seed=10)
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        return p, np.random.default_rng(12).integers(0, cols, rows), np.empty_like(p)

    def fromzero():
        p, labels, grad = arrays()
        loss = fz.losses.SparseCategoricalCrossentropy()
        targets = loss.prepare_targets(labels, p.shape)
        return lambda: loss.softmax_gradient(p, targets, grad)

    def numpy():
        p, labels, grad = arrays()
        index = np.arange(rows)

        def call():
            np.multiply(p, 1 / rows, out=grad)
            grad[index, labels] -= 1 / rows
        return call

    def torch_():  # the two kernels autograd runs for cross_entropy's backward
        p, labels, grad = arrays()
        log_p, labels, grad = torch.from_numpy(np.log(p)), torch.from_numpy(labels), \
            torch.from_numpy(grad)
        dlog_p, one = torch.empty_like(log_p), torch.tensor(1.0)
        total_weight = torch.tensor(float(rows))

        def call():
            aten.nll_loss_backward.grad_input(one, log_p, labels, None, 1, -100, total_weight,
                                              grad_input=dlog_p)
            aten._log_softmax_backward_data.out(dlog_p, log_p, 1, torch.float32, out=grad)
        return call

    return make_case(f"softmax_ce_backward{shape_key(shape)}",
                     f"softmax+CE backward (p − onehot)  {rows}×{cols}", fromzero, numpy, torch_)


def adam_case(shape=(784, 128)):
    """One Adam step on the MLP's 100k-weight kernel."""
    def arrays():
        return random_array(*shape, seed=11), 1e-3 * random_array(*shape, seed=12)

    def fromzero():
        param, grad = arrays()
        optimizer = fz.optimizers.Adam(learning_rate=1e-3)
        return lambda: optimizer.apply_gradients([(grad, param)])

    def numpy():
        param, grad = arrays()
        optimizer = numpy_mlp.Adam([param], learning_rate=1e-3)
        return lambda: optimizer.apply_gradients([grad], [param])

    def torch_():
        param, grad = as_torch(*arrays())
        param = torch.nn.Parameter(param)
        param.grad = grad
        optimizer = torch.optim.Adam([param], lr=1e-3, eps=1e-7)
        return optimizer.step

    return make_case("adam_100k", f"Adam step  {shape[0] * shape[1]:,} params",
                     fromzero, numpy, torch_)


ACTIVATION_CASES = [activation_case(name, direction, shape) for shape in KERNEL_SHAPES
                    for name in ACTIVATIONS for direction in ("forward", "backward")]
LOSS_CASES = ([loss_case(name, with_grad, shape) for shape in KERNEL_SHAPES
               for name in FROMZERO_LOSSES for with_grad in (False, True)]
              + [softmax_crossentropy_backward_case(shape) for shape in KERNEL_SHAPES]
              + [sparse_crossentropy_case(128, 10), sparse_crossentropy_case(4096, 1000)])
KERNEL_CASES = ACTIVATION_CASES + LOSS_CASES + [adam_case()]


# ---------------------------------------------------------------- one MLP epoch

EPOCH_BATCHES = (32, 128)


@lru_cache(maxsize=1)
def mnist():
    """MNIST as every engine trains on it: (N, 784) float32 in [0, 1], uint8 labels."""
    return textbook_mlp.mnist()


def epoch_trainer(engine, batch_size, seed=0):
    """(train_one_epoch, test_accuracy) for a fresh 784-128-10 MLP on MNIST.

    Every engine: relu hidden layer, softmax + sparse cross-entropy, Adam
    with lr 1e-3, shuffled minibatches of batch_size.
    """
    x_train, y_train, x_test, y_test = mnist()

    if engine == "fromzero":
        model = textbook_mlp.model(seed)

        def train():
            model.fit(x_train, y_train, batch_size=batch_size, epochs=1, verbose=0)

        def predict():
            return model.predict(x_test, batch_size=1000, verbose=0)
    elif engine == "numpy":
        model = numpy_mlp.NumpyMLP(seed=seed)

        def train():
            model.fit_epoch(x_train, y_train, batch_size)

        def predict():
            return model.predict(x_test)
    elif engine == "torch":
        model = torch_mlp.TorchMLP(seed=seed)
        x, y = torch_mlp.as_tensors(x_train, y_train)
        x_test_tensor = torch.from_numpy(x_test)

        def train():
            model.fit_epoch(x, y, batch_size)

        def predict():
            return model.predict(x_test_tensor)
    else:
        raise ValueError(f"unknown engine {engine!r}")

    def test_accuracy():
        return float(np.mean(predict().argmax(axis=1) == y_test))
    return train, test_accuracy
