"""Training a language model on windows of a token array: nanoGPT's
optimizer and its loss estimate, shared by ``fromzero train --model gpt``
(pretraining) and fz.finetuning (continued pretraining)."""

import time

from .. import callbacks, losses, optimizers
from .windows import RandomWindows

WARMUP_STEPS, MIN_LR_FRACTION = 100, 0.1
WEIGHT_DECAY, BETA_2, EPSILON, CLIPNORM = 0.1, 0.99, 1e-8, 1.0


def gpt_optimizer(model, learning_rate, steps):
    """nanoGPT's AdamW: weight decay on matrices only (of the weights the
    model trains: call it after freezing or enabling LoRA), and its get_lr(it)
    at step it = 0, 1, ... with W warm-up steps and D = steps:

        lr·(it + 1)/(W + 1)                               it < W
        lr/10 + ½(1 + cos(π·(it − W)/(D − W)))·(lr − lr/10)  W ≤ it ≤ D

    The warm-up is Keras's straight line from lr/(W + 1) at step 0 to lr at
    step W: the same values, and no step wasted at rate 0."""
    warmup = min(WARMUP_STEPS, steps // 10)
    schedule = optimizers.schedules.CosineDecay(
        learning_rate / (warmup + 1), decay_steps=max(steps - warmup, 1), alpha=MIN_LR_FRACTION,
        warmup_target=learning_rate, warmup_steps=warmup)
    optimizer = optimizers.AdamW(schedule, weight_decay=WEIGHT_DECAY, beta_2=BETA_2,
                                 epsilon=EPSILON, global_clipnorm=CLIPNORM)
    optimizer.exclude_from_weight_decay(var_list=[p for p in model.trainable_params if p.ndim < 2])
    return optimizer


def fit_on_windows(model, train_ids, val_ids, sequence_length, batch_size, steps,
                   learning_rate, seed, eval_interval, eval_batches, say=print, distribute=False):
    """Compile `model` with nanoGPT's optimizer and the token-mean cross-entropy
    and fit it for `steps` batches of random windows of train_ids (seed), the
    train and val estimates printed every eval_interval steps and at the end.
    Returns (the EvaluateEvery callback, seconds of the whole fit — its
    ``seconds`` of evaluation included)."""
    model.compile(optimizer=gpt_optimizer(model, learning_rate, steps),
                  loss=losses.SparseCategoricalCrossentropy(from_logits=True))
    train = RandomWindows(train_ids, sequence_length, batch_size, seed=seed)
    val = RandomWindows(val_ids, sequence_length, batch_size, seed=seed + 1)
    evaluator = EvaluateEvery(train, val, eval_interval, eval_batches, say)
    start = time.perf_counter()
    model.fit(train, epochs=1, steps_per_epoch=steps, verbose=0, callbacks=[evaluator],
              distribute=distribute)
    seconds = time.perf_counter() - start
    if steps % eval_interval:
        evaluator.report(steps)
    return evaluator, seconds


class EvaluateEvery(callbacks.Callback):
    """nanoGPT's estimate_loss: mean loss of a few random train and val
    batches, printed every `interval` steps (and at the start). `seconds`
    adds up the time spent evaluating, so a caller can leave it out of the
    time per training step."""

    def __init__(self, train, val, interval, batches, say=print):
        super().__init__()
        self.train, self.val, self.interval, self.batches = train, val, interval, batches
        self.say = say  # print, or nothing off rank 0 of a distributed run
        self.curve = []  # (step, train loss, val loss)
        self.seconds = 0.0

    def report(self, step):
        start = time.perf_counter()
        losses = [self.model.evaluate(data, steps=self.batches, verbose=0)
                  for data in (self.train, self.val)]
        self.seconds += time.perf_counter() - start
        self.curve.append((step, *losses))
        self.say(f"step {step}: train loss {losses[0]:.4f}, val loss {losses[1]:.4f}", flush=True)

    def on_train_begin(self, logs=None):
        self.report(0)

    def on_train_batch_end(self, batch, logs=None):
        step = self.model.optimizer.iterations
        if step % self.interval == 0:
            self.report(step)
