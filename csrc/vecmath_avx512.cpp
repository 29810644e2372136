// The vector math on AVX-512F: 16 float lanes in a ZMM register.
//
// Only the lane type is defined here; the algorithms are vecmath_impl.h's.
// Compiled with -mavx512f -mfma and used only when CPUID reports AVX-512F.
// Partial vectors use AVX-512's lane masks: a masked load reads no memory
// beyond the last element.

// GCC 12 reports the deliberately undefined pass-through operand inside
// several AVX-512 intrinsics as uninitialised (GCC bug 105593); the warning is
// about the compiler's header, not this code.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <cstdint>

#include "vecmath_kernels.h"

namespace fz::vec::avx512 {
namespace {

struct Mask {
    __mmask16 k;
};
inline Mask operator&(Mask a, Mask b) { return {static_cast<__mmask16>(a.k & b.k)}; }
inline bool all(Mask a) { return a.k == 0xFFFF; }

struct Ints {
    __m512i v;
    Ints(__m512i v_) : v(v_) {}
    explicit Ints(int32_t s) : v(_mm512_set1_epi32(s)) {}
};
inline Ints operator+(Ints a, Ints b) { return _mm512_add_epi32(a.v, b.v); }
inline Ints operator-(Ints a, Ints b) { return _mm512_sub_epi32(a.v, b.v); }
inline Ints operator&(Ints a, Ints b) { return _mm512_and_si512(a.v, b.v); }
inline Ints andnot(Ints a, Ints b) { return _mm512_andnot_si512(a.v, b.v); }  // ~a & b
inline Ints operator>>(Ints a, int s) { return _mm512_sra_epi32(a.v, _mm_cvtsi32_si128(s)); }  // arithmetic
inline Ints operator<<(Ints a, int s) { return _mm512_sll_epi32(a.v, _mm_cvtsi32_si128(s)); }

struct Floats {
    static constexpr int width = 16;
    static constexpr int chains = 4;  // vectors in flight in map (vecmath_impl.h)
    __m512 v;
    Floats(__m512 v_) : v(v_) {}
    Floats(float s) : v(_mm512_set1_ps(s)) {}
    static Mask first(int64_t n) { return {static_cast<__mmask16>((1u << n) - 1)}; }
    static Floats load(const float* p) { return _mm512_loadu_ps(p); }
    static Floats load_partial(const float* p, int64_t n) {
        return _mm512_maskz_loadu_ps(first(n).k, p);
    }
};
inline void store(float* p, Floats a) { _mm512_storeu_ps(p, a.v); }
inline void store_partial(float* p, Floats a, int64_t n) {
    _mm512_mask_storeu_ps(p, Floats::first(n).k, a.v);
}
// A non-temporal store (vmovntps): p must be 64-byte aligned.
inline void store_streaming(float* p, Floats a) { _mm512_stream_ps(p, a.v); }

inline Floats operator+(Floats a, Floats b) { return _mm512_add_ps(a.v, b.v); }
inline Floats operator-(Floats a, Floats b) { return _mm512_sub_ps(a.v, b.v); }
inline Floats operator*(Floats a, Floats b) { return _mm512_mul_ps(a.v, b.v); }
inline Floats operator/(Floats a, Floats b) { return _mm512_div_ps(a.v, b.v); }
inline Floats fma(Floats a, Floats b, Floats c) { return _mm512_fmadd_ps(a.v, b.v, c.v); }
inline Floats min(Floats a, Floats b) { return _mm512_min_ps(a.v, b.v); }
inline Floats max(Floats a, Floats b) { return _mm512_max_ps(a.v, b.v); }

inline Ints as_ints(Floats a) { return _mm512_castps_si512(a.v); }
inline Floats as_floats(Ints a) { return _mm512_castsi512_ps(a.v); }
inline Floats to_floats(Ints a) { return _mm512_cvtepi32_ps(a.v); }

// Sign-bit operations on the bits (AVX-512F has no float and/xor; AVX-512DQ does).
inline Floats operator-(Floats a) { return as_floats(Ints(_mm512_xor_si512(as_ints(a).v, Ints(INT32_MIN).v))); }
inline Floats abs(Floats a) { return as_floats(as_ints(a) & Ints(INT32_MAX)); }
inline Floats copysign(Floats magnitude, Floats sign) {
    return as_floats(Ints(_mm512_or_si512((as_ints(magnitude) & Ints(INT32_MAX)).v,
                                          (as_ints(sign) & Ints(INT32_MIN)).v)));
}

// Ordered comparisons: false when either side is NaN, as C++'s.
inline Mask operator<(Floats a, Floats b) { return {_mm512_cmp_ps_mask(a.v, b.v, _CMP_LT_OQ)}; }
inline Mask operator<=(Floats a, Floats b) { return {_mm512_cmp_ps_mask(a.v, b.v, _CMP_LE_OQ)}; }
inline Mask operator>(Floats a, Floats b) { return {_mm512_cmp_ps_mask(a.v, b.v, _CMP_GT_OQ)}; }
inline Mask operator>=(Floats a, Floats b) { return {_mm512_cmp_ps_mask(a.v, b.v, _CMP_GE_OQ)}; }
inline Mask operator==(Floats a, Floats b) { return {_mm512_cmp_ps_mask(a.v, b.v, _CMP_EQ_OQ)}; }
inline Floats select(Mask m, Floats a, Floats b) { return _mm512_mask_blend_ps(m.k, b.v, a.v); }

inline float max_of(Floats a) { return _mm512_reduce_max_ps(a.v); }

// The 16 accumulators of sum16: 16 float lanes in one register, flushed into
// 16 doubles, lanes 0–7 in lo and 8–15 in hi. One Floats is a whole piece of
// 16, so `piece` is always 0.
struct Sum16 {
    __m512 f = _mm512_setzero_ps();
    __m512d lo = _mm512_setzero_pd(), hi = _mm512_setzero_pd();
    void add_product(int, Floats a, Floats b) { f = _mm512_fmadd_ps(a.v, b.v, f); }
    void add_exact(int, Floats a) {
        lo = _mm512_add_pd(lo, _mm512_cvtps_pd(_mm512_castps512_ps256(a.v)));
        hi = _mm512_add_pd(
            hi, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a.v), 1))));
    }
    void flush() {
        add_exact(0, f);
        f = _mm512_setzero_ps();
    }
    // Lane l + lane l+8, then l + l+4, then l + l+2, then 0 + 1.
    double total() {
        flush();
        const __m512d s8 = _mm512_add_pd(lo, hi);
        const __m256d s4 = _mm256_add_pd(_mm512_castpd512_pd256(s8), _mm512_extractf64x4_pd(s8, 1));
        const __m128d s2 = _mm_add_pd(_mm256_castpd256_pd128(s4), _mm256_extractf128_pd(s4, 1));
        return _mm_cvtsd_f64(_mm_add_sd(s2, _mm_unpackhi_pd(s2, s2)));
    }
};
inline Sum16 new_sum16(Floats) { return {}; }

}  // namespace
}  // namespace fz::vec::avx512

#include "vecmath_impl.h"

namespace fz::vec {
constexpr VecMathKernels kVecMathAvx512 = make_kernels<avx512::Floats>("avx512");
}  // namespace fz::vec
