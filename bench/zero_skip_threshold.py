"""Where skipping a Dense input's zeros starts to pay: the measurement behind
the threshold in csrc/dense.h (kDefaultZeroSkipThreshold).

    python bench/zero_skip_threshold.py [--threads N] [--repeat R]

For each layer shape and zero fraction, the forward (dense_forward) and the
backward (dense_backward, dW only) are timed with the full GEMM and with the
zeros skipped — the private threshold forces each path; both give the same
bits — and the ratio full/skipping is printed (> 1: skipping is faster).
Arrays are 64-byte aligned, as a layer's are (utils.aligned_empty).
"""

import argparse
import time

import numpy as np

import fromzero as fz
from fromzero import _core

SHAPES = [(32, 784, 128), (128, 784, 128), (32, 128, 10), (32, 128, 64), (32, 512, 512)]
ZERO_FRACTIONS = [0.4, 0.55, 0.7, 0.85]


def aligned(a):
    out = fz.utils.aligned_empty(a.shape)
    out[...] = a
    return out


def best_microseconds(fn, calls=100, repeat=5):
    fn()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - start) / calls)
    return best * 1e6


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    fz.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    saved = _core._zero_skip_threshold()
    relu = fz.ops.Activation.relu
    print(f"threads {args.threads}; µs per call, full GEMM / zeros skipped (ratio)")
    print("batch   in  out  zeros |  forward               |  backward (dW)")
    try:
        for batch, n_in, n_out in SHAPES:
            for zeros in ZERO_FRACTIONS:
                x = aligned(rng.standard_normal((batch, n_in)).astype(np.float32))
                x[rng.random(x.shape) < zeros] = 0.0
                w = aligned(0.05 * rng.standard_normal((n_in, n_out)).astype(np.float32))
                b = np.zeros(n_out, np.float32)
                dy = aligned(rng.standard_normal((batch, n_out)).astype(np.float32))
                y, dz = fz.utils.aligned_empty(dy.shape), fz.utils.aligned_empty(dy.shape)
                dw = fz.utils.aligned_empty(w.shape)
                times = []
                for threshold in (2.0, 0.0):  # never skip, always skip
                    _core._set_zero_skip_threshold(threshold)
                    state = _core.DenseZeroSkip()
                    fz.ops.dense_forward(x, w, b, relu, out=y, zero_skip=state)
                    times.append(best_microseconds(
                        lambda: fz.ops.dense_forward(x, w, b, relu, out=y, zero_skip=state),
                        repeat=args.repeat))
                    times.append(best_microseconds(
                        lambda: fz.ops.dense_backward(x, w, None, y, dy, relu, 0.0, dz, dw_out=dw,
                                                      zero_skip=state), repeat=args.repeat))
                f0, b0, f1, b1 = times
                print(f"{batch:5d} {n_in:4d} {n_out:4d}  {zeros:4.2f} | {f0:7.1f} / {f1:7.1f} "
                      f"({f0 / f1:4.2f}×) | {b0:7.1f} / {b1:7.1f} ({b0 / b1:4.2f}×)")
    finally:
        _core._set_zero_skip_threshold(saved)


if __name__ == "__main__":
    main()
