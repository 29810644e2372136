"""Tests for fz.distributed: data-parallel training over MPI.

In one process (always run): init without a launcher, batch sharing, the
single-process emulation of N ranks (the gradient of the whole batch, summed
in rank order), log and metric reduction, the model comparison.

Under `mpiexec -n 2` on loopback (skipped, with the reason, when mpi4py or
mpiexec is missing): tests/distributed_driver.py trains the MLP with
fit(distribute=...) for 300 steps; both ranks end with identical weights,
equal bit for bit to the emulation and to a second run, and within float
rounding to one process with whole batches; only rank 0 prints, logs and
checkpoints; a rank that is killed, exits, raises or hangs ends the job with
an error in bounded time; a stop on one rank stops all; mismatched models,
data and diverged weights are named. And `fromzero train --distributed`.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import fromzero as fz
from fromzero import distributed

L = fz.layers
DRIVER = Path(__file__).resolve().parent / "distributed_driver.py"


# ---------------------------------------------------------------- one process

def test_init_without_a_launcher_is_a_world_of_one_without_mpi4py():
    env = {k: v for k, v in os.environ.items() if k not in distributed._LAUNCHER_VARIABLES}
    code = ("import sys, fromzero as fz; print(fz.distributed.init(), fz.distributed.is_chief(), "
            "fz.distributed.verbosity(1), 'mpi4py' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert out.split() == ["(0,", "1)", "True", "1", "False"]


@pytest.mark.parametrize("module, source", [
    ("__init__.py", "raise ImportError('No module named mpi4py')"),              # not installed
    ("MPI.py", "raise RuntimeError('cannot load MPI library')"),                 # no libmpi
])
def test_a_launcher_without_mpi4py_says_what_to_install(tmp_path, module, source):
    fake = tmp_path / "mpi4py"
    fake.mkdir()
    (fake / "__init__.py").write_text("")
    (fake / module).write_text(source)
    env = dict(os.environ, PMI_SIZE="2", PYTHONPATH=str(tmp_path))
    run = subprocess.run([sys.executable, "-c", "import fromzero as fz; fz.distributed.init()"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode != 0
    assert "ImportError: fromzero.distributed:" in run.stderr
    assert "pip install fromzero[mpi]" in run.stderr


RAISES_UNDER_A_FAKE_ABORT = """
import os, sys
from fromzero import distributed
class Comm:  # MPI_Abort as the launcher sees it: the job ends now
    def Abort(self, code):
        with open(sys.argv[1], "w") as f:
            f.write(str(distributed._unread_bytes(2)))
        os._exit(code)
distributed._abort_on_uncaught_exception(Comm())
print("ready", flush=True)
raise RuntimeError("failed on purpose " + "x" * 20000)
"""


def test_a_rank_that_raises_aborts_only_once_its_traceback_was_read(tmp_path):
    """MPICH's launcher kills the job when MPI_Abort reaches it, dropping what
    the rank's stdout and stderr pipes still hold: the traceback. Here the
    reader of stderr (the launcher) starts 0.5 s after the rank raised; the
    abort must come after it read everything, not before."""
    record = tmp_path / "unread_at_abort"
    proc = subprocess.Popen([sys.executable, "-c", RAISES_UNDER_A_FAKE_ABORT, str(record)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "ready\n"
    time.sleep(0.5)  # a launcher busy elsewhere
    stderr = proc.stderr.read()
    assert proc.wait(timeout=60) == 1
    assert record.read_text() == "0"  # nothing left unread when MPI_Abort was called
    assert "RuntimeError: failed on purpose " + "x" * 20000 in stderr


def small_model(seed=0, hidden=8, outputs=3, loss="mse"):
    fz.utils.set_random_seed(seed)
    model = fz.Sequential([L.Dense(hidden, activation="tanh"), L.Dense(outputs)])
    model.compile(optimizer="sgd", loss=loss)
    model.build((None, 5))
    return model


def data(n=10, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, 5)).astype(np.float32),
            rng.standard_normal((n, 3)).astype(np.float32))


def gradients(model, x, y):
    """The model's gradients of the mean loss over (x, y), as copies."""
    pred = model.forward(x, training=True)
    grad = np.empty_like(pred)
    model.loss.value_and_gradient(pred, model.loss.prepare_targets(y, pred.shape),
                                  np.empty(len(x), np.float32), grad)
    model.backward(grad)
    return [g.copy() for g in model.trainable_grads]


