"""fromzero.utils: to_categorical with Keras's semantics (and clear errors where
Keras would silently wrap or truncate a label)."""

import numpy as np
import pytest

import fromzero as fz

to_categorical = fz.utils.to_categorical


def test_one_hot_rows_by_hand():
    out = to_categorical([0, 2, 1])
    np.testing.assert_array_equal(out, [[1, 0, 0], [0, 0, 1], [0, 1, 0]])
    assert out.dtype == np.float32 and out.shape == (3, 3)


def test_num_classes_may_exceed_the_labels():
    np.testing.assert_array_equal(to_categorical(np.array([1, 0], np.uint8), num_classes=4),
                                  [[0, 1, 0, 0], [1, 0, 0, 0]])


@pytest.mark.parametrize("shape, expected", [((6,), (6, 5)), ((6, 1), (6, 5)), ((2, 3), (2, 3, 5)),
                                             ((2, 3, 1), (2, 3, 5)), ((), (5,)), ((1,), (1, 5))])
def test_shapes_as_keras(shape, expected):
    # (..., 1) labels lose their last axis; a new last axis holds the classes
    labels = np.arange(int(np.prod(shape))).reshape(shape) % 5
    out = to_categorical(labels, 5)
    assert out.shape == expected
    np.testing.assert_array_equal(out.argmax(-1), labels.reshape(expected[:-1]))
    np.testing.assert_array_equal(out.sum(-1), 1)


def test_whole_floats_and_mnist_labels():
    np.testing.assert_array_equal(to_categorical([2.0, 0.0], 3), [[0, 0, 1], [1, 0, 0]])
    (_, y), _ = fz.datasets.mnist.load_data()
    onehot = to_categorical(y[:100])
    assert onehot.shape == (100, 10)
    np.testing.assert_array_equal(onehot.argmax(1), y[:100])


def test_empty_labels_need_num_classes():
    assert to_categorical(np.zeros(0, np.int64), 3).shape == (0, 3)
    with pytest.raises(ValueError, match="pass num_classes"):
        to_categorical([])


@pytest.mark.parametrize("labels, message", [
    ([0, -1], r"label -1 is outside \[0, 3\)"),
    ([0, 3], r"label 3 is outside \[0, 3\)"),
    ([0.5, 1], "whole numbers.*0.5"),
    ([np.nan], "whole numbers.*nan"),
])
def test_bad_labels_are_named(labels, message):
    with pytest.raises(ValueError, match=message):
        to_categorical(labels, 3)


@pytest.mark.parametrize("num_classes", [0, -2, 2.5, "3", True])
def test_num_classes_must_be_a_positive_integer(num_classes):
    with pytest.raises(ValueError, match="num_classes must be a positive integer"):
        to_categorical([0, 1], num_classes)


def test_labels_must_be_numbers():
    with pytest.raises(TypeError, match="labels must be integers"):
        to_categorical(["a", "b"])


def test_categorical_crossentropy_on_one_hot_equals_sparse_on_labels():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((8, 4)).astype(np.float32)
    labels = rng.integers(0, 4, 8)
    dense = fz.losses.CategoricalCrossentropy(from_logits=True)
    sparse = fz.losses.SparseCategoricalCrossentropy(from_logits=True)
    assert dense(to_categorical(labels, 4), logits) == pytest.approx(sparse(labels, logits), rel=1e-6)
