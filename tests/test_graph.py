"""Graph models (Keras's functional API): forks, residual connections, merges,
shared layers and nested models — gradients against finite differences and
against PyTorch, Sequential ≡ Model, save/load, bad graphs, shape layers."""

import json
from pathlib import Path

import numpy as np
import pytest
import safetensors

import fromzero as fz

L = fz.layers
TOL = 1e-2  # relative error of float32 central differences; a wrong gradient gives ~1


def inputs(shape, seed=0):
    x = np.random.default_rng(seed).standard_normal(shape)
    return (x + np.where(x >= 0, 0.1, -0.1)).astype(np.float32)  # away from ReLU kinks


def assert_gradients_ok(report):
    for name, err in report.items():
        assert err < TOL, f"{name}: relative error {err:.3g} (report {report})"


# ---------------------------------------------------------------- the graphs

def residual_fork():
    """x → d1 → d2, and d1 + d2 (d1 feeds two nodes: a fork) → out."""
    x = fz.Input((5,))
    h1 = L.Dense(6, activation="tanh", name="d1")(x)
    h2 = L.Dense(6, name="d2")(h1)
    s = L.Add(name="add")([h1, h2])
    return fz.Model(x, L.Dense(3, name="out")(s))


def concatenate_fork():
    """x feeds two branches, joined by Concatenate."""
    x = fz.Input((5,))
    a = L.Dense(4, activation="relu", name="a")(x)
    b = L.Dense(3, activation="sigmoid", name="b")(x)
    c = L.Concatenate(name="concat")([a, b])
    return fz.Model(x, L.Dense(2, name="out")(c))


def shared_layer():
    """One Dense applied to two inputs and then again to its own output."""
    x1, x2 = fz.Input((4,), name="x1"), fz.Input((4,), name="x2")
    shared = L.Dense(4, activation="tanh", name="shared")
    h1, h2 = shared(x1), shared(shared(x2))
    d = L.Subtract(name="sub")([h1, h2])
    return fz.Model([x1, x2], L.Dense(2, name="out")(L.Multiply(name="mul")([d, h1])))


def nested_model():
    """A model inside a model, called twice (its weights shared), plus a skip."""
    inner_in = fz.Input((4,))
    inner = fz.Model(inner_in, L.Dense(4, name="inner_out")(
        L.Dense(6, activation="relu", name="inner_hidden")(inner_in)), name="inner")
    x = fz.Input((4,))
    y = inner(inner(x))
    return fz.Model(x, L.Dense(2, name="out")(L.Average(name="avg")([x, y])))


def shapes_graph():
    """Reshape, Permute, Flatten and Identity between Dense layers."""
    x = fz.Input((6,))
    h = L.Dense(12, activation="tanh", name="d")(x)
    h = L.Reshape((3, 4), name="reshape")(h)
    h = L.Permute((2, 1), name="permute")(h)
    h = L.Dense(2, name="per_row")(h)  # (batch, 4, 2): Dense on the last axis
    h = L.Identity(name="identity")(L.Flatten(name="flatten")(h))
    return fz.Model(x, L.Dense(3, name="out")(h))


GRAPHS = {"residual_fork": (residual_fork, [(4, 5)]),
          "concatenate_fork": (concatenate_fork, [(4, 5)]),
          "shared_layer": (shared_layer, [(3, 4), (3, 4)]),
          "nested_model": (nested_model, [(3, 4)]),
          "shapes": (shapes_graph, [(3, 6)])}


def graph_inputs(shapes, seed=0):
    xs = [inputs(s, seed + i) for i, s in enumerate(shapes)]
    return xs if len(xs) > 1 else xs[0]


@pytest.mark.parametrize("name", GRAPHS)
def test_graph_gradients_by_finite_differences(name):
    make, shapes = GRAPHS[name]
    fz.utils.set_random_seed(1)
    model = make()
    report = fz.testing.check_gradients(model, graph_inputs(shapes))
    n_params = len(model.trainable_params)
    expected = (["x"] if len(shapes) == 1 else [f"x_{i}" for i in range(len(shapes))]) + \
        [f"param_{i}" for i in range(n_params)]
    assert sorted(report) == sorted(expected)
    assert_gradients_ok(report)


def test_wrong_fork_gradient_is_detected():
    """The check can fail: a graph whose fork keeps only one path's gradient."""
    class ForgetfulAdd(L.Add):
        def backward(self, dy):
            dx = super().backward(dy)
            return [dx[0], np.zeros_like(dx[1])]  # drops the residual path's gradient

    fz.utils.set_random_seed(2)
    x = fz.Input((5,))
    h = L.Dense(6, activation="tanh")(x)
    model = fz.Model(x, L.Dense(3)(ForgetfulAdd()([h, L.Dense(6)(h)])))
    report = fz.testing.check_gradients(model, inputs((4, 5)))
    assert max(report.values()) > 0.1, report


