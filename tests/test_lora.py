"""LoRA: Dense.enable_lora, model.enable_lora / merge_lora, adapter files.

The kernels themselves (dense_lora_forward/backward) are checked against
their reference in tests/cpp/test_dense.cpp and attacked from their
declaration in tests/test_aliasing.py."""

import numpy as np
import pytest

import fromzero as fz
from fromzero.layers import Dense


def _dense(in_features=6, units=5, activation=None, shape=(4, 3), seed=0, **kwargs):
    fz.utils.set_random_seed(seed)
    layer = Dense(units, activation=activation, **kwargs)
    x = np.random.default_rng(seed).standard_normal(shape + (in_features,)).astype(np.float32)
    layer(x)  # builds
    return layer, x


def _mlp(seed=0):
    fz.utils.set_random_seed(seed)
    inputs = fz.Input(shape=(7, 6))  # (batch, time, features): Dense on every step
    h = Dense(16, activation="relu", name="fc1")(inputs)
    h = Dense(16, activation="gelu", name="fc2")(h)
    outputs = Dense(3, name="head")(h)
    return fz.Model(inputs, outputs)


def _data(n=32, seed=1):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, 7, 6)).astype(np.float32),
            rng.standard_normal((n, 7, 3)).astype(np.float32))


# ---------------------------------------------------------------- Dense.enable_lora

def test_enable_lora_adds_a_and_b_and_freezes_kernel_and_bias():
    layer, x = _dense()
    kernel, bias = layer.kernel, layer.bias
    layer.enable_lora(4)
    assert layer.lora_enabled and layer.lora_rank == 4 and layer.lora_alpha == 4.0
    assert layer.lora_kernel_a.shape == (6, 4) and layer.lora_kernel_b.shape == (4, 5)
    assert not np.any(layer.lora_kernel_b)  # B starts at zero
    assert layer.trainable_params == [layer.lora_kernel_a, layer.lora_kernel_b]
    assert [w.shape for w in layer.weights] == [(6, 5), (5,), (6, 4), (4, 5)]
    assert layer.kernel is kernel and layer.bias is bias
    # he_uniform: U(-l, l), l = √(6 / fan_in)
    assert np.abs(layer.lora_kernel_a).max() <= np.sqrt(6 / 6)


@pytest.mark.parametrize("activation", [None, "relu", "gelu", "softmax"])
def test_zero_b_gives_the_base_layer_exactly(activation):
    layer, x = _dense(activation=activation)
    before = layer(x)
    layer.enable_lora(3)
    np.testing.assert_array_equal(layer(x), before)


@pytest.mark.parametrize("activation", [None, "tanh", "gelu", "softmax"])
def test_gradients_of_a_b_and_x_match_finite_differences(activation):
    layer, x = _dense(activation=activation, shape=(2, 3))  # 3-D input
    layer.enable_lora(2, lora_alpha=3.0)
    layer.lora_kernel_b[...] = np.random.default_rng(5).standard_normal((2, 5))
    errors = fz.testing.check_gradients(layer, x)
    assert set(errors) == {"x", "param_0", "param_1"}  # x, A, B: no dW, no db
    assert max(errors.values()) < 1e-2, errors


def test_lora_output_is_the_layer_with_the_effective_kernel():
    layer, x = _dense(activation="tanh", lora_rank=None)
    layer.enable_lora(3, lora_alpha=6.0)
    layer.lora_kernel_b[...] = np.random.default_rng(2).standard_normal((3, 5))
    w = layer.kernel + 2.0 * layer.lora_kernel_a @ layer.lora_kernel_b  # α/r = 2
    np.testing.assert_allclose(layer(x), np.tanh(x @ w + layer.bias), rtol=1e-5, atol=1e-5)


