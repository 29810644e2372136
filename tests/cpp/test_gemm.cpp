// GEMM: every micro-kernel this CPU has, with the block sizes derived for
// several cache configurations, against the three-loop reference, on shapes
// that hit every edge (1, odd, prime, across the MC/KC/NC blocks), with both
// transposes, α/β, the epilogue, padded leading dimensions, 1 and 2 threads.
// And the block-size derivation itself, on those cache configurations.
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

// Cache configurations the block sizes are derived for in the tests.
struct CacheConfig {
    const char* name;
    CacheSizes caches;
};
const CacheConfig kCacheConfigs[] = {
    {"Intel Xeon (48 KiB L1d, 2 MiB L2, 1.875 MiB L3 per core)", {48 << 10, 2 << 20, 1966080}},
    {"AMD Zen 4 (32 KiB, 1 MiB, 4 MiB L3 per core)", {32 << 10, 1 << 20, 4 << 20}},
    {"tiny (4 KiB, 16 KiB, no L3)", {4 << 10, 16 << 10, 0}},
};

std::string describe(const GemmPlan& plan) {
    return std::string(plan.kernel->name) + " mc=" + std::to_string(plan.blocks.mc) +
           " kc=" + std::to_string(plan.blocks.kc) + " nc=" + std::to_string(plan.blocks.nc);
}

// Runs one case with `plan` and compares with the reference. The tolerance
// scales with K: float sums of K terms of size ~1 drift by ~K·eps.
void check_case(const GemmPlan& plan, const GemmCase& c, int threads) {
    SCOPED_TRACE(describe(plan) + " threads=" + std::to_string(threads) + " " + describe(c));
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
    gemm_with_plan(plan, c.trans_a, c.trans_b, c.M, c.N, c.K, c.alpha, A.data(), lda, B.data(),
                   ldb, c.beta, actual.data(), ldc, ep);
    const float tol = 1e-6f * static_cast<float>(c.K + 4);
    testing::expect_close(actual, expected, tol, tol);  // also checks the padding is untouched
}

std::vector<const MicroKernel*> kernels() {
    const MicroKernel* list[8];
    const int n = available_micro_kernels(list, 8);
    return {list, list + n};
}

// Every available kernel with this CPU's blocks and with each test configuration's.
std::vector<GemmPlan> plans() {
    std::vector<GemmPlan> all;
    for (const MicroKernel* k : kernels()) {
        all.push_back({k, gemm_blocking(cpu_features().caches, k->mr, k->nr)});
        for (const CacheConfig& config : kCacheConfigs)
            all.push_back({k, gemm_blocking(config.caches, k->mr, k->nr)});
    }
    return all;
}

TEST(Gemm, AvailableKernelsIncludeGenericAndDispatchPicksTheFirst) {
    const auto ks = kernels();
    ASSERT_FALSE(ks.empty());
    EXPECT_STREQ(ks.back()->name, "generic");
    EXPECT_STREQ(gemm_kernel_name(), ks.front()->name);
    const GemmInfo info = gemm_info();
    EXPECT_STREQ(info.kernel, ks.front()->name);
    EXPECT_EQ(info.mr, ks.front()->mr);
    EXPECT_EQ(info.nr, ks.front()->nr);
}

// The transposing pack is a copy: dst[k·width + r] = x[r·ld + k] exactly, for
// every width the kernels ask for and kc with and without a tail of k.
TEST(Gemm, PackRowsIsTheTransposingCopy) {
    for (const MicroKernel* k : kernels()) {
        if (!k->pack_rows) continue;
        for (int width : {8, 16, 32})
            for (int64_t kc : {1, 7, 8, 9, 64, 129}) {
                SCOPED_TRACE(std::string(k->name) + " width " + std::to_string(width) + " kc " +
                             std::to_string(kc));
                const int64_t ld = kc + 5;
                const auto x = testing::random_vector(width * ld, 9);
                std::vector<float> dst(width * kc + 1, -7.0f);
                k->pack_rows(x.data(), ld, width, kc, dst.data());
                for (int64_t kk = 0; kk < kc; ++kk)
                    for (int r = 0; r < width; ++r)
                        ASSERT_EQ(dst[kk * width + r], x[r * ld + kk]) << "k " << kk << " r " << r;
                EXPECT_EQ(dst.back(), -7.0f) << "wrote past the panel";
            }
    }
}

