"""Tests for fromzero.text: the three tokenizers, RandomWindows and ConsecutiveWindows."""

import json
import sys
import tracemalloc

import numpy as np
import pytest

import fromzero as fz
from fromzero.datasets import text as corpora
from fromzero.text import (BPETokenizer, ByteTokenizer, CharTokenizer, ConsecutiveWindows,
                           RandomWindows, deserialize, serialize)

# nanoGPT's shakespeare_char vocabulary (data/shakespeare_char/prepare.py).
SHAKESPEARE_CHARS = "\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


@pytest.fixture(scope="module")
def shakespeare():
    return corpora.load_data("tinyshakespeare")


@pytest.fixture(scope="module")
def tang300():
    return corpora.load_data("tang300")


def round_trip_config(tokenizer):
    """The tokenizer rebuilt from its serialized config after a trip through JSON."""
    return deserialize(json.loads(json.dumps(serialize(tokenizer))))


# --- ByteTokenizer ---------------------------------------------------------------

def test_byte_tokenizer_encodes_utf8_bytes(tang300):
    tokenizer = ByteTokenizer()
    assert tokenizer.vocab_size == 256
    ids = tokenizer.encode("hé唐")
    assert ids.dtype == np.int32
    assert ids.tolist() == [104, 0xC3, 0xA9, 0xE5, 0x94, 0x90]
    assert tokenizer.decode(ids) == "hé唐"
    ids = tokenizer.encode(tang300)
    assert len(ids) == 83_605  # the README's byte count
    assert tokenizer.decode(ids) == tang300
    assert tokenizer.decode([]) == ""
    assert round_trip_config(tokenizer).encode("abc").tolist() == [97, 98, 99]


def test_byte_tokenizer_decodes_broken_utf8_as_replacement_characters():
    tokenizer = ByteTokenizer()
    # The first two of the three bytes of 唐, then "a".
    assert tokenizer.decode([0xE5, 0x94, 97]) == "\ufffda"


# --- CharTokenizer ---------------------------------------------------------------

def test_char_tokenizer_fit_is_nanogpts_shakespeare_char(shakespeare):
    tokenizer = CharTokenizer.fit(shakespeare)
    assert tokenizer.vocab_size == 65
    assert tokenizer.vocabulary == SHAKESPEARE_CHARS
    # The example of Karpathy's "Let's build GPT" lecture.
    assert tokenizer.encode("hii there").tolist() == [46, 47, 47, 1, 58, 46, 43, 56, 43]
    ids = tokenizer.encode(shakespeare)
    assert ids.dtype == np.int32 and ids.shape == (1_115_394,)
    assert tokenizer.decode(ids) == shakespeare


def test_char_tokenizer_on_chinese(tang300):
    tokenizer = CharTokenizer.fit(tang300)
    assert tokenizer.vocab_size == 2579
    assert tokenizer.decode(tokenizer.encode(tang300)) == tang300
    assert tokenizer.vocabulary == "".join(sorted(set(tang300)))


def test_char_tokenizer_keeps_a_given_vocabulary_order():
    tokenizer = CharTokenizer("cab")
    assert tokenizer.encode("abcab").tolist() == [1, 2, 0, 1, 2]
    assert tokenizer.decode(np.array([0, 0, 2], dtype=np.uint8)) == "ccb"
    rebuilt = round_trip_config(tokenizer)
    assert isinstance(rebuilt, CharTokenizer) and rebuilt.vocabulary == "cab"


def test_char_tokenizer_names_an_unknown_character(shakespeare):
    tokenizer = CharTokenizer.fit(shakespeare)
    with pytest.raises(ValueError, match=r"character '£' \(U\+00A3\) at position 4 is not in the "
                                         r"vocabulary of 65 characters"):
        tokenizer.encode("cost£5")
    with pytest.raises(ValueError, match="U\\+5510"):
        tokenizer.encode("唐")


def test_char_tokenizer_rejects_bad_vocabularies():
    for bad in ("", None, ["a", "b"]):
        with pytest.raises(ValueError, match="non-empty str of distinct characters"):
            CharTokenizer(bad)
    with pytest.raises(ValueError, match="'a' more than once"):
        CharTokenizer("abca")
    with pytest.raises(ValueError, match="the text is empty"):
        CharTokenizer.fit("")
    with pytest.raises(TypeError, match="expected a str"):
        CharTokenizer.fit(b"bytes")


