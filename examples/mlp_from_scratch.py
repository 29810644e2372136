"""The textbook's MLP trained by hand: the training loop of model.fit written out.

Same network as examples/textbook_mnist.py — Dense(128, relu) → Dense(10,
softmax), Adam(0.001), batch 32 — but no Sequential and no fit: only the
low-level protocol every layer speaks,

    y  = layer.forward(x, training=True)      the layer's output
    dx = layer.backward(dy)                    ∂L/∂input; fills layer.grads with ∂L/∂params
    optimizer.apply_gradients(zip(grads, params))   θ ← θ − step(∇θ)

Every random number is drawn exactly where model.compile and model.fit draw
it (the model's own generator, then the initial weights in layer order, then
one shuffle per epoch), so with the same seed
this loop ends with the same weights, bit for bit, and the same accuracy as

    fz.utils.set_random_seed(seed)
    model = fz.Sequential([fz.layers.Dense(128, activation="relu"),
                           fz.layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, batch_size=32, epochs=epochs)

(`--compare` runs that too and shows both; tests/test_examples.py checks it.)

    python examples/mlp_from_scratch.py                          # 5 epochs, all of MNIST
    python examples/mlp_from_scratch.py --subset 2000 --epochs 1 --compare
"""

import argparse
import time

import numpy as np

import fromzero as fz


def load_mnist(subset=None):
    """MNIST as float32 pixels in [0, 1], flattened to 784 features, and int labels."""
    (x_train, y_train), (x_test, y_test) = fz.datasets.mnist.load_data()
    if subset:
        x_train, y_train, x_test, y_test = (a[:subset] for a in (x_train, y_train, x_test, y_test))
    # x / 255.0 is computed in float64 and then rounded to float32, as fit does with its input.
    prepare = lambda images: (images / 255.0).astype(np.float32).reshape(len(images), -1)  # noqa: E731
    return (prepare(x_train), y_train.astype(np.int64)), (prepare(x_test), y_test.astype(np.int64))


def train(x, y, epochs=5, batch_size=32, learning_rate=0.001, seed=0, verbose=True):
    """Train the MLP on (x, y) by hand. Returns (layers, per-epoch history)."""
    # Randomness, as a model has it: set_random_seed seeds the global generator;
    # compile gives the model a generator of its own, seeded by one draw from
    # the global one; the initial weights and every epoch's shuffle come from it.
    fz.utils.set_random_seed(seed)
    model_generator = np.random.default_rng(fz.utils.next_seed())
    with fz.utils.using_generator(model_generator):  # fz.utils.next_seed() now draws from it
        return _train(x, y, epochs, batch_size, learning_rate, verbose)


def _train(x, y, epochs, batch_size, learning_rate, verbose):
    # The network. build() draws Glorot-uniform kernels (biases start at 0),
    # in layer order, as model.fit does when it first sees the data.
    hidden = fz.layers.Dense(128, activation="relu")
    output = fz.layers.Dense(10, activation="softmax")
    hidden.build((x.shape[1],))
    output.build((128,))
    layers = [hidden, output]
    hidden.input_grad_needed = False  # nobody needs ∂L/∂(input pixels): skip that GEMM

    loss = fz.losses.SparseCategoricalCrossentropy()
    optimizer = fz.optimizers.Adam(learning_rate=learning_rate)
    params = [p for layer in layers for p in layer.params]  # [W1, b1, W2, b2]
    grads = [g for layer in layers for g in layer.grads]    # [dW1, db1, dW2, db2], refilled by backward

    n = len(x)
    history = {"loss": [], "accuracy": []}
    for epoch in range(epochs):
        start = time.perf_counter()
        # A new order of the samples every epoch (fit's shuffle).
        order = fz.ops.random_permutation(n, fz.utils.next_seed())
        loss_sum, correct = 0.0, 0
        for first in range(0, n, batch_size):
            index = order[first:first + batch_size]
            xb, yb = x[index], y[index]
            b = len(index)

            # 1. Forward: y = softmax(relu(x·W1 + b1)·W2 + b2)
            h = hidden.forward(xb, training=True)
            p = output.forward(h, training=True)   # (b, 10) class probabilities

            # 2. Loss L = mean_i −log p[i, y_i], and its gradient. loss.gradient(yb, p)
            #    would give ∂L/∂p; taken through the softmax it becomes simply
            #        ∂L/∂z = (p − onehot(y)) / b        (z: the logits before softmax)
            #    which is what we compute (in float32, as the C++ kernel does).
            loss_sum += loss(yb, p) * b
            correct += int(np.sum(np.argmax(p, axis=1) == yb))
            scale = np.float32(1.0 / b)
            dz = p * scale
            dz[np.arange(b), yb] -= scale

            # 3. Backward, last layer first. Each fills its grads and returns ∂L/∂input.
            dh = output.backward_from_logits(dz)   # dz is already past the softmax
            hidden.backward(dh)                    # through the ReLU: dz1 = dh ⊙ (h > 0)

            # 4. Update every weight: Adam's step from the gradients.
            optimizer.apply_gradients(zip(grads, params))

        history["loss"].append(loss_sum / n)
        history["accuracy"].append(correct / n)
        if verbose:
            print(f"Epoch {epoch + 1}/{epochs} - loss: {loss_sum / n:.4f} - "
                  f"accuracy: {correct / n:.4f} - {time.perf_counter() - start:.1f} s")
    return layers, history


def predict(layers, x, batch_size=32):
    """Forward only (training=False), in batches as model.predict does."""
    out = []
    for first in range(0, len(x), batch_size):
        a = x[first:first + batch_size]
        for layer in layers:
            a = layer.forward(a)
        out.append(a.copy())  # a layer reuses its output buffer on the next call
    return np.concatenate(out)


def accuracy(layers, x, y):
    return float(np.mean(np.argmax(predict(layers, x), axis=1) == y))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subset", type=int, default=None,
                        help="use only the first N training and N test images (default: all)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compare", action="store_true",
                        help="also train with model.fit from the same seed and compare")
    args = parser.parse_args(argv)

    (x_train, y_train), (x_test, y_test) = load_mnist(args.subset)
    layers, _ = train(x_train, y_train, epochs=args.epochs, seed=args.seed)
    test_accuracy = accuracy(layers, x_test, y_test)
    print(f"test accuracy: {test_accuracy:.4f}")

    if args.compare:
        fz.utils.set_random_seed(args.seed)
        model = fz.Sequential([fz.layers.Dense(128, activation="relu"),
                               fz.layers.Dense(10, activation="softmax")])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        model.fit(x_train, y_train, batch_size=32, epochs=args.epochs, verbose=0)
        _, fit_accuracy = model.evaluate(x_test, y_test, verbose=0)
        same = all(np.array_equal(a, b) for a, b in
                   zip(model.get_weights(), [p for layer in layers for p in layer.params]))
        print(f"model.fit test accuracy: {fit_accuracy:.4f}; "
              f"weights {'identical' if same else 'DIFFERENT'} to the hand-written loop")
        return 0 if same else 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
