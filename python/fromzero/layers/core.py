"""The core layers: the input of a graph, Dense, Identity and Dropout."""

import numpy as np

from .. import _core, activations, graph, initializers, ops, regularizers, utils
from .._core import Activation as Act
from .base import Layer, as_float32

_INPUT_DTYPES = ("float32", "int32", "int64")


class InputLayer(Layer):
    """The start of a graph: the node that produces the tensor fz.Input returns.
    Its arrays come from the data given to fit, evaluate, predict or model(x)."""

    output_dtype = None

    def __init__(self, shape=None, batch_size=None, dtype=None, name=None):
        super().__init__(name=name)
        if shape is None:
            raise ValueError("Input: shape is required: the shape of one sample, without the "
                             "batch axis, e.g. Input(shape=(784,))")
        shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
        for d in shape:
            if d is not None:
                utils.check_positive_int("Input", "shape", d)
        if batch_size is not None:
            raise ValueError("Input: batch_size is not supported: batches may have any size")
        dtype = "float32" if dtype is None else np.dtype(dtype).name
        if dtype not in _INPUT_DTYPES:
            raise ValueError(f"Input: dtype must be one of {_INPUT_DTYPES}, got {dtype!r}")
        self.shape = (None,) + shape
        self.dtype = dtype
        node = graph.Node(self, (), {}, [])
        self.output = graph.SymbolicTensor(self.shape, dtype, self.name, node, 0)
        node.outputs = [self.output]
        self.built = True

    def forward(self, x, training=False):
        return x

    def get_config(self):
        return {"name": self.name, "shape": list(self.shape[1:]), "dtype": self.dtype}


def Input(shape=None, batch_size=None, dtype=None, name=None):  # noqa: N802 — Keras's name
    """A symbolic tensor standing for the model's input: `shape` is one
    sample's shape, without the batch axis (None for a free size); dtype is
    "float32" (the default) or an integer type for token ids ("int32"). Call
    layers on it and give it to fz.Model(inputs, outputs)."""
    return InputLayer(shape=shape, batch_size=batch_size, dtype=dtype, name=name).output


