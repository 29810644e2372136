// vecmath_impl.h — the vector math algorithms, written once for every instruction set.
//
// Included at the end of vecmath_generic.cpp, vecmath_avx2.cpp and
// vecmath_avx512.cpp. Each of them first defines, in its own namespace, a type
// `Floats` of W float lanes (W = 1, 8 or 16) with:
//   Floats(float)                  all lanes set to one value
//   Floats::load(p), Floats::load_partial(p, n), Floats::first(n) (a Mask of
//   the first n lanes), store(p, v), store_partial(p, v, n)
//   + − * / and fma(a, b, c) = a·b + c rounded once (IEEE, every lane)
//   min(a, b), max(a, b): as x86's minps/maxps, b when either is NaN — so
//     min(constant, x) lets a NaN x through
//   abs, copysign, comparisons giving a Mask, select(mask, a, b), mask & mask
//   as_ints / as_floats (the bits), Ints with + − & and shifts, to_floats(Ints)
//   max_of(v) (largest lane), and Sum16, 16 double accumulators (below).
// The templates below only ever use those operations, so every instruction
// set performs the same IEEE operations in the same order on every lane and
// returns the same bits. The FMA is explicit everywhere; the build's
// -ffp-contract=off keeps the compiler from adding any.
//
// Everything is in an unnamed namespace: each including file gets its own
// copy, compiled with its own instruction set, and no copy can leak into
// another through the linker.
#pragma once
#include <cstdint>
#include <limits>

#include "vecmath_kernels.h"

