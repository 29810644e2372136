"""Tokenizers: text to integer ids and back.

A language model sees text as a sequence of integers from a fixed vocabulary.
Three ways to cut text into vocabulary items, from the simplest:

- ByteTokenizer: the UTF-8 bytes. Vocabulary 256, any language (a Chinese
  character is three bytes, so three tokens), nothing to learn.
- CharTokenizer: one token per character, the vocabulary being the sorted
  set of the characters of a training text — nanoGPT's shakespeare_char (65
  symbols for tiny-shakespeare).
- BPETokenizer: byte-level byte-pair encoding (GPT-2's scheme), trained by
  Hugging Face `tokenizers`: start from the 256 bytes and repeatedly merge the
  most frequent adjacent pair into a new token until the vocabulary has the
  size asked for. Frequent words become single tokens, so sequences are
  shorter than with bytes or characters.

All share one interface: encode(str) -> int32 array, decode(ids) -> str,
vocab_size, and get_config() / from_config() (a JSON-serializable dict, to be
stored in a model's checkpoint; serialize/deserialize add the class name).
"""

import numpy as np

from ..utils import check_positive_int

BPE_INSTALL_HINT = ("BPETokenizer needs Hugging Face's `tokenizers` package: "
                    "pip install 'fromzero[text]' (or pip install tokenizers)")


class Tokenizer:
    """The interface of every tokenizer; subclasses implement _encode/_decode.

    encode and decode check their arguments here, once for all tokenizers.
    """

    vocab_size = 0

    def encode(self, text):
        """The token ids of `text` (a str) as a 1-D int32 array."""
        if not isinstance(text, str):
            raise TypeError(f"{type(self).__name__}.encode: expected a str, "
                            f"got {type(text).__name__}")
        return self._encode(text)

    def decode(self, ids):
        """The text of a 1-D sequence of token ids (any integer array-like)."""
        return self._decode(self._check_ids(ids))

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"{type(self).__name__}(vocab_size={self.vocab_size})"

    def _check_ids(self, ids):
        owner = f"{type(self).__name__}.decode"
        if isinstance(ids, str):
            raise TypeError(f"{owner}: expected token ids, got a str")
        array = np.asarray(ids)
        if array.size == 0:
            return array.reshape(0).astype(np.int64)
        if array.dtype.kind not in "iu":  # bool and float ids are mistakes, not ids
            raise TypeError(f"{owner}: token ids must be integers, got dtype {array.dtype}")
        if array.ndim != 1:
            raise ValueError(f"{owner}: token ids must be 1-D, got shape {array.shape}")
        bad = np.flatnonzero((array < 0) | (array >= self.vocab_size))
        if bad.size:
            raise ValueError(f"{owner}: token id {array[bad[0]]} at position {bad[0]} is out of "
                             f"range for a vocabulary of {self.vocab_size} (0..{self.vocab_size - 1})")
        return array.astype(np.int64, copy=False)


class ByteTokenizer(Tokenizer):
    """Token ids are the bytes of the UTF-8 encoding: vocabulary 256, any language.

    decode turns byte sequences that are not valid UTF-8 (a sampled sequence
    can stop in the middle of a multi-byte character) into U+FFFD '�', so it
    never fails on ids in range.
    """

    vocab_size = 256

    def _encode(self, text):
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError as error:
            raise ValueError(f"ByteTokenizer.encode: the text is not valid Unicode "
                             f"({error.reason} at position {error.start})") from None
        return np.frombuffer(data, dtype=np.uint8).astype(np.int32)

    def _decode(self, ids):
        return ids.astype(np.uint8).tobytes().decode("utf-8", errors="replace")


class CharTokenizer(Tokenizer):
    """One token per character of a fixed vocabulary.

    CharTokenizer(vocabulary): token i is the character vocabulary[i]
    (a str of distinct characters). CharTokenizer.fit(text) takes the sorted
    set of the characters of `text`, as nanoGPT's shakespeare_char does.
    Encoding a character outside the vocabulary raises ValueError.
    """

    def __init__(self, vocabulary):
        if not isinstance(vocabulary, str) or not vocabulary:
            raise ValueError(f"CharTokenizer: vocabulary must be a non-empty str of distinct "
                             f"characters, got {vocabulary!r:.80}")
        codes = _code_points(vocabulary)
        order = np.argsort(codes, kind="stable")
        sorted_codes = codes[order]
        repeated = np.flatnonzero(sorted_codes[1:] == sorted_codes[:-1])
        if repeated.size:
            raise ValueError(f"CharTokenizer: vocabulary has the character "
                             f"{chr(sorted_codes[repeated[0]])!r} more than once")
        self.vocabulary = vocabulary
        self.vocab_size = len(vocabulary)
        self._codes = codes                # id -> code point
        self._sorted_codes = sorted_codes  # for a binary search of code points...
        self._sorted_ids = order.astype(np.int32)  # ...and the id of each

    @classmethod
    def fit(cls, text):
        """The tokenizer whose vocabulary is the sorted set of `text`'s characters."""
        if not isinstance(text, str):
            raise TypeError(f"CharTokenizer.fit: expected a str, got {type(text).__name__}")
        if not text:
            raise ValueError("CharTokenizer.fit: the text is empty, so there is no vocabulary")
        return cls(_from_code_points(np.unique(_code_points(text))))

    def get_config(self):
        return {"vocabulary": self.vocabulary}

    def _encode(self, text):
        # Vectorized lookup: each character's code point found by binary search
        # in the sorted vocabulary.
        codes = _code_points(text)
        where = np.searchsorted(self._sorted_codes, codes)
        where = np.minimum(where, self.vocab_size - 1)
        unknown = np.flatnonzero(self._sorted_codes[where] != codes)
        if unknown.size:
            position = unknown[0]
            raise ValueError(f"CharTokenizer.encode: character {text[position]!r} "
                             f"(U+{ord(text[position]):04X}) at position {position} is not in the "
                             f"vocabulary of {self.vocab_size} characters this tokenizer was fit on")
        return self._sorted_ids[where]

    def _decode(self, ids):
        return _from_code_points(self._codes[ids])


