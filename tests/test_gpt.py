"""fz.models.gpt: nanoGPT's model as a functional fromzero model.

Its gradients by finite differences and against PyTorch (bench/torch_gpt.py,
nanoGPT's model.py, same weights through the state-dict bridge), the bridge
both ways, generation with and without the key/value cache, a short training
run on tiny-shakespeare whose validation loss falls well below log(vocab),
bit-identical training across runs and thread counts, the command line, and
clear errors for bad arguments."""

import math
import sys
from pathlib import Path

import numpy as np
import pytest

import fromzero as fz
from fromzero import cli
from fromzero.gpt import _pairs
from fromzero.layers.base import data_address
from fromzero.text import generation

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

TINY = dict(vocab_size=11, sequence_length=6, num_layers=2, num_heads=2, hidden_dim=8)


def tiny_gpt(seed=0, **overrides):
    fz.utils.set_random_seed(seed)
    return fz.models.gpt(**(TINY | overrides))


def token_ids(shape, vocab=TINY["vocab_size"], seed=1):
    return np.random.default_rng(seed).integers(0, vocab, size=shape).astype(np.int32)


def nanogpt_config(model_kwargs, bias):
    return dict(block_size=model_kwargs["sequence_length"], vocab_size=model_kwargs["vocab_size"],
                n_layer=model_kwargs["num_layers"], n_head=model_kwargs["num_heads"],
                n_embd=model_kwargs["hidden_dim"], dropout=0.0, bias=bias)


# ---------------------------------------------------------------- the model

def test_recipe_model_has_nanogpt_parameter_count_and_a_summary(capsys):
    model = fz.models.gpt(65, 64, 4, 4, 128, use_bias=False, tie_embeddings=True)
    # nanoGPT prints 0.80M (without the position embedding): 804,096 − 64·128
    assert model.count_params() == 804_096
    model.summary()
    text = capsys.readouterr().out
    assert "block_3_attention" in text and "token_embedding" in text


def test_recipe_model_starts_from_nanogpts_init():
    """nanoGPT's _init_weights: every matrix and embedding N(0, 0.02²), the two
    projections into the residual stream (attention output, MLP c_proj)
    N(0, (0.02/√(2·4))²), LayerNorm γ = 1 and no β (bias=False)."""
    fz.utils.set_random_seed(0)
    model = fz.models.gpt(65, 64, 4, 4, 128, use_bias=False, tie_embeddings=True)
    residual = 0.02 / math.sqrt(2 * 4)
    get = model.get_layer
    expected = [(get("token_embedding").embeddings, 0.02),
                (get("position_embedding").position_embeddings, 0.02)]
    for i in range(4):
        attention = get(f"block_{i}_attention")
        expected += [(getattr(attention, f"{name}_kernel"), 0.02)
                     for name in ("query", "key", "value")]
        expected += [(attention.output_kernel, residual),
                     (get(f"block_{i}_mlp_fc").kernel, 0.02),
                     (get(f"block_{i}_mlp_proj").kernel, residual)]
    for array, std in expected:  # ≥ 8,000 draws each: the std is within 3% of its value
        assert abs(array.mean()) < 0.1 * std and array.std() == pytest.approx(std, rel=0.03)
    drawn = {data_address(a) for a, _ in expected}
    rest = [p for p in model.trainable_params if data_address(p) not in drawn]
    assert len(rest) == 2 * 4 + 1 and all(p.ndim == 1 and np.all(p == 1) for p in rest)  # γ


def test_recipe_decays_matrices_and_embeddings_but_not_layernorm():
    """nanoGPT's AdamW groups: weight decay on every ≥ 2-D tensor (the
    embeddings included), none on LayerNorm's γ. With zero gradients Adam
    does not move a weight, so one step shows the decay alone: ×(1 − lr·0.1)."""
    fz.utils.set_random_seed(0)
    model = fz.models.gpt(65, 64, 2, 4, 32, use_bias=False, tie_embeddings=True)
    optimizer = cli.gpt_optimizer(model, 1e-3, 2000)
    params = model.trainable_params
    before = [p.copy() for p in params]
    rate = optimizer.learning_rate
    optimizer.apply_gradients([(np.zeros_like(p), p) for p in params])
    for p, b in zip(params, before):
        np.testing.assert_allclose(p, b * (1 - rate * 0.1) if p.ndim >= 2 else b, rtol=1e-6)
    assert sum(p.ndim >= 2 for p in params) == 2 + 2 * 6  # embeddings, 6 matrices per block