class KernelLayer(Layer):
    """What Dense and Conv2D share: a kernel W and a bias b, an activation f
    applied to z = (x·W + b), initializers and an optional weight penalty.
    `units` is the number of outputs (Dense's units, Conv2D's filters)."""

    def __init__(self, owner, units, activation, use_bias, kernel_initializer, bias_initializer,
                 kernel_regularizer, **kwargs):
        super().__init__(**kwargs)
        self.units = utils.check_positive_int(owner, "units" if owner == "Dense" else "filters",
                                              units)
        self.activation = activations.get(activation)
        self.alpha = activations.DEFAULT_LEAKY_SLOPE if self.activation == Act.leaky_relu else 0.0
        # GELU's backward needs z = x·W + b, kept by a training forward (decided
        # here: comparing two pybind11 enums is a Python call per step)
        self._saves_z = self.activation == Act.gelu
        self.use_bias = bool(use_bias)
        # a name stays a name (saved as given); a saved {"class", "config"} becomes the object
        self.kernel_initializer = _initializer(kernel_initializer)
        self.bias_initializer = _initializer(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.kernel = self.bias = None

    def _build_kernel_and_bias(self, kernel_shape):
        """params = [kernel] or [kernel, bias], drawn by the initializers; grads alike, zero."""
        self.kernel = self.add_weight(kernel_shape, self.kernel_initializer, name="kernel")
        if self.use_bias:
            self.bias = self.add_weight((self.units,), self.bias_initializer, name="bias")
        self.built = True

    def _add_penalty_gradient(self):
        """dW += ∂penalty/∂W when the layer has a kernel_regularizer — once per
        step: a layer called at several places of a graph adds it at the use
        that writes its own grads, not at the others (_accumulating)."""
        if self.trainable and self.kernel_regularizer is not None and not self._accumulating:
            self.kernel_regularizer.add_gradient(self.kernel, self.grads[0])

    def regularization_loss(self):
        return 0.0 if self.kernel_regularizer is None else self.kernel_regularizer(self.kernel)

    def _kernel_config(self):
        """The constructor arguments both layers share, for get_config."""
        return {"activation": activations.name_of(self.activation), "use_bias": self.use_bias,
                "kernel_initializer": initializers.serialize(self.kernel_initializer, self.name),
                "bias_initializer": initializers.serialize(self.bias_initializer, self.name),
                "kernel_regularizer": regularizers.serialize(self.kernel_regularizer)}


def _initializer(spec):
    """A layer's initializer argument, checked now: a known name (kept as
    given), or the object itself (a saved config becomes one)."""
    resolved = initializers.get(spec)
    return spec if isinstance(spec, str) else resolved


class Dense(KernelLayer):
    """A fully connected layer on the last axis: every output neuron sees every input.

        y = f(x · W + b)      x: (batch, ..., in), W: (in, out), b: (out,), y: (batch, ..., out)

    Backward, with dz = dy ⊙ f'(z) the gradient before the activation:
        dW = xᵀ · dz,   db = Σ_rows dz,   dx = dz · Wᵀ
    Axes before the last are rows, as in Keras: on (batch, time, features)
    the same W applies at every time step. (Images need a Flatten first;
    Sequential adds it for the textbook's program, see Sequential.)

    Forward is a single GEMM whose epilogue adds b and applies f while each
    tile of y is still in cache; backward is one call that computes dz and db
    in one pass and then the two GEMMs (csrc/dense.cpp). When most of x is
    exactly zero (MNIST's pixels, a ReLU's outputs), both x·W and xᵀ·dz skip
    x's zero entries, with the same bits as the full products: the forward
    keeps an index of x's non-zero entries (``_zero_skip``) for the backward.

    LoRA (``enable_lora``, Keras 3's interface): W and b freeze and two small
    matrices A (in, rank) and B (rank, out) train, the effective kernel being
    W + (α/rank)·A·B. ``Dense(..., lora_rank=r)`` enables it at build.
    """

    time_steps = "each"  # (Layer.time_steps)

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, lora_rank=None,
                 lora_alpha=None, **kwargs):
        super().__init__("Dense", units, activation, use_bias, kernel_initializer,
                         bias_initializer, kernel_regularizer, **kwargs)
        self.lora_rank = self.lora_alpha = self.lora_kernel_a = self.lora_kernel_b = None
        self._lora_at_build = None
        if lora_rank is not None:
            self._lora_at_build = check_lora(self.name, lora_rank, lora_alpha)
        elif lora_alpha is not None:
            raise ValueError(f"{self.name}: lora_alpha needs lora_rank")

    # ------------------------------------------------------------ LoRA

    @property
    def lora_enabled(self):
        return self.lora_rank is not None

    def enable_lora(self, rank, lora_alpha=None, a_initializer="he_uniform",
                    b_initializer="zeros"):
        """Freeze W and b and add the low-rank adapter A (in, rank), B (rank, out):

            y = f(x·W + b + (α/rank)·(x·A)·B),   α = lora_alpha (default: rank)

        Only A and B train (as in the LoRA paper and PEFT; Keras 3 also keeps
        the bias trainable). B starts at zero, so the layer starts as it was.
        The product W + (α/rank)·A·B is never formed while training: the
        adapter runs as two thin GEMMs (csrc/dense.h, dense_lora_forward)."""
        if not self.built:
            raise ValueError(f"{self.name}: cannot enable LoRA on a layer that is not built yet "
                             f"(call it on data or build(input_shape) first)")
        if self.lora_enabled:
            raise ValueError(f"{self.name}: LoRA is already enabled (rank {self.lora_rank}); "
                             f"merge_lora() first to enable it again")
        rank, lora_alpha = check_lora(self.name, rank, lora_alpha)
        shapes = self.lora_shapes(rank)
        a = self.add_weight(shapes["lora_kernel_a"], a_initializer, name="lora_kernel_a")
        b = self.add_weight(shapes["lora_kernel_b"], b_initializer, name="lora_kernel_b")
        self.lora_kernel_a, self.lora_kernel_b = a, b
        self.lora_rank, self.lora_alpha = rank, lora_alpha

    def lora_shapes(self, rank):
        """The adapter's arrays for rank `rank`, by name: their shapes."""
        return {"lora_kernel_a": (self.kernel.shape[0], rank),
                "lora_kernel_b": (rank, self.units)}

    def lora_weights(self):
        """The adapter's arrays, by name (the layer's own, not copies)."""
        return {"lora_kernel_a": self.lora_kernel_a, "lora_kernel_b": self.lora_kernel_b}

    @property
    def lora_scale(self):
        """α/rank, the factor of the adapter's product."""
        return self.lora_alpha / self.lora_rank

    def merge_lora(self):
        """Fold the adapter into the kernel, W ← W + (α/rank)·A·B, and remove A
        and B: a plain Dense again, with the same outputs up to float rounding."""
        if not self.lora_enabled:
            raise ValueError(f"{self.name}: LoRA is not enabled, there is nothing to merge")
        product = ops.matmul(self.lora_kernel_a, self.lora_kernel_b)  # A·B, (in, out)
        self.kernel += np.float32(self.lora_scale) * product
        keep = [i for i, p in enumerate(self.params)
                if p is not self.lora_kernel_a and p is not self.lora_kernel_b]
        self.params = [self.params[i] for i in keep]
        self.grads = [self.grads[i] for i in keep]
        self.lora_rank = self.lora_alpha = self.lora_kernel_a = self.lora_kernel_b = None

    @property
    def trainable_params(self):
        if not self.trainable:
            return []
        return [self.lora_kernel_a, self.lora_kernel_b] if self.lora_enabled else self.params

    @property
    def trainable_grads(self):
        if not self.trainable:
            return []
        return self.grads[-2:] if self.lora_enabled else self.grads

    @property
    def outputs_softmax(self):
        """True when the output is a softmax: then cross-entropy can hand
        backward_from_logits the fused gradient p − onehot."""
        return self.activation == Act.softmax

    def build(self, input_shape):
        if len(input_shape) < 1 or input_shape[-1] is None:
            raise ValueError(f"{self.name}: Dense needs inputs (batch, ..., features) with a known "
                             f"number of features, got shape {tuple(input_shape)}")
        self._build_kernel_and_bias((input_shape[-1], self.units))
        if self._lora_at_build is not None:
            self.enable_lora(*self._lora_at_build)

    def compute_output_shape(self, input_shape):
        if len(input_shape) < 2:
            raise ValueError(f"{self.name}: input must have a batch axis and features, "
                             f"got shape {tuple(input_shape)}")
        if self.built and input_shape[-1] not in (None, self.kernel.shape[0]):
            raise ValueError(f"{self.name}: expected {self.kernel.shape[0]} input features, "
                             f"got input of shape {tuple(input_shape)}")
        return tuple(input_shape[:-1]) + (self.units,)

    def forward(self, x, training=False):
        x = as_float32(x)
        x_shape = x.shape  # (read once: an ndarray's attributes are slow to fetch from Python)
        if len(x_shape) < 2:
            raise ValueError(f"{self.name}: input must have a batch axis and features, "
                             f"got shape {x_shape}")
        if not self.built:
            self.build(x_shape)
        n_in = self.kernel.shape[0]
        if x_shape[-1] != n_in:
            raise ValueError(f"{self.name}: expected {n_in} input features, got input of shape "
                             f"{x_shape}")
        context = self._context()  # (once: see Layer._context)
        buffers = context.buffers
        y_shape = x_shape[:-1] + (self.units,)
        y = buffers.get("y", y_shape)
        x2, y2 = (x, y) if len(x_shape) == 2 else (x.reshape(-1, n_in), y.reshape(-1, self.units))
        # GELU's backward needs z = x·W + b; without training, GELU runs in the GEMM's epilogue
        z2 = buffers.get("z", y2.shape) if training and self._saves_z else None
        h = None
        if self.lora_enabled:
            h = buffers.get("h", (x2.shape[0], self.lora_rank))
            ops.dense_lora_forward(x2, self.kernel, self.bias, self.lora_kernel_a,
                                   self.lora_kernel_b, self.lora_scale, self.activation,
                                   self.alpha, h_out=h, out=y2, z_out=z2)
        else:
            ops.dense_forward(x2, self.kernel, self.bias, self.activation, self.alpha, out=y2,
                              z_out=z2, zero_skip=self._zero_skip(context))
        if training:
            context.saved = (x2, z2, y2, x_shape, y_shape, h)  # (self.save, without a 2nd look-up)
        return y

    def backward(self, dy):
        return self._backward(dy, self.activation)

    def backward_from_logits(self, dz):
        """Backward from dz = ∂L/∂z, the gradient before the activation."""
        return self._backward(dz, Act.identity)

    def _backward(self, dy, activation):
        """dz = dy ⊙ f'(z); dW = xᵀ·dz, db = Σ dz (unless frozen); dx = dz·Wᵀ (if needed).
        One call: csrc/dense.cpp, dense_backward."""
        context = self._context()  # (once: see Layer._context)
        x2, z2, y2, x_shape, y_shape, h = self.saved_in(context)
        dy = self._check_dy(dy, y_shape)
        rows_shape = y2.shape  # (batch rows, units)
        dy2 = dy if len(y_shape) == 2 else dy.reshape(rows_shape)
        buffers, train = context.buffers, self.trainable
        dx_out = buffers.get("dx", x2.shape) if self.input_grad_needed else None
        if h is not None:
            if not self.lora_enabled or h.shape[1] != self.lora_rank:
                raise ValueError(f"{self.name}: LoRA was enabled or merged between forward and "
                                 f"backward; run forward again")
            dx = ops.dense_lora_backward(
                x2, self.kernel, self.lora_kernel_a, self.lora_kernel_b, self.lora_scale, h, z2,
                y2, dy2, activation, self.alpha, dz_out=buffers.get("dz", rows_shape),
                dh_out=buffers.get("dh", h.shape), da_out=self.grads[-2] if train else None,
                db_out=self.grads[-1] if train else None, dx_out=dx_out)
            return dx if dx is None or len(x_shape) == 2 else dx.reshape(x_shape)
        if self.lora_enabled:
            raise ValueError(f"{self.name}: LoRA was enabled between forward and backward; "
                             f"run forward again")
        dx = ops.dense_backward(
            x2, self.kernel, z2, y2, dy2, activation, self.alpha,
            dz_out=buffers.get("dz", rows_shape), dw_out=self.grads[0] if train else None,
            db_out=self.grads[1] if train and self.use_bias else None, dx_out=dx_out,
            zero_skip=self._zero_skip(context))
        if self.kernel_regularizer is not None:
            self._add_penalty_gradient()
        return dx if dx is None or len(x_shape) == 2 else dx.reshape(x_shape)

    def _zero_skip(self, context=None):
        """This call's index of x's non-zero entries (csrc/dense.h, DenseZeroSkip):
        the forward fills it when x has many zeros, the backward reads it."""
        context = context or self._context()
        if context.kernel_state is None:
            context.kernel_state = _core.DenseZeroSkip()
        return context.kernel_state

    def get_config(self):
        config = {"name": self.name, "units": self.units, **self._kernel_config()}
        lora = (self.lora_rank, self.lora_alpha) if self.lora_enabled else self._lora_at_build
        if lora is not None:
            config.update(lora_rank=lora[0], lora_alpha=lora[1])
        return config