def emulated_gradients(model, x, y, shards):
    dp = distributed.DataParallel(model, shards=shards)
    for shard in dp.shards(np.arange(len(x))):
        gradients(model, x[shard.indices], y[shard.indices])
        dp.accumulate(shard)
    dp.allreduce_gradients()
    return [g.copy() for g in model.trainable_grads]


@pytest.mark.parametrize("batch, shards, expected", [
    (32, 2, [0, 16, 32]), (10, 3, [0, 3, 6, 10]), (7, 1, [0, 7]), (2, 4, [0, 0, 1, 1, 2])])
def test_shares_differ_by_at_most_one_sample(batch, shards, expected):
    dp = distributed.DataParallel(small_model(), shards=shards)
    assert dp.share_bounds(batch) == expected
    parts = dp.shards(np.arange(100, 100 + batch))
    assert [len(s.indices) for s in parts] == [b - a for a, b in zip(expected, expected[1:]) if b > a]
    assert np.array_equal(np.concatenate([s.indices for s in parts]), np.arange(100, 100 + batch))
    assert sum(float(s.weight) for s in parts) == pytest.approx(1.0)


@pytest.mark.parametrize("n, shards", [(10, 1), (10, 2), (10, 3), (7, 4), (3, 5)])
def test_emulated_shares_give_the_whole_batch_gradient(n, shards):
    """Σ_r (b_r/B)·g_r is the gradient of the mean over the batch, also when the
    shares are unequal (10 = 3 + 3 + 4) or some are empty (3 samples, 5 shares)."""
    x, y = data(n)
    whole = gradients(small_model(), x, y)
    split = emulated_gradients(small_model(), x, y, shards)
    for a, b in zip(whole, split):
        np.testing.assert_allclose(b, a, rtol=2e-5, atol=1e-7)


def test_shares_are_summed_in_rank_order():
    """((g_0·w_0 + g_1·w_1) + g_2·w_2), in float32: what N ranks compute, bit for bit."""
    x, y = data(10)
    model = small_model()
    expected = None
    for low, high in [(0, 3), (3, 6), (6, 10)]:
        w = np.float32((high - low) / 10)
        part = [g * w for g in gradients(model, x[low:high], y[low:high])]
        expected = part if expected is None else [e + p for e, p in zip(expected, part)]
    for a, b in zip(emulated_gradients(small_model(), x, y, 3), expected):
        assert np.array_equal(a, b)


def test_the_shares_loss_sums_ride_along():
    model = small_model()
    dp = distributed.DataParallel(model, shards=2)
    for shard, loss_sum in zip(dp.shards(np.arange(10)), [1.5, 2.25]):
        dp.accumulate(shard, loss_sum)
    assert dp.allreduce_gradients() == 3.75
    dp.shards(np.arange(10))
    assert dp.allreduce_gradients() == 0.0  # nothing accumulated: nothing summed


def test_an_empty_share_adds_nothing_even_after_a_full_step():
    x, y = data(12)
    model = small_model()
    dp = distributed.DataParallel(model, shards=3)
    for shard in dp.shards(np.arange(12)):  # a full step fills every share's row
        gradients(model, x[shard.indices], y[shard.indices])
        dp.accumulate(shard)
    dp.allreduce_gradients()
    parts = dp.shards(np.arange(2))          # 2 samples, 3 shares: share 0 is empty
    assert [len(s.indices) for s in parts] == [1, 1]
    for shard in parts:
        gradients(model, x[shard.indices], y[shard.indices])
        dp.accumulate(shard)
    dp.allreduce_gradients()
    whole = gradients(small_model(), x[:2], y[:2])
    for a, b in zip(whole, model.trainable_grads):
        np.testing.assert_allclose(b, a, rtol=2e-5, atol=1e-7)


def test_one_process_is_always_in_sync_and_broadcasts_nothing():
    model = small_model()
    before = model.get_weights()
    dp = distributed.DataParallel(model, check_every=1)
    assert dp.is_chief and dp.size == 1 and dp.num_parameters == 5 * 8 + 8 + 8 * 3 + 3
    assert dp.check_in_sync(1) is False
    assert dp.same_on_every_rank(42) == 42
    dp.check_same("the data size", 10)
    assert issubclass(distributed.ModelMismatchError, distributed.MismatchError)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


@pytest.mark.parametrize("kwargs, message", [
    ({"shards": 0}, "shards must be a positive integer"),
    ({"check_every": 0}, "check_every must be a positive integer"),
    ({"timeout": -1}, "timeout must be a number"),
])
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        distributed.DataParallel(small_model(), **kwargs)


