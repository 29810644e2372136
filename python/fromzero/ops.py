"""The compiled kernels, callable on NumPy arrays.

Each function is declared once in csrc/bindings.cpp — its signature, every
array's role, dtype and dims, every hyperparameter's range — and checked from
that declaration before any pointer is used: inputs are converted to float32
C-contiguous only when needed, ``out=`` arrays must be writable, aligned,
C-contiguous and of the result's shape and dtype, no array the kernel writes
may share memory with another argument (except where the kernel allows in
place, ``out=x``), and the GIL is released while the kernel runs.
``kernel_specs()`` returns those declarations and ``limits()`` the ranges.
This is what the layers call; csrc/bindings.cpp is one hop further.
"""

import math
import numbers

import numpy as np

from . import _core
from ._core import (Activation, argmax, attention_backward, attention_forward,
                    attention_forward_packed, batch_norm_backward,
                    batch_norm_forward, bias_grad, count_correct, dense_backward, dense_forward,
                    dense_lora_backward, dense_lora_forward, dropout_backward, dropout_forward,
                    embedding_backward, embedding_forward, gather_rows, kernel_specs,
                    layer_norm_backward, layer_norm_forward, random_permutation,
                    softmax_crossentropy_backward)

__all__ = ["Activation", "dense_forward", "dense_backward", "dense_lora_forward",
           "dense_lora_backward", "matmul", "matmul_reference", "relu", "leaky_relu", "sigmoid", "tanh",
           "gelu", "softmax", "activation_forward", "activation_backward", "argmax", "bias_grad",
           "count_correct", "dropout_forward", "dropout_backward", "gather_rows",
           "random_permutation", "softmax_crossentropy_backward", "simd_path", "has_openmp",
           "kernel_specs", "limits", "check_limit"]

_LIMITS = _core.limits()


def limits():
    """The range of every scalar hyperparameter the kernels take, by name
    ({"beta": {"low": 0.0, "high": 1.0, "low_open": False, "high_open": True,
    "interval": "[0, 1)", "why": ...}, ...}). csrc/bindings.cpp owns them."""
    return _core.limits()


def check_limit(owner, name, value, limit=None):
    """`value` as a float, after checking it is a finite real number (NumPy
    scalars too) in the kernels' range `limit` (by default `name`); otherwise a
    ValueError naming the owner, the argument and the range:
    check_limit("Adam", "beta_1", 1.0, "beta") → "Adam: beta_1 must be a number
    in [0, 1), got 1.0". What layers and optimizers check their arguments with,
    so that Python and the kernels agree."""
    r = _LIMITS[limit or name]
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > r["low"] if r["low_open"] else value >= r["low"]) and \
             (value < r["high"] if r["high_open"] else value <= r["high"])
    if not ok:
        raise ValueError(f"{owner}: {name} must be a number in {r['interval']}, got {value!r}")
    return float(value)


def matmul(a, b, transpose_a=False, transpose_b=False, bias=None, activation=Activation.identity,
           alpha=0.0, out=None, accumulate=False):
    """``act(op(a) @ op(b) + bias)``, op(x) = x.T when transpose_x, by the blocked SIMD GEMM.

    ``accumulate=True`` adds the product to ``out`` (used to sum gradients).
    Transposes are read in place by the packing routines, never copied.
    """
    return _core.matmul(a, b, transpose_a, transpose_b, bias, activation, alpha, out, accumulate)


def matmul_reference(a, b, transpose_a=False, transpose_b=False, bias=None,
                     activation=Activation.identity, alpha=0.0):
    """The same product by the three-loop reference kernel (slow; for tests and teaching)."""
    return _core.matmul(a, b, transpose_a, transpose_b, bias, activation, alpha, reference=True)


def activation_forward(activation, x, alpha=0.0, out=None):
    """``y = f(x)`` elementwise (softmax: row-wise over a 2-D array)."""
    return _core.activation_forward(activation, x, alpha, out)


def activation_backward(activation, x, y, dy, alpha=0.0, out=None):
    """``dx = dy * f'(x)``, f' written from the output y (GELU also needs x)."""
    return _core.activation_backward(activation, x, y, dy, alpha, out)


def relu(x):
    return _core.activation_forward(Activation.relu, x)


def leaky_relu(x, negative_slope=0.2):
    return _core.activation_forward(Activation.leaky_relu, x, negative_slope)


def sigmoid(x):
    return _core.activation_forward(Activation.sigmoid, x)


def tanh(x):
    return _core.activation_forward(Activation.tanh, x)


