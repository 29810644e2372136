"""One engine's MLP epochs in a process of its own, for bench/compare.py.

    python bench/epoch_child.py ENGINE BATCH EPOCHS THREADS

Trains the textbook MLP (bench/comparisons.py's epoch_trainer) for EPOCHS
epochs on THREADS threads and prints one JSON line: {"seconds": [each
epoch], "accuracy": test accuracy after the first}.

PyTorch is imported before fromzero. Both use GCC's libgomp, one copy and one
pool of worker threads per process, and libgomp reads its settings once, as it
loads: imported first, fromzero would give PyTorch its own short spin
(GOMP_SPINCOUNT, see python/fromzero/__init__.py). In a process of its own,
each engine runs with the settings it has when used alone, and no engine's
idle threads (OpenMP's or OpenBLAS's) spin through another's epoch.
"""

import json
import sys
import time


def main(argv):
    engine, batch, epochs, threads = argv[0], int(argv[1]), int(argv[2]), int(argv[3])
    if engine == "torch":
        import torch  # noqa: F401  (before fromzero: see above)
    import comparisons
    from threads import pin_threads

    pin_threads(threads)
    train_one_epoch, test_accuracy = comparisons.epoch_trainer(engine, batch)
    seconds, accuracy = [], None
    for _ in range(epochs):
        start = time.perf_counter()
        train_one_epoch()
        seconds.append(time.perf_counter() - start)
        if accuracy is None:
            accuracy = test_accuracy()
    print(json.dumps({"seconds": seconds, "accuracy": accuracy}))


if __name__ == "__main__":
    main(sys.argv[1:])
