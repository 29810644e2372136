"""A GPT as an ordinary functional model, and a bridge to nanoGPT's weights.

fz.models.gpt builds the decoder-only transformer of GPT-2 and nanoGPT from
fromzero's layers — one graph a reader can print with summary() and change:

    ids (batch, T) int32
    x = Embedding(vocab, C)(ids) + positions     PositionEmbedding(T)
    Dropout
    num_layers × pre-LayerNorm block:
        x = x + Dropout(MultiHeadAttention(causal)(LN(x), LN(x)))
        x = x + Dropout(Dense(C)(Dense(4C, gelu)(LN(x))))
    LN → logits (batch, T, vocab): Dense(vocab), or x·Eᵀ with tie_embeddings

gpt_to_nanogpt / gpt_from_nanogpt move the weights to and from nanoGPT's
state dict (its names, its (out, in) Linear layouts, c_attn's fused Q, K, V),
so a model trained by either runs in the other with the same logits.
"""

import math

import numpy as np

from . import initializers, layers, utils
from .layers.core import Input


def gpt(vocab_size, sequence_length, num_layers, num_heads, hidden_dim, dropout=0.0,
        use_bias=True, tie_embeddings=False, epsilon=1e-5, name="gpt"):
    """nanoGPT's model: `num_layers` pre-LN blocks of `num_heads` causal
    attention heads over `hidden_dim` features, reading up to
    `sequence_length` token ids of a `vocab_size` vocabulary. Weights start
    as nanoGPT's: N(0, 0.02²), the projections into the residual stream
    N(0, 0.02²/(2·num_layers)), biases 0, LayerNorm γ 1 and β 0."""
    from .models import Model
    owner = "gpt"
    vocab_size = utils.check_positive_int(owner, "vocab_size", vocab_size)
    sequence_length = utils.check_positive_int(owner, "sequence_length", sequence_length)
    num_layers = utils.check_positive_int(owner, "num_layers", num_layers)
    num_heads = utils.check_positive_int(owner, "num_heads", num_heads)
    hidden_dim = utils.check_positive_int(owner, "hidden_dim", hidden_dim)
    dropout = utils.check_number(owner, "dropout", dropout, 0, 1, high_open=True)
    epsilon = utils.check_number(owner, "epsilon", epsilon, 0, low_open=True)
    if hidden_dim % num_heads:
        raise ValueError(f"gpt: num_heads={num_heads} must divide hidden_dim={hidden_dim} (each "
                         f"head takes hidden_dim / num_heads features)")
    L = layers
    # nanoGPT's initialization: N(0, 0.02²), the residual projections N(0, (0.02/√(2·layers))²)
    weights = initializers.RandomNormal(0.0, 0.02)
    residual = initializers.RandomNormal(0.0, 0.02 / math.sqrt(2 * num_layers))

    def norm(layer_name):
        return L.LayerNormalization(epsilon=epsilon, center=use_bias, name=layer_name)

    def dense(units, layer_name, init=weights, **kwargs):
        return L.Dense(units, use_bias=use_bias, kernel_initializer=init, name=layer_name, **kwargs)

    ids = Input(shape=(sequence_length,), dtype="int32", name="token_ids")
    embedding = (L.ReversibleEmbedding(vocab_size, hidden_dim, embeddings_initializer=weights,
                                       name="token_embedding") if tie_embeddings else
                 L.Embedding(vocab_size, hidden_dim, embeddings_initializer=weights,
                             name="token_embedding"))
    x = L.PositionEmbedding(sequence_length, initializer=weights,
                            name="position_embedding")(embedding(ids))
    if dropout:
        x = L.Dropout(dropout, name="embedding_dropout")(x)
    for i in range(num_layers):
        h = norm(f"block_{i}_ln_1")(x)
        attention = L.MultiHeadAttention(num_heads, hidden_dim // num_heads, dropout=dropout,
                                         use_bias=use_bias, kernel_initializer=weights,
                                         name=f"block_{i}_attention")
        h = attention(h, h, use_causal_mask=True)
        if dropout:
            h = L.Dropout(dropout, name=f"block_{i}_attention_dropout")(h)
        x = L.Add(name=f"block_{i}_add_1")([x, h])
        h = norm(f"block_{i}_ln_2")(x)
        h = dense(4 * hidden_dim, f"block_{i}_mlp_fc", activation="gelu")(h)
        h = dense(hidden_dim, f"block_{i}_mlp_proj", init=residual)(h)
        if dropout:
            h = L.Dropout(dropout, name=f"block_{i}_mlp_dropout")(h)
        x = L.Add(name=f"block_{i}_add_2")([x, h])
    x = norm("ln_f")(x)
    if tie_embeddings:
        logits = embedding(x, reverse=True)
    else:
        logits = L.Dense(vocab_size, use_bias=False, kernel_initializer=weights,
                         name="lm_head")(x)
    model = Model(ids, logits, name=name)
    for i in range(num_layers):  # nanoGPT's c_proj.weight: the attention's output projection
        output = model.get_layer(f"block_{i}_attention").output_kernel
        output[...] = residual(output.shape)
    return model