def test_recipe_learning_rate_is_nanogpts_get_lr():
    """nanoGPT's train.py get_lr(it) with warmup_iters=100, lr_decay_iters=2000:
    lr·(it+1)/101 while warming up, then a cosine from 1e-3 at 100 to 1e-4 at
    2000; the optimizer's step k uses get_lr(k), k = 0, 1, ..."""
    model = fz.models.gpt(65, 64, 1, 1, 8, use_bias=False, tie_embeddings=True)
    optimizer = cli.gpt_optimizer(model, 1e-3, 2000)
    schedule = optimizer.learning_rate_schedule
    cosine = 1e-4 + 0.5 * (1 + math.cos(math.pi * 1899 / 1900)) * 9e-4
    for step, lr in [(0, 1e-3 / 101), (1, 2e-3 / 101), (99, 1e-3 * 100 / 101), (100, 1e-3),
                     (1050, 5.5e-4), (1999, cosine), (2000, 1e-4), (2500, 1e-4)]:
        assert schedule(step) == pytest.approx(lr, rel=1e-12), step
    params = model.trainable_params
    assert optimizer.learning_rate == pytest.approx(1e-3 / 101, rel=1e-12)  # the first step's
    optimizer.apply_gradients([(np.zeros_like(p), p) for p in params])
    assert optimizer.learning_rate == pytest.approx(2e-3 / 101, rel=1e-12)


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_heads=3), "num_heads=3 must divide hidden_dim=8"),
    (dict(vocab_size=0), "vocab_size"),
    (dict(dropout=1.0), "dropout"),
    (dict(num_layers=-1), "num_layers"),
])
def test_bad_configurations_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        fz.models.gpt(**(TINY | kwargs))


def test_bad_token_ids_and_long_sequences_are_refused():
    model = tiny_gpt()
    with pytest.raises(ValueError, match="11"):
        model.predict(np.full((1, 6), 11, dtype=np.int32), verbose=0)
    with pytest.raises(ValueError):
        model.predict(np.full((1, 6), -1, dtype=np.int32), verbose=0)
    with pytest.raises(ValueError, match="6"):
        model.predict(np.zeros((1, 7), dtype=np.int32), verbose=0)


@pytest.mark.parametrize("tie", [False, True])
def test_two_block_gpt_gradients_by_finite_differences(tie):
    model = tiny_gpt(tie_embeddings=tie)
    report = fz.testing.check_gradients(model, token_ids((2, 6)), epsilon=1e-2)
    # The key projection's bias adds q·b_k to every score of a row, which the
    # softmax ignores: its gradient is exactly 0, so finite differences give
    # pure rounding noise there. Checked separately: its analytic gradient is 0.
    # (attention's weights are views of its Dense sublayers': found by address)
    index = {data_address(p): i for i, p in enumerate(model.trainable_params)}
    key_biases = {f"param_{index[data_address(model.get_layer(f'block_{i}_attention').key_bias)]}"
                  for i in range(TINY["num_layers"])}
    errors = {k: v for k, v in report.items() if k not in key_biases}
    assert len(errors) == len(model.trainable_params) - 2 and max(errors.values()) < 2e-2, report
    for i in range(TINY["num_layers"]):
        bias = model.get_layer(f"block_{i}_attention").key_bias
        assert np.abs(model.trainable_grads[index[data_address(bias)]]).max() < 1e-5


# ---------------------------------------------------------------- nanoGPT's state dict

