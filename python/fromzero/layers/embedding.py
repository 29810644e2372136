"""Embedding layers: token ids in, learned vectors out (csrc/embedding.h).

    Embedding            y[..., :] = W[ids[...], :]           W: (input_dim, output_dim)
    ReversibleEmbedding  the same, and called with reverse=True the output
                         layer of a language model: logits = x · Wᵀ
    PositionEmbedding    y = x + P[start : start + T]          P: (sequence_length, features)

An embedding is one_hot(ids) · W, so its backward is one_hotᵀ · dy: each
occurrence of token v adds its row of dy to row v of dW (a scatter-add, in a
fixed order: the same bits for any thread count). Ids take no gradient.
"""

import numpy as np

from .. import initializers, ops, utils
from .base import Layer, as_float32


def _token_ids(layer, x):
    """x as an integer array (whole-number floats accepted, as Keras casts them)."""
    ids = np.asarray(x)
    if ids.dtype.kind == "f":
        if not np.all(np.isfinite(ids)) or np.any(ids != np.round(ids)):
            raise ValueError(f"{layer.name}: token ids must be whole numbers, got dtype "
                             f"{ids.dtype} with fractional or non-finite values")
        ids = ids.astype(np.int64)
    elif ids.dtype.kind not in "iu":
        raise TypeError(f"{layer.name}: token ids must be integers, got dtype {ids.dtype}")
    return ids


class Embedding(Layer):
    """A table of `input_dim` learned vectors of `output_dim` numbers; token
    id v is replaced by row v. Input: integer ids of any shape, each in
    [0, input_dim) (anything else is a ValueError naming the id and where it
    is); output: the ids' shape + (output_dim,).

        forward    y[i, :] = W[ids[i], :]
        backward   dW[v, :] = Σ_{i : ids[i] = v} dy[i, :]
    """

    time_steps = "each"  # (Layer.time_steps)

    def __init__(self, input_dim, output_dim, embeddings_initializer="uniform", **kwargs):
        super().__init__(**kwargs)
        owner = type(self).__name__
        self.input_dim = utils.check_positive_int(owner, "input_dim", input_dim)
        self.output_dim = utils.check_positive_int(owner, "output_dim", output_dim)
        initializers.get(embeddings_initializer)  # the name checked now
        self.embeddings_initializer = embeddings_initializer
        self.embeddings = None

    def build(self, input_shape=None):
        self.embeddings = self.add_weight((self.input_dim, self.output_dim),
                                          self.embeddings_initializer, name="embeddings")
        self.built = True

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.output_dim,)

    def forward(self, x, training=False):
        if not self.built:
            self.build()
        ids = _token_ids(self, x)
        y = self.buffer("y", ids.shape + (self.output_dim,))
        try:
            ops.embedding_forward(ids, self.embeddings, out=y)
        except ValueError as e:  # an id out of range: say which layer
            detail = str(e).split(": ", 1)[-1]  # "ids value 70 at flat index 3 is outside [0, 65)"
            raise ValueError(f"{self.name}: token {detail} (input_dim={self.input_dim})") from None
        if training:
            self.save(ids)
        return y

    def backward(self, dy):
        ids = self.saved[0]
        dy = as_float32(dy, "dy")
        if dy.shape != ids.shape + (self.output_dim,):
            raise ValueError(f"{self.name}: dy must have shape {ids.shape + (self.output_dim,)}, "
                             f"got {dy.shape}")
        if self.trainable:
            ops.embedding_backward(ids, dy, self.input_dim, out=self.grads[0])
        return None  # ids take no gradient

    def get_config(self):
        return {"name": self.name, "input_dim": self.input_dim, "output_dim": self.output_dim,
                "embeddings_initializer": _init_name(self.embeddings_initializer)}


def _init_name(init):
    return init if isinstance(init, str) else "uniform"


