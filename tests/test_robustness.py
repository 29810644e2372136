"""Unbreakable from Python: a battery of bad (or merely unusual) inputs.

Every case ends in a Python exception whose message names the argument and
what was expected and received — or, where the input is only unusual (a
float64 or Fortran-order array, a negative-stride view, an empty batch), in a
correct result checked against NumPy. None may crash or hang the interpreter.

So that a crash is *detected* rather than killing pytest, the cases run in a
child process (one for the whole battery, to keep it fast), which reports each
case's outcome on stdout as it goes: a child that dies mid-case (segfault,
abort) has that case attributed as a crash, and the battery resumes in a fresh
child from the next case; a case silent for CASE_TIMEOUT seconds is a hang.
Run one case by hand with `python tests/test_robustness.py --child NAME`.
The declared_* cases attack every kernel from its declaration (test_aliasing.py).

Also here: a checkpoint save killed mid-write (SIGKILL) leaves a loadable file.
"""

import gzip
import io
import json
import os
import pickle
import queue
import re
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import zipfile
from pathlib import Path

import numpy as np
import pytest
import safetensors
import safetensors.numpy

import fromzero as fz
from test_aliasing import ATTACKS, Example
from test_aliasing import examples as declared_examples

L = fz.layers
Act = fz.ops.Activation
CASE_TIMEOUT = 20.0  # seconds: every case takes well under one, so this means a hang
MARK = "@@robustness@@ "

CASES = {}


def case(raises=None, match=None):
    """Register the decorated function as a case. With `raises`, it must raise
    that exception (or a subclass) with a message matching the regex `match`;
    without, it must return normally (its own asserts check the result)."""
    def register(fn):
        assert fn.__name__ not in CASES, fn.__name__
        CASES[fn.__name__] = (fn, raises, match)
        return fn
    return register


def rng(seed=0):
    return np.random.default_rng(seed)


def close(result, expected, tol=1e-4):
    """float32 kernels against a float64 NumPy reference."""
    assert result.dtype == np.float32, result.dtype
    assert result.shape == expected.shape, (result.shape, expected.shape)
    np.testing.assert_allclose(result, expected, rtol=tol, atol=tol)


def tmpdir():
    return Path(tempfile.mkdtemp(prefix="fz-robustness-"))


