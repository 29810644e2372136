"""Elementwise and row-wise kernels: fromzero against NumPy expressions and PyTorch's kernels.

Groups (one per operation and shape, engines side by side), each on
(128, 1024) and on (4096, 1024):
  <activation> forward / backward   relu, leaky_relu, sigmoid, tanh, gelu, softmax,
                                    log_softmax; backward is dx = dy·f'(x) given y = f(x)
                                    (PyTorch: the ATen backward kernel autograd calls)
  <loss> value / value+grad         sparse CE and CE, from logits and from probabilities,
                                    BCE from logits and from probabilities, MSE: the
                                    batch-mean loss alone, and with ∂loss/∂y_pred
                                    (PyTorch: the loss, and torch.autograd.grad)
  softmax+CE backward               p − onehot from the saved softmax output (PyTorch:
                                    nll_loss_backward + _log_softmax_backward_data)
and sparse CE from logits, value+grad on (128, 10) and (4096, 1000), and
  Adam step                         one update of 100,352 weights (the MLP's 784×128 kernel)
NumPy's GELU needs scipy.special.erf, and is skipped without SciPy.
"""

import pytest

from bench_params import case_params, prepared_call
from comparisons import KERNEL_CASES


@pytest.mark.parametrize(("case", "engine"), case_params(KERNEL_CASES))
def test_kernel(benchmark, case, engine):
    benchmark(prepared_call(case, engine))