def test_an_unbuilt_model_is_refused():
    # Its weights do not exist yet: there would be nothing to broadcast or reduce.
    with pytest.raises(ValueError, match="build the model first"):
        distributed.DataParallel(fz.Sequential([L.Dense(3)]))


def test_reduce_logs_sums_counts_not_means():
    dp = distributed.DataParallel(small_model())
    accuracy, precision = fz.metrics.get("accuracy"), fz.metrics.get("precision")
    labels = np.array([0, 1, 2, 1])
    scores = np.eye(3, dtype=np.float32)[[0, 1, 1, 1]]
    for m in (accuracy, precision):
        m.update_state(labels, scores)
    logs = dp.reduce_logs(6.0, 4, [accuracy, precision])
    assert logs == {"loss": 1.5, "accuracy": 0.75, "precision": precision.result()}
    assert accuracy.correct == 3 and accuracy.total == 4  # the live metric keeps its own state


def test_metric_states_are_what_reset_state_sets_and_sum_across_ranks():
    accuracy, precision = fz.metrics.get("accuracy"), fz.metrics.get("precision")
    precision.update_state(np.array([0, 1]), np.array([0, 1]))
    assert set(distributed._metric_state(accuracy)) == {"correct", "total"}
    assert set(distributed._metric_state(precision)) == {"confusion", "binary"}
    small, large = np.ones((2, 2), np.int64), np.ones((3, 3), np.int64)
    total = distributed._sum_states([small, None, large], "precision.confusion")
    assert np.array_equal(total, [[2, 2, 1], [2, 2, 1], [1, 1, 1]])
    assert distributed._sum_states([3, 4], "x") == 7
    assert distributed._sum_states([False, True], "x") is True
    assert distributed._sum_states([None, None], "x") is None


@pytest.mark.parametrize("change, message", [
    (lambda m: m.add(L.Dense(2)), "it has 3 layers, rank 0's has 2"),
    (lambda m: setattr(m.layers[0], "trainable", False), "layer 0 .* has trainable=True on rank 0"),
    (lambda m: m.compile(optimizer="adam", loss="mse"), "its optimizer is .*adam"),
    (lambda m: m.compile(optimizer="sgd", loss="binary_crossentropy"), "its loss is"),
])
def test_model_differences_are_named(change, message):
    reference = distributed._describe(small_model())
    other = small_model()
    change(other)
    if len(other.layers) == 3:
        other.build((None, 5))
    assert re.search(message, distributed._first_difference(reference, distributed._describe(other)))


def test_layer_shape_and_type_differences_are_named():
    reference = distributed._describe(small_model(hidden=8))
    wider = distributed._describe(small_model(hidden=9))
    assert ("layer 0 (Dense 'dense") in distributed._first_difference(reference, wider)
    assert "(5, 8) float32" in distributed._first_difference(reference, wider)
    fz.utils.set_random_seed(0)
    other = fz.Sequential([L.Dense(8, activation="tanh"), L.Dropout(0.1), L.Dense(3)])
    other.compile(optimizer="sgd", loss="mse")
    other.build((None, 5))
    assert "layer 1 is Dense" in distributed._first_difference(reference, distributed._describe(other))
    assert distributed._first_difference(reference, distributed._describe(small_model(seed=5))) == ""


# ---------------------------------------------------------------- fit(distribute=...) in one process