def test_char_tokenizer_handles_lone_surrogates():
    odd = "a\ud800b"  # not encodable as UTF-8, but a valid Python str
    tokenizer = CharTokenizer.fit(odd)
    assert tokenizer.decode(tokenizer.encode(odd)) == odd
    with pytest.raises(ValueError, match="not valid Unicode"):
        ByteTokenizer().encode(odd)


# --- checks shared by every tokenizer --------------------------------------------

@pytest.mark.parametrize("tokenizer", [ByteTokenizer(), CharTokenizer("abc")],
                         ids=["bytes", "chars"])
def test_bad_arguments_give_clear_errors(tokenizer):
    n = tokenizer.vocab_size
    with pytest.raises(TypeError, match="expected a str, got bytes"):
        tokenizer.encode(b"abc")
    with pytest.raises(TypeError, match="expected a str, got list"):
        tokenizer.encode(["a"])
    with pytest.raises(ValueError, match=f"token id {n} at position 1 is out of range for a "
                                         f"vocabulary of {n}"):
        tokenizer.decode([0, n])
    with pytest.raises(ValueError, match="token id -1 at position 0 is out of range"):
        tokenizer.decode(np.array([-1, 0]))
    with pytest.raises(TypeError, match="must be integers, got dtype float64"):
        tokenizer.decode([0.0, 1.0])
    with pytest.raises(TypeError, match="must be integers, got dtype bool"):
        tokenizer.decode([True])
    with pytest.raises(ValueError, match=r"must be 1-D, got shape \(1, 2\)"):
        tokenizer.decode([[0, 1]])
    with pytest.raises(TypeError, match="expected token ids, got a str"):
        tokenizer.decode("01")
    assert tokenizer.decode(np.zeros(0, dtype=np.int32)) == ""


def test_deserialize_rejects_unknown_tokenizers():
    with pytest.raises(ValueError, match="unknown tokenizer 'WordPiece'"):
        deserialize({"class_name": "WordPiece", "config": {}})
    with pytest.raises(ValueError, match="bad config for CharTokenizer"):
        deserialize({"class_name": "CharTokenizer", "config": {"vocab": "abc"}})
    with pytest.raises(ValueError, match="expected"):
        deserialize("CharTokenizer")
    with pytest.raises(TypeError, match="expected a tokenizer"):
        serialize("CharTokenizer")


# --- BPETokenizer (Hugging Face tokenizers) ---------------------------------------

@pytest.fixture(scope="module")
def bpe(shakespeare):
    pytest.importorskip("tokenizers")
    return BPETokenizer.train(shakespeare[:200_000], vocab_size=400)


def test_bpe_trains_merges_and_round_trips_any_text(bpe, shakespeare, tang300):
    assert bpe.vocab_size == 400
    sample = shakespeare[200_000:220_000]
    ids = bpe.encode(sample)
    assert ids.dtype == np.int32 and ids.max() < 400
    assert len(ids) < 0.6 * len(sample)  # merges make tokens longer than one byte
    assert bpe.decode(ids) == sample
    # Byte-level: text never seen in training (Chinese) still round-trips.
    assert bpe.decode(bpe.encode(tang300[:2000])) == tang300[:2000]


def test_bpe_training_is_deterministic_and_its_config_round_trips(bpe, shakespeare):
    again = BPETokenizer.train(shakespeare[:200_000], vocab_size=400)
    assert again.get_config() == bpe.get_config()
    rebuilt = round_trip_config(bpe)
    assert isinstance(rebuilt, BPETokenizer)
    sample = shakespeare[-5000:]
    np.testing.assert_array_equal(rebuilt.encode(sample), bpe.encode(sample))


def test_bpe_bad_arguments(bpe):
    with pytest.raises(ValueError, match="at least 256"):
        BPETokenizer.train("some text", vocab_size=100)
    with pytest.raises(ValueError, match="vocab_size must be a positive integer"):
        BPETokenizer.train("some text", vocab_size=300.0)
    with pytest.raises(TypeError, match="expected a str"):
        BPETokenizer.train(["some", "text"], vocab_size=300)
    with pytest.raises(ValueError, match="not a valid tokenizer JSON"):
        BPETokenizer("{not json")
    with pytest.raises(ValueError, match="token id 400 at position 0 is out of range"):
        bpe.decode([400])


