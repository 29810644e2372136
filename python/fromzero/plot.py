"""Pictures of training: learning curves, the confusion matrix, what the first
layer learned, and the images the model gets wrong.

    fz.plot.history(history)                  loss and accuracy per epoch, training vs validation
    fz.plot.confusion_matrix(y_true, y_pred)  which classes are mistaken for which
    fz.plot.weights(layer)                    Dense weights as images, Conv2D filters as tiles
    fz.plot.misclassified(model, x, y, n=16)  the first n test images the model gets wrong
    fz.plot.loss_curve(steps, train, val)     a language model's loss against training steps
    fz.plot.attention(probs, tokens)          one head's attention: which token reads which

Each function returns a matplotlib ``Figure`` and, given ``path=``, also saves
it as a PNG. They build the figure with matplotlib's object-oriented API
(``matplotlib.figure.Figure``), never pyplot, so they touch no global state
and work without a display. In a notebook a returned Figure shows itself; in
a script, save it with ``path=`` or ``fig.savefig(...)``.

matplotlib is an optional dependency: ``pip install fromzero[plot]``.
``import fromzero`` works without it; only calling these functions needs it.
"""

import math
import os

import numpy as np

__all__ = ["history", "confusion_matrix", "weights", "misclassified", "loss_curve", "attention"]


def require_matplotlib():
    """matplotlib.figure.Figure, or an ImportError that says how to install it."""
    try:
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError("fromzero.plot needs matplotlib: pip install fromzero[plot] "
                          "(or pip install matplotlib)") from e
    return Figure


def _new_figure(width, height):
    """A matplotlib Figure of (width, height) inches, laid out to fit its labels."""
    return require_matplotlib()(figsize=(width, height), layout="constrained")


def _finish(fig, path):
    """Save fig as a PNG at path (when given; folders are created) and return it."""
    if path is not None:
        path = os.fspath(path)
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        fig.savefig(path, format="png", dpi=100)
    return fig


def _grid(count, max_columns=8):
    """(rows, columns) of a near-square grid with room for `count` tiles."""
    columns = min(max_columns, max(1, math.ceil(math.sqrt(count))))
    return math.ceil(count / columns), columns


# ---------------------------------------------------------------- history


