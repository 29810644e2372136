"""The transformer kernels (fz.ops.embedding_*, layer_norm_*, attention_*) and
the layers on them: Embedding, ReversibleEmbedding, PositionEmbedding,
LayerNormalization, MultiHeadAttention.

Ops: backward against central differences of a float64 definition, and
forward and backward against torch.nn.functional (F.embedding, F.layer_norm,
F.scaled_dot_product_attention with boolean and causal masks) in float64 when
torch is installed. Layers: fz.testing.check_gradients, forward and every
gradient against PyTorch on the same weights, bad inputs, 1 vs 2 threads bit
for bit, the key/value cache equal to the full window bit for bit, and a tiny
GPT-like graph that trains, saves and loads.
"""

import numpy as np
import pytest

import fromzero as fz

L = fz.layers
try:
    import torch
    import torch.nn.functional as F
except ImportError:  # PyTorch is optional: its comparisons skip
    torch = F = None

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed")


def rng(seed=0):
    return np.random.default_rng(seed)


def t64(a, grad=False):
    return torch.tensor(np.asarray(a, np.float64), requires_grad=grad)


def close(a, b, tol=2e-5):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    scale = max(1.0, float(np.abs(b).max(initial=0.0)))
    err = float(np.abs(a - b).max(initial=0.0))
    assert err <= tol * scale, f"max error {err} (scale {scale})"


def numeric_gradient(f, x, dy, h=1e-6):
    """∂ Σ f(x)·dy / ∂x by central differences, in float64."""
    x = np.array(x, np.float64)
    g = np.zeros_like(x)
    flat, out = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        saved = flat[i]
        flat[i] = saved + h
        plus = np.sum(f(x) * dy)
        flat[i] = saved - h
        minus = np.sum(f(x) * dy)
        flat[i] = saved
        out[i] = (plus - minus) / (2 * h)
    return g


# ==================================================================== ops

