"""Load a dataset laid out like the original MNIST distribution.

Such a folder holds four IDX files (see _idx.py), each either gzip-compressed
("<name>.gz") or raw ("<name>"): 28x28 images and labels 0-9 for a training
and a test split. MNIST and Fashion-MNIST both use this layout.
"""

from pathlib import Path

from ._idx import read_idx

IMAGE_SHAPE = (28, 28)
NUM_CLASSES = 10
TRAIN_IMAGES = "train-images-idx3-ubyte"
TRAIN_LABELS = "train-labels-idx1-ubyte"
TEST_IMAGES = "t10k-images-idx3-ubyte"
TEST_LABELS = "t10k-labels-idx1-ubyte"


def load_folder(folder, missing_hint=""):
    """Return ((x_train, y_train), (x_test, y_test)) read from `folder`.

    Raises FileNotFoundError listing the missing files, followed by
    `missing_hint` (how to get them) if given, and ValueError if a file is
    malformed, the image and label counts differ or a label is not 0-9.
    """
    folder = Path(folder)
    train_images, train_labels, test_images, test_labels = _find_files(folder, missing_hint)
    return _load_split(train_images, train_labels), _load_split(test_images, test_labels)


def _find_files(folder, missing_hint):
    """Return the path of each of the four files, preferring "<name>.gz" to "<name>"."""
    found, missing = [], []
    for name in (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS):
        candidates = [folder / f"{name}.gz", folder / name]
        existing = [candidate for candidate in candidates if candidate.is_file()]
        if existing:
            found.append(existing[0])
        else:
            missing.append(f"{name}[.gz]")
    if missing:
        message = f"missing {', '.join(missing)} in folder {folder}"
        raise FileNotFoundError(f"{message}; {missing_hint}" if missing_hint else message)
    return found


def _load_split(images_path, labels_path):
    """Read one split's images and labels and check that they belong together."""
    labels = read_idx(labels_path, item_shape=())
    if labels.size and labels.max() >= NUM_CLASSES:
        raise ValueError(f"{labels_path}: label {labels.max()} out of range: "
                         f"expected 0 to {NUM_CLASSES - 1}")
    images = read_idx(images_path, item_shape=IMAGE_SHAPE)
    if len(images) != len(labels):
        raise ValueError(f"{images_path} has {len(images)} images but "
                         f"{labels_path} has {len(labels)} labels")
    return images, labels
