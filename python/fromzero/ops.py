"""The compiled kernels, callable on NumPy arrays.

Each function checks its arguments (shapes, dtypes, label ranges) in the C++
binding before any pointer is used, converts inputs to float32 C-contiguous
only when needed, releases the GIL while the kernel runs, and returns NumPy
arrays. Functions that take ``out=`` write into that array instead of
allocating: it must be a writable float32 C-contiguous array of the result's
shape. This is what the layers call; csrc/bindings.cpp is one hop further.
"""

from . import _core
from ._core import (Activation, argmax, bias_grad, count_correct, dropout_backward,
                    dropout_forward, gather_rows, random_permutation,
                    softmax_crossentropy_backward)

__all__ = ["Activation", "matmul", "matmul_reference", "relu", "leaky_relu", "sigmoid", "tanh",
           "gelu", "softmax", "activation_forward", "activation_backward", "argmax", "bias_grad",
           "count_correct", "dropout_forward", "dropout_backward", "gather_rows",
           "random_permutation", "softmax_crossentropy_backward", "simd_path", "has_openmp"]


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
