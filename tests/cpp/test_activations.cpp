// test_activations.cpp — activations and softmax against the reference loops,
// an independent double-precision model, finite differences and known values.
#include "activations.h"

#include <algorithm>
#include <cmath>
#include <ostream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "test_util.h"
#include "vecmath.h"

namespace fz {

// Names the parameter of a failing test instead of printing its bytes.
void PrintTo(Activation act, std::ostream* os);

namespace {

using testing::expect_close;
using testing::kAwkwardSizes;
using testing::kThreadCounts;
using testing::random_vector;
using testing::ThreadCountGuard;

constexpr float kAlpha = 0.2f;  // LeakyReLU slope used throughout

const std::vector<Activation> kElementwise = {Activation::identity, Activation::relu,
                                              Activation::leaky_relu, Activation::sigmoid,
                                              Activation::tanh, Activation::gelu};

std::string activation_name(Activation act) {
    switch (act) {
        case Activation::identity: return "identity";
        case Activation::relu: return "relu";
        case Activation::leaky_relu: return "leaky_relu";
        case Activation::sigmoid: return "sigmoid";
        case Activation::tanh: return "tanh";
        case Activation::gelu: return "gelu";
        case Activation::softmax: return "softmax";
    }
    return "unknown";
}

// kAwkwardSizes plus sizes above the 16K-value grain, so that two threads
// really split the work.
std::vector<int64_t> elementwise_sizes() {
    std::vector<int64_t> sizes = kAwkwardSizes;
    sizes.push_back(2 * 16384 + 5);
    sizes.push_back(100003);
    return sizes;
}

// (rows, cols) shapes: 1×1, 1×N, N×1, prime×prime, and some above 16K values
// with few rows, many rows, or both.
std::vector<std::pair<int64_t, int64_t>> matrix_shapes() {
    std::vector<std::pair<int64_t, int64_t>> shapes;
    for (int64_t r : {1, 2, 7, 17, 97})
        for (int64_t c : {1, 3, 16, 31, 257, 1031}) shapes.emplace_back(r, c);
    shapes.emplace_back(1031, 1);
    shapes.emplace_back(131, 257);
    shapes.emplace_back(3, 20011);
    shapes.emplace_back(20011, 3);
    return shapes;
}

// An independent double-precision model of each elementwise activation.
double activation_f64(Activation act, double x) {
    switch (act) {
        case Activation::identity: return x;
        case Activation::relu: return x > 0 ? x : 0;
        case Activation::leaky_relu: return x > 0 ? x : kAlpha * x;
        case Activation::sigmoid: return 1 / (1 + std::exp(-x));
        case Activation::tanh: return std::tanh(x);
        case Activation::gelu: return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0)));
        case Activation::softmax: break;
    }
    ADD_FAILURE() << "no model for " << activation_name(act);
    return 0;
}

std::vector<float> forward(Activation act, const std::vector<float>& x) {
    std::vector<float> y(x.size());
    activation_forward(act, x.data(), y.data(), static_cast<int64_t>(x.size()), kAlpha);
    return y;
}

std::vector<float> backward(Activation act, const std::vector<float>& x,
                            const std::vector<float>& y, const std::vector<float>& dy) {
    std::vector<float> dx(x.size());
    activation_backward(act, x.data(), y.data(), dy.data(), dx.data(),
                        static_cast<int64_t>(x.size()), kAlpha);
    return dx;
}

class ElementwiseActivation : public ::testing::TestWithParam<Activation> {};

TEST_P(ElementwiseActivation, ForwardMatchesReference) {
    const Activation act = GetParam();
    for (int64_t n : elementwise_sizes()) {
        SCOPED_TRACE("n = " + std::to_string(n));
        const auto x = random_vector(n, 1, -6.0f, 6.0f);
        std::vector<float> expected(x.size());
        reference::activation_forward(act, x.data(), expected.data(), n, kAlpha);
        std::vector<float> first;
        for (int threads : kThreadCounts) {
            ThreadCountGuard guard(threads);
            const auto y = forward(act, x);
            expect_close(y, expected);
            if (first.empty()) first = y;
            EXPECT_EQ(y, first) << "result depends on the thread count";
        }
    }
}

