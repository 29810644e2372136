"""Multi-head attention (Vaswani et al. 2017), with Keras's names and weights.

Each of H heads looks at the sequence through its own projections and mixes
the values of the positions its query matches best:

    Q = query·Wq + bq      (B, Tq, H, dk)      Wq: (C_q, H, dk)
    K = key·Wk + bk        (B, Tk, H, dk)      Wk: (C_k, H, dk)
    V = value·Wv + bv      (B, Tk, H, dv)      Wv: (C_v, H, dv)
    O_h = softmax(Q_h·K_hᵀ/√dk + mask)·V_h     per batch and head (csrc/attention.h)
    y = Σ_h O_h·Wo_h + bo  (B, Tq, C_out)      Wo: (H, dv, C_out)

The four projections are GEMMs on the (rows, features) matrices, the kernels
reshaped in place ((C, H, dk) is a (C, H·dk) matrix); attention itself is one
fused kernel over (batch, head) that saves the probabilities P for the
backward. Backward runs the same steps in reverse: the output projection,
then attention_backward (dQ, dK, dV), then each input projection
(dW = inputᵀ·dQ, db = Σ dQ, d input = dQ·Wᵀ).
"""

import numpy as np

from .. import graph, initializers, ops, utils
from .base import Layer, as_float32

def rows(x):
    """(B, T, C) or (B, T, H, d) as the (B·T, features) matrix, a view."""
    return x.reshape(x.shape[0] * x.shape[1], -1)


# The four projections: (name, the input they read, the head size they make).
_PROJECTIONS = (("query", "query", "key_dim"), ("key", "key", "key_dim"),
                ("value", "value", "value_dim"))


