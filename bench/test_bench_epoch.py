"""One epoch of the textbook MLP on MNIST (60,000 images), per engine.

784 → Dense(128, relu) → Dense(10, softmax), sparse cross-entropy, Adam
lr 1e-3, batch 32 and 128:
  fromzero  model.fit(x, y, epochs=1, verbose=0)
  numpy     bench/numpy_mlp.py
  torch     bench/torch_mlp.py
An epoch takes 0.2 to 1.5 s, so each runs in pedantic mode: one warm-up
epoch, then a few timed ones, training the same model on.
"""

import pytest

from comparisons import ENGINES, EPOCH_BATCHES, engine_available, epoch_trainer


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("batch_size", [
    pytest.param(b, marks=pytest.mark.benchmark(group=f"MLP epoch, batch {b}"))
    for b in EPOCH_BATCHES])
def test_epoch(benchmark, batch_size, engine):
    if not engine_available(engine):
        pytest.skip(f"{engine} is not installed")
    train_one_epoch, _ = epoch_trainer(engine, batch_size)
    benchmark.pedantic(train_one_epoch, rounds=3, warmup_rounds=1)
