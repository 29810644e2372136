"""Metrics: numbers that say how good a model is, accumulated batch by batch.

    accuracy        = correct predictions / all predictions
    top-k accuracy  = samples whose true class is among the k highest scores / all samples
    precision       = TP / (TP + FP)     of the samples predicted as class c, the share that are c
    recall          = TP / (TP + FN)     of the samples that are class c, the share found
    F1              = 2·TP / (2·TP + FP + FN) = 2·precision·recall / (precision + recall)

A metric has ``reset_state()``, ``update_state(y_true, y_pred)`` and
``result()``, as in Keras. Labels may be integers (batch,) or one-hot
(batch, classes); predictions are (batch, classes) scores, whose argmax is the
predicted class, or a single column, a yes/no probability thresholded at 0.5.

Precision, recall and F1 are read off a confusion matrix, accumulated over
batches with one ``np.bincount`` per batch: ``confusion[i, j]`` counts the
samples of true class i predicted as class j, so for class c

    TP = confusion[c, c],  TP + FP = column c summed,  TP + FN = row c summed.

``confusion_matrix`` and ``classification_report`` compute the same numbers for
whole arrays of labels and predictions, as scikit-learn's functions of those names.
"""

import functools

import numpy as np

from . import _core, utils

AVERAGES = (None, "micro", "macro", "weighted")
_CLASSES = {}  # every Metric subclass by lower-case class name (deserialize)


class Metric:
    """The protocol: reset_state(), update_state(y_true, y_pred), result().

    A subclass whose constructor takes more than `name` returns those
    arguments from get_config too, so that a saved model gets it back."""

    #: "up": higher is better. Callbacks with mode="auto" (EarlyStopping, ...) read it.
    direction = "up"

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        utils.register_class(cls, _CLASSES)

    def __init__(self, name):
        self.name = name
        self.reset_state()

    def get_config(self):
        return {"name": self.name}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def reset_state(self):
        raise NotImplementedError

    def update_state(self, y_true, y_pred):
        raise NotImplementedError

    def result(self):
        raise NotImplementedError


class Accuracy(Metric):
    """accuracy = correct predictions / all predictions. "accuracy" picks its
    meaning from the shapes, as Keras does from the loss: integer labels
    against (batch, classes) scores compare the argmax with the label; one-hot
    targets compare argmaxes; a single output column is a yes/no prediction
    thresholded at 0.5."""

    def __init__(self, name="accuracy"):
        super().__init__(name)

    def reset_state(self):
        self.correct = 0
        self.total = 0

    def update_state(self, y_true, y_pred):
        y_pred = np.asarray(y_pred)
        y_true = np.asarray(y_true)
        if y_pred.ndim == 2 and y_pred.shape[1] > 1:
            if y_true.ndim == 2 and y_true.shape == y_pred.shape:  # one-hot targets
                labels = _core.argmax(y_true)
            else:
                labels = y_true.reshape(-1)
            self.correct += _core.count_correct(y_pred, labels)  # argmax(p) == label, in C++
        else:  # one output: a probability thresholded at 0.5
            if y_true.size != y_pred.size:
                raise ValueError(f"accuracy: y_true has shape {y_true.shape} but y_pred has "
                                 f"shape {y_pred.shape}")
            self.correct += int(np.count_nonzero((y_pred.reshape(-1) > 0.5) == (y_true.reshape(-1) > 0.5)))
        self.total += len(y_pred)

    def result(self):
        return self.correct / self.total if self.total else 0.0


