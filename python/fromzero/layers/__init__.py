"""Layers: the building blocks of a network, each a forward/backward pair.

One module per kind, one class per layer:

    base            Layer: the protocol, weights, names, per-call state
    core            Input, InputLayer, Dense, Identity, Dropout
    activation      Activation, ReLU, LeakyReLU, Sigmoid, Tanh, GELU, Softmax
    convolutional   Conv2D
    pooling         MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D,
                    GlobalAveragePooling1D
    normalization   BatchNormalization, LayerNormalization, UnitNormalization
    embedding       Embedding, ReversibleEmbedding, PositionEmbedding
    attention       MultiHeadAttention
    merging         Add, Subtract, Multiply, Average, Concatenate
    reshaping       Flatten, Reshape, Permute

Defining a Layer subclass registers it under its name (and its ``aliases``);
this package exports every class its modules define, so a new layer is one
class in one of them (docs/adding-a-layer.md).
"""

from . import (activation, attention, base, convolutional, core, embedding, merging, normalization,
               pooling, reshaping)
from .base import Layer
from .core import Input


def _exported():
    """Every layer class defined in this package, by its names."""
    return {name: cls for name, cls in base._REGISTRY.items()
            if cls.__module__.startswith(__name__ + ".")}


globals().update(_exported())
__all__ = ["Layer", "Input"] + sorted(_exported())
