"""Data parallelism over MPI: N processes train one model as one process would.

Synchronous data parallelism, as PyTorch's DDP and Keras's multi-worker strategy:

    every rank starts from the same weights θ (rank 0's, broadcast)
    for each global batch of B samples (the same sample indices on every rank):
        rank r takes its share, samples [⌊rB/N⌋, ⌊(r+1)B/N⌋) of the batch (b_r of them)
        forward + backward on the share:   g_r = ∇ (mean loss over the share)
        all-reduce:                        g = Σ_r (b_r / B) · g_r
        every rank applies the same update θ ← optimizer(θ, g)

Σ_r (b_r/B)·g_r is exactly the gradient of the mean loss over the whole batch,
so the update is the one a single process makes with batch size B, whether or
not N divides B (shares differ by at most one sample and are weighted by their
size; a share can be empty when B < N, as in an epoch's last batch). Only the
order in which floats are added differs — see "Determinism".

Usage: ``model.fit(x, y, distribute=True)`` under ``mpiexec -n N`` (trainer.py
makes these calls). What a training loop calls::

    rank, size = fz.distributed.init()          # size 1 without mpiexec
    dp = fz.distributed.DataParallel(model)     # same model on every rank? rank 0's weights
    for step, batch in enumerate(batches, 1):   # batch: sample indices, equal on every rank
        for shard in dp.shards(batch):          # this rank's share of the batch
            ...forward / loss / backward on x[shard.indices]...
            dp.accumulate(shard, loss_sum)      # g_r·b_r/B (and the share's loss) into the buffer
        batch_loss = dp.allreduce_gradients()   # one exchange; model's grads ← g; Σ of the losses
        optimizer.apply_gradients(zip(model.trainable_grads, model.trainable_params))
        dp.check_in_sync(step)                  # every `check_every` steps: same weights?
    logs = dp.reduce_logs(loss_sum, samples_seen, metrics)   # sums over ranks, then ratios
    if dp.is_chief: model.save(path)            # only rank 0 prints and saves

The gradients travel as one flat float32 buffer, preallocated: ``accumulate``
packs every trainable gradient into it (one NumPy pass per array, scaled by
the share's weight b_r/B on the way), ``allreduce_gradients`` makes one
exchange and copies the sum back into the model's gradient arrays. The
share's loss sum rides along in one extra element, so every rank learns the
loss of the whole batch (for the progress bar, for stopping on NaN — a
decision all ranks must take together) without a second collective. Copying in
and out (rather than making the layers' gradients views of the buffer) keeps
the layers unaware of distribution; the copies cost ~0.1 ms per million
parameters, a few percent of the exchange itself (bench/distributed.py).

Determinism. A floating-point sum depends on its order, and MPI_Allreduce lets
the library choose it (by message size, process count, arrival). So the sum is
done here, in a fixed order, with MPI only moving bytes:

    1. Alltoall: the buffer is cut into N chunks; rank r receives chunk r of
       every rank (a reduce-scatter without the arithmetic)
    2. rank r adds its N pieces in rank order: ((g_0 + g_1) + g_2) + ...
    3. Allgather: every rank receives every summed chunk

Each rank sends and receives 2·(N−1)/N of the buffer, the same as the ring
all-reduce MPI would use, so determinism costs no bandwidth (gather-then-sum
would move (N−1)·the buffer). A run with N ranks and batch B therefore repeats
bit for bit. It equals a single process training with batch B up to the
rounding of the summation order (the GEMM sums the whole batch at once, here
the shares are summed separately and then added); ``DataParallel(model,
shards=N)`` in ONE process removes even that difference: it computes the N
shares one after another (micro-batches) and adds them with the same code,
in the same order, so its result equals the N-rank run bit for bit.

Weights stay equal: rank 0's are broadcast at the start, and every
`check_every` steps each rank hashes its trainable weights (64-bit BLAKE2b)
and the hashes are compared (one 8-byte all-gather); a difference raises
``WeightsDivergedError`` naming the first array that differs. At the start
the ranks also compare their models (layer types, weight shapes, trainable
flags, optimizer and loss): ``ModelMismatchError`` names the first difference.

Metrics and losses are reduced as sums: the loss sums and sample counts of all
ranks are added, then divided; a metric's state (the attributes its
``reset_state`` sets: counts, confusion matrices) is summed across ranks and
``result()`` is read from the sum — never a mean of per-rank means.

Faults. MPICH's launcher (Hydra) kills every rank as soon as one dies from a
signal or exits with an error, and exits with that code (a rank that exits
early with code 0 ends the job with code 0, too). What it cannot see
is a rank that hangs, or one whose Python raised (its exit handler then waits
forever in MPI_Finalize). So ``init`` makes an uncaught exception call
MPI_Abort (as ``python -m mpi4py`` does), and a watchdog thread aborts the
job when a collective has waited more than `timeout` seconds for the others.
Before MPI_Abort a rank waits until the launcher has read what it printed
(the traceback, the watchdog's message): the abort travels by another
channel and the launcher kills the job the moment it arrives.

Non-trainable weights (BatchNormalization's moving statistics) are updated by
each rank from its own share, as in DDP without SyncBatchNorm; they are not
part of the checksum. Dropout masks are drawn per rank.
"""