TEST_P(ElementwiseActivation, BackwardMatchesReference) {
    const Activation act = GetParam();
    for (int64_t n : elementwise_sizes()) {
        SCOPED_TRACE("n = " + std::to_string(n));
        const auto x = random_vector(n, 2, -6.0f, 6.0f);
        const auto dy = random_vector(n, 3);
        std::vector<float> y(x.size()), expected(x.size());
        reference::activation_forward(act, x.data(), y.data(), n, kAlpha);
        reference::activation_backward(act, x.data(), y.data(), dy.data(), expected.data(), n,
                                       kAlpha);
        std::vector<float> first;
        for (int threads : kThreadCounts) {
            ThreadCountGuard guard(threads);
            const auto dx = backward(act, x, y, dy);
            expect_close(dx, expected);
            if (first.empty()) first = dx;
            EXPECT_EQ(dx, first) << "result depends on the thread count";
        }
    }
}

TEST_P(ElementwiseActivation, ForwardMatchesDoublePrecisionModel) {
    const Activation act = GetParam();
    const auto x = random_vector(1031, 4, -6.0f, 6.0f);
    const auto y = forward(act, x);
    std::vector<float> expected(x.size());
    for (size_t i = 0; i < x.size(); ++i)
        expected[i] = static_cast<float>(activation_f64(act, x[i]));
    expect_close(y, expected, 1e-5f, 1e-6f);
}

// dx = dy · f'(x) against dy · (f(x + h) − f(x − h)) / 2h evaluated in double.
// Points within 1e-2 of the ReLU kink at 0 are moved away from it.
TEST_P(ElementwiseActivation, BackwardMatchesFiniteDifferences) {
    const Activation act = GetParam();
    auto x = random_vector(1031, 5, -5.0f, 5.0f);
    for (auto& v : x)
        if (std::fabs(v) < 1e-2f) v += 0.1f;
    const auto dy = random_vector(1031, 6);
    const auto dx = backward(act, x, forward(act, x), dy);
    const double h = 1e-4;
    std::vector<float> expected(x.size());
    for (size_t i = 0; i < x.size(); ++i) {
        const double slope =
            (activation_f64(act, x[i] + h) - activation_f64(act, x[i] - h)) / (2 * h);
        expected[i] = static_cast<float>(dy[i] * slope);
    }
    expect_close(dx, expected, 1e-4f, 1e-5f);
}

TEST_P(ElementwiseActivation, InPlaceMatchesOutOfPlace) {
    const Activation act = GetParam();
    const int64_t n = 2 * 16384 + 5;
    const auto x = random_vector(n, 7, -4.0f, 4.0f);
    const auto dy = random_vector(n, 8);
    const auto y = forward(act, x);
    const auto dx = backward(act, x, y, dy);

    auto inplace = x;
    activation_forward(act, inplace.data(), inplace.data(), n, kAlpha);
    EXPECT_EQ(inplace, y);
    auto grad = dy;
    activation_backward(act, x.data(), y.data(), grad.data(), grad.data(), n, kAlpha);
    EXPECT_EQ(grad, dx);
}

INSTANTIATE_TEST_SUITE_P(Activations, ElementwiseActivation, ::testing::ValuesIn(kElementwise),
                         [](const ::testing::TestParamInfo<Activation>& param) {
                             return activation_name(param.param);
                         });

TEST(Activation, SoftmaxIsRejectedByElementwiseEntryPoints) {
    std::vector<float> v(4, 0.0f), w(4, 0.0f);
    EXPECT_THROW(activation_forward(Activation::softmax, v.data(), w.data(), 4, 0.0f),
                 std::invalid_argument);
    EXPECT_THROW(activation_backward(Activation::softmax, v.data(), v.data(), v.data(), w.data(),
                                     4, 0.0f),
                 std::invalid_argument);
    EXPECT_THROW(reference::activation_forward(Activation::softmax, v.data(), w.data(), 4, 0.0f),
                 std::invalid_argument);
    EXPECT_THROW(reference::activation_backward(Activation::softmax, v.data(), v.data(), v.data(),
                                                w.data(), 4, 0.0f),
                 std::invalid_argument);
}

