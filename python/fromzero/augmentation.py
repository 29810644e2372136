"""Data augmentation: new training images made from old ones by small random
moves, so the model learns that a digit shifted by a pixel or tilted by a
few degrees is still the same digit.

Images come in batches of shape (N, H, W) or (N, H, W, C). Each function
transforms the whole batch with NumPy index arithmetic (no Python loop over
images or pixels), drawing one random shift or angle per image:

    shift(images, rows, cols)           move image n by rows[n] down and cols[n] right
    rotate(images, degrees)             turn image n counter-clockwise by degrees[n]
    random_shift(images, max_shift=2)   shift by whole pixels drawn from [-max_shift, max_shift]
    random_rotation(images, max_degrees=10)  rotate by an angle drawn from [-max_degrees, max_degrees]

Pixels that come from outside the image are 0. With seed=None the random
draws come from fromzero's generator, so fz.utils.set_random_seed(s) makes
them repeat; an integer seed gives a generator of its own.

Training on augmented data. fit() trains on the arrays it is given, so
either augment a fresh copy of the training set for every epoch::

    for epoch in range(5):
        model.fit(fz.augmentation.random_shift(x_train), y_train, epochs=1)

or write the training loop by hand over augmented minibatches::

    for epoch in range(5):
        for xb, yb in fz.augmentation.augmented_batches(x_train, y_train, 32,
                                                        [random_shift, random_rotation]):
            pred = model.forward(xb, training=True)
            model.backward(model.loss.gradient(yb, pred))
            model.optimizer.apply_gradients(zip(model.trainable_grads, model.trainable_params))

Memory grows with N (a few float32 arrays of N·H·W values), so transform a
large data set in chunks, as augmented_batches does.
"""

import numpy as np

from . import _core, utils


def _check_images(images, what):
    images = np.asarray(images)
    if images.ndim not in (3, 4):
        raise ValueError(f"{what}: images must be a batch of shape (N, H, W) or (N, H, W, C), "
                         f"got shape {images.shape}")
    if images.dtype.kind not in "fiub":
        raise TypeError(f"{what}: images must hold numbers, got dtype {images.dtype}")
    return images


def _per_image(values, n, what):
    """values as an array of one number per image (a scalar is used for all)."""
    values = np.asarray(values)
    if values.ndim == 0:
        values = np.full(n, values)
    if values.shape != (n,):
        raise ValueError(f"{what} must be a number or one number per image ({n}), "
                         f"got shape {values.shape}")
    return values


def _generator(seed):
    return utils.generator() if seed is None else np.random.default_rng(seed)


def _gather(images, rows, cols):
    """out[n, i, j] = images[n, rows[n, i, j], cols[n, i, j]], and 0 where that
    pixel lies outside the image. rows and cols are integer arrays that
    broadcast to (N, H, W); a channel axis comes along untouched."""
    n, height, width = images.shape[:3]
    inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
    batch = np.arange(n).reshape(n, 1, 1)
    values = images[batch, np.clip(rows, 0, height - 1), np.clip(cols, 0, width - 1)]
    if images.ndim == 4:
        inside = inside[..., None]
    return np.where(inside, values, 0)


def shift(images, rows, cols):
    """Move image n down by rows[n] and right by cols[n] whole pixels (negative:
    up, left), filling with 0:  out[n, i, j] = images[n, i − rows[n], j − cols[n]].
    rows and cols are integers, one per image or one for all. The dtype is kept."""
    images = _check_images(images, "shift")
    n, height, width = images.shape[:3]
    rows = _per_image(rows, n, "shift: rows").astype(np.int64)
    cols = _per_image(cols, n, "shift: cols").astype(np.int64)
    source_rows = np.arange(height)[None, :, None] - rows[:, None, None]   # (N, H, 1)
    source_cols = np.arange(width)[None, None, :] - cols[:, None, None]    # (N, 1, W)
    return _gather(images, source_rows, source_cols).astype(images.dtype, copy=False)