@pytest.mark.parametrize("bias, tie", [(False, True), (True, False)])
def test_bridge_round_trip(bias, tie):
    model = tiny_gpt(use_bias=bias, tie_embeddings=tie)
    state = fz.models.gpt_to_nanogpt(model)
    C = TINY["hidden_dim"]
    assert state["transformer.h.0.attn.c_attn.weight"].shape == (3 * C, C)
    assert state["transformer.h.1.mlp.c_fc.weight"].shape == (4 * C, C)
    assert ("transformer.h.0.ln_1.bias" in state) == bias
    back = fz.models.gpt_from_nanogpt(state, nanogpt_config(TINY, bias))
    again = fz.models.gpt_to_nanogpt(back)
    assert state.keys() == again.keys()
    assert all(np.array_equal(state[k], again[k]) for k in state)
    ids = token_ids((3, 6))
    np.testing.assert_array_equal(back.predict(ids, verbose=0), model.predict(ids, verbose=0))


def test_bridge_refuses_a_state_dict_of_another_shape():
    state = fz.models.gpt_to_nanogpt(tiny_gpt(use_bias=False, tie_embeddings=True))
    with pytest.raises(ValueError, match="n_embd"):
        fz.models.gpt_from_nanogpt(state, {k: v for k, v in nanogpt_config(TINY, False).items()
                                           if k != "n_embd"})
    with pytest.raises(ValueError, match="shape"):
        fz.models.gpt_from_nanogpt(state, nanogpt_config(TINY, False) | {"vocab_size": 12})
    with pytest.raises(ValueError, match="missing"):
        fz.models.gpt_from_nanogpt(state, nanogpt_config(TINY, True))


def torch_twin(model, bias, tie):
    torch = pytest.importorskip("torch")
    import torch_gpt
    twin = torch_gpt.GPT(nanogpt_config(TINY, bias), tie=tie).double()
    twin.load_numpy({k: v.astype(np.float64) for k, v in fz.models.gpt_to_nanogpt(model).items()})
    return torch, twin


@pytest.mark.parametrize("bias, tie", [(False, True), (True, False)])
def test_logits_and_every_gradient_match_pytorch(bias, tie):
    model = tiny_gpt(use_bias=bias, tie_embeddings=tie)
    torch, twin = torch_twin(model, bias, tie)
    ids = token_ids((3, 6))
    r = np.random.default_rng(2).standard_normal((3, 6, TINY["vocab_size"])).astype(np.float32)
    logits = model.forward(ids, training=True)
    expected = twin(torch.from_numpy(ids).long())
    np.testing.assert_allclose(logits, expected.detach().numpy(), rtol=1e-4, atol=1e-4)
    model.backward(r)
    (expected * torch.from_numpy(r).double()).sum().backward()
    grad_of = {data_address(p): g for p, g in zip(model.trainable_params, model.trainable_grads)}
    twin_params = dict(twin.named_parameters())
    config = nanogpt_config(TINY, bias)
    for name, array, to_torch, _ in _pairs(model, config):
        if tie and name == "lm_head.weight":
            continue  # the same parameter as transformer.wte.weight
        grads = ([grad_of[data_address(a)] for a in array] if isinstance(array, list)
                 else grad_of[data_address(array)])
        np.testing.assert_allclose(to_torch(grads), twin_params[name].grad.numpy(), rtol=2e-3,
                                   atol=2e-4, err_msg=name)


def test_recipe_optimizer_steps_are_nanogpts_adamw():
    """cli.gpt_optimizer's steps are nanoGPT's: torch.optim.AdamW (β 0.9/0.99,
    ε 1e-8, weight decay 0.1 on the ≥ 2-D tensors only), the gradient clipped
    by clip_grad_norm_(1.0), the rate get_lr(it) at step it — on the same
    gradients (large ones, clipped, on even steps; small ones on odd steps).
    One difference is Keras's: fromzero adds ε to √v, PyTorch to √v̂ (v
    bias-corrected), the same update unless |g| ≲ 1e-7; the recipe has such
    gradients only in 0.2–0.6% of its query/key weights in its first steps."""
    torch = pytest.importorskip("torch")
    import torch_gpt
    model = tiny_gpt(use_bias=False, tie_embeddings=True)
    optimizer = cli.gpt_optimizer(model, 0.1, 2000)
    params = model.trainable_params
    start = [p.copy() for p in params]
    twins = [torch.tensor(p.copy(), requires_grad=True) for p in params]
    groups = [{"params": [t for t in twins if t.dim() >= 2], "weight_decay": 0.1},
              {"params": [t for t in twins if t.dim() < 2], "weight_decay": 0.0}]
    adamw = torch.optim.AdamW(groups, lr=0.0, betas=(0.9, 0.99), eps=1e-8, foreach=False)
    rng = np.random.default_rng(0)
    for it in range(6):
        # |g| in [0.5, 1.5]·scale, away from ε's reach; global norms ≈ 40 (clipped), ≈ 0.04
        scale = 1.0 if it % 2 == 0 else 1e-3
        grads = [(scale * rng.choice([-1, 1], p.shape) * rng.uniform(0.5, 1.5, p.shape)
                  ).astype(np.float32) for p in params]
        optimizer.apply_gradients(zip(grads, params))
        for twin, g in zip(twins, grads):
            twin.grad = torch.from_numpy(g.copy())
        assert (torch.nn.utils.clip_grad_norm_(twins, 1.0) > 1.0) == (it % 2 == 0)
        for group in adamw.param_groups:
            group["lr"] = torch_gpt.nanogpt_lr(it, learning_rate=0.1, min_lr=0.01)
        adamw.step()
    for p, twin, before in zip(params, twins, start):
        assert np.abs(p - before).max() > 1e-3  # each step moves a weight by about the rate
        np.testing.assert_allclose(p, twin.detach().numpy(), rtol=1e-5, atol=1e-7)