def layer_norm64(x, gamma, beta, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * gamma + beta


def test_layer_norm_op_against_float64_finite_differences():
    r = rng(1)
    x = r.standard_normal((3, 4, 7)).astype(np.float32)
    gamma = r.uniform(0.5, 1.5, 7).astype(np.float32)
    beta = r.standard_normal(7).astype(np.float32)
    dy = r.standard_normal(x.shape)
    y, mean, rstd = fz.ops.layer_norm_forward(x, gamma, beta, 1e-3)
    close(y, layer_norm64(x.astype(np.float64), gamma, beta, 1e-3))
    dx, dgamma, dbeta = fz.ops.layer_norm_backward(x, gamma, mean, rstd, dy)
    close(dx, numeric_gradient(lambda v: layer_norm64(v, gamma, beta, 1e-3), x, dy), 1e-4)
    close(dgamma, numeric_gradient(lambda g: layer_norm64(x.astype(np.float64), g, beta, 1e-3),
                                   gamma, dy), 1e-4)
    close(dbeta, dy.reshape(-1, 7).sum(0), 1e-5)
    # gamma/beta None: γ = 1, β = 0; gradients not asked for are None
    y0, m0, r0 = fz.ops.layer_norm_forward(x, None, None, 1e-3)
    close(y0, layer_norm64(x.astype(np.float64), 1.0, 0.0, 1e-3))
    dx0, dg0, db0 = fz.ops.layer_norm_backward(x, None, m0, r0, dy, need_dgamma=False,
                                               need_dbeta=False)
    assert dg0 is None and db0 is None
    close(dx0, numeric_gradient(lambda v: layer_norm64(v, 1.0, 0.0, 1e-3), x, dy), 1e-4)


@needs_torch
def test_layer_norm_op_against_torch():
    r = rng(2)
    x = r.standard_normal((5, 33)).astype(np.float32) * 3 + 1
    gamma, beta = r.standard_normal(33).astype(np.float32), r.standard_normal(33).astype(np.float32)
    dy = r.standard_normal(x.shape).astype(np.float32)
    y, mean, rstd = fz.ops.layer_norm_forward(x, gamma, beta, 1e-5)
    dx, dgamma, dbeta = fz.ops.layer_norm_backward(x, gamma, mean, rstd, dy)
    xt, gt, bt = t64(x, True), t64(gamma, True), t64(beta, True)
    yt = F.layer_norm(xt, (33,), gt, bt, 1e-5)
    yt.backward(t64(dy))
    close(y, yt.detach())
    close(dx, xt.grad)
    close(dgamma, gt.grad)
    close(dbeta, bt.grad)


@needs_torch
def test_embedding_op_against_torch():
    r = rng(3)
    W = r.standard_normal((11, 5)).astype(np.float32)
    ids = r.integers(0, 11, (4, 9))
    ids[0, :3] = 7  # repeated tokens: their gradients add
    dy = r.standard_normal((4, 9, 5)).astype(np.float32)
    y = fz.ops.embedding_forward(ids, W)
    dW = fz.ops.embedding_backward(ids, dy, 11)
    Wt = t64(W, True)
    yt = F.embedding(torch.tensor(ids), Wt)
    yt.backward(t64(dy))
    assert np.array_equal(y, W[ids])
    close(dW, Wt.grad, 1e-6)
    assert np.all(dW[np.setdiff1d(np.arange(11), ids)] == 0)


def test_embedding_op_checks_ids():
    W = np.zeros((5, 3), np.float32)
    for bad in ([5], [-1], [[0, 1], [2, 9]]):
        with pytest.raises(ValueError, match=r"embedding_forward: ids value -?\d+ at flat index \d+ "
                                             r"is outside \[0, 5\)"):
            fz.ops.embedding_forward(np.array(bad), W)
    with pytest.raises(ValueError, match=r"embedding_backward: ids value 5"):
        fz.ops.embedding_backward(np.array([5]), np.zeros((1, 3), np.float32), 5)
    with pytest.raises(TypeError, match=r"ids must be an integer array"):
        fz.ops.embedding_forward(np.array([0.5]), W)


def attention64(q, k, v, mask=None, causal=False, offset=0, scale=None, keep=None):
    """The definition per (batch, head) in float64: softmax over the visible keys,
    a row with none visible is zeros; keep (B, H, Tq, Tk) is dropout's M."""
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    B, Tq, H, dk = q.shape
    Tk = k.shape[1]
    scale = 1 / np.sqrt(dk) if scale is None else scale
    s = np.einsum("bihd,bjhd->bhij", q, k) * scale
    visible = np.ones((B, H, Tq, Tk), bool)
    if causal:
        visible &= (np.arange(Tk)[None, :] <= np.arange(Tq)[:, None] + offset)
    if mask is not None:
        visible &= np.broadcast_to(np.asarray(mask, bool)[:, None], (B, H, Tq, Tk))
    s = np.where(visible, s, -np.inf)
    m = s.max(-1, keepdims=True)
    e = np.where(visible, np.exp(s - np.where(np.isfinite(m), m, 0)), 0)
    den = e.sum(-1, keepdims=True)
    p = np.divide(e, den, out=np.zeros_like(e), where=den > 0)
    if keep is not None:
        p = p * keep
    return np.einsum("bhij,bjhd->bihd", p, v)


def qkv(seed, B=2, Tq=5, Tk=7, H=3, dk=4, dv=6):
    r = rng(seed)
    return (r.standard_normal((B, Tq, H, dk)).astype(np.float32),
            r.standard_normal((B, Tk, H, dk)).astype(np.float32),
            r.standard_normal((B, Tk, H, dv)).astype(np.float32),
            r.standard_normal((B, Tq, H, dv)).astype(np.float32))


ATTENTION_CASES = {
    "plain": {},
    "causal": {"causal": True},
    "causal offset": {"causal": True, "offset": 2},
    "full mask": {"mask": "full"},
    "padding mask": {"mask": "padding"},
    "causal + mask, scale": {"causal": True, "mask": "full", "scale": 0.3},
}


def _mask(kind, B, Tq, Tk):
    r = rng(9)
    if kind == "full":
        m = r.random((B, Tq, Tk)) > 0.3
        m[0, 1] = False  # a row with every key masked
        return m
    if kind == "padding":
        m = np.ones((B, 1, Tk), bool)
        m[1, 0, -3:] = False
        return m
    return None


@pytest.mark.parametrize("case", ATTENTION_CASES)
def test_attention_op_against_float64_finite_differences(case):
    c = dict(ATTENTION_CASES[case])
    q, k, v, dout = qkv(4)
    mask = _mask(c.pop("mask", None), 2, 5, 7)
    kw = dict(mask=mask, causal=c.get("causal", False), causal_offset=c.get("offset", 0),
              scale=c.get("scale"))
    out, probs = fz.ops.attention_forward(q, k, v, **kw)
    ref = dict(mask=mask, causal=kw["causal"], offset=kw["causal_offset"], scale=kw["scale"])
    close(out, attention64(q, k, v, **ref))
    dq, dk, dv = fz.ops.attention_backward(q, k, v, probs, dout, **kw)
    close(dq, numeric_gradient(lambda x: attention64(x, k, v, **ref), q, dout), 1e-4)
    close(dk, numeric_gradient(lambda x: attention64(q, x, v, **ref), k, dout), 1e-4)
    close(dv, numeric_gradient(lambda x: attention64(q, k, x, **ref), v, dout), 1e-4)


@needs_torch
@pytest.mark.parametrize("case", ATTENTION_CASES)
def test_attention_op_against_torch_sdpa(case):
    c = dict(ATTENTION_CASES[case])
    q, k, v, dout = qkv(5)
    B, Tq, H, _ = q.shape
    Tk = k.shape[1]
    mask = _mask(c.pop("mask", None), B, Tq, Tk)
    causal, offset, scale = c.get("causal", False), c.get("offset", 0), c.get("scale")
    out, probs = fz.ops.attention_forward(q, k, v, mask=mask, causal=causal, causal_offset=offset,
                                          scale=scale)
    dq, dk, dv = fz.ops.attention_backward(q, k, v, probs, dout, mask=mask, causal=causal,
                                           causal_offset=offset, scale=scale)
    # PyTorch's layout is (B, H, T, d); its boolean mask, True = attend, broadcast over heads
    qt, kt, vt = (t64(a, True) for a in (q, k, v))
    visible = torch.ones(B, 1, Tq, Tk, dtype=torch.bool)
    if causal:
        visible &= torch.arange(Tk)[None, :] <= torch.arange(Tq)[:, None] + offset
    if mask is not None:
        visible &= torch.tensor(mask)[:, None]
    ot = F.scaled_dot_product_attention(qt.transpose(1, 2), kt.transpose(1, 2), vt.transpose(1, 2),
                                        attn_mask=visible, scale=scale).transpose(1, 2)
    # PyTorch gives NaN for a row with no visible key; fromzero gives zeros (documented)
    empty = ~visible.any(-1).expand(B, H, Tq).transpose(1, 2)[..., None]
    ot = torch.where(empty, 0.0, ot)
    ot.backward(t64(dout))
    close(out, ot.detach())
    for mine, theirs in ((dq, qt.grad), (dk, kt.grad), (dv, vt.grad)):
        close(mine, torch.nan_to_num(theirs, 0.0))


def test_attention_dropout_op():
    """The mask drawn from (seed, position): the same for 1 and 2 threads and for
    the backward; P (probs) is the softmax before dropout; gradients match
    finite differences of the float64 definition with that mask."""
    q, k, v, dout = qkv(6, Tq=7, Tk=7)
    B, T, H, _ = q.shape
    kw = dict(causal=True, dropout_rate=0.3, seed=11)
    results = []
    for threads in (1, 2):
        with _threads(threads):
            out, probs = fz.ops.attention_forward(q, k, v, **kw)
            results.append((out, probs, *fz.ops.attention_backward(q, k, v, probs, dout, **kw)))
    for a, b in zip(*results):
        assert np.array_equal(a, b)
    out, probs = results[0][:2]
    plain, probs0 = fz.ops.attention_forward(q, k, v, causal=True)
    assert np.array_equal(probs, probs0) and not np.array_equal(out, plain)
    # Recover M: with V the identity (dv = T), O's column j is P̃'s column j.
    eye = np.broadcast_to(np.eye(T, dtype=np.float32)[None, :, None, :], (B, T, H, T)).copy()
    dropped, _ = fz.ops.attention_forward(q, k, eye, **kw)
    dropped = dropped.transpose(0, 2, 1, 3)  # (B, H, Tq, Tk)
    keep = np.divide(dropped, probs0, out=np.zeros_like(dropped), where=probs0 > 0)
    assert set(np.round(keep[probs0 > 0].astype(np.float64), 4).tolist()) <= {0.0, round(1 / 0.7, 4)}
    ref = dict(causal=True, keep=np.round(keep * 0.7) / 0.7)
    close(out, attention64(q, k, v, **ref))
    dq, dk, dv = results[0][2:]
    close(dq, numeric_gradient(lambda x: attention64(x, k, v, **ref), q, dout), 1e-4)
    close(dk, numeric_gradient(lambda x: attention64(q, x, v, **ref), k, dout), 1e-4)
    close(dv, numeric_gradient(lambda x: attention64(q, k, x, **ref), v, dout), 1e-4)
    other, _ = fz.ops.attention_forward(q, k, v, causal=True, dropout_rate=0.3, seed=12)
    assert not np.array_equal(other, out)


class _threads:
    def __init__(self, n):
        self.n = n

    def __enter__(self):
        self.saved = fz._core.get_num_threads()
        fz._core.set_num_threads(self.n)

    def __exit__(self, *exc):
        fz._core.set_num_threads(self.saved)


def test_attention_op_bad_arguments():
    q, k, v, dout = qkv(7)
    with pytest.raises(ValueError, match=r"mask must have shape \(2 or 1, 5 or 1, 7\)"):
        fz.ops.attention_forward(q, k, v, mask=np.ones((2, 3, 7), bool))
    with pytest.raises(ValueError, match=r"v must have shape \(2, 7, 3, _\)|v must have shape"):
        fz.ops.attention_forward(q, k, v[:, :6])
    with pytest.raises(ValueError, match=r"causal_offset must be in \[-q_len, kv_len\] = \[-5, 7\]"):
        fz.ops.attention_forward(q, k, v, causal=True, causal_offset=2**62)
    with pytest.raises(ValueError, match=r"dropout_rate must be in \[0, 1\)"):
        fz.ops.attention_forward(q, k, v, dropout_rate=1.0)
    with pytest.raises(ValueError, match=r"scale must be in"):
        fz.ops.attention_forward(q, k, v, scale=float("nan"))


# ==================================================================== layers: gradients

def test_embedding_layer_gradients():
    layer = L.Embedding(7, 4)
    ids = rng(1).integers(0, 7, (3, 5))
    assert fz.testing.check_gradients(layer, ids)["param_0"] < 1e-2
    layer.trainable = False
    layer.forward(ids, training=True)
    before = layer.grads[0].copy()
    assert layer.backward(np.ones((3, 5, 4), np.float32)) is None
    assert np.array_equal(layer.grads[0], before)


@pytest.mark.parametrize("tie", [True, False])
def test_reversible_embedding_gradients(tie):
    layer = L.ReversibleEmbedding(9, 5, tie_weights=tie, embeddings_initializer="normal")
    layer.build()
    x = rng(2).standard_normal((2, 3, 5)).astype(np.float32)

    class Reverse(L.Layer):  # the reverse call as a layer of its own, for check_gradients
        params, grads = layer.params, layer.grads

        def forward(self, x, training=False):
            return layer.forward(x, reverse=True, training=training)

        def backward(self, dy):
            layer.input_grad_needed = True
            return layer.backward(dy)

    report = fz.testing.check_gradients(Reverse(), x)
    assert max(report.values()) < 1e-2, report
    logits = layer(x, reverse=True)
    table = layer.embeddings.T if tie else layer.reverse_embeddings
    close(logits, x @ table, 1e-5)
    ids = rng(3).integers(0, 9, (2, 3))
    assert fz.testing.check_gradients(layer, ids)["param_0"] < 1e-2


def test_position_embedding_gradients():
    layer = L.PositionEmbedding(6)
    x = rng(3).standard_normal((2, 4, 3)).astype(np.float32)
    report = fz.testing.check_gradients(layer, x)
    assert max(report.values()) < 1e-2, report
    y = layer(x, start_index=2)
    close(y, x + layer.position_embeddings[2:6], 1e-7)
    layer.forward(x, start_index=2, training=True)
    layer.backward(np.ones_like(x))
    assert np.all(layer.grads[0][:2] == 0) and np.all(layer.grads[0][2:] == 2)


@pytest.mark.parametrize("center, scale", [(True, True), (False, True), (True, False),
                                           (False, False)])
def test_layer_normalization_gradients(center, scale):
    layer = L.LayerNormalization(center=center, scale=scale, epsilon=1e-5)
    x = rng(4).standard_normal((2, 3, 6)).astype(np.float32)
    layer.build(x.shape)
    for p in layer.params:
        p[...] = rng(5).uniform(0.5, 1.5, p.shape)
    assert len(layer.params) == center + scale
    report = fz.testing.check_gradients(layer, x, epsilon=1e-2)
    assert max(report.values()) < 1e-2, report


class Call(L.Layer):
    """A MultiHeadAttention call with fixed keyword arguments, as a layer
    taking the list of its tensor inputs (what check_gradients drives)."""

    def __init__(self, mha, **kwargs):
        super().__init__()
        self.mha, self.kwargs = mha, kwargs

    @property
    def params(self):
        return self.mha.params

    @params.setter
    def params(self, value):
        pass

    @property
    def grads(self):
        return self.mha.grads

    @grads.setter
    def grads(self, value):
        pass

    def forward(self, xs, training=False):
        return self.mha.forward(*xs, training=training, **self.kwargs)

    def backward(self, dy):
        self.mha.input_grad_needed = True
        return self.mha.backward(dy)


def weight_names(mha):
    """Keras's order: each projection's kernel, then its bias."""
    return [f"{p}_{w}" for p in ("query", "key", "value", "output")
            for w in (("kernel", "bias") if mha.use_bias else ("kernel",))]


MHA_CASES = {
    "self causal": (dict(num_heads=2, key_dim=3), dict(use_causal_mask=True), "self"),
    "cross, key given": (dict(num_heads=2, key_dim=3, value_dim=4, output_shape=5), {}, "key"),
    "cross, key = value": (dict(num_heads=3, key_dim=2, use_bias=False), {}, "cross"),
    "masked": (dict(num_heads=2, key_dim=3), dict(attention_mask="mask"), "cross"),
    "dropout": (dict(num_heads=2, key_dim=3, dropout=0.4), dict(use_causal_mask=True), "self"),
}


def mha_inputs(kind, seed=0):
    r = rng(seed)
    q = r.standard_normal((2, 4, 6)).astype(np.float32)
    if kind == "self":
        return [q, q]
    v = r.standard_normal((2, 5, 7)).astype(np.float32)
    return [q, v, r.standard_normal((2, 5, 3)).astype(np.float32)] if kind == "key" else [q, v]


@pytest.mark.parametrize("case", MHA_CASES)
def test_multi_head_attention_gradients(case):
    config, kwargs, kind = MHA_CASES[case]
    xs = mha_inputs(kind)
    if kwargs.get("attention_mask") == "mask":
        kwargs = dict(attention_mask=rng(1).random((2, 4, 5)) > 0.3)
    mha = L.MultiHeadAttention(**config)
    mha.build(*(x.shape for x in xs[:2]), xs[2].shape if len(xs) > 2 else None)
    for p in mha.params:  # biases too, so that their gradients are not all zero
        p[...] = rng(2).standard_normal(p.shape) * 0.5
    fz.utils.set_random_seed(3)
    if kind == "self":  # the same array twice: check_gradients perturbs one, so pass copies
        xs = [xs[0], xs[0].copy()]
    report = fz.testing.check_gradients(Call(mha, **kwargs), xs)
    for name, err in report.items():
        key_bias = mha.use_bias and name == f"param_{weight_names(mha).index('key_bias')}"
        # ∂L/∂(key bias) is 0: it adds q·b to every score of a row, which softmax ignores
        assert err < 1e-2 or key_bias, (name, err, report)


def test_self_attention_gradient_goes_to_the_query():
    mha = L.MultiHeadAttention(2, 3)
    x = rng(3).standard_normal((2, 4, 6)).astype(np.float32)
    mha.forward(x, x, use_causal_mask=True, training=True)
    d_query, d_value = mha.backward(np.ones((2, 4, 6), np.float32))
    assert d_value is None
    d_query = d_query.copy()  # a buffer of the layer's, reused by its next backward
    y = x.copy()  # another array with the same values: two gradients, which add up to the first
    mha.forward(x, y, use_causal_mask=True, training=True)
    a, b = (g.copy() for g in mha.backward(np.ones((2, 4, 6), np.float32)))
    close(d_query, a + b, 1e-5)


# ==================================================================== layers against PyTorch

@needs_torch
def test_layers_against_torch_modules():
    r = rng(4)
    emb = L.Embedding(10, 6)
    ids = r.integers(0, 10, (3, 5))
    te = torch.nn.Embedding(10, 6).double()
    emb.build()
    te.weight.data = t64(emb.embeddings)
    dy = r.standard_normal((3, 5, 6)).astype(np.float32)
    emb.forward(ids, training=True)
    emb.backward(dy)
    out = te(torch.tensor(ids))
    out.backward(t64(dy))
    close(emb(ids), out.detach())
    close(emb.grads[0], te.weight.grad)

    ln = L.LayerNormalization(epsilon=1e-5)
    x = r.standard_normal((3, 5, 6)).astype(np.float32)
    ln.build(x.shape)
    ln.gamma[...] = r.uniform(0.5, 1.5, 6)
    ln.beta[...] = r.standard_normal(6)
    tl = torch.nn.LayerNorm(6, eps=1e-5).double()
    tl.weight.data, tl.bias.data = t64(ln.gamma), t64(ln.beta)
    xt = t64(x, True)
    yt = tl(xt)
    yt.backward(t64(dy))
    y = ln.forward(x, training=True).copy()
    dx = ln.backward(dy)
    close(y, yt.detach())
    close(dx, xt.grad)
    close(ln.grads[0], tl.weight.grad)
    close(ln.grads[1], tl.bias.grad)


def torch_mha(mha, query, value, key=None, mask=None, causal=False):
    """Keras's MultiHeadAttention written in PyTorch from mha's weights (float64):
    einsum projections with the (C, H, d) kernels, then SDPA."""
    w = {n: t64(p, True) for n, p in zip(weight_names(mha), mha.params)}
    key = value if key is None else key

    def project(x, name):
        y = torch.einsum("btc,chd->bthd", x, w[f"{name}_kernel"])
        return y + w[f"{name}_bias"] if mha.use_bias else y

    q, k, v = project(query, "query"), project(key, "key"), project(value, "value")
    Tq, Tk = q.shape[1], k.shape[1]
    visible = torch.ones(q.shape[0], 1, Tq, Tk, dtype=torch.bool)
    if causal:
        visible &= torch.arange(Tk)[None, :] <= torch.arange(Tq)[:, None]
    if mask is not None:
        visible &= torch.tensor(mask)[:, None]
    o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                       attn_mask=visible).transpose(1, 2)
    y = torch.einsum("bthd,hdc->btc", o, w["output_kernel"])
    return (y + w["output_bias"] if mha.use_bias else y), w


