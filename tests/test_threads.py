"""The Python API called from several Python threads at once.

The kernels release the GIL, so threads really run them concurrently. They
are re-entrant: GEMM packing buffers are thread_local (csrc/gemm.cpp), layers
and models own their buffers, and nothing else in csrc/ is static. Randomness
is per model (see fz.utils.set_random_seed): two models compiled in the main
thread and then trained at the same time in two threads end with the same
weights, bit for bit, as when trained one after the other. (One model or
layer is used by one thread at a time: its buffers are its own, unlocked.)
"""

import threading
import time

import numpy as np
import pytest

import fromzero as fz

L = fz.layers
JOIN_TIMEOUT = 120  # seconds: far above any of these runs, so a timeout means a hang


@pytest.fixture
def restore_threads():
    before = fz.get_num_threads()
    yield
    fz.set_num_threads(before)


def run_in_threads(*targets):
    """Run each callable in its own thread at the same time; re-raise the first error."""
    errors = []

    def wrap(fn):
        def run():
            try:
                fn()
            except BaseException as e:  # noqa: B902 — reported in the main thread
                errors.append(e)
        return run

    threads = [threading.Thread(target=wrap(fn)) for fn in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN_TIMEOUT)
        assert not t.is_alive(), "a thread hung"
    if errors:
        raise errors[0]


