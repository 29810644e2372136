// test_util.h — helpers shared by the GoogleTest files: random data, the
// awkward sizes every kernel is tried on, and a tolerant comparison.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "parallel.h"

namespace fz::testing {

// 1, odd, prime, and larger than any block or SIMD width.
inline const std::vector<int64_t> kAwkwardSizes = {1, 2, 3, 7, 16, 17, 31, 64, 97, 257, 1031};

// The thread counts every kernel is checked with.
inline const std::vector<int> kThreadCounts = {1, 2};

inline std::vector<float> random_vector(int64_t n, uint32_t seed, float lo = -1.0f,
                                        float hi = 1.0f) {
    std::mt19937 gen(seed);
    std::uniform_real_distribution<float> dist(lo, hi);
    std::vector<float> v(static_cast<size_t>(n));
    for (auto& x : v) x = dist(gen);
    return v;
}

// |a - b| <= atol + rtol * |b| elementwise, reporting the first mismatch.
inline void expect_close(const std::vector<float>& actual, const std::vector<float>& expected,
                         float rtol = 1e-5f, float atol = 1e-6f) {
    ASSERT_EQ(actual.size(), expected.size());
    for (size_t i = 0; i < actual.size(); ++i) {
        const float a = actual[i], b = expected[i];
        if (std::isnan(b)) {
            ASSERT_TRUE(std::isnan(a)) << "at index " << i;
            continue;
        }
        ASSERT_LE(std::fabs(a - b), atol + rtol * std::fabs(b))
            << "at index " << i << ": got " << a << ", expected " << b;
    }
}

// Runs the enclosing test body with the kernel thread count set, restoring it.
class ThreadCountGuard {
public:
    // Also takes the team as near, whatever the machine's vCPUs are doing
    // (parallel.h, far_team_runs_serially), and stops measuring it: the
    // kernels under test use the team on every machine.
    explicit ThreadCountGuard(int n) : saved_(get_num_threads()) {
        set_num_threads(n);
        detail::team_health().next_probe_ns.store(INT64_MAX);
        detail::team_health().round_trip_ns.store(0);
    }
    ~ThreadCountGuard() { set_num_threads(saved_); }

private:
    int saved_;
};

}  // namespace fz::testing