TEST(Activation, OnlyGeluBackwardNeedsInput) {
    for (Activation act : kElementwise)
        EXPECT_EQ(activation_backward_needs_input(act), act == Activation::gelu)
            << activation_name(act);
}

TEST(Activation, SigmoidOfLargeMagnitudesIsFinite) {
    const std::vector<float> x = {-1e4f, -100.0f, 100.0f, 1e4f};
    const auto y = forward(Activation::sigmoid, x);
    const auto dx = backward(Activation::sigmoid, x, y, std::vector<float>(x.size(), 1.0f));
    for (size_t i = 0; i < x.size(); ++i) {
        EXPECT_TRUE(std::isfinite(y[i])) << x[i];
        EXPECT_TRUE(std::isfinite(dx[i])) << x[i];
        EXPECT_GE(dx[i], 0.0f);
    }
    EXPECT_EQ(y[0], 0.0f);
    EXPECT_LT(y[1], 1e-40f);
    EXPECT_EQ(y[2], 1.0f);
    EXPECT_EQ(y[3], 1.0f);
}

// Values of x Φ(x) and Φ(x) + x φ(x); the tanh approximation gives
// GELU(1) ≈ 0.841192, which this tolerance rejects.
TEST(Activation, GeluIsTheExactErfForm) {
    const std::vector<float> x = {-3.0f, -1.0f, 0.0f, 1.0f, 2.0f};
    const auto y = forward(Activation::gelu, x);
    expect_close(y, {-0.00404969409f, -0.158655254f, 0.0f, 0.841344746f, 1.95449974f}, 1e-6f,
                 1e-7f);
    const auto dx = backward(Activation::gelu, x, y, std::vector<float>(x.size(), 1.0f));
    expect_close(dx, {-0.0119456472f, -0.0833154706f, 0.5f, 1.08331547f, 1.0852318f}, 1e-6f, 1e-7f);
}

TEST(Activation, LeakyReluUsesAlphaBelowZero) {
    const std::vector<float> x = {-2.0f, -0.5f, 0.0f, 3.0f};
    const auto y = forward(Activation::leaky_relu, x);
    expect_close(y, {-0.4f, -0.1f, 0.0f, 3.0f}, 1e-7f, 0.0f);
    const auto dx = backward(Activation::leaky_relu, x, y, {10.0f, 10.0f, 10.0f, 10.0f});
    expect_close(dx, {2.0f, 2.0f, 2.0f, 10.0f}, 1e-7f, 0.0f);
}

TEST(Activation, ReluPropagatesNan) {
    const auto y = forward(Activation::relu, {NAN, -1.0f, 1.0f});
    EXPECT_TRUE(std::isnan(y[0]));
    EXPECT_EQ(y[1], 0.0f);
    EXPECT_EQ(y[2], 1.0f);
}

// ---- softmax ----

std::vector<float> softmax(const std::vector<float>& x, int64_t rows, int64_t cols) {
    std::vector<float> y(x.size());
    softmax_forward(x.data(), y.data(), rows, cols);
    return y;
}

// Softmax of one row in double, for the finite-difference check.
std::vector<double> softmax_row_f64(std::vector<double> row) {
    const double max = *std::max_element(row.begin(), row.end());
    double sum = 0;
    for (auto& v : row) sum += v = std::exp(v - max);
    for (auto& v : row) v /= sum;
    return row;
}

// ∂L/∂x by central differences in double, for L(x) = Σ_ij dy_ij f(softmax(x)_ij),
// f applied to each probability (identity for softmax, log for log-softmax).
template <class F>
std::vector<float> softmax_loss_gradient_f64(const std::vector<float>& x,
                                             const std::vector<float>& dy, int64_t rows,
                                             int64_t cols, F f) {
    const double h = 1e-5;
    std::vector<float> grad(x.size());
    for (int64_t i = 0; i < rows; ++i) {
        std::vector<double> row(x.begin() + i * cols, x.begin() + (i + 1) * cols);
        const auto loss = [&](const std::vector<double>& r) {
            const auto p = softmax_row_f64(r);
            double l = 0;
            for (int64_t j = 0; j < cols; ++j) l += dy[i * cols + j] * f(p[j]);
            return l;
        };
        for (int64_t j = 0; j < cols; ++j) {
            auto plus = row, minus = row;
            plus[j] += h;
            minus[j] -= h;
            grad[i * cols + j] = static_cast<float>((loss(plus) - loss(minus)) / (2 * h));
        }
    }
    return grad;
}