def fit_weights(distribute=None, shards=None, dropout=0.0, n=50, batch_size=8, epochs=2):
    """A small classifier fitted with fit(distribute=...) (a DataParallel with
    `shards` when given); its weights and history."""
    fz.utils.set_random_seed(3)
    model = fz.Sequential([L.Dense(16, activation="relu")] + ([L.Dropout(dropout)] if dropout else [])
                          + [L.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x, _ = data(n)
    y = np.arange(n) % 3
    if shards is not None:
        model.build((None, 5))
        distribute = distributed.DataParallel(model, shards=shards)
    history = model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0, distribute=distribute)
    return model.get_weights(), history.history


def test_fit_distributed_alone_is_plain_training_bit_for_bit():
    plain, plain_history = fit_weights()
    alone, alone_history = fit_weights(distribute=True)
    assert all(np.array_equal(a, b) for a, b in zip(plain, alone))
    assert plain_history == alone_history


def test_fit_over_emulated_shares_is_plain_training_up_to_rounding():
    """50 samples in batches of 8 over 3 shares: shares of 2, 3, 3 and, in the
    last batch of 2, an empty one; the losses, metrics and weights still match."""
    plain, plain_history = fit_weights()
    shared, shared_history = fit_weights(shards=3)
    for a, b in zip(plain, shared):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
    assert shared_history["accuracy"] == plain_history["accuracy"]
    np.testing.assert_allclose(shared_history["loss"], plain_history["loss"], rtol=1e-5)


def test_dropout_draws_per_share_and_repeats():
    first, _ = fit_weights(shards=2, dropout=0.5)
    again, _ = fit_weights(shards=2, dropout=0.5)
    plain, _ = fit_weights(dropout=0.5)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not all(np.array_equal(a, b) for a, b in zip(first, plain))  # other masks


def test_fit_refuses_a_wrong_distribute():
    model = small_model()
    x, y = data()
    with pytest.raises(TypeError, match="distribute must be True, False, None or a"):
        model.fit(x, y, distribute="yes", verbose=0)
    with pytest.raises(ValueError, match="distribute= was made for another model"):
        model.fit(x, y, distribute=distributed.DataParallel(small_model()), verbose=0)


def test_ranks_other_than_0_leave_out_the_callbacks_that_write(tmp_path):
    callbacks = [fz.callbacks.CSVLogger(tmp_path / "log.csv"), fz.callbacks.EarlyStopping(),
                 fz.callbacks.ModelCheckpoint(tmp_path / "m.npz")]
    other = fz.callbacks.CallbackList(callbacks, add_history=True, add_progbar=True, chief=False)
    assert [type(c).__name__ for c in other] == ["EarlyStopping", "History"]
    chief = fz.callbacks.CallbackList(callbacks, add_history=True, add_progbar=True)
    assert [type(c).__name__ for c in chief] == ["CSVLogger", "EarlyStopping", "ModelCheckpoint",
                                                 "ProgbarLogger", "History"]


def test_evaluate_and_predict_are_silent_on_the_other_ranks(monkeypatch, capsys):
    model = small_model()
    x, y = data()
    model.evaluate(x, y, verbose=2)
    assert capsys.readouterr().out
    monkeypatch.setattr(distributed, "_world", distributed._World(None))  # rank 0 of 1
    assert distributed.prints_here()
    monkeypatch.setattr(distributed._world, "rank", 1)
    assert not distributed.prints_here()
    model.evaluate(x, y, verbose=2)
    model.predict(x, verbose=1)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


# ---------------------------------------------------------------- two ranks under mpiexec

def find_mpiexec():
    """mpiexec beside this Python (pip install fromzero[mpi] puts MPICH's there),
    else on PATH; None with the reason when MPI cannot run here."""
    beside = Path(sys.executable).parent / "mpiexec"
    launcher = str(beside) if beside.exists() else shutil.which("mpiexec")
    if launcher is None:
        return None, "no mpiexec (pip install fromzero[mpi])"
    probe = subprocess.run([sys.executable, "-c", "from mpi4py import MPI"], capture_output=True,
                           text=True, timeout=120)
    if probe.returncode != 0:
        return None, f"mpi4py cannot load MPI (pip install fromzero[mpi]): {probe.stderr.strip()[-200:]}"
    return launcher, None


MPIEXEC, WHY_NOT = find_mpiexec()
needs_mpi = pytest.mark.skipif(MPIEXEC is None, reason=str(WHY_NOT))


def run(out, *args, ranks=2, limit=120):
    """The driver under mpiexec -n ranks (ranks=None: alone); (return code,
    output, seconds). A run over `limit` seconds is killed and fails the test."""
    command = [sys.executable, str(DRIVER), str(out), *args]
    env = dict(os.environ)
    if ranks is not None:
        command = [MPIEXEC, "-n", str(ranks)] + command  # init() gives each rank 1 of 2 cores
    else:
        env["OMP_NUM_THREADS"] = "1"  # as fast as 2 on these tiny batches, and no spinning
    out.mkdir(exist_ok=True)
    start = time.monotonic()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, text=True, start_new_session=True, env=env)
    try:
        output, _ = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"{' '.join(command)} still ran after {limit} s: a hang")
    return proc.returncode, output, time.monotonic() - start


def errors(folder):
    """The errors the ranks wrote (each rank raises the same one)."""
    return [p.read_text() for p in sorted(folder.glob("error_rank*.txt"))]