def test_fork_gradient_is_the_sum_of_the_paths():
    """∂L/∂x at a fork = the sum of what each consumer sends back (by hand)."""
    fz.utils.set_random_seed(3)
    x = fz.Input((3,))
    a, b = L.Dense(2, use_bias=False), L.Dense(2, use_bias=False)
    model = fz.Model(x, L.Add()([a(x), b(x)]))
    model.input_grad_needed = True
    xv = inputs((4, 3))
    model.forward(xv, training=True)
    dy = inputs((4, 2), seed=1)
    dx = model.backward(dy)
    np.testing.assert_allclose(dx, dy @ a.kernel.T + dy @ b.kernel.T, rtol=1e-5, atol=1e-6)


def test_integer_tensors_get_no_gradient():
    """A padding mask reshaped inside the graph (an int tensor between an
    Input and an attention layer) needs no ∂L/∂mask: backward with
    input_grad_needed returns None for the int input and skips the Reshape."""
    x, keep = fz.Input((4, 6)), fz.Input((4,), dtype="int32")
    mask = L.Reshape((1, -1))(keep)
    model = fz.Model([x, keep], L.MultiHeadAttention(2, 3)(x, x, attention_mask=mask))
    model.input_grad_needed = True
    xv, keep_v = inputs((2, 4, 6)), np.array([[1, 1, 0, 0], [1, 1, 1, 1]], np.int32)
    y = model.forward([xv, keep_v], training=True)
    dx, dkeep = model.backward(inputs(y.shape, seed=1))
    assert dx.shape == xv.shape and dkeep is None
    report = fz.testing.check_gradients(model, [xv, keep_v])
    assert report.keys() == {"x_0"} | {f"param_{i}" for i in range(8)}
    assert report["x_0"] < 1e-2, report


def test_shared_layer_grads_are_the_sum_over_its_uses():
    """dW of a layer used at two nodes = the sum of the dW of each use."""
    fz.utils.set_random_seed(4)
    shared = L.Dense(3, use_bias=False)
    x1, x2 = fz.Input((3,)), fz.Input((3,))
    model = fz.Model([x1, x2], L.Add()([shared(x1), shared(x2)]))
    a, b, dy = inputs((5, 3)), inputs((5, 3), seed=1), inputs((5, 3), seed=2)
    model.forward([a, b], training=True)
    model.backward(dy)
    np.testing.assert_allclose(shared.grads[0], a.T @ dy + b.T @ dy, rtol=1e-5, atol=1e-5)
    # each step starts again from zero: a second step gives the same, not twice it
    model.forward([a, b], training=True)
    model.backward(dy)
    np.testing.assert_allclose(shared.grads[0], a.T @ dy + b.T @ dy, rtol=1e-5, atol=1e-5)
    assert len(model.trainable_params) == 1  # one layer, counted once