def test_merge_lora_gives_the_same_outputs_and_a_plain_dense():
    layer, x = _dense(activation="gelu")
    layer.enable_lora(2)
    layer.lora_kernel_b[...] = np.random.default_rng(3).standard_normal((2, 5))
    adapted = layer(x)
    layer.merge_lora()
    assert not layer.lora_enabled and len(layer.params) == 2 and len(layer.grads) == 2
    assert layer.trainable_params == layer.params
    np.testing.assert_allclose(layer(x), adapted, rtol=1e-5, atol=1e-5)
    assert "lora_rank" not in layer.get_config()


def test_enable_lora_errors():
    with pytest.raises(ValueError, match="not built"):
        Dense(3).enable_lora(2)
    layer, _ = _dense()
    for rank in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="rank must be a positive integer"):
            layer.enable_lora(rank)
    for alpha in (0, -1.0, float("nan"), "8"):
        with pytest.raises(ValueError, match="lora_alpha"):
            layer.enable_lora(2, lora_alpha=alpha)
    assert not layer.lora_enabled  # a refused call changes nothing
    with pytest.raises(ValueError, match="not enabled"):
        layer.merge_lora()
    layer.enable_lora(2)
    with pytest.raises(ValueError, match="already enabled"):
        layer.enable_lora(2)
    with pytest.raises(ValueError, match="lora_alpha needs lora_rank"):
        Dense(3, lora_alpha=2.0)


def test_enabling_between_forward_and_backward_is_refused():
    layer, x = _dense()
    layer.forward(x, training=True)
    layer.enable_lora(2)
    with pytest.raises(ValueError, match="between forward and backward"):
        layer.backward(np.ones((4, 3, 5), np.float32))