def gpt_attention(model, ids, block=0):
    """The attention probabilities (heads, t, t) of block `block` of a model
    gpt() built, on the token ids `ids` (t ≤ sequence_length), computed in
    NumPy from the layers' weights: P = softmax(Q·Kᵀ/√d + causal mask) with
    Q and K the projections of the block's LayerNorm output — the matrix a
    plot of "which token reads which" shows (fz.plot.attention)."""
    ids = np.asarray(ids, dtype=np.int32).reshape(1, -1)
    get = model.get_layer
    x = get("position_embedding")(get("token_embedding")(ids))
    for i in range(block):  # the residual stream up to the block (dropout is off in inference)
        h = get(f"block_{i}_ln_1")(x)
        x = x + get(f"block_{i}_attention")(h, h, use_causal_mask=True)
        x = x + get(f"block_{i}_mlp_proj")(get(f"block_{i}_mlp_fc")(get(f"block_{i}_ln_2")(x)))
    h = get(f"block_{block}_ln_1")(x)[0].astype(np.float64)
    attention = get(f"block_{block}_attention")
    q, k = (np.einsum("tc,chd->htd", h, getattr(attention, f"{name}_kernel")) +
            (0 if getattr(attention, f"{name}_bias", None) is None
             else getattr(attention, f"{name}_bias")[:, None, :]) for name in ("query", "key"))
    scores = q @ k.transpose(0, 2, 1) / math.sqrt(attention.key_dim)
    t = scores.shape[-1]
    scores[:, np.triu(np.ones((t, t), dtype=bool), k=1)] = -np.inf
    probs = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return probs / probs.sum(axis=-1, keepdims=True)


# ---------------------------------------------------------------- nanoGPT's state dict

def _config_of(model):
    """nanoGPT's GPTConfig fields of a model gpt() built."""
    names = {layer.name for layer in model.layers}
    if not {"token_embedding", "position_embedding", "block_0_attention"} <= names:
        raise ValueError("gpt_to_nanogpt: the model was not built by fz.models.gpt (no "
                         "token_embedding, position_embedding, block_0_attention layers)")
    emb, pos = model.get_layer("token_embedding"), model.get_layer("position_embedding")
    n_layer = sum(1 for name in names if name.startswith("block_") and name.endswith("_attention"))
    attention = model.get_layer("block_0_attention")
    return {"block_size": pos.sequence_length, "vocab_size": emb.input_dim,
            "n_layer": n_layer, "n_head": attention.num_heads, "n_embd": emb.output_dim,
            "dropout": attention.dropout, "bias": attention.use_bias}