def test_shared_layer_with_regularizer_adds_the_penalty_once():
    fz.utils.set_random_seed(5)
    shared = L.Dense(3, use_bias=False, kernel_regularizer=fz.regularizers.L2(0.5))
    x1, x2 = fz.Input((3,)), fz.Input((3,))
    model = fz.Model([x1, x2], L.Add()([shared(x1), shared(x2)]))
    a, b, dy = inputs((5, 3)), inputs((5, 3), seed=1), inputs((5, 3), seed=2)
    model.forward([a, b], training=True)
    model.backward(dy)
    np.testing.assert_allclose(shared.grads[0], a.T @ dy + b.T @ dy + 2 * 0.5 * shared.kernel,
                               rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- against PyTorch

def torch_or_skip():
    return pytest.importorskip("torch")


def torch_dense(torch, layer, x, activation=None):
    w = torch.tensor(layer.kernel, dtype=torch.float64, requires_grad=True)
    params = [w]
    y = x @ w
    if layer.bias is not None:
        b = torch.tensor(layer.bias, dtype=torch.float64, requires_grad=True)
        params.append(b)
        y = y + b
    act = {None: lambda t: t, "tanh": torch.tanh, "relu": torch.relu,
           "sigmoid": torch.sigmoid}[activation]
    return act(y), params


def torch_residual_fork(torch, model, x):
    h1, p1 = torch_dense(torch, model.get_layer("d1"), x, "tanh")
    h2, p2 = torch_dense(torch, model.get_layer("d2"), h1)
    out, p3 = torch_dense(torch, model.get_layer("out"), h1 + h2)
    return out, p1 + p2 + p3


def torch_concatenate_fork(torch, model, x):
    a, p1 = torch_dense(torch, model.get_layer("a"), x, "relu")
    b, p2 = torch_dense(torch, model.get_layer("b"), x, "sigmoid")
    out, p3 = torch_dense(torch, model.get_layer("out"), torch.cat([a, b], dim=-1))
    return out, p1 + p2 + p3


def torch_shared_layer(torch, model, x):
    x1, x2 = x
    layer = model.get_layer("shared")
    w = torch.tensor(layer.kernel, dtype=torch.float64, requires_grad=True)
    b = torch.tensor(layer.bias, dtype=torch.float64, requires_grad=True)

    def shared(t):
        return torch.tanh(t @ w + b)
    h1 = shared(x1)
    out, p = torch_dense(torch, model.get_layer("out"), (h1 - shared(shared(x2))) * h1)
    return out, [w, b] + p


def torch_nested_model(torch, model, x):
    inner = model.get_layer("inner")
    hidden, out_layer = inner.get_layer("inner_hidden"), inner.get_layer("inner_out")
    tensors = [torch.tensor(a, dtype=torch.float64, requires_grad=True)
               for a in (hidden.kernel, hidden.bias, out_layer.kernel, out_layer.bias)]

    def run(t):
        return torch.relu(t @ tensors[0] + tensors[1]) @ tensors[2] + tensors[3]
    out, p = torch_dense(torch, model.get_layer("out"), (x + run(run(x))) / 2)
    return out, tensors + p


@pytest.mark.parametrize("name, torch_graph", [
    ("residual_fork", torch_residual_fork), ("concatenate_fork", torch_concatenate_fork),
    ("shared_layer", torch_shared_layer), ("nested_model", torch_nested_model)])
def test_graph_matches_pytorch(name, torch_graph):
    """Forward and every gradient (inputs and weights) against PyTorch autograd
    in float64, same weights."""
    torch = torch_or_skip()
    make, shapes = GRAPHS[name]
    fz.utils.set_random_seed(6)
    model = make()
    xs = graph_inputs(shapes, seed=3)
    x_list = xs if isinstance(xs, list) else [xs]
    model.input_grad_needed = True
    y = model.forward(xs, training=True).copy()
    dy = inputs(y.shape, seed=9)
    dx = model.backward(dy)
    dx = dx if isinstance(dx, list) else [dx]
    tx = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in x_list]
    ty, tparams = torch_graph(torch, model, tx if len(tx) > 1 else tx[0])
    (ty * torch.tensor(dy, dtype=torch.float64)).sum().backward()
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-4, atol=1e-5)
    for ours, theirs in zip(dx, tx):
        np.testing.assert_allclose(ours, theirs.grad.numpy(), rtol=1e-4, atol=1e-5)
    assert len(model.trainable_grads) == len(tparams)
    for ours, theirs in zip(model.trainable_grads, tparams):
        np.testing.assert_allclose(ours, theirs.grad.numpy(), rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- Sequential is a chain graph

def test_sequential_and_the_equivalent_model_train_bit_identically():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 8)).astype(np.float32)
    y = rng.integers(0, 3, 200)

    def layers():
        return [L.Dense(16, activation="relu"), L.Dropout(0.3), L.Dense(3, activation="softmax")]
    fz.utils.set_random_seed(0)
    inp = fz.Input((8,))
    h = inp
    for layer in layers():
        h = layer(h)
    functional = fz.Model(inp, h)
    seq = fz.Sequential(layers())
    seq.build((None, 8))  # draws its weights from its own generator (utils.set_random_seed)
    seq.set_weights(functional.get_weights())
    results = []
    for model in (seq, functional):
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        model._rng = np.random.default_rng(42)  # the same shuffles and dropout masks for both
        history = model.fit(x, y, batch_size=16, epochs=2, verbose=0, validation_split=0.2)
        results.append((model.get_weights(), history.history, model.predict(x, verbose=0)))
    (w1, h1, p1), (w2, h2, p2) = results
    assert all(np.array_equal(a, b) for a, b in zip(w1, w2))
    assert h1 == h2
    np.testing.assert_array_equal(p1, p2)


def test_sequential_is_a_graph_with_keras_conventions():
    model = fz.Sequential([L.Dense(4, activation="relu", input_shape=(3,)), L.Dense(2)])
    assert model.built  # input_shape= on the first layer builds at once, as Keras
    assert model.input_shape == (None, 3) and model.output_shape == (None, 2)
    assert [t.shape for t in model.inputs] == [(None, 3)]
    assert model.get_layer(model.layers[1].name) is model.layers[1]
    assert model.get_layer(index=0) is model.layers[0]
    popped = model.pop()
    assert model.output_shape == (None, 4) and popped not in model.layers
    first = fz.Sequential([fz.Input((5,)), L.Dense(2)])
    assert first.built and first.input_shape == (None, 5) and len(first.layers) == 1
    built = fz.Sequential([L.Dense(2)])
    built.build((None, 7))
    assert built.layers[0].kernel.shape == (7, 2)
    with pytest.raises(ValueError, match=r"batch axis first, e\.g\. \(None, 784\)"):
        fz.Sequential([L.Dense(2)]).build((7,))


