"""nanoGPT's CPU recipe trained by fromzero and by PyTorch, scored on the same validation windows.

    python bench/gpt_recipe.py run --engine fromzero --seed 1337 [--out DIR] [--threads N]
    python bench/gpt_recipe.py run --engine torch --seed 1337 [--init fromzero]
    python bench/gpt_recipe.py table [--out DIR]

The recipe (nanoGPT's README, "I only have a macbook"): train_shakespeare_char
with --block_size=64 --batch_size=12 --n_layer=4 --n_head=4 --n_embd=128
--max_iters=2000 --lr_decay_iters=2000 --dropout=0.0 --eval_iters=20.

- engine fromzero: ``python -m fromzero train --model gpt --seed S --save``
  (the command line itself, nothing set from here but the seed and threads);
- engine torch: nanoGPT's train.py loop, written out with bench/torch_gpt.py
  (nanoGPT's model.py): torch.manual_seed(S), nanoGPT's init, batches from
  torch.randint over the train split, estimate_loss every 250 iterations on
  20 fresh random batches drawn from the same generator, get_lr, AdamW
  (matrices decay 0.1, β 0.9/0.99, ε 1e-8), clip_grad_norm_ 1.0. It stops
  after the estimate at iteration 2000 (nanoGPT then takes one more step at
  min_lr, after the figure it prints). With --init fromzero it starts instead
  from the weights fromzero's CLI would start from and reads the batches of
  fz.text.RandomWindows the CLI trains on: only the engines' arithmetic differs.

Each finished run is scored by the same code on the same windows of the
validation split (the last 10% of tiny-shakespeare, 111,540 characters):
- whole: the split cut into consecutive windows of 64 (1742 windows, 111,488
  targets; fz.text.ConsecutiveWindows), also starting 16, 32 and 48 tokens in,
  to show how little the cut matters;
- random: 200 fixed random batches of 12 windows (seed 2026, the same for every
  run), with the standard deviation of one batch's loss, from which the noise
  of a 20-batch estimate (nanoGPT's eval_iters=20) follows.
The scores are computed by fromzero from the nanoGPT state dict; one PyTorch
forward over the whole split cross-checks them. Results go to DIR/<engine>-<init>-<seed>.json
(curve, scores, seconds, checkpoint); ``table`` prints them as Markdown.
"""

import argparse
import glob
import json
import math
import os
import re
import subprocess
import sys
import time

import numpy as np

import fromzero as fz

T, BATCH, STEPS, EVAL_INTERVAL, EVAL_ITERS = 64, 12, 2000, 250, 20
CONFIG = dict(block_size=T, vocab_size=65, n_layer=4, n_head=4, n_embd=128, dropout=0.0,
              bias=False)
SCORE_SEED, SCORE_BATCHES = 2026, 200
HERE = os.path.dirname(os.path.abspath(__file__))


def splits():
    text = fz.datasets.text.load_data("tinyshakespeare")
    tokenizer = fz.text.CharTokenizer.fit(text)
    train_text, val_text = fz.datasets.text.train_val_split(text)
    return tokenizer, tokenizer.encode(train_text), tokenizer.encode(val_text)


# ---------------------------------------------------------------- the two engines

def run_fromzero(seed, steps, out, threads):
    """The CLI, as a user runs it; the curve parsed from its output."""
    checkpoint = os.path.join(out, f"fromzero-{seed}.safetensors")
    command = [sys.executable, "-m", "fromzero", "train", "--model", "gpt", "--seed", str(seed),
               "--save", checkpoint] + (["--steps", str(steps)] if steps != STEPS else [])
    if threads:
        command += ["--threads", str(threads)]
    start = time.perf_counter()
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    seconds = time.perf_counter() - start
    curve = [(int(m[1]), float(m[2]), float(m[3])) for m in
             re.finditer(r"step (\d+): train loss ([\d.]+), val loss ([\d.]+)", output)]
    sample = output.split("sample:\n", 1)[1].rsplit("\nthe whole validation split", 1)[0]
    model = fz.models.load_model(checkpoint)
    return dict(state=fz.models.gpt_to_nanogpt(model), curve=curve, seconds=seconds,
                checkpoint=checkpoint, sample=sample, cli_last_line=output.strip().splitlines()[-1])