@needs_torch
@pytest.mark.parametrize("case", [c for c in MHA_CASES if c != "dropout"])
def test_multi_head_attention_against_torch(case):
    config, kwargs, kind = MHA_CASES[case]
    xs = mha_inputs(kind, seed=5)
    mask = rng(1).random((2, 4, 5)) > 0.3 if kwargs.get("attention_mask") == "mask" else None
    causal = kwargs.get("use_causal_mask", False)
    mha = L.MultiHeadAttention(**config)
    mha.build(*(x.shape for x in xs[:2]), xs[2].shape if len(xs) > 2 else None)
    for p in mha.params:
        p[...] = rng(6).standard_normal(p.shape) * 0.5
    dy = rng(7).standard_normal((2, 4, mha.output_kernel.shape[-1])).astype(np.float32)
    if kind == "self":
        xs = [xs[0], xs[0].copy()]  # separate gradients for query and value
    y = mha.forward(*xs, attention_mask=mask, use_causal_mask=causal, training=True).copy()
    mha.input_grad_needed = True
    dxs = mha.backward(dy)
    ts = [t64(x, True) for x in xs]
    yt, w = torch_mha(mha, *ts, mask=mask, causal=causal)
    yt.backward(t64(dy))
    close(y, yt.detach())
    for mine, theirs in zip(dxs, ts):
        close(mine, theirs.grad)
    for name, g in zip(weight_names(mha), mha.grads):
        close(g, w[name].grad)