def blobs(n, features, classes, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    x = rng.standard_normal((n, features)).astype(np.float32) + y[:, None]
    return x, y


def make_model(hidden, rate):
    """Weights, shuffling and dropout: every random draw fit makes."""
    model = fz.Sequential([L.Dense(hidden, activation="relu"), L.Dropout(rate),
                           L.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


class Interleave(fz.callbacks.Callback):
    """Starts both fits together and yields the GIL after every batch, recording
    which model finished each batch, so the two trainings really interleave."""

    def __init__(self, tag, barrier, log):
        super().__init__()
        self.tag, self.barrier, self.log = tag, barrier, log

    def on_train_begin(self, logs=None):
        self.barrier.wait(JOIN_TIMEOUT)

    def on_train_batch_end(self, batch, logs=None):
        self.log.append(self.tag)
        time.sleep(0.0005)


def test_two_models_trained_in_threads_match_sequential_training():
    data_a, data_b = blobs(400, 10, 3, seed=1), blobs(300, 7, 3, seed=2)

    fz.utils.set_random_seed(42)
    a, b = make_model(32, 0.3), make_model(16, 0.5)
    a.fit(*data_a, batch_size=16, epochs=2, verbose=0)
    b.fit(*data_b, batch_size=16, epochs=2, verbose=0)
    sequential = a.get_weights(), b.get_weights()

    fz.utils.set_random_seed(42)
    a, b = make_model(32, 0.3), make_model(16, 0.5)  # compiled in the same order
    barrier, log = threading.Barrier(2), []
    run_in_threads(
        lambda: a.fit(*data_a, batch_size=16, epochs=2, verbose=0,
                      callbacks=[Interleave("a", barrier, log)]),
        lambda: b.fit(*data_b, batch_size=16, epochs=2, verbose=0,
                      callbacks=[Interleave("b", barrier, log)]))
    switches = sum(x != y for x, y in zip(log, log[1:]))
    assert switches >= 4, f"the two trainings did not interleave: {''.join(log)}"
    for concurrent, expected in zip((a.get_weights(), b.get_weights()), sequential):
        for w, e in zip(concurrent, expected):
            np.testing.assert_array_equal(w, e)


def test_a_models_results_do_not_depend_on_what_runs_in_between():
    """Once compiled, a model draws only from its own generator: training
    another model before it (or in parallel) changes nothing."""
    x, y = blobs(200, 6, 3, seed=3)
    fz.utils.set_random_seed(7)
    alone = make_model(8, 0.2)
    alone.fit(x, y, epochs=2, verbose=0)

    fz.utils.set_random_seed(7)
    model = make_model(8, 0.2)
    other = make_model(8, 0.2)  # compiled after: its own seed, drawn next
    other.fit(x, y, epochs=3, verbose=0)
    model.fit(x, y, epochs=2, verbose=0)
    for w, e in zip(model.get_weights(), alone.get_weights()):
        np.testing.assert_array_equal(w, e)
    assert not all(np.array_equal(w, e) for w, e in zip(other.get_weights(), alone.get_weights()))


def test_set_random_seed_rule_weights_drawn_at_build():
    """Seeding happens at compile (or first build): two models compiled after
    the same seed in the same order get the same initial weights."""
    runs = []
    for _ in range(2):
        fz.utils.set_random_seed(5)
        m1, m2 = make_model(4, 0.1), make_model(4, 0.1)
        m2.build((None, 6))  # built in the other order: no difference
        m1.build((None, 6))
        runs.append((m1.get_weights(), m2.get_weights()))
    for first, second in zip(*runs):
        for w, e in zip(first, second):
            np.testing.assert_array_equal(w, e)


def test_kernels_are_reentrant():
    """Many threads run GEMMs (big enough to pack panels and use OpenMP), losses
    and Dense layers at once; every result equals the one computed alone."""
    rng = np.random.default_rng(0)
    problems = [(rng.standard_normal((m, k)).astype(np.float32),
                 rng.standard_normal((k, n)).astype(np.float32))
                for m, k, n in [(257, 300, 129), (64, 513, 200), (300, 40, 350), (31, 17, 23)]]
    expected = [fz.ops.matmul(a, b) for a, b in problems]
    logits = rng.standard_normal((500, 10)).astype(np.float32)
    labels = rng.integers(0, 10, 500)
    loss = fz.losses.SparseCategoricalCrossentropy(from_logits=True)
    expected_loss = loss(labels, logits), loss.gradient(labels, logits)

    def worker(i):
        def run():
            for _ in range(5):
                a, b = problems[i % len(problems)]
                np.testing.assert_array_equal(fz.ops.matmul(a, b), expected[i % len(problems)])
                np.testing.assert_array_equal(fz.ops.matmul(b, a, transpose_a=True, transpose_b=True),
                                              expected[i % len(problems)].T)
                assert loss(labels, logits) == expected_loss[0]
                np.testing.assert_array_equal(loss.gradient(labels, logits), expected_loss[1])
        return run

    run_in_threads(*(worker(i) for i in range(6)))


def test_layers_in_threads_match_single_threaded(restore_threads):
    """Each thread drives its own Dense layer forward and backward; a thread
    count changed meanwhile (process-wide) changes no result."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((128, 200)).astype(np.float32)
    dy = rng.standard_normal((128, 64)).astype(np.float32)

    def layer():
        fz.utils.set_random_seed(3)
        d = L.Dense(64, activation="gelu")
        d.build((200,))
        return d

    reference = layer()
    y_ref = reference.forward(x, training=True).copy()
    dx_ref = reference.backward(dy).copy()
    grads_ref = [g.copy() for g in reference.grads]
    layers = [layer() for _ in range(4)]
    stop = threading.Event()

    def run(d):
        def go():
            for _ in range(10):
                np.testing.assert_array_equal(d.forward(x, training=True), y_ref)
                np.testing.assert_array_equal(d.backward(dy), dx_ref)
                for g, e in zip(d.grads, grads_ref):
                    np.testing.assert_array_equal(g, e)
        return go

    def toggle_threads():
        n = 1
        while not stop.is_set():
            fz.set_num_threads(n)
            n = 3 - n
            time.sleep(0.001)

    toggler = threading.Thread(target=toggle_threads)
    toggler.start()
    try:
        run_in_threads(*(run(d) for d in layers))
    finally:
        stop.set()
        toggler.join(JOIN_TIMEOUT)


def test_thread_count_is_process_wide(restore_threads):
    """set_num_threads in one thread applies to kernels called from any other.
    (Was per OS thread: omp_set_num_threads sets only the caller's OpenMP
    setting, so a worker thread kept the default.)"""
    seen = []
    fz.set_num_threads(1)
    run_in_threads(lambda: seen.append(fz.get_num_threads()))
    fz.set_num_threads(2)
    run_in_threads(lambda: seen.append(fz.get_num_threads()))
    assert seen == [1, 2]
