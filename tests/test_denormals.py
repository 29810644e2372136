"""Denormal floats: fz.set_flush_denormal and what it changes.

With flushing on (the default) every kernel thread runs with the CPU's FTZ and
DAZ switches set, so a product below 2^-126 comes out as 0; with it off, as
the denormal. Either way the result is the same for 1 and 2 threads, and
Python's and NumPy's own arithmetic (outside the kernels) is never flushed.
Also: fz.info() reports the setting and the GEMM's plan for this CPU.
"""

import numpy as np
import pytest

import fromzero as fz

TINY = np.float32(2.0 ** -70)  # TINY · TINY = 2^-140: a denormal


@pytest.fixture
def restore_settings():
    threads, flush = fz.get_num_threads(), fz.get_flush_denormal()
    yield
    fz.set_num_threads(threads)
    fz.set_flush_denormal(flush)


def denormal_products(threads, flush, n=96):
    """C = (TINY·I)·(TINY·ones): every element the denormal 2^-140, unless flushed."""
    fz.set_num_threads(threads)
    fz.set_flush_denormal(flush)
    a = np.eye(n, dtype=np.float32) * TINY
    b = np.full((n, n), TINY, dtype=np.float32)
    return fz.ops.matmul(a, b)


@pytest.mark.parametrize("threads", [1, 2])
def test_flush_on_gives_zero_and_off_gives_the_denormal(restore_settings, threads):
    assert np.all(denormal_products(threads, flush=True) == 0.0)
    kept = denormal_products(threads, flush=False)
    assert np.all(kept == np.float32(2.0 ** -140))
    assert kept[0, 0] > 0 and kept[0, 0] < np.finfo(np.float32).tiny  # really a denormal


def test_same_bits_for_one_and_two_threads(restore_settings):
    for flush in (True, False):
        one, two = denormal_products(1, flush), denormal_products(2, flush)
        assert np.array_equal(one.view(np.uint32), two.view(np.uint32))


def test_denormal_inputs_read_as_zero_when_flushing(restore_settings):
    # DAZ: a denormal input counts as 0, so 2^-140 · 2^100 is 0, not 2^-40.
    fz.set_flush_denormal(True)
    x = np.full((1, 1), 2.0 ** -140, dtype=np.float32)
    assert fz.ops.matmul(x, np.full((1, 1), 2.0 ** 100, dtype=np.float32))[0, 0] == 0.0
    fz.set_flush_denormal(False)
    assert fz.ops.matmul(x, np.full((1, 1), 2.0 ** 100, dtype=np.float32))[0, 0] == np.float32(2.0 ** -40)


def test_numpy_outside_the_kernels_is_not_flushed(restore_settings):
    denormal_products(2, flush=True)
    assert TINY * TINY > 0  # NumPy still makes the denormal


def test_setting_is_a_bool_and_shows_in_info(restore_settings):
    assert fz.get_flush_denormal() is True  # the default
    fz.set_flush_denormal(False)
    assert fz.info()["flush_denormal"] is False
    for bad in (1, "yes", None, np.bool_(True)):
        with pytest.raises(TypeError, match="set_flush_denormal"):
            fz.set_flush_denormal(bad)


def test_info_shows_the_gemm_plan():
    gemm = fz.info()["gemm"]
    assert gemm["kernel"] == fz.info()["simd"]
    assert gemm["mc"] % gemm["mr"] == 0 and gemm["nc"] % gemm["nr"] == 0
    assert gemm["kc"] * gemm["nr"] * 4 <= max(gemm["l2"] // 8, 32 * gemm["nr"] * 4)
    assert gemm["l1d"] <= gemm["l2"]
    assert gemm["caches_from"] in ("cpuid", "sysconf", "default")
