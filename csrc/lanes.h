// lanes.h — row reductions in a fixed order that still vectorize.
//
// Without -ffast-math the compiler may not reorder a float sum, so a plain
// `for (j) s += x[j]` runs one add at a time. Here term j goes to lane
// j mod kLanes, the lanes are independent (one vector register's worth of
// additions per step), and they are combined in lane order at the end. The
// order is fixed by the code, not by the instruction set or the thread count.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <utility>

namespace fz {

constexpr int kLanes = 16;

// Σ_{j<n} term(j).
template <class Term>
inline float lane_sum(int64_t n, Term term) {
    float acc[kLanes] = {};
    int64_t j = 0;
    for (; j + kLanes <= n; j += kLanes)
        for (int l = 0; l < kLanes; ++l) acc[l] += term(j + l);
    for (int l = 0; j < n; ++j, ++l) acc[l] += term(j);
    float sum = 0.0f;
    for (int l = 0; l < kLanes; ++l) sum += acc[l];
    return sum;
}

// (Σ_{j<n} a(j), Σ_{j<n} b(j)) in one sweep, each as lane_sum adds it.
template <class TermA, class TermB>
inline std::pair<float, float> lane_sum2(int64_t n, TermA a, TermB b) {
    float acc_a[kLanes] = {}, acc_b[kLanes] = {};
    int64_t j = 0;
    for (; j + kLanes <= n; j += kLanes)
        for (int l = 0; l < kLanes; ++l) {
            acc_a[l] += a(j + l);
            acc_b[l] += b(j + l);
        }
    for (int l = 0; j < n; ++j, ++l) {
        acc_a[l] += a(j);
        acc_b[l] += b(j);
    }
    float sum_a = 0.0f, sum_b = 0.0f;
    for (int l = 0; l < kLanes; ++l) {
        sum_a += acc_a[l];
        sum_b += acc_b[l];
    }
    return {sum_a, sum_b};
}

// max_{j<n} x[j] (−∞ when n = 0); NaNs are ignored.
inline float lane_max(const float* x, int64_t n) {
    float acc[kLanes];
    std::fill(acc, acc + kLanes, -INFINITY);
    int64_t j = 0;
    for (; j + kLanes <= n; j += kLanes)
        for (int l = 0; l < kLanes; ++l) acc[l] = acc[l] < x[j + l] ? x[j + l] : acc[l];
    for (int l = 0; j < n; ++j, ++l) acc[l] = acc[l] < x[j] ? x[j] : acc[l];
    float max = -INFINITY;
    for (int l = 0; l < kLanes; ++l) max = max < acc[l] ? acc[l] : max;
    return max;
}

}  // namespace fz
