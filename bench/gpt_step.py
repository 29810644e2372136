"""nanoGPT's CPU recipe: fromzero vs PyTorch eager, same model, same weights, same batches.

    python bench/gpt_step.py [--threads N] [--steps S] [--repeat R] [--tokens G] [--profile]

The model of ``fromzero train --model gpt`` (4 layers, 4 heads, 128 wide,
T = 64, vocabulary 65, no biases, tied embeddings: 0.80 M parameters), and
the same model in PyTorch (bench/torch_gpt.py, nanoGPT's model.py) holding
fromzero's initial weights (fz.models.gpt_to_nanogpt). Reports:

- training tokens/s: S steps of batch 12 × 64 tokens with nanoGPT's AdamW
  (matrices decay, global clipnorm 1.0), on the same windows of
  tiny-shakespeare; best of R repeats, the engines taking turns;
- the arithmetic rate of each engine on that step (GFLOP/s, counted below)
  next to its own GEMM on 1024² matrices in the same run — about as fast as
  that engine multiplies matrices on this machine, so the roof the step can
  at best reach;
- generation tokens/s: G new tokens after a one-character prompt,
  fz.text.generate (KV cache when the model's attention has one) against
  nanoGPT's eager loop (the whole cropped window recomputed per token);
- peak memory: each engine measured in a fresh process of its own (the
  kernel's VmHWM of that process), which builds the model, trains S steps and
  generates G tokens; the fromzero process does not import torch;
- with --profile, fz.profiler's table of one training step (the attention
  layers' rows split into their four projections and the attention kernel),
  then the same time per kind of kernel, summed over the blocks, with its
  FLOPs and GFLOP/s.

The arithmetic of one step (step_flops below). A matrix product of an
(m, k) by a (k, n) matrix costs 2·m·k·n FLOPs; a layer y = x·W on t tokens
costs 2·t·|W| forward and 4·t·|W| backward (dx = dy·Wᵀ and dW = xᵀ·dy), so
training costs 6·t·N for N weights in matrices (Kaplan et al. 2020). Here
N = L·12·C² (per block: Wq, Wk, Wv, Wo C² each, the MLP 4C² twice) + V·C
(the tied output layer) = 786,432 + 8,320 = 794,752, and t = 12·64 = 768
tokens: 6·t·N = 3.662 GFLOP. Attention's own products, QKᵀ and P·V, cost
2·T·T·C each per sequence and layer forward (all heads), twice that
backward: 12·L·T²·C·B = 0.302 GFLOP counted over the full T×T square as
PaLM's appendix does (a causal kernel may skip the masked half; so does
PyTorch's). LayerNorm, GELU, softmax, the loss and AdamW are O(t·C) or
O(N): under 1 % of the FLOPs. One step: 3.96 GFLOP.

The roof. fp32 GEMM on this class of machine: a Zen 4 core does one
512-bit (or two 256-bit) FMA per cycle, 32 FLOPs, so 2 cores at ~3.3 GHz
give ~210 GFLOP/s; fromzero's GEMM reaches ~210 at 1024² on a quiet
machine, PyTorch's ~143 (bench/compare.py). PyTorch's step ran at 21,192
tokens/s = 27.6 steps/s = 109 GFLOP/s on that quiet machine. Twice that,
the issue's target, is 218 GFLOP/s sustained over the whole step: more
than fromzero's GEMM reaches on large square matrices, with the small
shapes of this model (K = 128, 768 rows, 64×64 attention tiles), the
LayerNorms, the exps and the Python between the calls all inside it. So
2× is not reachable in fp32 on 2 such cores; if every block's GEMMs ran at
the large-GEMM rate and the rest stayed as it is, the step would be ~1.5×.

Every engine runs on N threads (FROMZERO_BENCH_THREADS, default 2). The
machine's other load during the run is printed: compare ratios, not times.
On a machine busier than its cores, PyTorch's OpenMP threads wait for each
other at every parallel region and its 2-thread figures collapse (10× slower
than 1 thread was seen); compare at --threads 1 too.
"""

