"""Does training slow down as denormal floats pile up? Epoch times with flushing on and off.

    python bench/denormal_epochs.py [--epochs 5] [--threads 1] [--batch-size 32]

Trains the textbook MLP (784-128-10, Adam) on MNIST for E epochs twice, from
the same seed: once with fz.set_flush_denormal(True) (the default) and once
with False, the two runs taking turns epoch by epoch so that both see the same
machine load. After each epoch it prints both epoch times, the share of Adam's
moment values (m and v) that are denormal in the unflushed run (MNIST's
always-zero border pixels get zero gradients, so their moments decay as β^t
towards 0 and pass through the denormal range), and at the end the test
accuracy of both runs and the largest weight difference between them.
"""

import argparse
import time

import numpy as np

import fromzero as fz


def make_run(flush, batch_size, seed=0):
    fz.utils.set_random_seed(seed)
    model = fz.Sequential([fz.layers.Dense(128, activation="relu"),
                           fz.layers.Dense(10, activation="softmax")])
    optimizer = fz.optimizers.Adam(learning_rate=1e-3)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model, optimizer, flush


def denormal_share(optimizer):
    """Share of Adam's moment values that are nonzero and below the smallest normal float."""
    tiny = np.finfo(np.float32).tiny
    moments = [s for _, states in optimizer._slots.values() for s in states]
    denormal = sum(int(np.count_nonzero((s != 0) & (np.abs(s) < tiny))) for s in moments)
    return denormal / sum(s.size for s in moments)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    fz.set_num_threads(args.threads)
    (x, y), (x_test, y_test) = fz.datasets.mnist.load_data()
    x = x.reshape(len(x), -1).astype(np.float32) / 255
    x_test = x_test.reshape(len(x_test), -1).astype(np.float32) / 255
    runs = [make_run(True, args.batch_size), make_run(False, args.batch_size)]
    print(f"{fz.info()['gemm']['kernel']} GEMM, {args.threads} thread(s), batch {args.batch_size}")
    print(f"{'epoch':>5} {'flush on':>9} {'flush off':>10} {'denormal moments (off)':>23}")
    for epoch in range(1, args.epochs + 1):
        seconds = []
        for model, _, flush in runs:
            fz.set_flush_denormal(flush)
            start = time.perf_counter()
            model.fit(x, y, batch_size=args.batch_size, epochs=1, verbose=0)
            seconds.append(time.perf_counter() - start)
        print(f"{epoch:>5} {seconds[0]:>8.3f}s {seconds[1]:>9.3f}s {denormal_share(runs[1][1]):>22.2%}")
    fz.set_flush_denormal(True)
    accuracy = [model.evaluate(x_test, y_test, verbose=0)[1] for model, _, _ in runs]
    difference = max(float(np.abs(a - b).max())
                     for a, b in zip(runs[0][0].get_weights(), runs[1][0].get_weights()))
    print(f"test accuracy: flush on {accuracy[0]:.4f}, off {accuracy[1]:.4f}; "
          f"largest weight difference {difference:.3g}")


if __name__ == "__main__":
    main()
