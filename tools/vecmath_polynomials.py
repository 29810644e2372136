"""Fits the polynomials of csrc/vecmath_impl.h and prints them as C++ constants.

    python tools/vecmath_polynomials.py

Each function of the vector math is reduced to a short interval where a
polynomial is accurate to well below float's rounding (2⁻²⁴ relative); this
script finds the polynomials. It minimises the largest weighted error over
the interval (a minimax fit) by Lawson's algorithm: least squares, repeated
with each point's weight multiplied by its error, so the fit spends its
degrees of freedom where the error is largest. The coefficients are then
rounded to float, as the C++ uses them. The fits are done in double against
NumPy/SciPy's double-precision functions, which are far more accurate than
the float results need.

The accuracy of the finished functions (rounding included) is measured by
tests/cpp/test_vecmath.cpp, not here.
"""

import numpy as np
from scipy.special import erf, erfcx


def lawson(x, f, weight, degree, iterations=2000):
    """Coefficients c_0..c_degree minimising max |weight·(f − Σ c_k x^k)| over the points x."""
    basis = np.stack([x ** k for k in range(degree + 1)], axis=1)
    w = np.full(len(x), 1.0 / len(x))
    for _ in range(iterations):
        s = np.sqrt(w) * weight
        c, *_ = np.linalg.lstsq(s[:, None] * basis, s * f, rcond=None)
        error = np.abs(weight * (f - basis @ c))
        w *= error
        w /= w.sum()
    return c, error.max()


def chebyshev_points(lo, hi, n=3000):
    """n points on [lo, hi], denser near the ends, where polynomial errors peak."""
    t = np.cos(np.pi * (np.arange(n) + 0.5) / n)
    return np.sort(0.5 * (lo + hi) + 0.5 * (hi - lo) * t)


def show(name, what, coefficients, error):
    c = np.float32(coefficients)
    print(f"// {what}; fit error {error:.2e}")
    print(f"constexpr float {name}[] = {{" + ", ".join(f"{v:.9g}f" for v in c) + "};")


def main():
    # exp: e^r = 1 + r + r²·q(r) for |r| ≤ ln2/2 (and a little more: k is
    # rounded from x·log2(e) in float). The error is relative to e^r.
    r = chebyshev_points(-0.3466, 0.3466)
    r = r[np.abs(r) > 1e-6]
    c, e = lawson(r, (np.exp(r) - 1 - r) / r**2, r**2 / np.exp(r), 4)
    show("kExpPoly", "e^r = 1 + r + r^2 (c0 + c1 r + ... + c4 r^4), |r| <= ln2/2, relative", c, e)

    # log: log(1 + f) = f − f²/2 + f³·P(f) for 1 + f in [√½, √2); relative error.
    f = chebyshev_points(np.sqrt(0.5) - 1, np.sqrt(2) - 1)
    f = f[np.abs(f) > 1e-5]
    c, e = lawson(f, (np.log1p(f) - f + f * f / 2) / f**3, f**3 / np.abs(np.log1p(f)), 7)
    show("kLogPoly", "log(1+f) = f - f^2/2 + f^3 (c0 + c1 f + ... + c7 f^7), relative", c, e)

    # tanh: tanh(x) = x + x³·P(x²) for |x| < 0.625; relative error.
    x = chebyshev_points(1e-4, 0.625)
    c, e = lawson(x**2, (np.tanh(x) - x) / x**3, x**3 / np.tanh(x), 5)
    show("kTanhPoly", "tanh(x) = x + x^3 (c0 + c1 x^2 + ... + c5 x^10), |x| < 0.625, relative", c, e)

    # erf, small arguments: erf(z) = z + z·Q(z²) for |z| < 0.75; relative error.
    z = chebyshev_points(1e-4, 0.75)
    c, e = lawson(z**2, (erf(z) - z) / z, z / erf(z), 5)
    show("kErfPoly", "erf(z) = z + z (c0 + c1 z^2 + ... + c5 z^10), |z| < 0.75, relative", c, e)

    # erfc, larger arguments: erfc(a) = exp(−a² + S(a)), S(a) = log(erfc(a)·e^(a²))
    # for a in [0.75, 4] (erf(a) rounds to 1 beyond 3.92). S varies slowly
    # (−0.68 to −1.99), so a polynomial in u = a − 2.375 fits it with small,
    # decreasing terms; the −a² that makes erfc fall so fast is added exactly
    # by one fused multiply-add. Absolute error of S = relative error of erfc.
    a = chebyshev_points(0.75, 4.0)
    c, e = lawson(a - 2.375, np.log(erfcx(a)), np.ones_like(a), 8)
    show("kErfcPoly", "log(erfc(a)) + a^2 = c0 + c1 u + ... + c8 u^8, u = a - 2.375, a in [0.75, 4], absolute", c, e)

    # The normal CDF's tail, for GELU: Φ(−t) = ½ erfc(t/√2) = exp(−t²/2 + L(t)),
    # L(t) = log(½ erfcx(t/√2)), for t in [0, 5.66] (Φ(−5.66) = 7.6e-9). Fitted in
    # t itself, so that x/√2 is never rounded; centred at 0.7, which keeps the
    # float evaluation accurate near t = 0, where Φ ≈ ½ and GELU's relative
    # accuracy matters most. Absolute error of L = relative error of Φ(−t).
    t = chebyshev_points(0.0, 5.66)
    c, e = lawson(t - 0.7, np.log(0.5 * erfcx(t / np.sqrt(2))), np.ones_like(t), 11)
    show("kNormalTailPoly", "log(erfcx(t/sqrt2) / 2) = c0 + c1 u + ... + c11 u^11, u = t - 0.7, t in [0, 5.66], absolute", c, e)

if __name__ == "__main__":
    main()