namespace fz::vec {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// The polynomials, fitted by tools/vecmath_polynomials.py (minimax, then
// rounded to float). Coefficients in increasing powers.
// e^r = 1 + r + r² (c0 + c1 r + ... + c4 r⁴), |r| ≤ ln2/2; relative fit error 3.1e-9
constexpr float kExpPoly[] = {0.49999994f, 0.166665211f, 0.041668389f, 0.00836871564f,
                              0.00138146023f};
// log(1 + f) = f − f²/2 + f³ (c0 + ... + c7 f⁷), 1 + f in [√½, √2); relative fit error 5.8e-9
constexpr float kLogPoly[] = {0.333333313f, -0.250008196f, 0.200012267f, -0.166233569f,
                              0.142017573f, -0.131601825f,  0.12761578f,  -0.0763449892f};
// tanh(x) = x + x³ (c0 + c1 x² + ... + c5 x¹⁰), |x| < 0.625; relative fit error 1.6e-10
constexpr float kTanhPoly[] = {-0.333333313f, 0.133332059f, -0.0539467633f, 0.0217007026f,
                               -0.0081773987f, 0.00214296184f};
// erf(z) = z + z (c0 + c1 z² + ... + c5 z¹⁰), |z| < 0.75; relative fit error 1.4e-9
constexpr float kErfPoly[] = {0.128379166f, -0.3761262f, 0.112833768f, -0.0268346258f,
                              0.00511434581f, -0.000674951647f};
// erfc(a) = exp(−a² + S(a)), S(a) = c0 + c1 u + ... + c8 u⁸ with u = a − 2.375,
// a in [0.75, 4]; absolute fit error of S (= relative error of erfc) 3.0e-8
constexpr float kErfcPoly[] = {-1.51183176f, -0.367233723f, 0.0603900701f, -0.0120097492f,
                               0.00244618626f, -0.00048288572f, 9.02005486e-05f,
                               -1.48777817e-05f, 1.51421057e-06f};

constexpr float kLog2e = 1.44269504f;               // 1/ln 2
constexpr float kLn2Hi = 0.693147182f;              // ln 2 rounded to float ...
constexpr float kLn2Lo = -1.90465430e-09f;          // ... and the rest: ln 2 − kLn2Hi
constexpr float kRoundShift = 12582912.0f;          // 1.5·2²³: x + this rounds x to an integer
constexpr int32_t kRoundShiftBits = 0x4B400000;     // its bits; bits(k + it) − it = k
constexpr float kExpMin = -104.0f;                  // e^x < 2⁻¹⁵⁰ below: rounds to 0
constexpr float kExpMax = 89.0f;                    // e^x > FLT_MAX above: overflows to inf
constexpr float kMinNormal = 1.17549435e-38f;       // FLT_MIN
constexpr int32_t kSqrtHalfBits = 0x3f3504f3;       // bits of √½ (0.70710677)
constexpr float kInvSqrt2 = 0.707106781f;           // 1/√2
constexpr float kInvSqrt2Pi = 0.398942280f;         // 1/√(2π)
constexpr float kTanhSmall = 0.625f;                // tanh: polynomial below, exp above
constexpr float kErfSmall = 0.75f;                  // erf: polynomial below, exp(−a² + S) above
constexpr float kErfcCenter = 2.375f;
constexpr float kErfcMax = 4.0f;                    // erfc(4) = 1.5e-8: erf = 1 in float beyond
// The tanh approximation of GELU: 0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³))) = x σ(x (k0 + k1 x²))
constexpr float kGeluTanhK0 = 1.59576912f;          // 2 √(2/π)
constexpr float kGeluTanhK1 = 0.0713548162f;        // 2 √(2/π) · 0.044715

// c[0] + c[1] x + ... + c[N−1] x^(N−1) by Horner's rule, one FMA per coefficient.
template <class F, int N>
F polynomial(F x, const float (&c)[N]) {
    F p(c[N - 1]);
    for (int i = N - 2; i >= 0; --i) p = fma(p, x, F(c[i]));
    return p;
}

// p · 2^k for integer lanes k in [−150, 128], as two multiplications by
// 2^(k/2)-ish factors so that neither factor overflows nor underflows: the
// first product is exact, and the second rounds once, also when the result is
// denormal (gradual underflow) or overflows to inf.
template <class F, class I>
F scale_by_power_of_2(F p, I k) {
    const I k1 = k >> 1, k2 = k - k1;
    return p * as_floats((k1 + I(127)) << 23) * as_floats((k2 + I(127)) << 23);
}

// e^x. Range reduction: e^x = 2^k · e^r with k = round(x / ln 2) and
// r = x − k ln 2 in [−ln2/2, ln2/2], computed exactly enough by subtracting
// k ln 2 in two parts (Cody and Waite), each with one FMA. Then a degree-6
// polynomial for e^r and the exponent k put in by integer arithmetic.
// x is clamped to [−104, 89] first: beyond, the result is 0 or inf anyway.
template <class F>
F exp(F x) {
    using I = decltype(as_ints(x));
    x = min(F(kExpMax), max(F(kExpMin), x));
    const F shifted = fma(x, F(kLog2e), F(kRoundShift));  // k in the low mantissa bits
    const F k = shifted - F(kRoundShift);
    F r = fma(k, F(-kLn2Hi), x);  // exact
    r = fma(k, F(-kLn2Lo), r);
    const F q = polynomial(r, kExpPoly);
    const F p = fma(fma(q, r, F(1.0f)), r, F(1.0f));  // 1 + r (1 + r q) = 1 + r + r² q
    return scale_by_power_of_2(p, as_ints(shifted) - I(kRoundShiftBits));
}

// log(x) = e ln 2 + log(m), x = 2^e m with m in [√½, √2), and
// log(m) = log(1 + f) = f − f²/2 + f³ P(f), f = m − 1 (exact) in [−0.29, 0.41].
// Denormal x is first scaled by 2²³. log(±0) = −inf, log(x < 0) = NaN.
template <class F>
F log(F x) {
    using I = decltype(as_ints(x));
    const auto denormal = x < F(kMinNormal);
    const F xs = select(denormal, x * F(8388608.0f), x);
    const I t = as_ints(xs) - I(kSqrtHalfBits);
    const F e = to_floats(t >> 23) - select(denormal, F(23.0f), F(0.0f));
    const F f = as_floats((t & I(0x007fffff)) + I(kSqrtHalfBits)) - F(1.0f);
    const F f2 = f * f;
    F y = f2 * f * polynomial(f, kLogPoly);
    y = fma(e, F(kLn2Lo), y);
    y = fma(f2, F(-0.5f), y);
    y = f + y;
    y = fma(e, F(kLn2Hi), y);
    const F special = select(x == F(0.0f), F(-kInf), select(x < F(0.0f), F(kNaN), x));
    return select((x > F(0.0f)) & (x < F(kInf)), y, special);  // inf and NaN give x
}

// log(1 + x) = log(u) + c / u, u = 1 + x rounded and c = x − (u − 1) the part
// of x that rounding lost (exact), so small x keep their digits.
template <class F>
F log1p(F x) {
    const F u = F(1.0f) + x;
    const F c = x - (u - F(1.0f));
    const F y = log(u) + select(c == F(0.0f), F(0.0f), c / u);
    return select(x < F(kInf), y, x);  // inf gives inf, NaN gives NaN
}

// σ(x) = 1 / (1 + e^−x), from e = e^−|x| in (0, 1] so nothing overflows:
// σ(x) = 1/(1 + e) for x ≥ 0 and e/(1 + e) for x < 0 (which keeps the tiny
// values of σ for x << 0 instead of rounding 1/(1 + huge) to 0).
template <class F>
F sigmoid(F x) {
    const F e = exp(-abs(x));
    const F num = select(x >= F(0.0f), F(1.0f), e);
    const F y0 = num / (F(1.0f) + e);
    return fma(-e, y0, num);
}

// tanh(x) = x + x³ P(x²) for |x| < 0.625, else ±(1 − 2 / (e^2|x| + 1)): no
// cancellation in either (1 − 2/(E + 1) ≥ 0.55), and e^2|x| = inf gives ±1.
template <class F>
F tanh(F x) {
    const F a = abs(x);
    const F x2 = x * x;
    const F small = fma(x * x2, polynomial(x2, kTanhPoly), x);
    const F large = F(1.0f) - F(2.0f) / (exp(a + a) + F(1.0f));
    return select(a < F(kTanhSmall), small, copysign(large, x));
}

// erfc(a) = exp(−a² + S(a)) for a in [0.75, 4] (a is clamped to 4).
template <class F>
F erfc_large(F a) {
    a = min(F(kErfcMax), a);
    return exp(fma(-a, a, polynomial(a - F(kErfcCenter), kErfcPoly)));
}

// erf(z) = z + z Q(z²) for |z| < 0.75, else ±(1 − erfc(|z|)).
template <class F>
F erf(F z) {
    const F a = abs(z);
    const F small = fma(z, polynomial(z * z, kErfPoly), z);
    const F large = copysign(F(1.0f) - erfc_large(a), z);
    return select(a < F(kErfSmall), small, large);
}

// Φ(x), the standard normal CDF, = (1 + erf(x/√2)) / 2. For x < 0 it is
// erfc(|x|/√2) / 2, computed directly: 1 + erf would cancel.
template <class F>
F normal_cdf(F x) {
    const F z = x * F(kInvSqrt2);
    const F a = abs(z);
    const F small = fma(fma(z, polynomial(z * z, kErfPoly), z), F(0.5f), F(0.5f));
    const F half_erfc = select(a <= F(kErfcMax), F(0.5f) * erfc_large(a), F(0.0f));
    const F large = select(z > F(0.0f), F(1.0f) - half_erfc, half_erfc);
    return select(a < F(kErfSmall), small, large);
}

// GELU(x) = x Φ(x).
template <class F>
F gelu(F x) {
    return x * normal_cdf(x);
}

// dGELU/dx = Φ(x) + x φ(x), φ(x) = e^(−x²/2) / √(2π). Where φ underflows to
// 0 the second term is 0 (also for x = ±inf, where x·φ would be NaN).
template <class F>
F gelu_derivative(F x) {
    const F pdf = exp(F(-0.5f) * x * x) * F(kInvSqrt2Pi);
    return normal_cdf(x) + select(pdf == F(0.0f), F(0.0f), x * pdf);
}

// The tanh approximation: 0.5 x (1 + tanh(u)) with u = √(2/π) (x + 0.044715 x³)
// equals x σ(2u), and 2u = x (k0 + k1 x²).
template <class F>
F gelu_tanh(F x) {
    return x * sigmoid(x * fma(x * x, F(kGeluTanhK1), F(kGeluTanhK0)));
}

// d/dx [x σ(v)] = σ(v) + x σ'(v) dv/dx, v = x (k0 + k1 x²), dv/dx = k0 + 3 k1 x²,
// σ'(v) = σ(v) (1 − σ(v)) = e / (1 + e)² with e = e^−|v|: computed from e, as
// 1 − σ(v) would cancel for large v. Where σ' underflows to 0 the second term
// is 0 (x·0·inf would be NaN for huge x).
template <class F>
F gelu_tanh_derivative(F x) {
    const F x2 = x * x;
    const F v = x * fma(x2, F(kGeluTanhK1), F(kGeluTanhK0));
    const F e = exp(-abs(v));
    const F r = F(1.0f) / (F(1.0f) + e);
    const F s = select(v >= F(0.0f), r, e * r);
    const F ds = e * r * r;
    const F dv = fma(x2, F(3.0f * kGeluTanhK1), F(kGeluTanhK0));
    return s + select(ds == F(0.0f), F(0.0f), x * ds * dv);
}

// ---------------------------------------------------------------- array loops

// y[i] = op(x[i]) for i < n; the last partial vector through masked loads and stores.
template <class F, class Op>
void map(const float* x, float* y, int64_t n, Op op) {
    constexpr int W = F::width;
    int64_t i = 0;
    for (; i + W <= n; i += W) store(y + i, op(F::load(x + i)));
    if (i < n) store_partial(y + i, op(F::load_partial(x + i, n - i)), n - i);
}

// dx[i] = dy[i] · f'(x[i]).
template <class F, class Derivative>
void map_backward(const float* x, const float* dy, float* dx, int64_t n, Derivative derivative) {
    constexpr int W = F::width;
    int64_t i = 0;
    for (; i + W <= n; i += W) store(dx + i, F::load(dy + i) * derivative(F::load(x + i)));
    if (i < n) {
        const int64_t m = n - i;
        store_partial(dx + i, F::load_partial(dy + i, m) * derivative(F::load_partial(x + i, m)), m);
    }
}

// Σ value(i, lanes) over [0, n) in a fixed order, the same for every
// instruction set: element i goes to double accumulator i mod 16, and the 16
// accumulators are combined at the end as a fixed tree (Sum16::total).
// value(i, lanes) returns the W values from i (only the first `lanes` valid;
// the others are replaced by 0, which leaves the sums unchanged).
template <class F, class Value>
double sum16(int64_t n, Value value) {
    constexpr int W = F::width, kPieces = 16 / W;
    auto acc = new_sum16(F(0.0f));
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int p = 0; p < kPieces; ++p) acc.add(p, value(i + p * W, int64_t{W}));
    for (int p = 0; i + p * W < n; ++p) {
        const int64_t lanes = n - i - p * W < W ? n - i - p * W : W;
        acc.add(p, select(F::first(lanes), value(i + p * W, lanes), F(0.0f)));
    }
    return acc.total();
}

