"""The public API contract (API.md, kept by the project's coordinator): every
name it lists exists, with the parameters it promises, in its order, and its
defaults. A parameter the contract spells with its value where Keras 3 spells
the value's stand-in (batch_size=None meaning 32, verbose="auto" meaning 1)
must be that stand-in and mean that value. Extra parameters after the promised
ones, or between them as in Keras 3 (RMSprop's momentum before epsilon), are allowed."""

import inspect

import numpy as np
import pytest

import fromzero as fz
from fromzero.callbacks import resolve_verbose

REQUIRED = inspect.Parameter.empty
KERAS_BATCH = ("keras-batch",)      # Keras 3's batch_size=None, which means 32
KERAS_VERBOSE = ("keras-verbose",)  # Keras 3's verbose="auto", which means 1

# (what, callable, [(parameter, default)]) in the contract's order.
CONTRACT = [
    ("Sequential", fz.Sequential, [("layers", None), ("name", None)]),
    ("Sequential.add", fz.Sequential.add, [("layer", REQUIRED)]),
    ("Model.compile", fz.Model.compile, [("optimizer", "rmsprop"), ("loss", None), ("metrics", None)]),
    ("Model.fit", fz.Model.fit, [("x", None), ("y", None), ("batch_size", KERAS_BATCH), ("epochs", 1),
                                 ("verbose", KERAS_VERBOSE), ("callbacks", None),
                                 ("validation_split", 0.0), ("validation_data", None),
                                 ("shuffle", True), ("class_weight", None), ("sample_weight", None),
                                 ("initial_epoch", 0), ("steps_per_epoch", None)]),
    ("Model.evaluate", fz.Model.evaluate, [("x", None), ("y", None), ("batch_size", KERAS_BATCH),
                                           ("verbose", KERAS_VERBOSE)]),
    ("Model.predict", fz.Model.predict, [("x", REQUIRED), ("batch_size", KERAS_BATCH),
                                         ("verbose", KERAS_VERBOSE)]),
    ("Model.set_weights", fz.Model.set_weights, [("weights", REQUIRED)]),
    ("Model.save", fz.Model.save, [("path", REQUIRED)]),
    ("models.load_model", fz.models.load_model, [("path", REQUIRED)]),
    ("Model.train_on_batch", fz.Model.train_on_batch, [("x", REQUIRED), ("y", None)]),
    ("Model.test_on_batch", fz.Model.test_on_batch, [("x", REQUIRED), ("y", None)]),
    ("Model.predict_on_batch", fz.Model.predict_on_batch, [("x", REQUIRED)]),
    ("Model.enable_lora", fz.Model.enable_lora, [("rank", REQUIRED), ("target", None)]),
    ("Model.merge_lora", fz.Model.merge_lora, []),
    ("Input", fz.Input, [("shape", None)]),
    ("Model", fz.Model, [("inputs", REQUIRED), ("outputs", REQUIRED)]),
    ("layers.Dense", fz.layers.Dense, [("units", REQUIRED), ("activation", None), ("use_bias", True),
                                       ("kernel_initializer", "glorot_uniform"),
                                       ("bias_initializer", "zeros"), ("kernel_regularizer", None)]),
    ("layers.Dense.forward", fz.layers.Dense.forward, [("x", REQUIRED), ("training", False)]),
    ("layers.Dense.backward", fz.layers.Dense.backward, [("dy", REQUIRED)]),
    ("layers.Dense.enable_lora", fz.layers.Dense.enable_lora, [("rank", REQUIRED),
                                                               ("lora_alpha", None)]),
    ("layers.Activation", fz.layers.Activation, [("activation", REQUIRED)]),
    ("layers.LeakyReLU", fz.layers.LeakyReLU, [("negative_slope", 0.3)]),
    ("layers.Dropout", fz.layers.Dropout, [("rate", REQUIRED)]),
    ("layers.Conv2D", fz.layers.Conv2D, [("filters", REQUIRED), ("kernel_size", REQUIRED),
                                         ("strides", 1), ("padding", "valid"), ("activation", None)]),
    ("layers.MaxPool2D", fz.layers.MaxPool2D, [("pool_size", 2), ("strides", None)]),
    ("losses.SparseCategoricalCrossentropy", fz.losses.SparseCategoricalCrossentropy,
     [("from_logits", False)]),
    ("losses.CategoricalCrossentropy", fz.losses.CategoricalCrossentropy, [("from_logits", False)]),
    ("losses.BinaryCrossentropy", fz.losses.BinaryCrossentropy, [("from_logits", False)]),
    ("losses.MeanSquaredError.gradient", fz.losses.MeanSquaredError.gradient,
     [("y_true", REQUIRED), ("y_pred", REQUIRED)]),
    ("optimizers.SGD", fz.optimizers.SGD, [("learning_rate", 0.01), ("momentum", 0.0),
                                           ("nesterov", False), ("weight_decay", None)]),
    ("optimizers.Adam", fz.optimizers.Adam, [("learning_rate", 0.001), ("beta_1", 0.9),
                                             ("beta_2", 0.999), ("epsilon", 1e-7)]),
    ("optimizers.AdamW", fz.optimizers.AdamW, [("weight_decay", 0.004)]),
    ("optimizers.RMSprop", fz.optimizers.RMSprop, [("learning_rate", 0.001), ("rho", 0.9),
                                                   ("epsilon", 1e-7)]),
    ("datasets.mnist.load_data", fz.datasets.mnist.load_data, [("path", None)]),
    ("datasets.fashion_mnist.load_data", fz.datasets.fashion_mnist.load_data, [("path", None)]),
    ("datasets.text.load_data", fz.datasets.text.load_data, [("name", REQUIRED)]),
    ("utils.set_random_seed", fz.utils.set_random_seed, [("seed", REQUIRED)]),
    ("ops.matmul", fz.ops.matmul, [("a", REQUIRED), ("b", REQUIRED), ("transpose_a", False),
                                   ("transpose_b", False)]),
    ("text.RandomWindows", fz.text.RandomWindows, [("ids", REQUIRED), ("sequence_length", REQUIRED),
                                                   ("batch_size", REQUIRED), ("seed", None)]),
    ("text.generate", fz.text.generate, [("model", REQUIRED), ("tokenizer", REQUIRED),
                                         ("prompt", REQUIRED), ("max_new_tokens", REQUIRED),
                                         ("temperature", 1.0), ("top_k", None), ("seed", None)]),
    ("models.gpt", fz.models.gpt, [("vocab_size", REQUIRED), ("sequence_length", REQUIRED),
                                   ("num_layers", REQUIRED), ("num_heads", REQUIRED),
                                   ("hidden_dim", REQUIRED), ("dropout", 0.0), ("use_bias", True),
                                   ("tie_embeddings", False), ("epsilon", 1e-5)]),
    ("models.gpt_to_nanogpt", fz.models.gpt_to_nanogpt, [("model", REQUIRED)]),
    ("models.gpt_from_nanogpt", fz.models.gpt_from_nanogpt, [("state", REQUIRED),
                                                             ("config", REQUIRED)]),
]