# ==================================================================== cache, threads, errors

def test_cached_attention_equals_the_full_window_bit_for_bit():
    fz.utils.set_random_seed(0)
    mha = L.MultiHeadAttention(4, 8)
    x = rng(8).standard_normal((3, 12, 32)).astype(np.float32)
    full = mha(x, x, use_causal_mask=True)
    cache = mha.init_cache(3, 16)
    steps = []
    y, cache = mha(x[:, :5], x[:, :5], use_causal_mask=True, cache=cache, cache_update_index=0)
    steps.append(y)  # a prompt of 5 tokens at once, then one token at a time
    for t in range(5, 12):
        y, cache = mha(x[:, t:t + 1], x[:, t:t + 1], use_causal_mask=True, cache=cache,
                       cache_update_index=t)
        steps.append(y)
    assert np.array_equal(np.concatenate(steps, axis=1), full)
    k_full = x.reshape(36, 32) @ mha.key_kernel.reshape(32, -1) + mha.key_bias.reshape(-1)
    close(cache[0, :, :12].reshape(36, -1), k_full, 1e-5)
    assert np.all(cache[:, :, 12:] == 0)


def test_cached_attention_of_the_last_query_only_is_the_full_windows_last_row():
    fz.utils.set_random_seed(0)
    mha = L.MultiHeadAttention(2, 4)
    x = rng(3).standard_normal((1, 7, 8)).astype(np.float32)
    full = mha(x, x, use_causal_mask=True)
    for start in (0, 2):  # the keys and values of positions [start, 7) are new
        cache = mha.init_cache(1, 9)
        if start:
            mha(x[:, :start], x[:, :start], use_causal_mask=True, cache=cache,
                cache_update_index=0)
        y, _ = mha(x[:, -1:], x[:, start:], use_causal_mask=True, cache=cache,
                   cache_update_index=start)
        assert np.array_equal(y, full[:, -1:])


