"""Where batches come from: one iterator for fit, evaluate, predict and the profiler.

fit(x, y) takes, as Keras 3:
    arrays           x an array (or a list / dict of arrays, one per model
                     input), y likewise per output: the batches are rows
                     gathered in a shuffled order into reused buffers
    a PyDataset      anything with __len__ and __getitem__(i) returning
                     (x, y) or (x, y, sample_weight) (fz.utils.PyDataset)
    an iterator      a generator of such batches, with steps_per_epoch

Each source gives a `Batches` object: ``num_batches`` (None when unknown)
and ``epoch()``, the batches of one epoch as (inputs, targets,
sample_weight) — lists of arrays in the model's input and output order.
With steps_per_epoch an epoch takes that many batches and the next epoch
goes on where it stopped (a new pass starts when the data is used up).
"""

import math

import numpy as np

from . import _core, utils


def is_dataset(x):
    """A PyDataset-like object: batches by index (not an array, list or dict)."""
    return (not isinstance(x, (np.ndarray, list, tuple, dict, str, bytes))
            and hasattr(x, "__getitem__") and hasattr(x, "__len__"))


def is_iterator(x):
    return hasattr(x, "__next__")


_GATHER_DTYPES = (np.dtype(np.float32), np.dtype(np.int32))


def take_rows(src, index, out):
    """out[i] = src[index[i]]: one C++ pass for float32 and int32 (the
    common case), NumPy for other dtypes."""
    if src.dtype in _GATHER_DTYPES:
        return _core.gather_rows(src, index, out)
    return np.take(src, index, axis=0, out=out)


class Batches:
    num_batches = None

    def epoch(self):
        raise NotImplementedError

    def end_epoch(self):
        pass


class ArrayBatches(Batches):
    """Batches of whole arrays held in memory. `arrays` is [inputs, targets,
    sample_weight]: lists of arrays (targets and sample_weight may be None),
    every array with the same number of rows. Shuffled batches are gathered
    into `buffers` (reused: no allocation per step); in order, they are views."""

    def __init__(self, arrays, batch_size, shuffle, steps_per_epoch, buffers):
        self.arrays = arrays
        self.n = len(arrays[0][0])
        self.batch_size = min(batch_size, self.n)
        self.shuffle = shuffle
        self.steps_per_epoch = steps_per_epoch
        self.num_batches = steps_per_epoch or math.ceil(self.n / self.batch_size)
        self.buffers = buffers
        self._order, self._position = None, 0

    def _next_rows(self):
        """The rows of the next batch: a slice (shuffle=False) or an index array."""
        if self._order is None or self._position >= self.n:
            self._order = (_core.random_permutation(self.n, utils.next_seed()) if self.shuffle
                           else True)
            self._position = 0
        start = self._position
        self._position = min(start + self.batch_size, self.n)
        if self.shuffle:
            return self._order[start:self._position]
        return slice(start, self._position)

    def _take(self, kind, arrays, rows):
        if arrays is None:
            return None
        if isinstance(rows, slice):  # in order: views, no copy
            return [a[rows] for a in arrays]
        return [take_rows(a, rows, self.buffers.get((kind, k), (len(rows),) + a.shape[1:],
                                                    a.dtype))
                for k, a in enumerate(arrays)]

    def epoch(self):
        if not self.steps_per_epoch:
            self._order = None  # every epoch is one pass, in a new order
        inputs, targets, weights = self.arrays
        for _ in range(self.num_batches):
            rows = self._next_rows()
            yield (self._take("x", inputs, rows), self._take("t", targets, rows),
                   None if weights is None else self._take("w", [weights], rows)[0])


class DatasetBatches(Batches):
    """Batches from a PyDataset: dataset[i] for i in 0..num_batches−1
    (shuffled with shuffle=True), each made ready by `prepare`;
    on_epoch_end after each epoch. An endless dataset (num_batches None, as
    Keras's) is read in order 0, 1, 2, ..., steps_per_epoch batches an epoch."""

    def __init__(self, dataset, prepare, shuffle, steps_per_epoch):
        self.dataset, self.prepare, self.shuffle = dataset, prepare, shuffle
        self.length = dataset.num_batches if hasattr(dataset, "num_batches") else len(dataset)
        if self.length is None and not steps_per_epoch:
            raise ValueError("the dataset is endless (its num_batches is None): give "
                             "steps_per_epoch to fit, steps to evaluate and predict")
        if self.length == 0 and not steps_per_epoch:
            raise ValueError("the dataset is empty: len(dataset) == 0")
        self.steps_per_epoch = steps_per_epoch
        self.num_batches = steps_per_epoch or self.length
        self._order, self._position = None, 0

    def epoch(self):
        if not self.steps_per_epoch:
            self._order = None
        for _ in range(self.num_batches):
            if self.length is None:  # endless: the next index, epoch after epoch
                i = self._position
            else:
                if self._order is None or self._position >= self.length:
                    self._order = (_core.random_permutation(self.length, utils.next_seed())
                                   if self.shuffle else range(self.length))
                    self._position = 0
                i = int(self._order[self._position])
            self._position += 1
            yield self.prepare(self.dataset[i])

    def end_epoch(self):
        on_epoch_end = getattr(self.dataset, "on_epoch_end", None)
        if on_epoch_end is not None:
            on_epoch_end()


class IteratorBatches(Batches):
    """Batches drawn from an iterator (a generator): steps_per_epoch of them
    per epoch, or until it runs out."""

    def __init__(self, iterator, prepare, steps_per_epoch):
        self.iterator, self.prepare = iterator, prepare
        self.num_batches = steps_per_epoch
        self.exhausted = False

    def epoch(self):
        count = 0
        while self.num_batches is None or count < self.num_batches:
            try:
                batch = next(self.iterator)
            except StopIteration:
                self.exhausted = True
                return
            count += 1
            yield self.prepare(batch)