def test_against_pytorch_peft_style_lora():
    torch = pytest.importorskip("torch")
    layer, x = _dense(in_features=9, units=7, activation="gelu", shape=(3, 5))
    layer.enable_lora(4, lora_alpha=8.0)
    layer.lora_kernel_b[...] = np.random.default_rng(4).standard_normal((4, 7)) * 0.1
    dy = np.random.default_rng(6).standard_normal((3, 5, 7)).astype(np.float32)
    y = layer.forward(x, training=True).copy()
    dx = layer.backward(dy).copy()
    da, db = (g.copy() for g in layer.trainable_grads)

    # PEFT's LoRA Linear: base(x) + dropout(x) @ A.T @ B.T · (α/r), with torch's
    # (out, in) layouts: lora_A.weight (r, in), lora_B.weight (out, r).
    tx = torch.tensor(x, requires_grad=True)
    weight = torch.tensor(layer.kernel.T.copy())
    bias = torch.tensor(layer.bias)
    lora_a = torch.tensor(layer.lora_kernel_a.T.copy(), requires_grad=True)
    lora_b = torch.tensor(layer.lora_kernel_b.T.copy(), requires_grad=True)
    base = torch.nn.functional.linear(tx, weight, bias)
    ty = torch.nn.functional.gelu(base + (tx @ lora_a.T @ lora_b.T) * (8.0 / 4))
    ty.backward(torch.tensor(dy))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(da, lora_a.grad.numpy().T, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(db, lora_b.grad.numpy().T, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- model.enable_lora

def test_model_without_attention_needs_a_target():
    model = _mlp()
    with pytest.raises(ValueError, match="no attention layer"):
        model.enable_lora(2)
    with pytest.raises(ValueError, match="no layer matches"):
        model.enable_lora(2, target="conv*")
    with pytest.raises(TypeError, match="target must be"):
        model.enable_lora(2, target=3)
    assert all(layer.trainable for layer in model.layers)  # refused: nothing changed


@pytest.mark.parametrize("target", [Dense, ["fc*", "head"], ["fc1", "fc2", "head"],
                                    lambda layer: isinstance(layer, Dense)])
def test_model_enable_lora_by_class_glob_list_or_function(target):
    model = _mlp()
    adapted = model.enable_lora(2, target=target)
    assert adapted == ["fc1", "fc2", "head"]
    assert len(model.trainable_params) == 6


def test_fit_changes_only_the_adapters():
    model = _mlp()
    x, y = _data()
    model.enable_lora(4, target=["fc1", "fc2"])
    frozen = [w.copy() for w in model.get_weights()]
    names = [(layer.name, i) for layer in model.layers for i in range(len(layer.weights))]
    model.compile(optimizer=fz.optimizers.Adam(1e-2), loss="mse")
    history = model.fit(x, y, epochs=3, batch_size=8, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    trainable = {id(p) for p in model.trainable_params}
    assert len(trainable) == 4
    for (name, i), w, before in zip(names, model.weights, frozen):
        if id(w) in trainable:
            assert not np.array_equal(w, before), (name, i)
        else:
            np.testing.assert_array_equal(w, before, err_msg=f"{name} weight {i} changed")


def test_model_gradients_through_adapted_layers():
    model = _mlp()
    model.enable_lora(2, target="fc*")
    for layer in model.layers[1:3]:
        layer.lora_kernel_b[...] = np.random.default_rng(7).standard_normal(
            layer.lora_kernel_b.shape)
    x, _ = _data(n=2)
    errors = fz.testing.check_gradients(model, x[:1])
    assert max(errors.values()) < 1e-2, errors


def test_model_merge_lora_and_summary():
    model = _mlp()
    model.enable_lora(2, target=Dense)
    for layer in model.layers[1:]:
        layer.lora_kernel_b[...] = np.random.default_rng(8).standard_normal(
            layer.lora_kernel_b.shape)
    lines = []
    model.summary(print_fn=lines.append)
    trainable = 2 * (6 + 16) + 2 * (16 + 16) + 2 * (16 + 3)
    assert f"Trainable params: {trainable:,}" in lines
    x, _ = _data(n=4)
    adapted = model.predict(x, verbose=0)
    model.merge_lora()
    np.testing.assert_allclose(model.predict(x, verbose=0), adapted, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="no layer has LoRA"):
        model.merge_lora()


def test_saved_model_keeps_its_adapters(tmp_path):
    model = _mlp()
    model.enable_lora(3, target="fc2", lora_alpha=6)
    model.layers[2].lora_kernel_b[...] = 0.5
    x, _ = _data(n=4)
    model.save(tmp_path / "m.npz")
    loaded = fz.load_model(tmp_path / "m.npz")
    assert loaded.layers[2].lora_rank == 3 and loaded.layers[2].lora_alpha == 6.0
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


# ---------------------------------------------------------------- adapter files

def _trained_adapters():
    model = _mlp()
    model.enable_lora(4, target=["fc1", "head"], lora_alpha=8)
    for layer in (model.layers[1], model.layers[3]):
        layer.lora_kernel_b[...] = np.random.default_rng(9).standard_normal(
            layer.lora_kernel_b.shape)
    return model


def test_adapters_round_trip_onto_the_base_model(tmp_path):
    model = _trained_adapters()
    path = tmp_path / "adapters.safetensors"
    model.save_weights(path, lora_only=True)
    expected = 4 * 4 * ((6 + 16) + (16 + 3))  # float32 A and B, nothing else
    assert expected < path.stat().st_size < expected + 2048
    base = _mlp()  # the same seed: the same base weights
    base.load_weights(path, lora_only=True)  # enables LoRA where the file has adapters
    assert [layer.lora_enabled for layer in base.layers[1:]] == [True, False, True]
    assert base.layers[1].lora_alpha == 8.0
    x, _ = _data(n=4)
    np.testing.assert_array_equal(base.predict(x, verbose=0), model.predict(x, verbose=0))
    again = _mlp()  # LoRA already enabled with the same rank: values set
    again.enable_lora(4, target=["fc1", "head"], lora_alpha=8)
    again.load_weights(path, lora_only=True)
    np.testing.assert_array_equal(again.predict(x, verbose=0), model.predict(x, verbose=0))


def test_adapters_refuse_a_base_of_another_shape(tmp_path):
    path = tmp_path / "adapters.safetensors"
    _trained_adapters().save_weights(path, lora_only=True)
    inputs = fz.Input(shape=(7, 6))
    h = Dense(32, name="fc1")(inputs)  # 32 units, not 16
    other = fz.Model(inputs, Dense(3, name="head")(Dense(16, name="fc2")(h)))
    with pytest.raises(ValueError, match=r"fc1.lora_kernel_b' has shape \(4, 16\), this model's "
                       r"layer needs \(4, 32\): adapters of another base model"):
        other.load_weights(path, lora_only=True)
    assert not any(getattr(layer, "lora_enabled", False) for layer in other.layers)
    renamed = fz.Model(inputs, Dense(3, name="out")(Dense(16, name="fc9")(inputs)))
    with pytest.raises(ValueError, match="does not have"):
        renamed.load_weights(path, lora_only=True)
    ranked = _mlp()
    ranked.enable_lora(2, target="fc1")
    with pytest.raises(ValueError, match=r"rank-4 adapters \(lora_alpha=8.0\), the layer has LoRA "
                       r"of rank 2"):
        ranked.load_weights(path, lora_only=True)


def test_adapter_files_that_are_not_adapters_are_refused(tmp_path):
    from safetensors.numpy import save_file
    model = _mlp()
    with pytest.raises(ValueError, match="no layer has LoRA enabled"):
        model.save_weights(tmp_path / "none.safetensors", lora_only=True)
    model.save_weights(tmp_path / "plain.npz")
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\xff" * 64)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"weight": np.zeros((2, 2), np.float32)}, str(foreign))
    for path in (tmp_path / "plain.npz", garbage, foreign):
        with pytest.raises(ValueError):
            model.load_weights(path, lora_only=True)
    good = tmp_path / "good.safetensors"
    _trained_adapters().save_weights(good, lora_only=True)
    data = good.read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[:-100])
    with pytest.raises(ValueError, match="cannot load LoRA adapters"):
        model.load_weights(truncated, lora_only=True)
    with pytest.raises(FileNotFoundError):
        model.load_weights(tmp_path / "missing.safetensors", lora_only=True)
    assert not any(getattr(layer, "lora_enabled", False) for layer in model.layers)


# ---------------------------------------------------------------- attention

def _tiny_transformer(vocab=11, T=6, C=8, seed=0):
    """Token and position embeddings, one pre-LN causal attention block, logits."""
    L = fz.layers
    fz.utils.set_random_seed(seed)
    ids = fz.Input(shape=(T,), dtype="int32")
    h = L.PositionEmbedding(T)(L.Embedding(vocab, C, name="tokens")(ids))
    n = L.LayerNormalization(epsilon=1e-5)(h)
    h = L.Add()([h, L.MultiHeadAttention(2, C // 2, name="attention")(n, n, use_causal_mask=True)])
    n = L.LayerNormalization(epsilon=1e-5)(h)
    h = L.Add()([h, L.Dense(C, name="mlp_out")(L.Dense(2 * C, activation="gelu", name="mlp_in")(n))])
    return fz.Model(ids, L.Dense(vocab, name="logits")(h))


def _token_data(n=48, vocab=11, T=6):
    pattern = np.arange(n + T + 1) % vocab
    return (np.stack([pattern[i:i + T] for i in range(n)]).astype(np.int32),
            np.stack([pattern[i + 1:i + T + 1] for i in range(n)]).astype(np.int32))


def test_multi_head_attention_enable_lora_adapts_query_and_value():
    mha = fz.layers.MultiHeadAttention(2, 3)
    x = np.random.default_rng(0).standard_normal((2, 5, 4)).astype(np.float32)
    before = mha(x, x)
    mha.enable_lora(2, lora_alpha=4)
    assert mha.query_dense.lora_enabled and mha.value_dense.lora_enabled
    assert not mha.key_dense.lora_enabled and not mha.key_dense.trainable
    assert not mha.output_dense.trainable
    assert [p.shape for p in mha.trainable_params] == [(4, 2), (2, 6)] * 2  # A (C, r), B (r, H·dk)
    np.testing.assert_array_equal(mha(x, x), before)  # B = 0
    with pytest.raises(ValueError, match="already enabled"):
        mha.enable_lora(2)
    for dense in mha.lora_targets:
        dense.lora_kernel_b[...] = np.random.default_rng(1).standard_normal(
            dense.lora_kernel_b.shape)
    query, value = fz.Input(shape=(5, 4)), fz.Input(shape=(5, 4))
    model = fz.Model([query, value], mha(query, value))
    errors = fz.testing.check_gradients(model, [x, x[::-1].copy()])
    assert len(errors) == 2 + 4 and max(errors.values()) < 2e-2, errors
    adapted = mha(x, x)
    mha.merge_lora()
    assert not mha.query_dense.lora_enabled and len(mha.params) == 8
    np.testing.assert_allclose(mha(x, x), adapted, rtol=1e-5, atol=1e-5)


def test_model_enable_lora_defaults_to_query_and_value_of_attention(tmp_path):
    model = _tiny_transformer()
    x, y = _token_data()
    assert model.enable_lora(4) == ["attention/query", "attention/value"]
    total = sum(p.size for p in model.weights)
    trainable = sum(p.size for p in model.trainable_params)
    assert trainable == 2 * (8 * 4 + 4 * 8) and total == 963
    frozen = [w.copy() for w in model.weights]
    adapters = {id(p) for p in model.trainable_params}
    model.compile(optimizer=fz.optimizers.Adam(1e-2),
                  loss=fz.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(x, y, epochs=3, batch_size=16, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    for w, before in zip(model.weights, frozen):
        assert (not np.array_equal(w, before)) == (id(w) in adapters)
    # the adapters alone, onto the same base
    model.save_weights(tmp_path / "a.safetensors", lora_only=True)
    base = _tiny_transformer()
    base.load_weights(tmp_path / "a.safetensors", lora_only=True)
    np.testing.assert_array_equal(base.predict(x[:4], verbose=0), model.predict(x[:4], verbose=0))
    # a whole-model save keeps the adapters (MultiHeadAttention's lora_rank in its config)
    model.save(tmp_path / "m.npz")
    loaded = fz.load_model(tmp_path / "m.npz")
    np.testing.assert_array_equal(loaded.predict(x[:4], verbose=0),
                                  model.predict(x[:4], verbose=0))
    adapted = model.predict(x[:4], verbose=0)
    model.merge_lora()
    np.testing.assert_allclose(model.predict(x[:4], verbose=0), adapted, rtol=1e-4, atol=1e-5)


def test_lora_fine_tuning_through_masked_self_attention():
    """BERT-style blocks (self-attention with a padding mask) fine-tune with
    LoRA: the second block passes gradients to the first's adapters through
    its input, and none to the mask; only the adapters and the head change."""
    from fromzero import pretrained
    fz.utils.set_random_seed(0)
    encoder = pretrained.bert_encoder(vocab_size=20, num_layers=2, num_heads=2, hidden_dim=8,
                                      intermediate_dim=16, max_sequence_length=8)
    token_ids, segment_ids, padding_mask = encoder.inputs
    probabilities = fz.layers.Dense(2, activation="softmax", name="classes")(encoder.output)
    model = fz.Model(encoder.inputs, probabilities)
    assert model.enable_lora(2) == ["block_0_attention/query", "block_0_attention/value",
                                    "block_1_attention/query", "block_1_attention/value"]
    model.get_layer("classes").trainable = True  # a new head trains in full
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 20, (16, 6)).astype(np.int32)
    mask = (np.arange(6) < rng.integers(2, 7, (16, 1))).astype(np.int32)
    labels = (ids[:, 0] > 10).astype(np.int32)
    before = [w.copy() for w in model.weights]
    model.compile(optimizer=fz.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    history = model.fit([ids, np.zeros_like(ids), mask], labels, epochs=5, batch_size=8, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    trained = {id(p) for p in model.trainable_params}
    assert len(trained) == 8 + 2
    for w, b in zip(model.weights, before):
        assert (not np.array_equal(w, b)) == (id(w) in trained)
