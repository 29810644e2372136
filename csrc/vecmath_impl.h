// vecmath_impl.h — the vector math algorithms, written once for every instruction set.
//
// Included at the end of vecmath_generic.cpp, vecmath_avx2.cpp and
// vecmath_avx512.cpp. Each of them first defines, in its own namespace, a type
// `Floats` of W float lanes (W = 1, 8 or 16) with:
//   Floats(float)                  all lanes set to one value
//   Floats::load(p), Floats::load_partial(p, n), Floats::first(n) (a Mask of
//   the first n lanes), store(p, v), store_partial(p, v, n), and
//   store_streaming(p, v), a non-temporal store to p aligned to the vector width
//   + − * / and fma(a, b, c) = a·b + c rounded once (IEEE, every lane)
//   min(a, b), max(a, b): as x86's minps/maxps, b when either is NaN — so
//     min(constant, x) lets a NaN x through
//   abs, copysign, comparisons giving a Mask, select(mask, a, b), mask & mask,
//   all(mask) (every lane true: a branch taken alike on every instruction set)
//   as_ints / as_floats (the bits), Ints with + − &, andnot(a, b) = ~a & b and
//   shifts, to_floats(Ints)
//   max_of(v) (largest lane), and Sum16, the 16 accumulators of sum16 (below)
//   Floats::chains, how many vectors map keeps in flight (Interleaved, below).
// The templates below only ever use those operations, so every instruction
// set performs the same IEEE operations in the same order on every lane and
// returns the same bits. The FMA is explicit everywhere; the build's
// -ffp-contract=off keeps the compiler from adding any.
//
// Everything is in an unnamed namespace: each including file gets its own
// copy, compiled with its own instruction set, and no copy can leak into
// another through the linker.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <tuple>
#include <type_traits>
#include <utility>

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
// Φ(−t) = exp(−t²/2 + L(t)), L(t) = c0 + c1 u + ... + c11 u¹¹ with u = t − 0.7,
// t in [0, 5.66]; absolute fit error of L (= relative error of Φ(−t)) 2.7e-8
constexpr float kNormalTailPoly[] = {-1.17396772f, -0.590499461f, 0.118980855f,
                                     -0.0238151792f, 0.00391019136f, -0.000400450605f,
                                     -2.03119853e-05f, 2.02980245e-05f, -4.8696611e-06f,
                                     6.64825279e-07f, -5.13383753e-08f, 1.73946069e-09f};

constexpr float kLog2e = 1.44269504f;               // 1/ln 2
constexpr float kLn2Hi = 0.693147182f;              // ln 2 rounded to float ...
constexpr float kLn2Lo = -1.90465430e-09f;          // ... and the rest: ln 2 − kLn2Hi
constexpr float kRoundShift = 12582912.0f;          // 1.5·2²³: x + this rounds x to an integer
constexpr int32_t kRoundShiftBits = 0x4B400000;     // its bits; bits(k + it) − it = k
constexpr float kExpMin = -104.0f;                  // e^x < 2⁻¹⁵⁰ below: rounds to 0
constexpr float kExpMax = 89.0f;                    // e^x > FLT_MAX above: overflows to inf
constexpr float kExpNormalMin = -86.0f;             // in [−86, 88], 2^k and e^x are normal
constexpr float kExpNormalMax = 88.0f;
constexpr float kMinNormal = 1.17549435e-38f;       // FLT_MIN
constexpr int32_t kSqrtHalfBits = 0x3f3504f3;       // bits of √½ (0.70710677)
constexpr float kInvSqrt2 = 0.707106781f;           // 1/√2
constexpr float kInvSqrt2Pi = 0.398942280f;         // 1/√(2π)
constexpr float kTanhSmall = 0.625f;                // tanh: polynomial below, exp above
constexpr float kErfSmall = 0.75f;                  // erf: polynomial below, exp(−a² + S) above
constexpr float kErfcCenter = 2.375f;
constexpr float kErfcMax = 4.0f;                    // erfc(4) = 1.5e-8: erf = 1 in float beyond
constexpr float kNormalTailCenter = 0.7f;
constexpr float kNormalTailMax = 5.66f;             // Φ(−5.66) = 7.6e-9
constexpr float kNormalTailZero = 12.9f;            // Φ(−12.9) = 2e-38: 0 beyond
constexpr float kNormalTailMin = 0x1p-60f;          // t²/2 < 2⁻¹²¹ below: vanishes beside L(t)
constexpr int32_t kMinusHalfBits = 0x7f800000;      // 2³¹ − 2²³: bits(t) + it = bits(−t/2)
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

