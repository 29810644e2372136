// The portable vector math: one float "lane" of plain C++, for any CPU.
//
// Only the lane type is defined here; the algorithms are vecmath_impl.h's,
// so this file computes exactly what the AVX2 and AVX-512 files compute, one
// value at a time: std::fma is the same correctly rounded fused multiply-add
// (a single instruction where the CPU has one, glibc's exact emulation where
// it has not), and integer steps use unsigned arithmetic, which wraps as the
// SIMD lanes do instead of overflowing (undefined behaviour in C++).
#include <cmath>
#include <cstdint>
#include <cstring>

#include "vecmath_kernels.h"

namespace fz::vec::generic {
namespace {

struct Mask {
    bool b;
};
inline Mask operator&(Mask a, Mask b) { return {a.b && b.b}; }
inline bool all(Mask a) { return a.b; }

struct Ints {
    int32_t v;
    explicit Ints(int32_t s) : v(s) {}
};
inline Ints wrap(uint32_t u) { return Ints(static_cast<int32_t>(u)); }
inline Ints operator+(Ints a, Ints b) { return wrap(uint32_t(a.v) + uint32_t(b.v)); }
inline Ints operator-(Ints a, Ints b) { return wrap(uint32_t(a.v) - uint32_t(b.v)); }
inline Ints operator&(Ints a, Ints b) { return Ints(a.v & b.v); }
inline Ints andnot(Ints a, Ints b) { return Ints(~a.v & b.v); }
inline Ints operator>>(Ints a, int s) { return Ints(a.v >> s); }  // arithmetic (GCC, C++20)
inline Ints operator<<(Ints a, int s) { return wrap(uint32_t(a.v) << s); }

struct Floats {
    static constexpr int width = 1;
    static constexpr int chains = 1;  // vectors in flight in map (vecmath_impl.h)
    float v;
    Floats(float s) : v(s) {}
    static Mask first(int64_t n) { return {n > 0}; }
    static Floats load(const float* p) { return *p; }
    static Floats load_partial(const float* p, int64_t) { return *p; }  // never partial
};
inline void store(float* p, Floats a) { *p = a.v; }
inline void store_partial(float* p, Floats a, int64_t) { *p = a.v; }
inline void store_streaming(float* p, Floats a) { *p = a.v; }  // no portable non-temporal store

inline Floats operator+(Floats a, Floats b) { return a.v + b.v; }
inline Floats operator-(Floats a, Floats b) { return a.v - b.v; }
inline Floats operator*(Floats a, Floats b) { return a.v * b.v; }
inline Floats operator/(Floats a, Floats b) { return a.v / b.v; }
inline Floats operator-(Floats a) { return -a.v; }
inline Floats fma(Floats a, Floats b, Floats c) { return std::fma(a.v, b.v, c.v); }
// As minps/maxps: the second operand unless the first is strictly smaller/larger.
inline Floats min(Floats a, Floats b) { return a.v < b.v ? a : b; }
inline Floats max(Floats a, Floats b) { return a.v > b.v ? a : b; }

inline Ints as_ints(Floats a) {
    int32_t i;
    std::memcpy(&i, &a.v, sizeof i);
    return Ints(i);
}
inline Floats as_floats(Ints a) {
    float f;
    std::memcpy(&f, &a.v, sizeof f);
    return f;
}
inline Floats to_floats(Ints a) { return static_cast<float>(a.v); }
inline Floats abs(Floats a) { return as_floats(as_ints(a) & Ints(INT32_MAX)); }
inline Floats copysign(Floats magnitude, Floats sign) {
    return as_floats(Ints((as_ints(magnitude) & Ints(INT32_MAX)).v | (as_ints(sign) & Ints(INT32_MIN)).v));
}

inline Mask operator<(Floats a, Floats b) { return {a.v < b.v}; }
inline Mask operator<=(Floats a, Floats b) { return {a.v <= b.v}; }
inline Mask operator>(Floats a, Floats b) { return {a.v > b.v}; }
inline Mask operator>=(Floats a, Floats b) { return {a.v >= b.v}; }
inline Mask operator==(Floats a, Floats b) { return {a.v == b.v}; }
inline Floats select(Mask m, Floats a, Floats b) { return m.b ? a : b; }

inline float max_of(Floats a) { return a.v; }

// The 16 accumulators of sum16: 16 floats flushed into 16 doubles; each
// one-lane Floats is its own piece 0–15.
struct Sum16 {
    float f[16] = {};
    double acc[16] = {};
    void add_product(int piece, Floats a, Floats b) { f[piece] = std::fma(a.v, b.v, f[piece]); }
    void add_exact(int piece, Floats a) { acc[piece] += a.v; }
    void flush() {
        for (int l = 0; l < 16; ++l) {
            acc[l] += f[l];
            f[l] = 0.0f;
        }
    }
    // Lane l + lane l+8, then l + l+4, then l + l+2, then 0 + 1.
    double total() {
        flush();
        double s[8];
        for (int l = 0; l < 8; ++l) s[l] = acc[l] + acc[l + 8];
        for (int l = 0; l < 4; ++l) s[l] = s[l] + s[l + 4];
        for (int l = 0; l < 2; ++l) s[l] = s[l] + s[l + 2];
        return s[0] + s[1];
    }
};
inline Sum16 new_sum16(Floats) { return {}; }

}  // namespace
}  // namespace fz::vec::generic

#include "vecmath_impl.h"

namespace fz::vec {
constexpr VecMathKernels kVecMathGeneric = make_kernels<generic::Floats>("generic");
}  // namespace fz::vec