TEST(Softmax, ForwardMatchesReference) {
    for (auto [rows, cols] : matrix_shapes()) {
        SCOPED_TRACE(std::to_string(rows) + "x" + std::to_string(cols));
        const auto x = random_vector(rows * cols, 10, -10.0f, 10.0f);
        std::vector<float> expected(x.size());
        reference::softmax_forward(x.data(), expected.data(), rows, cols);
        std::vector<float> first;
        for (int threads : kThreadCounts) {
            ThreadCountGuard guard(threads);
            const auto y = softmax(x, rows, cols);
            expect_close(y, expected);
            if (first.empty()) first = y;
            EXPECT_EQ(y, first) << "result depends on the thread count";
        }
    }
}

TEST(Softmax, RowsSumToOne) {
    for (auto [rows, cols] : matrix_shapes()) {
        SCOPED_TRACE(std::to_string(rows) + "x" + std::to_string(cols));
        const auto y = softmax(random_vector(rows * cols, 11, -10.0f, 10.0f), rows, cols);
        for (int64_t i = 0; i < rows; ++i) {
            double sum = 0;
            for (int64_t j = 0; j < cols; ++j) {
                ASSERT_GE(y[i * cols + j], 0.0f);
                sum += y[i * cols + j];
            }
            ASSERT_NEAR(sum, 1.0, 1e-6) << "row " << i;
        }
    }
}

TEST(Softmax, StableWithHugeLogits) {
    // Without subtracting the row maximum exp(1e4) overflows to inf and the
    // rows become NaN.
    const std::vector<float> x = {1e4f, 1e4f - 1, 1e4f - 2, -1e4f,  // mixed
                                  1e4f, 1e4f,     1e4f,     1e4f};  // all equal
    const auto y = softmax(x, 2, 4);
    const auto row0 = softmax_row_f64({0.0, -1.0, -2.0, -2e4});
    std::vector<float> expected(row0.begin(), row0.end());
    expected.insert(expected.end(), 4, 0.25f);
    expect_close(y, expected);
}

TEST(Softmax, InPlaceMatchesOutOfPlace) {
    const int64_t rows = 131, cols = 257;
    const auto x = random_vector(rows * cols, 12, -5.0f, 5.0f);
    const auto dy = random_vector(rows * cols, 13);
    const auto y = softmax(x, rows, cols);
    std::vector<float> dx(x.size());
    softmax_backward(y.data(), dy.data(), dx.data(), rows, cols);

    auto inplace = x;
    softmax_forward(inplace.data(), inplace.data(), rows, cols);
    EXPECT_EQ(inplace, y);
    auto grad = dy;
    softmax_backward(y.data(), grad.data(), grad.data(), rows, cols);
    EXPECT_EQ(grad, dx);
}

TEST(Softmax, BackwardMatchesReference) {
    for (auto [rows, cols] : matrix_shapes()) {
        SCOPED_TRACE(std::to_string(rows) + "x" + std::to_string(cols));
        const auto y = softmax(random_vector(rows * cols, 14, -5.0f, 5.0f), rows, cols);
        const auto dy = random_vector(rows * cols, 15);
        std::vector<float> expected(y.size());
        reference::softmax_backward(y.data(), dy.data(), expected.data(), rows, cols);
        std::vector<float> first;
        for (int threads : kThreadCounts) {
            ThreadCountGuard guard(threads);
            std::vector<float> dx(y.size());
            softmax_backward(y.data(), dy.data(), dx.data(), rows, cols);
            expect_close(dx, expected, 1e-5f, 1e-6f);
            if (first.empty()) first = dx;
            EXPECT_EQ(dx, first) << "result depends on the thread count";
        }
    }
}

