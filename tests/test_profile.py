"""fz.profiler.profile: the per-layer table of where a training step's time goes.

It must run the very step fit runs (checked by comparing weights with fit),
account for the whole step, leave the model as it found it (restore=True) and
leave no timing wrappers behind."""

import numpy as np
import pytest

import fromzero as fz


def data(n=256, features=20, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, features)).astype(np.float32), rng.integers(0, classes, n)


def mlp(seed=0, optimizer="adam", metrics=("accuracy",)):
    fz.utils.set_random_seed(seed)
    model = fz.Sequential([fz.layers.Dense(16, activation="relu"),
                           fz.layers.Dense(4, activation="softmax")])
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=list(metrics))
    return model


def test_table_has_every_part_and_adds_up():
    x, y = data()
    printed = []
    model = mlp()
    result = fz.profiler.profile(model, x, y, steps=20, print_fn=printed.append)
    names = [row["name"] for row in result.rows]
    assert names[:2] == [f"{model.layers[0].name} (Dense)", f"{model.layers[1].name} (Dense)"]
    assert names[2:] == ["loss (sparse_categorical_crossentropy)", "optimizer (Adam)",
                         "data (gather the batch)", "metrics (accuracy)",
                         "other (Python between the calls)"]
    assert result.step_ms > 0 and result.steps == 20 and result.batch_size == 32
    for row in result.rows[:3]:  # layers and loss: forward and backward both ran
        assert row["forward_ms"] > 0 and row["backward_ms"] > 0
        assert row["total_ms"] == pytest.approx(row["forward_ms"] + row["backward_ms"])
    assert result["optimizer"]["total_ms"] > 0 and result["optimizer"]["forward_ms"] is None
    assert sum(r["total_ms"] for r in result.rows) == pytest.approx(result.step_ms, rel=1e-6)
    assert sum(r["share"] for r in result.rows) == pytest.approx(1.0, rel=1e-6)
    assert len(printed) == 1 and printed[0] == str(result)
    table = printed[0]
    assert "20 steps of batch 32" in table and "forward ms" in table and "100.0%" in table