def _pairs(model, config):
    """(nanoGPT name, getter, setter) for every parameter: nanoGPT's layout
    from and to fromzero's arrays. Linear weights are (out, in) in torch,
    Dense kernels (in, out): a transpose. c_attn stacks the Q, K and V
    projections as rows [Q; K; V] of (3C, C); MultiHeadAttention keeps one
    (C, heads, head_dim) kernel each."""
    C, H = config["n_embd"], config["n_head"]
    D = C // H
    out = []

    def add(name, array, to_torch, from_torch):
        out.append((name, array, to_torch, from_torch))

    transpose = (lambda a: a.T, lambda t: t.T)
    same = (lambda a: a, lambda t: t)
    emb = model.get_layer("token_embedding")
    add("transformer.wte.weight", emb.embeddings, *same)
    add("transformer.wpe.weight", model.get_layer("position_embedding").position_embeddings, *same)

    def norm(torch_name, layer_name):
        layer = model.get_layer(layer_name)
        add(f"{torch_name}.weight", layer.gamma, *same)
        if config["bias"]:
            add(f"{torch_name}.bias", layer.beta, *same)

    def dense(torch_name, layer_name):
        layer = model.get_layer(layer_name)
        add(f"{torch_name}.weight", layer.kernel, *transpose)
        if config["bias"]:
            add(f"{torch_name}.bias", layer.bias, *same)

    for i in range(config["n_layer"]):
        prefix = f"transformer.h.{i}"
        norm(f"{prefix}.ln_1", f"block_{i}_ln_1")
        attention = model.get_layer(f"block_{i}_attention")
        qkv = ("query", "key", "value")
        add(f"{prefix}.attn.c_attn.weight", [getattr(attention, f"{p}_kernel") for p in qkv],
            lambda ks: np.concatenate([k.reshape(C, C).T for k in ks]),
            lambda t: [t[j * C:(j + 1) * C].T.reshape(C, H, D) for j in range(3)])
        if config["bias"]:
            add(f"{prefix}.attn.c_attn.bias", [getattr(attention, f"{p}_bias") for p in qkv],
                lambda bs: np.concatenate([b.reshape(C) for b in bs]),
                lambda t: [t[j * C:(j + 1) * C].reshape(H, D) for j in range(3)])
        add(f"{prefix}.attn.c_proj.weight", attention.output_kernel,
            lambda k: k.reshape(C, C).T, lambda t: t.T.reshape(H, D, C))
        if config["bias"]:
            add(f"{prefix}.attn.c_proj.bias", attention.output_bias, *same)
        norm(f"{prefix}.ln_2", f"block_{i}_ln_2")
        dense(f"{prefix}.mlp.c_fc", f"block_{i}_mlp_fc")
        dense(f"{prefix}.mlp.c_proj", f"block_{i}_mlp_proj")
    norm("transformer.ln_f", "ln_f")
    if isinstance(emb, layers.ReversibleEmbedding):
        add("lm_head.weight", emb.embeddings, *same)
    else:
        add("lm_head.weight", model.get_layer("lm_head").kernel, *transpose)
    return out


def gpt_to_nanogpt(model):
    """The weights of a model gpt() built, as nanoGPT's state dict of float32
    arrays (names and layouts of nanoGPT's model.py; lm_head.weight is
    transformer.wte.weight's values when the embeddings are tied)."""
    config = _config_of(model)
    return {name: np.ascontiguousarray(to_torch(array), dtype=np.float32)
            for name, array, to_torch, _ in _pairs(model, config)}


def gpt_from_nanogpt(state, config):
    """A model gpt() builds for nanoGPT's `config` (GPTConfig's fields:
    block_size, vocab_size, n_layer, n_head, n_embd, dropout, bias), holding
    the weights of nanoGPT's state dict `state` (arrays or torch tensors).
    The embeddings are tied when lm_head.weight equals transformer.wte.weight,
    as in nanoGPT. Every name and shape is checked before a weight is set."""
    required = ("block_size", "vocab_size", "n_layer", "n_head", "n_embd")
    missing = [k for k in required if k not in config]
    if missing:
        raise ValueError(f"gpt_from_nanogpt: config lacks {', '.join(missing)} (nanoGPT's "
                         f"GPTConfig fields)")
    state = {k: _numpy(v) for k, v in state.items() if not k.endswith(".attn.bias")}
    wte, head = state.get("transformer.wte.weight"), state.get("lm_head.weight")
    tied = wte is not None and head is not None and np.array_equal(wte, head)
    model = gpt(config["vocab_size"], config["block_size"], config["n_layer"], config["n_head"],
                config["n_embd"], dropout=config.get("dropout", 0.0),
                use_bias=config.get("bias", True), tie_embeddings=tied)
    full = {**config, "dropout": config.get("dropout", 0.0), "bias": config.get("bias", True)}
    pairs = _pairs(model, full)
    names = {name for name, *_ in pairs}
    unknown, absent = sorted(set(state) - names), sorted(names - set(state))
    if unknown or absent:
        raise ValueError(f"gpt_from_nanogpt: the state dict does not fit the config: "
                         f"missing {absent[:5]}, unexpected {unknown[:5]}")
    updates = []
    for name, array, to_torch, from_torch in pairs:
        expected = to_torch(array).shape
        if state[name].shape != expected:
            raise ValueError(f"gpt_from_nanogpt: {name} has shape {state[name].shape}, the "
                             f"config needs {expected}")
        updates.append((array, from_torch(state[name])))
    for target, value in updates:
        for t, v in (zip(target, value) if isinstance(target, list) else [(target, value)]):
            t[...] = v
    return model


def _numpy(value):
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float32)
