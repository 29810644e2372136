"""Fashion-MNIST: Zalando's 28x28 grayscale clothing images, MNIST's layout.

Not shipped with fromzero (30 MB); by default read from where Debian's
package dataset-fashion-mnist installs it.
"""

from pathlib import Path

from ._folder import load_folder

DEBIAN_FOLDER = Path("/usr/share/datasets/fashion-mnist")
INSTALL_HINT = ("to get Fashion-MNIST run `apt-get install dataset-fashion-mnist`, "
                "or pass path= a folder with the four IDX files")


def load_data(path=None):
    """Return Fashion-MNIST as ((x_train, y_train), (x_test, y_test)).

    x_train is uint8 of shape (60000, 28, 28), y_train uint8 of shape
    (60000,); the test split has 10000 of each. Labels: 0 T-shirt/top,
    1 trouser, 2 pullover, 3 dress, 4 coat, 5 sandal, 6 shirt, 7 sneaker,
    8 bag, 9 ankle boot. Same arrays as keras.datasets.fashion_mnist.load_data().

    With path=None the files come from DEBIAN_FOLDER, else from the folder
    `path`; either way the four standard IDX file names, gzipped or not:
    train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte,
    t10k-labels-idx1-ubyte. Raises FileNotFoundError if any is missing.
    """
    if path is not None:
        return load_folder(path)
    return load_folder(DEBIAN_FOLDER, missing_hint=INSTALL_HINT)