// Beyond streaming_threshold_bytes() the memory-bound kernels write with
// non-temporal stores: the same bits as the cached loops (softmax's backward:
// one serial call per row) and the plain formulas, at 1 and 2 threads (chunks
// and rows cut anywhere: 1031 columns put every row at another offset from a
// cache line). Sized so that even ReLU's forward (two arrays) streams.
TEST(StreamedOutputs, GiveTheCachedLoopsBitsAtAnyThreadCount) {
    const int64_t most = 2 * streaming_threshold_bytes() / std::max(1, get_num_threads());
    if (most > (int64_t{256} << 20)) GTEST_SKIP() << "L3 too large to exceed in a test";
    const int64_t cols = 1031, rows = most / (2 * cols * 4) + 1, n = rows * cols;
    const auto y = random_vector(n, 41, 0.0f, 1.0f), dy = random_vector(n, 42);
    std::vector<float> expected(n);
    for (int64_t r = 0; r < rows; ++r) {
        const int64_t o = r * cols;
        const auto dot = static_cast<float>(vec::dot(dy.data() + o, y.data() + o, cols));
        vec::softmax_backward_row(y.data() + o, dy.data() + o, dot, expected.data() + o, cols);
    }
    const Activation memory_bound[] = {Activation::relu, Activation::leaky_relu, Activation::sigmoid,
                                       Activation::tanh};
    for (int threads : kThreadCounts) {
        ThreadCountGuard guard(threads);
        ASSERT_GT(2 * n * 4, streaming_threshold_bytes());
        std::vector<float> dx(n), want(n);
        softmax_backward(y.data(), dy.data(), dx.data(), rows, cols);
        EXPECT_EQ(dx, expected) << "softmax backward, " << threads << " threads";
        for (Activation act : memory_bound) {
            reference::activation_backward(act, nullptr, y.data(), dy.data(), want.data(), n, kAlpha);
            activation_backward(act, nullptr, y.data(), dy.data(), dx.data(), n, kAlpha);
            EXPECT_EQ(dx, want) << activation_name(act) << " backward, " << threads << " threads";
            if (act != Activation::relu && act != Activation::leaky_relu) continue;
            reference::activation_forward(act, dy.data(), want.data(), n, kAlpha);
            activation_forward(act, dy.data(), dx.data(), n, kAlpha);
            EXPECT_EQ(dx, want) << activation_name(act) << " forward, " << threads << " threads";
        }
    }
}

// dx against the central difference of L(x) = Σ_ij dy_ij softmax(x)_ij in double.
TEST(Softmax, BackwardMatchesFiniteDifferences) {
    const std::vector<std::pair<int64_t, int64_t>> shapes = {{1, 1}, {3, 7}, {5, 31}, {2, 97}};
    for (auto [rows, cols] : shapes) {
        SCOPED_TRACE(std::to_string(rows) + "x" + std::to_string(cols));
        const auto x = random_vector(rows * cols, 16, -3.0f, 3.0f);
        const auto dy = random_vector(rows * cols, 17);
        const auto y = softmax(x, rows, cols);
        std::vector<float> dx(x.size());
        softmax_backward(y.data(), dy.data(), dx.data(), rows, cols);

        const auto expected =
            softmax_loss_gradient_f64(x, dy, rows, cols, [](double p) { return p; });
        expect_close(dx, expected, 1e-4f, 1e-6f);
    }
}

// ---- log-softmax

TEST(LogSoftmax, ForwardMatchesReferenceAndIsDeterministic) {
    for (auto [rows, cols] : matrix_shapes()) {
        SCOPED_TRACE(std::to_string(rows) + "x" + std::to_string(cols));
        const auto x = random_vector(rows * cols, 20, -30.0f, 30.0f);
        std::vector<float> expected(x.size());
        reference::log_softmax_forward(x.data(), expected.data(), rows, cols);
        std::vector<float> first;
        for (int threads : kThreadCounts) {
            ThreadCountGuard guard(threads);
            std::vector<float> y(x.size());
            log_softmax_forward(x.data(), y.data(), rows, cols);
            expect_close(y, expected, 1e-6f, 1e-5f);
            if (first.empty()) first = y;
            EXPECT_EQ(y, first) << "result depends on the thread count";
        }
    }
}