def test_cache_misuse_is_refused():
    mha = L.MultiHeadAttention(2, 4)
    x = np.ones((2, 1, 8), np.float32)
    cache = mha.init_cache(2, 4)
    with pytest.raises(ValueError, match="needs use_causal_mask=True"):
        mha(x, x, cache=cache, cache_update_index=0)
    with pytest.raises(ValueError, match=r"cache_update_index must be an integer in \[0, 3\]"):
        mha(x, x, use_causal_mask=True, cache=cache, cache_update_index=4)
    with pytest.raises(ValueError, match=r"cache must have shape \(2, 2, max_length, 2, 4\)"):
        mha(x, x, use_causal_mask=True, cache=np.zeros((2, 3, 4, 2, 4), np.float32),
            cache_update_index=0)
    with pytest.raises(ValueError, match="cache must be a writable C-contiguous float32"):
        mha(x, x, use_causal_mask=True, cache=cache.astype(np.float64), cache_update_index=0)
    with pytest.raises(ValueError, match="2 queries for 1 new keys"):
        mha(np.ones((2, 2, 8), np.float32), x, use_causal_mask=True, cache=cache,
            cache_update_index=0)
    with pytest.raises(ValueError, match="for inference"):
        mha.forward(x, x, use_causal_mask=True, cache=cache, cache_update_index=0, training=True)


