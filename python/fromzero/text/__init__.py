"""Text for language models: tokenizers and batches of token windows.

    text = fz.datasets.text.load_data("tinyshakespeare")
    tokenizer = fz.text.CharTokenizer.fit(text)        # 65 characters
    ids = tokenizer.encode(text)                        # int32 array
    windows = fz.text.RandomWindows(ids, sequence_length=64, batch_size=12, seed=0)
    x, y = windows[0]                                   # (12, 64) each; y is x shifted by one

Tokenizers (tokenizer.py): ByteTokenizer (UTF-8 bytes, any language),
CharTokenizer (the characters of a text), BPETokenizer (byte-level BPE trained
by Hugging Face `tokenizers`, an optional extra). Batches (windows.py):
RandomWindows, nanoGPT's get_batch as a Keras-style dataset;
ConsecutiveWindows, a whole split side by side (its loss without sampling noise). Training
(training.py): nanoGPT's optimizer and loss estimate. Generation
(generation.py): generate(model, tokenizer, prompt, max_new_tokens, ...).
"""

from .tokenizer import (BPETokenizer, ByteTokenizer, CharTokenizer, Tokenizer, deserialize,
                        serialize)
from .generation import generate
from .windows import ConsecutiveWindows, RandomWindows
from . import training

__all__ = ["BPETokenizer", "ByteTokenizer", "CharTokenizer", "ConsecutiveWindows", "RandomWindows",
           "Tokenizer", "deserialize", "generate", "serialize", "training"]