def rotate(images, degrees):
    """Turn image n counter-clockwise by degrees[n] about its centre, with
    bilinear interpolation and 0 outside the image.

    Each output pixel (i, j) looks up where it came from: with the centre
    (cy, cx) = ((H−1)/2, (W−1)/2), dy = i − cy, dx = j − cx and θ the angle,

        source row = cy + cos θ · dy + sin θ · dx
        source col = cx + cos θ · dx − sin θ · dy

    (the inverse rotation; rows grow downwards). The value there is the
    bilinear blend of its four neighbouring pixels, weighted by closeness:
    with r0 = ⌊row⌋, c0 = ⌊col⌋, a = row − r0, b = col − c0,

        (1−a)(1−b)·p[r0, c0] + (1−a)·b·p[r0, c0+1] + a(1−b)·p[r0+1, c0] + a·b·p[r0+1, c0+1].

    Returns float32 (float64 stays float64): blended values are not integers.
    """
    images = _check_images(images, "rotate")
    n, height, width = images.shape[:3]
    dtype = np.float64 if images.dtype == np.float64 else np.float32
    theta = np.deg2rad(_per_image(degrees, n, "rotate: degrees").astype(np.float64))
    cos = np.cos(theta).astype(dtype)[:, None, None]
    sin = np.sin(theta).astype(dtype)[:, None, None]
    dy = (np.arange(height, dtype=dtype) - (height - 1) / 2)[None, :, None]
    dx = (np.arange(width, dtype=dtype) - (width - 1) / 2)[None, None, :]
    source_rows = (height - 1) / 2 + cos * dy + sin * dx        # (N, H, W)
    source_cols = (width - 1) / 2 + cos * dx - sin * dy
    r0, c0 = np.floor(source_rows), np.floor(source_cols)
    a, b = source_rows - r0, source_cols - c0
    r0, c0 = r0.astype(np.intp), c0.astype(np.intp)
    if images.ndim == 4:
        a, b = a[..., None], b[..., None]
    pixels = images.astype(dtype, copy=False)
    return ((1 - a) * (1 - b) * _gather(pixels, r0, c0) + (1 - a) * b * _gather(pixels, r0, c0 + 1)
            + a * (1 - b) * _gather(pixels, r0 + 1, c0) + a * b * _gather(pixels, r0 + 1, c0 + 1))


def random_shift(images, max_shift=2, seed=None):
    """Shift every image by its own whole-pixel amounts, rows and columns each
    drawn uniformly from [-max_shift, max_shift]; 0 fills the uncovered edge."""
    images = _check_images(images, "random_shift")
    if isinstance(max_shift, bool) or not isinstance(max_shift, (int, np.integer)) or max_shift < 0:
        raise ValueError(f"random_shift: max_shift must be an integer >= 0, got {max_shift!r}")
    offsets = _generator(seed).integers(-max_shift, max_shift + 1, size=(2, len(images)))
    return shift(images, offsets[0], offsets[1])


def random_rotation(images, max_degrees=10, seed=None):
    """Rotate every image by its own angle drawn uniformly from
    [-max_degrees, max_degrees] (bilinear, 0 outside; see rotate)."""
    images = _check_images(images, "random_rotation")
    if isinstance(max_degrees, bool) or not isinstance(max_degrees, (int, float, np.number)) \
            or not 0 <= max_degrees <= 180:
        raise ValueError(f"random_rotation: max_degrees must be a number in [0, 180], "
                         f"got {max_degrees!r}")
    angles = _generator(seed).uniform(-max_degrees, max_degrees, size=len(images))
    return rotate(images, angles)


def augmented_batches(x, y, batch_size, transforms, shuffle=True):
    """One pass over (x, y) in minibatches (xb, yb), each xb passed through
    every function of `transforms` in turn (e.g. [random_shift,
    random_rotation]; use functools.partial to set their arguments).

    The order is shuffled with fromzero's generator when `shuffle`, so
    fz.utils.set_random_seed makes the batches repeat. The last batch may be
    smaller. y is passed through unchanged.
    """
    x, y = np.asarray(x), np.asarray(y)
    if len(x) != len(y):
        raise ValueError(f"augmented_batches: x has {len(x)} samples but y has {len(y)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"augmented_batches: batch_size must be a positive integer, got {batch_size!r}")
    if callable(transforms):
        transforms = [transforms]
    order = (_core.random_permutation(len(x), utils.next_seed()) if shuffle
             else np.arange(len(x)))
    for start in range(0, len(x), batch_size):
        index = order[start:start + batch_size]
        xb = x[index]
        for transform in transforms:
            xb = transform(xb)
        yield xb, y[index]