def _run_all_layers():
    fz.utils.set_random_seed(1)
    r = rng(9)
    ids = r.integers(0, 50, (4, 64))
    x = r.standard_normal((4, 64, 64)).astype(np.float32)
    out = []
    for layer, inputs, kwargs in (
            (L.Embedding(50, 64), (ids,), {}),
            (L.PositionEmbedding(64), (x,), {}),
            (L.LayerNormalization(), (x,), {}),
            (L.MultiHeadAttention(4, 16, dropout=0.1), (x, x), {"use_causal_mask": True})):
        y = layer.forward(*inputs, training=True, **kwargs).copy()
        layer.input_grad_needed = True
        dx = layer.backward(np.cos(y))
        out += [y] + [g.copy() for g in layer.grads]
        out += [d.copy() for d in (dx if isinstance(dx, tuple) else (dx,)) if d is not None]
    return out


def test_layers_bit_identical_for_one_and_two_threads():
    with _threads(1):
        one = _run_all_layers()
    with _threads(2):
        two = _run_all_layers()
    assert len(one) == len(two)
    for a, b in zip(one, two):
        assert np.array_equal(a, b)


def test_bad_inputs_give_clear_errors():
    emb = L.Embedding(5, 3)
    with pytest.raises(ValueError, match=r"embedding\w*: token ids value 5 at flat index 2 is "
                                         r"outside \[0, 5\) \(input_dim=5\)"):
        emb(np.array([[0, 1, 5]]))
    with pytest.raises(ValueError, match=r"value -1 at flat index 0"):
        emb(np.array([[-1]]))
    with pytest.raises(ValueError, match="whole numbers"):
        emb(np.array([[0.5]]))
    with pytest.raises(ValueError, match=r"input_dim must be a positive integer"):
        L.Embedding(0, 3)
    with pytest.raises(TypeError, match="mask_zero"):
        L.Embedding(5, 3, mask_zero=True)
    pos = L.PositionEmbedding(4)
    with pytest.raises(ValueError, match=r"a sequence of 5 steps from position 0 does not fit in "
                                         r"sequence_length=4"):
        pos(np.zeros((1, 5, 2), np.float32))
    with pytest.raises(ValueError, match=r"from position 3 does not fit"):
        pos(np.zeros((1, 2, 2), np.float32), start_index=3)
    with pytest.raises(ValueError, match=r"epsilon must be a number in \(0, inf\)"):
        L.LayerNormalization(epsilon=0)
    with pytest.raises(ValueError, match="only axis=-1"):
        L.LayerNormalization(axis=1)
    with pytest.raises(ValueError, match=r"num_heads must be a positive integer, got 0"):
        L.MultiHeadAttention(0, 4)
    with pytest.raises(ValueError, match=r"key_dim must be a positive integer, got 2.5"):
        L.MultiHeadAttention(2, 2.5)
    with pytest.raises(ValueError, match=r"dropout must be a number in \[0, 1\)"):
        L.MultiHeadAttention(2, 4, dropout=1.0)
    mha = L.MultiHeadAttention(2, 4)
    x = np.zeros((2, 3, 8), np.float32)
    with pytest.raises(ValueError, match=r"attention_mask must be \(batch, 3, 3\)"):
        mha(x, x, attention_mask=np.ones((3, 3), bool))
    with pytest.raises(ValueError, match=r"mask must have shape \(2 or 1, 3 or 1, 3\)"):
        mha(x, x, attention_mask=np.ones((2, 2, 3), bool))
    with pytest.raises(ValueError, match=r"query must have 8 features"):
        mha(np.zeros((2, 3, 7), np.float32), x)
    with pytest.raises(ValueError, match="same batch size"):
        mha(x, np.zeros((3, 3, 8), np.float32))
    with pytest.raises(ValueError, match=r"must be \(batch, time, features\)"):
        mha(np.zeros((2, 8), np.float32), x)


