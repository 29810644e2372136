"""MNIST handwritten digits, shipped with fromzero so it works offline.

The packaged files are in data/mnist/ next to this module; their README.md
gives their provenance and licence (CC BY-SA 3.0) and SHA256SUMS their
checksums, verified on every load.
"""

import hashlib
from pathlib import Path

from ._folder import load_folder

PACKAGED_FOLDER = Path(__file__).parent / "data" / "mnist"


def load_data(path=None):
    """Return the MNIST digits as ((x_train, y_train), (x_test, y_test)).

    x_train is uint8 of shape (60000, 28, 28), pixels 0-255 with 0 the
    background; y_train is uint8 of shape (60000,), digits 0-9; the test
    split has 10000 of each. Same arrays as keras.datasets.mnist.load_data().

    With path=None the copy packaged with fromzero is read and its SHA-256
    checksums verified. Otherwise `path` is a folder holding the four files of
    the original distribution, gzipped or not: train-images-idx3-ubyte,
    train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte.
    (Unlike Keras, whose `path` names a cache file, nothing is downloaded.)
    """
    if path is not None:
        return load_folder(path)
    _verify_packaged_checksums()
    return load_folder(PACKAGED_FOLDER)


def _verify_packaged_checksums():
    """Compare each packaged .gz file with its SHA-256 line in SHA256SUMS."""
    sums = (PACKAGED_FOLDER / "SHA256SUMS").read_text().splitlines()
    for expected_digest, name in (line.split() for line in sums if line.strip()):
        if not name.endswith(".gz"):
            continue  # SHA256SUMS also lists the uncompressed files, not packaged
        digest = hashlib.sha256((PACKAGED_FOLDER / name).read_bytes()).hexdigest()
        if digest != expected_digest:
            raise ValueError(f"packaged file {PACKAGED_FOLDER / name} is corrupted: "
                             f"SHA-256 expected {expected_digest}, found {digest}; "
                             f"reinstall fromzero")