def saved(folder, rank=0):
    """What the driver's rank wrote: weights, history, losses, test results."""
    with np.load(folder / f"rank{rank}.npz") as f:
        return {k: f[k] for k in f.files}


def weights(result):
    return [result[f"weight_{i}"] for i in range(4)]


def same(a, b, keys=None):
    """Bit for bit, in every array (of `keys`) the driver saved."""
    return all(np.array_equal(a[k], b[k]) for k in (keys or a))


@needs_mpi
def test_two_ranks_fit_as_one_process(tmp_path):
    """fit(distribute=...) on 2 ranks, 300 steps of batch 32 (rank 1 seeded
    differently: rank 0's weights and shuffling must win)."""
    runs = {}
    for name, args, ranks in [("mpi", (), 2), ("again", (), 2), ("emulated", ("--shards", "2"), None),
                              ("plain", ("--plain",), None)]:
        code, output, _ = run(tmp_path / name, *args, ranks=ranks)
        assert code == 0, output
        runs[name] = output
    mpi = saved(tmp_path / "mpi")
    # Every rank holds the same weights, history, running losses and test results.
    assert same(mpi, saved(tmp_path / "mpi", 1))
    # Only rank 0 printed, checkpointed and logged.
    assert runs["mpi"].count("world size 2:") == 1 and runs["mpi"].count("Epoch 3/3 - ") == 1
    files = sorted(p.name for p in (tmp_path / "mpi").iterdir())
    assert files == ["log_rank0.csv", "model_rank0.npz", "rank0.npz", "rank1.npz"]
    # Repeats bit for bit, and equals one process summing the same two shares.
    assert same(mpi, saved(tmp_path / "again")) and same(mpi, saved(tmp_path / "emulated"))
    # One process with whole batches: the same training up to summation order.
    plain = saved(tmp_path / "plain")
    assert max(np.max(np.abs(a - b)) for a, b in zip(weights(mpi), weights(plain))) < 1e-5
    np.testing.assert_allclose(mpi["batch_losses"], plain["batch_losses"], rtol=1e-5)
    np.testing.assert_allclose(mpi["test"], plain["test"], rtol=1e-4)
    assert len(mpi["batch_losses"]) == 300 and 0.8 < mpi["history_accuracy"][-1]
    assert np.array_equal(mpi["history_accuracy"], plain["history_accuracy"])


@needs_mpi
def test_four_ranks_sum_in_rank_order_and_draw_dropout_per_share(tmp_path):
    """With 4 ranks the order of the sum matters: MPI_Allreduce (recursive
    doubling, (g0+g1)+(g2+g3)) gives other bits than the emulation's
    ((g0+g1)+g2)+g3; the rank-order sum equals it. Batch 30: shares 7, 8, 7, 8.
    Dropout masks come from one generator per share: the same in both."""
    args = ("--epochs", "1", "--steps-per-epoch", "100", "--batch-size", "30", "--dropout", "0.2")
    code, output, _ = run(tmp_path / "mpi", *args, ranks=4)
    assert code == 0, output
    code, output, _ = run(tmp_path / "emulated", *args, "--shards", "4", ranks=None)
    assert code == 0, output
    mpi = saved(tmp_path / "mpi")
    for folder, rank in [("mpi", 3), ("emulated", 0)]:
        assert same(mpi, saved(tmp_path / folder, rank))


@needs_mpi
@pytest.mark.parametrize("fault, expected", [
    ("kill", "Killed"),                      # MPICH's launcher reports the signal
    ("raise", "rank 1 failed on purpose"),   # the traceback, then MPI_Abort (init's excepthook)
    ("exit", None),                          # exit code 3: the launcher ends the job with it
])
def test_a_rank_that_dies_ends_the_job(tmp_path, fault, expected):
    code, output, seconds = run(tmp_path / fault, "--fault", fault, "--fault-step", "50", limit=60)
    assert code != 0, output
    assert expected is None or expected in output
    assert "world size" not in output and seconds < 60


@needs_mpi
def test_a_hung_rank_is_stopped_by_the_watchdog(tmp_path):
    # Rank 1 sleeps for an hour at step 50; the job must end with the watchdog's
    # message about that step. The timeout is generous (a healthy step waits
    # milliseconds, but a loaded machine can stall a rank for seconds: 3 s once
    # fired early), and nothing is timed against the machine's speed except
    # run()'s bound, 20 times the timeout and far below the hour of the hang.
    timeout = 10
    code, output, seconds = run(tmp_path / "hang", "--fault", "hang", "--fault-step", "50",
                                "--timeout", str(timeout), limit=20 * timeout)
    assert code != 0, output
    assert (f"rank 0 has waited more than {timeout} s for the other ranks in the gradient "
            f"all-reduce (after 49 steps)") in output, output
    assert seconds > timeout