class TopKCategoricalAccuracy(Metric):
    """top-k accuracy = samples whose true class is among the k highest scores / all samples.

    Labels may be one-hot or integers (the name "top_k_accuracy" accepts
    either). A tie counts in the sample's favour, as Keras's ``in_top_k``: the
    true class is in the top k when fewer than k classes score strictly higher.
    """

    def __init__(self, k=5, name="top_k_categorical_accuracy"):
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"{name}: k must be a positive integer, got {k!r}")
        self.k = int(k)
        super().__init__(name)

    def get_config(self):
        return {"k": self.k, "name": self.name}

    def reset_state(self):
        self.correct = 0
        self.total = 0

    def update_state(self, y_true, y_pred):
        scores = np.asarray(y_pred)
        if scores.ndim != 2 or scores.shape[1] < 2:
            raise ValueError(f"{self.name}: y_pred must be (batch, classes) scores, "
                             f"got shape {scores.shape}")
        labels = _true_classes(y_true, len(scores), binary=False, what=self.name)
        _check_range(labels, scores.shape[1], f"{self.name}: y_true")
        true_class_score = scores[np.arange(len(scores)), labels]
        scoring_higher = np.count_nonzero(scores > true_class_score[:, None], axis=1)
        self.correct += int(np.count_nonzero(scoring_higher < self.k))
        self.total += len(scores)

    def result(self):
        return self.correct / self.total if self.total else 0.0


class SparseTopKCategoricalAccuracy(TopKCategoricalAccuracy):
    """Top-k accuracy under Keras's name for integer labels (either kind of label works)."""

    def __init__(self, k=5, name="sparse_top_k_categorical_accuracy"):
        super().__init__(k, name)


# ---------------------------------------------------------------- confusion matrix

def _whole_numbers(values, what):
    """values as int64 class indices, after checking they are whole numbers >= 0."""
    if values.dtype.kind == "f":
        if not np.all(np.isfinite(values)) or np.any(values != np.round(values)):
            raise ValueError(f"{what} must hold class indices (whole numbers)")
    elif values.dtype.kind not in "iub":
        raise TypeError(f"{what} must hold numbers, got dtype {values.dtype}")
    if values.size and values.min() < 0:
        raise ValueError(f"{what}: class indices must be >= 0, got {values.min()}")
    return values.astype(np.int64)


def _check_range(labels, num_classes, what):
    if labels.size and labels.max() >= num_classes:
        raise ValueError(f"{what}: class {labels.max()} is outside [0, {num_classes})")


def _predicted_classes(y_pred):
    """(predicted class per sample, number of classes or None, binary?) from y_pred:
    (N, classes) scores → argmax; (N, 1) probabilities → 1 if > 0.5 (binary);
    (N,) → already class indices."""
    y_pred = np.asarray(y_pred)
    if y_pred.ndim == 2 and y_pred.shape[1] > 1:
        return np.argmax(y_pred, axis=1), y_pred.shape[1], False
    if y_pred.ndim == 2 and y_pred.shape[1] == 1:
        return (y_pred[:, 0] > 0.5).astype(np.int64), 2, True
    if y_pred.ndim == 1:
        return _whole_numbers(y_pred, "y_pred"), None, False
    raise ValueError(f"y_pred must be (N,) classes, (N, classes) scores or (N, 1) "
                     f"probabilities, got shape {y_pred.shape}")


def _true_classes(y_true, n, binary, what="y_true"):
    """The true class per sample from y_true: one-hot (N, classes) → argmax;
    (N,) or (N, 1) labels; for a binary prediction a label > 0.5 is class 1."""
    y_true = np.asarray(y_true)
    if len(y_true) != n:
        raise ValueError(f"{what}: y_true has {len(y_true)} samples but y_pred has {n}")
    if y_true.ndim == 2 and y_true.shape[1] > 1:
        return np.argmax(y_true, axis=1)
    if y_true.ndim > 2 or (y_true.ndim == 2 and y_true.shape[1] != 1):
        raise ValueError(f"{what}: y_true must be (N,) labels or (N, classes) one-hot, "
                         f"got shape {y_true.shape}")
    y_true = y_true.reshape(-1)
    if binary:
        return (y_true > 0.5).astype(np.int64)
    return _whole_numbers(y_true, f"{what}: y_true")


def _class_indices(y_true, y_pred, num_classes=None):
    """(true classes, predicted classes, number of classes, binary?), checked."""
    predicted, columns, binary = _predicted_classes(y_pred)
    true = _true_classes(y_true, len(predicted), binary)
    if num_classes is None:
        num_classes = columns or int(max(true.max(initial=-1), predicted.max(initial=-1))) + 1
    elif isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) \
            or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    elif columns is not None and columns != num_classes:
        raise ValueError(f"num_classes={num_classes} but y_pred has scores for {columns} classes")
    _check_range(true, num_classes, "y_true")
    _check_range(predicted, num_classes, "y_pred")
    return true, predicted, num_classes, binary


