"""The vector math and log-softmax from Python: fz.ops.exp, log, log1p, erf,
log_softmax and log_softmax_backward.

Accuracy is measured in ulp of float32 against float64 NumPy/SciPy (the C++
tests sweep the whole float range; these check the bindings and a few
hundred thousand values), log-softmax against float64 NumPy, finite
differences and PyTorch when it is installed. Then the contract every
fz.ops function keeps: any shape, out= (in place allowed), clear errors,
the same bits for any thread count. The bounds hold for the functions
themselves, so these tests turn denormal flushing off (fz.set_flush_denormal);
test_flushing_denormals_rounds_tiny_results_to_zero shows what it changes.
"""

import math

import numpy as np
import pytest

import fromzero as fz

try:
    import torch
except ImportError:
    torch = None


def ulp_error(got, exact):
    """|got − exact| in units of the last place of float32 at `exact`."""
    exact = np.asarray(exact, np.float64)
    spacing = np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)
    spacing = np.maximum(spacing, np.float64(np.finfo(np.float32).smallest_subnormal))
    return np.abs(got.astype(np.float64) - exact) / spacing


def random_floats(n, seed=0):
    """Values of every magnitude: random bit patterns (no NaN or inf) and a normal sample."""
    rng = np.random.default_rng(seed)
    patterns = rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32).view(np.float32)
    patterns = patterns[np.isfinite(patterns)]
    return np.concatenate([patterns, rng.standard_normal(n).astype(np.float32) * 5])


@pytest.fixture(autouse=True)
def gradual_underflow():
    """Denormal inputs and results as IEEE defines them, for the ulp bounds."""
    was = fz.get_flush_denormal()
    fz.set_flush_denormal(False)
    yield
    fz.set_flush_denormal(was)


def erf_f64(x):
    return np.vectorize(math.erf)(x.astype(np.float64))


FUNCTIONS = [  # (name, float64 reference, domain filter, ulp bound)
    ("exp", np.exp, lambda x: x, 1.0),
    ("log", np.log, lambda x: np.abs(x), 1.0),
    ("log1p", np.log1p, lambda x: np.abs(x), 2.0),
    ("erf", erf_f64, lambda x: x, 2.0),
]


@pytest.mark.parametrize(("name", "exact", "domain", "bound"), FUNCTIONS, ids=[f[0] for f in FUNCTIONS])
def test_within_the_documented_ulp_bound(name, exact, domain, bound):
    x = domain(random_floats(100_000))
    got = getattr(fz.ops, name)(x)
    assert got.dtype == np.float32 and got.shape == x.shape
    with np.errstate(over="ignore", divide="ignore"):
        expected = exact(x.astype(np.float64))
        rounded = expected.astype(np.float32)
    finite = np.isfinite(rounded)  # where float32 overflows, the result must be inf
    assert np.array_equal(got[~finite], rounded[~finite])
    assert ulp_error(got[finite], expected[finite]).max() <= bound


def test_special_values():
    inf, nan = np.inf, np.nan
    x = np.array([-inf, -0.0, 0.0, inf, nan], np.float32)
    np.testing.assert_array_equal(fz.ops.exp(x), [0, 1, 1, inf, nan])
    np.testing.assert_array_equal(fz.ops.log(np.array([0, 1, inf, -1], np.float32)), [-inf, 0, inf, nan])
    np.testing.assert_array_equal(fz.ops.log1p(np.array([-1, -0.0], np.float32)), [-inf, -0.0])
    assert np.signbit(fz.ops.log1p(np.array([-0.0], np.float32))[0])
    np.testing.assert_array_equal(fz.ops.erf(x), [-1, -0.0, 0, 1, nan])
    # Gradual underflow: e^−100 is a denormal float, not 0.
    assert fz.ops.exp(np.array([-100.0], np.float32))[0] == np.float32(math.exp(-100))


def test_flushing_denormals_rounds_tiny_results_to_zero():
    """fz.set_flush_denormal(True), the default: a denormal result is 0 and a
    denormal input reads as 0; normal values are unchanged."""
    x = np.array([-100.0, 1e-40, -1e-40, -50.0, 3.0], np.float32)
    fz.set_flush_denormal(False)
    exact = fz.ops.exp(x)
    fz.set_flush_denormal(True)
    flushed = fz.ops.exp(x)
    np.testing.assert_array_equal(flushed, [0, 1, 1, exact[3], exact[4]])
    assert exact[0] > 0 and exact[1] == exact[2] == 1


