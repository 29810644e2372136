"""Generation tokens/s: fz.text.generate against nanoGPT's eager loop, side by side.

    python bench/gpt_generate.py [--threads 1 2] [--tokens 200 1000] [--prompt 1 64] [--repeat 3]

The model of bench/gpt_step.py (nanoGPT's CPU recipe: 4 layers, 4 heads, 128
wide, T = 64, 65 characters), its initial weights in both engines. For every
thread count, prompt length P (the first P characters of tiny-shakespeare)
and number of new tokens G: G tokens with top_k=200 and a fixed seed, best
of R, the engines taking turns. A token's cost has two regimes:

- while the text fits in the window (the first 64 − P tokens), fromzero
  runs one new position per token through the key/value cache;
- once the window slides, every position moves (learned absolute position
  embeddings), so each token is a forward over the whole window — with the
  last block on the last position only (Model._last_step_plan) — while
  nanoGPT recomputes the whole window every token in both regimes.

So "--prompt 64" measures the sliding regime alone, and "--prompt 1 --tokens
63" the cached one. The machine's other load during the run is printed:
compare ratios, not times.
"""

import argparse
import itertools
import os
import sys
import time

import fromzero as fz
from gpt_step import CONFIG, T, busy_cpu_seconds, data, fromzero_model, torch_trainer
from threads import pin_threads

try:
    import torch
except ImportError:  # PyTorch is optional: fromzero's figures alone
    torch = None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--tokens", type=int, nargs="+", default=[200, 1000])
    parser.add_argument("--prompt", type=int, nargs="+", default=[1, 64],
                        help="prompt lengths in characters")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    tokenizer, _ = data()
    text = fz.datasets.text.load_data("tinyshakespeare")
    model = fromzero_model(1)
    nanogpt = torch_trainer(fz.models.gpt_to_nanogpt(model)).model.eval() if torch else None
    assert CONFIG["block_size"] == T

    def fromzero_run(prompt, tokens):
        fz.text.generate(model, tokenizer, prompt, tokens, top_k=200, seed=0)

    def torch_run(prompt, tokens):
        start = torch.tensor([tokenizer.encode(prompt).tolist()], dtype=torch.long)
        nanogpt.generate(start, tokens, top_k=200, generator=torch.Generator().manual_seed(0))

    engines = {"fromzero": fromzero_run, **({"torch": torch_run} if torch else {})}
    print(f"{'threads':>7}{'prompt':>8}{'tokens':>8}" + "".join(f"{n + ' tok/s':>16}"
                                                            for n in engines)
          + ("   fromzero/torch" if torch else ""))
    busy0, own0, wall0 = busy_cpu_seconds(), os.times(), time.perf_counter()
    for threads in args.threads:
        pin_threads(threads)
        for name, run in engines.items():
            run("\n", 8)  # warm-up: buffers, thread pools
        for length, tokens in itertools.product(args.prompt, args.tokens):
            prompt = text[:length]
            best = {}
            for _ in range(args.repeat):
                for name, run in engines.items():
                    start = time.perf_counter()
                    run(prompt, tokens)
                    seconds = time.perf_counter() - start
                    best[name] = min(best.get(name, float("inf")), seconds)
            rate = {name: tokens / seconds for name, seconds in best.items()}
            ratio = f"{rate['fromzero'] / rate['torch']:>17.2f}x" if torch else ""
            print(f"{threads:>7}{length:>8}{tokens:>8}" +
                  "".join(f"{rate[n]:>16.0f}" for n in engines) + ratio, flush=True)
    wall = time.perf_counter() - wall0
    own = (os.times().user + os.times().system) - (own0.user + own0.system)
    print(f"other processes kept {max(0.0, (busy_cpu_seconds() - busy0 - own) / wall):.2f} "
          f"cores busy on average")
    return 0


if __name__ == "__main__":
    sys.exit(main())
