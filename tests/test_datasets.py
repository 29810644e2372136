"""Tests for fromzero.datasets: the packaged MNIST, Fashion-MNIST and the IDX reader."""

import gzip
import shutil
import struct
import tracemalloc

import numpy as np
import pytest

import fromzero as fz
from fromzero.datasets import fashion_mnist, mnist

FILE_NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
IMAGE_MAGIC = 0x00000803
LABEL_MAGIC = 0x00000801


def idx_bytes(array, magic=None, sizes=None):
    """Encode a uint8 array as an IDX file; `magic` and `sizes` override the header."""
    if magic is None:
        magic = IMAGE_MAGIC if array.ndim == 3 else LABEL_MAGIC
    if sizes is None:
        sizes = array.shape
    header = struct.pack(f">I{len(sizes)}I", magic, *sizes)
    return header + array.astype(np.uint8).tobytes()


def write_file(folder, key, content, compressed):
    name = FILE_NAMES[key] + (".gz" if compressed else "")
    (folder / name).write_bytes(gzip.compress(content) if compressed else content)
    return name


def synthetic_arrays(num_train=5, num_test=3):
    rng = np.random.default_rng(0)
    return {
        "train_images": rng.integers(0, 256, (num_train, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, num_train, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (num_test, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, num_test, dtype=np.uint8),
    }


def write_folder(folder, arrays, compressed, replace=None):
    """Write the four IDX files; `replace` maps a key to raw file bytes to use instead."""
    replace = replace or {}
    for key, array in arrays.items():
        write_file(folder, key, replace.get(key, idx_bytes(array)), compressed)


@pytest.fixture(scope="module")
def mnist_data():
    return mnist.load_data()


# --- the packaged MNIST -----------------------------------------------------

def test_mnist_shapes_and_dtypes(mnist_data):
    (x_train, y_train), (x_test, y_test) = mnist_data
    assert x_train.shape == (60000, 28, 28)
    assert y_train.shape == (60000,)
    assert x_test.shape == (10000, 28, 28)
    assert y_test.shape == (10000,)
    for array in (x_train, y_train, x_test, y_test):
        assert array.dtype == np.uint8
        assert array.flags.writeable


def test_mnist_first_labels(mnist_data):
    (_, y_train), (_, y_test) = mnist_data
    assert y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert y_test[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


def test_mnist_label_counts(mnist_data):
    (_, y_train), (_, y_test) = mnist_data
    assert np.bincount(y_train).tolist() == [5923, 6742, 5958, 6131, 5842,
                                             5421, 5918, 6265, 5851, 5949]
    assert np.bincount(y_test).tolist() == [980, 1135, 1032, 1010, 982,
                                            892, 958, 1028, 974, 1009]


def test_mnist_pixel_range(mnist_data):
    (x_train, _), (x_test, _) = mnist_data
    for images in (x_train, x_test):
        assert images.min() == 0
        assert images.max() == 255


def test_reachable_as_fz_datasets():
    assert fz.datasets.mnist is mnist
    assert fz.datasets.fashion_mnist is fashion_mnist


def test_corrupted_packaged_file_is_detected(tmp_path, monkeypatch):
    folder = tmp_path / "mnist"
    shutil.copytree(mnist.PACKAGED_FOLDER, folder)
    damaged = folder / "t10k-labels-idx1-ubyte.gz"
    content = bytearray(damaged.read_bytes())
    content[len(content) // 2] ^= 0xFF
    damaged.write_bytes(content)
    monkeypatch.setattr(mnist, "PACKAGED_FOLDER", folder)
    with pytest.raises(ValueError, match="corrupted") as error:
        mnist.load_data()
    assert "t10k-labels-idx1-ubyte.gz" in str(error.value)


# --- loading a folder with path= --------------------------------------------

@pytest.mark.parametrize("compressed", [True, False], ids=["gz", "raw"])
@pytest.mark.parametrize("dataset", [mnist, fashion_mnist], ids=["mnist", "fashion_mnist"])
def test_load_from_folder(tmp_path, dataset, compressed):
    arrays = synthetic_arrays()
    write_folder(tmp_path, arrays, compressed)
    (x_train, y_train), (x_test, y_test) = dataset.load_data(path=tmp_path)
    np.testing.assert_array_equal(x_train, arrays["train_images"])
    np.testing.assert_array_equal(y_train, arrays["train_labels"])
    np.testing.assert_array_equal(x_test, arrays["test_images"])
    np.testing.assert_array_equal(y_test, arrays["test_labels"])
    assert x_train.dtype == y_train.dtype == np.uint8
    assert x_train.flags.writeable


def test_load_from_folder_accepts_str_path(tmp_path):
    write_folder(tmp_path, synthetic_arrays(), compressed=False)
    (x_train, _), _ = mnist.load_data(path=str(tmp_path))
    assert x_train.shape == (5, 28, 28)


def test_missing_files_are_named(tmp_path):
    write_folder(tmp_path, synthetic_arrays(), compressed=True)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError) as error:
        mnist.load_data(path=tmp_path)
    message = str(error.value)
    assert "t10k-labels-idx1-ubyte" in message
    assert "train-images-idx3-ubyte" not in message
    assert str(tmp_path) in message


def malformed_cases():
    """(key of the bad file, its bytes, expected message) for each kind of damage."""
    arrays = synthetic_arrays()
    images = idx_bytes(arrays["train_images"])
    return {
        "bad magic": ("train_images", idx_bytes(arrays["train_images"], magic=0x00000802),
                      "bad magic number"),
        "labels magic for images": ("train_images", idx_bytes(arrays["train_labels"]),
                                    "bad magic number"),
        "27x28 images": ("train_images", idx_bytes(np.zeros((5, 27, 28), np.uint8)),
                         "expected 28x28, found 27x28"),
        "truncated data": ("train_images", images[:-1], "data truncated"),
        "extra bytes": ("train_images", images + b"\0", "data too long"),
        "truncated header": ("train_images", images[:10], "truncated header"),
        "empty file": ("train_labels", b"", "truncated header"),
        "mismatched counts": ("train_labels", idx_bytes(arrays["train_labels"][:4]),
                              "5 images but"),
        "label 10": ("test_labels", idx_bytes(np.array([1, 10, 2], np.uint8)), "label 10"),
    }


@pytest.mark.parametrize("compressed", [True, False], ids=["gz", "raw"])
@pytest.mark.parametrize("case", list(malformed_cases()))
def test_malformed_file_raises_value_error(tmp_path, case, compressed):
    key, content, expected_message = malformed_cases()[case]
    write_folder(tmp_path, synthetic_arrays(), compressed, replace={key: content})
    with pytest.raises(ValueError, match=expected_message) as error:
        mnist.load_data(path=tmp_path)
    assert FILE_NAMES[key] in str(error.value)


@pytest.mark.parametrize("compressed", [True, False], ids=["gz", "raw"])
@pytest.mark.parametrize("key", ["train_images", "train_labels"])
def test_huge_header_fails_without_allocating(tmp_path, key, compressed):
    arrays = synthetic_arrays()
    huge_sizes = (2**31,) + arrays[key].shape[1:]
    bogus = idx_bytes(arrays[key], sizes=huge_sizes)
    write_folder(tmp_path, arrays, compressed, replace={key: bogus})
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=FILE_NAMES[key]):
            mnist.load_data(path=tmp_path)
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak_bytes < 16 * 2**20


def test_damaged_gzip_stream_raises_value_error(tmp_path):
    write_folder(tmp_path, synthetic_arrays(), compressed=True)
    labels = tmp_path / "train-labels-idx1-ubyte.gz"
    labels.write_bytes(labels.read_bytes()[:-12])
    with pytest.raises(ValueError, match="damaged gzip data"):
        mnist.load_data(path=tmp_path)


# --- Fashion-MNIST from Debian's dataset-fashion-mnist -------------------------

@pytest.mark.skipif(not fashion_mnist.DEBIAN_FOLDER.is_dir(),
                    reason="Debian package dataset-fashion-mnist not installed")
def test_fashion_mnist_from_debian_package():
    (x_train, y_train), (x_test, y_test) = fashion_mnist.load_data()
    assert x_train.shape == (60000, 28, 28)
    assert x_test.shape == (10000, 28, 28)
    assert x_train.dtype == x_test.dtype == np.uint8
    assert np.bincount(y_train).tolist() == [6000] * 10
    assert np.bincount(y_test).tolist() == [1000] * 10


def test_fashion_mnist_absent_explains_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(fashion_mnist, "DEBIAN_FOLDER", tmp_path / "absent")
    with pytest.raises(FileNotFoundError) as error:
        fashion_mnist.load_data()
    message = str(error.value)
    assert "apt-get install dataset-fashion-mnist" in message
    assert "path=" in message
    assert str(tmp_path / "absent") in message
