"""Every kernel attacked from its own declaration.

csrc/bindings.cpp declares each kernel once (its signature, every array's role,
dtype, dims and in-place rule, and a valid example call), and
_core.kernel_specs() hands those declarations to Python. From them, and
nothing listed by hand, this file builds valid arguments for every kernel and
then, for every array the kernel writes:
  * aliases it with every other array of the call — the same memory, an
    overlapping (shifted) view, and disjoint views of one shared buffer — and
    requires a ValueError naming both arrays, unless the declaration allows
    that output to be exactly that input, in which case the result must equal
    the result without aliasing (so the in-place rules are tested too);
    disjoint views must always work and give the same result;
  * passes it read-only, non-contiguous, misaligned, of the wrong dtype, of the
    wrong shape and as a list, each a clear error naming it;
and for every free dim of the example, calls the kernel with that dim 0
(a correct, finite result or a ValueError) and 2**48 (a MemoryError or
ValueError, never an attempt to run).

The checks are plain functions returning a list of failures, so that
tests/test_robustness.py runs the same attacks in its child process, where a
crash is caught and attributed instead of killing pytest.
"""

import math
import re

import numpy as np
import pytest

import fromzero as fz
from fromzero import _core

Act = fz.ops.Activation
SPECS = _core.kernel_specs()
NOT_KERNELS = {"has_openmp", "get_num_threads", "set_num_threads", "gemm_kernel_name", "get_flush_denormal",
               "set_flush_denormal", "gemm_info", "late_regions", "kernel_specs",
               "limits", "Activation", "vecmath_isa", "DenseZeroSkip"}
DTYPES = {"float32": np.float32, "int32": np.int32, "int64": np.int64, "uint8": np.uint8}
HUGE = 2**48  # a size no allocation can satisfy: any attempt fails at once


def function(name):
    """The public function in fz.ops when there is one, else the binding."""
    return getattr(fz.ops, name) if name in fz.ops.__all__ else getattr(_core, name)


def parse_sizes(text, arg_names, override=None):
    """{dim: size} from "batch=2 ho=batch+1 a=5x3 ...=2x3"; an expression is
    evaluated with the dims before it, so derived dims follow `override`."""
    sizes, free = {}, []
    for token in text.split():
        key, expr = token.split("=", 1)
        shaped = key == "..." or key in arg_names
        if key in (override or {}):
            sizes[key] = override[key]
        elif shaped:
            sizes[key] = tuple(int(v) for v in expr.split("x")) if expr else ()
        else:
            sizes[key] = int(eval(expr, {}, dict(sizes)))  # noqa: S307 — the declarations' own text
        if shaped or re.fullmatch(r"\d+", expr):
            free.append(key)
    return sizes, free


class Example:
    """One valid call of a kernel, from example `index` of its declaration."""

    def __init__(self, name, index=0, override=None):
        self.name, self.index, self.spec = name, index, SPECS[name]
        size_text, kwargs_text = self.spec["examples"][index]
        names = {a["name"] for a in self.spec["args"]}
        self.sizes, self.free = parse_sizes(size_text, names, override)
        self.kwargs = eval(f"dict({kwargs_text})", {"Activation": Act, **self.sizes})  # noqa: S307
        # the arrays this call passes: every declared one the example does not set itself
        self.args = [a for a in self.spec["args"] if a["role"] != "result" and a["name"] not in self.kwargs]
        self.fn = function(name)

    def __repr__(self):
        return f"{self.name}[{self.index}]"

    def shape(self, arg):
        if arg["name"] in self.sizes:
            return self.sizes[arg["name"]]
        shape = []
        for d in arg["dims"]:
            shape += self.sizes["..."] if d == "..." else [int(d) if d.isdigit() else self.sizes[d]]
        return tuple(shape)

    def slots(self):
        """(label, arg, index in its list or None) for every array of the call."""
        return [(f"{a['name']}[{t}]", a, t) for a in self.args if a["list"] for t in (0, 1)] + \
               [(a["name"], a, None) for a in self.args if not a["list"]]

    def values(self, seed=0, make=None):
        """Fresh valid arrays by name (lists of two for list arguments)."""
        rng = np.random.default_rng(seed)
        make = make or (lambda arg, shape, dtype: self._valid(arg, shape, dtype, rng))
        out = {}
        for a in self.args:
            one = lambda: make(a, self.shape(a), DTYPES[a["dtype"]])  # noqa: E731
            out[a["name"]] = [one(), one()] if a["list"] else one()
        return out

    def _valid(self, arg, shape, dtype, rng):
        if dtype is np.float32:  # positive, so every kernel's sqrt, log and division stay finite
            return rng.uniform(0.1, 1.0, shape).astype(np.float32)
        bound = self.sizes.get(arg["values_below"], 3) if arg["values_below"] else 3
        return rng.integers(0, max(bound, 1), shape).astype(dtype)

    def call(self, values):
        return self.fn(**values, **self.kwargs)


