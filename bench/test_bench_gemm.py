"""GEMM: fz.ops.matmul against numpy.matmul (and torch.mm) at the MLP's shapes and square ones.

Groups (one per shape, engines side by side):
  relu(X·W+b)  the Dense forward, X (B, 784), W (784, 128); fromzero fuses
               bias + relu into the GEMM, NumPy adds them in two more passes
  Xᵀ·dY        the kernel's gradient (784, B)·(B, 128), transpose_a=True
  dY·Wᵀ        the input's gradient (B, 128)·(128, 784), transpose_b=True
  A·B square   256, 1024, 2048: the GEMM's peak speed
for B = 32, 128, 512. Every engine writes into a preallocated out= array.
"""

import pytest

from bench_params import case_params, prepared_call
from comparisons import GEMM_CASES


@pytest.mark.parametrize(("case", "engine"), case_params(GEMM_CASES))
def test_gemm(benchmark, case, engine):
    call = prepared_call(case, engine)
    benchmark.extra_info["gflops"] = case.flops / 1e9
    benchmark(call)