def test_bpe_without_tokenizers_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "tokenizers", None)  # makes `import tokenizers` fail
    with pytest.raises(ImportError, match=r"pip install 'fromzero\[text\]'"):
        BPETokenizer.train("some text", vocab_size=300)


# --- RandomWindows ----------------------------------------------------------------

def test_windows_are_nanogpt_batches():
    ids = np.arange(1000)  # token i at position i: a window shows where it starts
    windows = RandomWindows(ids, sequence_length=16, batch_size=8, seed=0)
    x, y = windows[0]
    assert x.shape == y.shape == (8, 16)
    assert x.dtype == y.dtype == np.int32
    assert x.flags.c_contiguous and y.flags.c_contiguous
    starts = x[:, 0]
    np.testing.assert_array_equal(x, starts[:, None] + np.arange(16))
    np.testing.assert_array_equal(y, x + 1)  # each target is the next token


def test_every_start_is_drawn_and_no_window_runs_past_the_end():
    ids = np.arange(10)  # T = 3: starts 0..6, the last window's target ends at token 9
    windows = RandomWindows(ids, sequence_length=3, batch_size=50, seed=1)
    starts = np.concatenate([windows[i][0][:, 0] for i in range(20)])
    assert set(starts.tolist()) == set(range(7))
    # Exactly T + 1 tokens: one window, x = ids[:T], y = ids[1:].
    x, y = RandomWindows(np.arange(5), 4, 2, seed=0)[0]
    assert x.tolist() == [[0, 1, 2, 3]] * 2 and y.tolist() == [[1, 2, 3, 4]] * 2


def test_windows_are_deterministic_in_seed_epoch_and_index():
    ids = np.random.default_rng(0).integers(0, 65, 5000)
    a = RandomWindows(ids, 32, 4, seed=7)
    b = RandomWindows(ids, 32, 4, seed=7)
    first = [a[i] for i in range(5)]
    for i in reversed(range(5)):  # another order gives the same batches
        np.testing.assert_array_equal(b[i][0], first[i][0])
        np.testing.assert_array_equal(b[i][1], first[i][1])
    assert not np.array_equal(first[0][0], first[1][0])
    assert not np.array_equal(RandomWindows(ids, 32, 4, seed=8)[0][0], first[0][0])
    a.on_epoch_end()  # a new epoch draws new windows...
    assert a.epoch == 1 and not np.array_equal(a[0][0], first[0][0])
    a.epoch = 0  # ...and setting the epoch back repeats the old ones (resuming)
    np.testing.assert_array_equal(a[0][0], first[0][0])
    assert isinstance(RandomWindows(ids, 32, 4).seed, int)  # seed=None draws one


def test_windows_copy_the_ids():
    ids = np.arange(100)
    windows = RandomWindows(ids, 8, 2, seed=0)
    before = windows[0][0].copy()
    ids[:] = 0
    np.testing.assert_array_equal(windows[0][0], before)


def test_steps_and_the_keras_protocol():
    ids = np.arange(100)
    windows = RandomWindows(ids, 8, 2, seed=0, steps=3)
    assert len(windows) == windows.num_batches == 3
    assert len(list(windows)) == 3  # iteration stops at steps
    with pytest.raises(IndexError, match="batch index 3 out of range"):
        windows[3]
    endless = RandomWindows(ids, 8, 2, seed=0)
    assert endless.num_batches is None
    with pytest.raises(TypeError, match="endless.*steps_per_epoch"):
        len(endless)
    endless[10 ** 12]  # any index of an endless dataset
    for bad in (-1,):
        with pytest.raises(IndexError):
            endless[bad]
    for bad in (1.0, "0", True):
        with pytest.raises(TypeError, match="batch index must be an integer"):
            endless[bad]