TEST(Gemm, CacheSizesAreDetected) {
    const CacheSizes& c = cpu_features().caches;
    EXPECT_GE(c.l1d, 4 << 10);
    EXPECT_LE(c.l1d, c.l2);
    EXPECT_GE(c.l3, 0);
    const std::string source = c.source;
    EXPECT_TRUE(source == "cpuid" || source == "sysconf" || source == "default") << source;
}

// The model's blocks: multiples of the tile, within the documented ranges, and
// the blocks in the caches they are meant for.
TEST(Gemm, BlockSizesFollowTheCaches) {
    for (const MicroKernel* k : kernels())
        for (const CacheConfig& config : kCacheConfigs) {
            SCOPED_TRACE(std::string(k->name) + " on " + config.name);
            const CacheSizes& c = config.caches;
            const GemmBlocking b = gemm_blocking(c, k->mr, k->nr);
            EXPECT_EQ(b.mc % k->mr, 0);
            EXPECT_EQ(b.nc % k->nr, 0);
            EXPECT_EQ(b.kc % 8, 0);
            EXPECT_GE(b.kc, 32);
            EXPECT_LE(b.kc, 1024);
            EXPECT_GE(b.mc, k->mr);
            EXPECT_LE(b.mc, 4096);
            EXPECT_GE(b.nc, 16 * k->nr);
            EXPECT_LE(b.nc, 8192);
            // The B micro-panel fits in 1/8 of L2 and the A block in 1/4 of
            // L2, unless the caches are so small that the minimum sizes apply.
            if (b.kc > 32) EXPECT_LE(b.kc * k->nr * 4, c.l2 / 8);
            if (b.mc > k->mr) EXPECT_LE(b.mc * b.kc * 4, c.l2 / 4);
        }
    // Zen 4, AVX-512 tile 8×32: KC = 128 KiB / 128 B = 1024, MC = 256 KiB / 4 KiB = 64,
    // NC = 2 MiB / 4 KiB = 512.
    const GemmBlocking zen4 = gemm_blocking(kCacheConfigs[1].caches, 8, 32);
    EXPECT_EQ(zen4.kc, 1024);
    EXPECT_EQ(zen4.mc, 64);
    EXPECT_EQ(zen4.nc, 512);
    // Intel Xeon, 2 MiB L2: KC = 256 KiB / 128 B = 2048 → the maximum 1024;
    // MC = 512 KiB / 4 KiB = 128; the L3 share (below L2) counts as L2:
    // NC = 1 MiB / 4 KiB = 256 → the minimum 16·32 = 512.
    const GemmBlocking xeon = gemm_blocking(kCacheConfigs[0].caches, 8, 32);
    EXPECT_EQ(xeon.kc, 1024);
    EXPECT_EQ(xeon.mc, 128);
    EXPECT_EQ(xeon.nc, 512);
    // Tiny caches, AVX2 tile 6×16: KC = 2 KiB / 64 B = 32; MC = 4 KiB / 128 B
    // = 32 → 30 (a multiple of 6); NC: no L3, so 2 × L2 = 32 KiB; 16 KiB /
    // 128 B = 128 → the minimum 16·16 = 256. Still a working GEMM (below).
    const GemmBlocking tiny = gemm_blocking(kCacheConfigs[2].caches, 6, 16);
    EXPECT_EQ(tiny.kc, 32);
    EXPECT_EQ(tiny.mc, 30);
    EXPECT_EQ(tiny.nc, 256);
}

TEST(Gemm, AwkwardShapesAllTransposes) {
    const int64_t sizes[] = {1, 3, 17, 31, 130};
    for (const GemmPlan& p : plans())
        for (int threads : testing::kThreadCounts)
            for (int t = 0; t < 4; ++t)
                for (int64_t M : sizes)
                    for (int64_t N : sizes)
                        for (int64_t K : {int64_t{1}, int64_t{7}, int64_t{257}})
                            check_case(p, {bool(t & 1), bool(t & 2), M, N, K, 1.0f, 0.0f}, threads);
}