// A vector from x + i, fully or partially loaded.
template <class F>
F load_lanes(const float* x, int64_t i, int64_t lanes) {
    return lanes == F::width ? F::load(x + i) : F::load_partial(x + i, lanes);
}

template <class F>
float max_row(const float* x, int64_t n) {
    constexpr int W = F::width;
    F m(-kInf);
    int64_t i = 0;
    for (; i + W <= n; i += W) m = max(F::load(x + i), m);  // a NaN in x is skipped
    if (i < n) m = max(select(F::first(n - i), F::load_partial(x + i, n - i), F(-kInf)), m);
    return max_of(m) + 0.0f;  // + 0 turns −0 into +0, whatever order met ±0
}

template <class F>
double sum_row(const float* x, int64_t n) {
    return sum16<F>(n, [=](int64_t i, int64_t lanes) { return load_lanes<F>(x, i, lanes); });
}

// Products of floats are exact in double, so Σ a_i b_i has one rounding per addition.
template <class F>
double dot_row(const float* a, const float* b, int64_t n) {
    constexpr int W = F::width, kPieces = 16 / W;
    auto acc = new_sum16(F(0.0f));
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int p = 0; p < kPieces; ++p)
            acc.add_product(p, F::load(a + i + p * W), F::load(b + i + p * W));
    for (int p = 0; i + p * W < n; ++p) {
        const int64_t lanes = n - i - p * W < W ? n - i - p * W : W;
        const F zero(0.0f);
        acc.add_product(p, select(F::first(lanes), load_lanes<F>(a, i + p * W, lanes), zero),
                        select(F::first(lanes), load_lanes<F>(b, i + p * W, lanes), zero));
    }
    return acc.total();
}