// exp(log_softmax) is softmax, and log_softmax keeps the digits of tiny
// probabilities that log(softmax) loses: log_softmax([0, -200]) = [0, -200],
// where softmax's second value underflows to 0 and its log to -inf.
TEST(LogSoftmax, IsTheLogarithmOfSoftmaxWithoutUnderflow) {
    const int64_t rows = 17, cols = 257;
    const auto x = random_vector(rows * cols, 21, -10.0f, 10.0f);
    std::vector<float> y(x.size()), p(x.size());
    log_softmax_forward(x.data(), y.data(), rows, cols);
    softmax_forward(x.data(), p.data(), rows, cols);
    for (size_t i = 0; i < x.size(); ++i)
        ASSERT_NEAR(std::exp(double{y[i]}), p[i], 1e-6 * p[i] + 1e-12) << i;
    const std::vector<float> wide = {0.0f, -200.0f};
    std::vector<float> out(2);
    log_softmax_forward(wide.data(), out.data(), 1, 2);
    EXPECT_EQ(out[0], 0.0f);
    EXPECT_EQ(out[1], -200.0f);
}

TEST(LogSoftmax, BackwardMatchesReferenceInPlaceAndAcrossThreads) {
    for (auto [rows, cols] : matrix_shapes()) {
        SCOPED_TRACE(std::to_string(rows) + "x" + std::to_string(cols));
        const auto x = random_vector(rows * cols, 22, -5.0f, 5.0f);
        const auto dy = random_vector(rows * cols, 23);
        std::vector<float> y(x.size()), expected(x.size());
        log_softmax_forward(x.data(), y.data(), rows, cols);
        reference::log_softmax_backward(y.data(), dy.data(), expected.data(), rows, cols);
        std::vector<float> first;
        for (int threads : kThreadCounts) {
            ThreadCountGuard guard(threads);
            std::vector<float> dx(x.size());
            log_softmax_backward(y.data(), dy.data(), dx.data(), rows, cols);
            expect_close(dx, expected, 1e-5f, 1e-5f);
            if (first.empty()) first = dx;
            EXPECT_EQ(dx, first) << "result depends on the thread count";
            auto in_place = dy;
            log_softmax_backward(y.data(), in_place.data(), in_place.data(), rows, cols);
            EXPECT_EQ(in_place, dx);
        }
    }
}

// dx against the central difference of L(x) = Σ_ij dy_ij log_softmax(x)_ij in double.
TEST(LogSoftmax, BackwardMatchesFiniteDifferences) {
    const std::vector<std::pair<int64_t, int64_t>> shapes = {{1, 1}, {3, 7}, {5, 31}, {2, 97}};
    for (auto [rows, cols] : shapes) {
        SCOPED_TRACE(std::to_string(rows) + "x" + std::to_string(cols));
        const auto x = random_vector(rows * cols, 24, -3.0f, 3.0f);
        const auto dy = random_vector(rows * cols, 25);
        std::vector<float> y(x.size()), dx(x.size());
        log_softmax_forward(x.data(), y.data(), rows, cols);
        log_softmax_backward(y.data(), dy.data(), dx.data(), rows, cols);
        const auto expected = softmax_loss_gradient_f64(x, dy, rows, cols,
                                                        [](double p) { return std::log(p); });
        expect_close(dx, expected, 1e-4f, 1e-5f);
    }
}

// The elementwise wrapper of the vector math splits the work across threads
// without changing a bit.
TEST(ParallelMap, SameAsOneSerialCall) {
    const int64_t n = 3 * 16384 + 7;
    const auto x = random_vector(n, 26, -10.0f, 10.0f);
    std::vector<float> serial(n);
    vec::exp(x.data(), serial.data(), n);
    for (int threads : kThreadCounts) {
        ThreadCountGuard guard(threads);
        std::vector<float> y(n);
        parallel_map(vec::exp, x.data(), y.data(), n);
        EXPECT_EQ(y, serial);
    }
}

}  // namespace

void PrintTo(Activation act, std::ostream* os) { *os << activation_name(act); }

}  // namespace fz