def history(history, path=None):
    """Learning curves: one panel for the loss and one per metric (accuracy, ...),
    each with the training value per epoch and, when fit had validation data,
    the validation value beside it.

    ``history`` is what ``model.fit`` returns (a History) or its ``.history``
    dict. A validation curve that rises while the training curve keeps falling
    is overfitting.
    """
    logs = getattr(history, "history", history)
    if not isinstance(logs, dict) or "loss" not in logs:
        raise ValueError("history: expected model.fit's History (or its .history dict) "
                         "with a 'loss' entry")
    names = ["loss"] + [k for k in logs if k != "loss" and not k.startswith("val_")
                        and np.ndim(logs[k][0] if len(logs[k]) else 0) == 0
                        and k != "learning_rate"]
    fig = _new_figure(4.5 * len(names), 3.6)
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    for ax, name in zip(axes, names):
        values = np.asarray(logs[name], dtype=float)
        epochs = np.arange(1, len(values) + 1)
        ax.plot(epochs, values, "o-", label=f"training {name}")
        if f"val_{name}" in logs:
            val = np.asarray(logs[f"val_{name}"], dtype=float)
            ax.plot(np.arange(1, len(val) + 1), val, "s--", label=f"validation {name}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.set_title(name)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(True, alpha=0.3)
        ax.legend()
    return _finish(fig, path)


# ---------------------------------------------------------------- confusion matrix


def _confusion(y_true, y_pred, num_classes):
    from . import metrics
    if hasattr(metrics, "confusion_matrix"):
        return metrics.confusion_matrix(y_true, y_pred, num_classes)
    # Without fz.metrics.confusion_matrix: count each (true, predicted) pair with one bincount.
    y_pred = np.asarray(y_pred)
    predicted = np.argmax(y_pred, axis=1) if y_pred.ndim == 2 else y_pred.astype(np.int64)
    true = np.asarray(y_true).astype(np.int64).reshape(-1)
    k = num_classes or int(max(true.max(), predicted.max())) + 1
    return np.bincount(true * k + predicted, minlength=k * k).reshape(k, k)


def confusion_matrix(y_true, y_pred, path=None, class_names=None, num_classes=None,
                     normalize=False):
    """The confusion matrix as a heat map: row i, column j counts the samples of
    true class i that were predicted as class j, so the diagonal holds the
    correct answers and every bright cell off it is a common mistake.

    y_pred: class indices or the model's scores (the argmax is taken), as
    ``fz.metrics.confusion_matrix``. ``normalize=True`` divides each row by its
    total, showing the share of each true class predicted as each class.
    """
    counts = np.asarray(_confusion(y_true, y_pred, num_classes))
    k = len(counts)
    shown = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1) if normalize else counts
    names = [str(c) for c in (class_names if class_names is not None else range(k))]
    if len(names) != k:
        raise ValueError(f"confusion_matrix: {len(names)} class_names for {k} classes")
    size = max(4.0, 0.5 * k + 2)
    fig = _new_figure(size + 1, size)
    ax = fig.subplots()
    image = ax.imshow(shown, cmap="Blues")
    fig.colorbar(image, ax=ax, shrink=0.8)
    ax.set_xticks(range(k), names, rotation=45 if max(map(len, names)) > 2 else 0)
    ax.set_yticks(range(k), names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    accuracy = np.trace(counts) / max(counts.sum(), 1)
    ax.set_title(f"confusion matrix (accuracy {accuracy:.2%})")
    if k <= 20:  # write the numbers into the cells
        threshold = shown.max() / 2
        for i in range(k):
            for j in range(k):
                text = f"{shown[i, j]:.2f}" if normalize else str(int(counts[i, j]))
                ax.text(j, i, text, ha="center", va="center", fontsize=7 if k > 10 else 9,
                        color="white" if shown[i, j] > threshold else "black")
    return _finish(fig, path)


# ---------------------------------------------------------------- weights


def _first_layer_with_kernel(target):
    if hasattr(target, "kernel"):
        return target
    for layer in getattr(target, "layers", []):
        if getattr(layer, "kernel", None) is not None:
            return layer
    raise ValueError("weights: expected a Dense or Conv2D layer (or a model that has one), "
                     f"got {type(target).__name__}; build it first (train or call it on data)")


def _image_shape_for(features):
    side = math.isqrt(features)
    if side * side != features:
        raise ValueError(f"weights: cannot show {features} inputs as a square image; "
                         f"pass image_shape=(height, width)")
    return side, side


def weights(layer, path=None, image_shape=None, max_tiles=64, channel=None):
    """What a layer's neurons look for, one tile per neuron.

    Dense (kernel (in, out)): each output unit's in incoming weights reshaped
    to an image — for the first layer of an MNIST model, 28×28 pictures of the
    stroke pattern each neuron responds to (red: positive weight, blue:
    negative). ``image_shape`` defaults to the square image in pixels.

    Conv2D (kernel (kh, kw, in, out)): one kh×kw tile per filter; with 3 input
    channels as colour, with 1 as that channel, otherwise the mean over input
    channels (or the input channel ``channel``). Accepts a model too: its
    first layer with a kernel is shown. At most ``max_tiles`` tiles.
    """
    layer = _first_layer_with_kernel(layer)
    kernel = np.asarray(layer.kernel, dtype=np.float32)
    rgb = False  # tiles are read left to right, top to bottom: unit (filter) 0, 1, 2, ...
    if kernel.ndim == 2:  # Dense: column j is unit j's weights
        shape = tuple(image_shape) if image_shape is not None else _image_shape_for(kernel.shape[0])
        if math.prod(shape) != kernel.shape[0]:
            raise ValueError(f"weights: image_shape {shape} does not hold {kernel.shape[0]} inputs")
        tiles = kernel.T.reshape((kernel.shape[1],) + shape)
        kind = f"{layer.name}: weights of each unit, as {shape[0]}×{shape[1]} images"
    elif kernel.ndim == 4:  # Conv2D: kernel[:, :, c, f] is filter f on input channel c
        if channel is not None:
            tiles = np.moveaxis(kernel[:, :, int(channel), :], -1, 0)
            kind = f"{layer.name}: filters on input channel {channel}"
        elif kernel.shape[2] == 1:
            tiles = np.moveaxis(kernel[:, :, 0, :], -1, 0)
            kind = f"{layer.name}: {kernel.shape[0]}×{kernel.shape[1]} filters"
        elif kernel.shape[2] == 3:
            tiles, rgb = np.moveaxis(kernel, -1, 0), True
            kind = f"{layer.name}: {kernel.shape[0]}×{kernel.shape[1]} filters (RGB)"
        else:
            tiles = np.moveaxis(kernel.mean(axis=2), -1, 0)
            kind = f"{layer.name}: filters, mean over {kernel.shape[2]} input channels"
    else:
        raise ValueError(f"weights: cannot show a kernel of shape {kernel.shape}")
    tiles = tiles[:max_tiles]
    # One mosaic image (a single imshow, fast even for 128 tiles), each tile
    # scaled on its own: symmetric around 0 (white), red positive, blue
    # negative; RGB filters stretched to [0, 1]. NaN gaps draw as background.
    rows, columns = _grid(len(tiles))
    h, w = tiles.shape[1:3]
    gap = max(1, h // 8)
    mosaic = np.full((rows * (h + gap) - gap, columns * (w + gap) - gap) + tiles.shape[3:],
                     np.nan, dtype=np.float32)
    for i, tile in enumerate(tiles):
        if rgb:
            lo, hi = tile.min(), tile.max()
            tile = (tile - lo) / (hi - lo if hi > lo else 1.0)
        else:
            tile = tile / (float(np.abs(tile).max()) or 1.0)
        r, c = divmod(i, columns)
        mosaic[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = tile
    fig = _new_figure(min(1.2 * columns + 0.5, 12), min(1.2 * rows + 0.6, 12))
    ax = fig.subplots()
    ax.set_axis_off()
    if rgb:
        ax.imshow(np.nan_to_num(mosaic, nan=1.0), interpolation="nearest")
    else:
        ax.imshow(mosaic, cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
    fig.suptitle(kind, fontsize=10)
    return _finish(fig, path)


# ---------------------------------------------------------------- misclassified


def _as_image(sample):
    """One input sample as something imshow draws: (H, W) or (H, W, 3)."""
    sample = np.asarray(sample, dtype=np.float32)
    if sample.ndim == 3 and sample.shape[-1] == 1:
        return sample[..., 0]
    if sample.ndim == 1:
        side = math.isqrt(sample.size)
        if side * side == sample.size:
            return sample.reshape(side, side)
        return sample.reshape(1, -1)
    return sample


def misclassified(model, x, y, n=16, path=None, class_names=None, batch_size=256):
    """The first n samples of (x, y) the model gets wrong, each titled with the
    true class, the prediction and its probability. Looking at them often
    explains the errors: badly written digits, or labels that are themselves
    wrong.
    """
    x = np.asarray(x)
    y = np.asarray(y).reshape(-1)
    if len(x) != len(y):
        raise ValueError(f"misclassified: x has {len(x)} samples but y has {len(y)}")
    scores = model.predict(x, batch_size=batch_size, verbose=0)
    if scores.ndim == 2 and scores.shape[1] > 1:  # one score per class
        predicted = np.argmax(scores, axis=1)
        confidence = scores[np.arange(len(scores)), predicted]
    else:  # one probability of class 1
        p1 = scores.reshape(-1)
        predicted = (p1 > 0.5).astype(np.int64)
        confidence = np.where(predicted == 1, p1, 1 - p1)
    wrong = np.flatnonzero(predicted != y)[:n]

    def name(c):
        return str(class_names[c]) if class_names is not None else str(c)

    rows, columns = _grid(max(len(wrong), 1))
    fig = _new_figure(1.6 * columns, 1.8 * rows + 0.4)
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, i in zip(axes.flat, wrong):
        ax.imshow(_as_image(x[i]), cmap="gray_r")
        ax.set_title(f"true {name(y[i])}\npred {name(predicted[i])} ({float(confidence[i]):.0%})",
                     fontsize=8)
    total = int(np.sum(predicted != y))
    if len(wrong) == 0:
        axes.flat[0].text(0.5, 0.5, "no mistakes", ha="center", va="center")
    fig.suptitle(f"{total} of {len(y)} misclassified; first {len(wrong)} shown", fontsize=10)
    return _finish(fig, path)


# ---------------------------------------------------------------- language models

def loss_curve(steps, train_loss, val_loss, path=None):
    """Training and validation loss (nats per token) against the step at
    which each was measured."""
    fig = _new_figure(6, 3.5)
    ax = fig.add_subplot()
    ax.plot(steps, train_loss, marker="o", label="training")
    ax.plot(steps, val_loss, marker="o", label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats per token)")
    ax.grid(alpha=0.3)
    ax.legend()
    return _finish(fig, path)


def attention(probs, tokens, path=None, title=None):
    """One head's attention probabilities (T, T) as a heatmap: row t is how
    much position t reads each position; `tokens` label the rows and columns
    (the characters or token strings of the window)."""
    probs = np.asarray(probs, dtype=np.float64)
    tokens = [repr(t)[1:-1] for t in tokens]
    if probs.ndim != 2 or probs.shape[0] != probs.shape[1] or len(tokens) != probs.shape[0]:
        raise ValueError(f"attention: probs must be (T, T) with one token label per row, got "
                         f"shape {probs.shape} and {len(tokens)} tokens")
    size = 2 + 0.22 * len(tokens)
    fig = _new_figure(size, size)
    ax = fig.add_subplot()
    image = ax.imshow(probs, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(len(tokens)), tokens, fontsize=7)
    ax.set_yticks(range(len(tokens)), tokens, fontsize=7)
    ax.set_xlabel("key position (read)")
    ax.set_ylabel("query position (reading)")
    if title:
        ax.set_title(title)
    fig.colorbar(image, ax=ax, shrink=0.7)
    return _finish(fig, path)
