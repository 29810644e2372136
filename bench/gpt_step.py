"""nanoGPT's CPU recipe: fromzero vs PyTorch eager, same model, same weights, same batches.

    python bench/gpt_step.py [--threads N] [--steps S] [--repeat R] [--tokens G] [--profile]

The model of ``fromzero train --model gpt`` (4 layers, 4 heads, 128 wide,
T = 64, vocabulary 65, no biases, tied embeddings: 0.80 M parameters), and
the same model in PyTorch (bench/torch_gpt.py, nanoGPT's model.py) holding
fromzero's initial weights (fz.models.gpt_to_nanogpt). Reports:

- training tokens/s: S steps of batch 12 × 64 tokens with nanoGPT's AdamW
  (matrices decay, global clipnorm 1.0), on the same windows of
  tiny-shakespeare; best of R repeats, the engines taking turns;
- generation tokens/s: G new tokens after a one-character prompt,
  fz.text.generate (KV cache when the model's attention has one) against
  nanoGPT's eager loop (the whole cropped window recomputed per token);
- peak memory: each engine measured in a child process of its own, which
  trains S steps and generates G tokens (ru_maxrss; the fromzero child
  does not import torch);
- with --profile, fz.profiler's table of one training step.

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

VOCAB, T, BATCH = 65, 64, 12
CONFIG = dict(block_size=T, vocab_size=VOCAB, n_layer=4, n_head=4, n_embd=128, dropout=0.0,
              bias=False)


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


def peak_memory(engine, threads, steps, tokens):
    """ru_maxrss (MiB) of a child process that trains and generates with one engine."""
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
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


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
    for _ in range(args.repeat):
        for name in names:
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
    for label, values in (("training tokens/s", train_tps), ("generation tokens/s", gen_tps)):
        ratio = f"   {values['fromzero'] / values['torch']:.2f}x" if torch else ""
        print(f"{label:28}" + "".join(f"{values[n]:>14.0f}" for n in names) + ratio)
    print(f"{'peak memory (MiB, RSS)':28}" + "".join(f"{memory[n]:>14.0f}" for n in names))
    if args.profile:
        x = np.concatenate([b[0] for b in engines.batches])
        y = np.concatenate([b[1] for b in engines.batches])
        fz.profiler.profile(engines.fz_model, x, y, steps=args.steps, batch_size=BATCH)
    return 0


if __name__ == "__main__":
    sys.exit(main())
