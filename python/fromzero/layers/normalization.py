"""Normalization layers: BatchNormalization (per channel, over the batch),
LayerNormalization (per sample, over its features) and UnitNormalization
(each sample scaled to length 1)."""

import numpy as np

from .. import ops
from .base import Layer, as_float32


class BatchNormalization(Layer):
    """Normalizes each channel (the last axis) to zero mean and unit variance,
    then scales and shifts it by learned γ and β:

        y = γ · (x − μ) / √(σ² + ε) + β

    Training uses the batch's μ and σ² (biased) over every axis but the last,
    and keeps exponential moving averages of them for inference:
        moving_mean ← momentum · moving_mean + (1 − momentum) · μ   (and likewise moving_variance)
    The moving averages are weights (saved, loaded, counted) but not trained:
    they are in non_trainable_weights, not in params. As in Keras, a layer with
    trainable = False runs in inference mode even while the model trains.
    Backward (training mode), with x̂ = (x − μ)/√(σ² + ε) and m values per channel:
        dβ = Σ dy,   dγ = Σ dy·x̂,   dx = γ/√(σ² + ε) · (dy − dβ/m − x̂·dγ/m)
    """

    def __init__(self, axis=-1, momentum=0.99, epsilon=1e-3, **kwargs):
        super().__init__(**kwargs)
        if axis != -1:
            raise ValueError(f"BatchNormalization: only axis=-1 (channels last) is supported, "
                             f"got {axis!r}")
        # the kernel's ranges (NumPy scalars such as np.float32(0.99) too)
        self.momentum = ops.check_limit("BatchNormalization", "momentum", momentum,
                                        "batch_norm_momentum")
        self.epsilon = ops.check_limit("BatchNormalization", "epsilon", epsilon,
                                       "batch_norm_epsilon")

    def build(self, input_shape):
        if len(input_shape) < 1 or input_shape[-1] is None:
            raise ValueError(f"{self.name}: input needs a channel axis of known size, got shape "
                             f"{tuple(input_shape)}")
        channels = (int(input_shape[-1]),)
        self.gamma = self.add_weight(channels, "ones", name="gamma")
        self.beta = self.add_weight(channels, "zeros", name="beta")
        self.moving_mean = self.add_weight(channels, "zeros", trainable=False, name="moving_mean")
        self.moving_variance = self.add_weight(channels, "ones", trainable=False,
                                               name="moving_variance")
        self.built = True

    def compute_output_shape(self, input_shape):
        if self.built and input_shape[-1] not in (None, len(self.gamma)):
            raise ValueError(f"{self.name}: expected {len(self.gamma)} channels on the last axis, "
                             f"got input of shape {tuple(input_shape)}")
        return tuple(input_shape)

    def forward(self, x, training=False):
        x = as_float32(x)
        if x.ndim < 2:
            raise ValueError(f"{self.name}: input must have a batch axis and channels, "
                             f"got shape {x.shape}")
        if not self.built:
            self.build(x.shape)
        channels = len(self.gamma)
        if x.shape[-1] != channels:
            raise ValueError(f"{self.name}: expected {channels} channels on the last axis, "
                             f"got input of shape {x.shape}")
        batch_stats = training and self.trainable
        y, mean, inv_std = ops.batch_norm_forward(
            x, self.gamma, self.beta, self.moving_mean, self.moving_variance, batch_stats,
            self.momentum, self.epsilon, out=self.buffer("y", x.shape),
            mean=self.buffer("mean", (channels,)), inv_std=self.buffer("inv_std", (channels,)))
        if training:
            self.save(x, mean, inv_std, batch_stats)
        return y

    def backward(self, dy):
        x, mean, inv_std, batch_stats = self.saved
        dy = self._check_dy(dy, x.shape)
        dx, _, _ = ops.batch_norm_backward(x, self.gamma, mean, inv_std, dy, batch_stats,
                                           out=self.buffer("dx", dy.shape),
                                           dgamma=self.grads[0], dbeta=self.grads[1])
        return dx if self.input_grad_needed else None

    def get_config(self):
        return {"name": self.name, "momentum": self.momentum, "epsilon": self.epsilon}


