"""Continued pretraining: a GPT trained on one text goes on learning another.

fz.finetuning.finetune_gpt takes a pretrained GPT (a file ``fromzero train
--model gpt --save FILE`` wrote, or a model of fz.models.gpt and its
tokenizer) and trains it on a new corpus with the pretraining's objective,
next-token prediction, and its optimizer (nanoGPT's AdamW, warm-up and
cosine decay: fz.text.training):

    lora_rank=0   full fine-tuning: every weight moves
    lora_rank=r   LoRA: every weight frozen; rank-r adapters A·B (fz.lora)
                  on the `lora_target` layers are all that train (and the
                  LayerNorms, with train_norms=True)

    result = fz.finetuning.finetune_gpt("shakespeare.safetensors", "austen", steps=500)
    result.val_loss, result.trainable_params, result.seconds_per_step
    fz.text.generate(result.model, result.tokenizer, "\\n", 300)

``fromzero finetune --base FILE --dataset austen --lora-rank 8`` is this
function on the command line; examples/finetune_gpt_lora.py compares full
fine-tuning, LoRA ranks and training from scratch with it.
"""

import dataclasses
import os

from . import datasets, layers, models, saving, text, utils
from .text.training import fit_on_windows

# The layers LoRA adapts by default (globs on layer names and paths, fz.lora):
# the query and value projections of every attention layer (the LoRA paper's
# choice) and the MLP's first layer, where the block's vocabulary-like
# features live. Rank 8 trains 4.4% of the recipe's GPT; the choice is
# measured against others on Shakespeare → Austen in docs/fine-tuning.md.
LORA_TARGET = ("query", "value", "block_*_mlp_fc")

# AdamW's peak learning rate: full fine-tuning moves weights that already
# work, at the pretraining's rate; LoRA's B starts at zero and only a few
# directions move, so it takes larger steps (1e-2 beat 3e-3 on Austen by
# 0.03 in validation loss, docs/fine-tuning.md).
LEARNING_RATE = {"full": 1e-3, "lora": 1e-2}

EVAL_INTERVAL, EVAL_BATCHES, VAL_BATCHES = 250, 20, 200

# The layers every model of fz.models.gpt has (tests whether a file is a GPT).
GPT_LAYERS = ("token_embedding", "position_embedding", "block_0_attention", "ln_f")


@dataclasses.dataclass
class FinetuneResult:
    """What finetune_gpt returns. model: the fine-tuned GPT (with its
    adapters when LoRA); tokenizer: the base's; val_loss: the mean loss on
    `val_batches` fixed validation windows of the new corpus; curve: (step,
    train loss, val loss) every eval_interval steps, step 0 being the base;
    trainable_params / total_params: counts of the weights that trained and
    of all (adapters included); seconds_per_step: the training steps' wall
    time (evaluations left out) over their number."""
    model: object
    tokenizer: object
    val_loss: float
    curve: list
    trainable_params: int
    total_params: int
    seconds_per_step: float
    adapted_layers: list


def load_base(path):
    """(model, tokenizer) of a GPT checkpoint that ``fromzero train --model
    gpt --save`` wrote (the tokenizer in its extras), refusing with a
    ValueError naming the file anything else: another fromzero model, a
    file without a tokenizer, a tokenizer that does not fit the model."""
    path = os.fspath(path)
    model = models.load_model(path)  # ValueError for a file that is no fromzero model
    check_gpt(model, where=path)
    extras = saving.load_extras(path)
    if "tokenizer" not in extras:
        raise ValueError(f"{path} holds no tokenizer: fine-tuning needs the one the base was "
                         f"trained with (fromzero train --model gpt --save FILE stores it)")
    tokenizer = text.deserialize(extras["tokenizer"])
    vocab = model.get_layer("token_embedding").input_dim
    if tokenizer.vocab_size != vocab:
        raise ValueError(f"{path}: its tokenizer has {tokenizer.vocab_size} tokens, the model's "
                         f"embedding {vocab}: they were not trained together")
    return model, tokenizer


def check_gpt(model, where="the base"):
    """ValueError unless `model` is a GPT of fz.models.gpt (its layers by name)."""
    names = {layer.name for layer in getattr(model, "layers", ())}
    missing = [name for name in GPT_LAYERS if name not in names]
    if missing:
        raise ValueError(f"{where} is not a GPT of fz.models.gpt / fromzero train --model gpt: "
                         f"it has no {', '.join(missing)} layer (its layers: "
                         f"{sorted(names)[:8]})")


def encode_corpus(tokenizer, dataset, max_chars=None):
    """(train ids, val ids) of corpus `dataset` (fz.datasets.text; its first
    `max_chars` characters if given), split 90/10, with the base's tokenizer;
    a ValueError when the tokenizer cannot write that text."""
    corpus = datasets.text.load_data(dataset)
    if max_chars is not None:
        corpus = corpus[:utils.check_positive_int("finetune_gpt", "max_chars", max_chars)]
    try:
        ids = tokenizer.encode(corpus)
    except ValueError as e:
        raise ValueError(f"the base's tokenizer ({type(tokenizer).__name__}, "
                         f"{tokenizer.vocab_size} tokens) cannot encode {dataset}: {e}. Fine-tune "
                         f"a base pretrained with a tokenizer that writes any text (fromzero "
                         f"train --model gpt --tokenizer bytes)") from None
    return datasets.text.train_val_split(ids)