def gelu(x):
    return _core.activation_forward(Activation.gelu, x)


def softmax(x):
    """Row-wise softmax of a 2-D array, computed stably (the row maximum is subtracted)."""
    return _core.activation_forward(Activation.softmax, x)


def simd_path():
    """The instruction set the GEMM micro-kernel uses on this CPU: avx512, avx2 or generic."""
    return _core.gemm_kernel_name()


def has_openmp():
    return _core.has_openmp()


# ---------------------------------------------------------------- vector math
#
# fromzero's own vectorized exp, log, log1p and erf (csrc/vecmath.h, not libm:
# docs/09-making-it-fast.md shows how they work and how accurate they are),
# on float32 arrays of any shape; and log-softmax, log(softmax(x)) computed
# without softmax, so tiny probabilities keep their digits.

__all__ += ["exp", "log", "log1p", "erf", "log_softmax", "log_softmax_backward", "vecmath_isa"]


def exp(x, out=None):
    """e^x elementwise, within 1 ulp (0 below −103.97, inf above 88.72)."""
    return _core.exp(x, out)


def log(x, out=None):
    """Natural logarithm elementwise, within 1 ulp (log 0 = −inf, log of x < 0 = NaN)."""
    return _core.log(x, out)


def log1p(x, out=None):
    """log(1 + x) elementwise, within 2 ulp, accurate for tiny x."""
    return _core.log1p(x, out)


def erf(x, out=None):
    """The error function elementwise, within 2 ulp."""
    return _core.erf(x, out)


def log_softmax(x, out=None):
    """Row-wise ``x − max − log Σ exp(x − max)`` of a 2-D array (batch, classes)."""
    return _core.log_softmax_forward(x, out)


def log_softmax_backward(y, dy, out=None):
    """``dx = dy − exp(y)·Σ dy`` row by row, from y = log_softmax(x)."""
    return _core.log_softmax_backward(y, dy, out)


def vecmath_isa():
    """The instruction set the vector math uses on this CPU: avx512, avx2 or generic."""
    return _core.vecmath_isa()


# ---------------------------------------------------------------- images (NHWC)
#
# Convolution, pooling and batch normalization (csrc/conv.h). Images are
# (batch, height, width, channels). Sizes and strides are an int or a
# (height, width) pair and padding is "valid" or "same", all as in Keras.
# Each op is a _forward/_backward pair that the layers call with their own
# buffers; conv2d, max_pool2d, avg_pool2d and global_avg_pool2d are the
# forward passes alone, for trying things out.

__all__ += ["conv2d", "conv2d_forward", "conv2d_backward", "max_pool2d", "max_pool2d_forward",
            "max_pool2d_backward", "avg_pool2d", "avg_pool2d_forward", "avg_pool2d_backward",
            "global_avg_pool2d", "global_avg_pool2d_forward", "global_avg_pool2d_backward",
            "batch_norm_forward", "batch_norm_backward", "pair"]


def pair(value, name="size"):
    """An int or a pair of ints as a (height, width) tuple: 3 → (3, 3)."""
    values = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
    if len(values) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                                   for v in values):
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    return int(values[0]), int(values[1])


def conv2d_forward(x, kernel, bias=None, strides=1, padding="valid",
                   activation=Activation.identity, alpha=0.0, out=None):
    """``y = act(conv(x, kernel) + bias)``: a GEMM of the windows of x (im2col) with the kernel.

    x (N, H, W, C), kernel (kh, kw, C, F), bias (F,), y (N, Ho, Wo, F).
    ``activation`` is applied in the GEMM epilogue (elementwise activations only).
    """
    return _core.conv2d_forward(x, kernel, bias, pair(strides, "strides"), padding, activation,
                                alpha, out)


def conv2d_backward(dy, kernel, x, strides=1, padding="valid", use_bias=True, need_dx=True,
                    need_dparams=True, dx_out=None, dkernel_out=None, dbias_out=None,
                    activation=Activation.identity, y=None, alpha=0.0):
    """``(dx, dkernel, dbias)`` from ``dy = ∂L/∂y`` for ``y = act(z)``, ``z = conv(x, kernel) + bias``.

    x is the forward's input and y its output. With cols = im2col(x):
    ``dz = dy·act'(y)``, ``dkernel = colsᵀ·dz``, ``dbias = Σ dz``,
    ``dx = col2im(dz·kernelᵀ)``; dz is formed block by block inside the
    kernel (identity: dz = dy, and y is not needed). A gradient not asked for
    (need_dx, need_dparams, use_bias) comes back as None.
    """
    return _core.conv2d_backward(dy, kernel, x, pair(strides, "strides"), padding, use_bias,
                                 need_dx, need_dparams, dx_out, dkernel_out, dbias_out,
                                 activation, y, alpha)


