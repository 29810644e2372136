"""The transformer layers, fromzero vs PyTorch eager, side by side, at the GPT
recipe's shape (batch 12, T 64, C 128, 4 heads of 32; vocabulary 65).

    python bench/transformer_layers.py [--threads N] [--repeat R] [--markdown]

For each layer: the forward of a training step (PyTorch recording its
autograd graph) and forward + backward (every gradient: inputs and weights).
PyTorch's attention is nanoGPT's CausalSelfAttention (one fused QKV Linear,
F.scaled_dot_product_attention(is_causal=True), the output Linear), its best
eager form. Best of R repeats, engines taking turns (compare.py's timing);
ratio = PyTorch / fromzero, above 1 meaning fromzero is faster.
"""

import argparse
import sys
import time

import numpy as np

import comparisons
import fromzero as fz
from compare import busy_cpu_seconds, machine_header, own_cpu_seconds, time_case
from comparisons import Case, random_array, torch
from threads import bench_threads, pin_threads

B, T, C, H, VOCAB = 12, 64, 128, 4, 65
L = fz.layers


def fromzero_builders(make, inputs, call_kwargs=None):
    """(forward, forward+backward) calls of a fromzero layer on `inputs`."""
    call_kwargs = call_kwargs or {}

    def forward():
        layer, xs = make(), inputs()
        return lambda: layer.forward(*xs, training=True, **call_kwargs)

    def step():
        layer, xs = make(), inputs()
        y = layer.forward(*xs, training=True, **call_kwargs)
        dy = random_array(*y.shape, seed=5)
        layer.input_grad_needed = not np.issubdtype(xs[0].dtype, np.integer)

        def call():
            layer.forward(*xs, training=True, **call_kwargs)
            layer.backward(dy)
        return call
    return forward, step


def torch_builders(make, inputs):
    """The same for a torch module: forward with autograd on, then backward."""
    def forward():
        module, xs = make(), inputs()
        return lambda: module(*xs)

    def step():
        module, xs = make(), inputs()
        dy = torch.from_numpy(random_array(*module(*xs).shape, seed=5))

        def call():
            for p in list(module.parameters()) + [x for x in xs if x.requires_grad]:
                p.grad = None
            module(*xs).backward(dy)
        return call
    return forward, step


class CausalSelfAttention(torch.nn.Module if torch is not None else object):
    """nanoGPT's attention block (model.py), dropout 0."""

    def __init__(self):
        super().__init__()
        self.c_attn, self.c_proj = torch.nn.Linear(C, 3 * C), torch.nn.Linear(C, C)

    def forward(self, x):
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, H, C // H).transpose(1, 2) for t in (q, k, v))
        y = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


def cases():
    ids = lambda: [np.random.default_rng(1).integers(0, VOCAB, (B, T)).astype(np.int32)]  # noqa: E731
    x = lambda: [random_array(B, T, C, seed=2)]  # noqa: E731

    def tensor_x():
        return [torch.from_numpy(random_array(B, T, C, seed=2)).requires_grad_()]

    class AddPositions(torch.nn.Module if torch is not None else object):
        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.from_numpy(random_array(T, C, seed=3)))

        def forward(self, x):
            return x + self.p

    def mha():
        return L.MultiHeadAttention(H, C // H)

    layers = [
        ("Embedding 65→128", lambda: L.Embedding(VOCAB, C), ids, {},
         lambda: torch.nn.Embedding(VOCAB, C),
         lambda: [torch.from_numpy(ids()[0].astype(np.int64))]),
        ("PositionEmbedding", lambda: L.PositionEmbedding(T), x, {}, AddPositions, tensor_x),
        ("LayerNormalization", lambda: L.LayerNormalization(epsilon=1e-5), x, {},
         lambda: torch.nn.LayerNorm(C), tensor_x),
        ("MultiHeadAttention causal", mha, lambda: x() * 2, {"use_causal_mask": True},
         CausalSelfAttention, tensor_x),
    ]
    out = []
    for label, make, inputs, kwargs, torch_make, torch_inputs in layers:
        fz_forward, fz_step = fromzero_builders(make, inputs, kwargs)
        for what, fz_call, index in (("forward", fz_forward, 0), ("forward+backward", fz_step, 1)):
            builders = {"fromzero": fz_call}
            if torch is not None:
                builders["torch"] = torch_builders(torch_make, torch_inputs)[index]
            out.append(Case(f"{label} {what}", f"{label}  {what}", builders))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=bench_threads())
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    start = time.perf_counter(), busy_cpu_seconds(), own_cpu_seconds()
    pinned = pin_threads(args.threads)
    rows = []
    for case in cases():
        print(f"  {case.label}", file=sys.stderr, flush=True)
        rows.append((case.label, time_case(case, args.repeat)))
    wall = time.perf_counter() - start[0]
    others = (busy_cpu_seconds() - start[1] - (own_cpu_seconds() - start[2])) / wall
    print(machine_header(args.threads, args.repeat, pinned, others, args.markdown))
    sep = " | " if args.markdown else "  "
    head = ["layer (B 12, T 64, C 128, H 4)", "fromzero µs", "PyTorch µs", "PyTorch/fromzero"]
    print(("| " + sep.join(head) + " |") if args.markdown else sep.join(head))
    if args.markdown:
        print("|" + "---|" * len(head))
    for label, best in rows:
        fzt, tt = best["fromzero"] * 1e6, best.get("torch", float("nan")) * 1e6
        cells = [f"{label:44s}", f"{fzt:10.1f}", f"{tt:10.1f}", f"{tt / fzt:6.2f}"]
        print(("| " + sep.join(c.strip() for c in cells) + " |") if args.markdown else sep.join(cells))


if __name__ == "__main__":
    main()
