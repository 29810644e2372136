// Embedding forward/backward: the fast kernels against the reference loops
// (bit for bit: both add the rows of a token in the same order), repeated and
// absent tokens, 1 and 2 threads, and the backward against finite differences.
#include <random>
#include <string>

#include "embedding.h"
#include "test_util.h"

namespace fz {
namespace {

using testing::random_vector;
using testing::ThreadCountGuard;

std::vector<int32_t> random_ids(int64_t n, int64_t vocab, uint32_t seed) {
    std::mt19937 gen(seed);
    std::uniform_int_distribution<int32_t> dist(0, static_cast<int32_t>(vocab - 1));
    std::vector<int32_t> ids(static_cast<size_t>(n));
    for (auto& id : ids) id = dist(gen);
    return ids;
}

TEST(Embedding, MatchesReferenceBitForBit) {
    for (int threads : testing::kThreadCounts)
        for (int64_t n : {1, 7, 65, 2000})
            for (int64_t vocab : {1, 3, 65, 300})
                for (int64_t dim : {1, 7, 33, 128}) {
                    SCOPED_TRACE("n=" + std::to_string(n) + " vocab=" + std::to_string(vocab) +
                                 " dim=" + std::to_string(dim) +
                                 " threads=" + std::to_string(threads));
                    ThreadCountGuard guard(threads);
                    const auto ids = random_ids(n, vocab, 1);
                    const auto W = random_vector(vocab * dim, 2), dy = random_vector(n * dim, 3);
                    std::vector<float> y(n * dim), y_ref(n * dim);
                    // NaN-filled: the backward must overwrite every element of dW.
                    std::vector<float> dW(vocab * dim, NAN), dW_ref(vocab * dim);
                    embedding_forward(ids.data(), W.data(), y.data(), n, dim);
                    reference::embedding_forward(ids.data(), W.data(), y_ref.data(), n, dim);
                    EXPECT_EQ(y, y_ref);
                    embedding_backward(ids.data(), dy.data(), dW.data(), n, vocab, dim);
                    reference::embedding_backward(ids.data(), dy.data(), dW_ref.data(), n, vocab,
                                                  dim);
                    EXPECT_EQ(dW, dW_ref);
                }
}

// A hand-worked case: token 2 twice, token 1 absent.
TEST(Embedding, ScatterAddsRepeatedTokensAndZeroesAbsentOnes) {
    const std::vector<int32_t> ids = {2, 0, 2};
    const std::vector<float> W = {0, 1, 10, 11, 20, 21};  // (3, 2)
    const std::vector<float> dy = {1, 2, 3, 4, 5, 6};     // (3, 2)
    std::vector<float> y(6), dW(6, NAN);
    embedding_forward(ids.data(), W.data(), y.data(), 3, 2);
    EXPECT_EQ(y, (std::vector<float>{20, 21, 0, 1, 20, 21}));
    embedding_backward(ids.data(), dy.data(), dW.data(), 3, 3, 2);
    EXPECT_EQ(dW, (std::vector<float>{3, 4, 0, 0, 6, 8}));
}

// L = Σ y ⊙ r: ∂L/∂W by central differences in double against the backward.
TEST(Embedding, BackwardMatchesFiniteDifferences) {
    const int64_t n = 9, vocab = 4, dim = 5;
    const auto ids = random_ids(n, vocab, 4);
    auto W = random_vector(vocab * dim, 5);
    const auto r = random_vector(n * dim, 6);
    auto loss = [&]() {  // in double, from the definition y[i] = W[ids[i]]
        double sum = 0.0;
        for (int64_t i = 0; i < n; ++i)
            for (int64_t j = 0; j < dim; ++j) sum += double(W[ids[i] * dim + j]) * r[i * dim + j];
        return sum;
    };
    std::vector<float> dW(vocab * dim);
    embedding_backward(ids.data(), r.data(), dW.data(), n, vocab, dim);
    const float eps = 1e-2f;
    for (size_t k = 0; k < W.size(); ++k) {
        const float saved = W[k];
        W[k] = saved + eps;
        const double plus = loss();
        W[k] = saved - eps;
        const double minus = loss();
        W[k] = saved;
        EXPECT_NEAR(dW[k], (plus - minus) / (2 * eps), 1e-4) << "index " << k;
    }
}

}  // namespace
}  // namespace fz
