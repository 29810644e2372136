// test_conv.cpp — conv2d, pooling and batch norm: the fast kernels against the
// direct-sum references on awkward shapes (1, 3 and wide inputs, odd and prime
// sizes, strides 1 and 2, same and valid padding, kernels 1×1 to 5×5 and
// windows larger than the input, several backward blocks), with every GEMM
// micro-kernel this CPU has; bit-identical results for 1 and 2 threads,
// hand-worked examples, and finite-difference gradient checks.
#include "conv.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "gemm_microkernel.h"
#include "test_util.h"

namespace fz {
namespace {

using testing::expect_close;
using testing::kThreadCounts;
using testing::random_vector;
using testing::ThreadCountGuard;

const float kNaN = std::nanf("");
const float kLeakySlope = 0.3f;  // LeakyReLU's alpha in the cases that use it

template <class T>
void expect_bitwise_equal(const std::vector<T>& a, const std::vector<T>& b, const char* what) {
    ASSERT_EQ(a.size(), b.size()) << what;
    EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(T)))
        << what << " differs between 1 and 2 threads";
}

// Central differences of loss() with respect to every value of v, in double.
std::vector<double> numeric_gradient(std::vector<float>& v, const std::function<double()>& loss,
                                     float eps) {
    std::vector<double> grad(v.size());
    for (size_t i = 0; i < v.size(); ++i) {
        const float saved = v[i];
        v[i] = saved + eps;
        const double plus = loss();
        v[i] = saved - eps;
        const double minus = loss();
        v[i] = saved;
        grad[i] = (plus - minus) / (2.0 * eps);
    }
    return grad;
}

// ‖analytic − numeric‖ / (‖analytic‖ + ‖numeric‖): ~1e-4 for float rounding, ~1 when wrong.
double relative_error(const std::vector<float>& analytic, const std::vector<double>& numeric) {
    double diff = 0, a = 0, n = 0;
    for (size_t i = 0; i < numeric.size(); ++i) {
        diff += (analytic[i] - numeric[i]) * (analytic[i] - numeric[i]);
        a += static_cast<double>(analytic[i]) * analytic[i];
        n += numeric[i] * numeric[i];
    }
    return std::sqrt(diff) / (std::sqrt(a) + std::sqrt(n) + 1e-30);
}

// Σ y·r in double: the scalar whose gradient with respect to y is r.
double dot(const std::vector<float>& y, const std::vector<float>& r) {
    double s = 0;
    for (size_t i = 0; i < y.size(); ++i) s += static_cast<double>(y[i]) * r[i];
    return s;
}

// A permutation of 0, 0.01, 0.02, ...: all values distinct and 0.01 apart, so
// every pooling window has a unique maximum that a ±1e-3 nudge cannot change.
std::vector<float> distinct_values(int64_t n, uint32_t seed) {
    std::vector<float> v(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) v[i] = 0.01f * static_cast<float>(i);
    std::shuffle(v.begin(), v.end(), std::mt19937(seed));
    return v;
}

const char* padding_name(Padding p) { return p == Padding::same ? "same" : "valid"; }

// ---------------------------------------------------------------- geometry

TEST(ConvGeometry, KerasOutputSizesAndPadding) {
    // valid: ⌊(H − k)/s⌋ + 1, nothing when the window does not fit.
    Window2d g = make_window2d(1, 28, 28, 1, 3, 3, 1, 1, Padding::valid);
    EXPECT_EQ(g.ho, 26);
    EXPECT_EQ(g.pad_top, 0);
    g = make_window2d(1, 5, 7, 1, 2, 3, 2, 2, Padding::valid);
    EXPECT_EQ(g.ho, 2);
    EXPECT_EQ(g.wo, 3);
    EXPECT_EQ(make_window2d(1, 2, 2, 1, 3, 3, 1, 1, Padding::valid).ho, 0);
    // same: ⌈H/s⌉, total = (Ho − 1)·s + k − H, the smaller half on top.
    g = make_window2d(1, 5, 6, 1, 3, 3, 2, 2, Padding::same);
    EXPECT_EQ(g.ho, 3);        // total 2·2 + 3 − 5 = 2
    EXPECT_EQ(g.pad_top, 1);
    EXPECT_EQ(g.wo, 3);        // total 2·2 + 3 − 6 = 1
    EXPECT_EQ(g.pad_left, 0);  // the odd one goes after
    g = make_window2d(1, 2, 3, 1, 5, 4, 1, 1, Padding::same);  // window larger than the input
    EXPECT_EQ(g.ho, 2);
    EXPECT_EQ(g.pad_top, 2);   // total 1 + 5 − 2 = 4
    EXPECT_EQ(g.wo, 3);
    EXPECT_EQ(g.pad_left, 1);  // total 2 + 4 − 3 = 3
    g = make_window2d(1, 7, 7, 1, 1, 1, 3, 3, Padding::same);  // stride > window: no padding
    EXPECT_EQ(g.ho, 3);
    EXPECT_EQ(g.pad_top, 0);
}