def test_the_textbook_flatten_is_added_only_for_dense_on_images_from_data():
    images = np.zeros((4, 6, 6), np.float32)
    model = fz.Sequential([L.Dense(3)])
    assert model.predict(images, verbose=0).shape == (4, 3)
    assert [type(l).__name__ for l in model.layers] == ["Flatten", "Dense"]
    lines = []
    model.summary(print_fn=lines.append)
    assert any(line.startswith("flatten") for line in lines)
    # with an Input, Dense acts on the last axis as Keras: no Flatten
    model = fz.Sequential([fz.Input((6, 6)), L.Dense(3)])
    assert model.predict(images, verbose=0).shape == (4, 6, 3)
    assert [type(l).__name__ for l in model.layers] == ["Dense"]


def test_model_is_a_layer_nested_and_called_on_arrays():
    fz.utils.set_random_seed(7)
    x = fz.Input((4,))
    logits_model = fz.Model(x, L.Dense(3)(x))
    probabilities = fz.Sequential([logits_model, L.Softmax()])
    data = inputs((5, 4))
    logits = logits_model(data)
    assert isinstance(logits, np.ndarray) and logits.shape == (5, 3)
    p = probabilities.predict(data, verbose=0)
    np.testing.assert_allclose(p, np.exp(logits) / np.exp(logits).sum(1, keepdims=True), rtol=1e-5)
    # model(x) returns new arrays, not buffers a later call overwrites
    first = logits_model(data)
    logits_model(data * 2)
    np.testing.assert_array_equal(first, logits)
    # symbolic call: a node in another graph
    y = logits_model(fz.Input((4,)))
    assert y.shape == (None, 3)