def conv2d(x, kernel, bias=None, strides=1, padding="valid"):
    """The 2-D convolution (Keras's, a cross-correlation) of NHWC images x with kernel (kh, kw, C, F)."""
    return conv2d_forward(x, kernel, bias, strides, padding)


def _pool_args(pool_size, strides):
    """pool_size and strides as pairs; strides default to pool_size, as Keras."""
    pool_size = pair(pool_size, "pool_size")
    return pool_size, pool_size if strides is None else pair(strides, "strides")


def max_pool2d_forward(x, pool_size=2, strides=None, padding="valid", out=None, argmax=None):
    """``(y, argmax)``: the maximum of each window, and where in its image it was (int32)."""
    return _core.max_pool2d_forward(x, *_pool_args(pool_size, strides), padding, out, argmax)


def max_pool2d_backward(dy, argmax, input_shape, pool_size=2, strides=None, padding="valid",
                        out=None):
    """dx: each dy value goes to the input its window's maximum came from."""
    return _core.max_pool2d_backward(dy, argmax, tuple(input_shape),
                                     *_pool_args(pool_size, strides), padding, out)


def max_pool2d(x, pool_size=2, strides=None, padding="valid"):
    return max_pool2d_forward(x, pool_size, strides, padding)[0]


def avg_pool2d_forward(x, pool_size=2, strides=None, padding="valid", out=None):
    """The mean of each window; with "same" padding, of the real inputs only (as Keras)."""
    return _core.avg_pool2d_forward(x, *_pool_args(pool_size, strides), padding, out)


def avg_pool2d_backward(dy, input_shape, pool_size=2, strides=None, padding="valid", out=None):
    """dx: each dy value shared equally by the inputs its window averaged."""
    return _core.avg_pool2d_backward(dy, tuple(input_shape), *_pool_args(pool_size, strides),
                                     padding, out)


def avg_pool2d(x, pool_size=2, strides=None, padding="valid"):
    return avg_pool2d_forward(x, pool_size, strides, padding)


def global_avg_pool2d_forward(x, out=None):
    """(N, H, W, C) → (N, C): the mean of each channel over the image."""
    return _core.global_avg_pool2d_forward(x, out)


def global_avg_pool2d_backward(dy, input_shape, out=None):
    """dx = dy / (H·W) at every pixel."""
    return _core.global_avg_pool2d_backward(dy, tuple(input_shape), out)


def global_avg_pool2d(x):
    return global_avg_pool2d_forward(x)


# batch_norm_forward → (y, mean, inv_std) and batch_norm_backward → (dx, dgamma, dbeta)
# are the bindings themselves, imported above: help() shows their signatures, with the
# defaults declared once, in csrc/bindings.cpp.


# ---------------------------------------------------------------- transformers
#
# Token embeddings, layer normalization and scaled dot-product attention
# (csrc/embedding.h, layernorm.h, attention.h), the kernels of Embedding,
# LayerNormalization and MultiHeadAttention; the bindings themselves, each a
# _forward/_backward pair, with their signatures declared in csrc/bindings.cpp:
#
#   embedding_forward(ids, embeddings)            → y (ids.shape + (dim,))
#   embedding_backward(ids, dy, input_dim)        → dW (input_dim, dim)
#   layer_norm_forward(x, gamma, beta, epsilon)   → (y, mean, rstd)
#   layer_norm_backward(x, gamma, mean, rstd, dy) → (dx, dgamma, dbeta)
#   attention_forward(q, k, v, mask=, causal=, causal_offset=, scale=, dropout_rate=, seed=)
#                                                 → (out, probs)
#   attention_backward(q, k, v, probs, dout, <the forward's mask, causal, scale, dropout>)
#                                                 → (dq, dk, dv)
#   attention_forward_packed(q, k, v, starts, scale=) → out: sequences of different
#       lengths back to back, (tokens, heads, dim), sequence s at rows
#       starts[s]:starts[s + 1] attending to itself only (inference, no padding)
#
# q, k, v and out are (batch, time, heads, dim); probs (batch, heads, Tq, Tk).

__all__ += ["embedding_forward", "embedding_backward", "layer_norm_forward", "layer_norm_backward",
            "attention_forward", "attention_backward", "attention_forward_packed"]
