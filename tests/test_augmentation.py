"""Data augmentation: exact shifts and rotations, seeding, batches."""

import functools

import numpy as np
import pytest

import fromzero as fz
from fromzero import augmentation


def numbered_images(n=2, height=5, width=5, channels=None):
    shape = (n, height, width) + ((channels,) if channels else ())
    return np.arange(np.prod(shape)).reshape(shape) + 1


def shifted_by_hand(image, rows, cols):
    out = np.zeros_like(image)
    height, width = image.shape[:2]
    for i in range(height):
        for j in range(width):
            if 0 <= i - rows < height and 0 <= j - cols < width:
                out[i, j] = image[i - rows, j - cols]
    return out


@pytest.mark.parametrize("channels", [None, 3])
def test_shift_moves_each_image_with_zero_fill(channels):
    images = numbered_images(channels=channels).astype(np.uint8)
    out = augmentation.shift(images, rows=[1, -2], cols=[0, 3])
    assert out.dtype == np.uint8 and out.shape == images.shape
    assert np.array_equal(out[0], shifted_by_hand(images[0], 1, 0))
    assert np.array_equal(out[1], shifted_by_hand(images[1], -2, 3))
    assert not augmentation.shift(images, 5, 0).any()  # moved out entirely


@pytest.mark.parametrize("height, width", [(5, 5), (4, 4), (3, 6)])
def test_rotate_by_right_angles_matches_rot90(height, width):
    images = numbered_images(height=height, width=width, channels=2).astype(np.float32)
    assert np.array_equal(augmentation.rotate(images, 0), images)
    assert np.allclose(augmentation.rotate(images, 180), np.rot90(images, 2, axes=(1, 2)), atol=1e-4)
    if height == width:  # a quarter turn keeps the shape only for square images
        assert np.allclose(augmentation.rotate(images, 90), np.rot90(images, 1, axes=(1, 2)),
                           atol=1e-4)  # counter-clockwise
        assert np.allclose(augmentation.rotate(images, -90), np.rot90(images, -1, axes=(1, 2)),
                           atol=1e-4)


def test_rotate_interpolates_linearly():
    # Bilinear interpolation is exact on a linear image p[i, j] = j, so wherever
    # the source lies inside, the output is the source column of the formula.
    size, degrees = 9, 30.0
    image = np.tile(np.arange(size, dtype=np.float64), (size, 1))[None]
    out = augmentation.rotate(image, degrees)[0]
    theta = np.deg2rad(degrees)
    i, j = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    centre = (size - 1) / 2
    source_row = centre + np.cos(theta) * (i - centre) + np.sin(theta) * (j - centre)
    source_col = centre + np.cos(theta) * (j - centre) - np.sin(theta) * (i - centre)
    inside = (source_row >= 0) & (source_row <= size - 1) & (source_col >= 0) & (source_col <= size - 1)
    assert inside.sum() > size * size / 2
    assert np.allclose(out[inside], source_col[inside])
    assert np.all(out[(source_row < -1) | (source_row > size) | (source_col < -1)] == 0)  # zero fill


def test_random_shift_stays_in_range_and_differs_per_image():
    images = numbered_images(n=40, height=7, width=7)
    out = augmentation.random_shift(images, max_shift=2, seed=3)
    shifts = set()
    for image, result in zip(images, out):
        matches = [(r, c) for r in range(-2, 3) for c in range(-2, 3)
                   if np.array_equal(result, shifted_by_hand(image, r, c))]
        assert len(matches) == 1
        shifts.add(matches[0])
    assert len(shifts) > 5


def test_random_transforms_repeat_with_seeds():
    images = numbered_images(n=8, height=6, width=6).astype(np.float32)
    for transform in (augmentation.random_shift, augmentation.random_rotation):
        fz.utils.set_random_seed(7)
        first = transform(images)
        fz.utils.set_random_seed(7)
        assert np.array_equal(transform(images), first)
        assert np.array_equal(transform(images, seed=1), transform(images, seed=1))
    assert np.array_equal(augmentation.random_rotation(images, max_degrees=0), images)


