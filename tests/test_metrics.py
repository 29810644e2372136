"""Metrics against values computed by hand (and scikit-learn's, when installed)."""

import numpy as np
import pytest

import fromzero as fz
from fromzero import metrics

# Five samples, three classes, worked by hand:
#   true       0 0 0 1 2
#   predicted  0 0 1 1 1
Y_TRUE = np.array([0, 0, 0, 1, 2])
Y_PRED = np.array([0, 0, 1, 1, 1])
CONFUSION = np.array([[2, 1, 0],    # class 0: 2 right, 1 taken for class 1
                      [0, 1, 0],
                      [0, 1, 0]])   # class 2: never found
# precision = TP / (TP + FP): class 0: 2/2, class 1: 1/3, class 2: 0 (never predicted)
PRECISION = np.array([1.0, 1 / 3, 0.0])
# recall = TP / (TP + FN): class 0: 2/3, class 1: 1/1, class 2: 0/1
RECALL = np.array([2 / 3, 1.0, 0.0])
# F1 = 2PR / (P + R): class 0: 0.8, class 1: 0.5, class 2: 0
F1 = np.array([0.8, 0.5, 0.0])
SUPPORT = np.array([3, 1, 1])


def scores(labels, num_classes=3):
    """(N, classes) scores whose argmax is `labels`."""
    return np.eye(num_classes, dtype=np.float32)[labels] * 0.8 + 0.1


def test_confusion_matrix_from_indices_scores_and_one_hot():
    assert np.array_equal(metrics.confusion_matrix(Y_TRUE, Y_PRED), CONFUSION)
    assert np.array_equal(metrics.confusion_matrix(Y_TRUE, scores(Y_PRED)), CONFUSION)
    assert np.array_equal(metrics.confusion_matrix(np.eye(3)[Y_TRUE], scores(Y_PRED)), CONFUSION)
    wide = metrics.confusion_matrix(Y_TRUE, Y_PRED, num_classes=4)
    assert wide.shape == (4, 4) and np.array_equal(wide[:3, :3], CONFUSION) and wide.dtype == np.int64


def test_confusion_matrix_binary_probabilities_threshold_at_half():
    probabilities = np.array([[0.9], [0.2], [0.6], [0.4]])
    assert np.array_equal(metrics.confusion_matrix([1, 0, 0, 1], probabilities), [[1, 1], [1, 1]])


def test_confusion_matrix_rejects_bad_labels():
    with pytest.raises(ValueError, match="outside"):
        metrics.confusion_matrix([0, 3], scores([0, 1]))
    with pytest.raises(ValueError, match=">= 0"):
        metrics.confusion_matrix([0, -1], [0, 1])
    with pytest.raises(ValueError, match="whole numbers"):
        metrics.confusion_matrix([0, 0.5], [0, 1])
    with pytest.raises(ValueError, match="samples"):
        metrics.confusion_matrix([0, 1, 2], [0, 1])


@pytest.mark.parametrize("cls, per_class", [(metrics.Precision, PRECISION),
                                            (metrics.Recall, RECALL), (metrics.F1Score, F1)])
def test_per_class_and_averages_by_hand(cls, per_class):
    def result(average):
        metric = cls(average=average)
        metric.update_state(Y_TRUE[:2], scores(Y_PRED[:2]))  # accumulated over two batches
        metric.update_state(Y_TRUE[2:], scores(Y_PRED[2:]))
        return metric.result()

    assert np.allclose(result(None), per_class)
    assert result("macro") == pytest.approx(per_class.mean())
    assert result("weighted") == pytest.approx((per_class * SUPPORT).sum() / SUPPORT.sum())
    assert result("micro") == pytest.approx(3 / 5)  # single-label micro average = accuracy


def test_binary_single_output_scores_the_positive_class():
    y_true = np.array([1, 1, 1, 0, 0])
    probabilities = np.array([[0.9], [0.7], [0.2], [0.6], [0.1]])  # TP=2, FN=1, FP=1
    for cls, expected in [(metrics.Precision, 2 / 3), (metrics.Recall, 2 / 3),
                          (metrics.F1Score, 2 / 3)]:
        metric = cls()
        metric.update_state(y_true.reshape(-1, 1).astype(np.float32), probabilities)
        assert metric.result() == pytest.approx(expected)


def test_macro_average_skips_classes_never_seen():
    metric = metrics.Precision()
    metric.update_state([0, 1], scores([0, 1], num_classes=4))  # classes 2 and 3 never occur
    assert metric.result() == 1.0
    assert np.array_equal(metrics.Precision(average=None).result(), 0.0)  # nothing seen yet