def get(values, slot):
    _, arg, t = slot
    return values[arg["name"]] if t is None else values[arg["name"]][t]


def put(values, slot, array):
    _, arg, t = slot
    if t is None:
        values[arg["name"]] = array
    else:
        values[arg["name"]] = list(values[arg["name"]])
        values[arg["name"]][t] = array


def copied(values):
    return {k: [a.copy() for a in v] if isinstance(v, list) else v.copy() for k, v in values.items()}


def outcome(example, values):
    """What a call produces: everything it returns and every array it writes."""
    returned = example.call(values)
    parts = list(returned) if isinstance(returned, tuple) else [returned]
    arrays = [np.array(p) for p in parts if p is not None]
    for slot in example.slots():
        if slot[1]["role"] in ("output", "state"):
            arrays.append(np.array(get(values, slot)))
    return arrays


def same_outcome(a, b):
    return len(a) == len(b) and all(x.shape == y.shape and np.array_equal(x, y, equal_nan=True)
                                    for x, y in zip(a, b))


def examples():
    return [(name, i) for name in sorted(SPECS) for i in range(len(SPECS[name]["examples"]))]


def ids(params):
    return [f"{n}[{i}]" for n, i in params]


# ==================================================================== aliasing

def views(a, w, how):
    """(a', w'): arrays with a's values and w's shape and dtype sharing one buffer,
    `how` = "same" (the same bytes), "shifted" (overlapping) or "disjoint"; None
    when that layout cannot be made with these sizes."""
    na, nw = a.nbytes, w.nbytes
    if how == "same":
        if na != nw or na == 0:
            return None
        base = np.zeros(na, np.uint8)
        at_a = at_w = 0
    elif how == "shifted":  # the smaller starts one element into the larger
        small, large = sorted([(na, a.itemsize, "a"), (nw, w.itemsize, "w")])
        if small[0] == 0 or small[1] >= large[0]:
            return None
        base = np.zeros(max(large[0], small[1] + small[0]), np.uint8)
        at_a, at_w = (small[1], 0) if small[2] == "a" else (0, small[1])
    else:
        gap = -na % 8
        base = np.zeros(na + gap + nw, np.uint8)
        at_a, at_w = 0, na + gap
    a2 = base[at_a:at_a + na].view(a.dtype).reshape(a.shape)
    a2[...] = a
    w2 = base[at_w:at_w + nw].view(w.dtype).reshape(w.shape)
    if how == "disjoint":
        w2[...] = w
    return a2, w2


