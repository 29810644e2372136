"""Transfer learning: a CNN learns edges and strokes on MNIST digits, then
reuses them for Fashion-MNIST clothes.

    1. pretrain   base + head on MNIST, where the base is
                  Conv2D(32, 3, relu) → MaxPool2D(2) → Conv2D(64, 3, relu) → MaxPool2D(2) → Flatten
                  and the head Dense(128, relu) → Dense(10, softmax)
    2. freeze     every base layer: layer.trainable = False. fit() then
                  spends no gradient work on them: backpropagation stops at
                  the head, and the optimizer never sees the frozen weights.
    3. replace    the head with a fresh Dense(128, relu) → Dense(10, softmax)
    4. fine-tune  on Fashion-MNIST: only the head learns
    5. compare    with the same architecture trained from scratch on
                  Fashion-MNIST for the same wall-clock time as step 4

Run:    python examples/finetune_fashion_mnist.py                 (all 60,000 images)
        python examples/finetune_fashion_mnist.py --subset 2000   (a quick look)

Fashion-MNIST is read from where Debian's dataset-fashion-mnist package puts
it (apt-get install dataset-fashion-mnist), or from --fashion-path.
"""

import argparse
import math
import sys
import time

import numpy as np

import fromzero as fz

CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
               "Sneaker", "Bag", "Ankle boot"]


def convolutional_base():
    """The feature extractor: two convolution + pooling blocks."""
    return [fz.layers.Conv2D(32, 3, activation="relu"), fz.layers.MaxPool2D(2),
            fz.layers.Conv2D(64, 3, activation="relu"), fz.layers.MaxPool2D(2),
            fz.layers.Flatten()]


def classifier_head():
    """The classifier on top of the base, freshly initialised."""
    return [fz.layers.Dense(128, activation="relu"), fz.layers.Dense(10, activation="softmax")]


def compiled(layers, learning_rate):
    model = fz.Sequential(layers)
    model.compile(fz.optimizers.Adam(learning_rate), "sparse_categorical_crossentropy",
                  metrics=["accuracy", "f1"])
    return model


def load_images(dataset, subset, path=None):
    """(x_train, y_train), (x_test, y_test) as (N, 28, 28, 1) floats in [0, 1];
    with `subset`, only the first `subset` images of each split."""
    (x_train, y_train), (x_test, y_test) = dataset.load_data(path)
    if subset:
        x_train, y_train, x_test, y_test = (x_train[:subset], y_train[:subset],
                                            x_test[:subset], y_test[:subset])
    return ((x_train[..., None] / np.float32(255), y_train),
            (x_test[..., None] / np.float32(255), y_test))


class TimeBudget(fz.callbacks.Callback):
    """Stop training once `seconds` of wall-clock time have passed (checked after every batch)."""

    def __init__(self, seconds):
        self.seconds = seconds

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()
        self.batches = 0

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1
        if time.perf_counter() - self.start >= self.seconds:
            self.model.stop_training = True


def timed_fit(model, x, y, **fit_arguments):
    """model.fit(...) and the seconds it took."""
    start = time.perf_counter()
    history = model.fit(x, y, **fit_arguments)
    return history, time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subset", type=int, default=None,
                        help="use only the first N images of each split (default: all)")
    parser.add_argument("--epochs", type=int, default=3, help="fine-tuning epochs (default: 3)")
    parser.add_argument("--pretrain-epochs", type=int, default=2,
                        help="MNIST pretraining epochs (default: 2)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fashion-path", default=None,
                        help="folder with the four Fashion-MNIST IDX files (default: Debian's)")
    parser.add_argument("--verbose", type=int, default=2, choices=[0, 1, 2],
                        help="fit's verbosity (default 2: one line per epoch)")
    args = parser.parse_args(argv)
    fz.utils.set_random_seed(args.seed)
    fit_options = dict(batch_size=args.batch_size, verbose=args.verbose)

    try:
        (x_fashion, y_fashion), (x_fashion_test, y_fashion_test) = load_images(
            fz.datasets.fashion_mnist, args.subset, args.fashion_path)
    except FileNotFoundError as e:
        sys.exit(f"Fashion-MNIST not found: {e}")
    (x_digits, y_digits), _ = load_images(fz.datasets.mnist, args.subset)

    print(f"1. Pretraining on {len(x_digits)} MNIST digits")
    pretrained = compiled(convolutional_base() + classifier_head(), learning_rate=1e-3)
    pretrained.fit(x_digits, y_digits, epochs=args.pretrain_epochs, **fit_options)

    print("\n2-3. Freezing the base and replacing the head")
    base = pretrained.layers[:-2]
    for layer in base:
        layer.trainable = False
    finetuned = compiled(base + classifier_head(), learning_rate=1e-3)
    finetuned.build((None,) + x_fashion.shape[1:])
    finetuned.summary()

    print(f"\n4. Fine-tuning on {len(x_fashion)} Fashion-MNIST images")
    frozen_before = [w.copy() for layer in base for w in layer.get_weights()]
    _, finetune_seconds = timed_fit(finetuned, x_fashion, y_fashion, epochs=args.epochs,
                                    **fit_options)
    frozen_after = [w for layer in base for w in layer.get_weights()]
    assert all(np.array_equal(a, b) for a, b in zip(frozen_before, frozen_after)), \
        "a frozen weight changed"

    print(f"\n5. From scratch on Fashion-MNIST for the same {finetune_seconds:.1f} s")
    scratch = compiled(convolutional_base() + classifier_head(), learning_rate=1e-3)
    budget = TimeBudget(finetune_seconds)
    _, scratch_seconds = timed_fit(scratch, x_fashion, y_fashion, epochs=10_000,
                                   callbacks=[budget], **fit_options)
    scratch_epochs = budget.batches / math.ceil(len(x_fashion) / args.batch_size)

    results = [("fine-tuned (frozen base)", finetuned, finetune_seconds, float(args.epochs)),
               ("from scratch", scratch, scratch_seconds, scratch_epochs)]
    print(f"\nFashion-MNIST test set ({len(x_fashion_test)} images):")
    print(f"{'model':<26}{'accuracy':>10}{'macro F1':>10}{'train time':>12}{'epochs':>8}")
    for name, model, seconds, epochs in results:
        _, accuracy, f1 = model.evaluate(x_fashion_test, y_fashion_test, verbose=0)
        print(f"{name:<26}{accuracy:>10.4f}{f1:>10.4f}{seconds:>10.1f} s{epochs:>8.2f}")
    print("\nFine-tuned model, per class:")
    predictions = finetuned.predict(x_fashion_test, verbose=0)
    print(fz.metrics.classification_report(y_fashion_test, predictions,
                                           target_names=CLASS_NAMES))


if __name__ == "__main__":
    main()
