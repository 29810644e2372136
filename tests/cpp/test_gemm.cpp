// GEMM: every micro-kernel this CPU has, against the three-loop reference, on
// shapes that hit every edge (1, odd, prime, across the MC/KC/NC blocks), with
// both transposes, α/β, the epilogue, padded leading dimensions, 1 and 2 threads.
#include <cstring>
#include <string>

#include "gemm.h"
#include "gemm_microkernel.h"
#include "test_util.h"

namespace fz {
namespace {

using testing::ThreadCountGuard;

struct GemmCase {
    bool trans_a, trans_b;
    int64_t M, N, K;
    float alpha, beta;
    Activation act = Activation::identity;
    bool bias = false;
    int64_t pad = 0;  // extra floats per row in every leading dimension
};

std::string describe(const GemmCase& c) {
    return "trans_a=" + std::to_string(c.trans_a) + " trans_b=" + std::to_string(c.trans_b) +
           " M=" + std::to_string(c.M) + " N=" + std::to_string(c.N) + " K=" + std::to_string(c.K) +
           " alpha=" + std::to_string(c.alpha) + " beta=" + std::to_string(c.beta) +
           " act=" + std::to_string(static_cast<int>(c.act)) + " bias=" + std::to_string(c.bias) +
           " pad=" + std::to_string(c.pad);
}

// Runs one case with `kernel` and compares with the reference. The tolerance
// scales with K: float sums of K terms of size ~1 drift by ~K·eps.
void check_case(const MicroKernel& kernel, const GemmCase& c, int threads) {
    SCOPED_TRACE(std::string(kernel.name) + " threads=" + std::to_string(threads) + " " + describe(c));
    ThreadCountGuard guard(threads);
    const int64_t a_rows = c.trans_a ? c.K : c.M, a_cols = c.trans_a ? c.M : c.K;
    const int64_t b_rows = c.trans_b ? c.N : c.K, b_cols = c.trans_b ? c.K : c.N;
    const int64_t lda = a_cols + c.pad, ldb = b_cols + c.pad, ldc = c.N + c.pad;
    const auto A = testing::random_vector(a_rows * lda, 1);
    const auto B = testing::random_vector(b_rows * ldb, 2);
    const auto bias = testing::random_vector(c.N, 3);
    auto expected = testing::random_vector(c.M * ldc, 4);
    auto actual = expected;
    GemmEpilogue ep;
    ep.bias = c.bias ? bias.data() : nullptr;
    ep.activation = c.act;
    ep.alpha = 0.1f;
    reference::gemm(c.trans_a, c.trans_b, c.M, c.N, c.K, c.alpha, A.data(), lda, B.data(), ldb,
                    c.beta, expected.data(), ldc, ep);
    gemm_with_kernel(kernel, c.trans_a, c.trans_b, c.M, c.N, c.K, c.alpha, A.data(), lda,
                     B.data(), ldb, c.beta, actual.data(), ldc, ep);
    const float tol = 1e-6f * static_cast<float>(c.K + 4);
    testing::expect_close(actual, expected, tol, tol);  // also checks the padding is untouched
}

std::vector<const MicroKernel*> kernels() {
    const MicroKernel* list[8];
    const int n = available_micro_kernels(list, 8);
    return {list, list + n};
}

TEST(Gemm, AvailableKernelsIncludeGenericAndDispatchPicksTheFirst) {
    const auto ks = kernels();
    ASSERT_FALSE(ks.empty());
    EXPECT_STREQ(ks.back()->name, "generic");
    EXPECT_STREQ(gemm_kernel_name(), ks.front()->name);
}

TEST(Gemm, AwkwardShapesAllTransposes) {
    const int64_t sizes[] = {1, 3, 17, 31, 130};
    for (const MicroKernel* k : kernels())
        for (int threads : testing::kThreadCounts)
            for (int t = 0; t < 4; ++t)
                for (int64_t M : sizes)
                    for (int64_t N : sizes)
                        for (int64_t K : {int64_t{1}, int64_t{7}, int64_t{257}})
                            check_case(*k, {bool(t & 1), bool(t & 2), M, N, K, 1.0f, 0.0f}, threads);
}

TEST(Gemm, LargerThanEveryBlock) {
    // M > MC, K > KC, N > NC for every kernel's block table.
    for (const MicroKernel* k : kernels())
        for (int threads : testing::kThreadCounts) {
            check_case(*k, {false, false, 2 * k->mc + 5, 67, 2 * k->kc + 3, 1.0f, 0.0f}, threads);
            check_case(*k, {true, true, 37, k->nc + 7, 2 * k->kc + 1, 1.0f, 0.0f}, threads);
        }
}

TEST(Gemm, AlphaBetaAndPaddedLeadingDimensions) {
    for (const MicroKernel* k : kernels())
        for (int threads : testing::kThreadCounts)
            for (float beta : {0.0f, 1.0f, -0.5f})
                for (int t = 0; t < 4; ++t)
                    check_case(*k, {bool(t & 1), bool(t & 2), 29, 45, 300, 0.7f, beta,
                                    Activation::identity, false, 5},
                               threads);
}

TEST(Gemm, EpilogueBiasAndActivation) {
    const Activation acts[] = {Activation::identity, Activation::relu, Activation::leaky_relu,
                               Activation::sigmoid, Activation::tanh, Activation::gelu};
    for (const MicroKernel* k : kernels())
        for (int threads : testing::kThreadCounts)
            for (Activation act : acts)
                for (int64_t K : {int64_t{5}, int64_t{600}})
                    check_case(*k, {false, false, 33, 130, K, 1.0f, 0.0f, act, true}, threads);
}

TEST(Gemm, ZeroKOrZeroAlphaScalesCAndAppliesEpilogue) {
    for (const MicroKernel* k : kernels()) {
        check_case(*k, {false, false, 5, 9, 0, 1.0f, 0.5f, Activation::relu, true}, 1);
        check_case(*k, {false, false, 5, 9, 4, 0.0f, 2.0f}, 1);
    }
}

TEST(Gemm, BetaZeroIgnoresNaNInC) {
    const int64_t M = 9, N = 33, K = 12;
    const auto A = testing::random_vector(M * K, 1), B = testing::random_vector(K * N, 2);
    std::vector<float> C(M * N, std::nanf("")), expected(M * N, 0.0f);
    gemm(false, false, M, N, K, 1.0f, A.data(), K, B.data(), N, 0.0f, C.data(), N);
    reference::gemm(false, false, M, N, K, 1.0f, A.data(), K, B.data(), N, 0.0f, expected.data(), N);
    testing::expect_close(C, expected, 1e-5f, 1e-5f);
}

TEST(Gemm, BitIdenticalWithOneAndTwoThreads) {
    const int64_t M = 64, N = 200, K = 700;
    const auto A = testing::random_vector(M * K, 1), B = testing::random_vector(K * N, 2);
    std::vector<float> c1(M * N), c2(M * N);
    {
        ThreadCountGuard g(1);
        gemm(false, false, M, N, K, 1.0f, A.data(), K, B.data(), N, 0.0f, c1.data(), N);
    }
    {
        ThreadCountGuard g(2);
        gemm(false, false, M, N, K, 1.0f, A.data(), K, B.data(), N, 0.0f, c2.data(), N);
    }
    EXPECT_EQ(0, std::memcmp(c1.data(), c2.data(), c1.size() * sizeof(float)));
}

}  // namespace
}  // namespace fz