def test_gpt_attention_is_the_layers_causal_softmax():
    model = tiny_gpt()
    ids = token_ids((1, 6))
    model.forward(ids, training=True)
    for block in range(TINY["num_layers"]):
        probs = fz.models.gpt_attention(model, ids[0, :5], block=block)
        assert probs.shape == (2, 5, 5)
        np.testing.assert_allclose(probs.sum(axis=-1), 1.0)
        assert np.all(np.triu(probs, k=1) == 0)
        # what the layer computed in the forward pass (its saved probabilities)
        saved = model.get_layer(f"block_{block}_attention").saved[7]
        np.testing.assert_allclose(probs, saved[0, :, :5, :5], atol=1e-6)


# ---------------------------------------------------------------- generation

def test_generation_with_the_cache_gives_the_tokens_of_recomputing_the_window():
    model = tiny_gpt(vocab_size=5, sequence_length=8)
    tokenizer = fz.text.CharTokenizer("abcde")
    cached = fz.text.generate(model, tokenizer, "ab", 20, seed=3)
    recomputed = fz.text.generate(model, tokenizer, "ab", 20, seed=3, use_cache=False)
    assert cached == recomputed and len(cached) == 22


@pytest.mark.parametrize("prompt", [3, 8, 11])  # shorter than, as long as, longer than the context
@pytest.mark.parametrize("threads", [1, 2])
def test_cached_logits_are_the_recomputed_windows_bit_for_bit_before_and_after_sliding(
        prompt, threads, restore_threads):
    """Every next-token logit vector of the cached path, while the window
    grows (cache) and once it slides (the whole window again, the last block
    on the last position only), equals the full window's forward bit for bit."""
    fz.set_num_threads(threads)
    model = tiny_gpt(vocab_size=7, sequence_length=8, num_layers=3, hidden_dim=16,
                     use_bias=True)
    ids = token_ids((1, 30), vocab=7, seed=4)
    cache = generation.KeyValueCache.for_model(model, 8)
    for n in range(prompt, 30):
        window = ids[:, max(0, n - 8):n]
        cached = cache.next_token_logits(window, slid=n > 8, vocab_size=7).copy()
        full = generation.next_token_logits(model, window, 7)
        assert np.array_equal(cached, full), n


def test_only_the_last_block_after_its_keys_and_values_runs_on_the_last_position():
    model = tiny_gpt(num_layers=3)
    cut = [s.layer.name for s, c in zip(model._steps, model._last_step_plan()) if c]
    assert cut == ["block_2_attention", "block_2_add_1", "block_2_ln_2", "block_2_mlp_fc",
                   "block_2_mlp_proj", "block_2_add_2", "ln_f", "lm_head"]


def test_the_last_step_plan_stops_at_layers_without_a_time_axis():
    ids = fz.Input(shape=(6,), dtype="int32")
    x = fz.layers.Embedding(11, 4)(ids)
    per_step = fz.Model(ids, fz.layers.Dense(3)(fz.layers.Dense(5)(x)))
    assert per_step._last_step_plan() == [True, True, True]
    flat = fz.Model(ids, fz.layers.Dense(3)(fz.layers.Flatten()(x)))
    assert not any(flat._last_step_plan())


