"""Elementwise and row-wise kernels: fromzero against NumPy expressions and PyTorch's kernels.

Groups (one per operation, engines side by side):
  <activation> forward / backward   relu, sigmoid, tanh, gelu, softmax on (128, 1024);
                                    backward is dx = dy·f'(x) given y = f(x)
  sparse CE from logits, value+grad the loss and ∂loss/∂logits together,
                                    (128, 10) and (4096, 1000)
  Adam step                         one update of 100,352 weights (the MLP's 784×128 kernel)
NumPy's GELU needs scipy.special.erf, and is skipped without SciPy.
"""

import pytest

from bench_params import case_params, prepared_call
from comparisons import KERNEL_CASES


@pytest.mark.parametrize(("case", "engine"), case_params(KERNEL_CASES))
def test_kernel(benchmark, case, engine):
    benchmark(prepared_call(case, engine))