def small_model(seed=0):
    fz.utils.set_random_seed(seed)
    model = fz.Sequential([L.Dense(4, activation="relu"), L.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.build((None, 5))
    return model


def saved_model(folder):
    path = folder / "model.safetensors"
    small_model().save(path)
    return path


def saved_npz_model(folder):
    """A checkpoint in fromzero's format 2 (.npz: read, no longer written)."""
    model = small_model()
    config = fz.saving.file_config(model)
    config["format_version"] = 2
    path = folder / "model.npz"
    np.savez(path, config=np.array(json.dumps(config)),
             **{f"weight_{i}": w for i, w in enumerate(model.get_weights())})
    return path


def safetensors_parts(path):
    """(tensors, metadata) of a safetensors file."""
    with safetensors.safe_open(path, framework="numpy") as f:
        return {k: f.get_tensor(k).copy() for k in f.keys()}, f.metadata()


def read_header(path):
    return json.loads(safetensors_parts(path)[1]["fromzero"])


def rewrite_metadata(path, **metadata):
    tensors, old = safetensors_parts(path)
    path.write_bytes(safetensors.numpy.save(tensors, metadata={**old, **metadata}))


def rewrite_header(path, header):
    rewrite_metadata(path, fromzero=json.dumps(header))


def npz_entries(path):
    with zipfile.ZipFile(path) as z:
        return {name: z.read(name) for name in z.namelist()}


def write_npz(path, entries):
    with zipfile.ZipFile(path, "w") as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return path


def npy_bytes(array, header_shape=None):
    """An .npy entry for `array`; header_shape, if given, is what the header claims."""
    f = io.BytesIO()
    np.lib.format.write_array(f, array, allow_pickle=True)
    data = f.getvalue()
    if header_shape is None:
        return data
    header = {"descr": np.lib.format.dtype_to_descr(array.dtype), "fortran_order": False,
              "shape": header_shape}
    f = io.BytesIO()
    np.lib.format.write_array_header_1_0(f, header)
    return f.getvalue() + array.tobytes()


# ==================================================================== shapes and dtypes

@case(ValueError, r"matmul: inner dimensions differ: op\(a\) is \(5, 3\) and op\(b\) is \(4, 6\)")
def matmul_inner_dimensions_differ():
    fz.ops.matmul(np.ones((5, 3)), np.ones((4, 6)))


@case(ValueError, r"matmul: b must be 2-D, got shape \(3, 4, 1\)")
def matmul_3d_operand():
    fz.ops.matmul(np.ones((5, 3)), np.ones((3, 4, 1)))


@case()
def matmul_float64_int_bool_float16_operands():
    a, b = rng().standard_normal((7, 5)), rng(1).standard_normal((5, 6))
    for a_, b_ in [(a, b), ((a * 10).astype(np.int64), b), (a > 0, (b * 3).astype(np.int8)),
                   (a.astype(np.float16), b.astype(np.uint8))]:
        close(fz.ops.matmul(a_, b_), a_.astype(np.float64) @ b_.astype(np.float64), 1e-3)


@case()
def matmul_transposed_fortran_negative_stride_views():
    a = rng().standard_normal((70, 40)).astype(np.float32)
    b = rng(1).standard_normal((40, 90)).astype(np.float32)
    for a_, b_, ta, tb in [(a.T, b, True, False), (np.asfortranarray(a), b, False, False),
                           (a[::-1, ::-1], b[:, ::-1], False, False), (a, b.T.copy()[::-1], False, True),
                           (a[::2], b[:, 1::3], False, False), (a.T[:, ::-2], b[::-1], True, False)]:
        before = (a_.copy(), b_.copy())
        expected = (a_.T if ta else a_).astype(np.float64) @ (b_.T if tb else b_)
        close(fz.ops.matmul(a_, b_, transpose_a=ta, transpose_b=tb), expected, 1e-3)
        np.testing.assert_array_equal(a_, before[0])  # inputs untouched
        np.testing.assert_array_equal(b_, before[1])


@case()
def matmul_zero_size_dimensions():
    assert fz.ops.matmul(np.ones((0, 3)), np.ones((3, 4))).shape == (0, 4)
    assert fz.ops.matmul(np.ones((3, 4)), np.ones((4, 0))).shape == (3, 0)
    # K = 0: the empty sum is 0, plus the bias, through the activation
    out = fz.ops.matmul(np.ones((3, 0)), np.ones((0, 4)), bias=[-1, 0, 1, 2], activation=Act.relu)
    np.testing.assert_array_equal(out, np.tile([0, 0, 1, 2], (3, 1)).astype(np.float32))


@case()
def elementwise_ops_on_awkward_layouts_and_empty_arrays():
    x = rng().standard_normal((6, 9))
    for view in (x.T, x[::-1, ::2], np.asfortranarray(x), x.astype(np.float16), x[:0], x[:, :0]):
        ref = view.astype(np.float32).astype(np.float64)
        close(fz.ops.relu(view), np.maximum(ref, 0))
        close(fz.ops.sigmoid(view), 1 / (1 + np.exp(-ref)))
        close(fz.ops.tanh(view), np.tanh(ref))


@case(TypeError, r"matmul: a must hold numbers, got dtype object")
def object_instead_of_array():
    fz.ops.matmul(object(), np.ones((2, 2)))


@case(TypeError, r"matmul: a must be array-like, got list \(.*inhomogeneous")
def ragged_list():
    fz.ops.matmul([[1, 2], [3]], np.ones((2, 2)))


@case(TypeError, r"activation_forward: x must hold numbers, got dtype object")
def object_dtype_array():
    fz.ops.relu(np.array([1, "a", None], dtype=object))


@case(TypeError, r"matmul: a must hold numbers, got dtype complex128")
def complex_array():
    fz.ops.matmul(np.ones((2, 2), complex), np.ones((2, 2)))


@case(TypeError, r"fit: x must hold numbers, got dtype <U3")
def string_array_to_fit():
    small_model().fit(np.full((4, 5), "0.5"), np.zeros(4, int), verbose=0)


@case(TypeError, r"predict: x must hold numbers, got dtype object")
def none_to_predict():
    small_model().predict(None)


@case()
def model_accepts_float64_int_bool_and_views():
    model = small_model()
    x = rng().random((12, 5))
    p = model.predict(x.astype(np.float32))
    for variant in (x, np.asfortranarray(x), x[::-1][::-1], x.tolist()):
        np.testing.assert_array_equal(model.predict(variant), p)
    np.testing.assert_array_equal(model.predict(x[::-1]), p[::-1])
    assert model.predict((x > 0.5)).dtype == np.float32
    assert model.predict((x * 9).astype(np.uint8)).shape == (12, 3)


# ==================================================================== labels

@case(ValueError, r"label 3 is outside \[0, 3\) — the model has 3 outputs")
def label_equal_to_number_of_classes():
    small_model().fit(np.ones((4, 5)), [0, 1, 2, 3], verbose=0)


@case(ValueError, r"label -1 is outside \[0, 3\)")
def negative_label():
    small_model().evaluate(np.ones((4, 5)), [0, 1, -1, 2], verbose=0)


@case(ValueError, r"label 4294967296 is outside \[0, 3\)")
def label_beyond_int32():  # would wrap to 0 when cast to the kernels' int32
    small_model().fit(np.ones((2, 5)), np.array([0, 2**32]), verbose=0)


@case(ValueError, r"labels must be whole numbers")
def non_integral_labels():
    small_model().fit(np.ones((3, 5)), [0.0, 1.5, 2.0], verbose=0)


@case(ValueError, r"labels must be whole numbers")
def nan_labels():
    fz.losses.SparseCategoricalCrossentropy()(np.array([np.nan, 1.0]), np.full((2, 3), 1 / 3))


@case(TypeError, r"sparse_categorical_crossentropy: y_true must be an integer array, got dtype float64")
def float_labels_to_the_kernel():
    fz.ops._core.sparse_categorical_crossentropy(np.full((2, 3), 1 / 3), np.array([0.0, 1.0]))


@case(ValueError, r"count_correct: labels value 7 at flat index 1 is outside \[0, 3\)")
def count_correct_label_out_of_range():
    fz.ops.count_correct(np.ones((2, 3)), np.array([0, 7]))


@case(ValueError, r"gather_rows: index value -1 at flat index 2 is outside \[0, 4\)")
def gather_rows_negative_index():
    fz.ops.gather_rows(np.ones((4, 2)), np.array([0, 1, -1]))


@case(ValueError, r"gather_rows: src \(dtype int64\) holds 4294967296 at flat index 1, outside int32")
def gather_rows_int64_beyond_int32():
    fz.ops.gather_rows(np.array([1, 2**32]), np.array([0, 1]))  # used to wrap to 0 silently


# ==================================================================== NaN and inf

@case()
def nan_and_inf_through_the_kernels_match_numpy():
    x = np.array([[1.0, np.nan, 3.0], [np.inf, 0.0, -1.0], [-np.inf, -np.inf, -np.inf],
                  [2.0, 2.0, 1.0]], np.float32)
    np.testing.assert_array_equal(fz.ops.argmax(x), np.argmax(x, axis=1))  # first NaN wins
    np.testing.assert_array_equal(fz.ops.relu(x), np.maximum(x, 0))  # NaN propagates
    s = fz.ops.softmax(x)
    assert np.isnan(s[:3]).all() and np.allclose(s[3], np.exp(x[3]) / np.exp(x[3]).sum())
    with np.errstate(invalid="ignore"):
        expected = x.astype(np.float64) @ np.eye(3)
    np.testing.assert_array_equal(np.isnan(fz.ops.matmul(x, np.eye(3))), np.isnan(expected))


@case()
def nan_input_stops_training_cleanly():
    model = small_model()
    before = [w.copy() for w in model.get_weights()]
    history = model.fit(np.full((8, 5), np.nan), np.zeros(8, int), verbose=0)
    assert model.stop_training and np.isnan(history.history["loss"][0])
    assert len(before) == len(model.get_weights())


# ==================================================================== empty arrays, 0-size dimensions

@case(ValueError, r"fit: x is empty \(shape \(0, 5\)\)")
def empty_batch_to_fit():
    small_model().fit(np.empty((0, 5)), np.empty(0, int), verbose=0)


@case(ValueError, r"predict: x is empty \(shape \(4, 0\)\)")
def samples_without_features():
    fz.Sequential([L.Dense(2)]).predict(np.empty((4, 0)))


@case(ValueError, r"mean_squared_error: y_pred must be a non-empty \(batch, outputs\) array, got shape \(0, 2\)")
def empty_batch_to_a_loss():
    fz.losses.MeanSquaredError()(np.empty((0, 2)), np.empty((0, 2)))


@case(ValueError, r"argmax: x has no columns")
def argmax_without_columns():
    fz.ops.argmax(np.empty((3, 0)))


@case()
def reductions_on_empty_arrays():
    np.testing.assert_array_equal(fz.ops.bias_grad(np.empty((0, 4))), np.zeros(4, np.float32))
    assert fz.ops.argmax(np.empty((0, 3))).shape == (0,)
    assert fz.ops.softmax(np.empty((0, 3))).shape == (0, 3)
    assert fz.ops.gather_rows(np.ones((3, 2)), np.array([], np.int64)).shape == (0, 2)
    assert fz.ops.random_permutation(0, 1).shape == (0,)


# ==================================================================== huge claimed sizes

@case(MemoryError, r"matmul: cannot convert a of shape \(1048576, 1048576\) .* Unable to allocate 4.00 TiB")
def broadcast_view_of_four_terabytes_to_matmul():
    # A float32 view of 4 TB that owns 4 bytes: the contiguous copy cannot be
    # made. (Was a segfault: the failed conversion came back as a null array.)
    huge = np.broadcast_to(np.float32(1), (2**20, 2**20))
    fz.ops.matmul(huge, huge)


@case(MemoryError, r"activation_forward: cannot convert x of shape \(1048576, 1048576\) and dtype float64")
def broadcast_float64_view_to_an_activation():
    fz.ops.relu(np.broadcast_to(0.5, (2**20, 2**20)))


@case(MemoryError, r"gather_rows: cannot convert src")
def broadcast_view_to_gather_rows():
    fz.ops.gather_rows(np.broadcast_to(np.int64(1), (2**20, 2**20)), [0])


@case(MemoryError, r"Unable to allocate")
def broadcast_view_to_a_model():
    small_model().predict(np.broadcast_to(np.float64(1), (2**40, 5)))


@case(MemoryError, r"Unable to allocate")
def dense_layer_of_a_trillion_units():
    L.Dense(2**40).build((4,))


@case(ValueError, r"random_permutation: permutation of shape \(4611686018427387904,\) cannot be allocated: "
                  r"array is too big")
def permutation_of_absurd_length():
    fz.ops.random_permutation(2**62, 0)


# ==================================================================== out= buffers

@case(TypeError, r"matmul: out must be a float32 array, got float64")
def out_of_the_wrong_dtype():
    fz.ops.matmul(np.ones((2, 3)), np.ones((3, 4)), out=np.empty((2, 4)))


@case(ValueError, r"matmul: out must have shape \(2, 4\), got \(4, 2\)")
def out_of_the_wrong_shape():
    fz.ops.matmul(np.ones((2, 3)), np.ones((3, 4)), out=np.empty((4, 2), np.float32))


@case(ValueError, r"softmax_crossentropy_backward: out is read-only")
def read_only_out():
    out = np.empty((2, 3), np.float32)
    out.flags.writeable = False
    fz.ops.softmax_crossentropy_backward(np.full((2, 3), 1 / 3), np.array([0, 1]), True, out=out)


@case(ValueError, r"matmul: out must not overlap a \(they are the same array\)")
def out_aliasing_an_input_of_matmul():
    a = np.ones((4, 4), np.float32)
    fz.ops.matmul(a, np.ones((4, 4), np.float32), out=a)


@case(ValueError, r"activation_forward: out overlaps x without being the same array")
def out_a_shifted_view_of_the_input():
    buf = np.arange(10, dtype=np.float32)
    fz.ops.activation_forward(Act.relu, buf[1:], out=buf[:-1])


@case()
def out_exactly_the_input_is_in_place():
    x = rng().standard_normal((5, 7)).astype(np.float32)
    expected_relu, expected_softmax = np.maximum(x, 0), np.exp(x) / np.exp(x).sum(1, keepdims=True)
    y = x.copy()
    assert fz.ops.activation_forward(Act.relu, y, out=y) is y
    np.testing.assert_array_equal(y, expected_relu)
    y = x.copy()
    fz.ops.activation_forward(Act.softmax, y, out=y)
    np.testing.assert_allclose(y, expected_softmax, rtol=1e-6)


@case(ValueError, r"mean_squared_error: grad must not overlap y_pred")
def loss_gradient_aliasing_the_prediction():
    p = np.ones((3, 2), np.float32)
    fz.ops._core.mean_squared_error(p, np.zeros((3, 2), np.float32), grad=p)


@case(ValueError, r"dropout_forward: mask must not overlap x")
def dropout_mask_aliasing_the_input():
    x = np.ones((4, 4), np.float32)
    fz.ops.dropout_forward(x, 0.5, 1, mask=x)


@case(ValueError, r"dense_backward: dx_out must not overlap dz_out")
def dense_backward_outputs_aliasing_each_other():
    x, w = np.ones((3, 4), np.float32), np.ones((4, 4), np.float32)
    y = fz.ops.dense_forward(x, w, None, Act.relu)
    dz = np.empty((3, 4), np.float32)
    fz.ops.dense_backward(x, w, None, y, np.ones((3, 4)), Act.relu, 0.0, dz_out=dz, dx_out=dz)


@case(TypeError, r"gather_rows: out must be an int32 array, got float32")
def gather_rows_out_of_the_wrong_dtype():
    fz.ops.gather_rows(np.array([1, 2, 3]), np.array([0, 2]), np.empty(2, np.float32))


@case(ValueError, r"sgd_update: params\[0\] is read-only")
def optimizer_on_a_read_only_parameter():
    p = np.ones(3, np.float32)
    p.flags.writeable = False
    fz.optimizers.SGD().apply_gradients([(np.ones(3), p)])


@case(TypeError, r"adam_update: params\[0\] must be a float32 array, got float64")
def optimizer_on_a_float64_parameter():
    fz.optimizers.Adam().apply_gradients([(np.ones(3), np.ones(3))])


@case(ValueError, r"matmul: activation must be a fromzero.ops.Activation, got the value 99")
def activation_enum_out_of_range():
    # Was an abort: the kernel's fallback threw inside an OpenMP region.
    a = np.ones((300, 300), np.float32)
    fz.ops.matmul(a, a, activation=Act(99))


@case(ValueError, r"activation must be one of \[.*'relu'.*\], got")
def activation_layer_with_an_enum_out_of_range():
    L.Activation(Act(99))  # was a StopIteration from the name lookup


# ==================================================================== checkpoints

@case(ValueError, r"cannot load model from .*model.safetensors: Error while deserializing header")
def truncated_checkpoint():
    path = saved_model(tmpdir())
    data = path.read_bytes()
    path.write_bytes(data[:len(data) * 2 // 3])
    fz.models.load_model(path)


@case(ValueError, r"no 'config' entry: not a fromzero model file")
def foreign_npz():
    path = tmpdir() / "other.npz"
    np.savez(path, a=np.arange(3), b=np.ones((2, 2)))
    fz.models.load_model(path)


@case(ValueError, r"cannot load model from .*entry 'weight_0' has dtype object.*unpickling")
def checkpoint_with_a_pickled_object_array():
    folder = tmpdir()
    marker = folder / "pwned"

    class Payload:  # unpickling it would create `marker`
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = saved_npz_model(folder)
    entries = npz_entries(path)
    entries["weight_0.npy"] = npy_bytes(np.array([Payload()], dtype=object))
    write_npz(path, entries)
    try:
        fz.models.load_model(path)
    finally:
        assert not marker.exists(), "load_model ran code from the file"


@case(ValueError, r"cannot load model from .*entry 'config' has dtype object")
def checkpoint_whose_config_is_a_pickle():
    folder = tmpdir()
    path = saved_npz_model(folder)
    entries = npz_entries(path)
    entries["config.npy"] = npy_bytes(np.array({"format": "fromzero.Sequential"}, dtype=object))
    write_npz(path, entries)
    fz.models.load_model(path)


@case(ValueError, r"format version 99 is not supported \(this fromzero reads 1 to 3\)")
def checkpoint_of_another_format_version():
    path = saved_npz_model(tmpdir())
    entries = npz_entries(path)
    with np.load(path) as archive:
        config = json.loads(str(archive["config"]))
    config["format_version"] = 99
    entries["config.npy"] = npy_bytes(np.array(json.dumps(config)))
    write_npz(path, entries)
    fz.models.load_model(path)


@case(ValueError, r"weights do not fit the architecture: weight 2 must have shape \(4, 3\), got \(4, 2\)")
def checkpoint_with_a_wrong_weight_shape():
    path = saved_npz_model(tmpdir())
    entries = npz_entries(path)
    entries["weight_2.npy"] = npy_bytes(np.ones((4, 2), np.float32))
    write_npz(path, entries)
    fz.models.load_model(path)


@case(ValueError, r"weight 0 must have shape \(5, 4\), got \(1000000000000,\)")
def checkpoint_weight_header_claiming_four_terabytes():
    # The header is checked before anything of the size it claims is allocated.
    path = saved_npz_model(tmpdir())
    entries = npz_entries(path)
    entries["weight_0.npy"] = npy_bytes(np.ones(4, np.float32), header_shape=(10**12,))
    write_npz(path, entries)
    fz.models.load_model(path)


@case(ValueError, r"entry 'weight_0' has shape \(5, 4\) and dtype float32: 80 data bytes, but the archive stores 8")
def checkpoint_weight_shorter_than_its_header():
    path = saved_npz_model(tmpdir())
    entries = npz_entries(path)
    entries["weight_0.npy"] = npy_bytes(np.ones(2, np.float32), header_shape=(5, 4))
    write_npz(path, entries)
    fz.models.load_model(path)


@case(ValueError, r"cannot load model from .*model.npz: .*header")
def npy_file_claiming_a_huge_array():
    path = tmpdir() / "model.npz"
    path.write_bytes(npy_bytes(np.ones(4, np.float32), header_shape=(10**12,)))
    fz.models.load_model(path)  # np.load would read it whole, allocating 4 TB first


@case(ValueError, r"cannot load model from .*model.npz: .*header")
def pickle_file_as_checkpoint():
    path = tmpdir() / "model.npz"
    path.write_bytes(pickle.dumps({"config": "x"}))
    fz.models.load_model(path)


@case(ValueError, r"unknown layer 'Transformer'")
def checkpoint_with_an_unknown_layer():
    path = saved_model(tmpdir())
    config = read_header(path)
    config["config"]["layers"][0]["class"] = "Transformer"
    rewrite_header(path, config)
    fz.models.load_model(path)


@case(ValueError, r"cannot load model from .*units")
def checkpoint_with_a_malformed_layer_config():
    path = saved_model(tmpdir())
    config = read_header(path)
    config["config"]["layers"][0]["config"]["units"] = "many"
    config["config"]["layers"][1]["config"]["bogus"] = 1
    rewrite_header(path, config)
    fz.models.load_model(path)


def graph_checkpoint(folder):
    """A saved functional model (x → Dense → Add with x → Dense) and its config."""
    fz.utils.set_random_seed(0)
    x = fz.Input((4,))
    h = L.Dense(4, activation="relu")(x)
    model = fz.Model(x, L.Dense(3)(L.Add()([x, h])))
    path = folder / "graph.safetensors"
    model.save(path)
    return path, read_header(path)


def rewrite_config(path, config):
    rewrite_header(path, config)


@case(ValueError, r"node 1 uses the output of node 3, which does not come before it: the graph "
                  r"has a cycle or is out of order")
def graph_checkpoint_with_a_cycle():
    path, config = graph_checkpoint(tmpdir())
    config["config"]["nodes"][1]["args"] = [{"tensor": [3, 0]}]  # the Dense reads the last node
    rewrite_config(path, config)
    fz.models.load_model(path)


@case(ValueError, r"a node names layer 99: there are 4 layers")
def graph_checkpoint_naming_a_missing_layer():
    path, config = graph_checkpoint(tmpdir())
    config["config"]["nodes"][2]["layer"] = 99
    rewrite_config(path, config)
    fz.models.load_model(path)


@case(ValueError, r"cannot load model from .*Add needs inputs of the same shape, got \(None, 4\), "
                  r"\(None, 3\)")
def graph_checkpoint_with_incompatible_shapes():
    path, config = graph_checkpoint(tmpdir())
    config["config"]["layers"][1]["config"]["units"] = 3  # Add now joins (None, 4) and (None, 3)
    rewrite_config(path, config)
    fz.models.load_model(path)


@case(ValueError, r"cannot load model from .*deeply nested|cannot load model from .*recursion")
def graph_checkpoint_nested_a_thousand_deep():
    path, config = graph_checkpoint(tmpdir())
    depth = 5000  # written as text: json.dumps itself could not nest this deep
    nested = ('{"name": "m", "layers": [{"class": "Model", "config": ' * depth +
              json.dumps(config["config"]) + '}], "nodes": [], "inputs": [], "outputs": []}' * depth)
    text = json.dumps({**config, "config": None}).replace('"config": null', '"config": ' + nested)
    rewrite_metadata(path, fromzero=text)
    fz.models.load_model(path)


@case(ValueError, r"cannot load model from .*: ")
def directory_as_checkpoint():
    fz.models.load_model(tmpdir())


@case(ValueError, r"cannot load model from .*: .*header too large")
def safetensors_header_claiming_a_huge_size():
    path = tmpdir() / "model.safetensors"
    path.write_bytes(struct.pack("<Q", 2**62) + b'{"__metadata__": {}}')
    fz.models.load_model(path)


@case(ValueError, r"cannot load model from .*model.safetensors: ")
def safetensors_tensor_beyond_the_end_of_the_file():
    header = json.dumps({"w": {"dtype": "F32", "shape": [10**6, 10**6],
                               "data_offsets": [0, 4 * 10**12]}}).encode()
    path = tmpdir() / "model.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 16)
    fz.models.load_model(path)


@case(ValueError, r"not a fromzero file: a safetensors file without fromzero's metadata")
def foreign_safetensors_file():
    path = tmpdir() / "bert.safetensors"
    path.write_bytes(safetensors.numpy.save({"encoder.weight": np.ones((4, 4), np.float32)}))
    fz.models.load_model(path)


@case(ValueError, r"the metadata 'fromzero' is not valid JSON")
def checkpoint_with_metadata_that_is_not_json():
    path = saved_model(tmpdir())
    rewrite_metadata(path, fromzero="{not json")
    fz.models.load_model(path)


@case(ValueError, r"weights do not fit the architecture: weight 0 must have shape \(5, 4\), got \(5, 3\)")
def safetensors_checkpoint_with_a_wrong_weight_shape():
    path = saved_model(tmpdir())
    tensors, metadata = safetensors_parts(path)
    tensors[read_header(path)["weights"][0]] = np.ones((5, 3), np.float32)
    path.write_bytes(safetensors.numpy.save(tensors, metadata))
    fz.models.load_model(path)


@case(ValueError, r"tensor 'dense\w*/kernel' has dtype BOOL, not a number type")
def checkpoint_with_a_boolean_weight():
    path = saved_model(tmpdir())
    tensors, metadata = safetensors_parts(path)
    tensors[read_header(path)["weights"][0]] = np.ones((5, 4), bool)
    path.write_bytes(safetensors.numpy.save(tensors, metadata))
    fz.models.load_model(path)


@case(ValueError, r"the file has no tensor 'optimizer/dense\w*/kernel/momentum'")
def checkpoint_missing_an_optimizer_slot():
    path = saved_model(tmpdir())
    tensors, metadata = safetensors_parts(path)
    del tensors[f"optimizer/{read_header(path)['weights'][0]}/momentum"]
    path.write_bytes(safetensors.numpy.save(tensors, metadata))
    fz.models.load_model(path)


@case(ValueError, r"Adam.set_state: iterations must be an integer >= 0, got -3")
def checkpoint_with_negative_iterations():
    path = saved_model(tmpdir())
    header = read_header(path)
    header["optimizer_state"]["iterations"] = -3
    rewrite_header(path, header)
    fz.models.load_model(path)


@case(ValueError, r"rng: expected a PCG64 generator state, got 'MT19937'")
def checkpoint_with_another_generator():
    path = saved_model(tmpdir())
    header = read_header(path)
    header["rng"]["bit_generator"] = "MT19937"
    rewrite_header(path, header)
    fz.models.load_model(path)


@case(ValueError, r"cannot load model from .*model.safetensors: ")
def checkpoint_with_a_damaged_generator_state():
    path = saved_model(tmpdir())
    header = read_header(path)
    header["rng"]["state"] = {"state": "many", "inc": [1]}
    rewrite_header(path, header)
    fz.models.load_model(path)


@case(ValueError, r"extras must be a dict in the model's config, got \[1, 2\]")
def checkpoint_whose_extras_are_not_a_dict():
    path = saved_model(tmpdir())
    rewrite_metadata(path, extras="[1, 2]")
    fz.saving.load_extras(path)


@case(ValueError, r"cannot save extras: .* is not a number, string, list or dict")
def extras_that_are_not_json():
    small_model().save(tmpdir() / "model.safetensors", extras={"tokenizer": object()})


def _nothing_left_but(folder, names):
    assert sorted(os.listdir(folder)) == sorted(names), os.listdir(folder)


@case(NotADirectoryError, r"cannot save to .*not-a-folder/model.safetensors: Not a directory")
def save_under_a_file():
    folder = tmpdir()
    (folder / "not-a-folder").write_bytes(b"")
    try:
        small_model().save(folder / "not-a-folder" / "model.safetensors")
    finally:
        _nothing_left_but(folder, ["not-a-folder"])


@case(IsADirectoryError, r"cannot save to .*/taken: Is a directory")
def save_over_a_directory():
    folder = tmpdir()
    (folder / "taken").mkdir()
    try:
        small_model().save(folder / "taken")
    finally:
        _nothing_left_but(folder, ["taken"])  # no temporary file left behind


@case(FileNotFoundError, r"cannot save to .*/missing/w.safetensors: No such file or directory")
def save_weights_into_a_missing_folder():
    small_model().save_weights(tmpdir() / "missing" / "w.safetensors")


@case()
def training_interrupted_by_ctrl_c():
    """KeyboardInterrupt in the middle of fit: the model is left consistent —
    it trains again (the training lock was released), saves and loads."""
    model = small_model()
    x = rng().standard_normal((64, 5)).astype(np.float32)
    y = rng(1).integers(0, 3, 64)

    class Interrupt(fz.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 2:
                raise KeyboardInterrupt

    try:
        model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[Interrupt()])
        raise AssertionError("the interrupt did not stop fit")
    except KeyboardInterrupt:
        pass
    assert model.optimizer.iterations == 3
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert model.optimizer.iterations == 11
    path = tmpdir() / "model.safetensors"
    model.save(path)
    np.testing.assert_array_equal(fz.load_model(path).predict(x, verbose=0), model.predict(x, verbose=0))


@case(ValueError, r"matmul: out must be C-contiguous, got an array of shape \(2, 4\)")
def non_contiguous_out():
    fz.ops.matmul(np.ones((2, 3)), np.ones((3, 4)), out=np.empty((2, 8), np.float32)[:, ::2])


# ==================================================================== names and hyperparameters

@case(ValueError, r"unknown optimizer 'adamm'; did you mean 'adam'")
def unknown_optimizer_name():
    fz.Sequential([L.Dense(2)]).compile(optimizer="adamm", loss="mse")


@case(ValueError, r"unknown loss 'binary_crossentrophy'; did you mean 'binary_crossentropy'")
def unknown_loss_name():
    fz.Sequential([L.Dense(2)]).compile(optimizer="adam", loss="binary_crossentrophy")


@case(ValueError, r"unknown activation 'rellu'; did you mean 'relu'")
def unknown_activation_name():
    L.Dense(3, activation="rellu")


@case()
def bad_units_are_rejected():
    for units in (0, -1, 2.5, "3", True, None, float("nan")):
        try:
            L.Dense(units)
        except ValueError as e:
            assert re.search(r"Dense: units must be a positive integer, got", str(e)), e
        else:
            raise AssertionError(f"Dense({units!r}) was accepted")


@case()
def bad_rates_are_rejected():
    for rate in (1.0, 1.5, -0.1, float("nan"), float("inf"), "0.5", None):
        try:
            L.Dropout(rate)
        except ValueError as e:
            assert re.search(r"Dropout: rate must be a number in \[0, 1\), got", str(e)), e
        else:
            raise AssertionError(f"Dropout({rate!r}) was accepted")


@case()
def bad_learning_rates_are_rejected():
    for lr in (-0.1, -1e-30, float("nan"), float("inf"), "0.01", None, [0.1]):
        for cls in (fz.optimizers.SGD, fz.optimizers.Adam, fz.optimizers.RMSprop):
            try:
                cls(learning_rate=lr)
            except ValueError as e:
                assert re.search(rf"{cls.__name__}: learning_rate must be a number in \[0, inf\)", str(e)), e
            else:
                raise AssertionError(f"{cls.__name__}(learning_rate={lr!r}) was accepted")


@case(ValueError, r"Adam: beta_1 must be a number in \[0, 1\), got 1")
def adam_beta_of_one():
    fz.optimizers.Adam(beta_1=1)


@case()
def bad_thread_counts_are_rejected():
    before = fz.get_num_threads()
    for n, error, message in [(0, ValueError, r"n must be >= 1, got 0"),
                              (-3, ValueError, r"n must be >= 1, got -3"),
                              (10**6, ValueError, r"n must be <= 1024, got 1000000"),
                              (10**30, ValueError, r"n must be <= 1024, got 10{30}"),
                              (-10**30, ValueError, r"n must be >= 1"),
                              (2.0, TypeError, r"n must be an integer, got 2.0"),
                              ("2", TypeError, r"n must be an integer, got '2'"),
                              (True, TypeError, r"n must be an integer, got True"),
                              (None, TypeError, r"n must be an integer, got None")]:
        try:
            fz.set_num_threads(n)
        except error as e:
            assert re.search(rf"set_num_threads: {message}", str(e)), e
        else:
            raise AssertionError(f"set_num_threads({n!r}) was accepted")
    assert fz.get_num_threads() == before
    fz.set_num_threads(np.int64(1))  # NumPy integers are integers
    assert fz.get_num_threads() == 1
    fz.set_num_threads(before)


@case()
def bad_batch_sizes_and_epochs_are_rejected():
    model, x, y = small_model(), np.ones((4, 5)), np.zeros(4, int)
    for kwargs, message in [({"batch_size": 0}, r"fit: batch_size must be a positive integer, got 0"),
                            ({"batch_size": 2.5}, r"batch_size must be a positive integer, got 2.5"),
                            ({"batch_size": "8"}, r"batch_size must be a positive integer, got '8'"),
                            ({"epochs": -1}, r"fit: epochs must be a non-negative integer, got -1"),
                            ({"validation_split": float("nan")}, r"validation_split must be a number")]:
        try:
            model.fit(x, y, verbose=0, **kwargs)
        except ValueError as e:
            assert re.search(message, str(e)), e
        else:
            raise AssertionError(f"fit(**{kwargs}) was accepted")


@case()
def numpy_scalars_are_numbers():
    # Unusual, not wrong: np.float32 hyperparameters (was rejected by BatchNormalization).
    assert L.BatchNormalization(momentum=np.float32(0.9), epsilon=np.float64(1e-3)).momentum == \
        pytest.approx(0.9)
    assert L.Dropout(np.float32(0.25)).rate == 0.25
    assert L.Dense(np.int32(3)).units == 3
    assert fz.optimizers.Adam(learning_rate=np.float32(0.01)).learning_rate == pytest.approx(0.01)


@case(ValueError, r"Activation: alpha must be a number in \[0, inf\), got nan")
def activation_layer_with_a_nan_slope():
    L.Activation("leaky_relu", alpha=float("nan"))


@case(ValueError, r"seed must be a non-negative integer, got True")
def boolean_seed():
    fz.utils.set_random_seed(True)


# ==================================================================== the layer protocol

@case(RuntimeError, r"dense.*: backward\(\) needs a forward\(x, training=True\) first")
def backward_before_forward():
    layer = L.Dense(3)
    layer.build((4,))
    layer.backward(np.ones((2, 3)))


@case(RuntimeError, r"dropout.*: backward\(\) needs a forward\(x, training=True\) first")
def dropout_backward_before_forward():
    L.Dropout(0.5).backward(np.ones((2, 3)))


@case(ValueError, r"dense.*: expected 5 input features, got input of shape \(2, 6\)")
def layer_called_with_another_feature_count_after_build():
    layer = L.Dense(3)
    layer.forward(np.ones((2, 5)))
    layer.forward(np.ones((2, 6)))


@case(ValueError, r"expected inputs of shape \(batch, 5\), got \(3, 7\)")
def model_called_with_another_feature_count_after_build():
    small_model().predict(np.ones((3, 7)))


@case(ValueError, r"dense.*: dy must have shape \(2, 3\), got \(3, 3\)")
def backward_with_a_gradient_of_the_wrong_shape():
    layer = L.Dense(3)
    layer.forward(np.ones((2, 4)), training=True)
    layer.backward(np.ones((3, 3)))


@case(ValueError, r"dense.*: weight 0 must have shape \(5, 4\), got \(4, 5\)")
def set_weights_of_the_wrong_shape():
    model = small_model()
    model.set_weights([w.T for w in model.get_weights()])


@case(RuntimeError, r"fit: the model must be compiled first")
def fit_before_compile():
    fz.Sequential([L.Dense(2)]).fit(np.ones((3, 2)), np.ones((3, 2)), verbose=0)


# ==================================================================== transformer layers

def _token_model():
    ids = fz.Input(shape=(4,), dtype="int32")
    h = L.PositionEmbedding(4)(L.Embedding(7, 8)(ids))
    model = fz.Model(ids, L.Dense(7)(L.MultiHeadAttention(2, 4)(h, h, use_causal_mask=True)))
    model.compile(optimizer="adam", loss=fz.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


@case(ValueError, r"embedding.*: token ids value 7 at flat index \d+ is outside \[0, 7\) \(input_dim=7\)")
def token_id_past_the_vocabulary_in_fit():
    x = np.zeros((2, 4), np.int32)
    x[1, 1] = 7
    _token_model().fit(x, np.zeros((2, 4), np.int32), verbose=0)


@case(ValueError, r"embedding.*: token ids value -3 at flat index 0")
def negative_token_id_in_predict():
    _token_model().predict(np.full((1, 4), -3), verbose=0)


@case(ValueError, r"embedding.*: token ids value 4294967296 at flat index 0 is outside \[0, 7\)")
def token_id_beyond_int32():
    L.Embedding(7, 2)(np.array([2**32], np.int64))


@case(ValueError, r"x holds 4294967296, outside the range of the model's int32 input")
def token_id_beyond_int32_to_a_model():  # int32(2**32) would be token 0, silently
    _token_model().predict(np.full((1, 4), 2**32, np.int64), verbose=0)


@case(ValueError, r"inputs holds 9223372036854775808, outside the range of the model's int32 input")
def uint64_token_id_to_a_called_model():
    _token_model()(np.full((1, 4), 2**63, np.uint64))


def _char_gpt():
    tokenizer = fz.text.CharTokenizer.fit("abc ")
    return fz.models.gpt(tokenizer.vocab_size, 8, 1, 2, 8), tokenizer


@case(ValueError, r"generate: max_new_tokens must be an integer in \[0, 16777216\], got 10{18}")
def generate_a_quintillion_tokens():  # ran for ever, its token list growing
    model, tokenizer = _char_gpt()
    fz.text.generate(model, tokenizer, "ab", 10**18)


@case(TypeError, r"generate: tokenizer must be a tokenizer of fz.text .*, got NoneType")
def generate_without_a_tokenizer():
    fz.text.generate(_char_gpt()[0], None, "ab", 3)


@case(ValueError, r"generate: temperature must be a number in \[0, inf\], got nan")
def generate_at_a_nan_temperature():
    fz.text.generate(*_char_gpt(), "ab", 3, temperature=float("nan"))


@case()
def generate_with_top_k_beyond_the_vocabulary():  # the whole vocabulary, as top_k=None
    model, tokenizer = _char_gpt()
    assert (fz.text.generate(model, tokenizer, "ab", 3, top_k=1000, seed=1)
            == fz.text.generate(model, tokenizer, "ab", 3, seed=1))


@case(ValueError, r"expected inputs of shape \(batch, 4\), got \(1, 9\)")
def sequence_longer_than_the_positions():
    _token_model().predict(np.zeros((1, 9), np.int32), verbose=0)


@case(ValueError, r"multi_head_attention.*: attention_mask must be \(batch, 3, 3\)")
def attention_mask_of_two_axes():
    x = np.ones((1, 3, 4), np.float32)
    L.MultiHeadAttention(2, 2)(x, x, attention_mask=np.ones((3, 3), bool))


@case(ValueError, r"attention_forward: causal_offset must be in \[-q_len, kv_len\]")
def attention_offset_past_int64():
    q = np.ones((1, 2, 1, 3), np.float32)
    fz.ops.attention_forward(q, q, q, causal=True, causal_offset=2**63 - 1)


@case(ValueError, r"layer_norm_forward: x must have at least one feature")
def layer_norm_of_no_features():
    fz.ops.layer_norm_forward(np.ones((3, 0), np.float32))


@case(ValueError, r"multi_head_attention.*: cache_update_index must be an integer in \[0, 2\] for 1 new tokens")
def cache_index_past_the_cache():
    mha = L.MultiHeadAttention(1, 2)
    x = np.ones((1, 1, 2), np.float32)
    mha(x, x, use_causal_mask=True, cache=mha.init_cache(1, 3), cache_update_index=3)


@case()
def attention_with_every_key_masked_is_zero_not_nan():
    x = np.ones((2, 3, 4), np.float32)
    y = L.MultiHeadAttention(2, 2, use_bias=False)(x, x, attention_mask=np.zeros((2, 3, 3), bool))
    assert np.array_equal(y, np.zeros_like(y))


# ==================================================================== files

@case(ValueError, r"header shape \(4294967295, 28, 28\) needs \d+ data bytes, more than a \d+-byte gzip")
def idx_header_claiming_three_terabytes():
    path = tmpdir() / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(struct.pack(">IIII", 0x803, 2**32 - 1, 28, 28) + bytes(100)))
    fz.datasets._idx.read_idx(path, (28, 28))


@case(ValueError, r"data truncated: header shape \(4294967295,\) needs 4294967295 data bytes, found 3")
def raw_idx_header_claiming_four_gigabytes():
    path = tmpdir() / "labels-idx1-ubyte"
    path.write_bytes(struct.pack(">II", 0x801, 2**32 - 1) + bytes(3))
    fz.datasets._idx.read_idx(path, ())


# ==================================================================== every kernel, from its declaration
#
# tests/test_aliasing.py builds valid arguments for every kernel from its
# declaration in csrc/bindings.cpp and attacks each array it writes (aliasing
# with every other argument; read-only, non-contiguous, misaligned, mistyped
# out=) and each free dim (0 and 2**48). Here the same attacks run in the
# child, one case per kernel example and attack, so a crash is attributed.

def _declared_case(attack, name, index):
    def run():
        failures = ATTACKS[attack](Example(name, index))
        assert not failures, "\n".join(failures[:20])
    run.__name__ = f"declared_{attack}_{name}_{index}"
    case()(run)


for _name, _index in declared_examples():
    for _attack in ATTACKS:
        _declared_case(_attack, _name, _index)


@case(ValueError, r"avg_pool2d_backward: input_shape of shape \(1099511627776, 1099511627776, 1099511627776, 1\) "
                  r"has more elements than an array can hold")
def input_shape_overflowing_int64():  # 2**120 values: the size itself overflows int64
    fz.ops.avg_pool2d_backward(np.ones((1, 1, 1, 1)), (2**40, 2**40, 2**40, 1), 1)


@case()
def input_shapes_beyond_any_memory():
    for fn, args in [(fz.ops.max_pool2d_backward, (np.ones((1, 1, 1, 1)), np.zeros((1, 1, 1, 1), np.int32))),
                     (fz.ops.avg_pool2d_backward, (np.ones((1, 1, 1, 1)),)),
                     (fz.ops.global_avg_pool2d_backward, (np.ones((1, 1)),))]:
        for shape in [(1, 2**41, 1, 1), (2**62, 1, 1, 1), (1, 1, 1, -1), (1, 1, 1)]:
            try:
                fn(*args, shape, *(() if fn is fz.ops.global_avg_pool2d_backward else (1,)))
            except ValueError as e:
                assert "input_shape" in str(e), e
            else:
                raise AssertionError(f"{fn.__name__} accepted input_shape {shape}")


@case(ValueError, r"max_pool2d_forward: a pool_size window over channels of shape \(1099511627776, "
                  r"1099511627776, 3\) has more elements than an array can hold")
def pool_window_of_two_to_the_eighty_values():
    fz.ops.max_pool2d_forward(np.ones((1, 4, 4, 3)), (2**40, 2**40), 1, "same")


@case(ValueError, r"avg_pool2d_forward: pool_size and strides must be <= 2\*\*40")
def strides_beyond_two_to_the_forty():
    fz.ops.avg_pool2d_forward(np.ones((1, 4, 4, 3)), 2, (2**62, 1))


@case()
def misaligned_inputs_are_copied_not_misread():
    raw = np.zeros(4 * 12 + 1, np.uint8)[1:]
    x = raw.view(np.float32).reshape(3, 4)
    x[...] = np.arange(12, dtype=np.float32).reshape(3, 4) - 5
    assert not x.flags.aligned
    np.testing.assert_array_equal(fz.ops.relu(x), np.maximum(x, 0))
    close(fz.ops.matmul(x, x.T), x.astype(np.float64) @ x.T)


@case(ValueError, r"matmul: out is not aligned to its dtype")
def misaligned_out():
    out = np.zeros(4 * 4 + 2, np.uint8)[2:].view(np.float32).reshape(2, 2)
    fz.ops.matmul(np.ones((2, 3)), np.ones((3, 2)), out=out)


@case()
def read_only_inputs_are_fine():
    x = np.arange(6, dtype=np.float32).reshape(2, 3) - 2
    x.flags.writeable = False
    np.testing.assert_array_equal(fz.ops.relu(x), np.maximum(x, 0))
    assert fz.ops.dense_forward(x, np.ones((3, 2), np.float32), None, Act.identity).shape == (2, 2)


@case(TypeError, r"dense_forward: got an unexpected keyword argument 'outt'")
def misspelled_keyword():
    fz.ops.dense_forward(np.ones((2, 3)), np.ones((3, 2)), None, Act.relu, outt=np.empty((2, 2), np.float32))


@case(TypeError, r"conv2d_backward: missing argument 'x'")
def missing_argument():
    fz.ops._core.conv2d_backward(np.ones((1, 1, 1, 1)), np.ones((1, 1, 1, 1)))


@case(TypeError, r"max_pool2d_forward: pool_size has the wrong type: got \(2, 2, 2\)")
def pool_size_of_three_numbers():
    fz.ops._core.max_pool2d_forward(np.ones((1, 4, 4, 1)), (2, 2, 2), (1, 1))


@case(ValueError, r"conv2d_backward: dkernel_out must not overlap kernel")
def conv_gradient_into_its_own_kernel():
    x, kernel = np.ones((1, 4, 4, 2), np.float32), np.ones((2, 2, 2, 3), np.float32)
    y = fz.ops.conv2d_forward(x, kernel)
    fz.ops.conv2d_backward(np.ones_like(y), kernel, x, dkernel_out=kernel)


@case(ValueError, r"adam_update: v\[1\] must not overlap v\[0\]")
def optimizer_state_shared_by_two_parameters():
    p, g, shared = np.ones(3, np.float32), np.ones(3, np.float32), np.zeros(3, np.float32)
    fz.ops._core.adam_update([p, p.copy()], [g, g], [np.zeros(3, np.float32), np.zeros(3, np.float32)],
                             [shared, shared], 0.1, 0.9, 0.999, 1e-7, 1, 0.0)


@case(ValueError, r"Adam: beta_2 must be a number in \[0, 1\), got 1")
def adam_beta_2_of_one():
    fz.optimizers.Adam(beta_2=1.0)


@case(ValueError, r"adam_update: beta_1 must be in \[0, 1\), got 1")
def adam_kernel_beta_of_one():  # was accepted by the kernel: 1 − β1ᵗ = 0, every weight NaN
    p = np.ones(3, np.float32)
    fz.ops._core.adam_update([p], [p.copy()], [np.zeros(3, np.float32)], [np.zeros(3, np.float32)],
                             0.1, 1.0, 0.999, 1e-7, 1, 0.0)


# ==================================================================== the runner

def _child(names):
    """Run the named cases in order, reporting each on stdout (see the top)."""
    for name in names:
        print(f"{MARK}START {name}", flush=True)
        fn = CASES[name][0]
        try:
            fn()
            report = {"name": name, "raised": None}
        except BaseException as e:  # noqa: B902 — every outcome is reported
            report = {"name": name, "raised": [c.__name__ for c in type(e).__mro__],
                      "message": str(e), "traceback": traceback.format_exc()[-3000:]}
        print(f"{MARK}DONE {json.dumps(report)}", flush=True)


def _run_battery(names, timeout=CASE_TIMEOUT):
    """{name: report}; a report has "crash" (the exit status) or "hang" when the
    child died during, or stalled on, that case."""
    results, pending = {}, list(names)
    env = dict(os.environ, PYTHONFAULTHANDLER="1")
    while pending:
        proc = subprocess.Popen([sys.executable, __file__, "--child", *pending], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env)
        lines, errors = queue.Queue(), []
        threading.Thread(target=lambda: ([lines.put(l) for l in proc.stdout], lines.put(None)),
                         daemon=True).start()
        threading.Thread(target=lambda: errors.extend(proc.stderr), daemon=True).start()
        current = None
        while True:
            try:
                line = lines.get(timeout=timeout)
            except queue.Empty:
                proc.kill()
                results[current or pending[0]] = {"hang": timeout}
                break
            if line is None:
                break
            if line.startswith(MARK + "START "):
                current = line[len(MARK) + 6:].strip()
            elif line.startswith(MARK + "DONE "):
                report = json.loads(line[len(MARK) + 5:])
                results[report["name"]] = report
                current = None
        status = proc.wait()
        time.sleep(0.05)  # let the stderr thread finish
        if current is not None and current not in results:
            results[current] = {"crash": status, "stderr": "".join(errors)[-4000:]}
        left = [n for n in pending if n not in results]
        if len(left) == len(pending):  # no progress: the child cannot even start
            for n in left:
                results[n] = {"crash": status, "stderr": "".join(errors)[-4000:]}
            left = []
        pending = left
    return results


@pytest.fixture(scope="module")
def battery():
    start = time.perf_counter()
    results = _run_battery(BATTERY)
    elapsed = time.perf_counter() - start
    assert elapsed < 30, f"the battery took {elapsed:.1f} s"
    return results


BATTERY = [name for name in CASES if not name.startswith("_")]


def test_battery_is_large():
    assert len(BATTERY) >= 40


@pytest.mark.parametrize("name", BATTERY)
def test_bad_input(battery, name):
    report = battery[name]
    assert "crash" not in report, f"{name} CRASHED the interpreter (exit status {report['crash']}):\n" \
                                  f"{report['stderr']}"
    assert "hang" not in report, f"{name} hung (no result in {report['hang']} s)"
    _, raises, match = CASES[name]
    if raises is None:
        assert report["raised"] is None, f"{name} raised:\n{report['traceback']}"
    else:
        assert report["raised"] is not None, f"{name} raised nothing, expected {raises.__name__}"
        assert raises.__name__ in report["raised"], \
            f"{name} raised {report['raised'][0]}, expected {raises.__name__}:\n{report['traceback']}"
        assert re.search(match, report["message"]), \
            f"{name}: message {report['message']!r} does not match {match!r}"


# Two cases that must fail, for testing the runner itself (not in the battery).
@case()
def _segfault():
    import ctypes
    ctypes.string_at(0)


HANG_TIMEOUT = 10.0  # seconds the runner waits before it calls the case below a hang


@case()
def _sleep():
    time.sleep(600)


def test_the_runner_attributes_a_crash_and_a_hang_to_their_case():
    """The harness itself: a segfaulting and a sleeping case are caught, and
    the cases after them still run (in fresh children)."""
    # The timeout is also how long a fresh child may take to import numpy and
    # fromzero and report its first case: 3 s was too short on a loaded machine.
    results = _run_battery(["_segfault", "truncated_checkpoint", "_sleep", "foreign_npz"],
                           timeout=HANG_TIMEOUT)
    assert results["_segfault"]["crash"] != 0
    assert "Fatal Python error" in results["_segfault"]["stderr"]  # faulthandler's report
    assert results["_sleep"] == {"hang": HANG_TIMEOUT}
    assert results["truncated_checkpoint"]["raised"][0] == "ValueError"
    assert results["foreign_npz"]["raised"][0] == "ValueError"


# ==================================================================== saving killed mid-write

SAVER = r"""
import sys
import numpy as np
import fromzero as fz
path = sys.argv[1]
fz.utils.set_random_seed(0)
model = fz.Sequential([fz.layers.Dense(512, activation="relu"), fz.layers.Dense(64)])
model.build((None, 512))
shapes = [w.shape for w in model.get_weights()]
version = int(sys.argv[2])
while True:
    version += 1
    model.set_weights([np.full(s, version, np.float32) for s in shapes])
    model.save(path)
    print(version, flush=True)
"""


def test_save_killed_mid_write_leaves_a_loadable_file(tmp_path):
    """A child saves a 1 MB checkpoint over the same path in a loop and is
    killed with SIGKILL after a random short delay, again and again: the file
    is always a complete checkpoint, the last or the one before (save writes a
    temporary file and renames it over the old one); the next save clears the
    temporary files the killed saves left."""
    path = tmp_path / "model.safetensors"
    delays = np.random.default_rng(0).uniform(0.0, 0.25, 6)
    last = 0
    for delay in delays:
        proc = subprocess.Popen([sys.executable, "-c", SAVER, str(path), str(last)],
                                stdout=subprocess.PIPE, text=True)
        first = proc.stdout.readline()  # one save done: there is an old file to save over
        assert first.strip(), "the saver did not start"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        written = [int(first)] + [int(v) for v in proc.stdout.read().split()]
        proc.wait()
        model = fz.models.load_model(path)  # must not raise
        values = {float(v) for w in model.get_weights() for v in np.unique(w)}
        assert len(values) == 1, f"a mix of versions: {values}"
        version = int(values.pop())
        # the last save reported, or the one after it (done but not yet reported)
        assert version in (written[-1], written[-1] + 1), (version, written[-1])
        last = version
    assert last > len(delays)  # several saves per run: kills landed among them
    # A kill between creating the temporary file and renaming it leaves the
    # temporary file (SIGKILL cannot be caught); the next save removes it.
    fz.models.load_model(path).save(path)
    assert os.listdir(tmp_path) == ["model.safetensors"]


if __name__ == "__main__" and sys.argv[1:2] == ["--child"]:
    _child(sys.argv[2:])
