"""Multi-head attention (Vaswani et al. 2017), with Keras's names and weights.

Each of H heads looks at the sequence through its own projections and mixes
the values of the positions its query matches best:

    Q = query·Wq + bq      (B, Tq, H, dk)      Wq: (C_q, H, dk)
    K = key·Wk + bk        (B, Tk, H, dk)      Wk: (C_k, H, dk)
    V = value·Wv + bv      (B, Tk, H, dv)      Wv: (C_v, H, dv)
    O_h = softmax(Q_h·K_hᵀ/√dk + mask)·V_h     per batch and head (csrc/attention.h)
    y = Σ_h O_h·Wo_h + bo  (B, Tq, C_out)      Wo: (H, dv, C_out)

The four projections are Dense sublayers (``query_dense``, ``key_dense``,
``value_dense``, ``output_dense``, as in Keras) on the (B, T, C) inputs:
a (C, H, dk) kernel is the (C, H·dk) matrix such a Dense multiplies by, and
its (B, T, H·dk) output is the (B, T, H, dk) array the attention kernel reads
in place. Attention itself is one fused kernel over (batch, head) that saves
the probabilities P for the backward. Backward runs the same steps in
reverse: the output projection, attention_backward (dQ, dK, dV), then each
input projection (dW = inputᵀ·dQ, db = Σ dQ, d input = dQ·Wᵀ). Because the
projections are Dense layers, Dense.enable_lora adapts them (LoRA on the
query and value projections, issue 13) with nothing special here.
"""

import numpy as np

from .. import graph, initializers, ops, utils
from .base import CallContext, Layer, as_float32
from .core import Dense, check_lora

# The projections, in Keras's weight order: (name, Keras's sublayer name).
_PROJECTIONS = (("query", "query"), ("key", "key"), ("value", "value"),
                ("output", "attention_output"))
_DENSE = {name: f"{name}_dense" for name, _ in _PROJECTIONS}  # the attribute of each


def rows(x):
    """(B, T, C) or (B, T, H, d) as the (B·T, features) matrix, a view."""
    return x.reshape(x.shape[0] * x.shape[1], -1)