import copy
import hashlib
import math
import numbers
import os
import stat
import sys
import threading
import time
from typing import NamedTuple

import numpy as np

from . import utils

__all__ = ["init", "abort", "rank", "world_size", "is_chief", "prints_here", "verbosity",
           "DataParallel", "Shard",
           "digest",
           "MismatchError", "ModelMismatchError", "WeightsDivergedError"]

# Environment variables set by MPI launchers in the processes they start:
# MPICH's Hydra and Intel MPI (PMI_*), Open MPI (OMPI_*), PMIx launchers
# (srun --mpi=pmix, prterun), MVAPICH. Without one of them this process was
# not started by mpiexec and is a world of one: mpi4py is not even imported.
_LAUNCHER_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "MV2_COMM_WORLD_SIZE")


class MismatchError(ValueError):
    """Something that must be equal on every rank is not (DataParallel.check_same)."""


class ModelMismatchError(MismatchError):
    """The ranks built different models (layers, weight shapes, optimizer, loss)."""


class WeightsDivergedError(RuntimeError):
    """The ranks' weights are no longer identical."""


class _World:
    """This process's place in the job: rank, size, and the MPI communicator (None alone)."""

    def __init__(self, comm):
        self.comm = comm
        self.rank = 0 if comm is None else comm.Get_rank()
        self.size = 1 if comm is None else comm.Get_size()


_world = None


