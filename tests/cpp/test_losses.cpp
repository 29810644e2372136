// test_losses.cpp — every loss kernel against its reference loop on awkward
// shapes and thread counts; gradients against central finite differences of
// the loss value; huge logits; the probability clip; the fused softmax
// backward against softmax + chain rule; and values worked out by hand.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "losses.h"
#include "test_util.h"

namespace fz::testing {
namespace {

using Vec = std::vector<float>;

struct Shape {
    int64_t rows, cols;
};

// 1×1, one row, one column, prime×prime, many short rows, many long rows.
const std::vector<Shape> kShapes = {{1, 1}, {1, 97}, {97, 1}, {31, 97}, {1031, 10}, {257, 1031}};

std::string describe(Shape s) { return std::to_string(s.rows) + "x" + std::to_string(s.cols); }

// What a loss's first input holds, which decides how the test draws it.
enum class Input { logits, probs, values };

// One batch for any loss: x (rows, cols) holds logits, probabilities or
// predictions; a loss reads either the labels (rows,) or the targets (rows, cols).
struct Batch {
    int64_t rows, cols;
    Vec x, targets;
    std::vector<int32_t> labels;
};

// Probabilities are drawn in [0.1, 0.9], away from the clip. With
// `with_clipped`, every 7th one becomes exactly 0 or 1 so the clip is active
// (except in single-column rows, where a 0 would make categorical_crossentropy's
// row sum 0). Targets are soft and their rows do not sum to 1, so the Σt terms matter.
Batch make_batch(Shape s, Input input, uint32_t seed, bool with_clipped = false) {
    const int64_t n = s.rows * s.cols;
    Batch b{s.rows, s.cols, {}, {}, {}};
    switch (input) {
        case Input::logits: b.x = random_vector(n, seed, -5.0f, 5.0f); break;
        case Input::probs: b.x = random_vector(n, seed, 0.1f, 0.9f); break;
        case Input::values: b.x = random_vector(n, seed); break;
    }
    if (with_clipped && input == Input::probs && s.cols > 1) {
        for (int64_t k = 0; k < n; k += 7) b.x[k] = static_cast<float>(k % 2);
    }
    b.targets = random_vector(n, seed + 1, input == Input::values ? -1.0f : 0.0f, 1.0f);
    std::mt19937 gen(seed + 2);
    std::uniform_int_distribution<int32_t> label(0, static_cast<int32_t>(s.cols - 1));
    for (int64_t i = 0; i < s.rows; ++i) b.labels.push_back(label(gen));
    return b;
}

// A loss kernel, fast or reference, behind one signature.
using LossFn = std::function<double(const Batch&, float* row_loss, float* grad, float scale)>;
using SparseKernel = double (*)(const float*, const int32_t*, float*, float*, int64_t, int64_t,
                                float);
using DenseKernel = double (*)(const float*, const float*, float*, float*, int64_t, int64_t, float);

LossFn as_loss(SparseKernel f) {
    return [f](const Batch& b, float* row_loss, float* grad, float scale) {
        return f(b.x.data(), b.labels.data(), row_loss, grad, b.rows, b.cols, scale);
    };
}
LossFn as_loss(DenseKernel f) {
    return [f](const Batch& b, float* row_loss, float* grad, float scale) {
        return f(b.x.data(), b.targets.data(), row_loss, grad, b.rows, b.cols, scale);
    };
}

struct Loss {
    std::string name;
    Input input;
    LossFn fast, ref;
};

const std::vector<Loss>& all_losses() {
    static const std::vector<Loss> losses = {
        {"sparse_categorical_crossentropy_from_logits", Input::logits,
         as_loss(&sparse_categorical_crossentropy_from_logits),
         as_loss(&reference::sparse_categorical_crossentropy_from_logits)},
        {"sparse_categorical_crossentropy", Input::probs, as_loss(&sparse_categorical_crossentropy),
         as_loss(&reference::sparse_categorical_crossentropy)},
        {"categorical_crossentropy_from_logits", Input::logits,
         as_loss(&categorical_crossentropy_from_logits),
         as_loss(&reference::categorical_crossentropy_from_logits)},
        {"categorical_crossentropy", Input::probs, as_loss(&categorical_crossentropy),
         as_loss(&reference::categorical_crossentropy)},
        {"mean_squared_error", Input::values, as_loss(&mean_squared_error),
         as_loss(&reference::mean_squared_error)},
        {"binary_crossentropy", Input::probs, as_loss(&binary_crossentropy),
         as_loss(&reference::binary_crossentropy)},
        {"binary_crossentropy_from_logits", Input::logits, as_loss(&binary_crossentropy_from_logits),
         as_loss(&reference::binary_crossentropy_from_logits)},
    };
    return losses;
}

struct Result {
    double total;
    Vec row_loss, grad;
};

// Outputs start as NaN, so an element the kernel forgets to write fails the comparison.
Result run(const LossFn& f, const Batch& b, float scale, bool with_grad = true) {
    Result r{0.0, Vec(b.rows, NAN), Vec(with_grad ? b.rows * b.cols : 0, NAN)};
    r.total = f(b, r.row_loss.data(), with_grad ? r.grad.data() : nullptr, scale);
    return r;
}

TEST(Losses, MatchReferenceOnAwkwardShapes) {
    uint32_t seed = 1;
    for (const Loss& loss : all_losses()) {
        for (const Shape s : kShapes) {
            SCOPED_TRACE(loss.name + " " + describe(s));
            const Batch b = make_batch(s, loss.input, seed++, /*with_clipped=*/true);
            const float scale = 1.0f / static_cast<float>(s.rows);
            const Result want = run(loss.ref, b, scale);
            for (const int threads : kThreadCounts) {
                SCOPED_TRACE("threads " + std::to_string(threads));
                ThreadCountGuard guard(threads);
                const Result got = run(loss.fast, b, scale);
                expect_close(got.row_loss, want.row_loss, 1e-5f, 1e-6f);
                expect_close(got.grad, want.grad, 1e-5f, 1e-7f * scale);
                EXPECT_NEAR(got.total, want.total, 1e-5 * std::fabs(want.total) + 1e-6);
            }
        }
    }
}

// The sum is added in row order and each row is computed by one thread, so the
// results are bit-identical whatever the thread count, with or without grad.
TEST(Losses, DeterministicAcrossThreadsAndWithoutGrad) {
    for (const Loss& loss : all_losses()) {
        for (const Shape s : {Shape{31, 97}, Shape{1031, 10}, Shape{257, 1031}}) {
            SCOPED_TRACE(loss.name + " " + describe(s));
            const Batch b = make_batch(s, loss.input, 7, /*with_clipped=*/true);
            const float scale = 1.0f / static_cast<float>(s.rows);
            Result one, two, value_only;
            {
                ThreadCountGuard guard(1);
                one = run(loss.fast, b, scale);
            }
            {
                ThreadCountGuard guard(2);
                two = run(loss.fast, b, scale);
                value_only = run(loss.fast, b, scale, /*with_grad=*/false);
            }
            double row_order_sum = 0.0;
            for (const float l : one.row_loss) row_order_sum += l;
            EXPECT_EQ(one.total, row_order_sum);
            EXPECT_EQ(two.total, one.total);
            EXPECT_EQ(two.row_loss, one.row_loss);
            EXPECT_EQ(two.grad, one.grad);
            EXPECT_EQ(value_only.total, one.total);
            EXPECT_EQ(value_only.row_loss, one.row_loss);
        }
    }
}

// grad must be grad_scale · ∂(returned sum)/∂x. The objective is evaluated by
// the reference, which works in double, so h can be small without rounding
// noise; inputs stay away from the clip and from the kinks of max(z, 0).
TEST(Losses, GradientMatchesFiniteDifferences) {
    uint32_t seed = 100;
    for (const Loss& loss : all_losses()) {
        for (const Shape s : {Shape{1, 1}, Shape{1, 7}, Shape{7, 1}, Shape{5, 13}}) {
            SCOPED_TRACE(loss.name + " " + describe(s));
            Batch b = make_batch(s, loss.input, seed++);
            const float scale = 1.0f / static_cast<float>(s.rows);
            const Result fast = run(loss.fast, b, scale);
            const Result ref = run(loss.ref, b, scale);
            Vec row_loss(s.rows), fd(b.x.size());
            for (size_t k = 0; k < b.x.size(); ++k) {
                const float x0 = b.x[k];
                const float h = 1e-4f * std::max(1.0f, std::fabs(x0));
                b.x[k] = x0 + h;
                const double plus = loss.ref(b, row_loss.data(), nullptr, scale);
                const double x_plus = b.x[k];
                b.x[k] = x0 - h;
                const double minus = loss.ref(b, row_loss.data(), nullptr, scale);
                const double x_minus = b.x[k];
                b.x[k] = x0;
                fd[k] = static_cast<float>(scale * (plus - minus) / (x_plus - x_minus));
            }
            expect_close(fast.grad, fd, 1e-3f, 1e-5f);
            expect_close(ref.grad, fd, 1e-3f, 1e-5f);
        }
    }
}

TEST(Losses, HugeLogitsGiveFiniteLossAndGradient) {
    Batch b{2, 3, {1e4f, -1e4f, 0.0f, -1e4f, -1e4f, 1e4f}, {0, 1, 0, 1, 0, 0}, {1, 0}};
    const float scale = 0.5f;
    for (const Loss& loss : all_losses()) {
        if (loss.input != Input::logits) continue;
        SCOPED_TRACE(loss.name);
        const Result got = run(loss.fast, b, scale);
        const Result want = run(loss.ref, b, scale);
        EXPECT_TRUE(std::isfinite(got.total));
        for (const float x : got.grad) EXPECT_TRUE(std::isfinite(x));
        expect_close(got.row_loss, want.row_loss);
        expect_close(got.grad, want.grad);
    }
    // Both rows put the label's logit 2e4 below the row's maximum.
    const Result r = run(as_loss(&sparse_categorical_crossentropy_from_logits), b, scale);
    expect_close(r.row_loss, {2e4f, 2e4f});
    expect_close(r.grad, {0.5f, -0.5f, 0.0f, -0.5f, 0.0f, 0.5f});
}

// logits [0, ln 3] → softmax [1/4, 3/4]; label 1 → loss −ln(3/4) = ln(4/3).
// logits [ln 3, 0] → softmax [3/4, 1/4]; label 1 → loss ln 4.
TEST(Losses, HandCheckedValues) {
    const float ln3 = std::log(3.0f);
    const float scale = 0.5f;
    float row_loss[2], grad[4];

    const float logits[] = {0.0f, ln3, ln3, 0.0f};
    const int32_t labels[] = {1, 1};
    double total = sparse_categorical_crossentropy_from_logits(logits, labels, row_loss, grad, 2, 2,
                                                               scale);
    EXPECT_NEAR(total, 1.6739764, 1e-6);  // ln(4/3) + ln 4 = ln(16/3)
    EXPECT_NEAR(row_loss[0], 0.2876821, 1e-6);
    EXPECT_NEAR(row_loss[1], 1.3862944, 1e-6);
    expect_close({grad, grad + 4}, {0.125f, -0.125f, 0.375f, -0.375f});

    // Soft targets [1/2, 1/2]: loss = lse − (z0 + z1)/2 = ln 4 − ln 3 / 2; grad = softmax − t.
    const float soft[] = {0.5f, 0.5f};
    total = categorical_crossentropy_from_logits(logits, soft, row_loss, grad, 1, 2, 1.0f);
    EXPECT_NEAR(total, 0.8369882, 1e-6);
    expect_close({grad, grad + 2}, {-0.25f, 0.25f});

    // From the probabilities themselves: −ln(3/4), and ∂/∂p_1 = −1/p_1 = −4/3.
    const float probs[] = {0.25f, 0.75f};
    total = sparse_categorical_crossentropy(probs, labels, row_loss, grad, 1, 2, 1.0f);
    EXPECT_NEAR(total, 0.2876821, 1e-6);
    expect_close({grad, grad + 2}, {0.0f, -4.0f / 3.0f});

    // Unnormalised [1, 3] → q = [1/4, 3/4]; grad = −t/p + Σt/S = [1/4, −1/3 + 1/4].
    const float unnormalised[] = {1.0f, 3.0f};
    const float one_hot[] = {0.0f, 1.0f};
    total = categorical_crossentropy(unnormalised, one_hot, row_loss, grad, 1, 2, 1.0f);
    EXPECT_NEAR(total, 0.2876821, 1e-6);
    expect_close({grad, grad + 2}, {0.25f, -1.0f / 12.0f});

    // ((1 − 0)² + (2 − 4)²) / 2 = 2.5; grad = 2 (p − t) / 2 = [1, −2].
    const float pred[] = {1.0f, 2.0f}, values[] = {0.0f, 4.0f};
    total = mean_squared_error(pred, values, row_loss, grad, 1, 2, 1.0f);
    EXPECT_NEAR(total, 2.5, 1e-6);
    expect_close({grad, grad + 2}, {1.0f, -2.0f});

    // p [1/4, 1/2], t [1, 0]: (−ln(1/4) − ln(1/2)) / 2 = 1.5 ln 2;
    // grad = (p − t) / (p (1 − p)) / 2 = [−0.75 / 0.1875, 0.5 / 0.25] / 2 = [−2, 1].
    const float bprobs[] = {0.25f, 0.5f}, btargets[] = {1.0f, 0.0f};
    total = binary_crossentropy(bprobs, btargets, row_loss, grad, 1, 2, 1.0f);
    EXPECT_NEAR(total, 1.0397208, 1e-6);
    expect_close({grad, grad + 2}, {-2.0f, 1.0f});

    // z [ln 3, 0], t [0, 1]: (ln 3 + ln(1 + 1/3) + ln 2) / 2 = (ln 4 + ln 2) / 2 = 1.5 ln 2;
    // grad = (σ(z) − t) / 2 = [3/4, 1/2 − 1] / 2.
    const float blogits[] = {ln3, 0.0f}, btargets2[] = {0.0f, 1.0f};
    total = binary_crossentropy_from_logits(blogits, btargets2, row_loss, grad, 1, 2, 1.0f);
    EXPECT_NEAR(total, 1.0397208, 1e-6);
    expect_close({grad, grad + 2}, {0.375f, -0.25f});

    // The fused backward on softmax [1/4, 3/4]: p − onehot and p Σt − t.
    softmax_crossentropy_backward(probs, labels, grad, 1, 2, 1.0f);
    expect_close({grad, grad + 2}, {0.25f, -0.25f});
    softmax_crossentropy_backward_dense(probs, soft, grad, 1, 2, 1.0f);
    expect_close({grad, grad + 2}, {-0.25f, 0.25f});
}

// Clipped to [1e-7, 1 − 1e-7]: −ln(1e-7) = 16.1180957, −ln(1 − 1e-7) ≈ 1.19e-7
// (1 − 1e-7 rounds to 1 − 2⁻²³ in float). The gradient is 0 where the clip is
// active, and not just inside it.
TEST(Losses, ClippedProbabilitiesGiveFiniteLossAndZeroGradient) {
    float row_loss[2], grad[4];
    const float probs[] = {0.0f, 1.0f};
    int32_t label = 0;
    sparse_categorical_crossentropy(probs, &label, row_loss, grad, 1, 2, 1.0f);
    EXPECT_NEAR(row_loss[0], 16.1180957f, 1e-5f);
    expect_close({grad, grad + 2}, {0.0f, 0.0f});
    label = 1;
    sparse_categorical_crossentropy(probs, &label, row_loss, grad, 1, 2, 1.0f);
    EXPECT_NEAR(row_loss[0], 1.1920929e-7f, 1e-12f);
    expect_close({grad, grad + 2}, {0.0f, 0.0f});

    const float ones[] = {1.0f, 1.0f};
    const double total = binary_crossentropy(probs, ones, row_loss, grad, 1, 2, 1.0f);
    EXPECT_NEAR(total, (16.1180957 + 1.1920929e-7) / 2, 1e-5);
    expect_close({grad, grad + 2}, {0.0f, 0.0f});

    const float wrong[] = {1.0f, 0.0f};
    categorical_crossentropy(probs, wrong, row_loss, grad, 1, 2, 1.0f);
    EXPECT_NEAR(row_loss[0], 16.1180957f, 1e-5f);
    expect_close({grad, grad + 2}, {0.0f, 0.0f});

    // Just inside the clip the gradient is the true −1/p.
    const float small[] = {1e-3f, 0.999f};
    label = 0;
    sparse_categorical_crossentropy(small, &label, row_loss, grad, 1, 2, 1.0f);
    expect_close({grad, grad + 2}, {-1000.0f, 0.0f});
}

Vec softmax_rows(const Vec& z, int64_t rows, int64_t cols) {
    Vec p(z.size());
    for (int64_t i = 0; i < rows; ++i) {
        const float* zi = z.data() + i * cols;
        const double max = *std::max_element(zi, zi + cols);
        double sum = 0.0;
        for (int64_t j = 0; j < cols; ++j) sum += std::exp(zi[j] - max);
        for (int64_t j = 0; j < cols; ++j) p[i * cols + j] = std::exp(zi[j] - max) / sum;
    }
    return p;
}

// dz_ik = Σ_j dp_ij ∂p_ij/∂z_ik = p_ik (dp_ik − Σ_j dp_ij p_ij): softmax's backward.
Vec chain_through_softmax(const Vec& p, const Vec& dp, int64_t rows, int64_t cols) {
    Vec dz(p.size());
    for (int64_t i = 0; i < rows; ++i) {
        double dot = 0.0;
        for (int64_t j = 0; j < cols; ++j) dot += double{dp[i * cols + j]} * p[i * cols + j];
        for (int64_t k = 0; k < cols; ++k) {
            dz[i * cols + k] = static_cast<float>(p[i * cols + k] * (dp[i * cols + k] - dot));
        }
    }
    return dz;
}

// The fused backward must equal the unfused path: softmax, then the loss's
// gradient with respect to the probabilities, then softmax's backward. It must
// also equal the gradient of the from-logits loss, and its reference.
TEST(SoftmaxCrossentropyBackward, EqualsSoftmaxThenChainRule) {
    uint32_t seed = 300;
    for (const Shape s : kShapes) {
        SCOPED_TRACE(describe(s));
        Batch b = make_batch(s, Input::logits, seed++);
        const Vec logits = b.x;
        const Vec p = softmax_rows(logits, s.rows, s.cols);
        b.x = p;
        const float scale = 1.0f / static_cast<float>(s.rows);
        const int64_t n = s.rows * s.cols;
        for (const int threads : kThreadCounts) {
            SCOPED_TRACE("threads " + std::to_string(threads));
            ThreadCountGuard guard(threads);
            Vec row_loss(s.rows), dp(n), chain, from_logits(n), fused(n, NAN), ref(n);

            sparse_categorical_crossentropy(p.data(), b.labels.data(), row_loss.data(), dp.data(),
                                            s.rows, s.cols, scale);
            chain = chain_through_softmax(p, dp, s.rows, s.cols);
            sparse_categorical_crossentropy_from_logits(logits.data(), b.labels.data(),
                                                        row_loss.data(), from_logits.data(),
                                                        s.rows, s.cols, scale);
            softmax_crossentropy_backward(p.data(), b.labels.data(), fused.data(), s.rows, s.cols,
                                          scale);
            reference::softmax_crossentropy_backward(p.data(), b.labels.data(), ref.data(), s.rows,
                                                     s.cols, scale);
            expect_close(fused, chain, 1e-4f, 1e-6f * scale);
            expect_close(fused, from_logits, 1e-4f, 1e-6f * scale);
            expect_close(fused, ref, 1e-6f, 1e-7f * scale);

            std::fill(fused.begin(), fused.end(), NAN);
            categorical_crossentropy(p.data(), b.targets.data(), row_loss.data(), dp.data(), s.rows,
                                     s.cols, scale);
            chain = chain_through_softmax(p, dp, s.rows, s.cols);
            categorical_crossentropy_from_logits(logits.data(), b.targets.data(), row_loss.data(),
                                                 from_logits.data(), s.rows, s.cols, scale);
            softmax_crossentropy_backward_dense(p.data(), b.targets.data(), fused.data(), s.rows,
                                                s.cols, scale);
            reference::softmax_crossentropy_backward_dense(p.data(), b.targets.data(), ref.data(),
                                                           s.rows, s.cols, scale);
            expect_close(fused, chain, 1e-4f, 1e-6f * scale);
            expect_close(fused, from_logits, 1e-4f, 1e-6f * scale);
            expect_close(fused, ref, 1e-6f, 1e-7f * scale);
        }
    }
}

}  // namespace
}  // namespace fz::testing
