"""Test driver for fit(distribute=...): trains the textbook MLP on a subset of
MNIST and writes what tests/test_distributed.py compares.

    mpiexec -n 2 python tests/distributed_driver.py OUT        N ranks: fit(distribute=True)
    python tests/distributed_driver.py OUT --shards 2           one process emulating 2 ranks
    python tests/distributed_driver.py OUT --plain              one process, plain fit

Each rank writes OUT/rank<r>.npz: its final weights, its history, the
running loss after every batch and its evaluate() of test samples. fit's
ModelCheckpoint and CSVLogger are given a path of each rank's own
(OUT/model_rank<r>.npz, OUT/log_rank<r>.csv): only rank 0's may appear. A
mismatch or a divergence also goes to OUT/error_rank<r>.txt. Rank r seeds
with --seed + r: only rank 0's initial weights and shuffling may count.
--fault makes rank 1 misbehave at global step --fault-step.
"""

import argparse
import os
import signal
import sys
import time

import numpy as np

import fromzero as fz

FAULTS = ("kill", "exit", "raise", "hang", "diverge", "stop", "mismatch", "data", "pixel")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps-per-epoch", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--samples", type=int, default=4096)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--shards", type=int, default=None)
    parser.add_argument("--plain", action="store_true")
    parser.add_argument("--check-every", type=int, default=50)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--fault", choices=FAULTS, default=None)
    parser.add_argument("--fault-step", type=int, default=100)
    args = parser.parse_args()

    rank, size = fz.distributed.init()
    faulty = args.fault is not None and rank == 1
    fz.utils.set_random_seed(args.seed + rank)
    units = 64 if faulty and args.fault == "mismatch" else 128
    model = fz.Sequential([fz.layers.Dense(units, activation="relu")]
                          + ([fz.layers.Dropout(args.dropout)] if args.dropout else [])
                          + [fz.layers.Dense(10, activation="softmax")])
    model.compile(optimizer=fz.optimizers.Adam(0.001), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])

    samples = args.samples - 1 if faulty and args.fault == "data" else args.samples
    (x, y), (x_test, y_test) = fz.datasets.mnist.load_data()
    x = np.divide(x[:samples].reshape(-1, 784), 255, dtype=np.float32)
    x_test = np.divide(x_test[:1000].reshape(-1, 784), 255, dtype=np.float32)
    y, y_test = y[:samples], y_test[:1000]
    if faulty and args.fault == "pixel":
        x[7, 300] += 0.5  # the same sizes, other data

    if args.plain:
        distribute = None
    elif args.shards is not None:
        model.build((None, 784))
        distribute = fz.distributed.DataParallel(model, shards=args.shards)
    else:
        model.build((None, 784))
        distribute = fz.distributed.DataParallel(model, check_every=args.check_every,
                                                 timeout=args.timeout)
    recorder = Recorder(args.fault if faulty else None, args.fault_step)
    history = model.fit(
        x, y, batch_size=args.batch_size, epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch, validation_data=(x_test[:500], y_test[:500]),
        verbose=2, distribute=distribute,
        callbacks=[recorder,
                   fz.callbacks.ModelCheckpoint(os.path.join(args.out, f"model_rank{rank}.npz"),
                                                monitor="val_accuracy", save_best_only=True),
                   fz.callbacks.CSVLogger(os.path.join(args.out, f"log_rank{rank}.csv"))])
    test_loss, test_accuracy = model.evaluate(x_test, y_test, verbose=0)
    weights = {f"weight_{i}": w for i, w in enumerate(model.get_weights())}
    np.savez(os.path.join(args.out, f"rank{rank}.npz"), test=[test_loss, test_accuracy],
             batch_losses=np.array(recorder.losses), stopped=recorder.steps,
             **{f"history_{k}": np.array(v) for k, v in history.history.items()}, **weights)
    if rank == 0:
        print(f"world size {size}: loss {history.history['loss'][-1]:.6f} accuracy "
              f"{history.history['accuracy'][-1]:.6f} test {test_loss:.6f} {test_accuracy:.6f}")


class Recorder(fz.callbacks.Callback):
    """The running loss after every batch (fit's logs: every rank's samples);
    at global step `fault_step`, the fault (rank 1 only)."""

    def __init__(self, fault, fault_step):
        self.fault, self.fault_step = fault, fault_step
        self.losses, self.steps = [], 0

    def on_train_batch_begin(self, batch, logs=None):
        self.steps += 1
        if self.fault is not None and self.steps == self.fault_step:
            misbehave(self.fault, self.model)

    def on_train_batch_end(self, batch, logs=None):
        self.losses.append(logs["loss"])


def misbehave(fault, model):
    """What rank 1 does at --fault-step."""
    if fault == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif fault == "exit":
        os._exit(3)
    elif fault == "raise":
        raise RuntimeError("rank 1 failed on purpose")
    elif fault == "hang":
        time.sleep(3600)
    elif fault == "diverge":
        model.layers[-1].params[1][0] += 1.0  # one bias, on rank 1 only
    elif fault == "stop":
        model.stop_training = True  # rank 1's callback alone stops: every rank must


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (fz.distributed.MismatchError, fz.distributed.WeightsDivergedError) as e:
        # Every rank raises these; written to a file of its own as well, since
        # the ranks' tracebacks can interleave in the launcher's output. Renamed
        # into place: the first rank to abort the job may kill the others mid-write.
        path = os.path.join(sys.argv[1], f"error_rank{fz.distributed.rank()}.txt")
        with open(path + ".part", "w") as f:
            f.write(f"{type(e).__name__}: {e}")
        os.replace(path + ".part", path)
        raise
