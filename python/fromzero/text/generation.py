"""Text generation: a language model writes one token at a time.

A model that maps token ids (batch, T) to next-token logits (batch, T, vocab)
continues a prompt by repeating:

    logits = model(window)[last position] / temperature
    keep the top_k largest logits (the others can never be drawn)
    p = softmax(logits);  next token ~ p;  append it to the window

Temperature reshapes the distribution: below 1 it sharpens it (more likely,
more repetitive text), above 1 it flattens it (more surprising text);
temperature=0 always takes the most likely token (greedy decoding). The
model sees at most its `sequence_length` last tokens: a longer prompt is
cropped from the left, as nanoGPT does.

Sampling draws one uniform number u per token from a NumPy generator seeded
by `seed` and takes the first token whose cumulative probability exceeds u,
so a seed fixes the text.

The key/value cache. With the causal mask, the keys and values of a position
never change once computed, so re-running the model on the whole window for
every new token repeats all of them. When the model's attention layers take
a cache (forward's ``cache`` and ``cache_update_index``: where the new
positions start, as Keras-hub's CachedMultiHeadAttention), generate keeps each layer's keys and values and runs the
model on the new token only: O(T) work per token instead of a full forward
over T positions. Positions are absolute (a learned position embedding, told
``start_index``), so once the text outgrows the context and the window
slides, every position moves: each such token then refills the cache from
the whole window — the same arithmetic as without the cache, as nanoGPT's
crop defines it — except where nothing reads it: only the next token's
logits are wanted, so the layers after the last attention's keys and values
run on the last position only (Model._run_forward's last_step).
"""

import inspect
import numbers

import numpy as np

from ..utils import check_number


# The most tokens one call generates: 16.7 M, hours of sampling and tens of MB
# of token ids; beyond, a typo (1e18) would run for ever with memory growing.
MAX_NEW_TOKENS = 1 << 24


def generate(model, tokenizer, prompt, max_new_tokens, temperature=1.0, top_k=None, seed=None,
             use_cache=None):
    """The prompt followed by `max_new_tokens` tokens sampled from `model`, as text.

    model: a model taking int token ids (batch, T) to logits (batch, T, vocab),
    causal (position t sees tokens ≤ t), vocab = tokenizer.vocab_size.
    tokenizer: what encodes the prompt and decodes the result (fz.text).
    temperature: ≥ 0 (0: greedy). top_k: None, or sample among the k most
    likely tokens only. seed: an int ≥ 0 fixes the sample (None: fresh).
    max_new_tokens: an int in [0, MAX_NEW_TOKENS].
    use_cache: None uses the key/value cache when the model's layers take
    one, True insists on it, False recomputes the whole window every token.
    """
    if not all(hasattr(tokenizer, a) for a in ("encode", "decode", "vocab_size")):
        raise TypeError(f"generate: tokenizer must be a tokenizer of fz.text (encode, decode, "
                        f"vocab_size), got {type(tokenizer).__name__}")
    ids = _prompt_ids(tokenizer, prompt)
    max_new_tokens = _check_count("max_new_tokens", max_new_tokens, high=MAX_NEW_TOKENS)
    temperature = check_number("generate", "temperature", temperature, 0)
    if top_k is not None:
        top_k = _check_count("top_k", top_k, low=1)
    if seed is not None:
        seed = _check_count("seed", seed)
    context = context_length(model)
    cache = None if use_cache is False else KeyValueCache.for_model(model, context)
    if use_cache and cache is None:
        raise ValueError("generate: use_cache=True, but no layer of the model takes a key/value "
                         "cache (a forward argument `cache`)")
    rng = np.random.default_rng(seed)
    tokens = np.empty((1, len(ids) + max_new_tokens), dtype=np.int32)  # the text so far
    tokens[0, :len(ids)] = ids
    for n in range(len(ids), tokens.shape[1]):
        window = tokens[:, max(0, n - context):n]  # nanoGPT's crop
        if cache is None:
            logits = next_token_logits(model, window, tokenizer.vocab_size)
        else:
            logits = cache.next_token_logits(window, slid=n > context,
                                             vocab_size=tokenizer.vocab_size)
        tokens[0, n] = sample(logits, temperature, top_k, rng)
    return tokenizer.decode(tokens[0].astype(np.int64))


def _takes(layer, argument):
    return argument in inspect.signature(type(layer).forward).parameters


