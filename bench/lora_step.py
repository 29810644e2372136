"""The cost of a LoRA layer's training step, side by side.

    python bench/lora_step.py [--repeat R]      (threads: FROMZERO_BENCH_THREADS, default 2)

For a Dense layer of the shapes LoRA adapts (a GPT's and MiniLM's query
projection, rank 8), the best time of R repeats of one forward + backward:

  dense        the plain layer, trained in full (dW, db, dx)
  lora         Dense.enable_lora: the dense_lora_forward/backward kernel pair
  composed     the same arithmetic as five separate ops.matmul calls from Python
  torch        PyTorch, PEFT's formula, A and B requiring gradients, W frozen

Ratios above 1 mean the LoRA kernel pair is faster.
"""

import argparse
import sys
import time

import numpy as np

import fromzero as fz
from fromzero import ops
from threads import bench_threads, pin_threads

SHAPES = {  # name: (rows = batch·time, in, out)
    "gpt q-proj (12x64, 128->128)": (12 * 64, 128, 128),
    "minilm q-proj (32x128, 384->384)": (32 * 128, 384, 384),
}
RANK = 8


def best(call, repeat, loops=None):
    call()
    if loops is None:
        loops, start = 1, time.perf_counter()
        call()
        loops = max(1, int(0.05 / max(time.perf_counter() - start, 1e-6)))
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(loops):
            call()
        times.append((time.perf_counter() - start) / loops)
    return min(times)


def cases(rows, n_in, n_out):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((rows, n_in)).astype(np.float32)
    dy = rng.standard_normal((rows, n_out)).astype(np.float32)
    full = fz.layers.Dense(n_out)
    full(x[:1])
    lora = fz.layers.Dense(n_out)
    lora(x[:1])
    lora.enable_lora(RANK)
    lora.lora_kernel_b[...] = rng.standard_normal(lora.lora_kernel_b.shape) * 0.01

    def step(layer):
        def call():
            layer.forward(x, training=True)
            layer.backward(dy)
        return call

    a, b, w, bias, s = lora.lora_kernel_a, lora.lora_kernel_b, lora.kernel, lora.bias, 1.0
    y, h = np.empty_like(dy), np.empty((rows, RANK), np.float32)
    dh, dx = np.empty_like(h), np.empty_like(x)
    da, db = np.empty_like(a), np.empty_like(b)

    def composed():
        ops.matmul(x, a, out=h)                                  # h = x·A
        ops.matmul(x, w, bias=bias, out=y)                       # y = x·W + b
        ops.matmul(h, b, out=y, accumulate=True)                 # y += h·B
        ops.matmul(h, dy, transpose_a=True, out=db)              # dB = hᵀ·dy
        ops.matmul(dy, b, transpose_b=True, out=dh)              # dh = dy·Bᵀ
        ops.matmul(x, dh, transpose_a=True, out=da)              # dA = xᵀ·dh
        ops.matmul(dy, w, transpose_b=True, out=dx)              # dx = dy·Wᵀ
        ops.matmul(dh, a, transpose_b=True, out=dx, accumulate=True)  # dx += dh·Aᵀ

    calls = {"dense": step(full), "lora": step(lora), "composed": composed}
    try:
        import torch
    except ImportError:
        return calls
    tx = torch.tensor(x, requires_grad=True)
    tw, tb = torch.tensor(w.T.copy()), torch.tensor(bias)
    ta = torch.tensor(a.T.copy(), requires_grad=True)
    tbb = torch.tensor(b.T.copy(), requires_grad=True)
    tdy = torch.tensor(dy)

    def torch_step():
        ta.grad = tbb.grad = tx.grad = None
        out = torch.nn.functional.linear(tx, tw, tb) + (tx @ ta.T @ tbb.T) * s
        out.backward(tdy)

    calls["torch"] = torch_step
    return calls


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    threads = pin_threads(bench_threads())
    print(f"threads: {threads}", file=sys.stderr)
    print(f"| layer | dense (ms) | lora (ms) | composed (ms) | torch (ms) | "
          f"composed/lora | torch/lora |")
    print("|---|---|---|---|---|---|---|")
    for name, shape in SHAPES.items():
        calls = cases(*shape)
        t = {k: best(c, args.repeat) * 1e3 for k, c in calls.items()}
        torch_ms = t.get("torch", float("nan"))
        print(f"| {name} | {t['dense']:.3f} | {t['lora']:.3f} | {t['composed']:.3f} | "
              f"{torch_ms:.3f} | {t['composed'] / t['lora']:.2f} | {torch_ms / t['lora']:.2f} |")


if __name__ == "__main__":
    main()
