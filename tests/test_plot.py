"""fz.plot: every picture renders headless (Agg) and saves a non-empty PNG;
`fromzero train --plot DIR` writes all four; without matplotlib the error says
how to install it. Skipped when matplotlib is not installed."""

import subprocess
import sys

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib", reason="fz.plot needs matplotlib (pip install fromzero[plot])")
matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402

import fromzero as fz  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path):
    data = path.read_bytes()
    assert len(data) > 1000, f"{path} is almost empty ({len(data)} bytes)"
    assert data.startswith(PNG_SIGNATURE), f"{path} is not a PNG"


@pytest.fixture(scope="module")
def trained():
    """A small MLP trained for 2 epochs on 600 MNIST digits, and 300 test digits."""
    fz.utils.set_random_seed(0)
    (x, y), (xt, yt) = fz.datasets.mnist.load_data()
    x, xt = x[:600] / 255.0, xt[:300] / 255.0
    model = fz.Sequential([fz.layers.Dense(32, activation="relu"),
                           fz.layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y[:600], epochs=2, validation_split=0.2, verbose=0)
    return model, history, xt, yt[:300]


def test_history(trained, tmp_path):
    _, history, _, _ = trained
    fig = fz.plot.history(history, path=tmp_path / "history.png")
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2  # loss, accuracy
    loss_axes = fig.axes[0]
    labels = [line.get_label() for line in loss_axes.get_lines()]
    assert labels == ["training loss", "validation loss"]
    np.testing.assert_allclose(loss_axes.get_lines()[0].get_ydata(), history.history["loss"])
    assert_png(tmp_path / "history.png")


def test_history_accepts_dict_without_validation(tmp_path):
    fig = fz.plot.history({"loss": [1.0, 0.5, 0.25]}, path=tmp_path / "h.png")
    assert len(fig.axes) == 1 and len(fig.axes[0].get_lines()) == 1
    assert_png(tmp_path / "h.png")
    with pytest.raises(ValueError, match="loss"):
        fz.plot.history({"accuracy": [0.5]})


def test_confusion_matrix(trained, tmp_path):
    model, _, xt, yt = trained
    scores = model.predict(xt)
    fig = fz.plot.confusion_matrix(yt, scores, path=tmp_path / "cm.png")
    image = fig.axes[0].get_images()[0].get_array()
    expected = fz.metrics.confusion_matrix(yt, scores)
    np.testing.assert_array_equal(image, expected)
    assert image.sum() == len(yt)
    assert_png(tmp_path / "cm.png")
    # class indices work too, and normalize shows row shares
    fig = fz.plot.confusion_matrix([0, 1, 1, 2], [0, 1, 2, 2], normalize=True,
                                   class_names=["a", "b", "c"])
    np.testing.assert_allclose(fig.axes[0].get_images()[0].get_array()[1], [0, 0.5, 0.5])


def test_weights_dense_as_28x28_images(trained, tmp_path):
    model, _, _, _ = trained
    dense = model.layers[1]  # after the Flatten a Sequential fed images puts before a Dense
    fig = fz.plot.weights(dense, path=tmp_path / "w.png")
    mosaic = fig.axes[0].get_images()[0].get_array()
    # 32 units in a 6x6 grid of 28x28 tiles with 3-pixel gaps
    assert mosaic.shape == (6 * 31 - 3, 6 * 31 - 3)
    first = mosaic[:28, :28]
    kernel = dense.kernel[:, 0].reshape(28, 28)
    np.testing.assert_allclose(first, kernel / np.abs(kernel).max(), rtol=1e-6)
    assert_png(tmp_path / "w.png")
    # a model means its first layer with a kernel
    np.testing.assert_array_equal(fz.plot.weights(model).axes[0].get_images()[0].get_array(), mosaic)


@pytest.mark.parametrize("channels", [1, 3, 8])
def test_weights_conv_filters_as_tiles(tmp_path, channels):
    layer = fz.layers.Conv2D(6, 3)
    layer.build((None, 10, 10, channels))
    fig = fz.plot.weights(layer, path=tmp_path / "conv.png")
    mosaic = fig.axes[0].get_images()[0].get_array()
    assert mosaic.shape[:2] == (2 * 4 - 1, 3 * 4 - 1)  # 6 filters: 2 rows of 3, 1-pixel gaps
    assert mosaic.ndim == (3 if channels == 3 else 2)
    assert_png(tmp_path / "conv.png")


def test_weights_errors():
    layer = fz.layers.Dense(4)
    layer.build((10,))
    with pytest.raises(ValueError, match="image_shape"):
        fz.plot.weights(layer)
    assert fz.plot.weights(layer, image_shape=(2, 5)) is not None
    with pytest.raises(ValueError, match="Dense or Conv2D"):
        fz.plot.weights(fz.layers.ReLU())


def test_misclassified(trained, tmp_path):
    model, _, xt, yt = trained
    fig = fz.plot.misclassified(model, xt, yt, n=9, path=tmp_path / "mis.png")
    wrong = int(np.sum(np.argmax(model.predict(xt), axis=1) != yt))
    shown = [ax for ax in fig.axes if ax.get_images()]
    assert len(shown) == min(9, wrong)
    for ax in shown:
        true, pred = ax.get_title().split("\n")
        assert true.split()[1] != pred.split()[1]  # really wrong
    assert f"{wrong} of {len(yt)}" in fig.get_suptitle()
    assert_png(tmp_path / "mis.png")


def test_misclassified_without_mistakes(tmp_path):
    model = fz.Sequential([fz.layers.Dense(2, activation="softmax")])
    model.build((None, 4))
    x = np.eye(4, dtype=np.float32)
    y = np.argmax(model.predict(x), axis=1)  # the model's own answers: all right
    fig = fz.plot.misclassified(model, x, y, path=tmp_path / "none.png")
    assert "0 of 4" in fig.get_suptitle()
    assert_png(tmp_path / "none.png")


def test_loss_curve_and_attention_map(tmp_path):
    fig = fz.plot.loss_curve([0, 250, 500], [4.2, 2.5, 2.1], [4.2, 2.6, 2.2],
                             path=tmp_path / "loss.png")
    assert isinstance(fig, Figure)
    assert_png(tmp_path / "loss.png")
    probs = np.tril(np.ones((4, 4)))
    probs /= probs.sum(axis=1, keepdims=True)
    assert isinstance(fz.plot.attention(probs, list("ab\nc"), path=tmp_path / "att.png"), Figure)
    assert_png(tmp_path / "att.png")
    with pytest.raises(ValueError, match="one token label per row"):
        fz.plot.attention(probs, list("abc"))


def test_no_pyplot_global_state(trained):
    model, history, xt, yt = trained
    before = set(sys.modules)
    fz.plot.history(history)
    fz.plot.weights(model)
    assert "matplotlib.pyplot" not in set(sys.modules) - before


def test_missing_matplotlib_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import fails
    with pytest.raises(ImportError, match=r"pip install fromzero\[plot\]"):
        fz.plot.history({"loss": [1.0]})


def test_import_fromzero_without_matplotlib():
    code = ("import sys; sys.modules['matplotlib'] = None\n"
            "import fromzero as fz\n"
            "assert hasattr(fz, 'plot')\n"
            "try:\n    fz.plot.history({'loss': [1.0]})\n"
            "except ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install fromzero[plot]" in out.stdout


def test_cli_plot_writes_four_pngs(tmp_path, monkeypatch, capsys):
    """`fromzero train --plot DIR` on a tiny MNIST subset (the dataset loader is
    cut down so the test runs in a second or two)."""
    from fromzero import cli

    real = fz.datasets.mnist.load_data

    def small():
        (x, y), (xt, yt) = real()
        return (x[:500], y[:500]), (xt[:200], yt[:200])

    monkeypatch.setattr(fz.datasets.mnist, "load_data", small)
    assert cli.main(["train", "--epochs", "1", "--seed", "0", "--plot", str(tmp_path / "plots")]) == 0
    for name in ("history", "confusion_matrix", "weights", "misclassified"):
        assert_png(tmp_path / "plots" / f"{name}.png")
    assert "plots written to" in capsys.readouterr().out


def test_misclassified_binary_model(tmp_path):
    """A sigmoid output (N, 1): class 1 above 0.5, the title shows the chosen class's probability."""
    fz.utils.set_random_seed(0)
    model = fz.Sequential([fz.layers.Dense(1, activation="sigmoid")])
    x = np.random.default_rng(0).standard_normal((40, 2)).astype(np.float32)
    model.build((None, 2))
    p1 = model.predict(x).reshape(-1)
    y = (p1 <= 0.5).astype(int)  # every answer wrong
    fig = fz.plot.misclassified(model, x, y, n=4, path=tmp_path / "binary.png")
    assert "40 of 40" in fig.get_suptitle()
    for ax, p in zip([ax for ax in fig.axes if ax.get_images()], p1[:4]):
        shown = int(ax.get_title().split("(")[1].rstrip("%)"))
        assert shown == round(100 * max(p, 1 - p))
    assert_png(tmp_path / "binary.png")