class MultiHeadAttention(Layer):
    """Keras's MultiHeadAttention, on (batch, time, features) inputs:

        mha = MultiHeadAttention(num_heads=4, key_dim=32)
        y = mha(query, value)                          # cross-attention, key = value
        y = mha(x, x, use_causal_mask=True)            # a GPT's causal self-attention

    Call arguments (Keras's): ``key`` (default: value); ``attention_mask``, a
    boolean (batch, Tq, Tk) array (or (batch, 1, Tk) for padding), True where
    a query may attend to a key; ``use_causal_mask``: query i sees keys j ≤ i
    only; ``training``: dropout of the attention probabilities when
    ``dropout`` > 0. A query row with every key masked gives zeros.

    Weights, in Keras's order and shapes: query/kernel (C_q, H, dk),
    query/bias (H, dk), key/kernel, key/bias, value/kernel (C_v, H, dv),
    value/bias, attention_output/kernel (H, dv, C_out), attention_output/bias
    (C_out,); with use_bias=False no biases. C_out is ``output_shape`` or the
    query's features. They are attributes too: ``query_kernel``,
    ``value_bias``, ... (``projection(name)`` gives one projection's pair).

    Key/value cache, for generation (keras_hub's CachedMultiHeadAttention):
    ``y, cache = mha(x_new, x_new, use_causal_mask=True, cache=cache,
    cache_update_index=t)`` projects the keys and values of the new tokens
    (positions t, t+1, ...) into ``cache`` (float32, (2, batch, max_length,
    heads, key_dim): keys then values; ``init_cache`` makes one) and attends
    over positions [0, t + new) only, so a step costs O(t) and gives the same
    numbers, bit for bit, as running the whole window. The cache is updated
    in place and returned.

    When query is value (the same array: self-attention in a graph), backward
    returns the whole gradient as the query's and None for value.
    """

    def __init__(self, num_heads, key_dim, value_dim=None, dropout=0.0, use_bias=True,
                 output_shape=None, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        owner = "MultiHeadAttention"
        self.num_heads = utils.check_positive_int(owner, "num_heads", num_heads)
        self.key_dim = utils.check_positive_int(owner, "key_dim", key_dim)
        self.value_dim = self.key_dim if value_dim is None else \
            utils.check_positive_int(owner, "value_dim", value_dim)
        self.dropout = ops.check_limit(owner, "dropout", dropout, "dropout_rate")
        self.use_bias = bool(use_bias)
        if output_shape is not None:
            dims = tuple(output_shape) if isinstance(output_shape, (tuple, list)) else (output_shape,)
            if len(dims) != 1:
                raise ValueError(f"{owner}: output_shape must be an int (the output's features), "
                                 f"got {output_shape!r}")
            output_shape = utils.check_positive_int(owner, "output_shape", dims[0])
        self.output_shape_ = output_shape
        initializers.get(kernel_initializer), initializers.get(bias_initializer)
        self.kernel_initializer, self.bias_initializer = kernel_initializer, bias_initializer
        self._index = {}  # weight name -> index in params

    # ------------------------------------------------------------ weights

    def build(self, query_shape, value_shape=None, key_shape=None):
        value_shape = query_shape if value_shape is None else value_shape
        key_shape = value_shape if key_shape is None else key_shape
        shapes = {"query": query_shape, "key": key_shape, "value": value_shape}
        for what, shape in shapes.items():
            if len(shape) != 3 or shape[-1] is None:
                raise ValueError(f"{self.name}: {what} must be (batch, time, features) with known "
                                 f"features, got shape {tuple(shape)}")
        H = self.num_heads
        for name, reads, dim in _PROJECTIONS:
            size = getattr(self, dim)
            self._add(f"{name}_kernel", (int(shapes[reads][-1]), H, size), self.kernel_initializer)
            if self.use_bias:
                self._add(f"{name}_bias", (H, size), self.bias_initializer)
        out = self.output_shape_ or int(query_shape[-1])
        self._add("output_kernel", (H, self.value_dim, out), self.kernel_initializer)
        if self.use_bias:
            self._add("output_bias", (out,), self.bias_initializer)
        self.built = True

    def _add(self, name, shape, initializer):
        self._index[name] = len(self.params)
        setattr(self, name, self.add_weight(shape, initializer, name=name))

    def projection(self, name):
        """(kernel, bias or None) of projection "query", "key", "value" or "output"."""
        return getattr(self, f"{name}_kernel"), getattr(self, f"{name}_bias", None)

    def build_for_call(self, query, value, key=None, **kwargs):
        self.build(query.shape, value.shape, None if key is None else key.shape)

    def compute_output_shape(self, query_shape, value_shape=None, key_shape=None):
        return tuple(query_shape[:-1]) + (self.output_shape_ or query_shape[-1],)

    def compute_output_spec(self, query, value, key=None, attention_mask=None,
                            use_causal_mask=False, training=None, cache=None,
                            cache_update_index=None):
        if cache is not None:
            raise ValueError(f"{self.name}: a key/value cache is for calls on arrays "
                             f"(generation), not for building a graph")
        if attention_mask is not None and not graph.is_symbolic(attention_mask):
            raise ValueError(f"{self.name}: in a graph, attention_mask must be a model input "
                             f"(fz.Input(..., dtype='int32')) or use_causal_mask=True")
        self._check_shapes(query.shape, value.shape, (value if key is None else key).shape)
        out = self.output_shape_ or query.shape[-1]
        return graph.SymbolicTensor(tuple(query.shape[:-1]) + (out,), "float32", None)

    def init_cache(self, batch_size, max_length):
        """A zero key/value cache for `batch_size` sequences of up to `max_length` tokens."""
        if self.key_dim != self.value_dim:
            raise ValueError(f"{self.name}: a cache needs key_dim == value_dim, got "
                             f"{self.key_dim} and {self.value_dim}")
        batch_size = utils.check_positive_int(self.name, "batch_size", batch_size)
        max_length = utils.check_positive_int(self.name, "max_length", max_length)
        return np.zeros((2, batch_size, max_length, self.num_heads, self.key_dim), np.float32)

    # ------------------------------------------------------------ forward

    def _check_shapes(self, q_shape, v_shape, k_shape):
        for what, shape in (("query", q_shape), ("value", v_shape), ("key", k_shape)):
            if len(shape) != 3:
                raise ValueError(f"{self.name}: {what} must be (batch, time, features), got shape "
                                 f"{tuple(shape)}")
        if len({s[0] for s in (q_shape, v_shape, k_shape) if s[0] is not None}) > 1:
            raise ValueError(f"{self.name}: query, value and key must have the same batch size, "
                             f"got shapes {tuple(q_shape)}, {tuple(v_shape)}, {tuple(k_shape)}")
        if None not in (k_shape[1], v_shape[1]) and k_shape[1] != v_shape[1]:
            raise ValueError(f"{self.name}: key and value must have the same length, got shapes "
                             f"{tuple(k_shape)} and {tuple(v_shape)}")
        if self.built:
            for name, shape in (("query", q_shape), ("key", k_shape), ("value", v_shape)):
                features = getattr(self, f"{name}_kernel").shape[0]
                if shape[-1] not in (None, features):
                    raise ValueError(f"{self.name}: {name} must have {features} features, got "
                                     f"shape {tuple(shape)}")

    @staticmethod
    def _matrix(name, kernel):
        """A projection's kernel (or its gradient) as the matrix it multiplies by,
        a view: (C, H, d) as (C, H·d); the output's (H, dv, C) as (H·dv, C)."""
        return kernel.reshape(-1, kernel.shape[-1]) if name == "output" else \
            kernel.reshape(kernel.shape[0], -1)

    def _project(self, name, x2, out):
        """out = x2·W + b on the (rows, features) matrices."""
        kernel, bias = self.projection(name)
        return ops.matmul(x2, self._matrix(name, kernel), bias=None if bias is None
                          else bias.reshape(-1), out=out)

    def forward(self, query, value, key=None, attention_mask=None, use_causal_mask=False,
                training=False, cache=None, cache_update_index=None):
        self_attention = value is query and key is None
        q_in = as_float32(query, "query")
        v_in = q_in if self_attention else as_float32(value, "value")
        k_in = v_in if key is None else as_float32(key, "key")
        self._check_shapes(q_in.shape, v_in.shape, k_in.shape)
        if not self.built:
            self.build(q_in.shape, v_in.shape, k_in.shape)
        B, Tq, _ = q_in.shape
        Tk = v_in.shape[1]
        H, dk, dv = self.num_heads, self.key_dim, self.value_dim
        q = self.buffer("q", (B, Tq, H, dk))
        self._project("query", rows(q_in), rows(q))
        if cache is None:
            k, v = self.buffer("k", (B, Tk, H, dk)), self.buffer("v", (B, Tk, H, dv))
            self._project("key", rows(k_in), rows(k))
            self._project("value", rows(v_in), rows(v))
            offset = 0
        else:
            k, v, offset = self._update_cache(cache, cache_update_index, k_in, v_in,
                                              use_causal_mask, B, Tq)
        if attention_mask is not None:
            attention_mask = np.asarray(attention_mask)
            if attention_mask.ndim != 3:
                raise ValueError(f"{self.name}: attention_mask must be (batch, {Tq}, "
                                 f"{k.shape[1]}) (or (batch, 1, {k.shape[1]})), got shape "
                                 f"{attention_mask.shape}")
        drop = training and self.dropout > 0
        seed = utils.next_seed() if drop else 0
        attention = dict(mask=attention_mask, causal=bool(use_causal_mask) or cache is not None,
                         causal_offset=offset, dropout_rate=self.dropout if drop else 0.0,
                         seed=seed)
        try:
            o, probs = ops.attention_forward(
                q, k, v, **attention, out=self.buffer("o", (B, Tq, H, dv)),
                probs=self.buffer("probs", (B, H, Tq, k.shape[1])))
        except ValueError as e:
            raise ValueError(f"{self.name}: {e}") from None
        y = self.buffer("y", (B, Tq, self.output_kernel.shape[-1]))
        self._project("output", rows(o), rows(y))
        if training:
            if cache is not None:
                raise ValueError(f"{self.name}: a key/value cache is for inference "
                                 f"(training=False)")
            self.save(q_in, k_in, v_in, q, k, v, o, probs, attention,
                      (self_attention, key is not None, attention_mask is not None))
        return y if cache is None else (y, cache)

    def _update_cache(self, cache, index, k_in, v_in, causal, B, Tq):
        """Writes the new tokens' keys and values at positions [index, index + Tq)
        of the cache; returns its key and value arrays (B, L, H, d) and the
        causal offset of the queries (their first position)."""
        if not isinstance(cache, np.ndarray) or cache.dtype != np.float32 \
                or not cache.flags.c_contiguous or not cache.flags.writeable:
            raise ValueError(f"{self.name}: cache must be a writable C-contiguous float32 array "
                             f"from init_cache, got {type(cache).__name__}")
        H, d = self.num_heads, self.key_dim
        if self.key_dim != self.value_dim or cache.ndim != 5 or cache.shape[0] != 2 or \
                cache.shape[1] != B or cache.shape[3:] != (H, d):
            raise ValueError(f"{self.name}: cache must have shape (2, {B}, max_length, {H}, {d}) "
                             f"(init_cache makes one), got {cache.shape}")
        if not causal:
            raise ValueError(f"{self.name}: a key/value cache needs use_causal_mask=True (each "
                             f"new token attends to the ones before it)")
        L = cache.shape[2]
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or \
                not 0 <= index <= L - Tq or k_in.shape[1] != Tq:
            raise ValueError(f"{self.name}: cache_update_index must be an integer in [0, "
                             f"{L - Tq}] for {Tq} new tokens (query, key and value all new) in a "
                             f"cache of {L} positions, got {index!r}")
        index = int(index)
        for slot, name, x in ((0, "key", k_in), (1, "value", v_in)):
            new = self.buffer(f"new {name}", (B, Tq, H, d))
            self._project(name, rows(x), rows(new))
            cache[slot, :, index:index + Tq] = new
        return cache[0], cache[1], index

    # ------------------------------------------------------------ backward

    def backward(self, dy):
        q_in, k_in, v_in, q, k, v, o, probs, attention, (self_attention, has_key, has_mask) = \
            self.saved
        dy = as_float32(dy, "dy")
        B, Tq, _ = q_in.shape
        if dy.shape != (B, Tq, self.output_kernel.shape[-1]):
            raise ValueError(f"{self.name}: dy must have shape "
                             f"{(B, Tq, self.output_kernel.shape[-1])}, got {dy.shape}")
        train = self.trainable
        # The output projection: dWo = Oᵀ·dy, dbo = Σ dy, dO = dy·Woᵀ.
        do = self.buffer("do", o.shape)
        self._project_backward("output", rows(o), rows(dy), rows(do), train)
        dq, dk, dv = ops.attention_backward(
            q, k, v, probs, do, **attention, dq=self.buffer("dq", q.shape),
            dk=self.buffer("dk", k.shape), dv=self.buffer("dv", v.shape))
        need_dx = self.input_grad_needed
        d_query = self.buffer("d query", q_in.shape) if need_dx else None
        if self_attention:  # one input: all three projections' gradients add into it
            d_key = d_value = d_query
        else:
            d_value = self.buffer("d value", v_in.shape) if need_dx else None
            d_key = self.buffer("d key", k_in.shape) if need_dx and has_key else d_value
        accumulate = set()
        for name, x, d_in, grad in (("query", q_in, d_query, dq), ("key", k_in, d_key, dk),
                                    ("value", v_in, d_value, dv)):
            out = None if d_in is None else rows(d_in)
            self._project_backward(name, rows(x), rows(grad), out, train,
                                   accumulate=id(d_in) in accumulate)
            accumulate.add(id(d_in))
        if not need_dx:
            return None
        if self_attention:
            result = [d_query, None]
        else:
            result = [d_query, d_value] + ([d_key] if has_key else [])
        return tuple(result + [None] * has_mask)

    def _project_backward(self, name, x2, dy2, dx2, train, accumulate=False):
        """For out = x2·W + b: dW = x2ᵀ·dy2 and db = Σ dy2 into the grads (when
        training), and dx2 = dy2·Wᵀ (added to dx2 when accumulate; skipped when
        dx2 is None)."""
        kernel, bias = self.projection(name)
        if train:
            grad = self.grads[self._index[f"{name}_kernel"]]
            ops.matmul(x2, dy2, transpose_a=True, out=self._matrix(name, grad))
            if bias is not None:
                ops.bias_grad(dy2, out=self.grads[self._index[f"{name}_bias"]].reshape(-1))
        if dx2 is not None:
            ops.matmul(dy2, self._matrix(name, kernel), transpose_b=True, out=dx2,
                       accumulate=accumulate)

    def get_config(self):
        name = lambda init, default: init if isinstance(init, str) else default  # noqa: E731
        return {"name": self.name, "num_heads": self.num_heads, "key_dim": self.key_dim,
                "value_dim": self.value_dim, "dropout": self.dropout, "use_bias": self.use_bias,
                "output_shape": self.output_shape_,
                "kernel_initializer": name(self.kernel_initializer, "glorot_uniform"),
                "bias_initializer": name(self.bias_initializer, "zeros")}