NAMES = {
    fz: ["Sequential", "Model", "Input", "info", "set_num_threads", "get_num_threads",
         "distributed", "datasets", "ops"],
    fz.models: ["Sequential", "load_model", "gpt", "gpt_to_nanogpt", "gpt_from_nanogpt"],
    fz.layers: ["Dense", "Activation", "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "Softmax", "GELU",
                "Flatten", "Dropout", "Conv2D", "MaxPool2D", "Add", "Subtract", "Multiply",
                "Concatenate", "Average", "Reshape", "Permute", "Embedding", "PositionEmbedding",
                "LayerNormalization", "MultiHeadAttention"],
    fz.losses: ["MeanSquaredError", "SparseCategoricalCrossentropy", "CategoricalCrossentropy",
                "BinaryCrossentropy"],
    fz.optimizers: ["SGD", "Adam", "AdamW", "RMSprop"],
    fz.optimizers.schedules: ["ExponentialDecay", "CosineDecay", "PiecewiseConstantDecay"],
    fz.callbacks: ["CSVLogger", "LambdaCallback", "History"],
    fz.utils: ["set_random_seed", "check_gradients", "to_categorical"],
    fz.text: ["ByteTokenizer", "CharTokenizer", "BPETokenizer", "RandomWindows", "generate"],
    fz.pretrained: ["minilm"],
}


@pytest.mark.parametrize("module", NAMES, ids=lambda m: m.__name__)
def test_every_promised_name_exists(module):
    missing = [n for n in NAMES[module] if not hasattr(module, n)]
    assert not missing, f"{module.__name__} lacks {missing}"


@pytest.mark.parametrize("what, function, promised", CONTRACT, ids=[c[0] for c in CONTRACT])
def test_promised_parameters_in_order_with_their_defaults(what, function, promised):
    parameters = [p for p in inspect.signature(function).parameters.values()
                  if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    names = [p.name for p in parameters]
    missing = [name for name, _ in promised if name not in names]
    assert not missing, f"{what}: no parameter {missing} in {names}"
    positions = [names.index(name) for name, _ in promised]
    assert positions == sorted(positions), f"{what}: {names} are not in the contract's order"
    by_name = {p.name: p for p in parameters}
    for name, default in promised:
        p = by_name[name]
        expected = {KERAS_BATCH: None, KERAS_VERBOSE: "auto"}.get(default, default)
        assert p.default == expected or (p.default is expected), \
            f"{what}: {name}={p.default!r}, the contract says {default!r}"


def test_keras_stand_ins_mean_the_promised_values():
    assert resolve_verbose("auto") == 1
    model = fz.Sequential([fz.layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    x = np.zeros((33, 3), np.float32)
    history = model.fit(x, np.zeros((33, 2), np.float32), verbose=0)
    assert history.params["steps"] == 2  # 33 samples in batches of 32
    assert model.predict(x, verbose=0).dtype == np.float32


def test_engine_calls_as_promised():
    before = fz.get_num_threads()
    try:
        fz.set_num_threads(n=1)
        assert fz.get_num_threads() == 1
    finally:
        fz.set_num_threads(before)
    info = fz.info()
    assert {"version", "simd", "openmp", "threads"} <= set(info)
