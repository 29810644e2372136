"""Continued pretraining of a GPT (fz.finetuning.finetune_gpt, fromzero
finetune, examples/finetune_gpt_lora.py) on a tiny base model: LoRA trains
the adapters alone, the base file never changes, the adapter file rebuilds
the fine-tuned model from the base, and a file that is no fitting GPT is
refused with a clear error."""

import hashlib
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fromzero as fz
from fromzero import cli

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "finetune_gpt_lora.py"
SMALL = dict(steps=4, max_chars=5000, eval_interval=2, eval_batches=1, val_batches=2,
             say=lambda *args, **kwargs: None)


def tiny_gpt(vocab_size=256):
    fz.utils.set_random_seed(0)
    return fz.models.gpt(vocab_size, 16, 2, 2, 16, use_bias=False, tie_embeddings=True)


@pytest.fixture
def base(tmp_path):
    """A tiny byte-level GPT saved as fromzero train --model gpt saves it."""
    path = tmp_path / "base.safetensors"
    model = tiny_gpt()
    model.compile(optimizer="adam", loss=fz.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.save(path, extras={"tokenizer": fz.text.serialize(fz.text.ByteTokenizer())})
    return path


def digest(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def ids(n=3, t=16, seed=1):
    return np.random.default_rng(seed).integers(0, 256, (n, t)).astype(np.int32)


def test_lora_trains_only_the_adapters_and_leaves_the_base_file(base, tmp_path):
    before = digest(base)
    result = fz.finetuning.finetune_gpt(base, "austen", lora_rank=4, **SMALL)
    assert digest(base) == before
    original = fz.load_model(base)
    model = result.model
    # every adapted layer is one of LORA_TARGET's, in each of the two blocks
    assert len(result.adapted_layers) == 2 * len(fz.finetuning.LORA_TARGET)
    adapters = {id(p) for p in model.trainable_params}
    a_and_b = [(p, l) for p, l in fz.lora.adapted_layers(model)]
    assert len(adapters) == 2 * len(a_and_b)
    assert all(id(l.lora_kernel_a) in adapters and id(l.lora_kernel_b) in adapters
               for _, l in a_and_b)
    assert result.trainable_params == sum(p.size for p in model.trainable_params)
    assert result.trainable_params < 0.5 * result.total_params
    frozen = [w for w in model.weights if id(w) not in adapters]
    assert len(frozen) == len(original.weights)
    for w, w0 in zip(frozen, original.weights):
        np.testing.assert_array_equal(w, w0)  # bit for bit: the kernels never moved
    assert all(np.any(l.lora_kernel_b != 0) for _, l in a_and_b)  # B left zero: trained
    # the adapters alone, applied to the base, give the fine-tuned model's outputs
    adapter_file = tmp_path / "adapters.safetensors"
    model.save_weights(adapter_file, lora_only=True)
    assert adapter_file.stat().st_size < 4 * result.trainable_params + 4096
    rebuilt, tokenizer = fz.finetuning.load_base(base)
    rebuilt.load_weights(adapter_file, lora_only=True)
    np.testing.assert_array_equal(rebuilt.predict(ids(), verbose=0),
                                  model.predict(ids(), verbose=0))
    assert isinstance(tokenizer, fz.text.ByteTokenizer)


def test_train_norms_adds_the_layernorms_to_the_adapters(base):
    result = fz.finetuning.finetune_gpt(base, "austen", lora_rank=2, train_norms=True, **SMALL)
    norms = [layer for layer in result.model.layers
             if isinstance(layer, fz.layers.LayerNormalization)]
    assert len(norms) == 2 * 2 + 1  # two per block, and the last
    original = fz.load_model(base)
    trained = {id(p) for p in result.model.trainable_params}
    assert all(id(layer.gamma) in trained for layer in norms)
    # rank 2 on query, value (16 -> 16) and mlp_fc (16 -> 64) of 2 blocks, and 5 γ of 16
    assert fz.finetuning.LORA_TARGET == ("query", "value", "block_*_mlp_fc")
    assert result.trainable_params == 2 * (2 * (16 + 16) + 2 * (16 + 16) + 2 * (16 + 64)) + 5 * 16
    changed = [layer.name for layer in norms
               if not np.array_equal(layer.gamma, original.get_layer(layer.name).gamma)]
    assert changed == [layer.name for layer in norms]


def test_full_fine_tuning_trains_every_weight_and_learns(base):
    result = fz.finetuning.finetune_gpt(base, "austen", lora_rank=0, learning_rate=1e-2,
                                        **{**SMALL, "steps": 20, "eval_interval": 20})
    original = fz.load_model(base)
    assert result.trainable_params == result.total_params == original.count_params()
    assert not result.adapted_layers
    changed = [not np.array_equal(w, w0) for w, w0 in zip(result.model.weights, original.weights)]
    assert all(changed)
    (_, _, val_before), (_, _, val_after) = result.curve[0], result.curve[-1]
    assert val_after < val_before - 0.1  # 20 steps at 1e-2 from random: it learns
    assert result.seconds_per_step > 0


def test_the_same_seed_repeats_bit_for_bit(base):
    first, second = (fz.finetuning.finetune_gpt(base, "tang300", lora_rank=2, seed=5, **SMALL)
                     for _ in range(2))
    assert first.val_loss == second.val_loss and first.curve == second.curve
    for w1, w2 in zip(first.model.weights, second.model.weights):
        np.testing.assert_array_equal(w1, w2)


def test_a_model_as_the_base_with_its_tokenizer():
    model = tiny_gpt()
    result = fz.finetuning.finetune_gpt(model, "austen", tokenizer=fz.text.ByteTokenizer(),
                                        lora_rank=2, lora_target="query", **SMALL)
    assert result.model is model
    assert result.adapted_layers == ["block_0_attention/query", "block_1_attention/query"]
    with pytest.raises(ValueError, match="pass the tokenizer it was trained with"):
        fz.finetuning.finetune_gpt(tiny_gpt(), "austen", **SMALL)


def test_foreign_bases_are_refused_with_a_clear_error(base, tmp_path):
    mlp = fz.Sequential([fz.layers.Dense(4)])
    mlp.build((None, 3))
    mlp.save(tmp_path / "mlp.safetensors")
    with pytest.raises(ValueError, match=r"mlp.safetensors is not a GPT of fz.models.gpt.*"
                                         r"no token_embedding"):
        fz.finetuning.finetune_gpt(tmp_path / "mlp.safetensors", **SMALL)
    (tmp_path / "junk.bin").write_bytes(b"not a model at all" * 10)
    with pytest.raises(ValueError, match="junk.bin"):
        fz.finetuning.finetune_gpt(tmp_path / "junk.bin", **SMALL)
    with pytest.raises(FileNotFoundError):
        fz.finetuning.finetune_gpt(tmp_path / "missing.safetensors", **SMALL)
    tiny_gpt().save(tmp_path / "bare.safetensors")  # no tokenizer stored
    with pytest.raises(ValueError, match="holds no tokenizer"):
        fz.finetuning.finetune_gpt(tmp_path / "bare.safetensors", **SMALL)
    chars = fz.text.CharTokenizer("abcdefgh")  # 8 tokens, for a 256-token model
    tiny_gpt().save(tmp_path / "odd.safetensors", extras={"tokenizer": fz.text.serialize(chars)})
    with pytest.raises(ValueError, match="tokenizer has 8 tokens, the model's embedding 256"):
        fz.finetuning.finetune_gpt(tmp_path / "odd.safetensors", **SMALL)
    shakespeare_chars = fz.text.CharTokenizer.fit(fz.datasets.text.load_data("tinyshakespeare"))
    tiny_gpt(shakespeare_chars.vocab_size).save(
        tmp_path / "chars.safetensors", extras={"tokenizer": fz.text.serialize(shakespeare_chars)})
    with pytest.raises(ValueError, match=r"cannot encode tang300: .*--tokenizer bytes"):
        fz.finetuning.finetune_gpt(tmp_path / "chars.safetensors", "tang300", **SMALL)
    for wrong in (dict(lora_rank=-1), dict(lora_rank=1.5), dict(seed=-3), dict(steps=0)):
        with pytest.raises(ValueError):
            fz.finetuning.finetune_gpt(base, **{**SMALL, **wrong})
    with pytest.raises(ValueError, match="no layer matches"):
        fz.finetuning.finetune_gpt(base, lora_target="no_such_layer", **SMALL)


def test_cli_finetune_saves_adapters_that_generate_reads(base, tmp_path, capsys):
    adapters = tmp_path / "adapters.safetensors"
    assert cli.main(["finetune", "--base", str(base), "--dataset", "austen", "--steps", "3",
                     "--lora-rank", "2", "--lora-target", "query,value", "--sample-tokens", "20",
                     "--save", str(adapters), "--seed", "0"]) == 0
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert re.fullmatch(r"val loss: \d+\.\d{4}", lines[-1])
    assert "step 0: train loss" in out and "sample:" in out
    assert "LoRA rank 2 on 4 layers" in out
    assert adapters.exists()
    assert cli.main(["generate", "--checkpoint", str(base), "--adapters", str(adapters),
                     "--max-new-tokens", "5", "--seed", "0"]) == 0
    full = tmp_path / "full.safetensors"
    assert cli.main(["finetune", "--base", str(base), "--steps", "2", "--lora-rank", "0",
                     "--sample-tokens", "5", "--save", str(full)]) == 0
    assert "full fine-tuning" in capsys.readouterr().out
    assert fz.saving.load_extras(full)["tokenizer"] == fz.text.serialize(fz.text.ByteTokenizer())


def test_cli_finetune_errors(tmp_path, capsys):
    mlp = fz.Sequential([fz.layers.Dense(4)])
    mlp.build((None, 3))
    mlp.save(tmp_path / "mlp.safetensors")
    assert cli.main(["finetune", "--base", str(tmp_path / "mlp.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "fromzero: error:" in err and "is not a GPT" in err
    assert cli.main(["finetune", "--base", str(tmp_path / "none.safetensors")]) == 2


def test_example_runs_tiny():
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), "--pretrain-steps", "6", "--steps", "3", "--ranks", "8",
         "--max-chars", "20000", "--eval-batches", "1", "--val-batches", "1",
         "--sample-tokens", "10"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    for dataset in ("austen", "tang300"):
        table = out.split(f"\n{dataset}: 3 steps each")[1]
        for run in ("full fine-tuning", "LoRA rank 8", "from scratch"):
            assert re.search(rf"\| {run} \| \d+\.\d{{4}} \| [\d,]+ \| [\d.]+% \| [\d.]+ \|", table)
        assert f"{dataset}, sampled from LoRA rank 8:" in out