def run_torch(seed, steps, init, out, threads):
    """nanoGPT's train.py loop (see the module's docstring)."""
    import torch
    import torch_gpt
    torch.set_num_threads(threads or fz.get_num_threads())
    tokenizer, train_ids, val_ids = splits()
    torch.manual_seed(seed)
    model = torch_gpt.GPT(CONFIG, tie=True)
    if init == "fromzero":  # the CLI's initial weights and its batches
        fz.utils.set_random_seed(seed)
        start_model = fz.models.gpt(65, T, 4, 4, 128, use_bias=False, tie_embeddings=True)
        model.load_numpy(fz.models.gpt_to_nanogpt(start_model))
        windows = fz.text.RandomWindows(train_ids, T, BATCH, seed=seed)
    else:
        model.nanogpt_init()
    trainer = torch_gpt.TorchGPTTrainer(model)
    data = {"train": torch.from_numpy(train_ids.astype(np.int64)),
            "val": torch.from_numpy(val_ids.astype(np.int64))}

    def get_batch(split):  # nanoGPT's get_batch
        d = data[split]
        ix = torch.randint(len(d) - T, (BATCH,))
        return torch.stack([d[i:i + T] for i in ix]), torch.stack([d[i + 1:i + 1 + T] for i in ix])

    def train_batch(it):
        if init == "fromzero":
            x, y = windows[it]
            return torch.from_numpy(x.astype(np.int64)), torch.from_numpy(y.astype(np.int64))
        return get_batch("train")

    @torch.no_grad()
    def estimate_loss():  # nanoGPT's: eval_iters fresh random batches per split
        model.eval()
        out_ = []
        for split in ("train", "val"):
            losses = []
            for _ in range(EVAL_ITERS):
                x, y = get_batch(split)
                logits = model(x)
                losses.append(torch.nn.functional.cross_entropy(
                    logits.view(-1, logits.size(-1)), y.view(-1)).item())
            out_.append(float(np.mean(losses)))
        model.train()
        return out_

    curve = []
    start = time.perf_counter()
    x, y = train_batch(0)
    for it in range(steps + 1):
        lr = torch_gpt.nanogpt_lr(it, 1e-3, min(100, steps // 10), steps, 1e-4)
        if it % EVAL_INTERVAL == 0 or it == steps:
            curve.append((it, *estimate_loss()))
            print(f"step {it}: train loss {curve[-1][1]:.4f}, val loss {curve[-1][2]:.4f}",
                  flush=True)
        if it == steps:
            break
        trainer.train_step(x, y, lr)
        x, y = train_batch(it + 1)
    seconds = time.perf_counter() - start
    state = model.numpy_state()
    checkpoint = os.path.join(out, f"torch-{init}-{seed}.npz")
    np.savez(checkpoint, **state)
    return dict(state=state, curve=curve, seconds=seconds, checkpoint=checkpoint)


# ---------------------------------------------------------------- one scorer for both

def score(state, val_ids):
    """Losses of the nanoGPT state dict `state` on the fixed validation windows."""
    model = fz.models.gpt_from_nanogpt(state, CONFIG)
    model.compile(loss=fz.losses.SparseCategoricalCrossentropy(from_logits=True))
    whole = {}
    for offset in (0, 16, 32, 48):
        whole[offset] = model.evaluate(fz.text.ConsecutiveWindows(val_ids[offset:], T, 64),
                                       verbose=0)
    windows = fz.text.RandomWindows(val_ids, T, BATCH, seed=SCORE_SEED)
    per_batch = np.array([model.test_on_batch(*windows[i]) for i in range(SCORE_BATCHES)])
    result = dict(whole=whole[0], whole_offsets=[whole[o] for o in (16, 32, 48)],
                  random=float(per_batch.mean()), batch_std=float(per_batch.std(ddof=1)),
                  first20=float(per_batch[:20].mean()))
    try:  # the same whole-split loss by PyTorch's forward, as a cross-check
        import torch
        import torch_gpt
        net = torch_gpt.GPT(CONFIG, tie=True)
        net.load_numpy(state)
        net.eval()
        split = fz.text.ConsecutiveWindows(val_ids, T, 64)
        total = 0.0
        with torch.no_grad():
            for i in range(len(split)):
                x, y = (torch.from_numpy(a.astype(np.int64)) for a in split[i])
                logits = net(x)
                total += torch.nn.functional.cross_entropy(
                    logits.view(-1, logits.size(-1)), y.view(-1), reduction="sum").item()
        result["whole_torch"] = total / (split.num_windows * T)
    except ImportError:
        pass
    return result


def run(args):
    os.makedirs(args.out, exist_ok=True)
    sys.path.insert(0, HERE)
    if args.threads:
        fz.set_num_threads(args.threads)
    init = "fromzero" if args.engine == "fromzero" else args.init
    result = (run_fromzero(args.seed, args.steps, args.out, args.threads)
              if args.engine == "fromzero" else
              run_torch(args.seed, args.steps, init, args.out, args.threads))
    _, _, val_ids = splits()
    result.update(score(result.pop("state"), val_ids), engine=args.engine, init=init,
                  seed=args.seed, load=os.getloadavg()[0])
    path = os.path.join(args.out, f"{args.engine}-{init}-{args.seed}.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps({k: v for k, v in result.items() if k not in ("curve", "sample")}, indent=1))


def table(args):
    rows = [json.load(open(p)) for p in sorted(glob.glob(os.path.join(args.out, "*.json")))]
    print("| engine (init, batches) | seed | val loss, whole split | offsets 16/32/48 | "
          "200 fixed batches | their first 20 | 20-batch estimate at step 2000 (run's own) | "
          "one batch's σ | seconds (load) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['engine']} ({r['init']}) | {r['seed']} | {r['whole']:.4f} | "
              f"{'/'.join(f'{v:.4f}' for v in r['whole_offsets'])} | {r['random']:.4f} | "
              f"{r['first20']:.4f} | {r['curve'][-1][2]:.4f} | {r['batch_std']:.3f} | "
              f"{r['seconds']:.0f} ({r['load']:.1f}) |")
    for engine in sorted({(r["engine"], r["init"]) for r in rows}):
        whole = [r["whole"] for r in rows if (r["engine"], r["init"]) == engine]
        if len(whole) > 1:
            print(f"\n{engine[0]} ({engine[1]}): whole-split mean {np.mean(whole):.4f}, "
                  f"seed σ {np.std(whole, ddof=1):.4f} over {len(whole)} seeds")
    print("\ncurves (step: train / val, 20 random batches each):")
    for r in rows:
        print(f"{r['engine']} ({r['init']}) seed {r['seed']}: " +
              ", ".join(f"{s}: {a:.3f}/{b:.3f}" for s, a, b in r["curve"]))


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run")
    r.add_argument("--engine", choices=["fromzero", "torch"], required=True)
    r.add_argument("--init", choices=["nanogpt", "fromzero"], default="nanogpt",
                   help="torch only: nanoGPT's init and torch.randint batches (default), or "
                        "fromzero's initial weights and RandomWindows batches")
    r.add_argument("--seed", type=int, default=1337)
    r.add_argument("--steps", type=int, default=STEPS, help="fewer for a quick try")
    r.add_argument("--threads", type=int, default=None)
    r.add_argument("--out", default="gpt_recipe_runs")
    t = sub.add_parser("table")
    t.add_argument("--out", default="gpt_recipe_runs")
    args = parser.parse_args()
    return run(args) if args.command == "run" else table(args)


if __name__ == "__main__":
    main()