def test_any_shape_out_and_in_place():
    x = np.random.default_rng(1).standard_normal((3, 4, 5)).astype(np.float32)
    expected = fz.ops.exp(x)
    assert expected.shape == (3, 4, 5)
    out = np.empty_like(x)
    assert fz.ops.exp(x, out=out) is out
    np.testing.assert_array_equal(out, expected)
    y = x.copy()
    fz.ops.exp(y, out=y)
    np.testing.assert_array_equal(y, expected)
    assert fz.ops.exp(np.zeros((0, 7), np.float32)).shape == (0, 7)
    np.testing.assert_array_equal(fz.ops.exp([0, 1]), fz.ops.exp(np.array([0, 1], np.float32)))


def test_clear_errors():
    x = np.ones(8, np.float32)
    with pytest.raises(TypeError, match="out must be a float32 array"):
        fz.ops.exp(x, out=np.empty(8, np.float64))
    with pytest.raises(ValueError, match=r"out must have shape \(8,\)"):
        fz.ops.log(x, out=np.empty(9, np.float32))
    with pytest.raises(ValueError, match="shifted view"):
        fz.ops.erf(x[:7], out=x[1:])
    with pytest.raises(TypeError, match="must hold numbers"):
        fz.ops.exp(np.array(["a"]))
    with pytest.raises(ValueError, match="must be 2-D"):
        fz.ops.log_softmax(x)
    with pytest.raises(ValueError, match=r"dy must have shape \(2, 3\), got \(3, 2\)"):
        fz.ops.log_softmax_backward(np.ones((2, 3), np.float32), np.ones((3, 2), np.float32))
    y = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match="out must not overlap y"):
        fz.ops.log_softmax_backward(y, np.ones((2, 3), np.float32), out=y)


def test_same_bits_for_any_thread_count():
    x = random_floats(300_000, seed=2)
    rows = np.random.default_rng(3).standard_normal((300, 1000)).astype(np.float32) * 10
    before = fz.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            fz.set_num_threads(threads)
            results.append([fz.ops.exp(x), fz.ops.erf(x), fz.ops.log_softmax(rows)])
    finally:
        fz.set_num_threads(before)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- log-softmax

def log_softmax_f64(x):
    x = x.astype(np.float64)
    m = x.max(axis=1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=1, keepdims=True))


@pytest.mark.parametrize("shape", [(1, 1), (7, 3), (4, 10), (5, 1031), (2, 50257)])
def test_log_softmax_matches_float64(shape):
    x = np.random.default_rng(4).standard_normal(shape).astype(np.float32) * 8
    got = fz.ops.log_softmax(x)
    expected = log_softmax_f64(x)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=2e-6)
    # exp(log_softmax) is softmax
    np.testing.assert_allclose(np.exp(got.astype(np.float64)), fz.ops.softmax(x), rtol=1e-5, atol=1e-9)


def test_log_softmax_keeps_tiny_probabilities():
    x = np.array([[0.0, -200.0, -1e4]], np.float32)
    np.testing.assert_array_equal(fz.ops.log_softmax(x), x)  # log(softmax) would give −inf


def test_log_softmax_gradient_matches_finite_differences():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 7))
    dy = rng.standard_normal((3, 7))
    y = fz.ops.log_softmax(x.astype(np.float32))
    dx = fz.ops.log_softmax_backward(y, dy.astype(np.float32))
    h = 1e-6
    numeric = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        plus, minus = x.copy(), x.copy()
        plus[i] += h
        minus[i] -= h
        numeric[i] = ((log_softmax_f64(plus) - log_softmax_f64(minus)) * dy).sum() / (2 * h)
    np.testing.assert_allclose(dx, numeric, rtol=1e-4, atol=1e-5)


def test_log_softmax_backward_in_place_on_dy():
    rng = np.random.default_rng(6)
    y = fz.ops.log_softmax(rng.standard_normal((9, 33)).astype(np.float32))
    dy = rng.standard_normal((9, 33)).astype(np.float32)
    expected = fz.ops.log_softmax_backward(y, dy)
    fz.ops.log_softmax_backward(y, dy, out=dy)
    np.testing.assert_array_equal(dy, expected)


@pytest.mark.skipif(torch is None, reason="PyTorch is not installed")
def test_log_softmax_forward_and_backward_match_pytorch():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((64, 1000)).astype(np.float32) * 4
    dy = rng.standard_normal((64, 1000)).astype(np.float32)
    tx = torch.from_numpy(x).requires_grad_()
    ty = torch.log_softmax(tx, dim=1)
    ty.backward(torch.from_numpy(dy))
    y = fz.ops.log_softmax(x)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-6, atol=2e-6)
    np.testing.assert_allclose(fz.ops.log_softmax_backward(y, dy), tx.grad.numpy(), rtol=1e-5,
                               atol=1e-6)


def test_vecmath_isa_names_the_instruction_set():
    assert fz.ops.vecmath_isa() in ("avx512", "avx2", "generic")
