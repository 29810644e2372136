"""Fine-tuning: frozen layers cost no gradient work and never change;
save_weights / load_weights; the Fashion-MNIST example end to end."""

import importlib.util
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

import fromzero as fz

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "finetune_fashion_mnist.py"


def data(n=96, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 6)).astype(np.float32)
    return x, (x[:, 0] + x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 0.5)


def three_dense(optimizer="adam"):
    fz.utils.set_random_seed(0)
    model = fz.Sequential([fz.layers.Dense(8, activation="relu"), fz.layers.Dense(8, activation="relu"),
                           fz.layers.Dense(3, activation="softmax")])
    model.compile(optimizer, "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.build((None, 6))
    return model


def spy_on_optimizer(model):
    """The ids of every array the optimizer is asked to update."""
    updated = set()
    apply = model.optimizer.apply_gradients

    def recording(grads_and_vars):
        pairs = list(grads_and_vars)
        updated.update(id(p) for _, p in pairs)
        return apply(pairs)

    model.optimizer.apply_gradients = recording
    return updated


def test_frozen_base_is_bit_identical_and_skipped_by_backward():
    model = three_dense()
    x, y = data()
    base, head = model.layers[:2], model.layers[2]
    for layer in base:
        layer.trainable = False
    before = model.get_weights()
    updated = spy_on_optimizer(model)
    with mock.patch.object(base[0], "backward", wraps=base[0].backward) as first, \
            mock.patch.object(base[1], "backward", wraps=base[1].backward) as second:
        model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    after = model.get_weights()
    for b, a in zip(before[:4], after[:4]):       # the base: bit for bit
        assert np.array_equal(a, b)
    assert not np.array_equal(before[4], after[4])  # the head learned
    assert first.call_count == 0 and second.call_count == 0  # backpropagation stopped at the head
    assert updated == {id(p) for p in head.params}
    assert model.trainable_params == head.params


def test_frozen_middle_layer_passes_gradients_through():
    model = three_dense(optimizer="sgd")
    x, y = data()
    first, middle, last = model.layers
    middle.trainable = False
    before = model.get_weights()
    updated = spy_on_optimizer(model)
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    after = model.get_weights()
    assert np.array_equal(before[2], after[2]) and np.array_equal(before[3], after[3])
    assert not np.array_equal(before[0], after[0])  # the gradient reached the first layer
    assert not np.array_equal(before[4], after[4])
    assert id(middle.kernel) not in updated and id(first.kernel) in updated
    assert all(not g.any() for g in middle.grads)  # no dW, db ever computed


def test_unfreezing_trains_the_layer_again():
    model = three_dense()
    x, y = data()
    model.layers[0].trainable = False
    model.fit(x, y, epochs=1, verbose=0)
    model.layers[0].trainable = True
    model.compile("adam", "sparse_categorical_crossentropy")  # as Keras: recompile after a change
    kernel = model.layers[0].kernel.copy()
    model.fit(x, y, epochs=1, verbose=0)
    assert not np.array_equal(kernel, model.layers[0].kernel)


def test_save_weights_load_weights_round_trip(tmp_path):
    model = three_dense()
    x, y = data()
    model.fit(x, y, epochs=1, verbose=0)
    model.save_weights(tmp_path / "weights.safetensors")
    model.save(tmp_path / "model.safetensors")

    fresh = three_dense()
    fresh.load_weights(tmp_path / "weights.safetensors")
    assert all(np.array_equal(a, b) for a, b in zip(fresh.get_weights(), model.get_weights()))
    assert np.array_equal(fresh.predict(x), model.predict(x))

    unbuilt = fz.Sequential([fz.layers.Dense(8, activation="relu"), fz.layers.Dense(8, activation="relu"),
                             fz.layers.Dense(3, activation="softmax")])
    unbuilt.load_weights(tmp_path / "model.safetensors")  # a model.save file knows the input shape
    assert np.array_equal(unbuilt.predict(x), model.predict(x))
    with pytest.raises(ValueError, match="build the model first"):
        fz.Sequential([fz.layers.Dense(3)]).load_weights(tmp_path / "weights.safetensors")


def test_load_weights_checks_the_architecture(tmp_path):
    model = three_dense()
    model.save_weights(tmp_path / "weights.safetensors")
    wider = fz.Sequential([fz.layers.Dense(9, activation="relu"), fz.layers.Dense(8, activation="relu"),
                           fz.layers.Dense(3, activation="softmax")])
    wider.build((None, 6))
    kernel = wider.layers[0].kernel.copy()
    with pytest.raises(ValueError, match=r"weight 0 .* shape \(6, 8\).* \(6, 9\)"):
        wider.load_weights(tmp_path / "weights.safetensors")
    assert np.array_equal(kernel, wider.layers[0].kernel)  # nothing changed
    shallow = fz.Sequential([fz.layers.Dense(3, activation="softmax")])
    shallow.build((None, 6))
    with pytest.raises(ValueError, match="holds 6 weight arrays, the model has 2"):
        shallow.load_weights(tmp_path / "weights.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="cannot load weights"):
        shallow.load_weights(tmp_path / "junk.safetensors")


def test_example_runs_on_a_tiny_subset(capsys):
    if not any(fz.datasets.fashion_mnist.DEBIAN_FOLDER.glob("train-images-idx3-ubyte*")):
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
    spec = importlib.util.spec_from_file_location("finetune_fashion_mnist", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    example.main(["--subset", "256", "--epochs", "1", "--pretrain-epochs", "1", "--verbose", "0"])
    out = capsys.readouterr().out
    rows = {line[:26].strip(): line[26:].split() for line in out.splitlines()
            if line.startswith(("fine-tuned", "from scratch"))}
    assert set(rows) == {"fine-tuned (frozen base)", "from scratch"}
    for accuracy, f1, seconds, _, epochs in rows.values():
        assert 0.0 <= float(accuracy) <= 1.0 and 0.0 <= float(f1) <= 1.0 and float(epochs) > 0
    assert "Non-trainable params" in out and "macro avg" in out