@needs_mpi
def test_a_callback_that_stops_one_rank_stops_all(tmp_path):
    code, output, _ = run(tmp_path / "stop", "--fault", "stop", "--fault-step", "50", limit=60)
    assert code == 0, output
    assert int(saved(tmp_path / "stop", 0)["stopped"]) == int(saved(tmp_path / "stop", 1)["stopped"]) == 50


@needs_mpi
def test_mismatched_models_are_named_at_the_start(tmp_path):
    code, output, _ = run(tmp_path / "mismatch", "--fault", "mismatch", limit=60)
    assert code != 0 and errors(tmp_path / "mismatch"), output
    assert ("ModelMismatchError: the model on rank 1 differs from rank 0's: layer 0 (Dense 'dense') "
            "has weights [(784, 128) float32, (128,) float32] on rank 0 but [(784, 64) float32, "
            "(64,) float32] there") in errors(tmp_path / "mismatch")[0]


@needs_mpi
@pytest.mark.parametrize("fault, message", [
    ("data", "the number of training samples differs across ranks: 4096 on rank 0, 4095 on rank 1"),
    ("pixel", "the training data (a hash of x, y and sample_weight) differs across ranks"),
])
def test_ranks_with_different_data_are_stopped_before_training(tmp_path, fault, message):
    code, output, _ = run(tmp_path / fault, "--fault", fault, limit=60)
    assert code != 0 and errors(tmp_path / fault), output
    assert "MismatchError: " + message in errors(tmp_path / fault)[0]


@needs_mpi
def test_diverged_weights_are_caught_at_the_next_check(tmp_path):
    code, output, _ = run(tmp_path / "diverge", "--fault", "diverge", "--fault-step", "30",
                          "--check-every", "10", limit=60)
    assert code != 0 and errors(tmp_path / "diverge"), output
    assert ("WeightsDivergedError: step 30: the weights of rank 1 no longer equal rank 0's, from "
            "layer 'dense_1' (Dense) weight 1") in errors(tmp_path / "diverge")[0]


CLI_ON_A_SUBSET = """
import os
import sys
import fromzero as fz
from fromzero import cli
real = fz.datasets.mnist.load_data
def subset():
    if os.environ.get("PMI_RANK") == os.environ.get("FAILING_RANK"):
        raise FileNotFoundError("no MNIST on this rank")
    (x, y), (x_test, y_test) = real()
    return (x[:2000], y[:2000]), (x_test[:500], y_test[:500])
fz.datasets.mnist.load_data = subset
sys.exit(cli.main(sys.argv[1:]))
"""


@needs_mpi
@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_the_command_line_trains_on_two_ranks(tmp_path, model):
    """mpiexec -n 2 fromzero train --distributed, on 2000 MNIST samples: rank 0
    alone prints and saves; what it saved equals the same run in one process
    emulating 2 ranks (checked on the MLP)."""
    script = tmp_path / "cli.py"
    script.write_text(CLI_ON_A_SUBSET)
    command = [MPIEXEC, "-n", "2", sys.executable, str(script), "train", "--distributed",
               "--model", model, "--epochs", "1", "--seed", "3", "--save", str(tmp_path / "m.npz")]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("test loss: ") == 1 and proc.stdout.count("saved to") == 1
    assert "2 processes × 1 thread(s)" in proc.stdout
    assert re.search(r"test accuracy: 0\.[5-9]", proc.stdout), proc.stdout


@needs_mpi
def test_an_error_on_one_rank_of_the_command_line_ends_the_job(tmp_path):
    """Rank 1 cannot load the data while rank 0 waits for it: the error, then
    MPI_Abort — a plain exit would leave rank 0 waiting (and rank 1 in MPI_Finalize)."""
    script = tmp_path / "cli.py"
    script.write_text(CLI_ON_A_SUBSET)
    start = time.monotonic()
    proc = subprocess.run([MPIEXEC, "-n", "2", sys.executable, str(script), "train", "--distributed",
                           "--epochs", "1"], capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL, env=dict(os.environ, FAILING_RANK="1"))
    assert proc.returncode != 0
    assert "fromzero: error: no MNIST on this rank" in proc.stderr
    assert "test loss" not in proc.stdout and time.monotonic() - start < 60