def test_from_logits_model_trains_and_a_softmax_model_predicts():
    """Keras's recipe: train on logits with from_logits=True, then wrap in
    Sequential([model, Softmax()]) for probabilities."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((120, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    fz.utils.set_random_seed(8)
    inp = fz.Input((4,))
    model = fz.Model(inp, L.Dense(2)(L.Dense(8, activation="relu")(inp)))
    model.compile(fz.optimizers.Adam(0.05), fz.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(x, y, epochs=5, verbose=0)
    probability_model = fz.Sequential([model, L.Softmax()])
    p = probability_model.predict(x, verbose=0)
    np.testing.assert_allclose(p.sum(1), 1, rtol=1e-5)
    assert np.mean(p.argmax(1) == y) > 0.9


# ---------------------------------------------------------------- save / load

@pytest.mark.parametrize("name", GRAPHS)
def test_graph_save_load_is_bit_exact(tmp_path, name):
    make, shapes = GRAPHS[name]
    fz.utils.set_random_seed(9)
    model = make()
    model.compile("adam", "mse")
    xs = graph_inputs(shapes)
    model.save(tmp_path / "graph.safetensors")
    loaded = fz.models.load_model(tmp_path / "graph.safetensors")
    assert type(loaded) is fz.Model
    assert [l.name for l in loaded.layers] == [l.name for l in model.layers]
    assert [type(l) for l in loaded.layers] == [type(l) for l in model.layers]
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), loaded.get_weights()))
    np.testing.assert_array_equal(loaded.predict(xs, verbose=0), model.predict(xs, verbose=0))
    assert len(loaded.trainable_params) == len(model.trainable_params)  # shared: still shared


def test_saved_graph_lists_nodes_edges_and_call_arguments(tmp_path):
    fz.utils.set_random_seed(10)
    model = shared_layer()
    model.save(tmp_path / "m.safetensors")
    with safetensors.safe_open(tmp_path / "m.safetensors", framework="numpy") as f:
        config = json.loads(f.metadata()["fromzero"])
    assert config["format_version"] == 3 and config["class"] == "Model"
    graph = config["config"]
    names = [entry["config"]["name"] for entry in graph["layers"]]
    assert names.count("shared") == 1  # a shared layer is listed once ...
    shared = names.index("shared")
    assert sum(node["layer"] == shared for node in graph["nodes"]) == 3  # ... called at 3 nodes
    add = next(node for node in graph["nodes"] if names[node["layer"]] == "sub")
    assert all("tensor" in ref for ref in add["args"][0])  # edges: [node, output] references


def test_per_node_keyword_arguments_are_kept_and_saved(tmp_path):
    """A non-tensor keyword argument of a call (here training=True, which
    keeps a Dropout active at inference: Monte Carlo dropout) is stored per node."""
    fz.utils.set_random_seed(11)
    x = fz.Input((50,))
    model = fz.Model(x, L.Dropout(0.5)(x, training=True))
    ones = np.ones((4, 50), np.float32)
    assert np.any(model.predict(ones, verbose=0) == 0)
    model.save(tmp_path / "mc.safetensors")
    loaded = fz.models.load_model(tmp_path / "mc.safetensors")
    assert np.any(loaded.predict(ones, verbose=0) == 0)


def test_multi_input_multi_output_round_trip(tmp_path):
    fz.utils.set_random_seed(12)
    a, b = fz.Input((3,), name="a"), fz.Input((2,), name="b")
    h = L.Concatenate()([L.Dense(4, activation="relu")(a), b])
    model = fz.Model({"a": a, "b": b}, {"score": L.Dense(1, name="score")(h),
                                        "kind": L.Dense(3, activation="softmax", name="kind")(h)})
    data = {"a": inputs((5, 3)), "b": inputs((5, 2), seed=1)}
    out = model.predict(data, verbose=0)
    assert set(out) == {"score", "kind"} and out["kind"].shape == (5, 3)
    model.save(tmp_path / "mimo.safetensors")
    loaded = fz.models.load_model(tmp_path / "mimo.safetensors")
    again = loaded.predict(data, verbose=0)
    for k in out:
        np.testing.assert_array_equal(out[k], again[k])


# ---------------------------------------------------------------- bad graphs

@pytest.mark.parametrize("wrap", ["tensor", "list", "tuple", "dict"])
def test_one_output_alone_in_a_list_tuple_or_dict(tmp_path, wrap):
    """Model(i, o), Model(i, [o]) and Model(i, (o,)) are the same one-output model
    (Keras 3 unpacks singletons: call and predict give the array); Model(i, {"out": o})
    keeps its dict. fit, evaluate, predict, call, backward, save/load all work."""
    x = inputs((32, 4))
    y = np.random.default_rng(1).integers(0, 3, 32)
    i = fz.Input((4,))
    o = L.Dense(3, activation="softmax", name="out")(i)
    model = fz.Model(i, {"tensor": o, "list": [o], "tuple": (o,), "dict": {"out": o}}[wrap])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    assert len(model.fit(x, y, batch_size=8, epochs=2, verbose=0).history["loss"]) == 2
    assert np.isfinite(model.evaluate(x, y, verbose=0)[0])
    targets = {"out": y} if wrap == "dict" else [y] if wrap == "list" else y
    model.train_on_batch(x, targets)
    unwrap = (lambda r: r["out"]) if wrap == "dict" else (lambda r: r)
    predicted, called = model.predict(x, verbose=0), model(x)
    assert isinstance(predicted, dict if wrap == "dict" else np.ndarray)
    assert isinstance(called, dict if wrap == "dict" else np.ndarray)
    np.testing.assert_array_equal(unwrap(predicted), unwrap(called))
    model(x, training=True)
    model.backward({"out": np.ones((32, 3), np.float32)} if wrap == "dict"
                   else np.ones((32, 3), np.float32))
    model.save(tmp_path / "m.fz")
    restored = fz.load_model(tmp_path / "m.fz")
    np.testing.assert_array_equal(unwrap(restored.predict(x, verbose=0)), unwrap(predicted))


def test_output_not_reachable_from_the_inputs():
    a, b = fz.Input((3,), name="first"), fz.Input((3,), name="second")
    y = L.Dense(2, name="head")(L.Dense(3, name="body")(b))
    with pytest.raises(ValueError, match=r"disconnected.*head.*'second'.*body.*first"):
        fz.Model(a, y)


def test_cycle_is_refused_naming_the_layers():
    x = fz.Input((3,))
    d1 = L.Dense(3, name="loop_a")
    d2 = L.Dense(3, name="loop_b")
    h = d2(d1(x))
    d1_node = h.node.inputs[0].node
    d1_node.inputs = [h]  # a hand-made cycle: loop_a reads loop_b's output
    with pytest.raises(ValueError, match=r"cycle: .*loop_a.*loop_b|cycle: .*loop_b.*loop_a"):
        fz.Model(x, h)


def test_incompatible_shapes_at_add_name_the_layer():
    x = fz.Input((4,))
    with pytest.raises(ValueError, match=r"add_bad: Add needs inputs of the same shape, got "
                                         r"\(None, 3\), \(None, 5\)"):
        L.Add(name="add_bad")([L.Dense(3)(x), L.Dense(5)(x)])


def test_symbolic_tensor_passed_to_fit_or_predict():
    x = fz.Input((4,))
    model = fz.Model(x, L.Dense(2)(x))
    model.compile("sgd", "mse")
    with pytest.raises(TypeError, match=r"symbolic tensor"):
        model.fit(fz.Input((4,)), np.zeros((3, 2)), verbose=0)
    with pytest.raises(TypeError, match=r"symbolic tensor"):
        model.predict(x, verbose=0)


def test_inputs_must_come_from_input_and_names_must_be_unique():
    x = fz.Input((4,))
    h = L.Dense(3)(x)
    with pytest.raises(ValueError, match="inputs must be the tensors fz.Input returns"):
        fz.Model(h, L.Dense(2)(h))
    same = L.Dense(3, name="twin")
    with pytest.raises(ValueError, match="the name 'twin' is used by 2 layers"):
        fz.Model(x, L.Dense(3, name="twin")(same(x)))


def test_wrong_input_layout_for_a_built_model():
    """Was a defect: a model built for one image layout silently ran another
    with the same number of values."""
    model = fz.Sequential([L.Flatten(), L.Dense(2)])
    model.build((None, 4, 6))
    with pytest.raises(ValueError, match=r"expected inputs of shape \(batch, 4, 6\), got \(2, 6, 4\)"):
        model.predict(np.zeros((2, 6, 4), np.float32), verbose=0)
    with pytest.raises(ValueError, match=r"expected inputs of shape \(batch, 4, 6\), got \(2, 24\)"):
        model.predict(np.zeros((2, 24), np.float32), verbose=0)


def test_layer_call_with_wrong_arguments():
    with pytest.raises(TypeError, match=r"dense_x: cannot be called this way"):
        L.Dense(2, name="dense_x")(fz.Input((3,)), units=3)
    with pytest.raises(TypeError, match=r"dense_y: training= must be True, False or None"):
        L.Dense(2, name="dense_y")(fz.Input((3,)), fz.Input((3,)))
    with pytest.raises(TypeError, match=r"Add is called on a list of tensors"):
        L.Add()(fz.Input((3,)))


# ---------------------------------------------------------------- summary

def test_summary_shows_connections():
    fz.utils.set_random_seed(13)
    model = residual_fork()
    lines = []
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert "Connected to" in text
    add_line = next(line for line in lines if line.startswith("add (Add)"))
    assert "d1[0][0], d2[0][0]" in add_line
    assert f"Total params: {model.count_params():,}" in text


# ---------------------------------------------------------------- merge and shape layers

def merge_inputs(n=3, shape=(4, 5)):
    return [inputs(shape, seed=i) for i in range(n)]


@pytest.mark.parametrize("layer, reference", [
    (lambda: L.Add(), lambda xs: xs[0] + xs[1] + xs[2]),
    (lambda: L.Multiply(), lambda xs: xs[0] * xs[1] * xs[2]),
    (lambda: L.Average(), lambda xs: (xs[0] + xs[1] + xs[2]) / 3),
    (lambda: L.Concatenate(), lambda xs: np.concatenate(xs, axis=-1)),
    (lambda: L.Concatenate(axis=1), lambda xs: np.concatenate(xs, axis=1)),
], ids=["Add", "Multiply", "Average", "Concatenate", "Concatenate_axis1"])
def test_merge_layers_forward_and_gradients(layer, reference):
    xs = merge_inputs(shape=(3, 4, 5))
    np.testing.assert_allclose(layer().forward(xs), reference(xs), rtol=1e-6, atol=1e-6)
    assert_gradients_ok(fz.testing.check_gradients(layer(), xs))


def test_subtract_forward_and_gradients():
    xs = merge_inputs(2)
    np.testing.assert_allclose(L.Subtract().forward(xs), xs[0] - xs[1])
    assert_gradients_ok(fz.testing.check_gradients(L.Subtract(), xs))
    with pytest.raises(ValueError, match="Subtract takes a list of 2 inputs, got 3"):
        L.Subtract().forward(merge_inputs(3))


@pytest.mark.parametrize("layer, shape, expected", [
    (lambda: L.Reshape((2, -1)), (3, 4, 3), (3, 2, 6)),
    (lambda: L.Permute((2, 1)), (3, 4, 5), (3, 5, 4)),
    (lambda: L.Flatten(), (3, 4, 5), (3, 20)),
    (lambda: L.Identity(), (3, 4), (3, 4)),
], ids=["Reshape", "Permute", "Flatten", "Identity"])
def test_shape_layers(layer, shape, expected):
    x = inputs(shape)
    y = layer().forward(x)
    assert y.shape == expected
    assert layer().compute_output_shape((None,) + shape[1:]) == (None,) + expected[1:]
    assert_gradients_ok(fz.testing.check_gradients(layer(), x))


def test_permute_matches_numpy_transpose():
    x = inputs((2, 3, 4, 5))
    np.testing.assert_array_equal(L.Permute((3, 1, 2)).forward(x), x.transpose(0, 3, 1, 2))


def test_shape_layer_errors():
    with pytest.raises(ValueError, match=r"cannot reshape samples of shape \(None, 7\)|"
                                         r"cannot reshape samples of shape \(7,\)"):
        L.Reshape((2, 3))(fz.Input((7,)))
    with pytest.raises(ValueError, match="dims must be a permutation of 1..2"):
        L.Permute((1, 3))
    with pytest.raises(ValueError, match=r"Concatenate\(axis=-1\) needs inputs that agree"):
        L.Concatenate()([fz.Input((2, 3)), fz.Input((3, 3))])


# ---------------------------------------------------------------- defects the layer protocol let through

def test_flatten_backward_checks_the_gradient_shape():
    """Was a defect: Flatten.backward reshaped any dy with the right size."""
    layer = L.Flatten()
    layer.forward(inputs((3, 4, 5)), training=True)
    with pytest.raises(ValueError, match=r"dy must have shape \(3, 20\), got \(6, 10\)"):
        layer.backward(np.ones((6, 10), np.float32))


@pytest.mark.parametrize("rate, training", [(0.0, True), (0.5, False)], ids=["rate0", "inference"])
def test_dropout_backward_checks_the_gradient_shape(rate, training):
    """Was a defect: Dropout.backward passed a dy of any shape straight through
    at rate 0 or after an inference forward."""
    layer = L.Dropout(rate)
    layer.forward(inputs((3, 4)), training=training)
    with pytest.raises(ValueError, match=r"dy must have shape \(3, 4\), got \(4, 3\)"):
        layer.backward(np.ones((4, 3), np.float32))


def test_initializer_array_is_copied_not_trained_in_place():
    """Was a defect: the array a kernel_initializer returned became the kernel,
    so training wrote into the caller's array."""
    mine = np.full((3, 2), 0.5, np.float32)
    layer = L.Dense(2, kernel_initializer=lambda shape: mine)
    layer.build((None, 3))
    assert layer.kernel is not mine
    layer.kernel[...] = 7
    np.testing.assert_array_equal(mine, 0.5)