// ---------------------------------------------------------------- conv2d

struct ConvCase {
    int64_t n, h, w, c, kh, kw, f, sh, sw;
    Padding padding;
    Activation act = Activation::identity;
    bool bias = true;
};

std::string describe(const ConvCase& k) {
    return "x=(" + std::to_string(k.n) + "," + std::to_string(k.h) + "," + std::to_string(k.w) +
           "," + std::to_string(k.c) + ") kernel=(" + std::to_string(k.kh) + "," +
           std::to_string(k.kw) + "," + std::to_string(k.c) + "," + std::to_string(k.f) +
           ") strides=(" + std::to_string(k.sh) + "," + std::to_string(k.sw) + ") " +
           padding_name(k.padding) + " act=" + std::to_string(static_cast<int>(k.act)) +
           " bias=" + std::to_string(k.bias);
}

// 1 and 3 input channels (whose short window rows im2col gathers through a
// table) and wider ones (copied); kernels 1×1, 3×3, 5×5 and oblong; strides 1,
// 2 and mixed; valid and same; filters 1, odd, and around the micro-kernels'
// NR (16, 32); P = kh·kw·C past a KC block; batches of several backward blocks
// of whole images (kReduceRows = 2048 windows) with ragged row chunks.
const std::vector<ConvCase> kConvCases = {
    {1, 1, 1, 1, 1, 1, 1, 1, 1, Padding::valid},
    {2, 5, 7, 3, 3, 3, 4, 1, 1, Padding::valid},
    {2, 5, 7, 3, 3, 3, 4, 1, 1, Padding::same, Activation::relu},
    {3, 13, 11, 2, 3, 5, 7, 2, 2, Padding::same, Activation::tanh},
    {2, 13, 11, 2, 4, 2, 5, 2, 3, Padding::valid, Activation::identity, false},
    {2, 2, 3, 3, 5, 4, 3, 1, 1, Padding::same},   // kernel larger than the input
    {1, 9, 9, 1, 9, 9, 2, 1, 1, Padding::valid},  // kernel exactly the input: 1×1 output
    {2, 17, 17, 5, 1, 1, 16, 2, 2, Padding::valid},
    {2, 10, 9, 3, 2, 2, 3, 3, 3, Padding::same},  // stride larger than the kernel
    {4, 28, 28, 1, 3, 3, 32, 1, 1, Padding::valid, Activation::relu},  // MNIST's first layer
    {2, 11, 11, 32, 3, 3, 17, 1, 1, Padding::same, Activation::relu},  // K = 288 spans GEMM blocks
    {3, 15, 13, 1, 5, 5, 33, 1, 1, Padding::same, Activation::relu},   // 1 channel, 5×5
    {2, 16, 15, 3, 5, 5, 16, 2, 1, Padding::same, Activation::leaky_relu},  // 3 channels, stride (2, 1)
    {2, 9, 10, 3, 3, 3, 1, 2, 2, Padding::valid, Activation::sigmoid},
    {5, 7, 9, 17, 1, 1, 31, 1, 1, Padding::same},  // 1×1: a Dense layer over pixels
    {2, 6, 7, 40, 3, 3, 9, 1, 2, Padding::valid},  // P = 360 > KC = 256
    {40, 13, 13, 32, 3, 3, 64, 1, 1, Padding::valid, Activation::relu},  // MNIST's second layer: 3 blocks
    {25, 28, 28, 1, 3, 3, 32, 1, 1, Padding::valid, Activation::relu},   // 9 blocks of 3 images
};

struct ConvResult {
    std::vector<float> y, dkernel, dbias, dx;
};

// Forward, then backward from dy with the activation folded in (its
// derivative read from y_for_grad, the same array for every run).
ConvResult run_conv(const GemmPlan& plan, const ConvCase& k, const Window2d& g,
                    const std::vector<float>& x, const std::vector<float>& kernel,
                    const std::vector<float>& bias, const std::vector<float>& dy,
                    const std::vector<float>& y_for_grad, int threads) {
    ThreadCountGuard guard(threads);
    // Outputs and workspaces start as NaN: the kernels must write every value.
    ConvResult r;
    r.y.assign(g.positions() * k.f, kNaN);
    conv2d_forward_with_plan(plan, g, x.data(), kernel.data(), k.bias ? bias.data() : nullptr,
                             k.f, k.act, kLeakySlope, r.y.data());
    r.dkernel.assign(kernel.size(), kNaN);
    r.dbias.assign(k.f, kNaN);
    r.dx.assign(x.size(), kNaN);
    conv2d_backward_with_plan(plan, g, x.data(), kernel.data(), dy.data(), k.f, r.dkernel.data(),
                              r.dbias.data(), r.dx.data(), k.act, y_for_grad.data(),
                              kLeakySlope);
    return r;
}

