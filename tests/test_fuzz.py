"""Property-based fuzzing (Hypothesis) of the three places untrusted input comes in:

(a) the IDX parser (datasets/_idx.py) on random and mutated files, raw and
    gzipped: it returns the array the file holds or raises ValueError — never
    another exception type, and never allocates much more than the file
    itself (tracemalloc);
(b) load_model on mutated checkpoints: .npz files of format 2 byte for byte and
    entry by entry in a well-formed zip; safetensors files byte for byte, their
    header, fromzero's metadata and each tensor's entry: a model or a ValueError,
    nothing else;
(c) fz.ops (matmul with transposes, activations, softmax, losses, bias_grad,
    argmax, gather_rows) on random shapes (1 and 0 where legal), strides
    (slices, transposes, negative steps) and dtypes, compared with NumPy;
(d) every kernel, from its declaration (test_aliasing.Example), with random
    arguments mutated: another shape, dtype or layout, another scalar, a
    non-array — a result or a clear ValueError / TypeError / MemoryError.

Each property runs a bounded number of examples, so the file stays fast; for
long coverage-guided runs see fuzz/README.md (atheris).
"""

import gzip
import io
import json
import math
import os
import struct
import tempfile
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fromzero as fz
from fromzero.datasets._idx import read_idx

# FROMZERO_FUZZ_EXAMPLES=20000 python -m pytest tests/test_fuzz.py for a long run.
FUZZ = settings(max_examples=int(os.environ.get("FROMZERO_FUZZ_EXAMPLES", 150)), deadline=None,
                database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
WORK = Path(tempfile.mkdtemp(prefix="fz-fuzz-"))

# ==================================================================== byte mutations

INTERESTING_U32 = [0, 1, 2, 3, 27, 28, 29, 255, 256, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF,
                   0x00000801, 0x00000803, 0x00000D03, 10**6]


@st.composite
def mutated(draw, data, max_mutations=4):
    """`data` after a few random edits: flip, overwrite with an interesting
    32-bit value, insert, delete, truncate, or append."""
    data = bytearray(data)
    for _ in range(draw(st.integers(0, max_mutations))):
        op = draw(st.sampled_from(["flip", "u32", "insert", "delete", "truncate", "append"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "u32":
            data[pos:pos + 4] = struct.pack(">I", draw(st.sampled_from(INTERESTING_U32)))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=4))
        elif op == "delete":
            del data[pos:pos + draw(st.integers(1, 8))]
        elif op == "truncate":
            del data[pos:]
        else:
            data += draw(st.binary(min_size=1, max_size=16))
    return bytes(data)


# ==================================================================== (a) the IDX parser

def idx_file(item_shape, count, seed=0):
    payload = np.random.default_rng(seed).integers(0, 256, (count,) + item_shape, dtype=np.uint8)
    dims = (count,) + item_shape
    return struct.pack(f">I{len(dims)}I", 0x800 | len(dims), *dims) + payload.tobytes()


ITEM_SHAPES = [(), (2, 3), (28, 28)]


@st.composite
def idx_inputs(draw):
    """(file bytes, item_shape, gzipped): random bytes, or a valid file mutated
    before or after gzip compression."""
    item_shape = draw(st.sampled_from(ITEM_SHAPES))
    gz = draw(st.booleans())
    how = draw(st.sampled_from(["random", "mutated", "mutated-then-gzipped"]))
    if how == "random":
        return draw(st.binary(max_size=2000)), item_shape, gz
    valid = idx_file(item_shape, draw(st.integers(0, 5)))
    if how == "mutated-then-gzipped" and gz:
        return gzip.compress(draw(mutated(valid))), item_shape, True
    return draw(mutated(gzip.compress(valid) if gz else valid)), item_shape, gz


@FUZZ
@given(idx_inputs())
def test_idx_parser_raises_only_value_error(example):
    content, item_shape, gz = example
    path = WORK / ("fuzz-idx" + (".gz" if gz else ""))
    path.write_bytes(content)
    tracemalloc.start()
    try:
        array = read_idx(path, item_shape)
    except ValueError:
        array = None
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    # At most a few times what the file can hold: its size, or for gzip the
    # most deflate can expand it to (and read_idx's 1 MB read chunks).
    limit = 4 * (1032 if gz else 1) * len(content) + (3 << 20)
    assert peak < limit, f"read_idx allocated {peak} bytes for a {len(content)}-byte file"
    if array is not None:
        assert array.dtype == np.uint8 and array.shape[1:] == item_shape
        raw = gzip.decompress(content) if gz else content
        assert raw.endswith(array.tobytes())


# ==================================================================== (b) load_model

_CHECKPOINT = {}


def small_compiled_model():
    fz.utils.set_random_seed(0)
    model = fz.Sequential([fz.layers.Dense(4, activation="relu"), fz.layers.Dropout(0.2),
                           fz.layers.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.build((None, 5))
    return model


def checkpoint_bytes():
    """A small model (Dense, Dropout, Dense; compiled) in fromzero's format 2
    (.npz, still read), made once."""
    if not _CHECKPOINT:
        model = small_compiled_model()
        config = fz.saving.file_config(model)
        config["format_version"] = 2
        path = WORK / "base.npz"
        np.savez(path, config=np.array(json.dumps(config)),
                 **{f"weight_{i}": w for i, w in enumerate(model.get_weights())})
        _CHECKPOINT["bytes"] = path.read_bytes()
        with zipfile.ZipFile(path) as z:
            _CHECKPOINT["entries"] = {n: z.read(n) for n in z.namelist()}
    return _CHECKPOINT["bytes"], _CHECKPOINT["entries"]


JSON_CHARS = '0123456789-.e"[]{},: truefalsnul'


@st.composite
def mutated_json(draw, text, max_mutations=3):
    """Character edits of the JSON text (few, so sizes stay small)."""
    text = list(text)
    for _ in range(draw(st.integers(1, max_mutations))):
        pos = draw(st.integers(0, len(text) - 1))
        op = draw(st.sampled_from(["replace", "insert", "delete"]))
        char = draw(st.sampled_from(JSON_CHARS))
        if op == "replace":
            text[pos] = char
        elif op == "insert":
            text.insert(pos, char)
        else:
            del text[pos]
    return "".join(text)


def npy(array):
    f = io.BytesIO()
    np.lib.format.write_array(f, array, allow_pickle=False)
    return f.getvalue()


@st.composite
def checkpoint_inputs(draw):
    data, entries = checkpoint_bytes()
    how = draw(st.sampled_from(["bytes", "entry", "config", "drop", "extra"]))
    if how == "bytes":
        return draw(mutated(data, max_mutations=6))
    entries = dict(entries)
    names = sorted(entries)
    if how == "entry":  # a mutated .npy entry (header or data) in a well-formed zip
        name = draw(st.sampled_from(names))
        entries[name] = draw(mutated(entries[name]))
    elif how == "config":
        config = str(np.load(io.BytesIO(entries["config.npy"])))
        entries["config.npy"] = npy(np.array(draw(mutated_json(config))))
    elif how == "drop":
        del entries[draw(st.sampled_from(names))]
    else:
        name = draw(st.sampled_from(["weight_9.npy", "weight_0.npy", "config.npy", "x"]))
        entries[name] = draw(st.binary(max_size=200))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=draw(st.sampled_from([zipfile.ZIP_STORED,
                                                                     zipfile.ZIP_DEFLATED]))) as z:
        for name, content in entries.items():
            z.writestr(name, content)
    return buf.getvalue()


@FUZZ
@given(checkpoint_inputs())
def test_load_model_raises_only_value_error(content):
    path = WORK / "fuzz-model.npz"
    path.write_bytes(content)
    try:
        model = fz.models.load_model(path)
    except ValueError:
        return
    assert isinstance(model, fz.Model)  # Sequential, or a graph a mutation still describes


def test_load_model_accepts_the_unmutated_checkpoint():
    path = WORK / "plain.npz"
    path.write_bytes(checkpoint_bytes()[0])
    assert fz.models.load_model(path).predict(np.ones((2, 5))).shape == (2, 3)


_SAFETENSORS = {}


def safetensors_checkpoint():
    """The same model saved by model.save (safetensors, with optimizer state
    and generator), after one training step: (file bytes, header JSON object)."""
    if not _SAFETENSORS:
        model = small_compiled_model()
        model.fit(np.ones((4, 5), np.float32), np.zeros(4, int), verbose=0)
        path = WORK / "base.safetensors"
        model.save(path, extras={"tokenizer": {"kind": "bytes"}})
        data = path.read_bytes()
        (length,) = struct.unpack("<Q", data[:8])
        _SAFETENSORS["bytes"] = data
        _SAFETENSORS["header"] = json.loads(data[8:8 + length])
    return _SAFETENSORS["bytes"], _SAFETENSORS["header"]


def with_header(header, data):
    """A safetensors file: the JSON `header` (padded as the format wants) and the data bytes."""
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


@st.composite
def safetensors_inputs(draw):
    data, header = safetensors_checkpoint()
    (length,) = struct.unpack("<Q", data[:8])
    body = data[8 + length:]
    how = draw(st.sampled_from(["bytes", "header", "metadata", "tensor", "drop"]))
    if how == "bytes":
        return draw(mutated(data, max_mutations=6))
    header = json.loads(json.dumps(header))
    if how == "header":  # the safetensors header's JSON itself, edited
        text = draw(mutated_json(data[8:8 + length].decode()))
        return struct.pack("<Q", len(text.encode())) + text.encode() + body
    names = sorted(k for k in header if k != "__metadata__")
    if how == "metadata":  # fromzero's JSON (architecture, state) or the extras, edited
        key = draw(st.sampled_from(["fromzero", "extras"]))
        header["__metadata__"][key] = draw(mutated_json(header["__metadata__"][key]))
    elif how == "tensor":  # one tensor's dtype, shape or byte range changed
        entry = header[draw(st.sampled_from(names))]
        field = draw(st.sampled_from(["dtype", "shape", "data_offsets"]))
        if field == "dtype":
            entry["dtype"] = draw(st.sampled_from(["F16", "F64", "I32", "BOOL", "U8", "BF16", "X"]))
        else:
            entry[field] = draw(st.lists(st.sampled_from([0, 1, 2, 3, 4, 5, 12, 2**31, 2**62]),
                                         max_size=3))
    else:
        del header[draw(st.sampled_from(names))]
    return with_header(header, body)


@FUZZ
@given(safetensors_inputs())
def test_load_safetensors_raises_only_value_error(content):
    path = WORK / "fuzz-model.safetensors"
    path.write_bytes(content)
    for load in (fz.models.load_model, fz.saving.load_extras,
                 small_compiled_model().load_weights):
        try:
            load(path)
        except ValueError:
            pass


def test_load_safetensors_accepts_the_unmutated_checkpoint():
    path = WORK / "plain.safetensors"
    path.write_bytes(safetensors_checkpoint()[0])
    assert fz.models.load_model(path).optimizer.iterations == 1
    assert fz.saving.load_extras(path) == {"tokenizer": {"kind": "bytes"}}


# ==================================================================== (c) fz.ops against NumPy

DTYPES = [np.float16, np.float32, np.float64, np.int8, np.int32, np.int64, np.uint8, np.bool_]


@st.composite
def matrices(draw, rows, cols, dtype=None, finite=True, bound=8.0):
    """A (rows, cols) array of `dtype` that is a view: sliced with steps of
    ±1 or ±2, possibly transposed or Fortran-ordered."""
    dtype = np.dtype(draw(st.sampled_from(DTYPES)) if dtype is None else dtype)
    step_r, step_c = draw(st.sampled_from([1, 2, -1, -2])), draw(st.sampled_from([1, 2, -1, -2]))
    transpose = draw(st.booleans())
    base_shape = (rows * abs(step_r), cols * abs(step_c))
    if transpose:
        base_shape = base_shape[::-1]
    if dtype.kind == "f":
        elements = st.floats(-bound, bound, width=16 if dtype == np.float16 else 32)
        if not finite:
            elements = st.one_of(elements, st.sampled_from([np.nan, np.inf, -np.inf]))
    elif dtype.kind == "b":
        elements = st.booleans()
    else:
        elements = st.integers(0 if dtype.kind == "u" else -8, 8)
    base = draw(hnp.arrays(dtype, base_shape, elements=elements))
    if transpose:
        base = base.T
    view = base[::step_r, ::step_c]
    if draw(st.booleans()):
        view = np.asfortranarray(view)
    assert view.shape == (rows, cols)
    return view


dims = st.integers(0, 9)
positive_dims = st.integers(1, 9)


def f64(a):
    """The float32 values the kernels see, in float64."""
    return np.asarray(a).astype(np.float32).astype(np.float64)


@FUZZ
@given(st.data(), dims, dims, dims, st.booleans(), st.booleans())
def test_matmul_matches_numpy(data, m, n, k, transpose_a, transpose_b):
    a = data.draw(matrices(*((k, m) if transpose_a else (m, k))), "a")
    b = data.draw(matrices(*((n, k) if transpose_b else (k, n))), "b")
    before = a.copy(), b.copy()
    result = fz.ops.matmul(a, b, transpose_a=transpose_a, transpose_b=transpose_b)
    op_a, op_b = f64(a.T if transpose_a else a), f64(b.T if transpose_b else b)
    expected = op_a @ op_b
    assert result.dtype == np.float32 and result.shape == (m, n)
    scale = (np.abs(op_a) @ np.abs(op_b)) if m and n else 0
    np.testing.assert_allclose(result, expected, rtol=0, atol=1e-6 + 1e-5 * np.max(scale, initial=0))
    np.testing.assert_array_equal(a, before[0])
    np.testing.assert_array_equal(b, before[1])


def _erf(x):
    return np.vectorize(math.erf, otypes=[np.float64])(x) if x.size else x


ACTIVATIONS = {
    "relu": (fz.ops.relu, lambda x: np.where(np.isnan(x), np.nan, np.maximum(x, 0))),
    "sigmoid": (fz.ops.sigmoid, lambda x: 1 / (1 + np.exp(-x))),
    "tanh": (fz.ops.tanh, np.tanh),
    # the formula as written, also at ±inf: gelu(-inf) = -inf · 0 = NaN, as in PyTorch
    "gelu": (fz.ops.gelu, lambda x: 0.5 * x * (1 + _erf(x / np.sqrt(2)))),
    "leaky_relu": (lambda x: fz.ops.leaky_relu(x, 0.2), lambda x: np.where(x > 0, x, 0.2 * x)),
}


@FUZZ
@given(st.data(), st.sampled_from(sorted(ACTIVATIONS)), dims, dims)
def test_activations_match_numpy(data, name, rows, cols):
    x = data.draw(matrices(rows, cols, finite=False, bound=30.0), "x")
    kernel, reference = ACTIVATIONS[name]
    result = kernel(x)
    with np.errstate(all="ignore"):
        expected = reference(f64(x))
    assert result.dtype == np.float32 and result.shape == x.shape
    np.testing.assert_allclose(result, expected, rtol=2e-6, atol=2e-6, equal_nan=True)


@FUZZ
@given(st.data(), dims, dims)
def test_softmax_matches_numpy(data, rows, cols):
    x = data.draw(matrices(rows, cols, bound=50.0), "x")
    result = fz.ops.softmax(x)
    z = f64(x)
    e = np.exp(z - (z.max(axis=1, keepdims=True) if cols else 0))
    np.testing.assert_allclose(result, e / e.sum(axis=1, keepdims=True), rtol=1e-5, atol=1e-7)


@FUZZ
@given(st.data(), positive_dims, positive_dims)
def test_losses_match_numpy(data, rows, cols):
    logits = f64(data.draw(matrices(rows, cols, np.float32, bound=10.0), "logits"))
    labels = data.draw(hnp.arrays(np.int64, rows, elements=st.integers(0, cols - 1)), "labels")
    target = data.draw(matrices(rows, cols, np.float32, bound=1.0), "target")
    t = np.abs(f64(target))
    # mean squared error: value and gradient
    mse = fz.losses.MeanSquaredError()
    assert mse(t, logits) == pytest.approx(np.mean((logits - t) ** 2), rel=1e-5, abs=1e-6)
    np.testing.assert_allclose(mse.gradient(t, logits), 2 * (logits - t) / logits.size,
                               rtol=1e-5, atol=1e-7)
    # sparse categorical cross-entropy from logits
    scce = fz.losses.SparseCategoricalCrossentropy(from_logits=True)
    lse = np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1)) + logits.max(1)
    assert scce(labels, logits) == pytest.approx(np.mean(lse - logits[np.arange(rows), labels]),
                                                 rel=1e-5, abs=1e-5)
    softmax = np.exp(logits - lse[:, None])
    np.testing.assert_allclose(scce.gradient(labels, logits),
                               (softmax - np.eye(cols)[labels]) / rows, rtol=1e-4, atol=1e-6)
    # binary cross-entropy from logits (targets in [0, 1])
    bce = fz.losses.BinaryCrossentropy(from_logits=True)
    tb = np.clip(t, 0, 1)
    expected = np.mean(np.maximum(logits, 0) - logits * tb + np.log1p(np.exp(-np.abs(logits))))
    assert bce(tb, logits) == pytest.approx(expected, rel=1e-5, abs=1e-5)
    # categorical cross-entropy on probabilities (Keras: normalised, clipped at 1e-7)
    cce = fz.losses.CategoricalCrossentropy()
    q = np.clip(softmax, 1e-7, 1 - 1e-7)
    assert cce(tb, softmax) == pytest.approx(np.mean(-(tb * np.log(q)).sum(1)), rel=1e-4, abs=1e-5)


@FUZZ
@given(st.data(), dims, dims)
def test_bias_grad_and_argmax_match_numpy(data, rows, cols):
    x = data.draw(matrices(rows, cols), "x")
    np.testing.assert_allclose(fz.ops.bias_grad(x), f64(x).sum(axis=0), rtol=1e-5, atol=1e-4)
    y = data.draw(matrices(rows, cols, finite=False), "y")
    if cols == 0:
        with pytest.raises(ValueError, match="argmax: x has no columns"):
            fz.ops.argmax(y)
    else:  # NaN counts as the largest (the first NaN wins), as in NumPy
        # With denormal flushing on (the default), the kernels read a denormal
        # input as a zero of its sign (DAZ): compare with NumPy on that input.
        flushed = f64(y)
        flushed[np.abs(flushed) < np.finfo(np.float32).tiny] = 0.0
        np.testing.assert_array_equal(fz.ops.argmax(y), np.argmax(flushed, axis=1))
        previous = fz.get_flush_denormal()
        try:
            fz.set_flush_denormal(False)
            np.testing.assert_array_equal(fz.ops.argmax(y), np.argmax(f64(y), axis=1))
        finally:
            fz.set_flush_denormal(previous)


@FUZZ
@given(st.data(), positive_dims, dims, st.integers(0, 12))
def test_gather_rows_matches_numpy(data, rows, cols, count):
    src = data.draw(matrices(rows, cols), "src")
    if data.draw(st.booleans(), "3-D"):
        src = src.reshape(rows, cols, 1) if cols else src.reshape(rows, 0, 3)
    index = data.draw(hnp.arrays(data.draw(st.sampled_from([np.int64, np.int32, np.uint8])), count,
                                 elements=st.integers(0, rows - 1)), "index")
    result = fz.ops.gather_rows(src, index)
    expected = src[index.astype(np.int64)]
    # integers come back as int32, everything else as float32
    assert result.dtype == (np.int32 if src.dtype.kind in "iu" else np.float32)
    assert result.shape == expected.shape
    np.testing.assert_array_equal(result, expected.astype(result.dtype))


# ==================================================================== every kernel, mutated arguments

from test_aliasing import Example, examples  # noqa: E402

WEIRD_SCALARS = [math.nan, math.inf, -1, 0, 2**70, -2**70, 1e30, True, None, "x", (1, 2, 3), [0.5],
                 np.float32(0.5), np.int64(3), np.ones(2)]


@st.composite
def mutated_array(draw, a):
    """`a` with its shape, dtype or layout changed, or something that is not an array."""
    op = draw(st.sampled_from(["shape", "dtype", "layout", "other"]))
    if op == "shape":
        shape = list(a.shape)
        edit = draw(st.sampled_from(["drop", "add", "grow", "zero"]))
        if edit == "drop" and shape:
            shape.pop(draw(st.integers(0, len(shape) - 1)))
        elif edit == "add":
            shape.insert(draw(st.integers(0, len(shape))), draw(st.integers(0, 3)))
        elif shape:
            k = draw(st.integers(0, len(shape) - 1))
            shape[k] = 0 if edit == "zero" else shape[k] + draw(st.integers(1, 2))
        return np.resize(a, shape) if a.size else np.zeros(shape, a.dtype)
    if op == "dtype":
        return a.astype(draw(st.sampled_from([np.float64, np.float16, np.int8, np.uint64, np.int64, bool,
                                              np.complex64, object])))
    if op == "layout" and a.ndim:
        return draw(st.sampled_from([np.asfortranarray(a), a[::-1], np.repeat(a, 2, axis=-1)[..., ::2]]))
    return draw(st.sampled_from([None, 3.0, "array", [[1, 2], [3]], np.array(1.0, np.float32)]))


@FUZZ
@given(st.data(), st.sampled_from(examples()))
def test_every_kernel_raises_only_clear_errors(data, where):
    example = Example(*where)
    values, kwargs = example.values(), dict(example.kwargs)
    for name in data.draw(st.sets(st.sampled_from(sorted(values) + sorted(kwargs)), min_size=1, max_size=3)):
        if name in kwargs:
            kwargs[name] = data.draw(st.sampled_from(WEIRD_SCALARS), name)
        elif isinstance(values[name], list):
            values[name] = [data.draw(mutated_array(values[name][0]), name), values[name][1]]
        else:
            values[name] = data.draw(mutated_array(values[name]), name)
    try:
        example.fn(**values, **kwargs)
    except (ValueError, TypeError, MemoryError) as e:
        assert str(e).strip(), "an error without a message"