def finetune_gpt(base, dataset="austen", tokenizer=None, steps=500, batch_size=12,
                 learning_rate=None, lora_rank=8, lora_target=None, lora_alpha=None,
                 train_norms=False, seed=1337, max_chars=None, eval_interval=EVAL_INTERVAL,
                 eval_batches=EVAL_BATCHES,
                 val_batches=VAL_BATCHES, say=print):
    """Train the GPT `base` on corpus `dataset` for `steps` steps of
    `batch_size` windows (the base's context length) and return a
    FinetuneResult.

    base: a checkpoint path (read, never written) or a model of
      fz.models.gpt — trained in place — with its `tokenizer`.
    lora_rank: 0 for full fine-tuning; r > 0 adds rank-r adapters (α =
      lora_alpha, default r) to the `lora_target` layers (a name, glob or
      list as model.enable_lora takes; default LORA_TARGET) and trains only
      them.
    train_norms: with LoRA, the LayerNorms' scales (and offsets) train too —
      1,152 numbers in the recipe's GPT that let the frozen blocks re-weight
      their features (0.016 lower Austen loss at rank 8, docs/fine-tuning.md);
      then the adapter file (save_weights(lora_only=True)) no longer holds
      every change: save the whole model.
    learning_rate: AdamW's peak; default LEARNING_RATE["full" or "lora"].
    seed: the adapters' initialization and the training windows; the
      validation windows depend on it alone (the same for every run of one
      seed, whatever is fine-tuned).
    max_chars: only the first max_chars characters of the corpus (small runs).
    say: where progress lines go (print; a no-op to be quiet).
    """
    owner = "finetune_gpt"
    steps = utils.check_positive_int(owner, "steps", steps)
    batch_size = utils.check_positive_int(owner, "batch_size", batch_size)
    if isinstance(lora_rank, bool) or not isinstance(lora_rank, int) or lora_rank < 0:
        raise ValueError(f"{owner}: lora_rank must be an integer >= 0 (0: full fine-tuning), "
                         f"got {lora_rank!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"{owner}: seed must be an integer >= 0, got {seed!r}")
    if isinstance(base, (str, os.PathLike)):
        if tokenizer is not None:
            raise ValueError(f"{owner}: the checkpoint {os.fspath(base)} brings its own "
                             f"tokenizer; pass tokenizer= only with a model")
        model, tokenizer = load_base(base)
    else:
        check_gpt(base)
        if tokenizer is None:
            raise ValueError(f"{owner}: with a model as the base, pass the tokenizer it was "
                             f"trained with (tokenizer=)")
        model = base
    train_ids, val_ids = encode_corpus(tokenizer, dataset, max_chars)
    T = model.get_layer("position_embedding").sequence_length
    utils.set_random_seed(seed)
    adapted = []
    if lora_rank:
        target = list(LORA_TARGET) if lora_target is None else lora_target
        adapted = model.enable_lora(lora_rank, target=target, lora_alpha=lora_alpha)
        for layer in model.layers:
            if train_norms and isinstance(layer, layers.LayerNormalization):
                layer.trainable = True
    else:
        for layer in model.layers:
            layer.trainable = True
    if learning_rate is None:
        learning_rate = LEARNING_RATE["lora" if lora_rank else "full"]
    trainable = sum(p.size for p in model.trainable_params)
    total = sum(p.size for p in model.weights)
    how = (f"LoRA rank {lora_rank} on {len(adapted)} layers"
           f"{' and the LayerNorms' if train_norms else ''}" if lora_rank else "full fine-tuning")
    say(f"fine-tuning on {dataset} ({len(train_ids):,} training tokens), {how}: "
        f"{trainable:,} of {total:,} parameters train ({100 * trainable / total:.2f}%), "
        f"learning rate {learning_rate:g}, {steps} steps of {batch_size} × {T} tokens", flush=True)
    evaluator, seconds = fit_on_windows(model, train_ids, val_ids, T, batch_size, steps,
                                        learning_rate, seed, eval_interval, eval_batches, say)
    seconds -= evaluator.seconds
    say(f"trained {steps} steps in {seconds:.1f} s ({seconds / steps * 1000:.1f} ms/step)")
    # A fresh dataset of the same seed: its first val_batches batches, the
    # same windows for every model fine-tuned with this seed.
    fixed_val = text.RandomWindows(val_ids, T, batch_size, seed=seed + 1)
    val_loss = float(model.evaluate(fixed_val, steps=val_batches, verbose=0))
    return FinetuneResult(model, tokenizer, val_loss, evaluator.curve, trainable, total,
                          seconds / steps, adapted)