class LayerNormalization(Layer):
    """Normalizes each sample's features (the last axis) to zero mean and unit
    variance, then scales and shifts them by learned γ and β:

        μ = mean(x),  σ² = mean((x − μ)²),  r = 1/√(σ² + ε)
        y = γ ⊙ (x − μ)·r + β
    Backward, with x̂ = (x − μ)·r and g = dy ⊙ γ (C features):
        dx = r·(g − mean(g) − x̂·mean(g ⊙ x̂)),   dγ = Σ_rows dy ⊙ x̂,   dβ = Σ_rows dy

    Unlike BatchNormalization nothing is shared between samples, so training
    and inference compute the same thing and there are no moving statistics:
    the normalization a transformer puts before (GPT) or after (BERT) each
    block. center=False drops β, scale=False drops γ (Keras's names); one fused
    kernel each way (csrc/layernorm.h) saves μ and r per row for the backward.
    """

    time_steps = "each"  # (Layer.time_steps)

    def __init__(self, axis=-1, epsilon=1e-3, center=True, scale=True, beta_initializer="zeros",
                 gamma_initializer="ones", rms_scaling=False, **kwargs):
        super().__init__(**kwargs)
        if axis not in (-1, [-1], (-1,)):
            raise ValueError(f"LayerNormalization: only axis=-1 (the features) is supported, "
                             f"got {axis!r}")
        if rms_scaling:
            raise ValueError("LayerNormalization: rms_scaling=True is not supported")
        self.epsilon = ops.check_limit("LayerNormalization", "epsilon", epsilon,
                                       "layer_norm_epsilon")
        self.center, self.scale = bool(center), bool(scale)
        self.beta_initializer, self.gamma_initializer = beta_initializer, gamma_initializer
        self.gamma = self.beta = None

    def build(self, input_shape):
        if len(input_shape) < 1 or input_shape[-1] is None:
            raise ValueError(f"{self.name}: input needs a feature axis of known size, got shape "
                             f"{tuple(input_shape)}")
        features = (int(input_shape[-1]),)
        if self.scale:
            self.gamma = self.add_weight(features, self.gamma_initializer, name="gamma")
        if self.center:
            self.beta = self.add_weight(features, self.beta_initializer, name="beta")
        self._features = features[0]
        self.built = True

    def compute_output_shape(self, input_shape):
        if self.built and input_shape[-1] not in (None, self._features):
            raise ValueError(f"{self.name}: expected {self._features} features on the last axis, "
                             f"got input of shape {tuple(input_shape)}")
        return tuple(input_shape)

    def forward(self, x, training=False):
        x = as_float32(x)
        if x.ndim < 1:
            raise ValueError(f"{self.name}: input must have a feature axis, got a scalar")
        if not self.built:
            self.build(x.shape)
        if x.shape[-1] != self._features:
            raise ValueError(f"{self.name}: expected {self._features} features on the last axis, "
                             f"got input of shape {x.shape}")
        rows = x.shape[:-1]
        y, mean, rstd = ops.layer_norm_forward(
            x, self.gamma, self.beta, self.epsilon, out=self.buffer("y", x.shape),
            mean=self.buffer("mean", rows), rstd=self.buffer("rstd", rows))
        if training:
            self.save(x, mean, rstd)
        return y

    def backward(self, dy):
        x, mean, rstd = self.saved
        dy = self._check_dy(dy, x.shape)
        train = self.trainable
        grads = iter(self.grads)
        dgamma = next(grads) if self.scale and train else None
        dbeta = next(grads) if self.center and train else None
        dx, _, _ = ops.layer_norm_backward(
            x, self.gamma, mean, rstd, dy, need_dx=self.input_grad_needed,
            need_dgamma=dgamma is not None, need_dbeta=dbeta is not None,
            out=self.buffer("dx", x.shape) if self.input_grad_needed else None,
            dgamma=dgamma, dbeta=dbeta)
        return dx

    def get_config(self):
        name = lambda init: init if isinstance(init, str) else None  # noqa: E731
        return {"name": self.name, "epsilon": self.epsilon, "center": self.center,
                "scale": self.scale, "beta_initializer": name(self.beta_initializer) or "zeros",
                "gamma_initializer": name(self.gamma_initializer) or "ones"}


class UnitNormalization(Layer):
    """Scales each sample to unit Euclidean length along the last axis (Keras's
    layer; the last step of sentence-embedding models, so that a dot product
    is a cosine similarity):

        y = x / n,   n = √max(Σ x², ε),  ε = 1e-12
        backward  dx = (dy − y·Σ(y ⊙ dy)) / n   (dx = dy / n where Σ x² ≤ ε)
    """

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        if axis not in (-1,):
            raise ValueError(f"UnitNormalization: only axis=-1 (the last axis) is supported, "
                             f"got {axis!r}")
        self.axis = -1

    def forward(self, x, training=False):
        x = as_float32(x)
        if x.ndim < 2:
            raise ValueError(f"{self.name}: input must have a batch axis and features, got "
                             f"shape {x.shape}")
        rows = x.shape[:-1]
        sq = np.einsum("...i,...i->...", x, x, out=self.buffer("sq", rows))[..., None]
        norm = np.maximum(sq, np.float32(1e-12), out=self.buffer("norm", rows)[..., None])
        np.sqrt(norm, out=norm)
        y = np.divide(x, norm, out=self.buffer("y", x.shape))
        if training:
            self.save(y, norm, np.greater(sq, np.float32(1e-12),
                                          out=self.buffer("above", rows, np.bool_)[..., None]))
        return y

    def backward(self, dy):
        y, norm, above = self.saved
        dy = self._check_dy(dy, y.shape)
        if not self.input_grad_needed:
            return None
        along = np.einsum("...i,...i->...", y, dy)[..., None] * above  # Σ y·dy where n = |x|
        dx = np.multiply(y, along, out=self.buffer("dx", y.shape))
        np.subtract(dy, dx, out=dx)
        return np.divide(dx, norm, out=dx)

    def get_config(self):
        return {"name": self.name, "axis": self.axis}
