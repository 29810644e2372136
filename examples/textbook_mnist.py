"""The textbook's first neural network, verbatim, with only the names changed.

The program in the book (Keras) reads:

    model = keras.Sequential([layers.Dense(128, activation="relu"),
                              layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    model.fit(x_train / 255.0, y_train, epochs=5)
    model.evaluate(x_test / 255.0, y_test)

Below it is again, line for line, with `keras` → `fz` and `layers` →
`fz.layers`. Two flags are added around it so CI can run it small:

    python examples/textbook_mnist.py                       # the book's run: 5 epochs, all data (~97.5%)
    python examples/textbook_mnist.py --subset 2000 --epochs 1   # a few seconds
"""

import argparse

import fromzero as fz

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--subset", type=int, default=None,
                    help="use only the first N training and N test images (default: all)")
parser.add_argument("--epochs", type=int, default=5)
parser.add_argument("--seed", type=int, default=None, help="repeat the run bit for bit")
args = parser.parse_args()
if args.seed is not None:
    fz.utils.set_random_seed(args.seed)

# ---- the textbook's program ----------------------------------------------
model = fz.Sequential([
    fz.layers.Dense(128, activation="relu"),
    fz.layers.Dense(10, activation="softmax"),
])
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
(x_train, y_train), (x_test, y_test) = fz.datasets.mnist.load_data()
if args.subset:  # (added: a smaller run)
    x_train, y_train, x_test, y_test = (a[:args.subset] for a in (x_train, y_train, x_test, y_test))
model.fit(x_train / 255.0, y_train, epochs=args.epochs)
loss, accuracy = model.evaluate(x_test / 255.0, y_test)
# ---------------------------------------------------------------------------

print(f"test accuracy: {accuracy:.4f}")