def alias_failures(example):
    """Every written array against every other array of the call."""
    failures, slots = [], example.slots()
    reference_values = example.values()
    for w_slot in slots:
        if w_slot[1]["role"] not in ("output", "state"):
            continue
        for a_slot in slots:
            if a_slot[0] == w_slot[0]:
                continue
            allowed = a_slot[1]["name"] in w_slot[1]["in_place"] or w_slot[1]["name"] in a_slot[1]["in_place"]
            for how in ("same", "shifted", "disjoint"):
                values = copied(reference_values)
                pair = views(get(values, a_slot), get(values, w_slot), how)
                if pair is None:
                    continue
                put(values, a_slot, pair[0])
                put(values, w_slot, pair[1])
                what = f"{example}: {w_slot[0]} {how} with {a_slot[0]}"
                expected = outcome(example, copied(reference_values))
                must_work = how == "disjoint" or (how == "same" and allowed and pair[0].dtype == pair[1].dtype)
                try:
                    got = outcome(example, values)
                except ValueError as e:
                    if must_work:
                        failures.append(f"{what}: refused ({e})")
                    elif not (w_slot[0] in str(e) and a_slot[0] in str(e)):
                        failures.append(f"{what}: the message does not name both: {e}")
                    continue
                if not must_work:
                    failures.append(f"{what}: accepted silently")
                elif not same_outcome(got, expected):
                    failures.append(f"{what}: a different result than without aliasing")
    return failures


# ==================================================================== bad out= arrays

def bad_arrays(good, dtype):
    """(how, array, exception, message pattern) for a caller's output array."""
    shape = good.shape
    read_only = good.copy()
    read_only.flags.writeable = False
    wrong_dtype = np.float64 if dtype is not np.float64 else np.float32
    cases = [("read-only", read_only, ValueError, "is read-only"),
             ("wrong dtype", good.astype(wrong_dtype), TypeError, r"must be an? \w+ array, got"),
             ("wrong shape", np.zeros((shape[0] + 1,) + shape[1:] if shape else (1,), dtype), ValueError,
              "shape"),
             ("a list", good.tolist(), TypeError, "must be a numpy array")]
    if good.size > 1:
        strided = np.zeros(shape[:-1] + (2 * shape[-1],), dtype)[..., ::2]
        cases.append(("non-contiguous", strided, ValueError, "must be C-contiguous"))
    if good.size > 0:
        raw = np.zeros(good.nbytes + 1, np.uint8)[1:]
        cases.append(("misaligned", raw.view(dtype).reshape(shape), ValueError, "is not aligned"))
    return cases


def out_failures(example):
    failures = []
    for slot in example.slots():
        label, arg, _ = slot
        if arg["role"] not in ("output", "state"):
            continue
        for how, bad, error, pattern in bad_arrays(get(example.values(), slot), DTYPES[arg["dtype"]]):
            values = example.values()
            put(values, slot, bad)
            what = f"{example}: {label} {how}"
            try:
                example.call(values)
            except error as e:
                if label not in str(e) or not re.search(pattern, str(e)):
                    failures.append(f"{what}: unclear message: {e}")
            except Exception as e:  # noqa: BLE001 — any other outcome is a failure
                failures.append(f"{what}: raised {type(e).__name__}: {e}")
            else:
                failures.append(f"{what}: accepted silently")
    return failures


# ==================================================================== zero and huge sizes

def variants(example, size):
    """Overrides setting one free dim (or one axis of a shape) to `size`."""
    for key in example.free:
        value = example.sizes[key]
        if isinstance(value, tuple):
            for axis in range(len(value)):
                yield f"{key}[{axis}]", {key: value[:axis] + (size,) + value[axis + 1:]}
        else:
            yield key, {key: size}


def zero_size_failures(example):
    """A dim of 0: a result of the declared shapes, finite, or a ValueError."""
    failures = []
    for what, override in variants(example, 0):
        ex = Example(example.name, example.index, override)
        try:
            got = outcome(ex, ex.values())
        except ValueError:
            continue
        except Exception as e:  # noqa: BLE001
            failures.append(f"{example} with {what} = 0: raised {type(e).__name__}: {e}")
            continue
        floats = [g for g in got if g.dtype.kind == "f"]
        if not all(np.isfinite(g).all() for g in floats):
            failures.append(f"{example} with {what} = 0: a result that is not finite")
    return failures


