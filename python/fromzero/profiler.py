"""Where the time of a training step goes: ``fz.profiler.profile(model, x, y)``.

It runs real training steps — the same ``Model._train_step`` that fit runs,
on the batches fit's iterator gives: forward, loss, backward, update — with a
stopwatch around every call the
step makes into a layer, the loss and the optimizer, and prints a table:

    Profile: 200 steps of batch 32 on 1 thread(s), avx512 GEMM: 0.272 ms per step
    part                                     forward ms  backward ms  total ms   share
    dense (Dense)                                 0.075        0.085     0.159   58.5%
    dense_1 (Dense)                               0.013        0.013     0.026    9.6%
    loss (sparse_categorical_crossentropy)        0.004        0.003     0.007    2.5%
    optimizer (Adam)                                                     0.046   17.1%
    data (gather the batch)                                              0.021    7.9%
    metrics (accuracy)                                                   0.005    1.7%
    other (Python between the calls)                                     0.007    2.7%
    step                                                                 0.272  100.0%

(the textbook's MLP on MNIST, one thread). The stopwatch is put on from the
outside: for the duration of the profile, each object's method is replaced by
a timed wrapper of itself (an instance attribute, which Python finds before
the class's method) and removed again afterwards, so neither the model nor
fit carries any timing code.

Reading the table: a Dense layer's forward is one GEMM, its backward two
(dW = xᵀ·dz and dx = dz·Wᵀ), so backward costs about twice the forward —
except in the first layer, which skips dx (nobody needs ∂L/∂input). The
optimizer touches every weight once per step (Adam reads and writes three
arrays per weight). "other" is the Python between the calls: the
interpreter's share of the step. A layer made of layers (MultiHeadAttention,
whose projections are Dense sublayers) has indented rows under its own: one
per sublayer and ``<layer>/itself``, the rest of its time (for attention:
the attention kernel); they are parts of the layer's row, not added to it.
"""

import time

import numpy as np

from . import _core, ops, utils
from .layers.core import InputLayer


class _Stopwatch:
    """Accumulated seconds of the calls to the functions it wrapped."""

    def __init__(self):
        self.seconds = 0.0
        self.calls = 0

    def wrap(self, fn):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start
                self.calls += 1
        return timed


class _Patches:
    """Instance attributes that shadow methods for a while, then are removed."""

    def __init__(self):
        self._saved = []

    def time(self, obj, name, stopwatch):
        if not hasattr(obj, name):
            return
        had, old = name in vars(obj), vars(obj).get(name)
        self._saved.append((obj, name, had, old))
        setattr(obj, name, stopwatch.wrap(getattr(obj, name)))

    def undo(self):
        for obj, name, had, old in reversed(self._saved):
            if had:
                setattr(obj, name, old)
            else:
                delattr(obj, name)
        self._saved.clear()


class Profile:
    """The result of fz.profiler.profile: ``rows`` (one dict per part, times in
    milliseconds per step; a sublayer's row names its layer's row in
    ``part_of``, None otherwise), ``step_ms``, ``steps`` and ``batch_size``.
    ``profile["dense"]`` is the row whose name starts with "dense "; str() is the table."""

    def __init__(self, rows, step_ms, steps, batch_size):
        self.rows, self.step_ms, self.steps, self.batch_size = rows, step_ms, steps, batch_size

    def __getitem__(self, name):
        for row in self.rows:
            if row["name"] == name or row["name"].split(" ")[0] == name:
                return row
        raise KeyError(name)

    def table(self):
        info = f"{ops.simd_path()} GEMM"
        lines = [f"Profile: {self.steps} steps of batch {self.batch_size} on "
                 f"{_core.get_num_threads()} thread(s), {info}: {self.step_ms:.3f} ms per step"]
        width = max(len(r["name"]) for r in self.rows) + 4
        lines.append(f"{'part':<{width}}{'forward ms':>11}{'backward ms':>13}{'total ms':>10}{'share':>8}")

        def ms(value):
            return "" if value is None else f"{value:.3f}"
        for r in self.rows:
            name = ("  " if r["part_of"] else "") + r["name"]  # a sublayer: indented under its layer
            lines.append(f"{name:<{width}}{ms(r['forward_ms']):>11}{ms(r['backward_ms']):>13}"
                         f"{r['total_ms']:>10.3f}{r['share']:>8.1%}")
        lines.append(f"{'step':<{width}}{'':>11}{'':>13}{self.step_ms:>10.3f}{1:>8.1%}")
        return "\n".join(lines)

    __str__ = table

    def __repr__(self):
        return f"<Profile {self.steps} steps, {self.step_ms:.3f} ms per step>"