TEST(Gemm, LargerThanEveryBlock) {
    // M > MC and K > KC for every plan; N > NC too where that stays cheap for
    // the reference (the tiny caches' plans).
    for (const GemmPlan& p : plans()) {
        const GemmBlocking& b = p.blocks;
        for (int threads : testing::kThreadCounts) {
            check_case(p, {false, false, 2 * b.mc + 5, 67, 2 * b.kc + 3, 1.0f, 0.0f}, threads);
            if (37 * (b.nc + 7) * (2 * b.kc + 1) < 20'000'000)
                check_case(p, {true, true, 37, b.nc + 7, 2 * b.kc + 1, 1.0f, 0.0f}, threads);
        }
    }
}

TEST(Gemm, AlphaBetaAndPaddedLeadingDimensions) {
    for (const GemmPlan& p : plans())
        for (int threads : testing::kThreadCounts)
            for (float beta : {0.0f, 1.0f, -0.5f})
                for (int t = 0; t < 4; ++t)
                    check_case(p, {bool(t & 1), bool(t & 2), 29, 45, 300, 0.7f, beta,
                                    Activation::identity, false, 5},
                               threads);
}

TEST(Gemm, EpilogueBiasAndActivation) {
    const Activation acts[] = {Activation::identity, Activation::relu, Activation::leaky_relu,
                               Activation::sigmoid, Activation::tanh, Activation::gelu};
    for (const GemmPlan& p : plans())
        for (int threads : testing::kThreadCounts)
            for (Activation act : acts)
                for (int64_t K : {int64_t{5}, int64_t{600}})
                    check_case(p, {false, false, 33, 130, K, 1.0f, 0.0f, act, true}, threads);
}

// The epilogue of a tile is C + bias, then the activation, bit for bit —
// ReLU and leaky ReLU computed in the bias pass included — on values that
// test the rules: NaN kept by ReLU, −0, negatives; with and without a bias,
// on a tile inside a wider C (ldc > n) with an offset into the bias.
TEST(Gemm, EpilogueIsTheBiasThenTheActivationBitForBit) {
    const int64_t m = 3, n = 37, ldc = 45, j0 = 4;
    auto c0 = testing::random_vector(m * ldc, 5);
    c0[1] = std::nanf(""), c0[2] = -0.0f, c0[ldc + 3] = 0.0f, c0[2 * ldc] = -1e30f;
    const auto bias = testing::random_vector(j0 + n, 6);
    for (Activation act : {Activation::identity, Activation::relu, Activation::leaky_relu,
                           Activation::sigmoid})
        for (bool with_bias : {false, true}) {
            SCOPED_TRACE("act=" + std::to_string(static_cast<int>(act)) + " bias=" + std::to_string(with_bias));
            GemmEpilogue ep;
            ep.bias = with_bias ? bias.data() : nullptr;
            ep.activation = act;
            ep.alpha = 0.1f;
            auto actual = c0, expected = c0;
            apply_epilogue(ep, actual.data(), ldc, m, n, j0);
            for (int64_t i = 0; i < m; ++i) {
                float* row = expected.data() + i * ldc;
                if (with_bias)
                    for (int64_t j = 0; j < n; ++j) row[j] += bias[j0 + j];
                activation_forward(act, row, row, n, ep.alpha);
            }
            EXPECT_EQ(0, std::memcmp(actual.data(), expected.data(), actual.size() * sizeof(float)));
        }
}