// Every micro-kernel this CPU has, with this CPU's cache blocks and with a
// tiny cache's (kc = 32 cuts the forward's sums over a window of 75 values).
std::vector<GemmPlan> plans() {
    const MicroKernel* list[8];
    const int n = available_micro_kernels(list, 8);
    const CacheSizes tiny{4 << 10, 16 << 10, 0};
    std::vector<GemmPlan> all;
    for (int i = 0; i < n; ++i) {
        all.push_back({list[i], gemm_blocking(cpu_features().caches, list[i]->mr, list[i]->nr)});
        all.push_back({list[i], gemm_blocking(tiny, list[i]->mr, list[i]->nr)});
    }
    return all;
}

TEST(Conv2d, MatchesReferenceForEveryMicroKernelAndIsThreadCountInvariant) {
    for (const ConvCase& k : kConvCases) {
        SCOPED_TRACE(describe(k));
        const Window2d g = make_window2d(k.n, k.h, k.w, k.c, k.kh, k.kw, k.sh, k.sw, k.padding);
        const auto x = random_vector(k.n * k.h * k.w * k.c, 1);
        const auto kernel = random_vector(g.patch() * k.f, 2);
        const auto bias = random_vector(k.f, 3);
        const auto dy = random_vector(g.positions() * k.f, 4);

        std::vector<float> y_ref(g.positions() * k.f), dk_ref(kernel.size()), db_ref(k.f),
            dx_ref(x.size());
        reference::conv2d_forward(g, x.data(), kernel.data(), k.bias ? bias.data() : nullptr, k.f,
                                  k.act, kLeakySlope, y_ref.data());
        reference::conv2d_backward(g, x.data(), kernel.data(), dy.data(), k.f, dk_ref.data(),
                                   db_ref.data(), dx_ref.data(), k.act, y_ref.data(), kLeakySlope);
        // Sums of K products of values ~1 drift by ~K·eps in float.
        const float tol = 2e-6f * static_cast<float>(g.patch() + 4);
        const float tol_dk = 2e-6f * static_cast<float>(g.positions() + 4);
        const float tol_dx = 2e-6f * static_cast<float>(k.f * k.kh * k.kw + 4);
        for (const GemmPlan& plan : plans()) {
            SCOPED_TRACE(std::string(plan.kernel->name) + " kc=" + std::to_string(plan.blocks.kc));
            const ConvResult one = run_conv(plan, k, g, x, kernel, bias, dy, y_ref, 1);
            const ConvResult two = run_conv(plan, k, g, x, kernel, bias, dy, y_ref, 2);
            expect_close(one.y, y_ref, tol, tol);
            expect_close(one.dkernel, dk_ref, tol_dk, tol_dk);
            expect_close(one.dbias, db_ref, tol_dk, tol_dk);
            expect_close(one.dx, dx_ref, tol_dx, tol_dx);
            expect_bitwise_equal(one.y, two.y, "y");
            expect_bitwise_equal(one.dkernel, two.dkernel, "dkernel");
            expect_bitwise_equal(one.dbias, two.dbias, "dbias");
            expect_bitwise_equal(one.dx, two.dx, "dx");
        }
    }
}

TEST(Conv2d, EachGradientAloneEqualsTheFullBackward) {
    // A first layer asks for no dx, a frozen one only for dx: each gradient is
    // computed the same way whichever others are asked for.
    for (const ConvCase& k : {kConvCases[3], kConvCases[10], kConvCases[16]}) {
        SCOPED_TRACE(describe(k));
        const Window2d g = make_window2d(k.n, k.h, k.w, k.c, k.kh, k.kw, k.sh, k.sw, k.padding);
        const auto x = random_vector(k.n * k.h * k.w * k.c, 1);
        const auto kernel = random_vector(g.patch() * k.f, 2);
        const auto dy = random_vector(g.positions() * k.f, 4);
        const auto y = random_vector(g.positions() * k.f, 5);
        std::vector<float> dk(kernel.size()), db(k.f), dx(x.size());
        conv2d_backward(g, x.data(), kernel.data(), dy.data(), k.f, dk.data(), db.data(),
                        dx.data(), k.act, y.data());
        std::vector<float> dk_alone(dk.size(), kNaN), db_alone(db.size(), kNaN),
            dx_alone(dx.size(), kNaN);
        conv2d_backward(g, x.data(), kernel.data(), dy.data(), k.f, dk_alone.data(), nullptr,
                        nullptr, k.act, y.data());
        conv2d_backward(g, x.data(), kernel.data(), dy.data(), k.f, nullptr, db_alone.data(),
                        nullptr, k.act, y.data());
        conv2d_backward(g, x.data(), kernel.data(), dy.data(), k.f, nullptr, nullptr,
                        dx_alone.data(), k.act, y.data());
        expect_bitwise_equal(dk_alone, dk, "dkernel");
        expect_bitwise_equal(db_alone, db, "dbias");
        expect_bitwise_equal(dx_alone, dx, "dx");
    }
}