def huge_failures(example):
    """A dim of 2**48, every input a broadcast view: a MemoryError or ValueError at once."""
    failures = []
    for what, override in variants(example, HUGE):
        ex = Example(example.name, example.index, override)
        try:
            values = ex.values(make=lambda arg, shape, dtype: np.broadcast_to(dtype(0), shape))
        except ValueError:  # NumPy cannot even describe it
            continue
        for slot in ex.slots():  # outputs None: the kernel must refuse to allocate
            if slot[1]["role"] == "output" and not slot[1]["list"]:
                values[slot[1]["name"]] = None
        try:
            ex.call(values)
        except (MemoryError, ValueError):
            continue
        except Exception as e:  # noqa: BLE001
            failures.append(f"{example} with {what} = 2**48: raised {type(e).__name__}: {e}")
        else:
            failures.append(f"{example} with {what} = 2**48: accepted")
    return failures


ATTACKS = {"aliasing": alias_failures, "bad_out": out_failures, "zero_size": zero_size_failures,
           "huge_size": huge_failures}


# ==================================================================== the tests

def test_every_kernel_is_declared_with_an_example():
    kernels = {n for n in dir(_core) if not n.startswith("_") and n not in NOT_KERNELS}
    assert kernels == set(SPECS), kernels ^ set(SPECS)
    for name, spec in SPECS.items():
        assert spec["examples"], f"{name} has no example"
        declared = [a["name"] for a in spec["args"] if a["role"] != "result"] + list(spec["params"])
        keywords = [k for k, _ in spec["signature"]]
        assert set(declared) <= set(keywords), name
        assert all(a["role"] != "input" or not a["in_place"] for a in spec["args"]), name
    public = {n for n in fz.ops.__all__ if n in SPECS}
    assert public >= {"matmul", "dense_forward", "dense_backward", "conv2d_backward", "batch_norm_forward"}


@pytest.mark.parametrize("name, index", examples(), ids=ids(examples()))
def test_example_is_valid_and_deterministic(name, index):
    example = Example(name, index)
    assert same_outcome(outcome(example, example.values()), outcome(example, example.values()))


@pytest.mark.parametrize("attack", sorted(ATTACKS))
@pytest.mark.parametrize("name, index", examples(), ids=ids(examples()))
def test_attack(name, index, attack):
    failures = ATTACKS[attack](Example(name, index))
    assert not failures, "\n".join(failures)


def test_in_place_is_exact():
    """dense_backward declares dz_out may be dy itself (the kernel reads each
    dy before writing its dz): that gives the result of separate arrays, while
    dz_out sharing memory with x, which the GEMMs read afterwards, is refused."""
    example = Example("dense_backward")
    values = example.values()
    values["dz_out"] = values["dy"]
    assert same_outcome(outcome(example, values)[:-1], outcome(example, example.values())[:-1])
    values = example.values()
    buffer = np.zeros(20, np.float32)
    values["x"], values["dz_out"] = buffer[:12].reshape(3, 4), buffer[5:].reshape(3, 5)
    with pytest.raises(ValueError, match=r"dz_out must not overlap x"):
        example.call(values)


def test_size_helpers():
    sizes, free = parse_sizes("batch=2 ho=batch+1 a=5x3 ...=4", {"a"}, {"batch": 0})
    assert sizes == {"batch": 0, "ho": 1, "a": (5, 3), "...": (4,)} and free == ["batch", "a", "..."]
    a, w = views(np.arange(4, dtype=np.float32), np.zeros(3, np.float32), "shifted")
    assert np.shares_memory(a, w) and a.tolist() == [0, 1, 2, 3]
    a, w = views(np.arange(4, dtype=np.float32), np.zeros(3, np.float32), "disjoint")
    assert not np.shares_memory(a, w) and a.base is w.base
    assert views(np.arange(4, dtype=np.float32), np.zeros(3, np.float32), "same") is None
