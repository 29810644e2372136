// The vector math on AVX2 + FMA: 8 float lanes in a YMM register.
//
// Only the lane type is defined here; the algorithms are vecmath_impl.h's.
// Compiled with -mavx2 -mfma and used only when CPUID reports both. A mask
// is a vector whose lanes are all ones or all zeros, as AVX comparisons give;
// partial vectors are read with vmaskmovps, which reads no memory beyond the
// last element.
#include <immintrin.h>

#include <cstdint>

#include "vecmath_kernels.h"

namespace fz::vec::avx2 {
namespace {

struct Mask {
    __m256 m;
};
inline Mask operator&(Mask a, Mask b) { return {_mm256_and_ps(a.m, b.m)}; }
inline bool all(Mask a) { return _mm256_movemask_ps(a.m) == 0xFF; }

struct Ints {
    __m256i v;
    Ints(__m256i v_) : v(v_) {}
    explicit Ints(int32_t s) : v(_mm256_set1_epi32(s)) {}
};
inline Ints operator+(Ints a, Ints b) { return _mm256_add_epi32(a.v, b.v); }
inline Ints operator-(Ints a, Ints b) { return _mm256_sub_epi32(a.v, b.v); }
inline Ints operator&(Ints a, Ints b) { return _mm256_and_si256(a.v, b.v); }
inline Ints andnot(Ints a, Ints b) { return _mm256_andnot_si256(a.v, b.v); }  // ~a & b
inline Ints operator>>(Ints a, int s) { return _mm256_sra_epi32(a.v, _mm_cvtsi32_si128(s)); }  // arithmetic
inline Ints operator<<(Ints a, int s) { return _mm256_sll_epi32(a.v, _mm_cvtsi32_si128(s)); }

struct Floats {
    static constexpr int width = 8;
    static constexpr int chains = 4;  // vectors in flight in map (vecmath_impl.h)
    __m256 v;
    Floats(__m256 v_) : v(v_) {}
    Floats(float s) : v(_mm256_set1_ps(s)) {}
    static __m256i first_lanes(int64_t n) {
        return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int32_t>(n)),
                                  _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    }
    static Mask first(int64_t n) { return {_mm256_castsi256_ps(first_lanes(n))}; }
    static Floats load(const float* p) { return _mm256_loadu_ps(p); }
    static Floats load_partial(const float* p, int64_t n) {
        return _mm256_maskload_ps(p, first_lanes(n));
    }
};
inline void store(float* p, Floats a) { _mm256_storeu_ps(p, a.v); }
// The first n lanes, through a buffer: vmaskmovps's store form is slow on AMD
// CPUs. Zen 4, softmax's backward over 4096×1024 (streamed, one thread): 1.35
// ms with a masked store at both ends of every row, 1.12 ms this way.
inline void store_partial(float* p, Floats a, int64_t n) {
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, a.v);
    for (int64_t i = 0; i < n; ++i) p[i] = lanes[i];
}
// A non-temporal store (vmovntps): p must be 32-byte aligned.
inline void store_streaming(float* p, Floats a) { _mm256_stream_ps(p, a.v); }

inline Floats operator+(Floats a, Floats b) { return _mm256_add_ps(a.v, b.v); }
inline Floats operator-(Floats a, Floats b) { return _mm256_sub_ps(a.v, b.v); }
inline Floats operator*(Floats a, Floats b) { return _mm256_mul_ps(a.v, b.v); }
inline Floats operator/(Floats a, Floats b) { return _mm256_div_ps(a.v, b.v); }
inline Floats fma(Floats a, Floats b, Floats c) { return _mm256_fmadd_ps(a.v, b.v, c.v); }
inline Floats min(Floats a, Floats b) { return _mm256_min_ps(a.v, b.v); }
inline Floats max(Floats a, Floats b) { return _mm256_max_ps(a.v, b.v); }

inline Ints as_ints(Floats a) { return _mm256_castps_si256(a.v); }
inline Floats as_floats(Ints a) { return _mm256_castsi256_ps(a.v); }
inline Floats to_floats(Ints a) { return _mm256_cvtepi32_ps(a.v); }

inline Floats operator-(Floats a) { return _mm256_xor_ps(a.v, _mm256_set1_ps(-0.0f)); }
inline Floats abs(Floats a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a.v); }
inline Floats copysign(Floats magnitude, Floats sign) {
    const __m256 sign_bit = _mm256_set1_ps(-0.0f);
    return _mm256_or_ps(_mm256_andnot_ps(sign_bit, magnitude.v), _mm256_and_ps(sign_bit, sign.v));
}

// Ordered comparisons: false when either side is NaN, as C++'s.
inline Mask operator<(Floats a, Floats b) { return {_mm256_cmp_ps(a.v, b.v, _CMP_LT_OQ)}; }
inline Mask operator<=(Floats a, Floats b) { return {_mm256_cmp_ps(a.v, b.v, _CMP_LE_OQ)}; }
inline Mask operator>(Floats a, Floats b) { return {_mm256_cmp_ps(a.v, b.v, _CMP_GT_OQ)}; }
inline Mask operator>=(Floats a, Floats b) { return {_mm256_cmp_ps(a.v, b.v, _CMP_GE_OQ)}; }
inline Mask operator==(Floats a, Floats b) { return {_mm256_cmp_ps(a.v, b.v, _CMP_EQ_OQ)}; }
inline Floats select(Mask m, Floats a, Floats b) { return _mm256_blendv_ps(b.v, a.v, m.m); }

inline float max_of(Floats a) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(a.v), _mm256_extractf128_ps(a.v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

// The 16 accumulators of sum16: 16 float lanes in two registers (piece 0 is
// lanes 0–7, piece 1 lanes 8–15), flushed into 16 doubles, four per register:
// lanes 0–3, 4–7, 8–11, 12–15.
struct Sum16 {
    __m256 f[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    __m256d acc[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(),
                      _mm256_setzero_pd()};
    void add_product(int piece, Floats a, Floats b) {
        f[piece] = _mm256_fmadd_ps(a.v, b.v, f[piece]);
    }
    void add_exact(int piece, Floats a) {
        acc[2 * piece] = _mm256_add_pd(acc[2 * piece], _mm256_cvtps_pd(_mm256_castps256_ps128(a.v)));
        acc[2 * piece + 1] =
            _mm256_add_pd(acc[2 * piece + 1], _mm256_cvtps_pd(_mm256_extractf128_ps(a.v, 1)));
    }
    void flush() {
        for (int piece = 0; piece < 2; ++piece) {
            add_exact(piece, f[piece]);
            f[piece] = _mm256_setzero_ps();
        }
    }
    // Lane l + lane l+8, then l + l+4, then l + l+2, then 0 + 1.
    double total() {
        flush();
        const __m256d s4 = _mm256_add_pd(_mm256_add_pd(acc[0], acc[2]), _mm256_add_pd(acc[1], acc[3]));
        const __m128d s2 = _mm_add_pd(_mm256_castpd256_pd128(s4), _mm256_extractf128_pd(s4, 1));
        return _mm_cvtsd_f64(_mm_add_sd(s2, _mm_unpackhi_pd(s2, s2)));
    }
};
inline Sum16 new_sum16(Floats) { return {}; }

}  // namespace
}  // namespace fz::vec::avx2

#include "vecmath_impl.h"

namespace fz::vec {
constexpr VecMathKernels kVecMathAvx2 = make_kernels<avx2::Floats>("avx2");
}  // namespace fz::vec