class KeyValueCache:
    """The keys and values every attention layer of a model computed for the
    positions generated so far: the layer's ``init_cache(1, context)``
    array, filled by the layer itself (forward's ``cache`` and
    ``cache_update_index``)."""

    def __init__(self, model, context, attention_layers, position_layers):
        self.model, self.context = model, context
        self.arrays = {id(layer): layer.init_cache(1, context) for layer in attention_layers}
        self.position_layers = position_layers
        self.length = 0  # positions cached

    @classmethod
    def for_model(cls, model, context):
        """A cache for `model`, or None when none of its layers takes one."""
        leaves = getattr(model, "_leaves", [])
        attention = [layer for layer in leaves if _takes(layer, "cache")]
        if not attention:
            return None
        return cls(model, context, attention, [l for l in leaves if _takes(l, "start_index")])

    def next_token_logits(self, window, slid, vocab_size):
        """The logits after `window` (1, t): the model runs on the positions
        not cached yet — all of them when the window `slid` (start over)."""
        if slid:
            self.length = 0
        start = self.length
        extra = {key: {"cache": array, "cache_update_index": start}
                 for key, array in self.arrays.items()}
        extra.update({id(layer): {"start_index": start} for layer in self.position_layers})
        logits = self.model._run_forward([window[:, start:]], False, extra, last_step=True)
        self.length = window.shape[1]
        if logits.shape[-1] != vocab_size:
            raise ValueError(f"generate: the model's vocabulary has {logits.shape[-1]} tokens, "
                             f"the tokenizer's {vocab_size}")
        return logits[0, -1]


def sample(logits, temperature, top_k, rng):
    """One token id drawn from softmax(logits / temperature) restricted to the
    top_k largest logits; the argmax when temperature is 0."""
    logits = np.asarray(logits, dtype=np.float64)
    if temperature == 0:
        return int(np.argmax(logits))
    logits = logits / temperature
    if top_k is not None and top_k < len(logits):
        # the k-th largest value; ties with it are kept (as nanoGPT's v[:, [-1]])
        kth = np.partition(logits, len(logits) - top_k)[len(logits) - top_k]
        logits = np.where(logits < kth, -np.inf, logits)
    p = np.exp(logits - np.max(logits))
    cumulative = np.cumsum(p)
    u = rng.random() * cumulative[-1]  # the same as normalizing p first
    return int(min(np.searchsorted(cumulative, u, side="right"), len(p) - 1))


def context_length(model):
    """How many tokens the model reads at most: its Input's length, or, for
    an Input of free length, the sequence_length of its PositionEmbedding."""
    inputs = getattr(model, "inputs", None)
    if not inputs or len(inputs) != 1 or len(inputs[0].shape) != 2:
        raise ValueError("generate: the model must have one input of token ids, shape "
                         "(batch, sequence_length)")
    length = inputs[0].shape[1]
    if length is None:
        lengths = [layer.sequence_length for layer in getattr(model, "_leaves", [])
                   if type(layer).__name__ == "PositionEmbedding"]
        if not lengths:
            raise ValueError("generate: the model's input has no fixed length and no "
                             "PositionEmbedding tells its context length")
        length = min(lengths)
    return int(length)


def next_token_logits(model, window, vocab_size):
    """The logits for the token after `window` (1, t): position t − 1's. A
    model whose Input has a fixed length T > t gets the window padded on the
    right with zeros: a causal model's logits at t − 1 do not see them."""
    t = window.shape[1]
    fixed = model.inputs[0].shape[1]
    if fixed is not None and t < fixed:
        window = np.concatenate([window, np.zeros((1, fixed - t), np.int32)], axis=1)
    logits = model.forward(window, training=False)
    if not (isinstance(logits, np.ndarray) and logits.ndim == 3 and logits.shape[:2] == window.shape):
        raise ValueError(f"generate: the model must return logits of shape (batch, T, vocab) for "
                         f"ids of shape (batch, T); got {getattr(logits, 'shape', type(logits))} for "
                         f"{window.shape}")
    if logits.shape[2] != vocab_size:
        raise ValueError(f"generate: the model's vocabulary has {logits.shape[2]} tokens, the "
                         f"tokenizer's {vocab_size}")
    return logits[0, t - 1]


def _prompt_ids(tokenizer, prompt):
    ids = tokenizer.encode(prompt)
    if len(ids) == 0:
        raise ValueError("generate: the prompt is empty; a model needs at least one token to "
                         "continue (e.g. a newline \"\\n\" for a text from its start)")
    return ids


def _check_count(name, value, low=0, high=None):
    if (isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low
            or (high is not None and value > high)):
        bounds = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"generate: {name} must be an integer {bounds}, got {value!r}")
    return int(value)
