// LayerNorm forward/backward: the fused kernels against the double-precision
// reference on awkward shapes, with and without γ/β, outputs bit-identical
// for 1 and 2 threads, and the backward against finite differences computed
// in double.
#include <cmath>
#include <string>

#include "layernorm.h"
#include "test_util.h"

namespace fz {
namespace {

using testing::expect_close;
using testing::random_vector;
using testing::ThreadCountGuard;

struct LayerNormResult {
    std::vector<float> y, mean, rstd, dx, dgamma, dbeta;
};

// Forward then backward with the given kernels; affine = use γ and β.
template <class Forward, class Backward>
LayerNormResult run(Forward forward, Backward backward, int64_t rows, int64_t C, bool affine,
                    float shift = 0.0f) {
    auto x = random_vector(rows * C, 1, -2.0f, 2.0f);
    for (auto& value : x) value += shift;
    const auto gamma = random_vector(C, 2, 0.5f, 1.5f), beta = random_vector(C, 3);
    const auto dy = random_vector(rows * C, 4);
    LayerNormResult r{std::vector<float>(rows * C), std::vector<float>(rows),
                      std::vector<float>(rows), std::vector<float>(rows * C),
                      std::vector<float>(C), std::vector<float>(C)};
    const float* g = affine ? gamma.data() : nullptr;
    forward(x.data(), g, affine ? beta.data() : nullptr, r.y.data(), r.mean.data(),
            r.rstd.data(), rows, C, 1e-5f);
    backward(x.data(), g, r.mean.data(), r.rstd.data(), dy.data(), r.dx.data(), r.dgamma.data(),
             r.dbeta.data(), rows, C);
    return r;
}

TEST(LayerNorm, MatchesReference) {
    for (int threads : testing::kThreadCounts)
        for (int64_t rows : {1, 7, 65, 100, 768})
            for (int64_t C : {1, 7, 16, 33, 128, 384})
                for (bool affine : {false, true}) {
                    SCOPED_TRACE("rows=" + std::to_string(rows) + " C=" + std::to_string(C) +
                                 " affine=" + std::to_string(affine) +
                                 " threads=" + std::to_string(threads));
                    ThreadCountGuard guard(threads);
                    const auto fast = run(layernorm_forward, layernorm_backward, rows, C, affine);
                    const auto ref = run(reference::layernorm_forward,
                                         reference::layernorm_backward, rows, C, affine);
                    expect_close(fast.y, ref.y, 1e-5f, 1e-5f);
                    expect_close(fast.mean, ref.mean, 1e-5f, 1e-6f);
                    expect_close(fast.rstd, ref.rstd, 1e-5f, 1e-6f);
                    expect_close(fast.dx, ref.dx, 1e-4f, 1e-5f);
                    // dγ, dβ: sums of up to 768 terms of order 1.
                    expect_close(fast.dgamma, ref.dgamma, 1e-5f, 1e-4f);
                    expect_close(fast.dbeta, ref.dbeta, 1e-5f, 1e-4f);
                }
}

// A large common offset: the two-sweep variance must not lose the spread to
// cancellation (Σx² − Cμ² in float would).
TEST(LayerNorm, LargeMeanKeepsPrecision) {
    const auto fast = run(layernorm_forward, layernorm_backward, 5, 128, true, 1000.0f);
    const auto ref = run(reference::layernorm_forward, reference::layernorm_backward, 5, 128,
                         true, 1000.0f);
    expect_close(fast.y, ref.y, 1e-3f, 1e-3f);
    expect_close(fast.rstd, ref.rstd, 1e-4f, 0.0f);
}

TEST(LayerNorm, BitIdenticalForOneAndTwoThreads) {
    for (auto [rows, C] : {std::pair<int64_t, int64_t>{1000, 33}, {768, 128}, {4097, 7}}) {
        SCOPED_TRACE("rows=" + std::to_string(rows) + " C=" + std::to_string(C));
        LayerNormResult results[2];
        for (int t = 0; t < 2; ++t) {
            ThreadCountGuard guard(t + 1);
            results[t] = run(layernorm_forward, layernorm_backward, rows, C, true);
        }
        EXPECT_EQ(results[0].y, results[1].y);
        EXPECT_EQ(results[0].dx, results[1].dx);
        EXPECT_EQ(results[0].dgamma, results[1].dgamma);
        EXPECT_EQ(results[0].dbeta, results[1].dbeta);
    }
}

TEST(LayerNorm, OptionalGradientsAndInPlace) {
    const int64_t rows = 70, C = 33;
    const auto full = run(layernorm_forward, layernorm_backward, rows, C, true);
    const auto x = random_vector(rows * C, 1, -2.0f, 2.0f);
    const auto gamma = random_vector(C, 2, 0.5f, 1.5f);
    auto dy = random_vector(rows * C, 4);
    // Only dγ; then only dx, written over dy.
    std::vector<float> dgamma(C);
    layernorm_backward(x.data(), gamma.data(), full.mean.data(), full.rstd.data(), dy.data(),
                       nullptr, dgamma.data(), nullptr, rows, C);
    EXPECT_EQ(dgamma, full.dgamma);
    layernorm_backward(x.data(), gamma.data(), full.mean.data(), full.rstd.data(), dy.data(),
                       dy.data(), nullptr, nullptr, rows, C);
    EXPECT_EQ(dy, full.dx);
    // The forward in place: y over x.
    auto y = x;
    std::vector<float> mean(rows), rstd(rows);
    const auto beta = random_vector(C, 3);
    layernorm_forward(y.data(), gamma.data(), beta.data(), y.data(), mean.data(), rstd.data(),
                      rows, C, 1e-5f);
    EXPECT_EQ(y, full.y);
}

// L = Σ y ⊙ w with y = LayerNorm(x; γ, β) computed in double: central
// differences for x, γ and β against the backward.
TEST(LayerNorm, BackwardMatchesFiniteDifferences) {
    const int64_t rows = 3, C = 6;
    const double eps_ln = 1e-5;
    auto x = random_vector(rows * C, 7, -2.0f, 2.0f);
    auto gamma = random_vector(C, 8, 0.5f, 1.5f), beta = random_vector(C, 9);
    const auto w = random_vector(rows * C, 10);
    std::vector<double> xd(x.begin(), x.end()), gd(gamma.begin(), gamma.end()),
        bd(beta.begin(), beta.end());
    auto loss = [&]() {
        double total = 0.0;
        for (int64_t i = 0; i < rows; ++i) {
            double mu = 0.0, var = 0.0;
            for (int64_t j = 0; j < C; ++j) mu += xd[i * C + j] / C;
            for (int64_t j = 0; j < C; ++j) var += (xd[i * C + j] - mu) * (xd[i * C + j] - mu) / C;
            for (int64_t j = 0; j < C; ++j)
                total += w[i * C + j] * (gd[j] * (xd[i * C + j] - mu) / std::sqrt(var + eps_ln) + bd[j]);
        }
        return total;
    };
    std::vector<float> y(rows * C), mean(rows), rstd(rows), dx(rows * C), dgamma(C), dbeta(C);
    layernorm_forward(x.data(), gamma.data(), beta.data(), y.data(), mean.data(), rstd.data(), rows,
                      C, static_cast<float>(eps_ln));
    layernorm_backward(x.data(), gamma.data(), mean.data(), rstd.data(), w.data(), dx.data(),
                       dgamma.data(), dbeta.data(), rows, C);
    const double h = 1e-6;
    for (auto [values, grad] : {std::pair{&xd, &dx}, {&gd, &dgamma}, {&bd, &dbeta}}) {
        for (size_t k = 0; k < values->size(); ++k) {
            const double saved = (*values)[k];
            (*values)[k] = saved + h;
            const double plus = loss();
            (*values)[k] = saved - h;
            const double minus = loss();
            (*values)[k] = saved;
            const double numeric = (plus - minus) / (2 * h);
            EXPECT_NEAR((*grad)[k], numeric, 1e-4 * (1 + std::fabs(numeric))) << "index " << k;
        }
    }
}

}  // namespace
}  // namespace fz
