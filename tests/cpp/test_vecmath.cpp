// test_vecmath.cpp — the vector math against double precision, over the whole
// float range: a sweep of evenly spaced bit patterns (every sign, exponent and
// a spread of mantissas: zeros, denormals, normals, infinities, NaNs), the
// edges where each function changes method or overflows, and random points.
// Every instruction set this CPU has is tested, and all must give the same
// bits. Errors are in ulp of the float result (ulp_error below).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "test_util.h"
#include "vecmath.h"
#include "vecmath_kernels.h"

namespace fz::testing {
namespace {

using vec::VecMathKernels;
using Vec = std::vector<float>;
using ArrayFn = void (*VecMathKernels::*)(const float*, float*, int64_t);
using BackwardFn = void (*VecMathKernels::*)(const float*, const float*, float*, int64_t);

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kDenormMin = std::numeric_limits<float>::denorm_min();
constexpr float kFloatMin = std::numeric_limits<float>::min();
constexpr float kFloatMax = std::numeric_limits<float>::max();

std::vector<const VecMathKernels*> all_kernels() {
    const VecMathKernels* k[8];
    const int n = vec::available_vecmath_kernels(k, 8);
    return {k, k + n};
}

float from_bits(uint32_t b) {
    float f;
    std::memcpy(&f, &b, sizeof f);
    return f;
}
uint32_t bits(float f) {
    uint32_t b;
    std::memcpy(&b, &f, sizeof b);
    return b;
}

// |y − exact| in units of the last place of the float nearest `exact`
// (2⁻¹⁴⁹ for denormals). A result that should be NaN or infinite must be
// exactly that; a NaN where a number is due, or the reverse, is an infinite error.
double ulp_error(float y, double exact) {
    if (std::isnan(exact)) return std::isnan(y) ? 0 : INFINITY;
    if (std::isnan(y)) return INFINITY;
    const auto rounded = static_cast<float>(exact);
    if (std::isinf(rounded) || std::isinf(y)) return y == rounded ? 0 : INFINITY;
    int e;
    std::frexp(exact, &e);  // exact = m·2^e, m in [0.5, 1)
    return std::fabs(y - exact) / std::ldexp(1.0, std::max(e - 1, -126) - 23);
}

// Every `stride`th bit pattern (by default 4099: ~1M floats of every sign and
// magnitude), plus the values where something changes, plus NaNs with payloads.
Vec sweep(const Vec& edges = {}, uint64_t stride = 4099) {
    Vec x;
    for (uint64_t b = 0; b < (1ull << 32); b += stride) x.push_back(from_bits(static_cast<uint32_t>(b)));
    for (float v : {0.0f, -0.0f, kInf, -kInf, kNaN, -kNaN, from_bits(0x7fc00001),
                    from_bits(0x7f800001), from_bits(0xffbfffff), kDenormMin, -kDenormMin,
                    kFloatMin, -kFloatMin, from_bits(0x007fffff), from_bits(0x807fffff), kFloatMax,
                    -kFloatMax, 1.0f, -1.0f, 0.5f, 2.0f})
        x.push_back(v);
    for (float e : edges)  // each edge and its four neighbours on each side
        for (int d = -4; d <= 4; ++d) x.push_back(from_bits(bits(e) + d));
    return x;
}

// Random points where the functions are used: uniform in [−20, 20] and normal.
Vec random_points(int64_t n, uint32_t seed) {
    Vec x = random_vector(n / 2, seed, -20.0f, 20.0f);
    std::mt19937 gen(seed + 1);
    std::normal_distribution<float> normal(0.0f, 1.5f);
    while (static_cast<int64_t>(x.size()) < n) x.push_back(normal(gen));
    return x;
}

struct Function {
    const char* name;
    ArrayFn fn;
    double (*exact)(double);
    double max_ulp;      // the documented bound, for x >= tail_start
    double tail_start;   // below it (GELU's far tail) only the tail bounds apply
    double tail_ulp;     // for x in [tail_end, tail_start)
    double tail_end;     // below it: |error| <= 1e-8 (absolute)
    Vec edges;
};

double sigmoid_exact(double x) { return 1.0 / (1.0 + std::exp(-x)); }
double gelu_exact(double x) { return 0.5 * x * std::erfc(-x / std::sqrt(2.0)); }  // no 1 + erf cancellation
double gelu_tanh_exact(double x) {
    const double u = std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x);
    return x / (1.0 + std::exp(-2.0 * u));  // 0.5 x (1 + tanh u), without the cancellation
}

const std::vector<Function>& functions() {
    static const std::vector<Function> fns = {
        {"exp", &VecMathKernels::exp, [](double x) { return std::exp(x); }, 1.0, -INFINITY, 0, -INFINITY,
         {88.72283f, 88.7228394f, 88.0f, -86.0f, -87.33654f, -103.972f, -103.9721f, -104.0f,
          -89.0f, 89.0f, 0.34657359f, -0.34657359f}},
        {"log", &VecMathKernels::log, [](double x) { return std::log(x); }, 1.0, -INFINITY, 0, -INFINITY,
         {0.70710677f, 1.4142135f, 1.0f, kFloatMin, 0.70710677f * kFloatMin}},
        {"log1p", &VecMathKernels::log1p, [](double x) { return std::log1p(x); }, 2.0, -INFINITY, 0,
         -INFINITY, {-1.0f, 5.96e-8f, -5.96e-8f, 1.0f, 0.41421356f, -0.29289321f}},
        {"sigmoid", &VecMathKernels::sigmoid, sigmoid_exact, 2.0, -INFINITY, 0, -INFINITY,
         {-86.0f, -87.33654f, -88.0f, -103.97f, -104.0f, 16.635532f, 17.0f}},
        {"tanh", &VecMathKernels::tanh, [](double x) { return std::tanh(x); }, 2.0, -INFINITY, 0,
         -INFINITY, {0.625f, -0.625f, 9.01f, 44.0f, 1e-3f}},
        {"erf", &VecMathKernels::erf, [](double x) { return std::erf(x); }, 2.0, -INFINITY, 0, -INFINITY,
         {0.75f, -0.75f, 3.92f, 4.0f, -4.0f, 1e-3f}},
        {"gelu", &VecMathKernels::gelu, gelu_exact, 6.0, -2.0, 20.0, -5.6,
         {5.66f, -5.66f, 12.9f, -12.9f, -14.0f, -14.5f}},
        {"gelu_tanh", &VecMathKernels::gelu_tanh, gelu_tanh_exact, 7.0, -2.0, 36.0, -5.6,
         {-5.66f, -10.0f, -14.0f}},
    };
    return fns;
}

// `got` within f's bounds of the exact values; reports the first violation.
void check_bounds(const Function& f, const Vec& x, const std::vector<double>& exact_values,
                  const Vec& got, const std::string& where) {
    for (size_t i = 0; i < x.size(); ++i) {
        const double exact = exact_values[i];
        if (x[i] < f.tail_end) {  // GELU's far tail: tiny values, absolute bound
            if (std::isnan(exact)) ASSERT_TRUE(std::isnan(got[i])) << where << " x = " << x[i];
            else ASSERT_LE(std::fabs(got[i] - exact), 1e-8) << where << " x = " << x[i];
            continue;
        }
        const double err = ulp_error(got[i], exact);
        const double bound = x[i] < f.tail_start ? f.tail_ulp : f.max_ulp;
        ASSERT_LE(err, bound) << where << " x = " << x[i] << " (" << std::hexfloat << x[i]
                              << std::defaultfloat << "): got " << got[i] << ", exact " << exact;
    }
}

// The result bits of every instruction set agree (any NaN equals any NaN:
// the bits of a NaN are not specified).
void expect_same_bits(const Vec& a, const Vec& b, const Vec& x, const std::string& what) {
    for (size_t i = 0; i < a.size(); ++i) {
        if (std::isnan(a[i]) && std::isnan(b[i])) continue;
        ASSERT_EQ(bits(a[i]), bits(b[i])) << what << " differs at x = " << x[i] << ": " << a[i]
                                          << " vs " << b[i];
    }
}

class VecMathFunction : public ::testing::TestWithParam<Function> {};

TEST_P(VecMathFunction, WithinItsErrorBoundOverTheWholeRange) {
    const Function& f = GetParam();
    Vec x = sweep(f.edges);
    const Vec r = random_points(200000, 1);
    x.insert(x.end(), r.begin(), r.end());
    std::vector<double> exact(x.size());
    for (size_t i = 0; i < x.size(); ++i) exact[i] = f.exact(x[i]);
    Vec first;
    for (const VecMathKernels* k : all_kernels()) {
        SCOPED_TRACE(k->name);
        Vec y(x.size(), -123.0f);
        (k->*f.fn)(x.data(), y.data(), static_cast<int64_t>(x.size()));
        check_bounds(f, x, exact, y, k->name);
        if (first.empty()) first = y;
        else expect_same_bits(y, first, x, std::string(k->name) + " vs " + all_kernels()[0]->name);
    }
}

// Every length from 0 to 40, at every offset of the pointer, in place and
// not, gives the same values as one long call: the partial vectors at the
// ends are computed like the full ones and nothing outside [0, n) is written.
TEST_P(VecMathFunction, AnyLengthAndAlignmentGivesTheSameValues) {
    const Function& f = GetParam();
    const Vec x = random_points(64, 2);
    for (const VecMathKernels* k : all_kernels()) {
        SCOPED_TRACE(k->name);
        Vec whole(x.size());
        (k->*f.fn)(x.data(), whole.data(), static_cast<int64_t>(x.size()));
        for (int64_t offset = 0; offset < 17; ++offset) {
            for (int64_t n = 0; offset + n <= 40; ++n) {
                Vec y(x.size(), -7.0f);
                (k->*f.fn)(x.data() + offset, y.data() + offset, n);
                Vec in_place = x;
                (k->*f.fn)(in_place.data() + offset, in_place.data() + offset, n);
                for (int64_t i = 0; i < static_cast<int64_t>(x.size()); ++i) {
                    const bool inside = i >= offset && i < offset + n;
                    ASSERT_EQ(bits(y[i]), bits(inside ? whole[i] : -7.0f)) << "n " << n << " i " << i;
                    ASSERT_EQ(bits(in_place[i]), bits(inside ? whole[i] : x[i])) << "n " << n;
                }
            }
        }
    }
}

INSTANTIATE_TEST_SUITE_P(VecMath, VecMathFunction, ::testing::ValuesIn(functions()),
                         [](const ::testing::TestParamInfo<Function>& p) { return p.param.name; });

// The values C specifies, and the signs of zeros.
TEST(VecMath, SpecialValues) {
    struct Case {
        ArrayFn fn;
        float x, y;
    };
    const Case cases[] = {
        {&VecMathKernels::exp, -kInf, 0.0f},      {&VecMathKernels::exp, kInf, kInf},
        {&VecMathKernels::exp, 0.0f, 1.0f},       {&VecMathKernels::exp, -0.0f, 1.0f},
        {&VecMathKernels::exp, kDenormMin, 1.0f}, {&VecMathKernels::exp, -200.0f, 0.0f},
        {&VecMathKernels::exp, 100.0f, kInf},     {&VecMathKernels::log, 0.0f, -kInf},
        {&VecMathKernels::log, -0.0f, -kInf},     {&VecMathKernels::log, kInf, kInf},
        {&VecMathKernels::log, 1.0f, 0.0f},       {&VecMathKernels::log1p, -1.0f, -kInf},
        {&VecMathKernels::log1p, 0.0f, 0.0f},     {&VecMathKernels::log1p, -0.0f, -0.0f},
        {&VecMathKernels::log1p, kInf, kInf},     {&VecMathKernels::sigmoid, -kInf, 0.0f},
        {&VecMathKernels::sigmoid, kInf, 1.0f},   {&VecMathKernels::sigmoid, -0.0f, 0.5f},
        {&VecMathKernels::tanh, kInf, 1.0f},      {&VecMathKernels::tanh, -kInf, -1.0f},
        {&VecMathKernels::tanh, -0.0f, -0.0f},    {&VecMathKernels::tanh, 0.0f, 0.0f},
        {&VecMathKernels::erf, kInf, 1.0f},       {&VecMathKernels::erf, -kInf, -1.0f},
        {&VecMathKernels::erf, -0.0f, -0.0f},     {&VecMathKernels::gelu, kInf, kInf},
        {&VecMathKernels::gelu, -0.0f, -0.0f},    {&VecMathKernels::gelu, -30.0f, -0.0f},
        {&VecMathKernels::gelu_tanh, kInf, kInf}, {&VecMathKernels::gelu_tanh, -0.0f, -0.0f},
    };
    for (const VecMathKernels* k : all_kernels()) {
        for (const Case& c : cases) {
            float y;
            (k->*c.fn)(&c.x, &y, 1);
            EXPECT_EQ(bits(y), bits(c.y)) << k->name << " at " << c.x << ": got " << y;
        }
        for (ArrayFn fn : {&VecMathKernels::exp, &VecMathKernels::log, &VecMathKernels::log1p,
                           &VecMathKernels::sigmoid, &VecMathKernels::tanh, &VecMathKernels::erf,
                           &VecMathKernels::gelu, &VecMathKernels::gelu_tanh}) {
            for (float nan : {kNaN, -kNaN, from_bits(0x7fc00001), from_bits(0x7f8001ff)}) {
                float y;
                (k->*fn)(&nan, &y, 1);
                EXPECT_TRUE(std::isnan(y)) << k->name;
            }
        }
        float y;
        const float minus_one = -2.0f;
        k->log(&minus_one, &y, 1);
        EXPECT_TRUE(std::isnan(y)) << "log(-2), " << k->name;
    }
}

// exp's denormal results are rounded once (gradual underflow), not flushed.
TEST(VecMath, ExpRoundsDenormalResultsCorrectly) {
    Vec x;
    for (float v = -103.9f; v < -87.0f; v += 0.01f) x.push_back(v);
    for (const VecMathKernels* k : all_kernels()) {
        Vec y(x.size());
        k->exp(x.data(), y.data(), static_cast<int64_t>(x.size()));
        for (size_t i = 0; i < x.size(); ++i) {
            ASSERT_GT(y[i], 0.0f) << x[i];
            ASSERT_LE(ulp_error(y[i], std::exp(double{x[i]})), 1.0) << k->name << " " << x[i];
        }
    }
}

// ---- derivatives

struct Derivative {
    const char* name;
    BackwardFn fn;
    double (*exact)(double);
    double bound;  // |error| <= bound · 2⁻²⁴ · max(1, |exact|)
};

double gelu_derivative_exact(double x) {
    return 0.5 * std::erfc(-x / std::sqrt(2.0)) + x * std::exp(-0.5 * x * x) / std::sqrt(2 * M_PI);
}
double gelu_tanh_derivative_exact(double x) {
    const double k = std::sqrt(2 / M_PI), v = 2 * k * (x + 0.044715 * x * x * x);
    const double s = 1 / (1 + std::exp(-v));
    return s + x * s * (1 - s) * 2 * k * (1 + 3 * 0.044715 * x * x);
}

TEST(VecMath, DerivativesWithinTheirBoundsAndBitIdentical) {
    const Derivative derivatives[] = {
        {"gelu_backward", &VecMathKernels::gelu_backward, gelu_derivative_exact, 3.0},
        {"gelu_tanh_backward", &VecMathKernels::gelu_tanh_backward, gelu_tanh_derivative_exact, 4.0},
    };
    Vec x = sweep({12.9f, -12.9f, 5.66f, -5.66f, 0.75f}, 16411);
    const Vec r = random_points(100000, 3);
    x.insert(x.end(), r.begin(), r.end());
    const Vec dy = random_vector(static_cast<int64_t>(x.size()), 4, -2.0f, 2.0f);
    for (const Derivative& d : derivatives) {
        SCOPED_TRACE(d.name);
        std::vector<double> exact_values(x.size());
        for (size_t i = 0; i < x.size(); ++i) exact_values[i] = d.exact(x[i]);
        Vec first;
        for (const VecMathKernels* k : all_kernels()) {
            Vec slope(x.size()), dx(x.size());
            const Vec ones(x.size(), 1.0f);
            (k->*d.fn)(x.data(), ones.data(), slope.data(), static_cast<int64_t>(x.size()));
            (k->*d.fn)(x.data(), dy.data(), dx.data(), static_cast<int64_t>(x.size()));
            for (size_t i = 0; i < x.size(); ++i) {
                if (std::isnan(x[i])) {
                    ASSERT_TRUE(std::isnan(slope[i])) << k->name;
                    continue;
                }
                if (std::isinf(x[i])) continue;  // 0·inf: the limits (0 and 1) are not asked for
                const double exact = exact_values[i];
                ASSERT_LE(std::fabs(slope[i] - exact), d.bound * 0x1p-24 * std::max(1.0, std::fabs(exact)))
                    << k->name << " x = " << x[i] << " got " << slope[i] << " exact " << exact;
                ASSERT_EQ(bits(dx[i]), bits(dy[i] * slope[i])) << "dx = dy · f'(x), one rounding";
            }
            if (first.empty()) first = slope;
            else expect_same_bits(slope, first, x, k->name);
        }
    }
}

// ---- the exact elementwise loops (ReLU, LeakyReLU, derivatives from the output)

// Every float class: ±0, denormals, normals, ±inf, NaN, then random values.
Vec special_and_random(int64_t n, uint32_t seed) {
    Vec v = {0.0f, -0.0f, kDenormMin, -kDenormMin, kFloatMin, -kFloatMin, 1.0f, -1.0f, 0.5f,
             kFloatMax, -kFloatMax, kInf, -kInf, kNaN, -kNaN};
    const Vec r = random_vector(n, seed, -3.0f, 3.0f);
    v.insert(v.end(), r.begin(), r.end());
    v.resize(static_cast<size_t>(n));
    return v;
}

// The plain formula each loop must reproduce bit for bit, on any length (the
// two-vector steps, the one-vector step and the masked tail), out of place
// and in place (the output over either input).
TEST(VecMath, ExactElementwiseLoopsGiveThePlainFormulasBits) {
    constexpr float kAlpha = 0.2f, kS = 0.375f;
    // The loops of the memory-bound kernels take `streamed` (vecmath.h's Store);
    // the others ignore it.
    using Unary = std::function<void(const VecMathKernels&, const float*, float*, int64_t, bool)>;
    using Binary = std::function<void(const VecMathKernels&, const float*, const float*, float*,
                                      int64_t, bool)>;
    struct UnaryCase {
        const char* name;
        Unary fn;
        std::function<float(float)> plain;
    };
    struct BinaryCase {
        const char* name;
        Binary fn;
        std::function<float(const VecMathKernels&, float, float)> plain;  // (y, dy)
    };
    const UnaryCase unary[] = {
        {"relu",
         [](const VecMathKernels& k, const float* x, float* y, int64_t n, bool s) { k.relu(x, y, n, s); },
         [](float x) { return std::max(x, 0.0f); }},
        {"leaky_relu",
         [=](const VecMathKernels& k, const float* x, float* y, int64_t n, bool s) {
             k.leaky_relu(x, y, n, kAlpha, s);
         },
         [=](float x) { return x > 0.0f ? x : kAlpha * x; }},
    };
    const BinaryCase binary[] = {
        {"relu_backward",
         [](const VecMathKernels& k, const float* y, const float* dy, float* dx, int64_t n, bool s) {
             k.relu_backward(y, dy, dx, n, s);
         },
         [](const VecMathKernels&, float y, float dy) { return y > 0.0f ? dy : 0.0f; }},
        {"leaky_relu_backward",
         [=](const VecMathKernels& k, const float* y, const float* dy, float* dx, int64_t n, bool s) {
             k.leaky_relu_backward(y, dy, dx, n, kAlpha, s);
         },
         [=](const VecMathKernels&, float y, float dy) { return y > 0.0f ? dy : kAlpha * dy; }},
        {"sigmoid_backward",
         [](const VecMathKernels& k, const float* y, const float* dy, float* dx, int64_t n, bool s) {
             k.sigmoid_backward(y, dy, dx, n, s);
         },
         [](const VecMathKernels&, float y, float dy) { return dy * y * (1.0f - y); }},
        {"tanh_backward",
         [](const VecMathKernels& k, const float* y, const float* dy, float* dx, int64_t n, bool s) {
             k.tanh_backward(y, dy, dx, n, s);
         },
         [](const VecMathKernels&, float y, float dy) { return dy * (1.0f - y * y); }},
        {"softmax_backward_row",
         [=](const VecMathKernels& k, const float* y, const float* dy, float* dx, int64_t n, bool s) {
             k.softmax_backward_row(y, dy, kS, dx, n, s);
         },
         [=](const VecMathKernels&, float y, float dy) { return y * (dy - kS); }},
        {"log_softmax_backward_row",
         [=](const VecMathKernels& k, const float* y, const float* dy, float* dx, int64_t n, bool) {
             k.log_softmax_backward_row(y, dy, kS, dx, n);
         },
         [=](const VecMathKernels& k, float y, float dy) {
             float e;
             k.exp(&y, &e, 1);  // the table's own exp, tested above
             return dy - e * kS;
         }},
    };
    for (const VecMathKernels* k : all_kernels()) {
        for (int64_t n : {0, 1, 7, 15, 16, 17, 31, 32, 33, 47, 48, 64, 100, 1031})
        for (bool streamed : {false, true}) {
            SCOPED_TRACE(std::string(k->name) + " n = " + std::to_string(n) +
                         (streamed ? " streamed" : " cached"));
            const Vec a = special_and_random(n, 11), b = special_and_random(n, 12);
            for (const UnaryCase& c : unary) {
                Vec expected(a.size()), y(a.size(), 7.0f);
                for (size_t i = 0; i < a.size(); ++i) expected[i] = c.plain(a[i]);
                c.fn(*k, a.data(), y.data(), n, streamed);
                expect_same_bits(y, expected, a, c.name);
                Vec in_place = a;
                c.fn(*k, in_place.data(), in_place.data(), n, streamed);
                expect_same_bits(in_place, expected, a, c.name);
            }
            for (const BinaryCase& c : binary) {
                Vec expected(a.size()), dx(a.size(), 7.0f);
                for (size_t i = 0; i < a.size(); ++i) expected[i] = c.plain(*k, a[i], b[i]);
                c.fn(*k, a.data(), b.data(), dx.data(), n, streamed);
                expect_same_bits(dx, expected, a, c.name);
                Vec over_y = a, over_dy = b;
                c.fn(*k, over_y.data(), b.data(), over_y.data(), n, streamed);
                expect_same_bits(over_y, expected, a, c.name);
                c.fn(*k, a.data(), over_dy.data(), over_dy.data(), n, streamed);
                expect_same_bits(over_dy, expected, a, c.name);
            }
        }
    }
}

// The elementwise loops first align their output with one masked step
// (zip_map_aligned), and so do softmax's backward rows when streamed (the
// non-temporal stores need it): at every offset of the output and of the
// inputs, cached and streamed, each value is the plain formula's, and nothing
// outside the output range is written. Fails if the aligning step skips,
// repeats or overruns values, or a streamed store lands misaligned.
TEST(VecMath, ElementwiseLoopsAtEveryOffsetOfTheirArrays) {
    constexpr float kAlpha = 0.2f, kS = 0.375f, kSentinel = 7.0f;
    using Loop = std::function<void(const VecMathKernels&, const float*, const float*, float*, int64_t,
                                    bool)>;
    struct Case {
        const char* name;
        Loop fn;
        std::function<float(float, float)> plain;  // (a, b): (x, −) or (y, dy)
    };
    const Case cases[] = {
        {"relu",
         [](const VecMathKernels& k, const float* a, const float*, float* o, int64_t n, bool s) {
             k.relu(a, o, n, s);
         },
         [](float a, float) { return std::max(a, 0.0f); }},
        {"leaky_relu",
         [=](const VecMathKernels& k, const float* a, const float*, float* o, int64_t n, bool s) {
             k.leaky_relu(a, o, n, kAlpha, s);
         },
         [=](float a, float) { return a > 0.0f ? a : kAlpha * a; }},
        {"relu_backward",
         [](const VecMathKernels& k, const float* a, const float* b, float* o, int64_t n, bool s) {
             k.relu_backward(a, b, o, n, s);
         },
         [](float y, float dy) { return y > 0.0f ? dy : 0.0f; }},
        {"leaky_relu_backward",
         [=](const VecMathKernels& k, const float* a, const float* b, float* o, int64_t n, bool s) {
             k.leaky_relu_backward(a, b, o, n, kAlpha, s);
         },
         [=](float y, float dy) { return y > 0.0f ? dy : kAlpha * dy; }},
        {"sigmoid_backward",
         [](const VecMathKernels& k, const float* a, const float* b, float* o, int64_t n, bool s) {
             k.sigmoid_backward(a, b, o, n, s);
         },
         [](float y, float dy) { return dy * y * (1.0f - y); }},
        {"tanh_backward",
         [](const VecMathKernels& k, const float* a, const float* b, float* o, int64_t n, bool s) {
             k.tanh_backward(a, b, o, n, s);
         },
         [](float y, float dy) { return dy * (1.0f - y * y); }},
        {"softmax_backward_row",
         [=](const VecMathKernels& k, const float* a, const float* b, float* o, int64_t n, bool s) {
             k.softmax_backward_row(a, b, kS, o, n, s);
         },
         [=](float y, float dy) { return y * (dy - kS); }},
    };
    const Vec a = random_vector(200, 21, -3.0f, 3.0f), b = random_vector(200, 22, -3.0f, 3.0f);
    for (const VecMathKernels* k : all_kernels())
        for (const Case& c : cases)
            for (bool streamed : {false, true})
            for (int64_t in_offset : {0, 1, 4, 5, 15})
                for (int64_t out_offset = 0; out_offset < 17; ++out_offset)
                    for (int64_t n : {0, 1, 3, 8, 17, 40, 100}) {
                        SCOPED_TRACE(std::string(k->name) + " " + c.name + " n " + std::to_string(n) +
                                     " offsets " + std::to_string(in_offset) + ", " +
                                     std::to_string(out_offset) + (streamed ? " streamed" : " cached"));
                        Vec out(n + 40, kSentinel);
                        c.fn(*k, a.data() + in_offset, b.data() + in_offset, out.data() + out_offset, n,
                             streamed);
                        for (int64_t i = 0; i < static_cast<int64_t>(out.size()); ++i) {
                            const bool inside = i >= out_offset && i < out_offset + n;
                            const float want = inside ? c.plain(a[in_offset + i - out_offset],
                                                                b[in_offset + i - out_offset])
                                                      : kSentinel;
                            ASSERT_EQ(bits(out[i]), bits(want)) << "at " << i;
                        }
                    }
}

// ---- row reductions

const std::vector<int64_t> kRowLengths = {0, 1, 2, 15, 16, 17, 31, 255, 256, 257, 1000, 1023,
                                          1024, 1025, 4099, 50257};

TEST(VecMathRows, MaxIsExactSkipsNaNAndGivesPlusZero) {
    for (const VecMathKernels* k : all_kernels()) {
        for (int64_t n : kRowLengths) {
            const Vec x = random_vector(n, 5, -100.0f, 100.0f);
            const float expected = n ? *std::max_element(x.begin(), x.end()) : -kInf;
            EXPECT_EQ(k->max(x.data(), n), expected) << k->name << " n " << n;
        }
        const Vec with_nan = {1.0f, kNaN, 3.0f, -kInf, 2.0f};
        EXPECT_EQ(k->max(with_nan.data(), 5), 3.0f);
        const Vec zeros = {-0.0f, -0.0f, -kInf};
        EXPECT_EQ(bits(k->max(zeros.data(), 3)), bits(0.0f)) << "−0 must come out as +0";
    }
}

// sum: each term exact in double, 16 accumulators in a fixed tree: within
// 1e-13 of the double sum, and the same bits on every instruction set.
// dot: 16-term float FMA sums, moved to double every 256 elements.
TEST(VecMathRows, SumAndDotAgreeWithDoubleAndAcrossInstructionSets) {
    for (int64_t n : kRowLengths) {
        const Vec a = random_vector(n, 6, -3.0f, 3.0f), b = random_vector(n, 7, -3.0f, 3.0f);
        double sum = 0, dot = 0, dot_abs = 0, abs_sum = 0;
        for (int64_t i = 0; i < n; ++i) {
            sum += a[i];
            abs_sum += std::fabs(a[i]);
            dot += double{a[i]} * b[i];
            dot_abs += std::fabs(double{a[i]} * b[i]);
        }
        double first_sum = 0, first_dot = 0;
        for (const VecMathKernels* k : all_kernels()) {
            SCOPED_TRACE(std::string(k->name) + " n " + std::to_string(n));
            const double s = k->sum(a.data(), n), d = k->dot(a.data(), b.data(), n);
            EXPECT_NEAR(s, sum, 1e-13 * abs_sum);
            EXPECT_NEAR(d, dot, 16 * 0x1p-24 * dot_abs + 1e-30);
            if (k == all_kernels()[0]) {
                first_sum = s;
                first_dot = d;
            }
            EXPECT_EQ(s, first_sum);
            EXPECT_EQ(d, first_dot);
        }
    }
}

// exp_sum writes exactly exp(x − shift) and returns its sum in double.
TEST(VecMathRows, ExpSumWritesTheExponentialsAndTheirSum) {
    for (int64_t n : kRowLengths) {
        const Vec x = random_vector(n, 8, -30.0f, 10.0f);
        const float shift = 3.5f;
        Vec shifted(n);
        for (int64_t i = 0; i < n; ++i) shifted[i] = x[i] - shift;
        double first = 0;
        for (const VecMathKernels* k : all_kernels()) {
            SCOPED_TRACE(std::string(k->name) + " n " + std::to_string(n));
            Vec e(n), expected(n);
            k->exp(shifted.data(), expected.data(), n);
            const double s = k->exp_sum(x.data(), shift, e.data(), n);
            EXPECT_EQ(e, expected);
            double exact = 0;
            for (float v : expected) exact += v;
            EXPECT_NEAR(s, exact, 1e-13 * exact);
            EXPECT_EQ(k->exp_sum(x.data(), shift, nullptr, n), s);
            Vec in_place = x;
            EXPECT_EQ(k->exp_sum(in_place.data(), shift, in_place.data(), n), s);
            EXPECT_EQ(in_place, expected);
            if (k == all_kernels()[0]) first = s;
            EXPECT_EQ(s, first);
        }
    }
}

// softmax_row, log_softmax_row and log_sum_exp against double precision, in place too.
TEST(VecMathRows, SoftmaxLogSoftmaxAndLogSumExpOfOneRow) {
    for (int64_t n : kRowLengths) {
        if (n == 0) continue;
        SCOPED_TRACE("n " + std::to_string(n));
        const Vec x = random_vector(n, 9, -20.0f, 20.0f);
        const double m = *std::max_element(x.begin(), x.end());
        double s = 0;
        for (float v : x) s += std::exp(v - m);
        const double lse = m + std::log(s);
        Vec y(n), z(n);
        vec::softmax_row(x.data(), y.data(), n);
        vec::log_softmax_row(x.data(), z.data(), n);
        for (int64_t i = 0; i < n; ++i) {
            ASSERT_LE(ulp_error(y[i], std::exp(x[i] - lse)), 4 + std::fabs(x[i] - m)) << i;
            ASSERT_NEAR(z[i], x[i] - lse, 2e-7 * std::max(1.0, std::fabs(x[i] - lse))) << i;
        }
        EXPECT_NEAR(vec::log_sum_exp(x.data(), n), lse, 1e-6 * std::max(1.0, std::fabs(lse)));
        Vec in_place = x;
        vec::softmax_row(in_place.data(), in_place.data(), n);
        EXPECT_EQ(in_place, y);
        in_place = x;
        vec::log_softmax_row(in_place.data(), in_place.data(), n);
        EXPECT_EQ(in_place, z);
    }
    // A fully masked row (all −inf), and rows with inf or NaN, give NaN.
    for (const Vec& row : {Vec{-kInf, -kInf}, Vec{1.0f, kInf}, Vec{1.0f, kNaN}}) {
        Vec y(row.size());
        vec::softmax_row(row.data(), y.data(), 2);
        EXPECT_TRUE(std::isnan(y[0]) && std::isnan(y[1]));
    }
}

TEST(VecMath, ChoosesTheBestInstructionSet) {
    EXPECT_STREQ(vec::isa(), all_kernels()[0]->name);
    EXPECT_STREQ(all_kernels().back()->name, "generic");
}

}  // namespace
}  // namespace fz::testing