TEST(Conv2d, FoldedActivationEqualsItsBackwardFirst) {
    // backward(dy, act, y) is backward(dz) with dz = activation_backward(dy, y).
    const ConvCase k = kConvCases[12];
    const Window2d g = make_window2d(k.n, k.h, k.w, k.c, k.kh, k.kw, k.sh, k.sw, k.padding);
    const auto x = random_vector(k.n * k.h * k.w * k.c, 1);
    const auto kernel = random_vector(g.patch() * k.f, 2);
    const auto dy = random_vector(g.positions() * k.f, 4);
    const auto y = random_vector(g.positions() * k.f, 5);
    for (Activation act : {Activation::relu, Activation::leaky_relu, Activation::sigmoid,
                           Activation::tanh}) {
        SCOPED_TRACE(static_cast<int>(act));
        std::vector<float> dz(dy.size());
        activation_backward(act, nullptr, y.data(), dy.data(), dz.data(), dz.size(), kLeakySlope);
        std::vector<float> dk(kernel.size()), db(k.f), dx(x.size());
        conv2d_backward(g, x.data(), kernel.data(), dz.data(), k.f, dk.data(), db.data(),
                        dx.data());
        std::vector<float> dk_f(kernel.size()), db_f(k.f), dx_f(x.size());
        conv2d_backward(g, x.data(), kernel.data(), dy.data(), k.f, dk_f.data(), db_f.data(),
                        dx_f.data(), act, y.data(), kLeakySlope);
        expect_bitwise_equal(dk_f, dk, "dkernel");
        expect_bitwise_equal(db_f, db, "dbias");
        expect_bitwise_equal(dx_f, dx, "dx");
    }
}

TEST(Conv2d, RejectsActivationsItCannotApplyBeforeStarting) {
    const Window2d g = make_window2d(2, 5, 5, 2, 3, 3, 1, 1, Padding::same);
    const auto x = random_vector(2 * 5 * 5 * 2, 1), kernel = random_vector(g.patch() * 3, 2);
    std::vector<float> y(g.positions() * 3), dk(kernel.size()), dx(x.size());
    EXPECT_THROW(conv2d_forward(g, x.data(), kernel.data(), nullptr, 3, Activation::softmax, 0.0f,
                                y.data()),
                 std::invalid_argument);
    for (Activation act : {Activation::softmax, Activation::gelu})
        EXPECT_THROW(conv2d_backward(g, x.data(), kernel.data(), y.data(), 3, dk.data(), nullptr,
                                     dx.data(), act, y.data()),
                     std::invalid_argument);
    EXPECT_THROW(conv2d_backward(g, x.data(), kernel.data(), y.data(), 3, dk.data(), nullptr,
                                 dx.data(), Activation::relu, nullptr),
                 std::invalid_argument);
}

TEST(Conv2d, EmptyBatchAndWindowsThatNeverFit) {
    for (const ConvCase& k : {ConvCase{0, 5, 5, 2, 3, 3, 4, 1, 1, Padding::same},
                              ConvCase{2, 2, 5, 2, 3, 3, 4, 1, 1, Padding::valid}}) {
        SCOPED_TRACE(describe(k));
        const Window2d g = make_window2d(k.n, k.h, k.w, k.c, k.kh, k.kw, k.sh, k.sw, k.padding);
        EXPECT_EQ(g.positions(), 0);
        const auto x = random_vector(k.n * k.h * k.w * k.c, 1);
        const auto kernel = random_vector(g.patch() * k.f, 2);
        conv2d_forward(g, x.data(), kernel.data(), nullptr, k.f, Activation::relu, 0.0f, nullptr);
        std::vector<float> dk(kernel.size(), kNaN), db(k.f, kNaN), dx(x.size(), kNaN);
        conv2d_backward(g, x.data(), kernel.data(), nullptr, k.f, dk.data(), db.data(), dx.data());
        // No window: every gradient is 0.
        for (const auto* v : {&dk, &db, &dx})
            for (float value : *v) ASSERT_EQ(value, 0.0f);
    }
}