// The core of e^x = 2^k · e^r, k = round(x / ln 2), r = x − k ln 2 in
// [−ln2/2, ln2/2]: returns e^r by a degree-6 polynomial, with k in the low
// mantissa bits of `shifted` (x·log2(e) + 1.5·2²³ rounds to an integer). r is
// exact enough because k ln 2 is subtracted in two parts (Cody and Waite),
// each with one FMA.
template <class F>
F exp_reduced(F x, F& shifted) {
    shifted = fma(x, F(kLog2e), F(kRoundShift));
    const F k = shifted - F(kRoundShift);
    F r = fma(k, F(-kLn2Hi), x);  // exact
    r = fma(k, F(-kLn2Lo), r);
    const F q = polynomial(r, kExpPoly);
    return fma(fma(q, r, F(1.0f)), r, F(1.0f));  // 1 + r (1 + r q) = 1 + r + r² q
}

// e^x for x in [−86, 88] only, where 2^k and e^x are normal floats: k is
// added to the exponent field of e^r. (shifted's bits are 0x4B400000 + k, and
// 0x4B400000 << 23 overflows to 0, so shifting them by 23 gives k << 23.)
// Integer lanes are cheaper here than a multiplication by 2^k, but a NaN x
// can come out as a number; callers send NaN lanes down another path.
template <class F>
F exp_normal_range(F x) {
    F shifted(0.0f);
    const F p = exp_reduced(x, shifted);
    return as_floats(as_ints(p) + (as_ints(shifted) << 23));
}