TEST(Gemm, ZeroKOrZeroAlphaScalesCAndAppliesEpilogue) {
    for (const GemmPlan& p : plans()) {
        check_case(p, {false, false, 5, 9, 0, 1.0f, 0.5f, Activation::relu, true}, 1);
        check_case(p, {false, false, 5, 9, 4, 0.0f, 2.0f}, 1);
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

// A GEMM of one row of A (run_row: a generated token's Dense) gives that row of
// the GEMM of all the rows (run: the whole window) bit for bit — what makes
// generation with a key/value cache equal to recomputing the window. With the
// epilogue, accumulation into C, both transposes, every kernel and plan (K
// across a KC block), 1 and 2 threads.
TEST(Gemm, OneRowIsThatRowOfTheWholeProduct) {
    for (const GemmPlan& p : plans())
        for (int threads : testing::kThreadCounts)
            for (int t = 0; t < 4; ++t)
                for (int64_t K : {int64_t{7}, int64_t{130}, p.blocks.kc + 9}) {
                    const bool ta = t & 1, tb = t & 2;
                    const int64_t M = 13, N = 75;
                    SCOPED_TRACE(describe(p) + " threads=" + std::to_string(threads) + " ta=" +
                                 std::to_string(ta) + " tb=" + std::to_string(tb) + " K=" +
                                 std::to_string(K));
                    ThreadCountGuard guard(threads);
                    const auto A = testing::random_vector(M * K, 1);
                    const auto B = testing::random_vector(K * N, 2), bias = testing::random_vector(N, 3);
                    const auto C0 = testing::random_vector(M * N, 4);
                    GemmEpilogue ep;
                    ep.bias = bias.data();
                    ep.activation = Activation::gelu;
                    for (float beta : {0.0f, 1.0f}) {
                        auto whole = C0;
                        gemm_with_plan(p, ta, tb, M, N, K, 1.0f, A.data(), ta ? M : K, B.data(),
                                       tb ? K : N, beta, whole.data(), N, ep);
                        for (int64_t r : {int64_t{0}, int64_t{5}, M - 1}) {
                            std::vector<float> a_row(K);  // row r of op(A), as a 1×K matrix
                            for (int64_t k = 0; k < K; ++k) a_row[k] = ta ? A[k * M + r] : A[r * K + k];
                            std::vector<float> row(C0.begin() + r * N, C0.begin() + (r + 1) * N);
                            gemm_with_plan(p, false, tb, 1, N, K, 1.0f, a_row.data(), K, B.data(),
                                           tb ? K : N, beta, row.data(), N, ep);
                            for (int64_t j = 0; j < N; ++j)
                                ASSERT_EQ(row[j], whole[r * N + j]) << "beta=" << beta << " r=" << r
                                                                    << " j=" << j;
                        }
                    }
                }
}

// A C at most half a tile wide runs the kernel's narrow tile (AVX-512: 8×16
// against 8×32). Its columns must be the bits the full tile gives: the first
// n columns of a 70-column product, computed from the same B in place (same
// ldb, same ldc), with K across a kc-slice, β = 0 and 1, the epilogue, both
// transposes, every plan, 1 and 2 threads.
TEST(Gemm, NarrowCIsThoseColumnsOfTheWideProduct) {
    for (const MicroKernel* k : kernels())
        if (k->narrow) {
            EXPECT_EQ(k->narrow->mr, k->mr) << k->name;
            EXPECT_EQ(2 * k->narrow->nr, k->nr) << k->name;
        }
    const int64_t M = 19, wide = 70;
    for (const GemmPlan& p : plans())
        for (int threads : testing::kThreadCounts)
            for (int t = 0; t < 4; ++t)
                for (int64_t K : {int64_t{10}, int64_t{128}, p.blocks.kc + 9})
                    for (int64_t n : {int64_t{1}, int64_t{10}, int64_t{p.kernel->nr / 2}}) {
                        const bool ta = t & 1, tb = t & 2;
                        SCOPED_TRACE(describe(p) + " threads=" + std::to_string(threads) + " ta=" +
                                     std::to_string(ta) + " tb=" + std::to_string(tb) + " K=" +
                                     std::to_string(K) + " n=" + std::to_string(n));
                        ThreadCountGuard guard(threads);
                        const auto A = testing::random_vector(M * K, 1);
                        const auto B = testing::random_vector(K * wide, 2);
                        const auto bias = testing::random_vector(wide, 3);
                        const auto C0 = testing::random_vector(M * wide, 4);
                        const int64_t lda = ta ? M : K, ldb = tb ? K : wide;
                        GemmEpilogue ep;
                        ep.bias = bias.data();
                        ep.activation = Activation::relu;
                        for (float beta : {0.0f, 1.0f}) {
                            auto whole = C0, part = C0;
                            gemm_with_plan(p, ta, tb, M, wide, K, 1.0f, A.data(), lda, B.data(), ldb,
                                           beta, whole.data(), wide, ep);
                            gemm_with_plan(p, ta, tb, M, n, K, 1.0f, A.data(), lda, B.data(), ldb, beta,
                                           part.data(), wide, ep);
                            for (int64_t i = 0; i < M; ++i)
                                for (int64_t j = 0; j < wide; ++j)
                                    ASSERT_EQ(part[i * wide + j], j < n ? whole[i * wide + j] : C0[i * wide + j])
                                        << "beta=" << beta << " i=" << i << " j=" << j;
                        }
                    }
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
