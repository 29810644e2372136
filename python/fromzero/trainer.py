"""The training loop: compile, fit, evaluate, predict and the *_on_batch
methods of every model, with Keras 3's arguments, return values and
callback hooks.

One training step (Trainer._train_step) is the whole textbook algorithm:

    1. forward:   outputs = model(x)                       (models.Model.forward)
    2. loss:      L = Σ_k w_k · loss_k(y_k, output_k), and ∂L/∂output_k;
                  for a softmax output with cross-entropy directly
                  ∂L/∂logits = (p − onehot) / rows  (the fused gradient)
    3. backward:  every node, last to first, turns ∂L/∂outputs into
                  ∂L/∂inputs and fills its layer's grads  (Model.backward)
    4. update:    θ ← optimizer step(θ, ∂L/∂θ) for every trainable parameter

A loss sees its output as rows: (batch, classes), or (batch·time, vocab)
for a (batch, time, vocab) output with (batch, time) labels — a reshape, no
copy — and L is the mean over every row. Every array a step touches is
allocated once per batch shape and reused.
"""

import contextlib
import math
import numbers
import sys
import threading

import numpy as np

from . import data, distributed, losses, metrics as metrics_module, optimizers, utils
from .callbacks import CallbackList, resolve_verbose


def _batch_size(owner, value):
    """Keras's batch_size: None means 32."""
    return 32 if value is None else utils.check_positive_int(owner, "batch_size", value)


def _structure(value, names, what):
    """A per-output argument (losses, metrics, targets) as a list, one entry
    per output: from a list in output order, or a dict keyed by output name."""
    if isinstance(value, dict):
        unknown = [k for k in value if k not in names]
        if unknown:
            raise ValueError(f"{what}: keys {unknown} are not output names ({names})")
        return [value.get(name) for name in names]
    if isinstance(value, (list, tuple)):
        if len(value) != len(names):
            raise ValueError(f"{what}: the model has {len(names)} outputs ({', '.join(names)}); "
                             f"give one entry per output, or a dict keyed by their names")
        return list(value)
    return [value] * len(names) if len(names) == 1 else None


class _OutputLoss:
    """One output's loss: which output, the Loss, its weight in the total,
    the metrics compiled for it, and the names it logs under."""

    def __init__(self, index, name, loss, weight, metrics, prefix):
        self.index, self.name, self.loss, self.weight = index, name, loss, weight
        self.metrics, self.prefix = metrics, prefix
        self.fused = False  # decided at fit: softmax output + cross-entropy


