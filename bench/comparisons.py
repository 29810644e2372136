"""What the benchmarks compare: one operation, done each engine's best way.

A ``Case`` is one operation on fixed shapes (a GEMM, an activation, a loss,
an optimizer step). For every engine it holds a *builder*: a function that
allocates that engine's inputs and outputs once (the same values for every
engine) and returns the zero-argument call to time. Outputs go into those
preallocated arrays (``out=``) wherever the engine allows, so the timings
measure arithmetic, not allocation — and fresh pages, which are slow to
touch on this kind of host, are touched by the warm-up, not by the timing.

``epoch_trainer`` does the same for one epoch of the textbook MLP.

Both front ends import this module: the pytest-benchmark files and
compare.py. An engine that is not installed (PyTorch; SciPy, whose erf the
NumPy GELU needs) simply has no builder.
"""

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

import fromzero as fz
import numpy_mlp

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


def as_torch(*arrays):
    """Tensors sharing memory with the NumPy arrays."""
    return [torch.from_numpy(a) for a in arrays]


# ---------------------------------------------------------------- GEMM

MLP_BATCHES = (32, 128, 512)
SQUARE_SIZES = (256, 1024, 2048)


def gemm_forward_case(batch, inputs=784, units=128):
    """Dense forward: relu(X·W + b). fromzero fuses bias and relu into the GEMM."""
    def arrays():
        return (random_array(batch, inputs, seed=1), random_array(inputs, units, seed=2),
                random_array(units, seed=3), np.empty((batch, units), np.float32))

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
        return (random_array(batch, inputs, seed=1), random_array(batch, units, seed=4),
                np.empty((inputs, units), np.float32))

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
        return (random_array(batch, units, seed=4), random_array(inputs, units, seed=2),
                np.empty((batch, inputs), np.float32))

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
        return random_array(n, n, seed=5), random_array(n, n, seed=6), np.empty((n, n), np.float32)

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

ACTIVATIONS = ("relu", "sigmoid", "tanh", "gelu", "softmax")
ACTIVATION_SHAPE = (128, 1024)
INV_SQRT2 = 1 / math.sqrt(2)
INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)


def numpy_activation(name, x, y, dy, dx):
    """NumPy's (forward, backward) calls for y = f(x) and dx = dy·f'(x), written in place."""
    if name == "relu":
        return (lambda: np.maximum(x, 0, out=y),
                lambda: np.multiply(dy, y > 0, out=dx))
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
    raise ValueError(name)


def torch_activation(name, x, y, dy, dx):
    """PyTorch's (forward, backward) calls: the ATen kernels autograd runs, with out=."""
    forward = {
        "relu": lambda: torch.clamp_min(x, 0, out=y),
        "sigmoid": lambda: torch.sigmoid(x, out=y),
        "tanh": lambda: torch.tanh(x, out=y),
        "gelu": lambda: aten.gelu.out(x, out=y),
        "softmax": lambda: torch.softmax(x, 1, out=y),
    }[name]
    backward = {
        "relu": lambda: aten.threshold_backward.grad_input(dy, y, 0.0, grad_input=dx),
        "sigmoid": lambda: aten.sigmoid_backward.grad_input(dy, y, grad_input=dx),
        "tanh": lambda: aten.tanh_backward.grad_input(dy, y, grad_input=dx),
        "gelu": lambda: aten.gelu_backward.grad_input(dy, x, grad_input=dx),
        "softmax": lambda: aten._softmax_backward_data.out(dy, y, 1, torch.float32,
                                                           grad_input=dx),
    }[name]
    return forward, backward


def fromzero_activation(name, x, y, dy, dx):
    """fromzero's (forward, backward) calls, as the layers make them."""
    act = Act.__members__[name]
    return (lambda: fz.ops.activation_forward(act, x, out=y),
            lambda: fz.ops.activation_backward(act, x, y, dy, out=dx))


def activation_case(name, direction):
    """f(x) forward, or dx = dy·f'(x) backward, on a (128, 1024) batch."""
    which = 0 if direction == "forward" else 1

    def builder(engine_calls, to_engine=lambda *a: a):
        def build():
            x, dy = random_array(*ACTIVATION_SHAPE, seed=7), random_array(*ACTIVATION_SHAPE, seed=8)
            y, dx = np.empty_like(x), np.empty_like(x)
            calls = engine_calls(name, *to_engine(x, y, dy, dx))
            calls[0]()  # y = f(x), which backward reads
            return calls[which]
        return build

    numpy = builder(numpy_activation) if name != "gelu" or erf is not None else None
    return make_case(f"{name}_{direction}",
                     f"{name} {direction}  {ACTIVATION_SHAPE[0]}×{ACTIVATION_SHAPE[1]}",
                     builder(fromzero_activation), numpy, builder(torch_activation, as_torch))


# ---------------------------------------------------------------- losses, optimizer

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


KERNEL_CASES = ([activation_case(name, direction) for name in ACTIVATIONS
                 for direction in ("forward", "backward")]
                + [sparse_crossentropy_case(128, 10), sparse_crossentropy_case(4096, 1000),
                   adam_case()])


# ---------------------------------------------------------------- one MLP epoch

EPOCH_BATCHES = (32, 128)


@lru_cache(maxsize=1)
def mnist():
    """MNIST as every engine trains on it: (N, 784) float32 in [0, 1], uint8 labels."""
    (x_train, y_train), (x_test, y_test) = fz.datasets.mnist.load_data()

    def scale(images):
        return images.reshape(len(images), -1).astype(np.float32) / 255.0
    return scale(x_train), y_train, scale(x_test), y_test


def epoch_trainer(engine, batch_size, seed=0):
    """(train_one_epoch, test_accuracy) for a fresh 784-128-10 MLP on MNIST.

    Every engine: relu hidden layer, softmax + sparse cross-entropy, Adam
    with lr 1e-3, shuffled minibatches of batch_size.
    """
    x_train, y_train, x_test, y_test = mnist()

    if engine == "fromzero":
        fz.utils.set_random_seed(seed)
        model = fz.Sequential([fz.layers.Dense(128, activation="relu"),
                               fz.layers.Dense(10, activation="softmax")])
        model.compile(optimizer=fz.optimizers.Adam(learning_rate=1e-3),
                      loss="sparse_categorical_crossentropy")

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
