"""fz.text.generate: seeded sampling, temperature, top-k, cropping to the
model's context and clear errors, on small causal models whose logits are
known (a bigram table), so every expected token is worked out here."""

import numpy as np
import pytest

import fromzero as fz
from fromzero.text.generation import sample

VOCAB = "abcd"


class Bigram(fz.layers.Layer):
    """logits[b, t] = table[ids[b, t]]: the next token depends on the last one
    only. Records the windows it was given."""

    def __init__(self, table, **kwargs):
        super().__init__(**kwargs)
        self.table = np.asarray(table, dtype=np.float32)
        self.seen = []

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.table.shape[1],)

    def forward(self, ids, training=False):
        self.seen.append(np.array(ids))
        return self.table[ids]


def bigram_model(table, length=None):
    ids = fz.Input(shape=(length,), dtype="int32")
    layer = Bigram(table)
    return fz.Model(ids, layer(ids)), layer


def chain_table():
    """Token i is almost surely followed by token i + 1 (mod 4)."""
    table = np.full((4, 4), -20.0)
    for i in range(4):
        table[i, (i + 1) % 4] = 20.0
    return table


TOKENIZER = fz.text.CharTokenizer(VOCAB)


def test_greedy_follows_the_most_likely_chain_and_returns_prompt_plus_text():
    model, _ = bigram_model(chain_table(), length=4)
    assert fz.text.generate(model, TOKENIZER, "ab", 6, temperature=0) == "ab" + "cdabcd"
    # top_k=1 keeps only the argmax, whatever the temperature and seed
    assert fz.text.generate(model, TOKENIZER, "d", 3, temperature=5.0, top_k=1, seed=3) == "dabc"


def test_short_windows_are_padded_for_a_fixed_length_input_and_long_prompts_cropped():
    model, layer = bigram_model(chain_table(), length=4)
    fz.text.generate(model, TOKENIZER, "a", 1, temperature=0)
    np.testing.assert_array_equal(layer.seen[-1], [[0, 0, 0, 0]])  # "a" + padding
    layer.seen.clear()
    assert fz.text.generate(model, TOKENIZER, "abcdab", 2, temperature=0) == "abcdabcd"
    # nanoGPT's crop: the model sees the last 4 tokens
    np.testing.assert_array_equal(layer.seen[0], [[2, 3, 0, 1]])
    np.testing.assert_array_equal(layer.seen[1], [[3, 0, 1, 2]])


def test_seed_fixes_the_sample_and_different_seeds_differ():
    model, _ = bigram_model(np.zeros((4, 4)), length=8)  # uniform next token
    a = fz.text.generate(model, TOKENIZER, "a", 40, seed=1)
    assert a == fz.text.generate(model, TOKENIZER, "a", 40, seed=1)
    assert a != fz.text.generate(model, TOKENIZER, "a", 40, seed=2)
    assert len(a) == 41 and set(a) <= set(VOCAB)


def test_sample_follows_softmax_over_temperature_and_top_k():
    logits = np.log(np.array([0.1, 0.2, 0.3, 0.4]))
    rng = np.random.default_rng(0)
    n = 8000

    def frequencies(temperature, top_k):
        counts = np.bincount([sample(logits, temperature, top_k, rng) for _ in range(n)],
                             minlength=4)
        return counts / n

    np.testing.assert_allclose(frequencies(1.0, None), [0.1, 0.2, 0.3, 0.4], atol=0.02)
    # temperature 0.5 squares the probabilities: p² / Σp²
    squared = np.array([0.01, 0.04, 0.09, 0.16]) / 0.30
    np.testing.assert_allclose(frequencies(0.5, None), squared, atol=0.02)
    # top_k = 2: only the two most likely, renormalized: 0.3/0.7, 0.4/0.7
    np.testing.assert_allclose(frequencies(1.0, 2), [0, 0, 3 / 7, 4 / 7], atol=0.02)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(prompt=""), ValueError, "prompt is empty"),
    (dict(prompt="az"), ValueError, "z"),  # a character the tokenizer never saw
    (dict(max_new_tokens=-1), ValueError, "max_new_tokens"),
    (dict(max_new_tokens=2.5), ValueError, "max_new_tokens"),
    (dict(temperature=-1.0), ValueError, "temperature"),
    (dict(top_k=0), ValueError, "top_k"),
    (dict(seed=-3), ValueError, "seed"),
    (dict(prompt=3), TypeError, "str"),
])
def test_bad_arguments_give_clear_errors(kwargs, error, message):
    model, _ = bigram_model(chain_table(), length=4)
    args = dict(prompt="ab", max_new_tokens=2) | kwargs
    with pytest.raises(error, match=message):
        fz.text.generate(model, TOKENIZER, **args)


def test_a_model_of_another_vocabulary_or_without_a_context_length_is_refused():
    model, _ = bigram_model(np.zeros((4, 5)), length=4)
    with pytest.raises(ValueError, match="vocabulary has 5 tokens, the tokenizer's 4"):
        fz.text.generate(model, TOKENIZER, "ab", 1)
    model, _ = bigram_model(chain_table(), length=None)
    with pytest.raises(ValueError, match="PositionEmbedding"):
        fz.text.generate(model, TOKENIZER, "ab", 1)
