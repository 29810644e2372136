"""Batches of windows of a token array, for next-token training and scoring.

nanoGPT's get_batch: pick `batch_size` random start positions i in the token
array, and take x = ids[i : i+T] and y = ids[i+1 : i+T+1] — each target is
the token that follows its input, so one window gives T next-token examples
(RandomWindows). To score a model on a whole split, ConsecutiveWindows cuts
it into windows side by side instead, so every token is a target once.
"""

import numbers

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..utils import check_positive_int


class RandomWindows:
    """Random (x, y) windows of a token array, as a Keras 3 PyDataset.

    ids: 1-D array-like of non-negative integer token ids (copied as int32).
    sequence_length: T, tokens per window. ids needs at least T + 1 tokens.
    batch_size: windows per batch.
    seed: int >= 0; None draws one from the OS (kept in `self.seed`).
    steps: batches per epoch, or None for an endless dataset (then fit needs
      steps_per_epoch and evaluate needs steps).

    windows[index] returns (x, y), two new int32 arrays of shape
    (batch_size, T) with y[b, t] = x[b, t + 1] for t < T - 1: the window
    starting at s and its targets starting at s + 1. The starts are uniform
    over the len(ids) - T possible ones, drawn with replacement.

    Determinism: batch `index` of epoch `e` depends only on (seed, e, index) —
    not on the order in which batches are asked for, nor on the thread or
    worker asking — so a run repeats exactly. on_epoch_end() moves to the next
    epoch (fresh windows each epoch, as nanoGPT draws fresh ones every step);
    set `epoch` to resume a run. Keras's protocol: __len__ (finite datasets
    only), num_batches (None if endless), __getitem__, on_epoch_end.

    No index array is built per batch: x and y are gathered by one fancy-index
    each from a strided view of the ids whose row s is ids[s : s+T] (a view:
    no copy), so the returned arrays are the only allocation besides the
    batch_size starts.
    """

    def __init__(self, ids, sequence_length, batch_size, seed=None, steps=None):
        owner = "RandomWindows"
        self.sequence_length = check_positive_int(owner, "sequence_length", sequence_length)
        self.batch_size = check_positive_int(owner, "batch_size", batch_size)
        self.steps = None if steps is None else check_positive_int(owner, "steps", steps)
        if seed is None:
            seed = int(np.random.SeedSequence().entropy)
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise ValueError(f"{owner}: seed must be an integer >= 0 or None, got {seed!r}")
        self.seed = int(seed)
        self.epoch = 0
        self.ids = _check_ids(owner, ids, self.sequence_length)
        T = self.sequence_length
        # Row s of each view is a window starting at s: inputs ids[s:s+T],
        # targets ids[s+1:s+T+1]; both have the len(ids) - T valid starts.
        self._inputs = sliding_window_view(self.ids[:-1], T)
        self._targets = sliding_window_view(self.ids[1:], T)

    @property
    def num_batches(self):
        """Batches per epoch; None for an endless dataset (steps=None)."""
        return self.steps

    def __len__(self):
        if self.steps is None:
            raise TypeError("RandomWindows without steps= is endless and has no len(); "
                            "pass steps_per_epoch to fit (steps to evaluate), or steps= here")
        return self.steps

    def __getitem__(self, index):
        if isinstance(index, bool) or not isinstance(index, numbers.Integral):
            raise TypeError(f"RandomWindows: batch index must be an integer, got {index!r}")
        if index < 0 or (self.steps is not None and index >= self.steps):
            raise IndexError(f"RandomWindows: batch index {index} out of range "
                             f"(0..{'∞' if self.steps is None else self.steps - 1})")
        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        starts = rng.integers(0, len(self._inputs), size=self.batch_size)
        return self._inputs[starts], self._targets[starts]

    def on_epoch_end(self):
        self.epoch += 1

    def __repr__(self):
        return (f"RandomWindows({len(self.ids)} tokens, sequence_length={self.sequence_length}, "
                f"batch_size={self.batch_size}, seed={self.seed}, steps={self.steps})")


class ConsecutiveWindows:
    """A whole token array as consecutive windows, every token a target once.

    ids: 1-D array-like of non-negative integer token ids (copied as int32).
    sequence_length: T, tokens per window; ids needs at least T + 1 tokens.
    batch_size: windows per batch (the last batch may hold fewer).

    Window w starts at s = w·T: x = ids[s : s+T], y = ids[s+1 : s+T+1], for
    the n = (len(ids) − 1) // T windows that fit; the last (len(ids) − 1) mod T
    targets are left out. evaluate() on it gives the mean loss over those
    n·T targets: the split's loss itself, with no sampling noise. The target at
    position t of a window sees t + 1 tokens of context, so every context
    length from 1 to T counts equally, as in the mean over random windows.
    A finite dataset of ceil(n / batch_size) batches, the same every epoch.
    """

    def __init__(self, ids, sequence_length, batch_size):
        owner = "ConsecutiveWindows"
        self.sequence_length = check_positive_int(owner, "sequence_length", sequence_length)
        self.batch_size = check_positive_int(owner, "batch_size", batch_size)
        self.ids = _check_ids(owner, ids, self.sequence_length)
        T = self.sequence_length
        self.num_windows = (len(self.ids) - 1) // T
        end = self.num_windows * T
        # views, no copy: row w of each is window w's inputs and targets
        self._inputs = self.ids[:end].reshape(self.num_windows, T)
        self._targets = self.ids[1:end + 1].reshape(self.num_windows, T)

    @property
    def num_batches(self):
        return -(-self.num_windows // self.batch_size)

    def __len__(self):
        return self.num_batches

    def __getitem__(self, index):
        if isinstance(index, bool) or not isinstance(index, numbers.Integral):
            raise TypeError(f"ConsecutiveWindows: batch index must be an integer, got {index!r}")
        if not 0 <= index < self.num_batches:
            raise IndexError(f"ConsecutiveWindows: batch index {index} out of range "
                             f"(0..{self.num_batches - 1})")
        rows = slice(int(index) * self.batch_size, (int(index) + 1) * self.batch_size)
        return self._inputs[rows].copy(), self._targets[rows].copy()

    def __repr__(self):
        return (f"ConsecutiveWindows({len(self.ids)} tokens, sequence_length="
                f"{self.sequence_length}, batch_size={self.batch_size}: {self.num_windows} "
                f"windows)")


def _check_ids(owner, ids, sequence_length):
    """ids as a read-only 1-D int32 copy, after checking they are token ids,
    enough for one window of sequence_length tokens and its last target."""
    array = np.asarray(ids)
    if array.dtype.kind not in "iu":
        raise TypeError(f"{owner}: ids must be an array of integer token ids, "
                        f"got dtype {array.dtype}")
    if array.ndim != 1:
        raise ValueError(f"{owner}: ids must be 1-D (one long token sequence), "
                         f"got shape {array.shape}")
    if array.size and (array.min() < 0 or array.max() > np.iinfo(np.int32).max):
        raise ValueError(f"{owner}: token ids must be in [0, 2**31), got values from "
                         f"{array.min()} to {array.max()}")
    if len(array) < sequence_length + 1:
        raise ValueError(f"{owner}: a window of sequence_length={sequence_length} tokens plus "
                         f"the next token as its last target needs at least "
                         f"{sequence_length + 1} tokens; ids has {len(array)}")
    copy = array.astype(np.int32)  # always a copy: later changes to `ids` do not leak in
    copy.flags.writeable = False
    return copy