class BPETokenizer(Tokenizer):
    """Byte-level BPE (GPT-2's scheme), trained and run by Hugging Face `tokenizers`.

    BPETokenizer.train(text, vocab_size) learns the merges; BPETokenizer(json)
    rebuilds a trained tokenizer from its JSON (get_config()["tokenizer_json"]).
    Any text round-trips: decode(encode(text)) == text.
    `tokenizers` is an optional extra: pip install 'fromzero[text]'.
    """

    def __init__(self, tokenizer_json):
        hf = _import_tokenizers()
        if not isinstance(tokenizer_json, str):
            raise TypeError(f"BPETokenizer: tokenizer_json must be a str (a Hugging Face "
                            f"tokenizer's JSON), got {type(tokenizer_json).__name__}")
        try:
            self._tokenizer = hf.Tokenizer.from_str(tokenizer_json)
        except Exception as error:  # the Rust library raises a plain Exception
            raise ValueError(f"BPETokenizer: not a valid tokenizer JSON ({error})") from None
        self.vocab_size = self._tokenizer.get_vocab_size()

    @classmethod
    def train(cls, text, vocab_size):
        """Learn a byte-level BPE vocabulary of (at most) vocab_size tokens from `text`.

        vocab_size counts the 256 byte tokens, so it must be at least 256; the
        vocabulary is smaller when the text offers fewer merges.
        """
        hf = _import_tokenizers()
        if not isinstance(text, str):
            raise TypeError(f"BPETokenizer.train: expected a str, got {type(text).__name__}")
        vocab_size = check_positive_int("BPETokenizer.train", "vocab_size", vocab_size)
        if vocab_size < 256:
            raise ValueError(f"BPETokenizer.train: vocab_size must be at least 256 (the byte "
                             f"tokens), got {vocab_size}")
        tokenizer = hf.Tokenizer(hf.models.BPE())
        tokenizer.pre_tokenizer = hf.pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = hf.decoders.ByteLevel()
        trainer = hf.trainers.BpeTrainer(
            vocab_size=vocab_size, min_frequency=2, show_progress=False, special_tokens=[],
            initial_alphabet=hf.pre_tokenizers.ByteLevel.alphabet())
        tokenizer.train_from_iterator([text], trainer=trainer)
        return cls(tokenizer.to_str())

    def get_config(self):
        return {"tokenizer_json": self._tokenizer.to_str()}

    def _encode(self, text):
        return np.array(self._tokenizer.encode(text).ids, dtype=np.int32)

    def _decode(self, ids):
        return self._tokenizer.decode(ids.tolist(), skip_special_tokens=False)


TOKENIZERS = {cls.__name__: cls for cls in (ByteTokenizer, CharTokenizer, BPETokenizer)}


def serialize(tokenizer):
    """{"class_name": ..., "config": ...}: a JSON-serializable description."""
    if not isinstance(tokenizer, Tokenizer):
        raise TypeError(f"serialize: expected a tokenizer, got {type(tokenizer).__name__}")
    return {"class_name": type(tokenizer).__name__, "config": tokenizer.get_config()}


def deserialize(config):
    """The tokenizer serialize() described."""
    if not isinstance(config, dict) or not isinstance(config.get("config"), dict):
        raise ValueError(f"deserialize: expected {{'class_name': ..., 'config': {{...}}}}, "
                         f"got {config!r:.80}")
    cls = TOKENIZERS.get(config.get("class_name"))
    if cls is None:
        raise ValueError(f"deserialize: unknown tokenizer {config.get('class_name')!r}; known: "
                         f"{', '.join(TOKENIZERS)}")
    try:
        return cls.from_config(config["config"])
    except TypeError as error:  # unexpected or missing keys
        raise ValueError(f"deserialize: bad config for {cls.__name__}: {error}") from None


def _code_points(text):
    """The Unicode code points of a str as a uint32 array (lone surrogates included)."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")


def _from_code_points(codes):
    return np.asarray(codes, dtype="<u4").tobytes().decode("utf-32-le", "surrogatepass")


def _import_tokenizers():
    try:
        import tokenizers
    except ImportError as error:
        raise ImportError(BPE_INSTALL_HINT) from error
    return tokenizers