def test_bad_arguments_are_refused():
    ids = np.arange(100)
    with pytest.raises(ValueError, match=r"sequence_length=100 tokens .* needs at least 101 tokens; "
                                         r"ids has 100"):
        RandomWindows(ids, 100, 2, seed=0)
    with pytest.raises(TypeError, match="integer token ids, got dtype float64"):
        RandomWindows(ids.astype(float), 8, 2, seed=0)
    with pytest.raises(TypeError, match="integer token ids"):
        RandomWindows("some text", 8, 2, seed=0)
    with pytest.raises(ValueError, match=r"must be 1-D .* got shape \(10, 10\)"):
        RandomWindows(ids.reshape(10, 10), 8, 2, seed=0)
    with pytest.raises(ValueError, match=r"in \[0, 2\*\*31\), got values from -1"):
        RandomWindows(ids - 1, 8, 2, seed=0)
    with pytest.raises(ValueError, match=r"got values from 0 to 4294967296"):
        RandomWindows(np.array([0, 2 ** 32] * 50), 8, 2, seed=0)
    for name, kwargs in [("sequence_length", dict(sequence_length=0)),
                         ("sequence_length", dict(sequence_length=8.0)),
                         ("batch_size", dict(batch_size=True)),
                         ("steps", dict(steps=0))]:
        arguments = dict(ids=ids, sequence_length=8, batch_size=2, seed=0) | kwargs
        with pytest.raises(ValueError, match=f"{name} must be a positive integer"):
            RandomWindows(**arguments)
    for seed in (-1, 1.5, "0"):
        with pytest.raises(ValueError, match="seed must be an integer >= 0"):
            RandomWindows(ids, 8, 2, seed=seed)


def test_a_batch_allocates_only_its_arrays():
    ids = np.random.default_rng(0).integers(0, 65, 200_000).astype(np.int32)
    batch, T = 64, 256
    windows = RandomWindows(ids, T, batch, seed=0)
    windows[0]
    tracemalloc.start()
    try:
        x, y = windows[1]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    returned = x.nbytes + y.nbytes  # 128 KiB
    assert peak < returned + 16 * 1024, f"peak {peak} bytes for {returned} bytes of batch"


# --- ConsecutiveWindows -----------------------------------------------------------

def test_consecutive_windows_make_every_token_a_target_once():
    ids = np.arange(23)  # T = 4: (23 − 1) // 4 = 5 windows, targets 1..20; 21, 22 left out
    windows = ConsecutiveWindows(ids, sequence_length=4, batch_size=2)
    assert windows.num_windows == 5 and len(windows) == windows.num_batches == 3
    batches = [windows[i] for i in range(len(windows))]
    assert [len(x) for x, _ in batches] == [2, 2, 1]  # the last batch holds the rest
    x, y = (np.concatenate(parts) for parts in zip(*batches))
    assert x.dtype == y.dtype == np.int32
    np.testing.assert_array_equal(x.ravel(), np.arange(20))
    np.testing.assert_array_equal(y, x + 1)
    # exactly T + 1 tokens: one window
    x, y = ConsecutiveWindows(np.arange(5), 4, 3)[0]
    assert x.tolist() == [[0, 1, 2, 3]] and y.tolist() == [[1, 2, 3, 4]]
    assert len(list(windows)) == 3  # the Keras protocol: iteration stops at the end
    with pytest.raises(IndexError, match=r"batch index 3 out of range \(0..2\)"):
        windows[3]
    with pytest.raises(IndexError):
        windows[-1]
    with pytest.raises(TypeError, match="batch index must be an integer"):
        windows[1.0]


def test_consecutive_windows_refuse_bad_arguments():
    with pytest.raises(ValueError, match="needs at least 9 tokens; ids has 8"):
        ConsecutiveWindows(np.arange(8), 8, 2)
    with pytest.raises(TypeError, match="integer token ids"):
        ConsecutiveWindows(np.arange(20.0), 8, 2)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        ConsecutiveWindows(np.arange(20), 8, 0)


def test_evaluate_on_consecutive_windows_is_the_mean_loss_over_every_target():
    fz.utils.set_random_seed(0)
    ids = np.random.default_rng(3).integers(0, 11, 203).astype(np.int32)
    model = fz.models.gpt(11, 8, 1, 2, 8)
    model.compile(loss=fz.losses.SparseCategoricalCrossentropy(from_logits=True))
    windows = ConsecutiveWindows(ids, 8, 7)  # 25 windows: batches of 7, 7, 7, 4
    x = ids[:200].reshape(25, 8)
    logits = model.predict(x, verbose=0).astype(np.float64)
    log_p = logits - logits.max(-1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(-1, keepdims=True))
    targets = ids[1:201].reshape(25, 8)
    expected = -np.take_along_axis(log_p, targets[..., None], -1).mean()
    assert model.evaluate(windows, verbose=0) == pytest.approx(expected, rel=1e-5)


def test_fz_text_is_exported():
    assert fz.text.CharTokenizer is CharTokenizer and fz.text.RandomWindows is RandomWindows
    assert fz.text.ConsecutiveWindows is ConsecutiveWindows
