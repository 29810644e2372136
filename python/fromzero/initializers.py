"""Weight initializers: how a layer's weights start, before gradient descent moves them.

For a kernel of shape (fan_in, fan_out), the variance is chosen so activations
neither vanish nor explode through many layers:
    glorot_uniform  U(-l, l),  l = √(6 / (fan_in + fan_out))   (Keras's default)
    he_uniform      U(-l, l),  l = √(6 / fan_in)               (for ReLU)
    he_normal       N(0, 2 / fan_in)
    lecun_uniform   U(-l, l),  l = √(3 / fan_in)
    lecun_normal    N(0, 1 / fan_in)
    random_uniform  U(-0.05, 0.05)  ("uniform": Keras's default for Embedding)
    random_normal   N(0, 0.05²)     ("normal")
    zeros, ones
All draw from the generator that fz.utils.set_random_seed seeds.
(Keras's *_normal initializers truncate at two standard deviations; these do too.)
"""

import numpy as np

from . import utils


def _fans(shape):
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1  # conv kernels (kh, kw, in, out)
    return shape[-2] * receptive, shape[-1] * receptive


def _uniform(limit, shape):
    return utils.generator().uniform(-limit, limit, size=shape).astype(np.float32)


def _truncated_normal(std, shape):
    # Redraw values beyond two standard deviations, as Keras's TruncatedNormal;
    # its stddev is corrected by 1/.87962566 so the variance stays std².
    std = std / 0.87962566103423978
    out = utils.generator().standard_normal(size=shape)
    bad = np.abs(out) > 2
    while bad.any():
        out[bad] = utils.generator().standard_normal(size=int(bad.sum()))
        bad = np.abs(out) > 2
    return (out * std).astype(np.float32)


def glorot_uniform(shape):
    fan_in, fan_out = _fans(shape)
    return _uniform(np.sqrt(6.0 / (fan_in + fan_out)), shape)


def glorot_normal(shape):
    fan_in, fan_out = _fans(shape)
    return _truncated_normal(np.sqrt(2.0 / (fan_in + fan_out)), shape)


def he_uniform(shape):
    return _uniform(np.sqrt(6.0 / _fans(shape)[0]), shape)


def he_normal(shape):
    return _truncated_normal(np.sqrt(2.0 / _fans(shape)[0]), shape)


def lecun_uniform(shape):
    return _uniform(np.sqrt(3.0 / _fans(shape)[0]), shape)


def lecun_normal(shape):
    return _truncated_normal(np.sqrt(1.0 / _fans(shape)[0]), shape)


def random_uniform(shape):
    return _uniform(0.05, shape)


def random_normal(shape):
    return (utils.generator().standard_normal(size=shape) * 0.05).astype(np.float32)


def zeros(shape):
    return np.zeros(shape, dtype=np.float32)


def ones(shape):
    return np.ones(shape, dtype=np.float32)


_BY_NAME = {f.__name__: f for f in (glorot_uniform, glorot_normal, he_uniform, he_normal,
                                     lecun_uniform, lecun_normal, random_uniform, random_normal,
                                     zeros, ones)}
_BY_NAME.update(uniform=random_uniform, normal=random_normal)  # Keras's short names


def get(name):
    """An initializer by name, or a callable shape -> array used as is."""
    if callable(name):
        return name
    return utils.lookup("initializer", name, _BY_NAME)