class Trainer:
    """compile / fit / evaluate / predict for models.Model (a mixin)."""

    def _init_trainer(self):
        self.optimizer = None
        self.loss = None
        self.metrics = []
        self.stop_training = False
        self.history = None
        self._rng = None  # this model's generator, made on first need (_generator)
        self._compiled = None  # the user's compile arguments, resolved at first use
        self._output_losses = None
        self._training_lock = threading.Lock()
        self._train_buffers = utils.Buffers()

    def _generator(self):
        """This model's random generator, seeded by one draw from the global
        generator the first time the model needs it: at compile, or at build or
        fit if they come first (the rule is in utils.set_random_seed)."""
        if self._rng is None:
            self._rng = np.random.default_rng(utils.next_seed())
        return self._rng

    @contextlib.contextmanager
    def _training(self, what):
        """One thread trains a model at a time: its grads, optimizer slots and
        training buffers are the model's own. A second fit (from another
        thread, or from a callback) is refused rather than corrupting them."""
        if not self._training_lock.acquire(blocking=False):
            raise RuntimeError(f"{what}: model {self.name!r} is already being trained (by another "
                               f"thread, or by a fit that has not returned); one model cannot "
                               f"train twice at once")
        try:
            with utils.using_generator(self._generator()):
                yield
        finally:
            self._training_lock.release()

    # ------------------------------------------------------------ compile

    def compile(self, optimizer="rmsprop", loss=None, loss_weights=None, metrics=None,
                weighted_metrics=None, run_eagerly=False, steps_per_execution=1,
                jit_compile="auto", auto_scale_loss=True):
        """Choose the optimizer, the loss (one, or one per output as a list or
        a dict keyed by output name, summed with loss_weights) and the metrics.
        run_eagerly, jit_compile and auto_scale_loss are accepted and change
        nothing (fromzero always runs its kernels directly)."""
        if loss is None:
            raise ValueError("compile: a loss is required, e.g. loss='sparse_categorical_crossentropy'")
        if weighted_metrics is not None:
            raise ValueError("compile: weighted_metrics is not supported (metrics are unweighted)")
        if steps_per_execution != 1:
            raise ValueError("compile: steps_per_execution must be 1 (fromzero runs one step "
                             "per call)")
        weights = (list(loss_weights.values()) if isinstance(loss_weights, dict) else
                   loss_weights if isinstance(loss_weights, (list, tuple)) else [loss_weights])
        if any(isinstance(w, (str, metrics_module.Metric)) for w in weights):
            raise ValueError(f"compile: loss_weights must be numbers, got {loss_weights!r}; metrics "
                             f"are the fourth argument, as in Keras 3: compile(optimizer, loss, "
                             f"metrics=[...])")
        self.optimizer = optimizers.get(optimizer)
        if isinstance(loss, (list, tuple)):
            self.loss = [None if l is None else losses.get(l) for l in loss]
        elif isinstance(loss, dict):
            self.loss = {k: None if l is None else losses.get(l) for k, l in loss.items()}
        else:
            self.loss = losses.get(loss)
        self._compiled = {"loss_weights": loss_weights, "metrics": metrics}
        self._output_losses = None
        self.metrics = []
        if not isinstance(self.loss, (list, dict)):  # one output: metrics known now
            self.metrics = [metrics_module.get(m) for m in (metrics or [])]
        self._generator()  # seeded now, in the compiling thread

    def _check_compiled(self, what):
        if self.loss is None:
            raise RuntimeError(f"{what}: the model must be compiled first: call model.compile("
                               f"optimizer='adam', loss='sparse_categorical_crossentropy')")

    def _losses(self):
        """The compiled losses, one _OutputLoss per output that has a loss
        (resolved once the model's outputs are known)."""
        if self._output_losses is not None:
            return self._output_losses
        names = self.output_names
        multi = len(names) > 1
        per_loss = _structure(self.loss, names, "compile: loss")
        if per_loss is None:  # one loss for several outputs: used for each, as Keras
            per_loss = [self.loss] * len(names)
        weights = self._compiled["loss_weights"]
        per_weight = [1.0] * len(names) if weights is None else _structure(
            weights, names, "compile: loss_weights") or [weights] * len(names)
        given = self._compiled["metrics"]
        if not multi:
            per_metrics = [self.metrics]
        else:
            per_metrics = _structure(given, names, "compile: metrics") if given else \
                [None] * len(names)
            per_metrics = [[metrics_module.get(m) for m in
                            ((ms if isinstance(ms, (list, tuple)) else [ms]) if ms else [])]
                           for ms in per_metrics]
            self.metrics = [m for ms in per_metrics for m in ms]
        outputs = []
        for k, (name, loss, weight, ms) in enumerate(zip(names, per_loss, per_weight, per_metrics)):
            if loss is None:
                continue
            weight = utils.check_number("compile", "loss_weights", 1.0 if weight is None
                                        else weight)
            outputs.append(_OutputLoss(k, name, loss, weight, ms, f"{name}_" if multi else ""))
        if not outputs:
            raise ValueError("compile: every output's loss is None: nothing to train")
        self._output_losses = outputs
        return outputs

    @property
    def metrics_names(self):
        """The names of what evaluate returns, in order (Keras's metrics_names)."""
        names = ["loss"] + [o.prefix + m.name for o in self._losses() for m in o.metrics]
        if len(self.outputs) > 1:
            names += [f"{o.name}_loss" for o in self._losses()]
        return names

    # ------------------------------------------------------------ data

    def _input_arrays(self, x, what):
        """x as checked arrays in the model's input order (builds an unbuilt Sequential)."""
        def check(value):
            arr = np.asarray(value)
            if arr.dtype.kind not in "fiub":
                raise TypeError(f"{what}: x must hold numbers, got dtype {arr.dtype}")
            if arr.ndim < 2:
                raise ValueError(f"{what}: x must have a batch axis and at least one feature axis, "
                                 f"got shape {arr.shape}")
            if arr.size == 0:
                raise ValueError(f"{what}: x is empty (shape {arr.shape})")
            return arr
        if isinstance(x, dict):
            x = {k: check(v) for k, v in x.items()}
        elif isinstance(x, (list, tuple)) and x and all(isinstance(v, np.ndarray) for v in x):
            x = [check(v) for v in x]
        else:
            x = check(x)
        return self._check_inputs(x, f"{what}: x")

    def _target_arrays(self, y, n, what):
        """y as each compiled loss's targets, one array per output with a loss,
        of shape (samples, ...): row labels (int32) or values (float32)."""
        outputs = self._losses()
        if self._single_output:
            if isinstance(y, (list, tuple)) and len(y) == 1 and n != 1 and np.ndim(y[0]) > 0:
                y = y[0]  # [y], as for a model built with outputs=[o]
            per_output = [y]
        else:
            per_output = _structure(y, self.output_names, f"{what}: y")
            if per_output is None:
                raise ValueError(f"{what}: the model has {len(self.outputs)} outputs: give y as "
                                 f"a list or a dict keyed by {self.output_names}")
        targets = []
        for o in outputs:
            value = per_output[o.index]
            if np.ndim(value) == 0 or len(value) != n:
                raise ValueError(f"{what}: x has {n} samples but y has "
                                 f"{'no length' if np.ndim(value) == 0 else len(value)}")
            targets.append(self._prepare_targets(o, value, n))
        return targets

    def _prepare_targets(self, o, y, n):
        """One output's targets, checked by its loss on rows (see the module docstring)."""
        shape = self.outputs[o.index].shape[1:]
        if not shape or None in shape:
            raise ValueError(f"{o.name}: the output's shape {self.outputs[o.index].shape} must be "
                             f"(batch, ..., classes) with known sizes to compute a loss")
        rows, classes = math.prod(shape[:-1]), shape[-1]
        if rows == 1:  # (batch, classes): the loss checks y as it is
            return o.loss.prepare_targets(y, (n, classes))
        y = np.asarray(y)
        per_row = 1 if o.loss.sparse_targets else classes
        if y.size != n * rows * per_row:
            raise ValueError(f"{o.loss.name}: y_true has shape {y.shape} but y_pred has shape "
                             f"{(n,) + shape}")
        t = o.loss.prepare_targets(y.reshape((n * rows,) if per_row == 1 else (n * rows, classes)),
                                   (n * rows, classes))
        return t.reshape((n,) + shape[:-1] + (() if o.loss.sparse_targets else (classes,)))

    def _sample_weights(self, sample_weight, class_weight, targets, n, what):
        """Per-sample weights (float32, shape (samples,) or (samples, rows...))
        from sample_weight, or from class_weight: w_i = class_weight[class of i]."""
        if sample_weight is not None and class_weight is not None:
            raise ValueError(f"{what}: give sample_weight or class_weight, not both")
        if class_weight is not None:
            if not isinstance(class_weight, dict):
                raise TypeError(f"{what}: class_weight must be a dict {{class: weight}}")
            if len(self._losses()) != 1:
                raise ValueError(f"{what}: class_weight works for models with one output")
            t = targets[0]
            if t.dtype.kind in "iu":  # class indices
                labels = t
            elif t.ndim == 1 or t.shape[-1] == 1:  # one yes/no column: the rounded value
                labels = np.round(t).reshape(len(t)).astype(np.int64)
            else:  # one-hot rows
                labels = np.argmax(t, axis=-1)
            table = np.ones(int(labels.max()) + 1 if labels.size else 1, dtype=np.float32)
            for c, w in class_weight.items():
                if isinstance(c, bool) or not isinstance(c, numbers.Integral) or c < 0:
                    raise ValueError(f"{what}: class_weight keys must be class indices, got {c!r}")
                if c < len(table):
                    table[c] = utils.check_number(what, "class_weight", w)
            return np.ascontiguousarray(table[labels], dtype=np.float32)
        if sample_weight is None:
            return None
        w = np.asarray(sample_weight)
        if w.dtype.kind not in "fiub":
            raise TypeError(f"{what}: sample_weight must hold numbers, got dtype {w.dtype}")
        w = np.ascontiguousarray(w, dtype=np.float32)
        if w.ndim == 2 and w.shape[1] == 1:
            w = w.reshape(-1)
        rows = targets[0].shape[:len(self.outputs[self._losses()[0].index].shape) - 1]
        if w.shape not in ((n,), rows):
            raise ValueError(f"{what}: sample_weight must have shape ({n},), got {w.shape}")
        if not np.all(np.isfinite(w)):
            raise ValueError(f"{what}: sample_weight must be finite")
        return w

    def _standardize_batch(self, batch, what, with_targets):
        """A dataset's batch — x, (x,), (x, y) or (x, y, sample_weight) — as
        (inputs, targets, sample_weight) ready for a step."""
        if isinstance(batch, list):
            batch = tuple(batch)
        if not isinstance(batch, tuple) or len(batch) not in (1, 2, 3):
            if not with_targets:
                batch = (batch,)
            else:
                raise ValueError(f"{what}: a batch must be (x, y) or (x, y, sample_weight), got "
                                 f"{type(batch).__name__}")
        inputs = self._input_arrays(batch[0], what)
        if not with_targets:
            return inputs, None, None
        if len(batch) < 2 or batch[1] is None:
            raise ValueError(f"{what}: the batches must hold targets: (x, y) or "
                             f"(x, y, sample_weight)")
        n = len(inputs[0])
        targets = self._target_arrays(batch[1], n, what)
        weights = self._sample_weights(batch[2] if len(batch) == 3 else None, None, targets, n,
                                       what)
        return inputs, targets, weights

    def _batches(self, x, y, sample_weight, class_weight, batch_size, steps, shuffle, what,
                 with_targets=True, validation_split=0.0):
        """A data.Batches for x (and y), and for fit the validation part of the
        arrays (validation_split): (batches, validation batches or None)."""
        if data.is_dataset(x) or data.is_iterator(x):
            if y is not None or sample_weight is not None:
                raise ValueError(f"{what}: with a dataset or generator, y and sample_weight come "
                                 f"from its batches: do not pass them")
            if validation_split:
                raise ValueError(f"{what}: validation_split needs arrays; give validation_data")
            if class_weight is not None:
                raise ValueError(f"{what}: class_weight needs arrays")

            def prepare(batch):
                return self._standardize_batch(batch, what, with_targets)
            if data.is_dataset(x):
                return data.DatasetBatches(x, prepare, shuffle, steps), None
            return data.IteratorBatches(x, prepare, steps), None
        inputs = self._input_arrays(x, what)
        n = len(inputs[0])
        targets = weights = None
        if with_targets:
            if y is None:
                raise ValueError(f"{what}: x has {n} samples but y has no length")
            targets = self._target_arrays(y, n, what)
            weights = self._sample_weights(sample_weight, class_weight, targets, n, what)
        arrays = [inputs, targets, weights]
        validation = None
        if validation_split:
            # As Keras: the last fraction of the data, taken before shuffling.
            n_val = n - math.floor(n * (1.0 - validation_split))
            if n_val == 0 or n_val == n:
                raise ValueError(f"validation_split={validation_split} leaves no "
                                 f"{'validation' if n_val == 0 else 'training'} samples "
                                 f"out of {n}")
            split = [[a[:-n_val] for a in group] if group is not None else None
                     for group in (inputs, targets)]
            held = [[a[-n_val:] for a in group] if group is not None else None
                    for group in (inputs, targets)]
            arrays = split + [None if weights is None else weights[:-n_val]]
            validation = data.ArrayBatches(held + [None if weights is None else weights[-n_val:]],
                                           batch_size, False, None, None)
        return data.ArrayBatches(arrays, batch_size, shuffle, steps, self._train_buffers), validation

    def _validation_batches(self, validation_data, batch_size, steps):
        if data.is_dataset(validation_data) or data.is_iterator(validation_data):
            return self._batches(validation_data, None, None, None, batch_size, steps, False,
                                 "fit: validation_data")[0]
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
            raise ValueError("validation_data must be a tuple (x_val, y_val) or (x_val, y_val, "
                             "sample_weight)")
        x, y, *sw = validation_data
        return self._batches(x, y, sw[0] if sw else None, None, batch_size, steps, False,
                             "fit: validation_data")[0]

    # ------------------------------------------------------------ one step

    def _loss_and_gradients(self, outputs, targets, weights, with_gradients, buffers=None):
        """Σ_k w_k · (output k's loss summed over the batch's samples), the
        per-output sums, and (with with_gradients) ∂L/∂output per output —
        L the mean over rows — written into reused buffers."""
        outputs = self._flat_outputs(outputs)
        buffers = buffers or self._train_buffers
        total, per_output = 0.0, []
        grads = [None] * len(outputs) if with_gradients else None
        for o, t in zip(self._output_losses, targets):
            pred = outputs[o.index]
            shape = pred.shape  # (read once: an ndarray's attributes are slow to fetch)
            batch, classes = shape[0], shape[-1]
            if len(shape) == 2:
                p2, t2, rows = pred, t, batch
            else:  # (batch, ..., classes): every position a row
                rows = pred.size // classes
                p2 = pred.reshape(rows, classes)
                t2 = t.reshape((rows,) if o.loss.sparse_targets else (rows, classes))
            row_loss = buffers.get(("row loss", o.index), (rows,))
            if not with_gradients:
                value = o.loss.value(p2, t2, row_loss)
            else:
                grad = buffers.get(("gradient", o.index), (rows, classes))
                if o.fused:
                    value = o.loss.value(p2, t2, row_loss)
                    o.loss.softmax_gradient(p2, t2, out=grad)
                else:
                    value = o.loss.value_and_gradient(p2, t2, row_loss, grad)
                if weights is not None:  # Keras: L = Σ w_i l_i / rows
                    w = weights.reshape(batch, -1)
                    grad.reshape(batch, -1, classes)[...] *= w[..., None]
                if o.weight != 1.0:
                    grad *= np.float32(o.weight)
                grads[o.index] = grad if len(shape) == 2 else grad.reshape(shape)
            if weights is not None:
                value = float(np.sum(row_loss.reshape(batch, -1) * weights.reshape(batch, -1),
                                     dtype=np.float64))
            if rows != batch:
                value /= rows // batch  # a sample's loss: the mean over its rows
            per_output.append(value)
            total += o.weight * value
        return total, per_output, grads

    def _train_step(self, inputs, targets, weights, grads_and_params, regularized, dp=None):
        """Forward, loss, backward and metrics, then the update, for one batch.
        Returns (loss sum over the samples this process computed, per-output
        sums, their count, the loss sum over the whole batch); with
        `regularized` the sums include the weight penalty (before the update).

        With dp (a distributed.DataParallel) the batch is cut into shares:
        each share this process computes (one per rank, or all N when one
        process emulates N) goes through forward, loss and backward on its
        rows, views of the batch; dp sums the shares' gradients, weighted by
        their sizes, over every rank in rank order; every rank applies that sum."""
        if dp is None:
            total, per_output = self._train_share(inputs, targets, weights, regularized)
            count, batch_total = len(inputs[0]), total
        else:
            total, per_output, count = 0.0, [0.0] * len(self._output_losses), 0
            for shard in dp.shards(len(inputs[0])):
                rows = shard.indices
                with utils.using_generator(shard.generator):  # this share's dropout masks
                    part, sums = self._train_share(
                        [a[rows] for a in inputs], [t[rows] for t in targets],
                        None if weights is None else weights[rows], regularized)
                dp.accumulate(shard, part)
                total += part
                per_output = [a + b for a, b in zip(per_output, sums)]
                count += rows.stop - rows.start
            batch_total = dp.allreduce_gradients()
        self.optimizer.apply_gradients(grads_and_params)
        if dp is not None:
            dp.check_in_sync(dp.steps)  # every check_every steps: still the same weights?
        return total, per_output, count, batch_total

    def _train_share(self, inputs, targets, weights, regularized):
        """Forward, loss, backward (the model's grads ← ∂L/∂θ, L the mean
        over these samples) and the metrics' update on some samples; returns
        (their loss sum, per-output sums)."""
        outputs = self._run_forward(inputs, True)
        total, per_output, grads = self._loss_and_gradients(outputs, targets, weights, True)
        self._run_backward(grads, self._fused_outputs, self._train_plan)
        if regularized:
            total += self.regularization_loss() * len(inputs[0])
        self._update_metrics(targets, outputs)
        return total, per_output

    def _prepare_training(self):
        """What every step of a fit needs, decided once: the fused softmax +
        cross-entropy gradient where an output allows it, which gradients
        the model must compute, the (gradient, parameter) pairs."""
        outputs = self._losses()
        fused = [False] * len(self.outputs)
        for o in outputs:
            o.fused = bool(o.loss.fuses_with_softmax and self.output_ends_in_softmax(o.index))
            fused[o.index] = o.fused
        self._fused_outputs = tuple(fused) if any(fused) else None
        self.input_grad_needed = False  # nobody needs ∂L/∂(the data)
        seeds = [True if k in {o.index for o in outputs} else None for k in range(len(fused))]
        self._train_plan = self._backward_plan(seeds, self._fused_outputs)
        grads_and_params = list(zip(self.trainable_grads, self.trainable_params))
        regularized = any(getattr(layer, "kernel_regularizer", None) is not None
                          for layer in self._leaves)
        return grads_and_params, regularized

    def _flat_outputs(self, outputs):
        """What _run_forward returned, as a list in output order."""
        if self._single_output:
            return [outputs]
        return list(outputs.values()) if isinstance(outputs, dict) else outputs

    def _update_metrics(self, targets, outputs):
        if not self.metrics:
            return
        outputs = self._flat_outputs(outputs)
        for o, t in zip(self._output_losses, targets):
            if not o.metrics:
                continue
            pred = outputs[o.index]
            if pred.ndim > 2:  # every position a row, as for the loss
                classes = pred.shape[-1]
                pred = pred.reshape(-1, classes)
                t = t.reshape((len(pred),) if o.loss.sparse_targets else (len(pred), classes))
            for m in o.metrics:
                m.update_state(t, pred)

    def _logs(self, loss_sum, per_output_sums, samples, dp=None):
        """Keras's logs: "loss", the metrics, and per output "<name>_loss";
        with dp over every rank's samples (sums and metric states added
        across ranks, then divided: never a mean of means)."""
        metrics = [m for o in self._output_losses for m in o.metrics]
        names = [o.prefix + m.name for o in self._output_losses for m in o.metrics]
        if dp is not None:
            (loss_sum, samples, *per_output_sums), metrics = dp.sum_over_ranks(
                [loss_sum, samples, *per_output_sums], metrics)
        logs = {"loss": loss_sum / samples}
        logs.update(zip(names, (m.result() for m in metrics)))
        if len(self.outputs) > 1:
            for o, value in zip(self._output_losses, per_output_sums):
                logs[f"{o.name}_loss"] = value / samples
        return logs

    def reset_metrics(self):
        for o in self._losses():
            for m in o.metrics:
                m.reset_state()

    # ------------------------------------------------------------ fit

    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, class_weight=None,
            sample_weight=None, initial_epoch=0, steps_per_epoch=None, validation_steps=None,
            validation_batch_size=None, validation_freq=1, distribute=None):
        """Train for epochs initial_epoch..epochs−1 over (x, y) in shuffled
        minibatches; returns the History (also model.history).

        distribute: data parallelism (fz.distributed). True: every process of
        an MPI job (mpiexec -n N) computes its share of each batch of
        `batch_size` samples, the gradients are summed over the processes,
        every process applies the same update — the training of one process
        with that batch size; alone, plain training. Or a
        fz.distributed.DataParallel made for this model, for its options
        (check_every, timeout; shards=N emulates N processes in one). Every
        process must call fit with the same model, data and arguments (checked
        at the start). Rank 0 alone shows the progress and runs the
        callbacks that write (ModelCheckpoint, CSVLogger); the logs, the same
        on every rank, cover every rank's samples. Validation, evaluate and
        predict are not split: each process computes them whole, with the
        same result (and only rank 0 shows their progress)."""
        self._check_compiled("fit")
        batch_size = _batch_size("fit", batch_size)
        verbose = resolve_verbose(verbose, "fit")
        for name, value in (("epochs", epochs), ("initial_epoch", initial_epoch)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
                raise ValueError(f"fit: {name} must be a non-negative integer, got {value!r}")
        for name, value in (("steps_per_epoch", steps_per_epoch),
                            ("validation_steps", validation_steps)):
            if value is not None:
                utils.check_positive_int("fit", name, value)
        validation_freq = utils.check_positive_int("fit", "validation_freq", validation_freq)
        validation_split = utils.check_number("fit", "validation_split", validation_split, 0, 1,
                                              high_open=True)
        with self._training("fit"):
            batches, validation = self._batches(x, y, sample_weight, class_weight, batch_size,
                                                steps_per_epoch, shuffle, "fit",
                                                validation_split=validation_split)
            if validation_data is not None:
                validation = self._validation_batches(
                    validation_data, _batch_size("fit", validation_batch_size or batch_size),
                    validation_steps)
            grads_and_params, regularized = self._prepare_training()
            dp = self._data_parallel(distribute, batches, (batch_size, epochs, initial_epoch,
                                                           steps_per_epoch, validation_freq))
            chief = dp is None or dp.is_chief
            if not isinstance(callbacks, CallbackList):
                callbacks = CallbackList(callbacks, add_history=True, add_progbar=verbose != 0,
                                         chief=chief, verbose=verbose if chief else 0,
                                         epochs=epochs, steps=batches.num_batches, model=self)
            self.stop_training = False
            training_logs = {}
            callbacks.on_train_begin()
            for epoch in range(initial_epoch, epochs):
                self.reset_metrics()
                callbacks.on_epoch_begin(epoch)
                # the batch hooks only if a callback has them; the batch's logs, unless
                # no callback reads them; with dp always, as they are summed over the
                # ranks, which must all take part
                batch_begin = callbacks.uses_train_batch_begin()
                batch_end = dp is not None or callbacks.uses_train_batch_end()
                loss_sum, per_output, seen, steps = 0.0, [0.0] * len(self._losses()), 0, 0
                for step, (inputs, targets, weights) in enumerate(batches.epoch()):
                    if batch_begin:
                        callbacks.on_train_batch_begin(step)
                    total, sums, count, batch_total = self._train_step(
                        inputs, targets, weights, grads_and_params, regularized, dp)
                    steps += 1
                    if not math.isfinite(batch_total):  # the same on every rank
                        # Keras's TerminateOnNaN: running on would only spread NaN into every weight.
                        if chief:
                            print(f"Batch {step}: invalid loss {batch_total}, terminating "
                                  f"training", file=sys.stderr)
                        self.stop_training = True
                        loss_sum, seen = batch_total, 1
                        break
                    loss_sum += total
                    for k, value in enumerate(sums):
                        per_output[k] += value
                    seen += count
                    if batch_end:
                        callbacks.on_train_batch_end(step, self._logs(loss_sum, per_output, seen,
                                                                      dp))
                    if self._stop(dp):
                        break
                batches.end_epoch()
                if steps == 0:
                    print("fit: the data ran out: no batch left for this epoch, stopping training",
                          file=sys.stderr)
                    break
                epoch_logs = self._logs(loss_sum, per_output, seen, dp)
                if validation is not None and (epoch + 1) % validation_freq == 0:
                    val_logs = self._evaluate_batches(validation, callbacks)
                    epoch_logs.update({f"val_{k}": v for k, v in val_logs.items()})
                callbacks.on_epoch_end(epoch, epoch_logs)
                training_logs = epoch_logs
                if self._stop(dp):
                    break
            if dp is not None and dp.check_every:
                dp.check_in_sync(dp.steps, force=True)  # the weights a rank may now save
            callbacks.on_train_end(training_logs)
        return self.history

    def _data_parallel(self, distribute, batches, settings):
        """fit's DataParallel, or None without `distribute`. Making it checks
        that every rank built the same model and gives all rank 0's weights;
        then the ranks check that they have the same data and fit arguments
        (a rank with one step more would wait forever for the others) and
        take rank 0's random generator, so that they shuffle alike."""
        if distribute is None or distribute is False:
            return None
        if distribute is True:
            dp = distributed.DataParallel(self)
        elif isinstance(distribute, distributed.DataParallel):
            if distribute.model is not self:
                raise ValueError(f"fit: distribute= was made for another model "
                                 f"({distribute.model.name!r}, not {self.name!r})")
            dp = distribute
        else:
            raise TypeError(f"fit: distribute must be True, False, None or a "
                            f"fz.distributed.DataParallel, got {type(distribute).__name__}")
        if dp.size > 1:
            arrays = isinstance(batches, data.ArrayBatches)
            if arrays:
                dp.check_same("the number of training samples", batches.n)
            dp.check_same("fit's batch_size, epochs, initial_epoch, steps_per_epoch and "
                          "validation_freq", settings)
            dp.check_same("the number of batches per epoch", batches.num_batches)
            if arrays:
                dp.check_same("the training data (a hash of x, y and sample_weight)",
                              distributed.digest([a for group in batches.arrays if group is not None
                                                  for a in (group if isinstance(group, list)
                                                            else [group])]))
        dp.share_generator(self._generator())
        return dp

    def _stop(self, dp):
        """Whether training stops now (model.stop_training, set by a callback):
        with dp, if it was set on any rank — all ranks stop together."""
        if dp is not None:
            self.stop_training = dp.agree(self.stop_training)
        return self.stop_training

    # ------------------------------------------------------------ evaluate, predict

    def _evaluate_batches(self, batches, callbacks):
        """The mean loss and metrics over every batch (test hooks around them)."""
        self.reset_metrics()
        callbacks.on_test_begin()
        buffers = utils.Buffers()  # this call's own: several threads may evaluate at once
        loss_sum, per_output, seen = 0.0, [0.0] * len(self._losses()), 0
        for step, (inputs, targets, weights) in enumerate(batches.epoch()):
            callbacks.on_test_batch_begin(step)
            outputs = self._run_forward(inputs, False)
            total, sums, _ = self._loss_and_gradients(outputs, targets, weights, False, buffers)
            loss_sum += total
            per_output = [a + b for a, b in zip(per_output, sums)]
            seen += len(inputs[0])
            self._update_metrics(targets, outputs)
            callbacks.on_test_batch_end(step, self._logs(loss_sum, per_output, seen))
        batches.end_epoch()
        if seen == 0:
            raise ValueError("evaluate: the data gave no batch")
        logs = self._logs(loss_sum, per_output, seen)
        logs["loss"] += self.regularization_loss()
        callbacks.on_test_end(logs)
        return logs

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None,
                 steps=None, callbacks=None, return_dict=False):
        """The mean loss on (x, y), or [loss, metric, ...] when metrics were
        compiled (a dict with return_dict=True)."""
        self._check_compiled("evaluate")
        batch_size = _batch_size("evaluate", batch_size)
        verbose = resolve_verbose(verbose, "evaluate") if distributed.prints_here() else 0
        if steps is not None:
            utils.check_positive_int("evaluate", "steps", steps)
        batches, _ = self._batches(x, y, sample_weight, None, batch_size, steps, False, "evaluate")
        if not isinstance(callbacks, CallbackList):
            callbacks = CallbackList(callbacks, add_progbar=verbose != 0, verbose=verbose,
                                     epochs=1, steps=batches.num_batches, model=self)
        return self._batch_result(self._evaluate_batches(batches, callbacks), return_dict)

    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
        """The model's outputs for x: an array (or the list / dict of the
        model's outputs) with one row per sample."""
        batch_size = _batch_size("predict", batch_size)
        verbose = resolve_verbose(verbose, "predict") if distributed.prints_here() else 0
        if steps is not None:
            utils.check_positive_int("predict", "steps", steps)
        batches, _ = self._batches(x, None, None, None, batch_size, steps, False, "predict",
                                   with_targets=False)
        if not isinstance(callbacks, CallbackList):
            callbacks = CallbackList(callbacks, add_progbar=verbose != 0, verbose=verbose,
                                     epochs=1, steps=batches.num_batches, model=self)
        callbacks.on_predict_begin()
        n = getattr(batches, "n", None)
        results = None
        start = 0
        for step, (inputs, _, _) in enumerate(batches.epoch()):
            callbacks.on_predict_batch_begin(step)
            outputs = self._run_forward(inputs, False)
            flat = self._flat_outputs(outputs)
            if results is None:  # arrays: one array per output, filled batch by batch
                results = ([np.empty((n,) + o.shape[1:], o.dtype) for o in flat] if n is not None
                           else [[] for _ in flat])
            stop = start + len(flat[0])
            for r, o in zip(results, flat):
                if n is not None:
                    r[start:stop] = o
                else:
                    r.append(o.copy())
            start = stop
            callbacks.on_predict_batch_end(step, {"outputs": outputs})
        batches.end_epoch()
        callbacks.on_predict_end()
        if results is None:
            raise ValueError("predict: the data gave no batch")
        if n is None:
            results = [np.concatenate(r) for r in results]
        return self._pack_outputs(results)

    # ------------------------------------------------------------ one batch

    def _one_batch(self, x, y, sample_weight, class_weight, what):
        """The *_on_batch methods' batch, checked: (inputs, targets, weights, samples)."""
        inputs = self._input_arrays(x, what)
        n = len(inputs[0])
        targets = self._target_arrays(y, n, what)
        return inputs, targets, self._sample_weights(sample_weight, class_weight, targets, n,
                                                     what), n

    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None, return_dict=False):
        """One training step on the batch (x, y); returns its loss (and
        metrics) as evaluate does. Metrics cover this batch only."""
        self._check_compiled("train_on_batch")
        with self._training("train_on_batch"):
            inputs, targets, weights, n = self._one_batch(x, y, sample_weight, class_weight,
                                                          "train_on_batch")
            grads_and_params, regularized = self._prepare_training()
            self.reset_metrics()
            total, sums, _, _ = self._train_step(inputs, targets, weights, grads_and_params,
                                                 regularized)
            return self._batch_result(self._logs(total, sums, n), return_dict)

    def test_on_batch(self, x, y=None, sample_weight=None, return_dict=False):
        """The loss (and metrics) on one batch, without training."""
        self._check_compiled("test_on_batch")
        inputs, targets, weights, n = self._one_batch(x, y, sample_weight, None, "test_on_batch")
        self.reset_metrics()
        outputs = self._run_forward(inputs, False)
        total, sums, _ = self._loss_and_gradients(outputs, targets, weights, False,
                                                  utils.Buffers())
        self._update_metrics(targets, outputs)
        logs = self._logs(total, sums, n)
        logs["loss"] += self.regularization_loss()
        return self._batch_result(logs, return_dict)

    def predict_on_batch(self, x):
        """The outputs for one batch (new arrays)."""
        outputs = self._run_forward(self._input_arrays(x, "predict_on_batch"), False)
        if isinstance(outputs, dict):
            return {k: v.copy() for k, v in outputs.items()}
        return [o.copy() for o in outputs] if isinstance(outputs, list) else outputs.copy()

    @staticmethod
    def _batch_result(logs, return_dict):
        """Keras's return value of evaluate and *_on_batch: the logs dict, or
        the loss alone, or [loss, metric, ...]."""
        if return_dict:
            return logs
        values = list(logs.values())
        return values[0] if len(values) == 1 else values
