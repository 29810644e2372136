"""Datasets, like keras.datasets: mnist and fashion_mnist as NumPy arrays, and
text (tiny-shakespeare, Jane Austen, 唐诗三百首) as str."""

from . import fashion_mnist, mnist, text