// e^x for every x: exp_normal_range when every lane allows it (the usual
// case), else x clamped to [−104, 89] (beyond, the result is 0 or inf
// anyway) and 2^k applied by scale_by_power_of_2. Both ways give the same bits
// where both apply, so the branch changes only the speed, never a result.
template <class F>
F exp(F x) {
    using I = decltype(as_ints(x));
    if (all((x >= F(kExpNormalMin)) & (x <= F(kExpNormalMax)))) return exp_normal_range(x);
    x = min(F(kExpMax), max(F(kExpMin), x));  // NaN stays NaN, and goes this way
    F shifted(0.0f);
    const F p = exp_reduced(x, shifted);
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
// of x that rounding lost (exact), so small x keep their digits. Where u = 1,
// log(1 + x) = x to float precision (and log1p(−0) = −0).
template <class F>
F log1p(F x) {
    const F u = F(1.0f) + x;
    const F c = x - (u - F(1.0f));
    const F y = log(u) + select(c == F(0.0f), F(0.0f), c / u);
    return select(u == F(1.0f), x, select(x < F(kInf), y, x));  // inf gives inf, NaN gives NaN
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

// tanh(x) = ±tanh(|x|), tanh(a) = a + a³ P(a²) for a < 0.625, else
// 1 − 2 / (e^2a + 1): no cancellation in either (1 − 2/(E + 1) ≥ 0.55), and
// e^2a = inf gives 1. The sign is copied last, so tanh(−0) = −0.
template <class F>
F tanh(F x) {
    const F a = abs(x);
    const F a2 = a * a;
    const F small = fma(a * a2, polynomial(a2, kTanhPoly), a);
    const F large = F(1.0f) - F(2.0f) / (exp(a + a) + F(1.0f));
    return copysign(select(a < F(kTanhSmall), small, large), x);
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

// t held to [2⁻⁶⁰, 12.9], where Φ(−t) is computed: beyond 12.9 it is 0, and
// below 2⁻⁶⁰ t²/2 < 2⁻¹²¹ vanishes beside anything it is added to.
template <class F>
F normal_tail_capped(F t) {
    return max(F(kNormalTailMin), min(F(kNormalTailZero), t));
}

// −t/2 for t in [2⁻⁶⁰, 12.9], exactly, as t's bits + kMinusHalfBits (one less
// in the exponent, the sign bit set): an integer add instead of a multiply.
template <class F>
F minus_half(F t) {
    using I = decltype(as_ints(t));
    return as_floats(as_ints(t) + I(kMinusHalfBits));
}

// Φ(x), the standard normal CDF, from its tail: Φ(−t) = e^(−t²/2 + L(t)) for
// t = |x| (L includes the factor ½), and Φ(x) = 1 − Φ(−x) for x > 0 (no
// cancellation: Φ(−t) ≤ ½). One polynomial and one exp for every x, and x/√2
// is never rounded. Beyond t = 5.66 L is held at L(5.66): the tail keeps
// falling like e^(−t²/2), with a relative error growing slowly (6 % at t = 6,
// where Φ(−6) = 1e-9). Beyond t = 12.9 the tail is 0 (it is < 3e-38 there).
// For a NaN x the result is not NaN: gelu and gelu_derivative multiply by x.
//
// Two steps use integer operations where floating-point ones would do, to
// leave the FMA units (which also run the comparisons) to the polynomials:
// −t/2 (minus_half, above), and the mask of the tail beyond 12.9: for t ≥ 0,
// t > 12.9 exactly when t's bits are larger than 12.9's as integers, so the
// sign of their difference, spread over the lane by >> 31, masks the tail to 0.
template <class F>
F normal_cdf(F x) {
    using I = decltype(as_ints(x));
    const F t = abs(x);
    const F l = polynomial(min(F(kNormalTailMax), t) - F(kNormalTailCenter), kNormalTailPoly);
    const F t_capped = normal_tail_capped(t);
    const F tail = exp_normal_range(fma(minus_half(t_capped), t_capped, l));
    const I beyond_zero = (as_ints(F(kNormalTailZero)) - as_ints(t)) >> 31;
    const F tail_or_0 = as_floats(andnot(beyond_zero, as_ints(tail)));
    return select(x > F(0.0f), F(1.0f) - tail_or_0, tail_or_0);
}

// GELU(x) = x Φ(x).
template <class F>
F gelu(F x) {
    return x * normal_cdf(x);
}

// dGELU/dx = Φ(x) + x φ(x), φ(x) = e^(−x²/2) / √(2π), taken as 0 where Φ's
// tail is (|x| > 12.9, also x = ±inf, where x·φ would be NaN).
template <class F>
F gelu_derivative(F x) {
    const F t = abs(x);
    const F t_capped = normal_tail_capped(t);
    const F pdf = exp_normal_range(minus_half(t_capped) * t_capped) * F(kInvSqrt2Pi);
    return normal_cdf(x) + select(t > F(kNormalTailZero), F(0.0f), x * pdf);  // NaN: x·pdf
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

// ---------------------------------------------------------------- interleaved vectors

// Interleaved<T, K>: K vectors (Floats, Ints or Mask) side by side, and every
// operation applied to each of them in turn, so an algorithm run on it emits
// K independent dependency chains, interleaved instruction by instruction.
// Why: GELU's Φ(x) is one chain of ~30 dependent operations (a degree-11
// polynomial, then exp's), ~100 cycles from x to Φ(x) at 4 cycles per FMA,
// and the core only looks about two vectors' worth of instructions ahead:
// it ran GELU at 31 FMA-times per vector where the arithmetic needs 25. With
// K = 4 chains side by side it always has independent work. Zen 4, one
// thread, ns per value, AVX-512 (AVX2): GELU 0.52 → 0.45 (0.89 → 0.66), its
// derivative 0.76 → 0.72 (1.28 → 0.99), erf 0.58 → 0.55 (1.28 → 0.69), tanh
// 0.44 → 0.42. Each vector gets exactly the operations it gets alone: the
// same bits.
template <class T, int K>
struct Interleaved {
    T v[K];
    // Every vector set to s: Interleaved<Floats, K>(0.5f), Interleaved<Ints, K>(23).
    template <class S, class = std::enable_if_t<std::is_arithmetic_v<S>>>
    explicit Interleaved(S s) : Interleaved(s, std::make_index_sequence<K>()) {}
    template <class... U, class = std::enable_if_t<sizeof...(U) == K && (std::is_same_v<U, T> && ...)>>
    explicit Interleaved(U... u) : v{u...} {}

  private:
    template <class S, size_t... J>
    Interleaved(S s, std::index_sequence<J...>) : v{((void)J, T(s))...} {}
};

// Interleaved{fn(a.v[0], b.v[0], ...), ..., fn(a.v[K−1], b.v[K−1], ...)}.
template <class Fn, class T, int K, class... More, size_t... J>
auto each(std::index_sequence<J...>, Fn fn, const Interleaved<T, K>& a, const More&... more) {
    const auto one = [&](size_t j) { return fn(a.v[j], more.v[j]...); };
    return Interleaved<decltype(one(0)), K>(one(J)...);
}
template <class Fn, class T, int K, class... More>
auto each(Fn fn, const Interleaved<T, K>& a, const More&... more) {
    return each(std::make_index_sequence<K>(), fn, a, more...);
}

#define FZ_INTERLEAVED_OPERATOR(op)                                                   \
    template <class T, int K>                                                       \
    auto operator op(const Interleaved<T, K>& a, const Interleaved<T, K>& b) {      \
        return each([](const T& p, const T& q) { return p op q; }, a, b);            \
    }
FZ_INTERLEAVED_OPERATOR(+)
FZ_INTERLEAVED_OPERATOR(-)
FZ_INTERLEAVED_OPERATOR(*)
FZ_INTERLEAVED_OPERATOR(/)
FZ_INTERLEAVED_OPERATOR(&)
FZ_INTERLEAVED_OPERATOR(<)
FZ_INTERLEAVED_OPERATOR(<=)
FZ_INTERLEAVED_OPERATOR(>)
FZ_INTERLEAVED_OPERATOR(>=)
FZ_INTERLEAVED_OPERATOR(==)
#undef FZ_INTERLEAVED_OPERATOR

template <class T, int K>
auto operator-(const Interleaved<T, K>& a) { return each([](const T& p) { return -p; }, a); }
template <class T, int K>
auto operator>>(const Interleaved<T, K>& a, int s) { return each([=](const T& p) { return p >> s; }, a); }
template <class T, int K>
auto operator<<(const Interleaved<T, K>& a, int s) { return each([=](const T& p) { return p << s; }, a); }

#define FZ_INTERLEAVED_FUNCTION(name)                                                 \
    template <class T, int K, class... More>                                        \
    auto name(const Interleaved<T, K>& a, const More&... more) {                    \
        return each([](const T& p, const auto&... q) { return name(p, q...); }, a, more...); \
    }
FZ_INTERLEAVED_FUNCTION(fma)
FZ_INTERLEAVED_FUNCTION(min)
FZ_INTERLEAVED_FUNCTION(max)
FZ_INTERLEAVED_FUNCTION(abs)
FZ_INTERLEAVED_FUNCTION(copysign)
FZ_INTERLEAVED_FUNCTION(select)
FZ_INTERLEAVED_FUNCTION(as_ints)
FZ_INTERLEAVED_FUNCTION(as_floats)
FZ_INTERLEAVED_FUNCTION(to_floats)
FZ_INTERLEAVED_FUNCTION(andnot)
#undef FZ_INTERLEAVED_FUNCTION

template <class T, int K>
bool all(const Interleaved<T, K>& m) {
    bool every = true;
    for (int j = 0; j < K; ++j) every = every && all(m.v[j]);
    return every;
}

// ---------------------------------------------------------------- array loops

// The F::chains vectors from p, as one Interleaved; and its store.
template <class F, size_t... J>
Interleaved<F, sizeof...(J)> load_interleaved(const float* p, std::index_sequence<J...>) {
    return Interleaved<F, sizeof...(J)>(F::load(p + J * F::width)...);
}
template <class F, int K = F::chains>
Interleaved<F, K> load_interleaved(const float* p) {
    return load_interleaved<F>(p, std::make_index_sequence<K>());
}
template <class F, int K>
void store(float* p, const Interleaved<F, K>& a) {
    for (int j = 0; j < K; ++j) store(p + j * F::width, a.v[j]);
}

// y[i] = op(x[i]) for i < n: K vectors per step as one Interleaved (F::chains
// unless the caller says otherwise), then one vector per step, then the last
// partial vector through masked loads and stores. Each step loads its inputs
// before it stores, so y may alias x. op takes F or Interleaved (a generic
// lambda). flatten inlines all of op: GCC would otherwise call
// normal_cdf<Interleaved> out of line and pass its vectors through memory.
template <class F, int K = F::chains, class Op>
[[gnu::flatten]] void map(const float* x, float* y, int64_t n, Op op) {
    constexpr int W = F::width;
    int64_t i = 0;
    for (; i + W * K <= n; i += W * K) store(y + i, op(load_interleaved<F, K>(x + i)));
    for (; i + W <= n; i += W) store(y + i, op(F::load(x + i)));
    if (i < n) store_partial(y + i, op(F::load_partial(x + i, n - i)), n - i);
}

// dx[i] = dy[i] · f'(x[i]), in the steps of map.
template <class F, class Derivative>
[[gnu::flatten]] void map_backward(const float* x, const float* dy, float* dx, int64_t n,
                                   Derivative derivative) {
    constexpr int W = F::width, K = F::chains;
    int64_t i = 0;
    for (; i + W * K <= n; i += W * K)
        store(dx + i, load_interleaved<F>(dy + i) * derivative(load_interleaved<F>(x + i)));
    for (; i + W <= n; i += W) store(dx + i, F::load(dy + i) * derivative(F::load(x + i)));
    if (i < n) {
        const int64_t m = n - i;
        store_partial(dx + i, F::load_partial(dy + i, m) * derivative(F::load_partial(x + i, m)), m);
    }
}

// y[i] = op(a[i], ...) over n values of one or more inputs: two vectors per
// step, then one, then a last partial vector through masked loads and
// stores. For the memory-bound activations, where a plain loop's alias
// checks, remainder loop and one-vector steps cost a third more instructions
// than the work. kStreamed: the whole vectors are written by
// store_streaming, which needs y aligned to the vector width
// (zip_map_aligned sees to it).
//
// Each vector's inputs are loaded before the previous vector is stored. The
// CPU matches a load against the older stores still in flight by the low 12
// bits of their addresses (the offset within a 4 KiB page), and a load that
// seems to overlap one waits for it ("4K aliasing"). When y starts a few
// bytes past an input within the page — as arrays allocated one after
// another from the heap often do — the loads of each vector would wait for
// the store of the one before. Softmax's backward over 4096×1024, 2 threads
// of a Zen 4, with dx 16 bytes past y and 32 past dy within the page: 590–830
// → 490–685 µs (sigmoid's: 505–665 → 400–575 µs); with the arrays at the
// same offset, unchanged (one vector ahead is enough for these offsets; two
// cost a few % there). A load still precedes the store of the value it
// reads, so y may alias any input.
template <class F, bool kStreamed = false, class Op, class... In>
void zip_map(float* y, int64_t n, Op op, const In*... in) {
    constexpr int W = F::width;
    using Loaded = std::array<F, sizeof...(In)>;  // one vector of each input
    const auto put = [](float* p, F v) {
        if constexpr (kStreamed) store_streaming(p, v);
        else store(p, v);
    };
    const auto load = [&](int64_t i) { return Loaded{F::load(in + i)...}; };
    int64_t i = 0;
    if (n >= W) {
        Loaded a = load(0);
        for (; i + 3 * W <= n; i += 2 * W) {
            const Loaded b = load(i + W);
            put(y + i, std::apply(op, a));
            a = load(i + 2 * W);
            put(y + i + W, std::apply(op, b));
        }
        put(y + i, std::apply(op, a));
        i += W;
    }
    for (; i + W <= n; i += W) put(y + i, op(F::load(in + i)...));
    if (i < n) store_partial(y + i, op(F::load_partial(in + i, n - i)...), n - i);
}

// zip_map after one masked step that brings y to a multiple of the vector
// width, for the elementwise kernels over whole arrays (or a thread's chunk
// of one, cut anywhere). Then no store spans two cache lines, nor any load
// from an input at the same offset — and NumPy puts every large array at the
// same offset, 16 bytes past a page. ReLU over 4096×1024 on one thread of a
// Zen 4 core: 660 → 590 µs. Same values either way (each output is op of its
// own inputs); not for the rows of softmax's backward, where one masked step
// per 1024-float row cost more than it saved.
template <class F, bool kStreamed = false, class Op, class... In>
void zip_map_aligned(float* y, int64_t n, Op op, const In*... in) {
    constexpr auto kBytes = static_cast<uintptr_t>(F::width * sizeof(float));
    const uintptr_t past = reinterpret_cast<uintptr_t>(y) % kBytes;
    int64_t head = past == 0 ? 0 : static_cast<int64_t>((kBytes - past) / sizeof(float));
    if (head > n) head = n;
    if (head > 0) store_partial(y, op(F::load_partial(in, head)...), head);
    zip_map<F, kStreamed>(y + head, n - head, op, (in + head)...);
}

// The loops of the memory-bound kernels, their output cached or streamed
// (vecmath.h's Store): over whole arrays or chunks, always aligned first;
// over softmax's rows (row_map), aligned only when streamed, which needs it.
template <class F, class Op, class... In>
void elementwise_map(bool streamed, float* y, int64_t n, Op op, const In*... in) {
    if (streamed) zip_map_aligned<F, true>(y, n, op, in...);
    else zip_map_aligned<F>(y, n, op, in...);
}
template <class F, class Op, class... In>
void row_map(bool streamed, float* y, int64_t n, Op op, const In*... in) {
    if (streamed) zip_map_aligned<F, true>(y, n, op, in...);
    else zip_map<F>(y, n, op, in...);
}

// Sums in one fixed order, the same on every instruction set. Element i goes
// to lane i mod 16 of a Sum16, which has 16 double accumulators, combined at
// the end as a fixed tree (lane l + lane l+8, then l + l+4, l + l+2, 0 + 1),
// and 16 float accumulators in front of them:
//   add_exact(piece, v)      adds v's lanes to the doubles (each float is exact there);
//   add_product(piece, a, b) adds a·b to the floats by FMA, as cheap as a
//     float sum; the floats are flushed into the doubles every 256
//     elements, which bounds their rounding error to that of 16 terms.
// A piece is the W lanes of one Floats: pieces 0..16/W−1 make up the 16 lanes.
constexpr int64_t kFlushEvery = 256;

// Σ value(i, lanes) over [0, n): value(i, lanes) returns the W values from i
// (only the first `lanes` valid; the others are replaced by 0, which leaves
// the sums unchanged). add(acc, piece, v) adds them to the accumulator.
template <class F, class Value, class Add>
double sum16(int64_t n, Value value, Add add) {
    constexpr int W = F::width, kPieces = 16 / W;
    auto acc = new_sum16(F(0.0f));
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        for (int p = 0; p < kPieces; ++p) add(acc, p, value(i + p * W, int64_t{W}));
        if ((i + 16) % kFlushEvery == 0) acc.flush();
    }
    for (int p = 0; i + p * W < n; ++p) {
        const int64_t lanes = n - i - p * W < W ? n - i - p * W : W;
        add(acc, p, value(i + p * W, lanes));
    }
    return acc.total();
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

// x + i, with lanes ≥ `lanes` zero.
template <class F>
F load_zero_padded(const float* x, int64_t i, int64_t lanes) {
    return lanes == F::width ? F::load(x + i) : F::load_partial(x + i, lanes);
}

// Σ x_i, each term exact in double: the normalisers of the losses, where a
// small relative error can be amplified by a cancellation later.
template <class F>
double sum_row(const float* x, int64_t n) {
    return sum16<F>(
        n, [=](int64_t i, int64_t lanes) { return load_zero_padded<F>(x, i, lanes); },
        [](auto& acc, int p, F v) { acc.add_exact(p, v); });
}

// Σ a_i b_i: products accumulated by FMA in the float lanes.
template <class F>
double dot_row(const float* a, const float* b, int64_t n) {
    struct Pair {
        F a, b;
    };
    return sum16<F>(
        n,
        [=](int64_t i, int64_t lanes) {
            return Pair{load_zero_padded<F>(a, i, lanes), load_zero_padded<F>(b, i, lanes)};
        },
        [](auto& acc, int p, Pair v) { acc.add_product(p, v.a, v.b); });
}

// y[i] = e^(x[i] − shift) (y may be null) and returns Σ_i e^(x[i] − shift).
template <class F>
double exp_sum_row(const float* x, float shift, float* y, int64_t n) {
    const F s(shift);
    return sum16<F>(
        n,
        [=](int64_t i, int64_t lanes) {
            const F e = exp(load_zero_padded<F>(x, i, lanes) - s);
            if (lanes == F::width) {
                if (y) store(y + i, e);
                return e;
            }
            if (y) store_partial(y + i, e, lanes);
            return select(F::first(lanes), e, F(0.0f));  // e^(0 − shift) in the padding
        },
        [](auto& acc, int p, F v) { acc.add_exact(p, v); });
}

// The table of one instruction set. constexpr, and each file defines its
// table constexpr, so the table is data in the binary: no initialisation code
// runs at load time, where code compiled for AVX-512 would crash a CPU without it.
template <class F>
constexpr VecMathKernels make_kernels(const char* name) {
    return {
        name,
        [](const float* x, float* y, int64_t n) { map<F>(x, y, n, [](auto v) { return exp(v); }); },
        [](const float* x, float* y, int64_t n) {
            // a short chain: interleaved, no faster on AVX2 and 8 % slower on AVX-512 (Zen 4)
            map<F, 1>(x, y, n, [](auto v) { return log(v); });
        },
        [](const float* x, float* y, int64_t n) { map<F>(x, y, n, [](auto v) { return log1p(v); }); },
        [](const float* x, float* y, int64_t n) { map<F>(x, y, n, [](auto v) { return sigmoid(v); }); },
        [](const float* x, float* y, int64_t n) { map<F>(x, y, n, [](auto v) { return tanh(v); }); },
        [](const float* x, float* y, int64_t n) { map<F>(x, y, n, [](auto v) { return erf(v); }); },
        [](const float* x, float* y, int64_t n) { map<F>(x, y, n, [](auto v) { return gelu(v); }); },
        [](const float* x, float* y, int64_t n) {
            map<F>(x, y, n, [](auto v) { return gelu_tanh(v); });
        },
        [](const float* x, const float* dy, float* dx, int64_t n) {
            map_backward<F>(x, dy, dx, n, [](auto v) { return gelu_derivative(v); });
        },
        [](const float* x, const float* dy, float* dx, int64_t n) {
            map_backward<F>(x, dy, dx, n, [](auto v) { return gelu_tanh_derivative(v); });
        },
        // The activations without transcendental functions, and the
        // derivatives written from the output y (activations.h).
        [](const float* x, float* y, int64_t n, bool streamed) {
            // a NaN x passes
            elementwise_map<F>(streamed, y, n, [](F v) { return max(F(0.0f), v); }, x);
        },
        [](const float* x, float* y, int64_t n, float alpha, bool streamed) {
            elementwise_map<F>(streamed, y, n,
                               [=](F v) { return select(v > F(0.0f), v, F(alpha) * v); }, x);
        },
        [](const float* y, const float* dy, float* dx, int64_t n, bool streamed) {
            elementwise_map<F>(streamed, dx, n,
                               [](F out, F g) { return select(out > F(0.0f), g, F(0.0f)); }, y, dy);
        },
        [](const float* y, const float* dy, float* dx, int64_t n, float alpha, bool streamed) {
            elementwise_map<F>(streamed, dx, n,
                               [=](F out, F g) { return select(out > F(0.0f), g, F(alpha) * g); },
                               y, dy);
        },
        [](const float* y, const float* dy, float* dx, int64_t n, bool streamed) {
            elementwise_map<F>(streamed, dx, n, [](F out, F g) { return g * out * (F(1.0f) - out); },
                               y, dy);
        },
        [](const float* y, const float* dy, float* dx, int64_t n, bool streamed) {
            elementwise_map<F>(streamed, dx, n, [](F out, F g) { return g * (F(1.0f) - out * out); },
                               y, dy);
        },
        [](const float* y, const float* dy, float s, float* dx, int64_t n, bool streamed) {
            row_map<F>(streamed, dx, n, [=](F out, F g) { return out * (g - F(s)); }, y, dy);
        },
        [](const float* y, const float* dy, float s, float* dx, int64_t n) {
            zip_map<F>(dx, n, [=](F out, F g) { return g - exp(out) * F(s); }, y, dy);
        },
        &max_row<F>,
        &sum_row<F>,
        &dot_row<F>,
        &exp_sum_row<F>,
    };
}

}  // namespace
}  // namespace fz::vec
