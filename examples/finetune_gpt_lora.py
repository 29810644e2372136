"""Continued pretraining with LoRA: a GPT that learned Shakespeare learns Jane
Austen, then 唐诗三百首 — changing all of its weights, or only low-rank
adapters on a few of them.

    1. pretrain   the byte-level GPT (ByteTokenizer: 256 tokens, any
                  language; the recipe's shape: 4 layers × 4 heads × 128
                  wide, windows of 64, batch 12) on tiny-shakespeare
    2. adapt      that model to a new corpus for the same number of steps
                  each way (fz.finetuning.finetune_gpt):
                    full fine-tuning  every weight trains
                    LoRA rank 4/8/16  weights frozen, adapters A·B on the
                                      query and value projections and the
                                      MLP's first layer train (rank 8 once
                                      more with the LayerNorms trained too)
                    from scratch      the same model, random weights
    3. compare    validation loss on the same fixed windows of the new
                  corpus, trainable parameters, time per step; sample text

Run:    python examples/finetune_gpt_lora.py                     (2000 + 12 × 500 steps)
        python examples/finetune_gpt_lora.py --pretrain-steps 200 --steps 50   (a quick look)
        python examples/finetune_gpt_lora.py --base shakespeare.safetensors    (skip step 1)

--save-base FILE keeps the pretrained model (for --base next time, or
``fromzero finetune --base FILE``).
"""

import argparse
import os
import tempfile

import fromzero as fz

# The recipe's model (fromzero train --model gpt) with the byte tokenizer.
SHAPE = dict(sequence_length=64, num_layers=4, num_heads=4, hidden_dim=128)
PROMPTS = {"austen": "\n", "tang300": "《"}


def gpt(vocab_size):
    return fz.models.gpt(vocab_size, SHAPE["sequence_length"], SHAPE["num_layers"],
                         SHAPE["num_heads"], SHAPE["hidden_dim"], use_bias=False,
                         tie_embeddings=True)


def pretrain(args, path):
    """Step 1: train a fresh GPT on tiny-shakespeare and save it (with its
    tokenizer) to `path`. Training from random weights is fine-tuning from
    a random base: the same function, the same optimizer."""
    print(f"== pretraining on tinyshakespeare, {args.pretrain_steps} steps")
    tokenizer = fz.text.ByteTokenizer()
    fz.utils.set_random_seed(args.seed)
    result = fz.finetuning.finetune_gpt(
        gpt(tokenizer.vocab_size), "tinyshakespeare", tokenizer=tokenizer,
        steps=args.pretrain_steps, lora_rank=0, seed=args.seed, max_chars=args.max_chars,
        eval_batches=args.eval_batches, val_batches=args.val_batches)
    print(f"pretrained: tinyshakespeare val loss {result.val_loss:.4f}")
    result.model.save(path, extras={"tokenizer": fz.text.serialize(tokenizer)})


def compare(args, base, dataset):
    """Step 2 and 3 on one corpus: one row per way of adapting the base."""
    runs = [("full fine-tuning", 0, False)] + [(f"LoRA rank {r}", r, False) for r in args.ranks]
    if 8 in args.ranks:
        runs.append(("LoRA rank 8 + LayerNorms", 8, True))
    runs.append(("from scratch", None, False))
    rows, models = [], {}
    for name, rank, train_norms in runs:
        print(f"\n== {dataset}: {name}")
        options = dict(steps=args.steps, seed=args.seed, max_chars=args.max_chars,
                       eval_batches=args.eval_batches, val_batches=args.val_batches)
        if rank is None:  # the same architecture, random weights
            fz.utils.set_random_seed(args.seed)
            result = fz.finetuning.finetune_gpt(gpt(256), dataset, fz.text.ByteTokenizer(),
                                                lora_rank=0, **options)
        else:
            learning_rate = args.lora_learning_rate if rank else args.full_learning_rate
            result = fz.finetuning.finetune_gpt(base, dataset, lora_rank=rank,
                                                train_norms=train_norms,
                                                learning_rate=learning_rate, **options)
        rows.append((name, result))
        models[name] = result
    before = rows[0][1].curve[0][2]  # step 0 of full fine-tuning: the base as it was
    print(f"\n{dataset}: {args.steps} steps each, batch 12 × 64 bytes; validation loss on the "
          f"same {args.val_batches} windows (the Shakespeare base before: {before:.4f})\n")
    print("| run | val loss | trainable parameters | % of the model | ms/step |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, r in rows:
        print(f"| {name} | {r.val_loss:.4f} | {r.trainable_params:,} | "
              f"{100 * r.trainable_params / r.total_params:.2f}% | "
              f"{1000 * r.seconds_per_step:.1f} |")
    return models


def show_sample(result, prompt, tokens, seed):
    print(fz.text.generate(result.model, result.tokenizer, prompt, tokens, temperature=0.8,
                           top_k=200, seed=seed))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pretrain-steps", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=500, help="steps of every adaptation run")
    parser.add_argument("--ranks", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--datasets", nargs="+", default=["austen", "tang300"],
                        choices=["austen", "tang300"])
    parser.add_argument("--full-learning-rate", type=float,
                        default=fz.finetuning.LEARNING_RATE["full"])
    parser.add_argument("--lora-learning-rate", type=float,
                        default=fz.finetuning.LEARNING_RATE["lora"])
    parser.add_argument("--max-chars", type=int, default=None,
                        help="use only the first N characters of each corpus (quick runs)")
    parser.add_argument("--eval-batches", type=int, default=fz.finetuning.EVAL_BATCHES,
                        help="batches of the loss estimates printed during training")
    parser.add_argument("--val-batches", type=int, default=fz.finetuning.VAL_BATCHES,
                        help="fixed validation batches of the final comparison")
    parser.add_argument("--sample-tokens", type=int, default=400)
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--base", default=None, help="a pretrained byte-level GPT (skip step 1)")
    parser.add_argument("--save-base", default=None, help="keep the pretrained model here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        base = args.base
        if base is None:
            base = args.save_base or os.path.join(folder, "shakespeare.safetensors")
            pretrain(args, base)
        for dataset in args.datasets:
            models = compare(args, base, dataset)
            for name in ("LoRA rank 8", min(models, key=lambda n: models[n].val_loss)):
                if name in models:
                    print(f"\n{dataset}, sampled from {name}:")
                    show_sample(models[name], PROMPTS[dataset], args.sample_tokens, args.seed)


if __name__ == "__main__":
    main()