def test_leaves_the_model_as_it_was():
    x, y = data()
    model = mlp()
    model.fit(x, y, epochs=1, verbose=0)  # the optimizer has state now
    weights = model.get_weights()
    iterations = model.optimizer.iterations
    rng_state = fz.utils.generator().bit_generator.state
    own = getattr(model, "_rng", None)  # the model's own generator, when models have one
    own_state = None if own is None else own.bit_generator.state
    fz.profiler.profile(model, x, y, steps=5, print_fn=None)
    if own is not None:
        assert model._rng.bit_generator.state == own_state
    for before, after in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(before, after)
    assert model.optimizer.iterations == iterations
    assert fz.utils.generator().bit_generator.state == rng_state
    # no stopwatch stays behind: the methods are the classes' again
    for obj in model.layers + [model.loss, model.optimizer]:
        assert not {"forward", "backward", "backward_from_logits", "value", "value_and_gradient",
                    "softmax_gradient", "apply_gradients"} & set(vars(obj))
    # and training afterwards matches a model that was never profiled
    twin = mlp()
    twin.fit(x, y, epochs=1, verbose=0)
    fz.utils.set_random_seed(5)
    model.fit(x, y, epochs=1, verbose=0)
    fz.utils.set_random_seed(5)
    twin.fit(x, y, epochs=1, verbose=0)
    for a, b in zip(model.get_weights(), twin.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_runs_the_same_step_as_fit():
    """profile(restore=False) with consecutive batches trains exactly as fit
    without shuffling: the steps are model._train_step, not a copy of it."""
    x, y = data(n=8 * 16)
    profiled = mlp(seed=3)
    fz.profiler.profile(profiled, x, y, steps=6, batch_size=16, warmup=2, restore=False, print_fn=None)
    fitted = mlp(seed=3)
    fitted.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(profiled.get_weights(), fitted.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_cnn_with_dropout_and_unfused_loss():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((64, 8, 8, 1)).astype(np.float32)
    y = rng.integers(0, 3, 64)
    fz.utils.set_random_seed(0)
    cnn = fz.Sequential([fz.layers.Conv2D(4, 3, activation="relu"), fz.layers.MaxPool2D(2),
                         fz.layers.Flatten(), fz.layers.Dropout(0.5),
                         fz.layers.Dense(3, activation="softmax")])
    cnn.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    result = fz.profiler.profile(cnn, x, y, steps=4, batch_size=16, print_fn=None)
    assert [r["name"].split(" ")[1] for r in result.rows[:5]] == [
        "(Conv2D)", "(MaxPooling2D)", "(Flatten)", "(Dropout)", "(Dense)"]
    assert "metrics" not in " ".join(r["name"] for r in result.rows)
    # a loss without the fused softmax path: value and gradient in one call
    mse = fz.Sequential([fz.layers.Dense(2)])
    mse.compile(optimizer="sgd", loss="mse")
    result = fz.profiler.profile(mse, x.reshape(64, -1), rng.standard_normal((64, 2)), steps=3,
                              print_fn=None)
    row = result["loss"]
    assert row["name"] == "loss (mean_squared_error, value and gradient)"
    assert row["total_ms"] > 0 and row["backward_ms"] is None


def test_batch_larger_than_data_and_errors():
    x, y = data(n=10)
    result = fz.profiler.profile(mlp(), x, y, steps=2, batch_size=64, print_fn=None)
    assert result.batch_size == 10
    with pytest.raises(RuntimeError, match="compiled"):
        fz.profiler.profile(fz.Sequential([fz.layers.Dense(2)]), x, y)
    with pytest.raises(ValueError, match="steps"):
        fz.profiler.profile(mlp(), x, y, steps=0)
    with pytest.raises(ValueError, match="warmup"):
        fz.profiler.profile(mlp(), x, y, warmup=-1)
    with pytest.raises(ValueError, match="samples"):
        fz.profiler.profile(mlp(), x, y[:5])


class Exploding(fz.layers.Layer):
    """Passes its input through, and raises on the 5th forward call."""

    calls = 0

    def forward(self, x, training=False):
        Exploding.calls += 1
        if Exploding.calls == 5:
            raise FloatingPointError("boom")
        return x

    def backward(self, dy):
        return dy


def test_wrappers_are_removed_when_a_step_fails():
    x, y = data()
    model = mlp()
    model.add(Exploding())
    model.compile(optimizer="adam", loss="mse")
    weights = model.get_weights()
    with pytest.raises(FloatingPointError):
        fz.profiler.profile(model, x, np.eye(4, dtype=np.float32)[y], steps=10, warmup=2, print_fn=None)
    for layer in model.layers:
        assert "forward" not in vars(layer) and "backward" not in vars(layer)
    assert "apply_gradients" not in vars(model.optimizer)
    for before, after in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(before, after)


def test_dropout_draws_are_put_back():
    """Dropout draws its masks from the random generator fit uses; after a
    profile, training goes on exactly as if no profile had run."""
    x, y = data()

    def model_with_dropout():
        fz.utils.set_random_seed(11)
        model = fz.Sequential([fz.layers.Dense(16, activation="relu"), fz.layers.Dropout(0.5),
                               fz.layers.Dense(4, activation="softmax")])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        return model

    profiled = model_with_dropout()
    fz.profiler.profile(profiled, x, y, steps=4, print_fn=None)
    profiled.fit(x, y, epochs=1, verbose=0)
    plain = model_with_dropout()
    plain.fit(x, y, epochs=1, verbose=0)
    for a, b in zip(profiled.get_weights(), plain.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_a_layer_made_of_layers_gets_a_row_per_sublayer():
    """MultiHeadAttention's four Dense projections, and its own work (the
    attention kernel), are rows under its row; they add up to it, and the
    top-level rows alone add up to the step."""
    fz.utils.set_random_seed(0)
    inputs = fz.Input(shape=(8, 16))
    mha = fz.layers.MultiHeadAttention(num_heads=2, key_dim=8, name="mha")
    model = fz.Model(inputs, mha(inputs, inputs, use_causal_mask=True))
    model.compile(optimizer="adam", loss="mse")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 8, 16)).astype(np.float32)
    result = fz.profiler.profile(model, x, x, steps=5, batch_size=16, print_fn=None)
    parts = [r for r in result.rows if r["part_of"] == "mha (MultiHeadAttention)"]
    assert [r["name"] for r in parts] == ["mha/query (Dense)", "mha/key (Dense)",
                                          "mha/value (Dense)", "mha/attention_output (Dense)",
                                          "mha/itself"]
    for part in ("forward_ms", "backward_ms"):
        assert all(r[part] > 0 for r in parts[:4])
        assert sum(r[part] for r in parts) == pytest.approx(result["mha"][part], rel=1e-6)
    top = [r for r in result.rows if r["part_of"] is None]
    assert sum(r["total_ms"] for r in top) == pytest.approx(result.step_ms, rel=1e-6)
    assert "\n  mha/query (Dense)" in str(result)
    assert not {"forward", "backward"} & set(vars(mha.query_dense))  # wrappers removed