# ==================================================================== in a graph

def tiny_gpt(vocab=13, T=8, C=16):
    ids = fz.Input(shape=(T,), dtype="int32")
    emb = L.ReversibleEmbedding(vocab, C, embeddings_initializer="normal")
    h = L.PositionEmbedding(T)(emb(ids))
    n = L.LayerNormalization(epsilon=1e-5)(h)
    h = L.Add()([h, L.MultiHeadAttention(2, C // 2)(n, n, use_causal_mask=True)])
    n = L.LayerNormalization(epsilon=1e-5)(h)
    h = L.Add()([h, L.Dense(C)(L.Dropout(0.1)(L.Dense(4 * C, activation="gelu")(n)))])
    logits = emb(L.LayerNormalization(epsilon=1e-5)(h), reverse=True)
    return fz.Model(ids, logits)


def test_tiny_gpt_gradients_train_and_save(tmp_path):
    fz.utils.set_random_seed(0)
    model = tiny_gpt()
    ids = rng(10).integers(0, 13, (3, 8))
    report = fz.testing.check_gradients(model, ids)
    key_bias = [i for i, p in enumerate(model.trainable_params) if p.shape == (2, 8)][1]
    assert all(err < 2e-2 for name, err in report.items() if name != f"param_{key_bias}"), report
    # next-token data from a repeating pattern: the loss falls well below log(13)
    pattern = np.arange(200) % 13
    x = np.stack([pattern[i:i + 8] for i in range(150)])
    y = np.stack([pattern[i + 1:i + 9] for i in range(150)])
    model.compile(optimizer=fz.optimizers.Adam(0.01),
                  loss=fz.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(x, y, epochs=8, batch_size=16, verbose=0)
    assert history.history["loss"][-1] < 0.5 * np.log(13), history.history
    model.save(tmp_path / "gpt.npz")
    loaded = fz.load_model(tmp_path / "gpt.npz")
    assert np.array_equal(loaded.predict(x[:4], verbose=0), model.predict(x[:4], verbose=0))


def test_dense_and_dropout_on_sequences():
    x = rng(11).standard_normal((2, 3, 4)).astype(np.float32)
    dense = L.Dense(5, activation="gelu")
    assert dense(x).shape == (2, 3, 5)
    assert max(fz.testing.check_gradients(dense, x).values()) < 1e-2
    fz.utils.set_random_seed(0)
    assert max(fz.testing.check_gradients(L.Dropout(0.3), x).values()) < 1e-2


def test_multi_head_attention_weights_sublayers_and_sharing():
    mha = L.MultiHeadAttention(2, 3, value_dim=4, output_shape=5)
    x = fz.Input(shape=(3, 7))
    h = mha(x, x)
    y = mha(L.Dense(7)(h), x)  # the same layer at two places of a graph
    model = fz.Model(x, y)
    assert [p.shape for p in mha.params] == [(7, 2, 3), (2, 3), (7, 2, 3), (2, 3), (7, 2, 4),
                                             (2, 4), (2, 4, 5), (5,)]
    assert [d.name for d in mha.sublayers] == ["query", "key", "value", "attention_output"]
    assert np.shares_memory(mha.query_kernel, mha.query_dense.kernel)
    xs = rng(12).standard_normal((1, 3, 7)).astype(np.float32)
    for p in mha.params:
        p[...] = rng(13).standard_normal(p.shape) * 0.5
    report = fz.testing.check_gradients(model, xs)
    key_bias = [i for i, p in enumerate(model.trainable_params) if p is not None][3]
    assert all(err < 1e-2 for name, err in report.items() if name != f"param_{key_bias}"), report
    mha.trainable = False
    assert mha.trainable_params == [] and not any(d.trainable for d in mha.sublayers)
