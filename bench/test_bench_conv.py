"""The convolution and pooling kernels of Keras's mnist_convnet: fromzero against PyTorch.

Groups (one per operation, engines side by side), batch 128:
  conv1 forward / backward   28×28×1 → 26×26×32, 3×3, ReLU (backward: dK and db, no dx:
                             a first layer; the ReLU's derivative folded in)
  conv2 forward / backward   13×13×32 → 11×11×64, 3×3, ReLU (backward: dK, db and dx)
  max pool forward / backward  2×2 on conv1's output (26×26×32 → 13×13×32)
PyTorch runs its own kernels on NCHW tensors (the ones autograd calls), so
neither side pays for a layout change.

    python -m pytest bench/test_bench_conv.py --benchmark-only
"""

import pytest

import fromzero as fz
from bench_params import case_params, prepared_call
from comparisons import Act, as_torch, make_case, random_array, torch

BATCH = 128


def conv_case(name, height, channels, filters, need_dx):
    shape = (BATCH, height, height, channels)
    kernel_shape = (3, 3, channels, filters)

    def fz_forward():
        x, k, b = random_array(*shape, seed=1), random_array(*kernel_shape, seed=2), random_array(filters, seed=3)
        y = fz.ops.conv2d_forward(x, k, b, activation=Act.relu)
        return lambda: fz.ops.conv2d_forward(x, k, b, activation=Act.relu, out=y)

    def fz_backward():
        x, k, b = random_array(*shape, seed=1), random_array(*kernel_shape, seed=2), random_array(filters, seed=3)
        y = fz.ops.conv2d_forward(x, k, b, activation=Act.relu)
        dy = random_array(*y.shape, seed=4)
        grads = fz.ops.conv2d_backward(dy, k, x, need_dx=need_dx, activation=Act.relu, y=y)
        return lambda: fz.ops.conv2d_backward(dy, k, x, need_dx=need_dx, activation=Act.relu,
                                              y=y, dx_out=grads[0], dkernel_out=grads[1],
                                              dbias_out=grads[2])

    def torch_tensors():
        x = as_torch(random_array(*shape, seed=1).transpose(0, 3, 1, 2).copy())[0]
        k = as_torch(random_array(*kernel_shape, seed=2).transpose(3, 2, 0, 1).copy())[0]
        b = as_torch(random_array(filters, seed=3))[0]
        return x, k, b

    def torch_forward():
        x, k, b = torch_tensors()
        return lambda: torch.relu(torch.nn.functional.conv2d(x, k, b))

    def torch_backward():
        x, k, b = torch_tensors()
        y = torch.relu(torch.nn.functional.conv2d(x, k, b))
        dy = as_torch(random_array(*y.shape, seed=4))[0]
        aten = torch.ops.aten

        def call():
            dz = aten.threshold_backward(dy, y, 0)
            return aten.convolution_backward(dz, x, k, [filters], [1, 1], [0, 0], [1, 1], False,
                                             [0, 0], 1, [need_dx, True, True])
        return call

    return [make_case(f"{name}_forward", f"{name} forward", fz_forward, None, torch_forward),
            make_case(f"{name}_backward", f"{name} backward", fz_backward, None, torch_backward)]


def max_pool_cases():
    shape = (BATCH, 26, 26, 32)

    def fz_forward():
        x = random_array(*shape, seed=5)
        y, argmax = fz.ops.max_pool2d_forward(x, 2)
        return lambda: fz.ops.max_pool2d_forward(x, 2, out=y, argmax=argmax)

    def fz_backward():
        x = random_array(*shape, seed=5)
        y, argmax = fz.ops.max_pool2d_forward(x, 2)
        dy = random_array(*y.shape, seed=6)
        dx = fz.ops.max_pool2d_backward(dy, argmax, x.shape, 2)
        return lambda: fz.ops.max_pool2d_backward(dy, argmax, x.shape, 2, out=dx)

    def torch_forward():
        x = as_torch(random_array(*shape, seed=5).transpose(0, 3, 1, 2).copy())[0]
        return lambda: torch.ops.aten.max_pool2d_with_indices(x, [2, 2], [2, 2])

    def torch_backward():
        x = as_torch(random_array(*shape, seed=5).transpose(0, 3, 1, 2).copy())[0]
        y, indices = torch.ops.aten.max_pool2d_with_indices(x, [2, 2], [2, 2])
        dy = as_torch(random_array(*y.shape, seed=6))[0]
        return lambda: torch.ops.aten.max_pool2d_with_indices_backward(
            dy, x, [2, 2], [2, 2], [0, 0], [1, 1], False, indices)

    return [make_case("max_pool_forward", "max pool 2x2 forward", fz_forward, None, torch_forward),
            make_case("max_pool_backward", "max pool 2x2 backward", fz_backward, None,
                      torch_backward)]


CONV_CASES = (conv_case("conv1", 28, 1, 32, need_dx=False)
              + conv_case("conv2", 13, 32, 64, need_dx=True) + max_pool_cases())


@pytest.mark.parametrize(("case", "engine"), case_params(CONV_CASES, engines=("fromzero", "torch")))
def test_conv_kernel(benchmark, case, engine):
    benchmark(prepared_call(case, engine))
