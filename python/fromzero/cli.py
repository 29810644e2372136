"""The command line: ``fromzero train`` trains the textbook's model on MNIST.

    Dense(128, relu) → Dense(10, softmax), Adam, batch 32, 5 epochs, pixels scaled to [0, 1]

``--model cnn`` trains Keras's mnist_convnet example instead (batch 128 by default):

    Conv2D(32, 3, relu) → MaxPool2D(2) → Conv2D(64, 3, relu) → MaxPool2D(2)
    → Flatten → Dropout(0.5) → Dense(10, softmax)

``mpiexec -n N fromzero train --distributed`` trains any of them on N
processes (data parallelism, fz.distributed; pip install fromzero[mpi]):
each computes its share of every batch, the same training as one process
with that batch size; rank 0 alone prints and saves.
"""

import argparse
import sys
import time

import numpy as np

import fromzero as fz


# Each model's batch size when --batch-size is not given, as in its Keras example.
DEFAULT_BATCH_SIZE = {"mlp": 32, "cnn": 128}


def build_model(name):
    if name == "mlp":
        return fz.Sequential([fz.layers.Dense(128, activation="relu"),
                              fz.layers.Dense(10, activation="softmax")])
    if name == "cnn":
        return fz.Sequential([fz.layers.Conv2D(32, 3, activation="relu"),
                              fz.layers.MaxPool2D(2),
                              fz.layers.Conv2D(64, 3, activation="relu"),
                              fz.layers.MaxPool2D(2),
                              fz.layers.Flatten(),
                              fz.layers.Dropout(0.5),
                              fz.layers.Dense(10, activation="softmax")])
    raise ValueError(f"unknown model {name!r}")


def train(args):
    processes, chief = 1, True
    if args.distributed:  # first: init gives each process its share of this machine's cores
        rank, processes = fz.distributed.init()
        chief = rank == 0
    say = print if chief else _silent
    if args.threads is not None:
        fz.set_num_threads(args.threads)
    if args.seed is not None:
        fz.utils.set_random_seed(args.seed)
    if args.plot:
        fz.plot.require_matplotlib()  # fail now, not after training
    dataset = getattr(fz.datasets, args.dataset)
    (x_train, y_train), (x_test, y_test) = dataset.load_data()
    # Pixels scaled to [0, 1] as float32, the kernels' type: x / 255.0 would
    # make float64 copies twice the size, which fit would convert again.
    x_train, x_test = (np.divide(x, 255, dtype=np.float32) for x in (x_train, x_test))
    if args.model == "cnn":  # Conv2D wants (batch, height, width, channels)
        x_train, x_test = x_train[..., None], x_test[..., None]
    batch_size = DEFAULT_BATCH_SIZE[args.model] if args.batch_size is None else args.batch_size

    model = build_model(args.model)
    optimizer = fz.optimizers.get(args.optimizer)
    if args.learning_rate is not None:
        optimizer.learning_rate = args.learning_rate
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    info = fz.info()
    where = f"{processes} processes × " if args.distributed else ""
    say(f"fromzero {info['version']}: {args.model} on {args.dataset}, {info['simd']} GEMM, "
        f"{where}{info['threads']} thread(s){'' if info['openmp'] else ' (built without OpenMP)'}")
    start = time.perf_counter()
    # --plot holds out the last 10% of the training data, so the curves show validation too.
    history = model.fit(x_train, y_train, batch_size=batch_size, epochs=args.epochs, verbose=1,
                        validation_split=0.1 if args.plot else 0.0, distribute=args.distributed)
    seconds = time.perf_counter() - start
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)  # the same on every process
    say(f"trained {args.epochs} epoch(s) in {seconds:.1f} s "
        f"({seconds / max(args.epochs, 1):.2f} s/epoch)")
    say(f"test loss: {loss:.4f} - test accuracy: {accuracy:.4f}")
    if args.save and chief:
        model.save(args.save)
        say(f"saved to {args.save}")
    if args.plot and chief:
        write_plots(args.plot, history, model, x_test, y_test)
    return 0


def _silent(*args, **kwargs):
    pass


def write_plots(folder, history, model, x_test, y_test):
    """The four pictures of a training run (fz.plot), saved as PNGs in folder."""
    import os
    os.makedirs(folder, exist_ok=True)
    paths = {name: os.path.join(folder, f"{name}.png")
             for name in ("history", "confusion_matrix", "weights", "misclassified")}
    fz.plot.history(history, path=paths["history"])
    fz.plot.confusion_matrix(y_test, model.predict(x_test, batch_size=256, verbose=0),
                             path=paths["confusion_matrix"])
    fz.plot.weights(model, path=paths["weights"])
    fz.plot.misclassified(model, x_test, y_test, n=16, path=paths["misclassified"])
    print(f"plots written to {folder}: {', '.join(os.path.basename(p) for p in paths.values())}")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="fromzero", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a model on MNIST and print the test accuracy")
    t.add_argument("--dataset", choices=["mnist", "fashion_mnist"], default="mnist")
    t.add_argument("--model", choices=["mlp", "cnn"], default="mlp")
    t.add_argument("--epochs", type=int, default=5)
    t.add_argument("--batch-size", type=int, default=None,
                   help="default: 32 for mlp, 128 for cnn (as Keras's examples)")
    t.add_argument("--optimizer", choices=["adam", "adamw", "sgd", "rmsprop"], default="adam")
    t.add_argument("--learning-rate", type=float, default=None,
                   help="default: the optimizer's own (Adam 0.001)")
    t.add_argument("--seed", type=int, default=None, help="make the run repeat bit for bit")
    t.add_argument("--threads", type=int, default=None,
                   help="kernel threads (default: all cores, shared among --distributed processes)")
    t.add_argument("--distributed", action="store_true",
                   help="data-parallel training over MPI: start as mpiexec -n N fromzero train "
                        "--distributed (needs pip install fromzero[mpi]); batch sizes are "
                        "global (each process computes 1/N of every batch)")
    t.add_argument("--save", metavar="PATH", default=None, help="save the trained model here")
    t.add_argument("--plot", metavar="DIR", default=None,
                   help="after training, write history.png, confusion_matrix.png, weights.png and "
                        "misclassified.png here (needs matplotlib: pip install fromzero[plot]); "
                        "holds out 10%% of the training data for the validation curves")
    sub.add_parser("info", help="print the version, SIMD path and threads")
    args = parser.parse_args(argv)
    try:
        if args.command == "info":
            for key, value in fz.info().items():
                print(f"{key}: {value}")
            return 0
        return train(args)
    except (ValueError, TypeError, FileNotFoundError, ImportError) as e:
        print(f"fromzero: error: {e}", file=sys.stderr)
        if getattr(args, "distributed", False):
            fz.distributed.abort(2)  # the other processes may be waiting for this one
        return 2


if __name__ == "__main__":
    sys.exit(main())
