"""The Keras programs of examples/keras_compat/ run on fromzero (on a slice of
the data: CI checks that they run and learn; examples/keras_compat/README.md
has the full-data accuracies next to Keras's)."""

import importlib.util
from pathlib import Path

import pytest

import fromzero as fz

FOLDER = Path(__file__).resolve().parents[1] / "examples" / "keras_compat"
spec = importlib.util.spec_from_file_location("keras_compat_run", FOLDER / "run.py")
runner = importlib.util.module_from_spec(spec)
spec.loader.exec_module(runner)

# Accuracy after training on 300 images, well above chance (0.1) — except the
# convolutional programs, whose few epochs on 300 images only just start to learn.
LEARNS = {"convnet_mnist": 0.15, "batchnorm_cnn_fashion": 0.15, "mini_resnet_fashion": 0.0}


def fashion_mnist_installed():
    try:
        fz.datasets.fashion_mnist.load_data()
    except (FileNotFoundError, OSError, ValueError):
        return False
    return True


def test_there_are_at_least_ten_programs():
    assert len(runner.programs()) >= 10


@pytest.mark.parametrize("name", runner.programs())
def test_program_runs_on_fromzero(name):
    if "fashion" in name and not fashion_mnist_installed():
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
    accuracy, _, output = runner.run(name, "fromzero", subset=300, timeout=300)
    assert accuracy > LEARNS.get(name, 0.5), output[-2000:]


def test_programs_name_fromzero_only_in_their_imports(tmp_path, monkeypatch):
    bad = tmp_path / "bad.py"
    bad.write_text("import fromzero as keras\nx = fromzero.layers.Dense(2)\n")
    with pytest.raises(ValueError, match="'fromzero' outside the import lines"):
        runner.check_imports(bad)
    plain = tmp_path / "plain.py"
    plain.write_text("import keras\n")
    with pytest.raises(ValueError, match="no 'import fromzero as keras' line"):
        runner.check_imports(plain)