def test_layer_classes_register_themselves_under_one_naming_rule():
    class Doubler(L.Layer):
        def forward(self, x, training=False):
            return np.asarray(x) * 2

        def backward(self, dy):
            return np.asarray(dy) * 2

    assert fz.layers.base.get_class("Doubler") is Doubler
    assert Doubler().name.startswith("doubler")
    assert L.ReLU().name.startswith("re_lu")  # Keras's rule, no per-name patches
    assert L.BatchNormalization().name.startswith("batch_normalization")
    assert fz.layers.base.get_class("MaxPool2D") is L.MaxPooling2D  # an alias
    assert "Dense" in fz.layers.__all__ and "Add" in fz.layers.__all__
    with pytest.raises(ValueError, match="unknown layer 'Nope'"):
        fz.layers.base.get_class("Nope")


def test_unsupported_keras_arguments_are_refused_clearly():
    with pytest.raises(TypeError, match=r"Dense: unsupported argument\(s\) kernel_constraint .*"
                                        r"kernel_constraint can only be None"):
        L.Dense(2, kernel_constraint="non_neg")
    with pytest.raises(TypeError, match=r"data_format can only be None or 'channels_last'"):
        L.Conv2D(2, 3, data_format="channels_first")
    with pytest.raises(TypeError, match=r"unsupported argument\(s\) kernel_size_typo \(fromzero"):
        L.Conv2D(2, 3, kernel_size_typo=3)
    # what Keras programs spell out at the value that means "not used" is accepted
    L.Conv2D(2, 3, data_format="channels_last", dilation_rate=(1, 1), groups=1,
             bias_regularizer=None, kernel_constraint=None)
    L.Dropout(0.1, noise_shape=None, seed=None)
    with pytest.raises(ValueError, match="dtype must be 'float32'"):
        L.Dense(2, dtype="float64")