import argparse
import os
import resource
import subprocess
import sys
import time

import numpy as np

import fromzero as fz
from threads import bench_threads, pin_threads

try:
    if os.environ.get("FROMZERO_BENCH_NO_TORCH"):  # fromzero's memory child: torch not loaded
        raise ImportError
    import torch
    import torch_gpt
except ImportError:  # PyTorch is optional: fromzero's figures alone
    torch = None

VOCAB, T, BATCH, LAYERS, HEADS, WIDTH = 65, 64, 12, 4, 4, 128
CONFIG = dict(block_size=T, vocab_size=VOCAB, n_layer=LAYERS, n_head=HEADS, n_embd=WIDTH,
              dropout=0.0, bias=False)


def kernel_flops(batch=BATCH, tokens=BATCH * T):
    """{kind of kernel: FLOPs of one training step (forward + backward)}, the
    count of the docstring split the way kernel_table groups the profile."""
    C, L = WIDTH, LAYERS
    dense = lambda fan_in, fan_out: 6 * tokens * fan_in * fan_out  # noqa: E731
    return {
        "attention q/k/v projections": L * 3 * dense(C, C),
        "attention kernel (QKᵀ, softmax, P·V)": L * 3 * 2 * 2 * T * T * C * batch,
        "attention output projection": L * dense(C, C),
        "mlp_fc (Dense C→4C, GELU)": L * dense(C, 4 * C),
        "mlp_proj (Dense 4C→C)": L * dense(4 * C, C),
        "embeddings and tied output layer": dense(C, VOCAB),
    }


def step_flops():
    """FLOPs of one training step of batch 12: 3.96 G (the docstring's count)."""
    return sum(kernel_flops().values())


def data():
    text = fz.datasets.text.load_data("tinyshakespeare")
    tokenizer = fz.text.CharTokenizer.fit(text)
    return tokenizer, tokenizer.encode(fz.datasets.text.train_val_split(text)[0])


def fromzero_model(steps):
    fz.utils.set_random_seed(0)
    model = fz.models.gpt(VOCAB, T, 4, 4, 128, use_bias=False, tie_embeddings=True)
    from fromzero.cli import gpt_optimizer
    model.compile(optimizer=gpt_optimizer(model, 1e-3, max(steps, 100)),
                  loss=fz.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def torch_trainer(state):
    torch.manual_seed(0)
    model = torch_gpt.GPT(CONFIG, tie=True)
    model.load_numpy(state)
    return torch_gpt.TorchGPTTrainer(model)


class Engines:
    """Both engines from the same initial weights, and the same batches."""

    def __init__(self, steps):
        self.tokenizer, ids = data()
        windows = fz.text.RandomWindows(ids, T, BATCH, seed=0)
        self.batches = [windows[i] for i in range(steps)]
        self.fz_model = fromzero_model(steps)
        self.torch = torch_trainer(fz.models.gpt_to_nanogpt(self.fz_model)) if torch else None
        self.torch_batches = ([(torch.from_numpy(x).long(), torch.from_numpy(y).long())
                               for x, y in self.batches] if torch else None)

    def train_fromzero(self):
        model = self.fz_model
        for x, y in self.batches:
            model.train_on_batch(x, y)

    def train_torch(self):
        for i, (x, y) in enumerate(self.torch_batches):
            self.torch.train_step(x, y, torch_gpt.nanogpt_lr(i))

    def generate_fromzero(self, tokens):
        fz.text.generate(self.fz_model, self.tokenizer, "\n", tokens, top_k=200, seed=0)

    def generate_torch(self, tokens):
        self.torch.model.eval()
        start = torch.tensor([self.tokenizer.encode("\n").tolist()], dtype=torch.long)
        self.torch.model.generate(start, tokens, top_k=200,
                                  generator=torch.Generator().manual_seed(0))


def gemm_1024(engine):
    """A call multiplying two 1024² float32 matrices with the engine's own GEMM."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((1024, 1024), dtype=np.float32) for _ in range(2))
    if engine == "fromzero":
        out = np.empty_like(a)
        return lambda: fz.ops.matmul(a, b, out=out)
    ta, tb, tout = torch.from_numpy(a), torch.from_numpy(b), torch.empty(1024, 1024)
    return lambda: torch.mm(ta, tb, out=tout)


def best_seconds(call, results, key):
    """Time call() and keep the fastest time seen under results[key]."""
    start = time.perf_counter()
    call()
    seconds = time.perf_counter() - start
    results[key] = min(results.get(key, float("inf")), seconds)


def busy_cpu_seconds():
    with open("/proc/stat") as f:
        fields = list(map(int, f.readline().split()[1:9]))
    user, nice, system, _, _, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib():
    """This process's peak resident memory (MiB). VmHWM, not getrusage's
    ru_maxrss: Linux carries ru_maxrss across exec, so a child started from
    a big parent would report the parent's peak (both engines showed the
    same figure); VmHWM belongs to the new address space."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # no /proc: ru_maxrss