def _count_pairs(true, predicted, num_classes):
    """confusion[i, j] = #samples with true class i predicted as j: one bincount
    over the pair index i·classes + j."""
    pairs = true * num_classes + predicted
    return np.bincount(pairs, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def confusion_matrix(y_true, y_pred, num_classes=None):
    """The (classes, classes) int64 matrix whose entry [i, j] counts the samples
    of true class i predicted as class j (rows true, columns predicted, as
    scikit-learn's).

    y_true: (N,) class indices or (N, classes) one-hot. y_pred: (N,) class
    indices, (N, classes) scores (the argmax is the prediction) or (N, 1)
    probabilities (class 1 when > 0.5). num_classes defaults to the number of
    score columns, else to the largest class seen + 1.
    """
    true, predicted, num_classes, _ = _class_indices(y_true, y_pred, num_classes)
    return _count_pairs(true, predicted, num_classes)


# Each per-class score is a ratio numerator / denominator of confusion-matrix
# counts; keeping the two apart also gives the micro average, Σ num / Σ den.

def _precision_parts(confusion):
    """precision = TP / (TP + FP): TP on the diagonal, TP + FP the column sum."""
    return np.diag(confusion), confusion.sum(axis=0)


def _recall_parts(confusion):
    """recall = TP / (TP + FN): TP on the diagonal, TP + FN the row sum (the support)."""
    return np.diag(confusion), confusion.sum(axis=1)


def _f1_parts(confusion):
    """F1 = 2·TP / (2·TP + FP + FN), the harmonic mean of precision and recall."""
    return 2 * np.diag(confusion), confusion.sum(axis=0) + confusion.sum(axis=1)


def _divide(numerator, denominator):
    """numerator / denominator, 0 where the denominator is 0 (no samples: no score)."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator != 0)


def _average(numerator, denominator, confusion, average):
    """Per-class scores (average=None) or one number:
        micro    = Σ numerator / Σ denominator over classes (for precision,
                   recall and F1 alike this is the accuracy)
        macro    = the mean of the per-class scores over the classes present
                   (true or predicted at least once, as scikit-learn)
        weighted = the per-class scores averaged with weights support_c / N
    """
    per_class = _divide(numerator, denominator)
    if average is None:
        return per_class
    if average == "micro":
        return float(_divide(numerator.sum(), denominator.sum()))
    support = confusion.sum(axis=1)
    if average == "macro":
        present = (support + confusion.sum(axis=0)) > 0
        return float(per_class[present].mean()) if present.any() else 0.0
    return float(_divide((per_class * support).sum(), support.sum()))  # weighted


class _ConfusionMatrixMetric(Metric):
    """A metric read off the confusion matrix of everything seen since reset_state().

    Multi-class predictions give one score per class, combined by `average`
    (see _average); a single output column is a binary prediction, scored for
    the positive class 1 as Keras and scikit-learn do.
    """

    _parts = None  # confusion matrix -> (numerator, denominator) per class

    def __init__(self, average="macro", name=None):
        if average not in AVERAGES:
            raise ValueError(f"{name}: average must be one of {AVERAGES}, got {average!r}")
        self.average = average
        super().__init__(name)

    def get_config(self):
        return {"average": self.average, "name": self.name}

    def reset_state(self):
        self.confusion = None
        self.binary = False

    def update_state(self, y_true, y_pred):
        true, predicted, num_classes, self.binary = _class_indices(y_true, y_pred)
        counts = _count_pairs(true, predicted, num_classes)
        if self.confusion is None:
            self.confusion = counts
            return
        # Class indices (not scores) can reveal a new, higher class in a later batch.
        size = max(len(self.confusion), num_classes)
        total = np.zeros((size, size), dtype=np.int64)
        total[:len(self.confusion), :len(self.confusion)] += self.confusion
        total[:num_classes, :num_classes] += counts
        self.confusion = total

    def result(self):
        """A float, or an array of one score per class when average=None."""
        if self.confusion is None:
            return 0.0
        numerator, denominator = self._parts(self.confusion)
        if self.binary:
            return float(_divide(numerator[1], denominator[1]))
        return _average(numerator, denominator, self.confusion, self.average)


class Precision(_ConfusionMatrixMetric):
    """precision = TP / (TP + FP), per class; macro-averaged by default."""

    _parts = staticmethod(_precision_parts)

    def __init__(self, average="macro", name="precision"):
        super().__init__(average, name)


class Recall(_ConfusionMatrixMetric):
    """recall = TP / (TP + FN), per class; macro-averaged by default."""

    _parts = staticmethod(_recall_parts)

    def __init__(self, average="macro", name="recall"):
        super().__init__(average, name)


class F1Score(_ConfusionMatrixMetric):
    """F1 = 2·precision·recall / (precision + recall) = 2·TP / (2·TP + FP + FN),
    per class; macro-averaged by default (the mean of per-class F1, as Keras
    and scikit-learn, not the F1 of the mean precision and recall)."""

    _parts = staticmethod(_f1_parts)

    def __init__(self, average="macro", name="f1"):
        super().__init__(average, name)


def classification_report(y_true, y_pred, target_names=None, digits=2):
    """A printable table like scikit-learn's: precision, recall, F1 and support
    (the number of true samples) for every class that occurs in y_true or
    y_pred, then the accuracy, the macro average and the support-weighted
    average. Arguments as confusion_matrix; target_names[c] names class c."""
    confusion = confusion_matrix(y_true, y_pred)
    if target_names is not None and len(target_names) < len(confusion):
        raise ValueError(f"target_names has {len(target_names)} names for {len(confusion)} classes")
    all_parts = [parts(confusion) for parts in (_precision_parts, _recall_parts, _f1_parts)]
    support = confusion.sum(axis=1)
    present = np.flatnonzero((support + confusion.sum(axis=0)) > 0)
    names = [str(target_names[c]) if target_names is not None else str(c) for c in present]

    width = max([len(n) for n in names] + [len("weighted avg"), digits])
    headers = ["precision", "recall", "f1-score", "support"]
    row_format = "{:>{width}s} " + " {:>9.{digits}f}" * 3 + " {:>9}\n"
    report = "{:>{width}s} ".format("", width=width) + "".join(f" {h:>9}" for h in headers) + "\n\n"
    per_class = [_average(num, den, confusion, None) for num, den in all_parts]
    for name, c in zip(names, present):
        report += row_format.format(name, *(scores[c] for scores in per_class), support[c],
                                    width=width, digits=digits)
    total = int(support.sum())
    accuracy = _average(*all_parts[0], confusion, "micro")
    report += "\n" + "{:>{width}s} ".format("accuracy", width=width) + " " * 20
    report += " {:>9.{digits}f} {:>9}\n".format(accuracy, total, digits=digits)
    for average in ("macro", "weighted"):
        scores = [_average(num, den, confusion, average) for num, den in all_parts]
        report += row_format.format(f"{average} avg", *scores, total, width=width, digits=digits)
    return report


_BY_NAME = {
    "accuracy": Accuracy, "acc": Accuracy,
    "precision": Precision, "recall": Recall, "f1": F1Score, "f1_score": F1Score,
    "top_k_accuracy": functools.partial(TopKCategoricalAccuracy, name="top_k_accuracy"),
    "top_k_categorical_accuracy": TopKCategoricalAccuracy,
    "sparse_top_k_categorical_accuracy": SparseTopKCategoricalAccuracy,
}


def get(spec):
    """A Metric from a name or a Metric (returned as is)."""
    if isinstance(spec, Metric):
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"metric must be a name such as 'accuracy' or a fromzero.metrics.Metric, "
                        f"got {spec!r}")
    return utils.lookup("metric", spec, _BY_NAME)()


def deserialize(spec):
    """The metric utils.serialize saved, or a metric name (files before format 3)."""
    if isinstance(spec, str):
        return get(spec)
    return utils.deserialize("metric", spec, _CLASSES)