# ---------------------------------------------------------------- the call protocol for richer layers

class Tied(L.Layer):
    """One weight W (n, d) used two ways, as a token embedding tied to the output
    layer: forward(x) = x·W, forward(h, reverse=True) = h·Wᵀ."""

    def __init__(self, n, d, **kwargs):
        super().__init__(**kwargs)
        self.n, self.d = n, d

    def build(self, input_shape):
        self.w = self.add_weight((self.n, self.d), "glorot_uniform", name="w")
        self.built = True

    def compute_output_spec(self, x, reverse=False, training=None):
        return fz.graph.SymbolicTensor(x.shape[:-1] + ((self.n if reverse else self.d),),
                                       "float32", None)

    def forward(self, x, reverse=False, training=False):
        x = np.asarray(x, np.float32)
        self.save(x, reverse)
        return x @ (self.w.T if reverse else self.w)

    def backward(self, dy):
        x, reverse = self.saved
        self.grads[0][...] = dy.T @ x if reverse else x.T @ dy
        return dy @ (self.w if reverse else self.w.T)

    def get_config(self):
        return {"name": self.name, "n": self.n, "d": self.d}


class Blend(L.Layer):
    """Several tensor arguments, some by keyword, one without a gradient:
    y = (query ⊙ value + key) ⊙ [mask > 0] · scale."""

    def compute_output_spec(self, query, value, key=None, mask=None, scale=1.0, training=None):
        return fz.graph.SymbolicTensor(query.shape, "float32", None)

    def forward(self, query, value, key=None, mask=None, scale=1.0, training=False):
        keep = np.float32(scale) * (np.ones_like(query) if mask is None else (mask > 0))
        self.save(query, value, key is not None, mask is not None, keep)
        return ((query * value + (0 if key is None else key)) * keep).astype(np.float32)

    def backward(self, dy):
        query, value, has_key, has_mask, keep = self.saved
        d = dy * keep
        grads = [d * value, d * query] + ([d] if has_key else []) + ([None] if has_mask else [])
        return grads  # one per tensor argument, in forward's order (query, value, key, mask)