def peak_memory(engine, threads, steps, tokens):
    """Peak RSS (MiB) of a fresh process that trains and generates with one engine."""
    env = dict(os.environ, FROMZERO_BENCH_NO_TORCH="1") if engine == "fromzero" else None
    out = subprocess.run([sys.executable, __file__, "--child", engine, "--threads", str(threads),
                          "--steps", str(steps), "--tokens", str(tokens)], env=env,
                         capture_output=True, text=True, check=True, cwd=os.path.dirname(__file__))
    return float(out.stdout.strip().splitlines()[-1])


def child(engine, steps, tokens):
    engines = Engines(steps)
    if engine == "fromzero":
        engines.train_fromzero()
        engines.generate_fromzero(tokens)
    else:
        engines.train_torch()
        engines.generate_torch(tokens)
    print(peak_rss_mib())


def kernel_table(profile):
    """The profile's time per kind of kernel, summed over the blocks, with the
    FLOPs of kernel_flops and the rate they ran at."""
    groups = {
        "attention q/k/v projections": ("/query ", "/key ", "/value "),
        "attention kernel (QKᵀ, softmax, P·V)": ("/itself",),
        "attention output projection": ("/attention_output ",),
        "mlp_fc (Dense C→4C, GELU)": ("_mlp_fc ",),
        "mlp_proj (Dense 4C→C)": ("_mlp_proj ",),
        "embeddings and tied output layer": ("token_embedding ", "position_embedding "),
        "LayerNormalization": ("(LayerNormalization)",),
        "Add (residuals)": ("(Add)",),
        "loss": ("loss ",),
        "optimizer": ("optimizer ",),
        "data and Python between the calls": ("data ", "other "),
    }
    flops = kernel_flops(profile.batch_size, profile.batch_size * T)
    lines = [f"Per kernel, one step of batch {profile.batch_size} ({profile.step_ms:.2f} ms), "
             f"summed over the {LAYERS} blocks:",
             f"{'kernel':40}{'forward ms':>11}{'backward ms':>12}{'total ms':>10}{'share':>7}"
             f"{'MFLOP':>9}{'GFLOP/s':>9}"]
    for group, keys in groups.items():
        rows = [r for r in profile.rows if any(k in r["name"] + " " for k in keys)]
        fwd = sum(r["forward_ms"] or 0.0 for r in rows)
        bwd = sum(r["backward_ms"] or 0.0 for r in rows)
        total = sum(r["total_ms"] for r in rows)
        mflop = flops.get(group, 0) / 1e6
        number = lambda value, width: f"{value:>{width}.{1 if width == 9 else 3}f}" \
            if value else " " * width  # noqa: E731
        lines.append(f"{group:40}{number(fwd, 11)}{number(bwd, 12)}{total:>10.3f}"
                     f"{total / profile.step_ms:>7.1%}{number(mflop, 9)}"
                     f"{number(mflop / total if total else 0, 9) if mflop else ' ' * 9}")
    total_flops = sum(flops.values()) / 1e6
    lines.append(f"{'step':40}{'':>11}{'':>12}{profile.step_ms:>10.3f}{1:>7.1%}"
                 f"{total_flops:>9.1f}{total_flops / profile.step_ms:>9.1f}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=bench_threads())
    parser.add_argument("--steps", type=int, default=20, help="training steps per repeat")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=200, help="tokens generated per repeat")
    parser.add_argument("--profile", action="store_true", help="print fz.profiler's table")
    parser.add_argument("--child", choices=["fromzero", "torch"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:  # pin_threads would import torch into fromzero's memory figure
        fz.set_num_threads(args.threads)
        if torch:
            torch.set_num_threads(args.threads)
        return child(args.child, args.steps, args.tokens)
    pinned = pin_threads(args.threads)
    engines = Engines(args.steps)
    names = ["fromzero"] + (["torch"] if torch else [])
    busy0, own0, wall0 = busy_cpu_seconds(), os.times(), time.perf_counter()
    engines.train_fromzero(), engines.generate_fromzero(8)  # warm-up: buffers, caches
    if torch:
        engines.train_torch(), engines.generate_torch(8)
    results = {}
    gemms = {name: gemm_1024(name) for name in names}
    for _ in range(args.repeat):
        for name in names:
            for _ in range(3):
                best_seconds(gemms[name], results, ("gemm", name))
            best_seconds(getattr(engines, f"train_{name}"), results, ("train", name))
            best_seconds(lambda: getattr(engines, f"generate_{name}")(args.tokens), results,
                         ("generate", name))
    wall = time.perf_counter() - wall0
    own = (os.times().user + os.times().system) - (own0.user + own0.system)
    others_busy = max(0.0, (busy_cpu_seconds() - busy0 - own) / wall)
    memory = {name: peak_memory(name, args.threads, args.steps, args.tokens) for name in names}

    print(f"threads: {pinned}; best of {args.repeat}; other processes kept {others_busy:.2f} "
          f"cores busy on average")
    print(f"{'':28}" + "".join(f"{n:>14}" for n in names) + ("   fromzero/torch" if torch else ""))
    train_tps = {n: args.steps * BATCH * T / results[("train", n)] for n in names}
    gen_tps = {n: args.tokens / results[("generate", n)] for n in names}
    step_gflops = {n: step_flops() / 1e9 * train_tps[n] / (BATCH * T) for n in names}
    gemm_gflops = {n: 2 * 1024 ** 3 / 1e9 / results[("gemm", n)] for n in names}
    rows = (("training tokens/s", train_tps, "{:>14.0f}"),
            ("  GFLOP/s on the step", step_gflops, "{:>14.1f}"),
            ("  GFLOP/s, GEMM 1024²", gemm_gflops, "{:>14.1f}"),
            ("generation tokens/s", gen_tps, "{:>14.0f}"))
    for label, values, form in rows:
        ratio = f"   {values['fromzero'] / values['torch']:.2f}x" if torch else ""
        print(f"{label:28}" + "".join(form.format(values[n]) for n in names) + ratio)
    print(f"{'peak memory (MiB, RSS)':28}" + "".join(f"{memory[n]:>14.0f}" for n in names))
    print(f"one step: {step_flops() / 1e9:.3f} GFLOP (6·tokens·weights in matrices + attention's "
          f"QKᵀ and P·V); fromzero's step at its own GEMM-1024² rate would be "
          f"{step_flops() / gemm_gflops['fromzero'] / 1e6:.1f} ms" +
          (f", and 2× PyTorch needs {2 * step_gflops['torch']:.0f} GFLOP/s" if torch else ""))
    if args.profile:
        x = np.concatenate([b[0] for b in engines.batches])
        y = np.concatenate([b[1] for b in engines.batches])
        profile = fz.profiler.profile(engines.fz_model, x, y, steps=args.steps,
                                      batch_size=BATCH)
        print(kernel_table(profile))
    return 0


if __name__ == "__main__":
    sys.exit(main())