class ReversibleEmbedding(Embedding):
    """An Embedding that, called with ``reverse=True``, maps vectors back to
    scores over the vocabulary (keras_hub's ReversibleEmbedding): the output
    layer of a language model whose input and output share one table
    ("weight tying", as GPT-2 and nanoGPT do).

        forward            y = W[ids]                     (…,) → (…, output_dim)
        reverse=True       logits = x · Wᵀ                (…, output_dim) → (…, input_dim)
        reverse backward   dx = dlogits · W,   dW = dlogitsᵀ · x

    With ``tie_weights=False`` the reverse direction has a table of its own,
    ``reverse_embeddings`` (output_dim, input_dim). Used at two places of a
    graph (the input and the output), the model adds the two uses' gradients.
    """

    def __init__(self, input_dim, output_dim, tie_weights=True, embeddings_initializer="uniform",
                 **kwargs):
        super().__init__(input_dim, output_dim, embeddings_initializer, **kwargs)
        self.tie_weights = bool(tie_weights)
        self.reverse_embeddings = None

    def build(self, input_shape=None):
        super().build(input_shape)
        if not self.tie_weights:
            self.reverse_embeddings = self.add_weight(
                (self.output_dim, self.input_dim), self.embeddings_initializer,
                name="reverse_embeddings")

    def compute_output_shape(self, input_shape, reverse=False):
        if not reverse:
            return super().compute_output_shape(input_shape)
        if input_shape[-1] not in (None, self.output_dim):
            raise ValueError(f"{self.name}: reverse=True needs inputs (..., {self.output_dim}), "
                             f"got shape {tuple(input_shape)}")
        return tuple(input_shape[:-1]) + (self.input_dim,)

    def compute_output_spec(self, x, reverse=False, training=None):
        from .. import graph
        return graph.SymbolicTensor(self.compute_output_shape(x.shape, reverse), "float32", None)

    def build_for_call(self, x, reverse=False, training=None):
        self.build()

    def forward(self, x, reverse=False, training=False):
        if not reverse:
            y = super().forward(x, training)
            if training:
                self.save(self.saved[0], False)
            return y
        if not self.built:
            self.build()
        x = as_float32(x)
        if x.ndim < 1 or x.shape[-1] != self.output_dim:
            raise ValueError(f"{self.name}: reverse=True needs inputs (..., {self.output_dim}), "
                             f"got shape {x.shape}")
        x2 = x.reshape(-1, self.output_dim)
        logits = self.buffer("logits", x.shape[:-1] + (self.input_dim,))
        if self.tie_weights:
            ops.matmul(x2, self.embeddings, transpose_b=True, out=logits.reshape(-1, self.input_dim))
        else:
            ops.matmul(x2, self.reverse_embeddings, out=logits.reshape(-1, self.input_dim))
        if training:
            self.save(x2, True)
        return logits

    def backward(self, dy):
        saved, reverse = self.saved
        train = self.trainable
        if not reverse:  # the lookup: dW by scatter-add; the reverse table takes nothing here
            result = super().backward(dy)
            if train and not self.tie_weights:
                self.grads[1].fill(0.0)
            return result
        x2 = saved
        dy = as_float32(dy, "dy")
        if dy.size != x2.shape[0] * self.input_dim or dy.shape[-1] != self.input_dim:
            raise ValueError(f"{self.name}: dy must have shape (..., {self.input_dim}) with "
                             f"{x2.shape[0]} rows, got {dy.shape}")
        dy2 = dy.reshape(-1, self.input_dim)
        if self.tie_weights:
            if train:  # dW (vocab, dim) = dyᵀ · x
                ops.matmul(dy2, x2, transpose_a=True, out=self.grads[0])
            table, transpose = self.embeddings, False
        else:
            if train:  # dW_rev (dim, vocab) = xᵀ · dy; the lookup table takes nothing here
                ops.matmul(x2, dy2, transpose_a=True, out=self.grads[1])
                self.grads[0].fill(0.0)
            table, transpose = self.reverse_embeddings, True
        if not self.input_grad_needed:
            return None
        dx = self.buffer("dx", dy.shape[:-1] + (self.output_dim,))
        ops.matmul(dy2, table, transpose_b=transpose, out=dx.reshape(-1, self.output_dim))
        return dx

    def get_config(self):
        return {**super().get_config(), "tie_weights": self.tie_weights}


