// test_random.cpp — the counter-based generator, dropout and random_permutation:
// known SplitMix64 outputs, agreement with the reference loops, independence
// from the thread count, and statistical sanity.
#include "random.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <string>
#include <vector>

#include "test_util.h"

namespace fz {
namespace {

using testing::kAwkwardSizes;
using testing::kThreadCounts;
using testing::random_vector;
using testing::ThreadCountGuard;

// kAwkwardSizes plus sizes above the 16K-value grain, so that two threads
// really split the work.
std::vector<int64_t> sizes() {
    std::vector<int64_t> s = kAwkwardSizes;
    s.push_back(2 * 16384 + 5);
    s.push_back(100003);
    return s;
}

struct Dropout {
    std::vector<float> y, mask;
};

Dropout dropout(const std::vector<float>& x, float rate, uint64_t seed) {
    Dropout d{std::vector<float>(x.size()), std::vector<float>(x.size())};
    dropout_forward(x.data(), d.y.data(), d.mask.data(), static_cast<int64_t>(x.size()), rate,
                    seed);
    return d;
}

std::vector<int64_t> permutation(int64_t n, uint64_t seed) {
    std::vector<int64_t> p(static_cast<size_t>(n), -1);
    random_permutation(p.data(), n, seed);
    return p;
}

// ---- random_bits and random_uniform ----

// The first outputs of Vigna's splitmix64.c seeded with 0 and with 1234567.
TEST(RandomBits, IsTheSplitMix64Stream) {
    EXPECT_EQ(random_bits(0, 0), 0xE220A8397B1DCDAFULL);
    EXPECT_EQ(random_bits(0, 1), 0x6E789E6AA1B965F4ULL);
    EXPECT_EQ(random_bits(0, 2), 0x06C45D188009454FULL);
    EXPECT_EQ(random_bits(1234567, 0), 6457827717110365317ULL);
    EXPECT_EQ(random_bits(1234567, 1), 3203168211198807973ULL);
    EXPECT_EQ(random_bits(1234567, 2), 9817491932198370423ULL);
}

TEST(RandomUniform, IsTheTop24BitsInUnitInterval) {
    double sum = 0;
    const int n = 100000;
    for (int i = 0; i < n; ++i) {
        const float u = random_uniform(42, i);
        ASSERT_GE(u, 0.0f);
        ASSERT_LT(u, 1.0f);
        ASSERT_EQ(u, static_cast<float>(random_bits(42, i) >> 40) / 16777216.0f);
        sum += u;
    }
    EXPECT_NEAR(sum / n, 0.5, 0.005);  // σ of the mean is 0.29/√n ≈ 0.0009
}

// ---- dropout ----

TEST(Dropout, ForwardMatchesReference) {
    for (int64_t n : sizes()) {
        for (float rate : {0.0f, 0.1f, 0.5f, 0.9f}) {
            SCOPED_TRACE("n = " + std::to_string(n) + ", rate = " + std::to_string(rate));
            const auto x = random_vector(n, 30);
            std::vector<float> y(x.size()), mask(x.size());
            reference::dropout_forward(x.data(), y.data(), mask.data(), n, rate, 7);
            for (int threads : kThreadCounts) {
                ThreadCountGuard guard(threads);
                const auto d = dropout(x, rate, 7);
                EXPECT_EQ(d.mask, mask) << threads << " threads";
                EXPECT_EQ(d.y, y) << threads << " threads";
            }
        }
    }
}

// On 1e5 values the fraction of zeros is near rate and the mask averages
// near 1 (inverted dropout keeps E[y] = x); tolerances are 5σ of a binomial.
TEST(Dropout, MaskStatistics) {
    const int64_t n = 100000;
    const auto x = random_vector(n, 31);
    for (float rate : {0.1f, 0.3f, 0.5f, 0.8f}) {
        SCOPED_TRACE("rate = " + std::to_string(rate));
        const auto d = dropout(x, rate, 1234);
        const float scale = 1.0f / (1.0f - rate);
        int64_t zeros = 0;
        double sum = 0;
        for (int64_t i = 0; i < n; ++i) {
            if (d.mask[i] == 0.0f) {
                ++zeros;
            } else {
                ASSERT_EQ(d.mask[i], scale) << "at " << i;
            }
            ASSERT_EQ(d.y[i], x[i] * d.mask[i]) << "at " << i;
            sum += d.mask[i];
        }
        const double sigma = std::sqrt(rate * (1.0 - rate) / n);
        EXPECT_NEAR(static_cast<double>(zeros) / n, rate, 5 * sigma);
        EXPECT_NEAR(sum / n, 1.0, 5 * scale * sigma);
    }
}

TEST(Dropout, RateZeroKeepsEverything) {
    const auto x = random_vector(1031, 32);
    const auto d = dropout(x, 0.0f, 99);
    EXPECT_EQ(d.mask, std::vector<float>(x.size(), 1.0f));
    EXPECT_EQ(d.y, x);
}

TEST(Dropout, SameSeedSameMaskOtherSeedOtherMask) {
    const auto x = random_vector(100000, 33);
    std::vector<float> first;
    for (int threads : kThreadCounts) {
        ThreadCountGuard guard(threads);
        const auto mask = dropout(x, 0.5f, 5).mask;
        if (first.empty()) first = mask;
        EXPECT_EQ(mask, first) << threads << " threads";
    }
    const auto other = dropout(x, 0.5f, 6).mask;
    int64_t differ = 0;
    for (size_t i = 0; i < other.size(); ++i) differ += other[i] != first[i];
    // Independent masks differ in half of the places.
    EXPECT_NEAR(static_cast<double>(differ) / other.size(), 0.5, 0.01);
}

TEST(Dropout, BackwardMatchesReference) {
    for (int64_t n : sizes()) {
        SCOPED_TRACE("n = " + std::to_string(n));
        const auto dy = random_vector(n, 34);
        const auto mask = dropout(random_vector(n, 35), 0.3f, 11).mask;
        std::vector<float> expected(dy.size());
        reference::dropout_backward(dy.data(), mask.data(), expected.data(), n);
        for (int threads : kThreadCounts) {
            ThreadCountGuard guard(threads);
            std::vector<float> dx(dy.size());
            dropout_backward(dy.data(), mask.data(), dx.data(), n);
            EXPECT_EQ(dx, expected) << threads << " threads";
            auto inplace = dy;
            dropout_backward(inplace.data(), mask.data(), inplace.data(), n);
            EXPECT_EQ(inplace, expected) << "in place, " << threads << " threads";
        }
    }
}

// ---- random_permutation ----

TEST(RandomPermutation, IsAPermutationMatchingReference) {
    std::vector<int64_t> ns = sizes();
    ns.push_back(0);
    for (int64_t n : ns) {
        SCOPED_TRACE("n = " + std::to_string(n));
        const auto p = permutation(n, 3);
        std::vector<int64_t> expected(static_cast<size_t>(n));
        reference::random_permutation(expected.data(), n, 3);
        EXPECT_EQ(p, expected);
        auto sorted = p;
        std::sort(sorted.begin(), sorted.end());
        std::vector<int64_t> iota(static_cast<size_t>(n));
        std::iota(iota.begin(), iota.end(), 0);
        EXPECT_EQ(sorted, iota);
    }
}

TEST(RandomPermutation, DependsOnSeed) {
    EXPECT_EQ(permutation(100, 1), permutation(100, 1));
    EXPECT_NE(permutation(100, 1), permutation(100, 2));
}

// All 24 orders of 4 elements, over 24000 seeds: a chi-square statistic with
// 23 degrees of freedom is below 60 with probability 1 − 1e-4. The classic
// bug of drawing j from [0, n) instead of [0, i] scores in the hundreds.
TEST(RandomPermutation, IsUniformOverSmallN) {
    const int trials = 24000;
    std::map<std::vector<int64_t>, int> counts;
    for (int seed = 0; seed < trials; ++seed) ++counts[permutation(4, seed)];
    ASSERT_EQ(counts.size(), 24u);
    const double expected = trials / 24.0;
    double chi2 = 0;
    for (const auto& [perm, count] : counts)
        chi2 += (count - expected) * (count - expected) / expected;
    EXPECT_LT(chi2, 60.0);
}

}  // namespace
}  // namespace fz
