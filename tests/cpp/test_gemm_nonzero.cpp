// Skipping zeros (gemm_nonzero, dense.h's DenseZeroSkip): the products must
// be the dense GEMM's bit for bit — for every micro-kernel, with this CPU's
// blocks and with the tiny-cache blocks that cut K into kc-slices of 32, on
// awkward shapes, rows all zero and none zero, negative zeros, every
// epilogue, 1 and 2 threads — and equal the double-precision definition.
#include <cmath>
#include <cstring>
#include <string>

#include "dense.h"
#include "gemm.h"
#include "gemm_microkernel.h"
#include "test_util.h"

namespace fz {
namespace {

using testing::ThreadCountGuard;

std::vector<GemmPlan> plans() {
    const MicroKernel* list[8];
    const int n = available_micro_kernels(list, 8);
    std::vector<GemmPlan> all;
    for (int i = 0; i < n; ++i) {
        all.push_back({list[i], gemm_blocking(cpu_features().caches, list[i]->mr, list[i]->nr)});
        all.push_back({list[i], gemm_blocking({4 << 10, 16 << 10, 0}, list[i]->mr, list[i]->nr)});
    }
    return all;
}

// An (rows, cols) matrix with about `zeros` of its entries exactly zero:
// whole zero rows and columns among them, and a few −0.
std::vector<float> sparse_matrix(int64_t rows, int64_t cols, float zeros, uint32_t seed) {
    auto x = testing::random_vector(rows * cols, seed);
    const auto u = testing::random_vector(rows * cols, seed + 100, 0.0f, 1.0f);
    for (int64_t e = 0; e < rows * cols; ++e) {
        if (u[e] < zeros) x[e] = u[e] < zeros / 8 ? -0.0f : 0.0f;
        if (e / cols == 1 || e % cols == 2) x[e] = 0.0f;  // a zero row and a zero column
    }
    return x;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
    // (an empty vector's data() may be null, which memcmp must not get even for 0 bytes)
    return a.size() == b.size() &&
           (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

// The first index where two arrays differ bit-wise, for the failure message.
std::string first_difference(const std::vector<float>& a, const std::vector<float>& b) {
    for (size_t i = 0; i < a.size(); ++i)
        if (std::memcmp(&a[i], &b[i], sizeof(float)) != 0)
            return "at " + std::to_string(i) + ": " + std::to_string(a[i]) + " vs " +
                   std::to_string(b[i]);
    return "none";
}

TEST(GemmNonzero, EntriesOfEveryKernelAreTheNonzeroOnes) {
    const MicroKernel* list[8];
    const int n_kernels = available_micro_kernels(list, 8);
    for (int64_t n : testing::kAwkwardSizes) {
        auto x = sparse_matrix(1, n, 0.6f, 7);
        if (n > 5) x[5] = NAN;  // kept: NaN ≠ 0
        for (int64_t begin : {int64_t{0}, n / 3, n}) {  // x[begin:n): positions stay x's
            std::vector<int32_t> want_index;
            std::vector<float> want_value;
            for (int64_t k = begin; k < n; ++k)
                if (x[k] != 0.0f) want_index.push_back(static_cast<int32_t>(k)), want_value.push_back(x[k]);
            for (int i = 0; i < n_kernels; ++i) {
                SCOPED_TRACE(std::string(list[i]->name) + " n=" + std::to_string(n) +
                             " begin=" + std::to_string(begin));
                std::vector<int32_t> index(n + 16, -1);
                std::vector<float> value(n + 16);
                const int64_t count =
                    list[i]->nonzero_entries(x.data(), begin, n, index.data(), value.data());
                ASSERT_EQ(count, static_cast<int64_t>(want_index.size()));
                index.resize(count), value.resize(count);
                EXPECT_EQ(index, want_index);
                EXPECT_TRUE(same_bits(value, want_value));
            }
        }
    }
}

TEST(GemmNonzero, RowsAndTransposeHoldEveryNonzeroEntry) {
    const int64_t rows = 37, cols = 97, ld = 101;
    const auto x = sparse_matrix(rows, ld, 0.7f, 3);
    NonzeroRows a, at;
    {  // `at` first holds another matrix's columns, as a layer's buffers do from step to step
        const auto other = sparse_matrix(rows + 5, cols + 9, 0.2f, 4);
        NonzeroRows b;
        nonzero_rows(other.data(), rows + 5, cols + 9, cols + 9, b);
        transpose(b, at);
    }
    nonzero_rows(x.data(), rows, cols, ld, a);
    transpose(a, at);
    int64_t nnz = 0;
    for (int64_t r = 0; r < rows; ++r) {
        int64_t e = a.first[r];
        for (int64_t k = 0; k < cols; ++k) {
            if (x[r * ld + k] == 0.0f) continue;
            ASSERT_LT(e, a.first[r] + a.count[r]);
            EXPECT_EQ(a.index[e], k);
            EXPECT_EQ(a.value[e], x[r * ld + k]);
            ++e, ++nnz;
        }
        EXPECT_EQ(e, a.first[r] + a.count[r]);
    }
    EXPECT_EQ(a.nnz, nnz);
    ASSERT_EQ(at.rows, cols);
    ASSERT_EQ(at.cols, rows);
    for (int64_t k = 0; k < cols; ++k) {
        int64_t e = at.first[k];
        for (int64_t r = 0; r < rows; ++r) {
            if (x[r * ld + k] == 0.0f) continue;
            ASSERT_LT(e, at.first[k] + at.count[k]);
            EXPECT_EQ(at.index[e], r);
            EXPECT_EQ(at.value[e], x[r * ld + k]);
            ++e;
        }
        EXPECT_EQ(e, at.first[k] + at.count[k]);
    }
}

struct Shape {
    int64_t M, N, K;
};
// {5, 600, 700}: the B rows of a kc-slice span several of gemm_nonzero's
// 512 KB k-blocks (218 rows of 600 floats each). K > M with enough work for
// two threads (when K ≤ kc): the pipeline along k (parallel_pipeline) — 784
// (MNIST), 1000 over 3 rows (fewer rows than blocks) and over 9 rows of 45.
const Shape kShapes[] = {{1, 1, 1},     {2, 17, 7},     {7, 16, 64},  {17, 33, 97},
                         {32, 128, 784}, {33, 129, 300}, {8, 257, 31}, {5, 10, 0},
                         {5, 600, 700},  {3, 300, 1000}, {9, 45, 1000}};
const float kZeroFractions[] = {0.0f, 0.5f, 0.9f, 1.0f};

TEST(GemmNonzero, IsTheDenseGemmBitForBit) {
    struct Ep {
        bool bias;
        Activation act;
    };
    const Ep epilogues[] = {{false, Activation::identity}, {true, Activation::relu},
                            {true, Activation::sigmoid},   {false, Activation::gelu},
                            {true, Activation::leaky_relu}};
    for (const GemmPlan& plan : plans())
        for (const Shape& s : kShapes)
            for (float zeros : kZeroFractions)
                for (const Ep& e : epilogues)
                    for (int threads : testing::kThreadCounts) {
                        SCOPED_TRACE(std::string(plan.kernel->name) + " kc=" +
                                     std::to_string(plan.blocks.kc) + " M=" + std::to_string(s.M) +
                                     " N=" + std::to_string(s.N) + " K=" + std::to_string(s.K) +
                                     " zeros=" + std::to_string(zeros) + " act=" +
                                     std::to_string(static_cast<int>(e.act)) +
                                     " threads=" + std::to_string(threads));
                        ThreadCountGuard guard(threads);
                        const auto A = sparse_matrix(s.M, s.K, zeros, 11);
                        const auto B = testing::random_vector(s.K * s.N, 12);
                        const auto bias = testing::random_vector(s.N, 13);
                        GemmEpilogue ep;
                        ep.bias = e.bias ? bias.data() : nullptr;
                        ep.activation = e.act;
                        ep.alpha = 0.1f;
                        std::vector<float> dense(s.M * s.N, NAN), skipping(s.M * s.N, NAN);
                        gemm_with_plan(plan, false, false, s.M, s.N, s.K, 1.0f, A.data(), s.K,
                                       B.data(), s.N, 0.0f, dense.data(), s.N, ep);
                        NonzeroRows a;
                        nonzero_rows(A.data(), s.M, s.K, s.K, a);
                        gemm_nonzero_with_plan(plan, a, B.data(), s.N, s.N, skipping.data(), s.N,
                                               ep);
                        ASSERT_TRUE(same_bits(skipping, dense)) << first_difference(skipping, dense);
                    }
}

// The same entries, row by row, wherever each row is stored.
void expect_same_entries(const NonzeroRows& a, const NonzeroRows& b) {
    ASSERT_EQ(a.rows, b.rows);
    ASSERT_EQ(a.cols, b.cols);
    EXPECT_EQ(a.nnz, b.nnz);
    for (int64_t r = 0; r < a.rows; ++r) {
        ASSERT_EQ(a.count[r], b.count[r]) << "row " << r;
        for (int64_t t = 0; t < a.count[r]; ++t) {
            ASSERT_EQ(a.index[a.first[r] + t], b.index[b.first[r] + t]) << "row " << r;
            ASSERT_EQ(std::memcmp(&a.value[a.first[r] + t], &b.value[b.first[r] + t], sizeof(float)), 0);
        }
    }
}

// gemm_skipping_zeros finds X's entries itself (inside the pipeline along k
// when it runs: each share appends its k to each row) and gives gemm's bits;
// gemm_nonzero_transposed, where each chunk transposes its own columns, gives
// the transposed product's bits. At every thread count, on the shapes that
// take the pipeline and those that do not, starting from buffers that held a
// larger matrix's entries.
TEST(GemmNonzero, SkippingZerosOfADenseXAndTheTransposedProductAreGemmBitForBit) {
    for (const Shape& s : kShapes)
        for (float zeros : kZeroFractions)
            for (int threads : testing::kThreadCounts) {
                SCOPED_TRACE("M=" + std::to_string(s.M) + " N=" + std::to_string(s.N) +
                             " K=" + std::to_string(s.K) + " zeros=" + std::to_string(zeros) +
                             " threads=" + std::to_string(threads));
                ThreadCountGuard guard(threads);
                const int64_t ldx = s.K + 3;
                const auto X = sparse_matrix(s.M, ldx, zeros, 51);
                const auto B = testing::random_vector(s.K * s.N, 52);
                const auto D = testing::random_vector(s.M * s.N, 53);
                const auto bias = testing::random_vector(s.N, 54);
                GemmEpilogue ep;
                ep.bias = bias.data();
                ep.activation = Activation::relu;
                NonzeroRows a, want;
                {  // a's buffers first hold another matrix's entries, as a layer's do
                    const auto other = sparse_matrix(s.M + 2, s.K + 5, 0.1f, 55);
                    nonzero_rows(other.data(), s.M + 2, s.K + 5, s.K + 5, a);
                }
                std::vector<float> dense(s.M * s.N, NAN), skipping(s.M * s.N, NAN);
                gemm(false, false, s.M, s.N, s.K, 1.0f, X.data(), ldx, B.data(), s.N, 0.0f,
                     dense.data(), s.N, ep);
                // (a machine busy enough to make the team late would run the
                // next calls on one thread: they are to use the team)
                detail::team_health().serial_until_ns.store(0);
                gemm_skipping_zeros(X.data(), s.M, s.K, ldx, B.data(), s.N, s.N, skipping.data(),
                                    s.N, ep, a);
                ASSERT_TRUE(same_bits(skipping, dense)) << first_difference(skipping, dense);
                nonzero_rows(X.data(), s.M, s.K, ldx, want);
                expect_same_entries(a, want);

                std::vector<float> dW(s.K * s.N, NAN), dW_skipping(s.K * s.N, NAN);
                gemm(true, false, s.K, s.N, s.M, 1.0f, X.data(), ldx, D.data(), s.N, 0.0f,
                     dW.data(), s.N);
                detail::team_health().serial_until_ns.store(0);
                gemm_nonzero_transposed(a, D.data(), s.N, s.N, dW_skipping.data(), s.N);
                ASSERT_TRUE(same_bits(dW_skipping, dW)) << first_difference(dW_skipping, dW);
            }
}

TEST(GemmNonzero, MatchesTheDefinition) {
    const int64_t M = 17, N = 45, K = 300;
    const auto A = sparse_matrix(M, K, 0.8f, 21);
    const auto B = testing::random_vector(K * N, 22);
    const auto bias = testing::random_vector(N, 23);
    NonzeroRows a;
    nonzero_rows(A.data(), M, K, K, a);
    GemmEpilogue ep;
    ep.bias = bias.data();
    ep.activation = Activation::tanh;
    std::vector<float> actual(M * N), expected(M * N);
    gemm_nonzero(a, B.data(), N, N, actual.data(), N, ep);
    reference::gemm_nonzero(a, B.data(), N, N, expected.data(), N, ep);
    testing::expect_close(actual, expected, 1e-5f, 1e-5f);
    reference::gemm(false, false, M, N, K, 1.0f, A.data(), K, B.data(), N, 0.0f, expected.data(),
                    N, ep);
    testing::expect_close(actual, expected, 1e-5f, 1e-5f);
}

// The one documented difference: a non-finite B entry where A is zero. The
// dense product gives NaN (0·inf); skipping leaves the term out.
TEST(GemmNonzero, InfiniteWeightBehindAZeroIsLeftOut) {
    const std::vector<float> A = {0.0f, 2.0f};   // (1, 2)
    const std::vector<float> B = {INFINITY, 3.0f};  // (2, 1)
    NonzeroRows a;
    nonzero_rows(A.data(), 1, 2, 2, a);
    float skipping = 0.0f, dense = 0.0f;
    gemm_nonzero(a, B.data(), 1, 1, &skipping, 1);
    gemm(false, false, 1, 1, 2, 1.0f, A.data(), 2, B.data(), 1, 0.0f, &dense, 1);
    EXPECT_EQ(skipping, 6.0f);
    EXPECT_TRUE(std::isnan(dense));
}

// dense_forward / dense_backward with a DenseZeroSkip give the bits of the
// plain calls, whether they skip (threshold 0: always) or decide (default).
class ZeroSkipThreshold {
  public:
    explicit ZeroSkipThreshold(float t) : saved_(zero_skip_threshold()) { set_zero_skip_threshold(t); }
    ~ZeroSkipThreshold() { set_zero_skip_threshold(saved_); }

  private:
    float saved_;
};

TEST(DenseZeroSkip, ForwardAndBackwardAreThePlainCallsBitForBit) {
    const Activation acts[] = {Activation::relu, Activation::identity, Activation::gelu,
                               Activation::softmax, Activation::sigmoid};
    const Shape shapes[] = {{32, 128, 784}, {7, 10, 33}, {130, 65, 300}};
    for (float threshold : {0.0f, kDefaultZeroSkipThreshold})
        for (const Shape& s : shapes)
            for (float zeros : {0.3f, 0.85f})
                for (Activation act : acts)
                    for (int threads : testing::kThreadCounts) {
                        SCOPED_TRACE("threshold=" + std::to_string(threshold) +
                                     " batch=" + std::to_string(s.M) + " out=" + std::to_string(s.N) +
                                     " in=" + std::to_string(s.K) + " zeros=" + std::to_string(zeros) +
                                     " act=" + std::to_string(static_cast<int>(act)) +
                                     " threads=" + std::to_string(threads));
                        ThreadCountGuard guard(threads);
                        const int64_t batch = s.M, out = s.N, in = s.K;
                        const auto x = sparse_matrix(batch, in, zeros, 31);
                        const auto W = testing::random_vector(in * out, 32, -0.2f, 0.2f);
                        const auto b = testing::random_vector(out, 33);
                        const auto dy = testing::random_vector(batch * out, 34);
                        const bool need_z = act == Activation::gelu;
                        struct Result {
                            std::vector<float> y, z, dz, dW, db;
                        } plain, skipping;
                        DenseZeroSkip skip;
                        for (Result* r : {&plain, &skipping}) {
                            r->y.assign(batch * out, 0), r->z.assign(batch * out, 0);
                            r->dz.assign(batch * out, 0), r->dW.assign(in * out, 0);
                            r->db.assign(out, 0);
                            DenseZeroSkip* state = r == &skipping ? &skip : nullptr;
                            float* z = need_z ? r->z.data() : nullptr;
                            ZeroSkipThreshold t(threshold);
                            dense_forward(x.data(), W.data(), b.data(), r->y.data(), z, batch, in,
                                          out, act, 0.1f, state);
                            dense_backward(x.data(), W.data(), z, r->y.data(), dy.data(),
                                           r->dz.data(), r->dW.data(), r->db.data(), nullptr, batch,
                                           in, out, act, 0.1f, state);
                        }
                        EXPECT_EQ(skip.x != nullptr, zeros >= threshold);  // the path taken
                        EXPECT_TRUE(same_bits(skipping.y, plain.y)) << first_difference(skipping.y, plain.y);
                        EXPECT_TRUE(same_bits(skipping.dW, plain.dW)) << first_difference(skipping.dW, plain.dW);
                        EXPECT_TRUE(same_bits(skipping.db, plain.db));
                    }
}

// A backward whose x is not the forward's does not use the forward's entries.
TEST(DenseZeroSkip, BackwardOnAnotherXComputesItsOwnProduct) {
    ZeroSkipThreshold t(0.0f);
    const int64_t batch = 4, in = 9, out = 5;
    const auto x1 = sparse_matrix(batch, in, 0.8f, 41), x2 = sparse_matrix(batch, in, 0.8f, 42);
    const auto W = testing::random_vector(in * out, 43), dy = testing::random_vector(batch * out, 44);
    std::vector<float> y(batch * out), dz(batch * out), dW(in * out), want(in * out);
    DenseZeroSkip skip;
    dense_forward(x1.data(), W.data(), nullptr, y.data(), nullptr, batch, in, out,
                  Activation::identity, 0.0f, &skip);
    dense_backward(x2.data(), W.data(), nullptr, y.data(), dy.data(), dz.data(), dW.data(), nullptr,
                   nullptr, batch, in, out, Activation::identity, 0.0f, &skip);
    gemm(true, false, in, out, batch, 1.0f, x2.data(), in, dz.data(), out, 0.0f, want.data(), out);
    EXPECT_TRUE(same_bits(dW, want));
}

}  // namespace
}  // namespace fz