TEST(Conv2d, HandWorkedSamePaddingWithStride) {
    // x: one 3×3 channel 1..9, kernel 2×2 of ones, stride 2, same: Ho = Wo = 2,
    // total padding 1 → none before, one row/column of zeros after.
    const Window2d g = make_window2d(1, 3, 3, 1, 2, 2, 2, 2, Padding::same);
    std::vector<float> x(9);
    std::iota(x.begin(), x.end(), 1.0f);
    const std::vector<float> kernel(4, 1.0f), bias = {0.5f};
    std::vector<float> y(g.positions());
    conv2d_forward(g, x.data(), kernel.data(), bias.data(), 1, Activation::identity, 0.0f,
                   y.data());
    expect_close(y, {1 + 2 + 4 + 5 + 0.5f, 3 + 6 + 0.5f, 7 + 8 + 0.5f, 9 + 0.5f});
}

TEST(Conv2d, GradientsMatchFiniteDifferences) {
    for (const ConvCase& k : {ConvCase{2, 5, 6, 3, 3, 2, 4, 2, 1, Padding::same},
                              ConvCase{1, 4, 7, 2, 2, 3, 3, 1, 2, Padding::valid},
                              ConvCase{1, 2, 2, 2, 3, 3, 2, 1, 1, Padding::same},
                              ConvCase{2, 7, 6, 1, 3, 3, 5, 1, 1, Padding::same}}) {
        SCOPED_TRACE(describe(k));
        const Window2d g = make_window2d(k.n, k.h, k.w, k.c, k.kh, k.kw, k.sh, k.sw, k.padding);
        auto x = random_vector(k.n * k.h * k.w * k.c, 1);
        auto kernel = random_vector(g.patch() * k.f, 2);
        auto bias = random_vector(k.f, 3);
        const auto r = random_vector(g.positions() * k.f, 4);
        std::vector<float> y(g.positions() * k.f);
        const auto loss = [&] {
            conv2d_forward(g, x.data(), kernel.data(), bias.data(), k.f, Activation::identity,
                           0.0f, y.data());
            return dot(y, r);
        };
        std::vector<float> dk(kernel.size()), db(k.f), dx(x.size());
        conv2d_backward(g, x.data(), kernel.data(), r.data(), k.f, dk.data(), db.data(),
                        dx.data());
        EXPECT_LT(relative_error(dx, numeric_gradient(x, loss, 1e-2f)), 1e-3);
        EXPECT_LT(relative_error(dk, numeric_gradient(kernel, loss, 1e-2f)), 1e-3);
        EXPECT_LT(relative_error(db, numeric_gradient(bias, loss, 1e-2f)), 1e-3);
    }
}

// ---------------------------------------------------------------- pooling

struct PoolCase {
    int64_t n, h, w, c, kh, kw, sh, sw;
    Padding padding;
};

std::string describe(const PoolCase& k) {
    return "x=(" + std::to_string(k.n) + "," + std::to_string(k.h) + "," + std::to_string(k.w) +
           "," + std::to_string(k.c) + ") pool=(" + std::to_string(k.kh) + "," +
           std::to_string(k.kw) + ") strides=(" + std::to_string(k.sh) + "," +
           std::to_string(k.sw) + ") " + padding_name(k.padding);
}

Window2d geometry(const PoolCase& k) {
    return make_window2d(k.n, k.h, k.w, k.c, k.kh, k.kw, k.sh, k.sw, k.padding);
}

const std::vector<PoolCase> kPoolCases = {
    {1, 1, 1, 1, 1, 1, 1, 1, Padding::valid},
    {2, 4, 4, 3, 2, 2, 2, 2, Padding::valid},
    {2, 5, 7, 3, 2, 2, 2, 2, Padding::valid},  // odd sizes: the last row/column is dropped
    {2, 5, 7, 3, 2, 2, 2, 2, Padding::same},   // ... or pooled over what is there
    {3, 13, 11, 17, 3, 3, 2, 2, Padding::same},
    {2, 7, 7, 5, 3, 3, 1, 1, Padding::same},   // overlapping windows
    {2, 2, 3, 2, 5, 4, 1, 1, Padding::same},   // window larger than the input
    {2, 9, 8, 2, 2, 3, 3, 2, Padding::same},   // stride larger than the window
    {4, 28, 28, 32, 2, 2, 2, 2, Padding::valid},  // large enough to run on 2 threads
    {1, 26, 26, 32, 2, 2, 2, 2, Padding::valid},  // one image, split between threads by rows
    {2, 11, 11, 64, 2, 2, 2, 2, Padding::valid},  // the last row and column are in no window
    {3, 9, 9, 1, 3, 3, 2, 2, Padding::valid},     // one channel, overlapping windows
};

