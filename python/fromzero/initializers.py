"""Weight initializers: how a layer's weights start, before gradient descent moves them.

For a kernel of shape (fan_in, fan_out), the variance is chosen so activations
neither vanish nor explode through many layers:
    glorot_uniform  U(-l, l),  l = √(6 / (fan_in + fan_out))   (Keras's default)
    glorot_normal   N(0, 2 / (fan_in + fan_out))
    he_uniform      U(-l, l),  l = √(6 / fan_in)               (for ReLU)
    he_normal       N(0, 2 / fan_in)
    lecun_uniform   U(-l, l),  l = √(3 / fan_in)
    lecun_normal    N(0, 1 / fan_in)
    zeros, ones, Constant(value), RandomNormal(mean, stddev), RandomUniform(minval, maxval)
    random_uniform ("uniform"), random_normal ("normal"): Keras's defaults of the last two
All draw from the generator that fz.utils.set_random_seed seeds.
(Keras's *_normal initializers truncate at two standard deviations; these do too.)

An initializer is an object called with a shape (``GlorotUniform()(shape)``)
that says how to make it again (get_config), so a saved layer gets back the
one it was given; names ("he_normal") stand for the default objects. A plain
function shape -> array works too, but cannot be saved: write it as a
subclass of Initializer.
"""

import numpy as np

from . import utils

_CLASSES = {}  # every Initializer subclass by lower-case class name (get)


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


class Initializer:
    """The base: ``__call__(shape)`` returns the initial array; get_config the
    constructor's arguments (none here)."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        utils.register_class(cls, _CLASSES)

    def __call__(self, shape):
        raise NotImplementedError

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __eq__(self, other):
        return type(other) is type(self) and other.get_config() == self.get_config()

    def __hash__(self):
        return hash(type(self))


class GlorotUniform(Initializer):
    def __call__(self, shape):
        fan_in, fan_out = _fans(shape)
        return _uniform(np.sqrt(6.0 / (fan_in + fan_out)), shape)


class GlorotNormal(Initializer):
    def __call__(self, shape):
        fan_in, fan_out = _fans(shape)
        return _truncated_normal(np.sqrt(2.0 / (fan_in + fan_out)), shape)


class HeUniform(Initializer):
    def __call__(self, shape):
        return _uniform(np.sqrt(6.0 / _fans(shape)[0]), shape)


class HeNormal(Initializer):
    def __call__(self, shape):
        return _truncated_normal(np.sqrt(2.0 / _fans(shape)[0]), shape)


class LecunUniform(Initializer):
    def __call__(self, shape):
        return _uniform(np.sqrt(3.0 / _fans(shape)[0]), shape)


class LecunNormal(Initializer):
    def __call__(self, shape):
        return _truncated_normal(np.sqrt(1.0 / _fans(shape)[0]), shape)


class Constant(Initializer):
    """Every value `value`."""

    def __init__(self, value=0.0):
        self.value = utils.check_number("Constant", "value", value)

    def __call__(self, shape):
        return np.full(shape, self.value, dtype=np.float32)

    def get_config(self):
        return {"value": self.value}


class Zeros(Constant):
    def __init__(self):
        super().__init__(0.0)

    def get_config(self):
        return {}


class Ones(Constant):
    def __init__(self):
        super().__init__(1.0)

    def get_config(self):
        return {}


class RandomNormal(Initializer):
    """N(mean, stddev²), not truncated (Keras's defaults: mean 0, stddev 0.05)."""

    def __init__(self, mean=0.0, stddev=0.05):
        self.mean = utils.check_number("RandomNormal", "mean", mean)
        self.stddev = utils.check_number("RandomNormal", "stddev", stddev, 0)

    def __call__(self, shape):
        return (self.mean + self.stddev * utils.generator().standard_normal(size=shape)
                ).astype(np.float32)

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev}


class RandomUniform(Initializer):
    """U(minval, maxval) (Keras's defaults: −0.05, 0.05)."""

    def __init__(self, minval=-0.05, maxval=0.05):
        self.minval = utils.check_number("RandomUniform", "minval", minval)
        self.maxval = utils.check_number("RandomUniform", "maxval", maxval, self.minval)

    def __call__(self, shape):
        return utils.generator().uniform(self.minval, self.maxval, size=shape).astype(np.float32)

    def get_config(self):
        return {"minval": self.minval, "maxval": self.maxval}


# Keras's names for the default objects; fz.initializers.he_normal(shape) works as before.
glorot_uniform, glorot_normal = GlorotUniform(), GlorotNormal()
he_uniform, he_normal = HeUniform(), HeNormal()
lecun_uniform, lecun_normal = LecunUniform(), LecunNormal()
zeros, ones = Zeros(), Ones()
_BY_NAME = {"glorot_uniform": glorot_uniform, "glorot_normal": glorot_normal,
            "he_uniform": he_uniform, "he_normal": he_normal, "lecun_uniform": lecun_uniform,
            "lecun_normal": lecun_normal, "zeros": zeros, "ones": ones,
            "random_normal": RandomNormal(), "random_uniform": RandomUniform()}
_BY_NAME.update(uniform=_BY_NAME["random_uniform"], normal=_BY_NAME["random_normal"])  # Keras's
# short names ("uniform": the default of Keras's Embedding)


def get(spec):
    """An initializer from a name, a saved config (serialize), or a callable
    shape -> array (an Initializer, or a plain function) used as is."""
    if isinstance(spec, dict):
        return utils.deserialize("initializer", spec, _CLASSES)
    if callable(spec):
        return spec
    return utils.lookup("initializer", spec, _BY_NAME)


def serialize(spec, owner="a layer"):
    """What a saved layer stores for its initializer: the name it was given,
    or {"class", "config"} for an Initializer object. A plain function cannot
    be stored (a file holds no code): that is an error, not a silent default."""
    if isinstance(spec, str):
        return spec
    if isinstance(spec, Initializer):
        return utils.serialize(spec)
    raise ValueError(f"cannot save {owner}: its initializer {spec!r} is a plain function, and a "
                     f"file holds no code; write it as a subclass of fromzero.initializers."
                     f"Initializer (with get_config if it takes arguments)")