def test_random_rotation_turns_each_image_by_at_most_max_degrees():
    # On the linear image p[i, j] = j − c (c the centre) a turn by θ gives, near
    # the centre, out = cos θ·(j − c) − sin θ·(i − c): fitting that plane
    # recovers each image's angle.
    size = 15
    centre = (size - 1) / 2
    image = np.tile(np.arange(size) - centre, (size, 1))
    out = augmentation.random_rotation(np.repeat(image[None], 50, axis=0), max_degrees=20, seed=0)
    i, j = np.indices((size, size))
    near = (i - centre) ** 2 + (j - centre) ** 2 <= 5 ** 2
    plane = np.stack([j[near] - centre, -(i[near] - centre)], axis=1)   # columns: cos θ, sin θ
    (cos, sin), *_ = np.linalg.lstsq(plane, out[:, near].T, rcond=None)
    angles = np.degrees(np.arctan2(sin, cos))
    assert np.allclose(cos ** 2 + sin ** 2, 1, atol=1e-4)
    assert np.all(np.abs(angles) <= 20) and angles.std() > 5


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        augmentation.random_shift(np.zeros((5, 5)))
    with pytest.raises(ValueError, match="max_shift"):
        augmentation.random_shift(np.zeros((1, 5, 5)), max_shift=-1)
    with pytest.raises(ValueError, match="max_degrees"):
        augmentation.random_rotation(np.zeros((1, 5, 5)), max_degrees=270)
    with pytest.raises(ValueError, match="one number per image"):
        augmentation.shift(np.zeros((2, 5, 5)), [1, 2, 3], 0)


def test_augmented_batches_cover_the_data_once_with_labels_attached():
    labels = np.arange(1, 11)
    images = labels[:, None, None] * np.ones((10, 6, 6))  # image k is filled with its label
    shift = functools.partial(augmentation.random_shift, max_shift=1)
    fz.utils.set_random_seed(0)
    batches = list(augmentation.augmented_batches(images, labels, 4, [shift, augmentation.random_rotation]))
    assert [len(yb) for _, yb in batches] == [4, 4, 2]
    seen = np.concatenate([yb for _, yb in batches])
    assert sorted(seen) == list(labels) and not np.array_equal(seen, labels)  # shuffled
    for xb, yb in batches:
        assert np.allclose(xb.max(axis=(1, 2)), yb)  # the centre keeps its value
        assert (xb == 0).any()  # and the edges were moved or turned
    fz.utils.set_random_seed(0)
    again = list(augmentation.augmented_batches(images, labels, 4, [shift, augmentation.random_rotation]))
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(batches, again))


def test_augmented_batches_train_a_model_by_hand():
    # Small squares (class 0) against large ones (class 1), anywhere after shifting:
    # the total brightness tells them apart, which a linear model can learn.
    fz.utils.set_random_seed(0)
    y = np.arange(64) % 2
    x = np.zeros((64, 10, 10), dtype=np.float32)
    x[y == 0, 4:6, 4:6] = 1.0
    x[y == 1, 3:7, 3:7] = 1.0
    model = fz.Sequential([fz.layers.Flatten(), fz.layers.Dense(2, activation="softmax")])
    model.compile(fz.optimizers.SGD(0.5), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.build((None, 10, 10))
    for _ in range(10):
        for xb, yb in augmentation.augmented_batches(x, y, 16, augmentation.random_shift):
            pred = model.forward(xb, training=True)
            model.backward(model.loss.gradient(yb, pred))
            model.optimizer.apply_gradients(zip(model.trainable_grads, model.trainable_params))
    assert model.evaluate(augmentation.random_shift(x), y, verbose=0)[1] == 1.0