TEST(MaxPool2d, MatchesReferenceAndIsThreadCountInvariant) {
    for (const PoolCase& k : kPoolCases) {
        SCOPED_TRACE(describe(k));
        const Window2d g = geometry(k);
        // Small integers: many ties, which must go to the first maximum.
        std::vector<float> x(k.n * k.h * k.w * k.c);
        std::mt19937 gen(1);
        for (auto& v : x) v = static_cast<float>(gen() % 4);
        const auto dy = random_vector(g.positions() * k.c, 2);
        std::vector<float> y_ref(dy.size()), dx_ref(x.size());
        std::vector<int32_t> arg_ref(dy.size());
        reference::max_pool2d_forward(g, x.data(), y_ref.data(), arg_ref.data());
        reference::max_pool2d_backward(g, dy.data(), arg_ref.data(), dx_ref.data());
        std::vector<std::vector<float>> dxs;
        for (int threads : kThreadCounts) {
            ThreadCountGuard guard(threads);
            std::vector<float> y(dy.size(), kNaN), dx(x.size(), kNaN);
            std::vector<int32_t> arg(dy.size(), -1);
            max_pool2d_forward(g, x.data(), y.data(), arg.data());
            max_pool2d_backward(g, dy.data(), arg.data(), dx.data());
            expect_close(y, y_ref, 0, 0);
            EXPECT_EQ(arg, arg_ref);
            // Each input adds the gradients of the windows it won in window
            // order, as the reference's scatter does: the same sums exactly.
            expect_close(dx, dx_ref, 0, 0);
            dxs.push_back(dx);
        }
        expect_bitwise_equal(dxs[0], dxs[1], "dx");
    }
}

TEST(AvgPool2d, MatchesReferenceAndIsThreadCountInvariant) {
    for (const PoolCase& k : kPoolCases) {
        SCOPED_TRACE(describe(k));
        const Window2d g = geometry(k);
        const auto x = random_vector(k.n * k.h * k.w * k.c, 1);
        const auto dy = random_vector(g.positions() * k.c, 2);
        std::vector<float> y_ref(dy.size()), dx_ref(x.size());
        reference::avg_pool2d_forward(g, x.data(), y_ref.data());
        reference::avg_pool2d_backward(g, dy.data(), dx_ref.data());
        std::vector<std::vector<float>> ys, dxs;
        for (int threads : kThreadCounts) {
            ThreadCountGuard guard(threads);
            std::vector<float> y(dy.size(), kNaN), dx(x.size(), kNaN);
            avg_pool2d_forward(g, x.data(), y.data());
            avg_pool2d_backward(g, dy.data(), dx.data());
            expect_close(y, y_ref, 1e-5f, 1e-6f);
            expect_close(dx, dx_ref, 1e-5f, 1e-6f);
            ys.push_back(y);
            dxs.push_back(dx);
        }
        expect_bitwise_equal(ys[0], ys[1], "y");
        expect_bitwise_equal(dxs[0], dxs[1], "dx");
    }
}

TEST(AvgPool2d, SamePaddingAveragesOnlyRealInputs) {
    // 3×3 image 1..9, 2×2 windows, stride 2, same: the edge windows cover 2 and
    // 1 pixels and divide by that (TensorFlow/Keras), not by 4.
    const Window2d g = make_window2d(1, 3, 3, 1, 2, 2, 2, 2, Padding::same);
    std::vector<float> x(9);
    std::iota(x.begin(), x.end(), 1.0f);
    std::vector<float> y(4), dx(9);
    avg_pool2d_forward(g, x.data(), y.data());
    expect_close(y, {3.0f, 4.5f, 7.5f, 9.0f});
    avg_pool2d_backward(g, std::vector<float>(4, 1.0f).data(), dx.data());
    expect_close(dx, {0.25f, 0.25f, 0.5f, 0.25f, 0.25f, 0.5f, 0.5f, 0.5f, 1.0f});
}