def test_reset_state_and_growing_class_indices():
    metric = metrics.Recall(average=None)
    metric.update_state([0, 1], [0, 1])
    metric.update_state([3], [3])  # indices may reveal a higher class later
    assert np.allclose(metric.result(), [1, 1, 0, 1])
    metric.reset_state()
    assert metric.result() == 0.0


def test_bad_average_is_rejected():
    with pytest.raises(ValueError, match="average"):
        metrics.F1Score(average="samples")


def test_top_k_accuracy_with_integer_and_one_hot_labels():
    y_pred = np.array([[0.1, 0.5, 0.2, 0.2],    # true 2: only class 1 higher -> rank 2
                       [0.7, 0.1, 0.1, 0.1],    # true 0: rank 1
                       [0.4, 0.3, 0.2, 0.1]])   # true 3: rank 4
    labels = np.array([2, 0, 3])
    for k, expected in [(1, 1 / 3), (2, 2 / 3), (4, 1.0)]:
        for metric, y_true in [(metrics.TopKCategoricalAccuracy(k), np.eye(4)[labels]),
                               (metrics.TopKCategoricalAccuracy(k), labels),
                               (metrics.SparseTopKCategoricalAccuracy(k), labels)]:
            metric.update_state(y_true, y_pred)
            assert metric.result() == pytest.approx(expected)
    by_name = metrics.get("top_k_accuracy")
    assert (by_name.name, by_name.k) == ("top_k_accuracy", 5)


def test_top_k_ties_count_in_favour():
    metric = metrics.TopKCategoricalAccuracy(k=1)
    metric.update_state([1], [[0.5, 0.5, 0.0]])
    assert metric.result() == 1.0


def test_classification_report_by_hand():
    report = metrics.classification_report(Y_TRUE, Y_PRED, target_names=["cat", "dog", "eel"])
    lines = report.splitlines()
    assert lines[0].split() == ["precision", "recall", "f1-score", "support"]
    assert lines[2].split() == ["cat", "1.00", "0.67", "0.80", "3"]
    assert lines[3].split() == ["dog", "0.33", "1.00", "0.50", "1"]
    assert lines[4].split() == ["eel", "0.00", "0.00", "0.00", "1"]
    assert lines[6].split() == ["accuracy", "0.60", "5"]
    assert lines[7].split() == ["macro", "avg", "0.44", "0.56", "0.43", "5"]
    assert lines[8].split() == ["weighted", "avg", "0.67", "0.60", "0.58", "5"]


def test_compiled_metrics_in_history_and_evaluate():
    fz.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((120, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0)   # three classes
    model = fz.Sequential([fz.layers.Dense(3, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=
                  ["accuracy", "precision", "recall", "f1", fz.metrics.F1Score(average=None, name="f1s")])
    history = model.fit(x, y, epochs=2, batch_size=32, verbose=0, validation_split=0.25)
    for name in ["precision", "recall", "f1", "val_precision", "val_recall", "val_f1"]:
        assert len(history.history[name]) == 2 and 0 <= history.history[name][-1] <= 1
    loss, accuracy, precision, recall, f1, f1_per_class = model.evaluate(x, y, verbose=0)
    predicted = model.predict(x)
    expected = metrics.confusion_matrix(y, predicted)
    tp = np.diag(expected)
    assert accuracy == pytest.approx(tp.sum() / len(y))
    assert np.allclose(f1_per_class, 2 * tp / (expected.sum(0) + expected.sum(1)))
    assert isinstance(precision, float) and isinstance(recall, float) and isinstance(f1, float)


def test_matches_scikit_learn():
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    y_true = rng.integers(0, 6, 300)
    y_scores = rng.random((300, 6)) + np.eye(6)[y_true] * rng.random((300, 1))
    y_pred = y_scores.argmax(1)
    assert np.array_equal(metrics.confusion_matrix(y_true, y_scores), sk.confusion_matrix(y_true, y_pred))
    for cls, reference in [(metrics.Precision, sk.precision_score), (metrics.Recall, sk.recall_score),
                           (metrics.F1Score, sk.f1_score)]:
        for average in metrics.AVERAGES:
            metric = cls(average=average)
            metric.update_state(y_true, y_scores)
            assert np.allclose(metric.result(), reference(y_true, y_pred, average=average,
                                                          zero_division=0))
    assert metrics.classification_report(y_true, y_scores) == \
        sk.classification_report(y_true, y_pred, zero_division=0)
