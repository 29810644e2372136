"""Test driver for fz.distributed: trains the textbook MLP on MNIST with a small
explicit loop on the low-level API (forward, value_and_gradient, backward,
apply_gradients) and writes what the tests compare.

    mpiexec -n 2 python tests/distributed_driver.py OUT        N ranks
    python tests/distributed_driver.py OUT --shards 2           one process, 2 shares per batch
    python tests/distributed_driver.py OUT --plain              one process, whole batches

Each rank writes OUT/rank<r>.npz (its final weights and the reduced logs);
rank 0 alone writes OUT/model.npz; a mismatch or a divergence also goes
to OUT/error_rank<r>.txt. --fault makes rank 1 misbehave at step
--fault-step, for the fault tests. This is a test driver, not a training
loop to copy: model.fit is that (and will call the same DataParallel).
"""

import argparse
import os
import signal
import sys
import time

import numpy as np

import fromzero as fz

FAULTS = ("kill", "exit", "raise", "hang", "diverge", "mismatch", "data")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--samples", type=int, default=4096)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--shards", type=int, default=None)
    parser.add_argument("--plain", action="store_true")
    parser.add_argument("--check-every", type=int, default=50)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--fault", choices=FAULTS, default=None)
    parser.add_argument("--fault-step", type=int, default=100)
    args = parser.parse_args()

    rank, size = fz.distributed.init()
    faulty = args.fault is not None and rank == 1
    fz.utils.set_random_seed(args.seed)
    units = 64 if faulty and args.fault == "mismatch" else 128
    model = fz.Sequential([fz.layers.Dense(units, activation="relu"),
                           fz.layers.Dense(10, activation="softmax")])
    model.compile(optimizer=fz.optimizers.Adam(0.001), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.build((None, 784))
    loss, optimizer, accuracy = model.loss, model.optimizer, model.metrics[0]

    samples = args.samples - 1 if faulty and args.fault == "data" else args.samples
    (x, y), _ = fz.datasets.mnist.load_data()
    x = np.divide(x[:samples].reshape(-1, 784), 255, dtype=np.float32)
    targets = loss.prepare_targets(y[:samples], (samples, 10))

    dp = None if args.plain else fz.distributed.DataParallel(
        model, shards=args.shards, check_every=args.check_every, timeout=args.timeout)
    if dp is not None:
        dp.check_same("the number of training samples", len(x))
    grads_and_params = list(zip(model.trainable_grads, model.trainable_params))
    # The same batches on every rank: one permutation per epoch from a shared seed.
    order_rng = np.random.default_rng(args.seed if dp is None else dp.same_on_every_rank(args.seed))
    order = np.empty(0, np.int64)
    loss_sum, seen, global_losses = 0.0, 0, []

    def train_on(index):
        pred = model.forward(x[index], training=True)
        grad = np.empty_like(pred)
        total = loss.value_and_gradient(pred, targets[index], np.empty(len(pred), np.float32), grad)
        model.backward(grad)
        accuracy.update_state(targets[index], pred)
        return total, len(index)

    for step in range(1, args.steps + 1):
        if len(order) < args.batch_size:
            order = order_rng.permutation(len(x))
        batch, order = order[:args.batch_size], order[args.batch_size:]
        if faulty and step == args.fault_step:
            misbehave(args.fault, model)
        if dp is None:
            total, n = train_on(batch)
            loss_sum, seen = loss_sum + total, seen + n
        else:
            for shard in dp.shards(batch):
                total, n = train_on(shard.indices)
                loss_sum, seen = loss_sum + total, seen + n
                dp.accumulate(shard, total)
            global_losses.append(dp.allreduce_gradients())  # the whole batch's loss sum
        optimizer.apply_gradients(grads_and_params)
        if dp is not None:
            dp.check_in_sync(step)

    logs = ({"loss": loss_sum / seen, "accuracy": accuracy.result()} if dp is None
            else dp.reduce_logs(loss_sum, seen, [accuracy]))
    weights = {f"weight_{i}": w for i, w in enumerate(model.get_weights())}
    np.savez(os.path.join(args.out, f"rank{rank}.npz"), loss=logs["loss"],
             accuracy=logs["accuracy"], local_seen=seen,
             batch_losses=np.array(global_losses, np.float32), **weights)
    if dp is None or dp.is_chief:
        model.save(os.path.join(args.out, "model.npz"))
        print(f"world size {size}: loss {logs['loss']:.6f} accuracy {logs['accuracy']:.6f}")


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
        model.layers[1].params[1][0] += 1.0  # one bias, on rank 1 only


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (fz.distributed.MismatchError, fz.distributed.WeightsDivergedError) as e:
        # Every rank raises these; written to a file of its own as well, since
        # the ranks' tracebacks can interleave in the launcher's output.
        with open(os.path.join(sys.argv[1], f"error_rank{fz.distributed.rank()}.txt"), "w") as f:
            f.write(f"{type(e).__name__}: {e}")
        raise