TEST(GlobalAvgPool2d, MatchesReferenceAndIsThreadCountInvariant) {
    for (const PoolCase& k : kPoolCases) {
        SCOPED_TRACE(describe(k));
        const auto x = random_vector(k.n * k.h * k.w * k.c, 1);
        const auto dy = random_vector(k.n * k.c, 2);
        std::vector<float> y_ref(dy.size()), dx_ref(x.size());
        reference::global_avg_pool2d_forward(x.data(), y_ref.data(), k.n, k.h, k.w, k.c);
        reference::global_avg_pool2d_backward(dy.data(), dx_ref.data(), k.n, k.h, k.w, k.c);
        std::vector<std::vector<float>> ys;
        for (int threads : kThreadCounts) {
            ThreadCountGuard guard(threads);
            std::vector<float> y(dy.size(), kNaN), dx(x.size(), kNaN);
            global_avg_pool2d_forward(x.data(), y.data(), k.n, k.h, k.w, k.c);
            global_avg_pool2d_backward(dy.data(), dx.data(), k.n, k.h, k.w, k.c);
            expect_close(y, y_ref, 1e-5f, 1e-6f);
            expect_close(dx, dx_ref, 1e-6f, 0);
            ys.push_back(y);
        }
        expect_bitwise_equal(ys[0], ys[1], "y");
    }
}

TEST(Pooling, GradientsMatchFiniteDifferences) {
    for (const PoolCase& k : {PoolCase{2, 5, 7, 3, 2, 2, 2, 2, Padding::same},
                              PoolCase{1, 6, 5, 2, 3, 3, 2, 1, Padding::valid},
                              PoolCase{1, 2, 3, 2, 5, 4, 1, 1, Padding::same}}) {
        SCOPED_TRACE(describe(k));
        const Window2d g = geometry(k);
        auto x = distinct_values(k.n * k.h * k.w * k.c, 1);
        const auto r = random_vector(g.positions() * k.c, 2);
        std::vector<float> y(r.size()), dx(x.size());
        std::vector<int32_t> arg(r.size());

        const auto max_loss = [&] {
            max_pool2d_forward(g, x.data(), y.data(), arg.data());
            return dot(y, r);
        };
        max_loss();
        max_pool2d_backward(g, r.data(), arg.data(), dx.data());
        EXPECT_LT(relative_error(dx, numeric_gradient(x, max_loss, 1e-3f)), 1e-3) << "max";

        const auto avg_loss = [&] {
            avg_pool2d_forward(g, x.data(), y.data());
            return dot(y, r);
        };
        avg_pool2d_backward(g, r.data(), dx.data());
        EXPECT_LT(relative_error(dx, numeric_gradient(x, avg_loss, 1e-2f)), 1e-3) << "avg";

        const auto r_global = random_vector(k.n * k.c, 3);
        std::vector<float> y_global(r_global.size());
        const auto global_loss = [&] {
            global_avg_pool2d_forward(x.data(), y_global.data(), k.n, k.h, k.w, k.c);
            return dot(y_global, r_global);
        };
        global_avg_pool2d_backward(r_global.data(), dx.data(), k.n, k.h, k.w, k.c);
        EXPECT_LT(relative_error(dx, numeric_gradient(x, global_loss, 1e-2f)), 1e-3) << "global";
    }
}

// ---------------------------------------------------------------- batch norm

struct BatchNormState {
    std::vector<float> y, mean, inv_std, moving_mean, moving_var, dx, dgamma, dbeta;
};

// (rows, channels): a single row, odd, prime, several channel blocks of 16,
// and enough rows × blocks to run on 2 threads.
const std::vector<std::pair<int64_t, int64_t>> kBatchNormShapes = {
    {1, 1}, {2, 3}, {7, 17}, {196, 5}, {1031, 33}, {2000, 40}};

BatchNormState run_batch_norm(bool fast, bool training, const std::vector<float>& x,
                              const std::vector<float>& gamma, const std::vector<float>& beta,
                              const std::vector<float>& dy, int64_t rows, int64_t channels) {
    BatchNormState s;
    s.y.assign(x.size(), kNaN);
    s.dx.assign(x.size(), kNaN);
    s.mean.assign(channels, kNaN);
    s.inv_std.assign(channels, kNaN);
    s.dgamma.assign(channels, kNaN);
    s.dbeta.assign(channels, kNaN);
    s.moving_mean = random_vector(channels, 7);
    s.moving_var = random_vector(channels, 8, 0.5f, 2.0f);
    auto forward = fast ? batch_norm_forward : reference::batch_norm_forward;
    auto backward = fast ? batch_norm_backward : reference::batch_norm_backward;
    forward(x.data(), gamma.data(), beta.data(), s.moving_mean.data(), s.moving_var.data(),
            training, 0.99f, 1e-3f, s.mean.data(), s.inv_std.data(), s.y.data(), rows, channels);
    backward(x.data(), gamma.data(), s.mean.data(), s.inv_std.data(), dy.data(), training,
             s.dx.data(), s.dgamma.data(), s.dbeta.data(), rows, channels);
    return s;
}