def _drawn_as(initializer, shape):
    """An initializer that draws in Keras's kernel `shape` (its fans, so its
    scale) and hands the Dense its 2-D matrix of the same values."""
    init = initializers.get(initializer)
    return lambda dense_shape: np.asarray(init(shape)).reshape(dense_shape)


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
    query's features. ``query_kernel``, ``value_bias``, ... are those arrays
    (views of the Dense sublayers' 2-D kernels: writing them writes the layer).

    Key/value cache, for generation (keras_hub's CachedMultiHeadAttention):
    ``y, cache = mha(x_new, x_new, use_causal_mask=True, cache=cache,
    cache_update_index=t)`` projects the keys and values of the new tokens
    (positions t, t+1, ...) into ``cache`` (float32, (2, batch, max_length,
    heads, key_dim): keys then values; ``init_cache`` makes one) and attends
    over positions [0, t + new) only, so a step costs O(t) and gives the same
    numbers, bit for bit, as running the whole window. The cache is updated
    in place and returned. The query may be the last of the new tokens only
    (fewer steps than the key and value): generation of the next token needs
    only its output.

    When query is value (the same array: self-attention in a graph), backward
    returns the whole gradient as the query's and None for value.
    """

    time_steps = "query"  # with a key/value cache (Layer.time_steps)

    #: model.enable_lora's default target (issue 13): the query and value projections
    lora_default_target = True

    def __init__(self, num_heads, key_dim, value_dim=None, dropout=0.0, use_bias=True,
                 output_shape=None, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", lora_rank=None, lora_alpha=None, **kwargs):
        self._sublayers = []
        super().__init__(**kwargs)
        owner = "MultiHeadAttention"
        self._lora_at_build = None if lora_rank is None else check_lora(owner, lora_rank,
                                                                         lora_alpha)
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
        self.query_dense = self.key_dense = self.value_dense = self.output_dense = None

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
        out = self.output_shape_ or int(query_shape[-1])
        self._shapes = {}  # Keras's (kernel, bias) shapes of each projection
        for name, keras_name in _PROJECTIONS:
            if name == "output":
                kernel, inputs = (H, self.value_dim, out), H * self.value_dim
            else:
                size = self.value_dim if name == "value" else self.key_dim
                kernel, inputs = (int(shapes[name][-1]), H, size), int(shapes[name][-1])
            self._shapes[name] = (kernel, kernel[-1:] if name == "output" else kernel[1:])
            dense = Dense(int(np.prod(kernel)) // inputs, use_bias=self.use_bias,
                          kernel_initializer=_drawn_as(self.kernel_initializer, kernel),
                          bias_initializer=_drawn_as(self.bias_initializer,
                                                     self._shapes[name][1]),
                          name=keras_name, trainable=self.trainable)
            dense.build((None, inputs))
            setattr(self, f"{name}_dense", dense)
        self._sublayers = [getattr(self, f"{name}_dense") for name, _ in _PROJECTIONS]
        self.built = True
        if self._lora_at_build is not None:
            self.enable_lora(*self._lora_at_build)

    # ------------------------------------------------------------ LoRA

    @property
    def lora_targets(self):
        """The projections LoRA adapts: query and value, as the LoRA paper
        (its experiments found adapting Wq and Wv the best use of a budget)."""
        return [self.query_dense, self.value_dense]

    def enable_lora(self, rank, lora_alpha=None, a_initializer="he_uniform",
                    b_initializer="zeros"):
        """Rank-`rank` LoRA adapters on the query and value projections
        (Dense.enable_lora on query_dense and value_dense); the key and output
        projections freeze, so only the four adapter matrices train."""
        if not self.built:
            raise ValueError(f"{self.name}: cannot enable LoRA on a layer that is not built yet "
                             f"(call it on data first)")
        if any(d.lora_enabled for d in self.lora_targets):
            raise ValueError(f"{self.name}: LoRA is already enabled; merge_lora() first")
        check_lora(self.name, rank, lora_alpha)  # before anything changes
        self.key_dense.trainable = self.output_dense.trainable = False
        for dense in self.lora_targets:
            dense.trainable = True
            dense.enable_lora(rank, lora_alpha, a_initializer, b_initializer)

    def merge_lora(self):
        """Fold the query and value adapters into their kernels (Dense.merge_lora)."""
        adapted = [d for d in self.lora_targets if d.lora_enabled]
        if not adapted:
            raise ValueError(f"{self.name}: LoRA is not enabled, there is nothing to merge")
        for dense in adapted:
            dense.merge_lora()

    @property
    def sublayers(self):
        """The four projections: query_dense, key_dense, value_dense, output_dense."""
        return list(self._sublayers)

    def _keras_view(self, name, dense, p, q=None):
        """q (default p), a weight of `dense` or its gradient, in Keras's shape when
        p is the projection's kernel or bias; other weights (LoRA's) as they are."""
        q = p if q is None else q
        kernel, bias = self._shapes[name]
        shape = kernel if p is dense.kernel else bias if p is dense.bias else None
        if shape is None:
            return q
        # The same view object every time (for a weight and for its gradient):
        # optimizers and checkpoints know a parameter by its identity.
        views = self.__dict__.setdefault("_views", {})
        key = (id(p), q is p)
        entry = views.get(key)
        if entry is None or entry[0] is not q:
            entry = views[key] = (q, q.reshape(shape))
        return entry[1]

    def _gather(self, pick):
        out = []
        for (name, _), dense in zip(_PROJECTIONS, self._sublayers):
            out += [self._keras_view(name, dense, p, q) for p, q in pick(dense)]
        return out

    # params and grads (and their trainable parts): the sublayers', in Keras's
    # order and shapes. Setting grads (a model adding the gradients of a layer
    # used twice) hands each sublayer its share, in its own shapes.
    @property
    def params(self):
        return self._gather(lambda d: [(p, p) for p in d.params])

    @params.setter
    def params(self, value):
        if value:
            raise AttributeError(f"{self.name}: params are the sublayers'")

    @property
    def grads(self):
        return self._gather(lambda d: list(zip(d.params, d.grads)))

    @grads.setter
    def grads(self, value):
        value = list(value)
        for dense in self._sublayers:
            n = len(dense.grads)
            dense.grads = [v.reshape(g.shape) for v, g in zip(value[:n], dense.grads)]
            value = value[n:]

    @property
    def trainable_params(self):
        return self._gather(lambda d: [(p, p) for p in d.trainable_params])

    @property
    def trainable_grads(self):
        return self._gather(lambda d: [(p, g) for p, g in zip(d.params, d.grads)
                                       if any(p is t for t in d.trainable_params)])

    @property
    def trainable(self):
        return self._trainable

    @trainable.setter
    def trainable(self, value):
        self._trainable = bool(value)
        for dense in self._sublayers:
            dense.trainable = self._trainable

    def projection(self, name):
        """(kernel, bias or None) of projection "query", "key", "value" or "output",
        in Keras's shapes (views of the Dense sublayer's weights)."""
        dense = getattr(self, f"{name}_dense")
        kernel, bias = self._shapes[name]
        return dense.kernel.reshape(kernel), None if dense.bias is None else dense.bias.reshape(bias)

    def __getattr__(self, attr):  # query_kernel, ..., output_bias
        for suffix, index in (("_kernel", 0), ("_bias", 1)):
            name = attr[:-len(suffix)]
            if attr.endswith(suffix) and name in ("query", "key", "value", "output") and \
                    self.__dict__.get(f"{name}_dense") is not None:
                return self.projection(name)[index]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {attr!r}")

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
            for dense, name, shape in ((self.query_dense, "query", q_shape),
                                       (self.key_dense, "key", k_shape),
                                       (self.value_dense, "value", v_shape)):
                features = dense.kernel.shape[0]
                if shape[-1] not in (None, features):
                    raise ValueError(f"{self.name}: {name} must have {features} features, got "
                                     f"shape {tuple(shape)}")

    def _dense(self, name, method, *args, **kwargs):
        """A projection's forward or backward, in this call's own context of it
        (kept in ours: a graph node of this layer has its own Dense state too)."""
        context = self._context()
        if context.nodes is None:
            context.nodes = {n: CallContext() for n, _ in _PROJECTIONS}
        dense = self.__dict__[_DENSE[name]]
        dense._local.context = context.nodes[name]
        return getattr(dense, method)(*args, **kwargs)

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
        H, dk, dv = self.num_heads, self.key_dim, self.value_dim
        heads = lambda y, d: y.reshape(y.shape[0], y.shape[1], H, d)  # noqa: E731 — a view
        q = heads(self._dense("query", "forward", q_in, training=training), dk)
        if cache is None:
            k = heads(self._dense("key", "forward", k_in, training=training), dk)
            v = heads(self._dense("value", "forward", v_in, training=training), dv)
            offset = 0
        elif training:
            raise ValueError(f"{self.name}: a key/value cache is for inference (training=False)")
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
        y = self._dense("output", "forward", o.reshape(B, Tq, H * dv), training=training)
        if training:
            self.save(q_in, k_in, v_in, q, k, v, o, probs, attention,
                      (self_attention, key is not None, attention_mask is not None))
        return y if cache is None else (y, cache)

    def _update_cache(self, cache, index, k_in, v_in, causal, B, Tq):
        """Writes the new tokens' keys and values at positions [index, index + Tk)
        of the cache; returns its key and value arrays (B, L, H, d) and the
        causal offset of the queries: the last Tq ≤ Tk of the new positions
        (all of them, or only the last when a model needs only the next
        token's logits: Model._last_step_plan)."""
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
        L, Tk = cache.shape[2], k_in.shape[1]
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or \
                not 0 <= index <= L - Tk:
            raise ValueError(f"{self.name}: cache_update_index must be an integer in [0, "
                             f"{L - Tk}] for {Tk} new tokens in a cache of {L} positions, got "
                             f"{index!r}")
        if Tq > Tk:
            raise ValueError(f"{self.name}: with a cache, the queries are the last of the new "
                             f"tokens: {Tq} queries for {Tk} new keys and values")
        index = int(index)
        for slot, name, x in ((0, "key", k_in), (1, "value", v_in)):
            new = self._dense(name, "forward", x)
            cache[slot, :, index:index + Tk] = new.reshape(B, Tk, H, d)
        return cache[0], cache[1], index + Tk - Tq

    # ------------------------------------------------------------ backward

    def backward(self, dy):
        q_in, k_in, v_in, q, k, v, o, probs, attention, (self_attention, has_key, has_mask) = \
            self.saved
        dy = as_float32(dy, "dy")
        out_features = self.output_dense.units
        if dy.shape != q_in.shape[:2] + (out_features,):
            raise ValueError(f"{self.name}: dy must have shape "
                             f"{q_in.shape[:2] + (out_features,)}, got {dy.shape}")
        need_dx = self.input_grad_needed
        for dense in self._sublayers:
            dense.input_grad_needed = True
        # The output projection, then attention, then the input projections.
        do = self._dense("output", "backward", dy).reshape(o.shape)
        dq, dk, dv = ops.attention_backward(
            q, k, v, probs, do, **attention, dq=self.buffer("dq", q.shape),
            dk=self.buffer("dk", k.shape), dv=self.buffer("dv", v.shape))
        for dense in self._sublayers[:3]:
            dense.input_grad_needed = need_dx
        grads = {name: self._dense(name, "backward", g.reshape(g.shape[0], g.shape[1], -1))
                 for name, g in (("query", dq), ("key", dk), ("value", dv))}
        if not need_dx:
            return None
        if self_attention:  # one input: the three projections' gradients add up
            total = np.add(grads["query"], grads["key"], out=self.buffer("d input", q_in.shape))
            return (np.add(total, grads["value"], out=total), None) + (None,) * has_mask
        if has_key:
            result = [grads["query"], grads["value"], grads["key"]]
        else:  # key = value
            result = [grads["query"], np.add(grads["key"], grads["value"],
                                             out=self.buffer("d value", v_in.shape))]
        return tuple(result + [None] * has_mask)

    def get_config(self):
        name = lambda init, default: init if isinstance(init, str) else default  # noqa: E731
        return {"name": self.name, "num_heads": self.num_heads, "key_dim": self.key_dim,
                "value_dim": self.value_dim, "dropout": self.dropout, "use_bias": self.use_bias,
                "output_shape": self.output_shape_,
                "kernel_initializer": name(self.kernel_initializer, "glorot_uniform"),
                "bias_initializer": name(self.bias_initializer, "zeros"), **self._lora_config()}

    def _lora_config(self):
        query = self.query_dense
        if query is not None and query.lora_enabled:
            return {"lora_rank": query.lora_rank, "lora_alpha": query.lora_alpha}
        if self._lora_at_build is not None:
            return dict(zip(("lora_rank", "lora_alpha"), self._lora_at_build))
        return {}