# ---------------------------------------------------------------- training

def train_tiny(steps, threads=None, seed=0):
    if threads is not None:
        fz.set_num_threads(threads)
    text = fz.datasets.text.load_data("tinyshakespeare")[:200_000]
    tokenizer = fz.text.CharTokenizer.fit(text)
    train_text, val_text = fz.datasets.text.train_val_split(text)
    fz.utils.set_random_seed(seed)
    model = fz.models.gpt(tokenizer.vocab_size, 32, 2, 2, 32, use_bias=False, tie_embeddings=True)
    model.compile(optimizer=cli.gpt_optimizer(model, 1e-2, steps),
                  loss=fz.losses.SparseCategoricalCrossentropy(from_logits=True))
    train = fz.text.RandomWindows(tokenizer.encode(train_text), 32, 16, seed=seed)
    val = fz.text.RandomWindows(tokenizer.encode(val_text), 32, 16, seed=seed + 1)
    model.fit(train, epochs=1, steps_per_epoch=steps, verbose=0)
    return model, model.evaluate(val, steps=10, verbose=0), tokenizer.vocab_size


def test_a_tiny_gpt_learns_shakespeare_well_below_log_vocab():
    _, val_loss, vocab = train_tiny(300)
    assert val_loss < 0.7 * math.log(vocab), (val_loss, math.log(vocab))


def test_training_is_bit_identical_across_runs_and_thread_counts(restore_threads):
    runs = [train_tiny(15, threads)[0].get_weights() for threads in (1, 2, 2)]
    for other in runs[1:]:
        assert all(np.array_equal(a, b) for a, b in zip(runs[0], other))


@pytest.fixture
def restore_threads():
    threads = fz.get_num_threads()
    yield
    fz.set_num_threads(threads)


def test_cli_trains_saves_and_generates(tmp_path, capsys):
    path = tmp_path / "gpt.safetensors"
    assert cli.main(["train", "--model", "gpt", "--steps", "20", "--num-layers", "1",
                     "--num-heads", "2", "--hidden-dim", "16", "--sequence-length", "16",
                     "--batch-size", "4", "--save", str(path), "--seed", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("fromzero") and "step 0: train loss" in lines[1]
    assert lines[-1].startswith("val loss: ") and float(lines[-1].split()[-1]) < 4.2
    # the last line is the loss on the whole validation split, every token once
    text = fz.datasets.text.load_data("tinyshakespeare")
    val_ids = fz.text.CharTokenizer.fit(text).encode(fz.datasets.text.train_val_split(text)[1])
    windows = (len(val_ids) - 1) // 16
    assert lines[-2] == (f"the whole validation split ({windows} windows of 16 tokens, "
                         f"{windows * 16} targets):")
    model = fz.models.load_model(path)
    model.compile(loss=fz.losses.SparseCategoricalCrossentropy(from_logits=True))
    whole = model.evaluate(fz.text.ConsecutiveWindows(val_ids, 16, 64), verbose=0)
    assert lines[-1] == f"val loss: {whole:.4f}"
    assert cli.main(["generate", "--checkpoint", str(path), "--prompt", "ROMEO:",
                     "--max-new-tokens", "12", "--seed", "4"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("ROMEO:") and len(text.rstrip("\n")) >= 12


def test_cli_errors_are_clear(tmp_path, capsys):
    assert cli.main(["train", "--model", "gpt", "--dataset", "mnist"]) == 2
    assert "--model gpt trains on a text" in capsys.readouterr().err
    assert cli.main(["train", "--model", "mlp", "--dataset", "tang300"]) == 2
    assert "is a text" in capsys.readouterr().err
    model = fz.Sequential([fz.layers.Dense(2)])
    model.build((None, 3))
    model.save(tmp_path / "mlp.safetensors")
    assert cli.main(["generate", "--checkpoint", str(tmp_path / "mlp.safetensors")]) == 2
    assert "holds no tokenizer" in capsys.readouterr().err
