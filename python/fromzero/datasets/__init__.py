"""Datasets as NumPy arrays, like keras.datasets: mnist and fashion_mnist."""

from . import fashion_mnist, mnist