class PositionEmbedding(Layer):
    """A learned vector per position, added to the input (GPT-2's and BERT's
    learned positions):

        y[b, t, :] = x[b, t, :] + P[start_index + t, :]     P: (sequence_length, features)
        backward   dx = dy,   dP[start_index + t, :] = Σ_b dy[b, t, :]  (other rows 0)

    Inputs are (batch, time, features) with start_index + time ≤
    sequence_length: a longer sequence has no position vectors and is a
    ValueError. ``start_index`` is the position of the first time step (a
    key/value-cached generation step passes the position of its new token).
    """

    time_steps = "all"  # step t reads position t (Layer.time_steps)

    def __init__(self, sequence_length, initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.sequence_length = utils.check_positive_int("PositionEmbedding", "sequence_length",
                                                        sequence_length)
        initializers.get(initializer)
        self.initializer = initializer
        self.position_embeddings = None

    def build(self, input_shape):
        if len(input_shape) < 3 or input_shape[-1] is None:
            raise ValueError(f"{self.name}: PositionEmbedding needs inputs (batch, time, features) "
                             f"with known features, got shape {tuple(input_shape)}")
        self.position_embeddings = self.add_weight((self.sequence_length, int(input_shape[-1])),
                                                   self.initializer, name="embeddings")
        self.built = True

    def compute_output_shape(self, input_shape):
        self._check_shape(tuple(input_shape), 0)
        return tuple(input_shape)

    def build_for_call(self, x, start_index=0, training=None):
        self.build(x.shape)

    def compute_output_spec(self, x, start_index=0, training=None):
        from .. import graph
        return graph.SymbolicTensor(self.compute_output_shape(x.shape), "float32", None)

    def _check_shape(self, shape, start):
        if len(shape) != 3:
            raise ValueError(f"{self.name}: PositionEmbedding needs inputs (batch, time, features), "
                             f"got shape {shape}")
        if self.built and shape[-1] not in (None, self.position_embeddings.shape[1]):
            raise ValueError(f"{self.name}: expected {self.position_embeddings.shape[1]} features, "
                             f"got input of shape {shape}")
        if shape[1] is not None and start + shape[1] > self.sequence_length:
            raise ValueError(f"{self.name}: a sequence of {shape[1]} steps from position {start} "
                             f"does not fit in sequence_length={self.sequence_length}")

    def forward(self, x, start_index=0, training=False):
        x = as_float32(x)
        if isinstance(start_index, bool) or not isinstance(start_index, (int, np.integer)) \
                or start_index < 0:
            raise ValueError(f"{self.name}: start_index must be an integer >= 0, got "
                             f"{start_index!r}")
        start = int(start_index)
        if not self.built:
            self.build(x.shape)
        self._check_shape(x.shape, start)
        T = x.shape[1]
        y = np.add(x, self.position_embeddings[start:start + T], out=self.buffer("y", x.shape))
        if training:
            self.save(x.shape, start)
        return y

    def backward(self, dy):
        shape, start = self.saved
        dy = self._check_dy(dy, shape)
        if self.trainable:
            B, T, C = shape
            grad = self.grads[0]
            grad.fill(0.0)
            # Σ over the batch: a bias gradient of the (B, T·C) rows, in a fixed order
            ops.bias_grad(dy.reshape(B, T * C), out=grad[start:start + T].reshape(T * C))
        return dy if self.input_grad_needed else None

    def get_config(self):
        initializer = self.initializer if isinstance(self.initializer, str) else "glorot_uniform"
        return {"name": self.name, "sequence_length": self.sequence_length,
                "initializer": initializer}
