# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Rung 3 of the speed ladder: the same loops as the pure-Python rung, typed.

Every variable has a C type (float, double, Py_ssize_t) and the arrays are
typed memoryviews, so Cython turns each loop into a plain C loop: no Python
objects, no reference counting, no dynamic dispatch in the loop body. The
bounds checks are switched off by the directives above. The matmul is the
definition, i-j-k with a double accumulator, exactly as fromzero's C++
reference kernel (csrc/gemm.cpp, reference::gemm), so rungs 3 and 4 run the
same algorithm in the same language in the end: C.
"""


def matmul(const float[:, ::1] a, const float[:, ::1] b, float[:, ::1] c):
    """c = a @ b, c[i, j] = Σ_k a[i, k]·b[k, j]."""
    cdef Py_ssize_t m = a.shape[0], k_dim = a.shape[1], n = b.shape[1]
    cdef Py_ssize_t i, j, k
    cdef double s
    for i in range(m):
        for j in range(n):
            s = 0.0
            for k in range(k_dim):
                s += <double>a[i, k] * b[k, j]
            c[i, j] = <float>s


def relu_forward(const float[::1] x, float[::1] y):
    """y = max(x, 0), on flat arrays."""
    cdef Py_ssize_t i
    for i in range(x.shape[0]):
        y[i] = x[i] if x[i] > 0 else 0


def relu_backward(const float[::1] y, const float[::1] dy, float[::1] dx):
    """dx = dy where y > 0, else 0.

    Both values are loaded before the test. Written as `dx[i] = dy[i] if y[i] > 0
    else 0`, dy[i] is read only on one side of a branch; the C compiler may not
    read memory the program does not, so it keeps the branch, and on random signs
    the CPU mispredicts half of them: about 25 times slower than this select,
    which the compiler turns into branch-free SIMD.
    """
    cdef Py_ssize_t i
    cdef float g, v
    for i in range(y.shape[0]):
        g = dy[i]
        v = y[i]
        dx[i] = g if v > 0 else 0