def check_lora(owner, rank, lora_alpha):
    """(rank, α) checked: rank a positive int, α a positive number defaulting to rank."""
    rank = utils.check_positive_int(owner, "rank", rank)
    if lora_alpha is None:
        return rank, float(rank)
    return rank, utils.check_number(owner, "lora_alpha", lora_alpha, 0, low_open=True)


class Identity(Layer):
    """y = x, dx = dy: a placeholder, or a name for a tensor in a graph."""

    time_steps = "each"  # (Layer.time_steps)

    output_dtype = None

    def forward(self, x, training=False):
        x = np.asarray(x)
        self.save(x.shape)
        return x

    def backward(self, dy):
        (shape,) = self.saved
        dy = self._check_dy(dy, shape)
        return dy


class Dropout(Layer):
    """Randomly zeroes a fraction `rate` of the inputs while training.

        training:  y = x ⊙ m,  m_i = 1/(1 − rate) with probability 1 − rate, else 0
        inference: y = x
    Scaling the kept values by 1/(1 − rate) ("inverted dropout") keeps the
    expected activation unchanged, so nothing changes at inference. The mask
    comes from the C++ counter-based generator, seeded from fz.utils, so it
    does not depend on the number of threads.
    """

    time_steps = "each"  # (Layer.time_steps)

    def __init__(self, rate, **kwargs):
        super().__init__(**kwargs)
        self.rate = ops.check_limit("Dropout", "rate", rate, "dropout_rate")

    def forward(self, x, training=False):
        x = as_float32(x)
        if not training or self.rate == 0:
            self.save(x.shape, None)
            return x
        y, mask = ops.dropout_forward(x, self.rate, utils.next_seed(),
                                      out=self.buffer("y", x.shape),
                                      mask=self.buffer("mask", x.shape))
        self.save(x.shape, mask)
        return y

    def backward(self, dy):
        shape, mask = self.saved
        dy = self._check_dy(dy, shape)
        if mask is None:  # rate 0, or an inference forward: y = x
            return dy
        return ops.dropout_backward(dy, mask, out=self.buffer("dx", dy.shape))

    def get_config(self):
        return {"name": self.name, "rate": self.rate}