def init(comm=None, threads="auto", abort_on_exception=True):
    """Join the job; returns (rank, world size). Later calls return the same.

    Started by mpiexec (or srun), this uses MPI through mpi4py
    (``pip install fromzero[mpi]``); started on its own, it is rank 0 of a
    world of size 1 and never imports mpi4py. `comm` picks another
    communicator than MPI_COMM_WORLD.

    threads="auto": when OMP_NUM_THREADS is not set, the kernels of each rank
    get an equal part of this machine's cores (ranks on the same machine
    share them; more threads than cores would make OpenMP's spinning threads
    fight). An integer sets the count; None leaves it alone.

    abort_on_exception: an uncaught exception on one rank aborts the whole
    job (MPI_Abort) instead of leaving the others waiting for it.
    """
    global _world
    if _world is not None:
        if comm is not None and comm is not _world.comm:
            raise RuntimeError("fz.distributed.init was already called with another communicator")
        return _world.rank, _world.size
    if comm is None and _launched_by_mpi():
        comm = _mpi().COMM_WORLD
    world = _World(comm)
    if world.size > 1:
        if threads == "auto":
            if "OMP_NUM_THREADS" not in os.environ:
                _set_threads(max(1, _available_cores() // _ranks_on_this_machine(comm)))
        elif threads is not None:
            _set_threads(utils.check_positive_int("init", "threads", threads))
        if abort_on_exception:
            _abort_on_uncaught_exception(comm)
    _world = world
    return world.rank, world.size


def _launched_by_mpi():
    if any(name in os.environ for name in _LAUNCHER_VARIABLES):
        return True
    mpi = sys.modules.get("mpi4py.MPI")  # the program set up MPI itself
    return mpi is not None and mpi.Is_initialized()


def _mpi():
    """mpi4py's MPI module, or an ImportError that says how to get it."""
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise ImportError("fromzero.distributed: this process was started by an MPI launcher "
                          "but mpi4py is not installed: pip install fromzero[mpi]") from e
    except RuntimeError as e:  # mpi4py found no MPI library to load
        raise ImportError(f"fromzero.distributed: mpi4py cannot load an MPI library ({e}); "
                          f"pip install fromzero[mpi] installs MPICH") from e
    return MPI


def _available_cores():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _ranks_on_this_machine(comm):
    local = comm.Split_type(_mpi().COMM_TYPE_SHARED)
    try:
        return local.Get_size()
    finally:
        local.Free()


def _set_threads(n):
    from ._core import set_num_threads
    set_num_threads(n)


def _abort_on_uncaught_exception(comm):
    """Python's exit after an uncaught exception runs MPI_Finalize, which waits
    for ranks that wait for this one: a hang. Print the error, then abort."""
    previous = sys.excepthook

    def hook(kind, value, traceback):
        previous(kind, value, traceback)
        _abort_job(comm, 1)

    sys.excepthook = hook


def abort(code=1):
    """End the whole job now with exit code `code` (MPI_Abort): what a rank
    calls when it cannot go on, since the others may be waiting for it in a
    collective, and a plain exit would wait for them in MPI_Finalize — a
    hang. Alone (or before init): sys.exit(code)."""
    if _world is not None and _world.size > 1:
        _abort_job(_world.comm, code)
    sys.stdout.flush()
    sys.stderr.flush()
    sys.exit(code)


def _abort_job(comm, code):
    """MPI_Abort, once the launcher has read this rank's output. The launcher
    (MPICH's Hydra proxy) reads a rank's stdout and stderr from pipes, and the
    abort from another socket; it kills the job as soon as it sees the abort,
    dropping what still sits in the pipes: the traceback printed just before
    (lost in 11 of 100 runs on a loaded machine). So flush, then wait until the
    pipes are empty (FIONREAD: the bytes not read yet), for at most 10 s
    should the launcher not read at all."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):  # None, closed, or its reader gone
            pass
    deadline = time.monotonic() + 10.0
    while any(_unread_bytes(fd) for fd in (1, 2)) and time.monotonic() < deadline:
        time.sleep(0.005)
    comm.Abort(code)


def _unread_bytes(fd):
    """How many bytes written to `fd` its reader has not read yet, if it is a
    pipe (0 for a file or terminal, which have no reader to wait for)."""
    try:
        import fcntl  # POSIX only: imported here, where MPI runs
        import termios
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            return 0
        return int.from_bytes(fcntl.ioctl(fd, termios.FIONREAD, bytes(4)), sys.byteorder)
    except (ImportError, OSError):  # no such descriptor, or not POSIX
        return 0


def rank():
    """This process's rank (0 without mpiexec)."""
    return init()[0]


def world_size():
    """The number of processes in the job (1 without mpiexec)."""
    return init()[1]


def is_chief():
    """True on rank 0, the one process that prints progress and saves files."""
    return rank() == 0


def prints_here():
    """False on the ranks other than 0 of a job that called init(): they
    compute what rank 0 computes, and rank 0 alone shows it (evaluate and
    predict check this). True alone, or before init (it never starts MPI)."""
    return _world is None or _world.rank == 0


def verbosity(verbose):
    """`verbose` on rank 0 and 0 (silent) on the other ranks: fit(verbose=fz.distributed.verbosity(1))."""
    return verbose if is_chief() else 0


class Shard(NamedTuple):
    """One rank's share of a global batch: its samples, its weight b_r / B,
    and the generator its layers draw from (dropout masks; see share_generator)."""
    slot: int              # which row of the flat gradient buffer it fills
    indices: object        # the samples: a slice of the batch's index array, or a slice object
    weight: np.float32     # its share of the batch, b_r / B
    generator: object      # share r's numpy Generator (None before share_generator)


class DataParallel:
    """Keeps `model` identical on every rank and its gradients summed over the ranks.

    Construction checks that every rank built the same model and broadcasts
    rank 0's weights. Then, per step: ``shards(batch)`` gives this rank's
    share of the global batch, ``accumulate(shard)`` after each backward,
    ``allreduce_gradients()`` before the optimizer step, ``check_in_sync(step)``
    after it (details in the module's docstring).

    shards: in a single process, compute each global batch as this many
        shares one after another (micro-batches) and add them in the order
        the ranks of an N-process run would: the result equals that run's bit
        for bit (memory: one gradient-sized buffer per share). Under MPI it
        must be None or the world size.
    check_every: compare the weights' hashes every this many steps (None: never).
    timeout: seconds a collective may wait for the other ranks before the
        watchdog aborts the job (None: wait forever).

    The trainable parameters and their gradient arrays are read from the model
    once, here: make a new DataParallel after changing which layers train.
    """

    def __init__(self, model, shards=None, check_every=100, timeout=300.0):
        self.rank, self.size = init()
        self._comm = _world.comm
        if self.size > 1:
            if shards is not None and shards != self.size:
                raise ValueError(f"DataParallel: shards={shards!r} under MPI must be the world "
                                 f"size {self.size} (or None)")
            self.num_shards = self.size
            self._local_shards = [self.rank]
        else:
            self.num_shards = 1 if shards is None else utils.check_positive_int(
                "DataParallel", "shards", shards)
            self._local_shards = list(range(self.num_shards))
        self.check_every = None if check_every is None else utils.check_positive_int(
            "DataParallel", "check_every", check_every)
        self.timeout = None if timeout is None else utils.check_number(
            "DataParallel", "timeout", timeout, 0, low_open=True)
        self._watchdog = (_Watchdog(self._comm, self.rank, self.timeout)
                          if self.size > 1 and self.timeout is not None else None)

        self._model = model
        unbuilt = [layer.name for layer in getattr(model, "layers", []) if not layer.built]
        if unbuilt:
            raise ValueError(f"DataParallel: build the model first (model.build(input_shape)): "
                             f"{', '.join(unbuilt)} {'has' if len(unbuilt) == 1 else 'have'} "
                             f"no weights yet")
        self._params = list(model.trainable_params)
        grads = list(model.trainable_grads)
        if len(grads) != len(self._params):
            raise ValueError(f"DataParallel: the model has {len(self._params)} trainable "
                             f"parameters but {len(grads)} gradient arrays: build it first")
        for i, (g, p) in enumerate(zip(grads, self._params)):
            if g.shape != p.shape or g.dtype != np.float32 or not g.flags.c_contiguous:
                raise ValueError(f"DataParallel: gradient {i} must be a C-contiguous float32 "
                                 f"array of shape {p.shape}, got {g.dtype} {g.shape}")
        # Each gradient as a flat view (no copy), and its span in the flat buffer.
        self._flat_grads = [g.reshape(-1) for g in grads]
        ends = np.cumsum([0] + [g.size for g in grads])
        self._spans = list(zip(ends[:-1].tolist(), ends[1:].tolist()))
        self.num_parameters = int(ends[-1])

        # The flat buffers, allocated once: the gradients, then one element
        # for the loss sum, padded to a multiple of the shard count so that
        # the Alltoall cuts them into equal chunks.
        self._chunk = math.ceil((self.num_parameters + 1) / self.num_shards)
        padded = self._chunk * self.num_shards
        self._shares = np.zeros((len(self._local_shards), padded), np.float32)  # g_r · b_r/B
        self._filled = np.zeros(len(self._local_shards), bool)
        self._sum = np.zeros(padded, np.float32)                                 # Σ_r, all chunks
        if self.size > 1:
            self._received = np.empty((self.size, self._chunk), np.float32)      # chunk `rank` of each
            self._chunk_sum = np.empty(self._chunk, np.float32)
        self.steps = 0  # all-reduces done
        self.exchange_seconds = 0.0  # spent in the gradient exchange, waiting for others included
        self._generators = [None] * len(self._local_shards)
        self._flag = np.zeros(1, np.int32)  # agree()'s one-element exchange

        self._check_same_model(model)
        self.broadcast_weights()

    @property
    def is_chief(self):
        return self.rank == 0

    @property
    def model(self):
        return self._model

    # ------------------------------------------------------------ a step

    def share_bounds(self, batch_size):
        """[s_0, s_1, ..., s_N]: share r of a batch is samples s_r to s_(r+1) − 1,
        s_r = ⌊r·B/N⌋, so the shares differ in size by at most one."""
        return [r * batch_size // self.num_shards for r in range(self.num_shards + 1)]

    def shards(self, batch):
        """This process's non-empty shares of the global batch: one under MPI,
        all N in single-process emulation. Starts a step. `batch` is the
        batch's sample indices (an array, the same on every rank): each
        share's `indices` is a slice of it; or the batch size B: each share's
        `indices` is a slice object, rows of the gathered batch (views, no copy)."""
        if isinstance(batch, numbers.Integral):
            size, batch = int(batch), None
        else:
            batch = np.asarray(batch)
            size = len(batch)
        bounds = self.share_bounds(size)
        self._filled[:] = False
        out = []
        for slot, r in enumerate(self._local_shards):
            low, high = bounds[r], bounds[r + 1]
            if high > low:
                out.append(Shard(slot, slice(low, high) if batch is None else batch[low:high],
                                 np.float32((high - low) / size), self._generators[slot]))
        return out

    def accumulate(self, shard, loss_sum=0.0):
        """Copy the model's gradients, scaled by the shard's weight b_r/B, into
        the shard's row of the flat buffer (one NumPy pass per array), and
        the shard's loss sum (Σ over its samples) into the element after them."""
        row = self._shares[shard.slot]
        for g, (low, high) in zip(self._flat_grads, self._spans):
            np.multiply(g, shard.weight, out=row[low:high])
        row[self.num_parameters] = loss_sum
        self._filled[shard.slot] = True

    def allreduce_gradients(self):
        """Set the model's gradients to Σ_r (b_r/B)·g_r over every share of
        the step, added in rank order: one exchange (two MPI collectives that
        only move bytes) under MPI, a local sum in emulation. Returns the sum
        of the shares' loss sums: the whole batch's, equal on every rank."""
        for slot in np.flatnonzero(~self._filled):  # an empty share adds nothing
            self._shares[slot].fill(0.0)
        if self.size == 1:
            np.copyto(self._sum, self._shares[0])
            for row in self._shares[1:]:
                np.add(self._sum, row, out=self._sum)
        else:
            start = time.perf_counter()
            with self._watch("the gradient all-reduce"):
                # received[s] = chunk `rank` of rank s's buffer.
                self._comm.Alltoall(self._shares[0].reshape(self.size, self._chunk), self._received)
            np.copyto(self._chunk_sum, self._received[0])
            for piece in self._received[1:]:
                np.add(self._chunk_sum, piece, out=self._chunk_sum)
            with self._watch("the gradient all-reduce"):
                self._comm.Allgather(self._chunk_sum, self._sum.reshape(self.size, self._chunk))
            self.exchange_seconds += time.perf_counter() - start
        for g, (low, high) in zip(self._flat_grads, self._spans):
            np.copyto(g, self._sum[low:high])
        self._filled[:] = False
        self.steps += 1
        return float(self._sum[self.num_parameters])

    # ------------------------------------------------------------ weights

    def broadcast_weights(self):
        """Give every rank rank 0's weights (trainable and not), in place.
        One broadcast per array: this happens once, at the start."""
        if self.size == 1:
            return
        with self._watch("the weight broadcast"):
            for w in _model_weights(self._model):
                self._comm.Bcast(w, root=0)

    def check_in_sync(self, step, force=False):
        """Every `check_every` steps (or with force): compare a 64-bit hash of
        the trainable weights across ranks, one small all-gather; raise
        WeightsDivergedError naming the first array that differs. Returns
        True when a comparison was made."""
        if self.size == 1 or not (force or (self.check_every and step % self.check_every == 0)):
            return False
        mine = digest(self._params)
        every = self._allgather(mine, "the weight check")
        if all(d == every[0] for d in every):
            return True
        # Which array differs, and on which rank: one more (rare) all-gather.
        arrays = self._allgather([digest([p]) for p in self._params], "the weight check")
        names = _param_names(self._model)
        for r, digests in enumerate(arrays):
            for i, (d, d0) in enumerate(zip(digests, arrays[0])):
                if d != d0:
                    raise WeightsDivergedError(
                        f"step {step}: the weights of rank {r} no longer equal rank 0's, from "
                        f"{names[i]} (trainable weight {i}) on: something changed them on one "
                        f"rank only (a different update, a set_weights, a non-deterministic "
                        f"kernel); the ranks must apply identical updates")
        raise WeightsDivergedError(f"step {step}: the weights differ across ranks")

    def same_on_every_rank(self, value):
        """rank 0's `value` (any picklable object), on every rank: a seed for
        shuffling, so that every rank cuts the same batches."""
        if self.size == 1:
            return value
        with self._watch("a broadcast"):
            return self._comm.bcast(value, root=0)

    def share_generator(self, generator):
        """Give `generator` (a numpy Generator: the model's, which shuffles the
        data) rank 0's state on every rank, so that every rank cuts the same
        batches; and make one generator per share for what the layers draw
        (dropout masks): different for each share, the same for share r
        whether rank r computes it or one process emulates N ranks. They are
        seeded from a hash of the state, not drawn from it: the batches stay
        those that a fit without distribute cuts."""
        state = self.same_on_every_rank(generator.bit_generator.state)
        generator.bit_generator.state = state
        seed = int.from_bytes(hashlib.blake2b(repr(state).encode(), digest_size=16).digest(),
                              "little")
        self._generators = [np.random.default_rng([seed, r]) for r in self._local_shards]

    def agree(self, flag):
        """True on every rank if `flag` is true on any (one tiny all-reduce):
        a decision such as stopping the training must be taken by all ranks
        together, or those going on would wait forever for the others."""
        if self.size == 1:
            return bool(flag)
        self._flag[0] = bool(flag)
        with self._watch("the stop decision"):
            self._comm.Allreduce(_mpi().IN_PLACE, self._flag, op=_mpi().MAX)
        return bool(self._flag[0])

    def check_same(self, what, value):
        """Raise MismatchError on every rank unless `value` (picklable,
        comparable) is equal on all ranks; `what` names it in the error: the
        number of samples, the batch size, the epochs — anything that decides
        how many steps a rank takes, since a rank with one step more would
        wait forever for the others."""
        values = self._allgather(value, f"the check of {what}")
        for r, v in enumerate(values):
            if v != values[0]:
                raise MismatchError(f"{what} differs across ranks: {values[0]!r} on rank 0, "
                                         f"{v!r} on rank {r}")

    # ------------------------------------------------------------ logs

    def sum_over_ranks(self, values, metrics=()):
        """(the numbers `values` summed over all ranks, the `metrics` merged:
        copies holding the sum of every rank's state, whose result() is the
        metric over all ranks' samples). Added in rank order, so every rank
        gets the same numbers; one all-gather. The live metrics keep their
        local state. In one process: the values and metrics as they are."""
        if self.size == 1:
            return list(values), list(metrics)
        states = [_metric_state(m) for m in metrics]
        gathered = self._allgather(([float(v) for v in values], states), "the log reduction")
        sums = [math.fsum(g[0][i] for g in gathered) for i in range(len(values))]
        merged = []
        for i, metric in enumerate(metrics):
            total = copy.copy(metric)
            for name in states[i]:
                setattr(total, name, _sum_states([g[1][i][name] for g in gathered],
                                                 f"{metric.name}.{name}"))
            merged.append(total)
        return sums, merged

    def reduce_logs(self, loss_sum, count, metrics=()):
        """{"loss": Σ loss sums / Σ counts, metric name: result of the summed
        states}, over all ranks (sum_over_ranks): never a mean of means."""
        (loss_sum, count), metrics = self.sum_over_ranks([loss_sum, count], metrics)
        logs = {"loss": loss_sum / count if count else float("nan")}
        logs.update((m.name, m.result()) for m in metrics)
        return logs

    # ------------------------------------------------------------ internals

    def _allgather(self, value, what):
        if self.size == 1:
            return [value]
        with self._watch(what):
            return self._comm.allgather(value)

    def _watch(self, what):
        return self._watchdog.watch(what, self.steps) if self._watchdog else _NO_WATCH

    def _check_same_model(self, model):
        mine = _describe(model)
        every = self._allgather(mine, "the model check")
        for r, theirs in enumerate(every[1:], start=1):
            difference = _first_difference(every[0], theirs)
            if difference:
                raise ModelMismatchError(f"the model on rank {r} differs from rank 0's: "
                                         f"{difference}; every rank must build and compile the "
                                         f"same model")


# ---------------------------------------------------------------- models, weights, metrics

def _model_weights(model):
    """Every array of the model (trainable parameters and the rest), in layer order."""
    layers = getattr(model, "layers", None)
    if layers is None:
        return list(model.trainable_params)
    return [w for layer in layers for w in getattr(layer, "weights", layer.params)]


def _param_names(model):
    """A readable name for each trainable parameter: "layer 'dense_1' (Dense) weight 0"."""
    layers = getattr(model, "layers", None)
    if layers is None:
        return [f"parameter {i}" for i in range(len(model.trainable_params))]
    return [f"layer {layer.name!r} ({type(layer).__name__}) weight {i}"
            for layer in layers if layer.trainable for i in range(len(layer.params))]


def _describe(model):
    """What every rank's model must agree on, as plain data: per layer its
    type, trainable flag and weight shapes and dtypes; the optimizer and loss."""
    layers = getattr(model, "layers", None)
    if layers is None:
        described = [("parameters", True, [(p.shape, p.dtype.str) for p in model.trainable_params])]
    else:
        described = [(f"{type(layer).__name__} {layer.name!r}", bool(layer.trainable),
                      [(w.shape, w.dtype.str) for w in getattr(layer, "weights", layer.params)])
                     for layer in layers]
    optimizer, loss = getattr(model, "optimizer", None), getattr(model, "loss", None)
    compiled = (None if optimizer is None else repr(sorted(optimizer.get_config().items())),
                None if loss is None else repr(sorted(loss.get_config().items())))
    return {"layers": described, "compile": compiled}


def _first_difference(reference, other):
    """A sentence naming the first way `other` (a _describe) differs from `reference`, or ''."""
    mine, theirs = reference["layers"], other["layers"]
    for i, (a, b) in enumerate(zip(mine, theirs)):
        # Layer names may differ between ranks (name counters); types and shapes may not.
        if a[0].split()[0] != b[0].split()[0]:
            return f"layer {i} is {a[0]} on rank 0 but {b[0]} there"
        if a[2] != b[2]:
            return (f"layer {i} ({a[0]}) has weights {_shapes(a[2])} on rank 0 but "
                    f"{_shapes(b[2])} there")
        if a[1] != b[1]:
            return f"layer {i} ({a[0]}) has trainable={a[1]} on rank 0 but {b[1]} there"
    if len(mine) != len(theirs):
        return f"it has {len(theirs)} layers, rank 0's has {len(mine)}"
    for what, a, b in zip(("optimizer", "loss"), reference["compile"], other["compile"]):
        if a != b:
            return f"its {what} is {b} there but {a} on rank 0"
    return ""


def _shapes(weights):
    return "[" + ", ".join(f"{shape} {np.dtype(dtype).name}" for shape, dtype in weights) + "]"


def digest(arrays):
    """A 64-bit BLAKE2b hash of the arrays' bytes (read in place, no copy)."""
    h = hashlib.blake2b(digest_size=8)
    for a in arrays:
        h.update(np.ascontiguousarray(a).data)
    return h.digest()


def _metric_state(metric):
    """{name: value} of the attributes the metric's reset_state() sets — its
    state, as Keras's metric variables (Accuracy: correct, total; Precision:
    confusion, binary) — read from the live metric."""
    probe = copy.copy(metric)
    probe.__dict__ = {}
    try:
        probe.reset_state()
    except AttributeError as e:
        raise TypeError(f"metric {metric.name!r}: its reset_state() reads the metric's settings, "
                        f"so its state cannot be told apart from them for the sum across ranks "
                        f"({e})") from None
    return {name: getattr(metric, name) for name in vars(probe)}


def _sum_states(values, what):
    """The sum over ranks of one metric state, in rank order: numbers added,
    flags or-ed, arrays (confusion matrices that may have grown to different
    sizes) added after padding with zeros; None (nothing seen) adds nothing."""
    present = [v for v in values if v is not None]
    if not present:
        return None
    first = present[0]
    if isinstance(first, (bool, np.bool_)):
        return any(present)
    if isinstance(first, numbers.Number):
        return sum(present)
    if isinstance(first, np.ndarray):
        shape = tuple(max(s) for s in zip(*(v.shape for v in present)))
        total = np.zeros(shape, np.result_type(*present))
        for v in present:
            total[tuple(slice(0, n) for n in v.shape)] += v
        return total
    raise TypeError(f"cannot sum the metric state {what} of type {type(first).__name__} "
                    f"across ranks")


# ---------------------------------------------------------------- the watchdog

class _NoWatch:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


_NO_WATCH = _NoWatch()


class _Watchdog:
    """Aborts the job when this rank has waited longer than `timeout` seconds
    in one collective: another rank is hung (or died in a way the launcher
    did not notice). A daemon thread looks once a second; MPI calls release
    the GIL, so it runs while the main thread waits."""

    def __init__(self, comm, rank, timeout):
        self.comm, self.rank, self.timeout = comm, rank, timeout
        self._waiting = None  # (what, step, since) while in a collective
        self._thread = None
        self._watch = _Watch(self)

    def watch(self, what, step):
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="fromzero-watchdog", daemon=True)
            self._thread.start()
        self._watch.what, self._watch.step = what, step
        return self._watch

    def _run(self):
        period = min(1.0, self.timeout / 4)
        while True:
            time.sleep(period)
            waiting = self._waiting
            if waiting is not None and time.monotonic() - waiting[2] > self.timeout:
                what, step, _ = waiting
                print(f"fromzero.distributed: rank {self.rank} has waited more than "
                      f"{self.timeout:g} s for the other ranks in {what} (after {step} steps): "
                      f"one of them is hung or dead; aborting the job (raise "
                      f"DataParallel(timeout=...) if a step can really take this long)",
                      file=sys.stderr, flush=True)
                self._abort()

    def _abort(self):
        if _mpi().Query_thread() == _mpi().THREAD_MULTIPLE:
            _abort_job(self.comm, 1)  # MPI allows it from this thread
        os._exit(1)  # the launcher sees the exit and ends the other ranks


class _Watch:
    """The `with` block around one collective (reused: no allocation per step)."""

    def __init__(self, watchdog):
        self.watchdog, self.what, self.step = watchdog, None, 0

    def __enter__(self):
        self.watchdog._waiting = (self.what, self.step, time.monotonic())
        return self

    def __exit__(self, *exc):
        self.watchdog._waiting = None
        return False