TEST(BatchNorm, MatchesReferenceAndIsThreadCountInvariant) {
    for (auto [rows, channels] : kBatchNormShapes)
        for (bool training : {true, false}) {
            SCOPED_TRACE("rows=" + std::to_string(rows) + " channels=" + std::to_string(channels) +
                         " training=" + std::to_string(training));
            // An offset mean, as real activations have: the two-pass variance must cope.
            const auto x = random_vector(rows * channels, 1, 2.0f, 5.0f);
            const auto gamma = random_vector(channels, 2, 0.5f, 1.5f);
            const auto beta = random_vector(channels, 3);
            const auto dy = random_vector(rows * channels, 4);
            const BatchNormState ref = run_batch_norm(false, training, x, gamma, beta, dy, rows, channels);
            std::vector<BatchNormState> runs;
            for (int threads : kThreadCounts) {
                ThreadCountGuard guard(threads);
                runs.push_back(run_batch_norm(true, training, x, gamma, beta, dy, rows, channels));
                const BatchNormState& s = runs.back();
                expect_close(s.y, ref.y, 1e-4f, 1e-4f);
                expect_close(s.mean, ref.mean, 1e-6f, 1e-6f);
                expect_close(s.inv_std, ref.inv_std, 1e-5f, 1e-6f);
                expect_close(s.moving_mean, ref.moving_mean, 1e-6f, 1e-6f);
                expect_close(s.moving_var, ref.moving_var, 1e-6f, 1e-6f);
                const float sum_tol = 1e-5f * static_cast<float>(rows);
                expect_close(s.dbeta, ref.dbeta, 1e-5f, sum_tol);
                expect_close(s.dgamma, ref.dgamma, 1e-5f, sum_tol);
                expect_close(s.dx, ref.dx, 1e-3f, 1e-4f);
            }
            for (auto member : {&BatchNormState::y, &BatchNormState::moving_var,
                                &BatchNormState::dx, &BatchNormState::dgamma})
                expect_bitwise_equal(runs[0].*member, runs[1].*member, "batch norm output");
        }
}

TEST(BatchNorm, TrainingNormalisesAndUpdatesMovingStatsLikeKeras) {
    // One channel, x = 1, 2, 3, 4: μ = 2.5, σ² = 1.25 (biased).
    const std::vector<float> x = {1, 2, 3, 4}, gamma = {2}, beta = {1};
    std::vector<float> y(4), mean(1), inv_std(1), moving_mean = {0}, moving_var = {1};
    batch_norm_forward(x.data(), gamma.data(), beta.data(), moving_mean.data(), moving_var.data(),
                       true, 0.99f, 1e-3f, mean.data(), inv_std.data(), y.data(), 4, 1);
    const float s = 1.0f / std::sqrt(1.25f + 1e-3f);
    expect_close(y, {1 - 3 * s, 1 - s, 1 + s, 1 + 3 * s});
    expect_close(moving_mean, {0.01f * 2.5f});
    expect_close(moving_var, {0.99f + 0.01f * 1.25f});
}

TEST(BatchNorm, GradientsMatchFiniteDifferences) {
    for (bool training : {true, false}) {
        SCOPED_TRACE(training ? "training" : "inference");
        const int64_t rows = 12, channels = 3;
        auto x = random_vector(rows * channels, 1);
        auto gamma = random_vector(channels, 2, 0.5f, 1.5f);
        auto beta = random_vector(channels, 3);
        const auto r = random_vector(rows * channels, 4);
        std::vector<float> y(x.size()), mean(channels), inv_std(channels);
        std::vector<float> moving_mean(channels, 0.1f), moving_var(channels, 0.9f);
        const auto loss = [&] {
            batch_norm_forward(x.data(), gamma.data(), beta.data(), moving_mean.data(),
                               moving_var.data(), training, 0.99f, 1e-3f, mean.data(),
                               inv_std.data(), y.data(), rows, channels);
            return dot(y, r);
        };
        const auto saved_mean = moving_mean, saved_var = moving_var;
        const auto loss_from_same_stats = [&] {  // the moving stats must not drift between calls
            moving_mean = saved_mean;
            moving_var = saved_var;
            return loss();
        };
        loss_from_same_stats();
        std::vector<float> dx(x.size()), dgamma(channels), dbeta(channels);
        batch_norm_backward(x.data(), gamma.data(), mean.data(), inv_std.data(), r.data(),
                            training, dx.data(), dgamma.data(), dbeta.data(), rows, channels);
        EXPECT_LT(relative_error(dx, numeric_gradient(x, loss_from_same_stats, 1e-2f)), 1e-2);
        EXPECT_LT(relative_error(dgamma, numeric_gradient(gamma, loss_from_same_stats, 1e-2f)), 1e-3);
        EXPECT_LT(relative_error(dbeta, numeric_gradient(beta, loss_from_same_stats, 1e-2f)), 1e-3);
    }
}

}  // namespace
}  // namespace fz