def profile(model, x, y, steps=50, batch_size=32, warmup=3, restore=True, print_fn=print):
    """Time `steps` training steps of a compiled model on batches of (x, y).

    Each step is what fit does for one batch: take the batch's rows
    (``data``, from the same batch iterator fit uses, in order, starting
    over when the data runs out), ``model._train_step`` (every layer's
    forward, the loss, every layer's backward, the optimizer's update) and
    the compiled metrics. ``warmup`` steps run first, untimed (the first
    step allocates buffers).

    With ``restore=True`` (the default) the weights, the optimizer's state and
    the random generator are put back afterwards, so profiling does not train
    the model. Prints the table with ``print_fn`` (None: print nothing) and
    returns a Profile (its ``rows`` hold the numbers).
    """
    model._check_compiled("profile")
    steps = utils.check_positive_int("profile", "steps", steps)
    batch_size = utils.check_positive_int("profile", "batch_size", batch_size)
    if isinstance(warmup, bool) or not isinstance(warmup, (int, np.integer)) or warmup < 0:
        raise ValueError(f"profile: warmup must be a non-negative integer, got {warmup!r}")
    batches, _ = model._batches(x, y, None, None, batch_size, None, False, "profile")
    batch_size = batches.batch_size
    # Dropout draws from the model's own generator during fit; so it does here.
    generator = model._generator()
    saved = _snapshot(model, generator) if restore else None
    layers = [layer for layer in model._leaves if not isinstance(layer, InputLayer)]
    # A layer made of layers (MultiHeadAttention's four Dense projections) gets
    # a row per sublayer under its own, and one for what it does itself.
    inner = {id(layer): list(getattr(layer, "sublayers", None) or []) for layer in layers}
    timed = layers + [sub for layer in layers for sub in inner[id(layer)]]
    clocks = {(id(layer), part): _Stopwatch() for layer in timed for part in ("forward", "backward")}
    loss_fwd, loss_bwd, update, data, metrics = (_Stopwatch() for _ in range(5))
    output_losses = model._losses()
    patches = _Patches()
    try:
        with model._training("profile"):
            grads_and_params, _ = model._prepare_training()
            epoch = iter(())

            def next_batch():
                nonlocal epoch
                batch = next(epoch, None)
                if batch is None:  # the data ran out: start again from the first batch
                    epoch = batches.epoch()
                    batch = next(epoch)
                return batch

            def one_step():
                start = time.perf_counter()
                inputs, targets, weights = next_batch()
                data.seconds += time.perf_counter() - start
                model._train_step(inputs, targets, weights, grads_and_params, False)

            for _ in range(warmup):
                one_step()
            model.reset_metrics()
            data.seconds = 0.0
            for layer in timed:
                patches.time(layer, "forward", clocks[(id(layer), "forward")])
                patches.time(layer, "backward", clocks[(id(layer), "backward")])
                patches.time(layer, "backward_from_logits", clocks[(id(layer), "backward")])
            for o in output_losses:
                patches.time(o.loss, "value", loss_fwd)
                patches.time(o.loss, "value_and_gradient", loss_fwd)
                patches.time(o.loss, "softmax_gradient", loss_bwd)
            patches.time(model.optimizer, "apply_gradients", update)
            patches.time(model, "_update_metrics", metrics)  # called by _train_step
            start = time.perf_counter()
            for _ in range(steps):
                one_step()
            total = time.perf_counter() - start
    finally:
        patches.undo()
        if saved is not None:
            _restore(model, saved, generator)

    per_step = 1e3 / steps
    step_ms = total * per_step
    rows = []

    def add(name, forward=None, backward=None, total_ms=None, part_of=None):
        if total_ms is None:
            total_ms = (forward or 0.0) + (backward or 0.0)
        rows.append({"name": name, "forward_ms": forward, "backward_ms": backward,
                     "total_ms": total_ms, "share": total_ms / step_ms if step_ms else 0.0,
                     "part_of": part_of})

    def ms(layer, part):
        return clocks[(id(layer), part)].seconds * per_step

    for layer in layers:
        name = f"{layer.name} ({type(layer).__name__})"
        add(name, ms(layer, "forward"), ms(layer, "backward"))
        subs = inner[id(layer)]
        for sub in subs:
            add(f"{layer.name}/{sub.name} ({type(sub).__name__})", ms(sub, "forward"),
                ms(sub, "backward"), part_of=name)
        if subs:  # the layer's own work: its time less its sublayers'
            add(f"{layer.name}/itself", *(max(0.0, ms(layer, part) - sum(ms(s, part) for s in subs))
                                          for part in ("forward", "backward")), part_of=name)
    loss_names = ", ".join(o.loss.name for o in output_losses)
    if loss_bwd.calls:  # softmax + cross-entropy: the value, then the fused gradient p − t
        add(f"loss ({loss_names})", loss_fwd.seconds * per_step, loss_bwd.seconds * per_step)
    else:  # value and gradient come from one call
        add(f"loss ({loss_names}, value and gradient)", total_ms=loss_fwd.seconds * per_step)
    add(f"optimizer ({type(model.optimizer).__name__})", total_ms=update.seconds * per_step)
    add("data (gather the batch)", total_ms=data.seconds * per_step)
    if model.metrics:
        add(f"metrics ({', '.join(m.name for m in model.metrics)})", total_ms=metrics.seconds * per_step)
    add("other (Python between the calls)",
        total_ms=max(0.0, step_ms - sum(r["total_ms"] for r in rows if r["part_of"] is None)))
    result = Profile(rows, step_ms, steps, batch_size)
    if print_fn is not None:
        print_fn(result.table())
    return result


def _snapshot(model, generator):
    """What training steps change: weights, optimizer state, the random generator."""
    opt = model.optimizer
    return {
        "weights": model.get_weights(),
        "iterations": opt.iterations,
        "slots": {key: (p, [s.copy() for s in states])
                  for key, (p, states) in getattr(opt, "_slots", {}).items()},
        "rng": generator.bit_generator.state,
    }


def _restore(model, saved, generator):
    model.set_weights(saved["weights"])
    opt = model.optimizer
    opt.iterations = saved["iterations"]
    if hasattr(opt, "_slots"):
        opt._slots = saved["slots"]
    generator.bit_generator.state = saved["rng"]
    for m in model.metrics:
        m.reset_state()