def test_tensor_keyword_arguments_and_per_node_options(tmp_path):
    fz.utils.set_random_seed(14)
    q, v, k = fz.Input((3,), name="q"), fz.Input((3,), name="v"), fz.Input((3,), name="k")
    mask = fz.Input((3,), dtype="int32", name="mask")
    y = Blend(name="blend")(value=v, mask=mask, key=k, query=q, scale=2.0)  # keywords, any order
    model = fz.Model([q, v, k, mask], L.Dense(2)(y))
    assert [t.name for t in y.node.inputs] == ["q", "v", "k", "mask"]  # forward's order
    data = [inputs((4, 3), seed=i) for i in range(3)] + [np.array([[1, 0, 1]] * 4)]
    report = fz.testing.check_gradients(model, data)
    assert sorted(report) == ["param_0", "param_1", "x_0", "x_1", "x_2"]  # no gradient for ids
    assert_gradients_ok(report)
    model.save(tmp_path / "blend.safetensors")
    loaded = fz.models.load_model(tmp_path / "blend.safetensors")
    np.testing.assert_array_equal(loaded.predict(data, verbose=0), model.predict(data, verbose=0))


def test_one_layer_called_two_ways_shares_and_sums_its_weight(tmp_path):
    """Weight tying: the same W embeds and, transposed, projects back out."""
    fz.utils.set_random_seed(15)
    tied = Tied(5, 3, name="tied")
    x = fz.Input((5,))
    model = fz.Model(x, tied(L.Activation("tanh")(tied(x)), reverse=True))
    assert model.output_shape == (None, 5) and len(model.trainable_params) == 1
    assert_gradients_ok(fz.testing.check_gradients(model, inputs((4, 5))))
    model.save(tmp_path / "tied.safetensors")
    loaded = fz.models.load_model(tmp_path / "tied.safetensors")
    xv = inputs((4, 5), seed=3)
    np.testing.assert_array_equal(loaded.predict(xv, verbose=0), model.predict(xv, verbose=0))


def test_compiled_sequential_changed_afterwards_trains_its_new_output():
    x = np.random.default_rng(0).standard_normal((16, 4)).astype(np.float32)
    model = fz.Sequential([L.Dense(3, activation="softmax", input_shape=(4,))])
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, np.zeros(16, int), verbose=0)
    model.pop()
    model.add(L.Dense(5, activation="softmax", name="wider"))
    history = model.fit(x, np.full(16, 4), verbose=0)  # label 4 needs the new 5-way output
    assert set(history.history) == {"loss", "accuracy"}


def test_utils_imports_nothing_of_fromzero():
    """utils is what every module imports; it imports no fromzero module itself
    (the old profiler ↔ utils cycle is gone). check_gradients stays reachable there."""
    import ast
    source = (Path(fz.__file__).parent / "utils.py").read_text(encoding="utf-8")
    for node in ast.parse(source).body:  # module-level imports only
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0 and not (node.module or "").startswith("fromzero"), node.module
        if isinstance(node, ast.Import):
            assert not any(a.name.startswith("fromzero") for a in node.names)
    assert fz.utils.check_gradients is fz.testing.check_gradients
    assert not hasattr(fz.utils, "profile") and callable(fz.profiler.profile)


def test_add_and_pop_on_a_sequential_built_from_a_shape():
    model = fz.Sequential([L.Dense(4)])
    model.build((None, 5))
    model.add(L.Dense(2))
    assert model.output_shape == (None, 2)
    model.pop()
    assert model.built and model.output_shape == (None, 4)