// y[i] = e^(x[i] − shift) (y may be null) and returns Σ_i e^(x[i] − shift).
template <class F>
double exp_sum_row(const float* x, float shift, float* y, int64_t n) {
    const F s(shift);
    return sum16<F>(n, [=](int64_t i, int64_t lanes) {
        const F e = exp(load_lanes<F>(x, i, lanes) - s);
        if (y) {
            if (lanes == F::width) store(y + i, e);
            else store_partial(y + i, e, lanes);
        }
        return e;
    });
}

// The table of one instruction set.
template <class F>
VecMathKernels make_kernels(const char* name) {
    return {
        name,
        [](const float* x, float* y, int64_t n) { map<F>(x, y, n, [](F v) { return exp(v); }); },
        [](const float* x, float* y, int64_t n) { map<F>(x, y, n, [](F v) { return log(v); }); },
        [](const float* x, float* y, int64_t n) { map<F>(x, y, n, [](F v) { return log1p(v); }); },
        [](const float* x, float* y, int64_t n) { map<F>(x, y, n, [](F v) { return sigmoid(v); }); },
        [](const float* x, float* y, int64_t n) { map<F>(x, y, n, [](F v) { return tanh(v); }); },
        [](const float* x, float* y, int64_t n) { map<F>(x, y, n, [](F v) { return erf(v); }); },
        [](const float* x, float* y, int64_t n) { map<F>(x, y, n, [](F v) { return gelu(v); }); },
        [](const float* x, float* y, int64_t n) {
            map<F>(x, y, n, [](F v) { return gelu_tanh(v); });
        },
        [](const float* x, const float* dy, float* dx, int64_t n) {
            map_backward<F>(x, dy, dx, n, [](F v) { return gelu_derivative(v); });
        },
        [](const float* x, const float* dy, float* dx, int64_t n) {
            map_backward<F>(x, dy, dx, n, [](F v) { return gelu_tanh_derivative(v); });
        },
        &max_row<F>,
        &sum_row<F>,
        &dot_row<F>,
        &exp_sum_row<F>,
    };
}

}  // namespace
}  // namespace fz::vec
