// test_optimizers.cpp — each update rule pinned by steps worked out by hand from
// Keras 3's formulas (the literals below), and the fast kernels against the
// reference loops on awkward and large sizes with 1 and 2 threads.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "optimizers.h"
#include "test_util.h"

namespace fz::testing {
namespace {

using Vec = std::vector<float>;

// Every hand-computed case starts from these three weights and applies g1, then
// g2. The third weight has a zero gradient, so only weight decay moves it.
const Vec kP0 = {1.0f, -0.5f, 2.0f};
const Vec kG1 = {0.5f, -2.0f, 0.0f};
const Vec kG2 = {0.25f, 1.0f, 0.0f};

// Float steps of the size used here are exact to a few ulps.
void expect_values(const Vec& actual, const Vec& expected) {
    expect_close(actual, expected, 1e-6f, 1e-7f);
}

// lr = 0.1: p ← p − lr·g = [1 − 0.05, −0.5 + 0.2, 2].
TEST(Sgd, PlainStep) {
    Vec p = kP0;
    sgd_update(p.data(), kG1.data(), nullptr, 3, 0.1f, 0.0f, false, 0.0f);
    expect_values(p, {0.95f, -0.3f, 2.0f});
}

// m1 = −lr·g1 = [−0.05, 0.2, 0];               p1 = p0 + m1 = [0.95, −0.3, 2]
// m2 = 0.9·m1 − lr·g2 = [−0.07, 0.08, 0];      p2 = p1 + m2 = [0.88, −0.22, 2]
TEST(Sgd, MomentumTwoSteps) {
    Vec p = kP0, m(3, 0.0f);
    sgd_update(p.data(), kG1.data(), m.data(), 3, 0.1f, 0.9f, false, 0.0f);
    expect_values(m, {-0.05f, 0.2f, 0.0f});
    expect_values(p, {0.95f, -0.3f, 2.0f});
    sgd_update(p.data(), kG2.data(), m.data(), 3, 0.1f, 0.9f, false, 0.0f);
    expect_values(m, {-0.07f, 0.08f, 0.0f});
    expect_values(p, {0.88f, -0.22f, 2.0f});
}

// Same m as above, but p ← p + 0.9·m − lr·g:
// p1 = [1 − 0.045 − 0.05, −0.5 + 0.18 + 0.2, 2]       = [0.905, −0.12, 2]
// p2 = [0.905 − 0.063 − 0.025, −0.12 + 0.072 − 0.1, 2] = [0.817, −0.148, 2]
TEST(Sgd, NesterovTwoSteps) {
    Vec p = kP0, m(3, 0.0f);
    sgd_update(p.data(), kG1.data(), m.data(), 3, 0.1f, 0.9f, true, 0.0f);
    expect_values(m, {-0.05f, 0.2f, 0.0f});
    expect_values(p, {0.905f, -0.12f, 2.0f});
    sgd_update(p.data(), kG2.data(), m.data(), 3, 0.1f, 0.9f, true, 0.0f);
    expect_values(m, {-0.07f, 0.08f, 0.0f});
    expect_values(p, {0.817f, -0.148f, 2.0f});
}

// wd = 0.5, lr = 0.1: p shrinks by lr·wd = 5% before the step.
// plain:    [0.95 − 0.05, −0.475 + 0.2, 1.9]                 = [0.9, −0.275, 1.9]
// momentum: p1 as plain; p2 = 0.95·p1 + m2 = [0.855 − 0.07, −0.26125 + 0.08, 1.805]
TEST(Sgd, WeightDecayComesFirst) {
    Vec p = kP0;
    sgd_update(p.data(), kG1.data(), nullptr, 3, 0.1f, 0.0f, false, 0.5f);
    expect_values(p, {0.9f, -0.275f, 1.9f});

    Vec m(3, 0.0f);
    p = kP0;
    sgd_update(p.data(), kG1.data(), m.data(), 3, 0.1f, 0.9f, false, 0.5f);
    expect_values(p, {0.9f, -0.275f, 1.9f});
    sgd_update(p.data(), kG2.data(), m.data(), 3, 0.1f, 0.9f, false, 0.5f);
    expect_values(m, {-0.07f, 0.08f, 0.0f});
    expect_values(p, {0.785f, -0.18125f, 1.805f});
}

// lr = 0.1, β1 = 0.9, β2 = 0.999, ε = 1e-7.
// t = 1: m = 0.1·g1 = [0.05, −0.2, 0], v = 0.001·g1² = [0.00025, 0.004, 0],
//        α̂ = 0.1·√0.001 / 0.1 = 0.0316227766,
//        p = 1 − α̂·0.05 / (√0.00025 + ε) = 1 − 0.0316227766·0.05 / 0.0158114883 = 0.9000006325
//            −0.5 + α̂·0.2 / (√0.004 + ε) = −0.4000001581;  2 − α̂·0 / ε = 2.
// t = 2: m = 0.9·m + 0.1·g2 = [0.07, −0.08, 0], v = 0.999·v + 0.001·g2² = [0.00031225, 0.004996, 0],
//        α̂ = 0.1·√(1 − 0.999²) / (1 − 0.9²) = 0.0235316725,
//        p = 0.9000006325 − α̂·0.07 / (√0.00031225 + ε) = 0.8067831961
//            −0.4000001581 + α̂·0.08 / (√0.004996 + ε) = −0.3733664918.
TEST(Adam, TwoSteps) {
    Vec p = kP0, m(3, 0.0f), v(3, 0.0f);
    adam_update(p.data(), kG1.data(), m.data(), v.data(), 3, 0.1f, 0.9f, 0.999f, 1e-7f, 1, 0.0f);
    expect_values(m, {0.05f, -0.2f, 0.0f});
    // 1 − β2 is 0.00099998713 with β2 = 0.999f rounded to float, 1.3e-5 off 0.001.
    expect_close(v, {0.00025f, 0.004f, 0.0f}, 2e-5f, 0.0f);
    expect_values(p, {0.9000006325f, -0.4000001581f, 2.0f});
    adam_update(p.data(), kG2.data(), m.data(), v.data(), 3, 0.1f, 0.9f, 0.999f, 1e-7f, 2, 0.0f);
    expect_values(m, {0.07f, -0.08f, 0.0f});
    expect_close(v, {0.00031225f, 0.004996f, 0.0f}, 2e-5f, 0.0f);
    expect_values(p, {0.8067831961f, -0.3733664918f, 2.0f});
}

// ε = 0.1 is added to √v, not under the root: 1 − α̂·0.05 / (0.0158113883 + 0.1) = 0.9863472941
// (√(v + ε) would give 0.9950...), and −0.5 + α̂·0.2 / (0.0632455532 + 0.1) = −0.4612574113.
TEST(Adam, EpsilonIsAddedToTheRoot) {
    Vec p = kP0, m(3, 0.0f), v(3, 0.0f);
    adam_update(p.data(), kG1.data(), m.data(), v.data(), 3, 0.1f, 0.9f, 0.999f, 0.1f, 1, 0.0f);
    expect_values(p, {0.9863472941f, -0.4612574113f, 2.0f});
}

// AdamW, wd = 0.1: p shrinks by lr·wd = 1% first, then the t = 1 step above:
// [0.99 − 0.0999993675, −0.495 + 0.0999998419, 1.98].
TEST(Adam, DecoupledWeightDecay) {
    Vec p = kP0, m(3, 0.0f), v(3, 0.0f);
    adam_update(p.data(), kG1.data(), m.data(), v.data(), 3, 0.1f, 0.9f, 0.999f, 1e-7f, 1, 0.1f);
    expect_values(p, {0.8900006325f, -0.3950001581f, 1.98f});
}

// decays = {1, 0}: the first array takes the AdamW step above, the second the
// plain Adam step (kP0 − the t = 1 step: [0.9000006325, −0.4000001581, 2]).
TEST(Adam, DecaysMaskExemptsAnArray) {
    Vec p0 = kP0, p1 = kP0, m0(3, 0.0f), v0(3, 0.0f), m1(3, 0.0f), v1(3, 0.0f);
    float* p[] = {p0.data(), p1.data()};
    const float* g[] = {kG1.data(), kG1.data()};
    float* m[] = {m0.data(), m1.data()};
    float* v[] = {v0.data(), v1.data()};
    const int64_t n[] = {3, 3};
    const uint8_t decays[] = {1, 0};
    ParamList list{2, p, g, m, v, n};
    list.decays = decays;
    adam_update_many(list, 0.1f, 0.9f, 0.999f, 1e-7f, 1, 0.1f);
    expect_values(p0, {0.8900006325f, -0.3950001581f, 1.98f});
    expect_values(p1, {0.9000006325f, -0.4000001581f, 2.0f});
}

// lr = 0.01, ρ = 0.9, ε = 1e-7.
// step 1: v = 0.1·g1² = [0.025, 0.4, 0]; Δ = 0.01·g1 / √(v + ε) = [0.0316227134, −0.0316227726, 0]
//         p = [0.9683772866, −0.4683772274, 2]
// step 2: v = 0.9·v + 0.1·g2² = [0.02875, 0.46, 0]; Δ = [0.0147441700, 0.0147441939, 0]
//         p = [0.9536331167, −0.4831214214, 2]
TEST(RMSprop, TwoSteps) {
    Vec p = kP0, v(3, 0.0f);
    rmsprop_update(p.data(), kG1.data(), v.data(), nullptr, 3, 0.01f, 0.9f, 0.0f, 1e-7f, 0.0f);
    expect_values(v, {0.025f, 0.4f, 0.0f});
    expect_values(p, {0.9683772866f, -0.4683772274f, 2.0f});
    rmsprop_update(p.data(), kG2.data(), v.data(), nullptr, 3, 0.01f, 0.9f, 0.0f, 1e-7f, 0.0f);
    expect_values(v, {0.02875f, 0.46f, 0.0f});
    expect_values(p, {0.9536331167f, -0.4831214214f, 2.0f});
}

// momentum = 0.9: mom1 = Δ1, p1 as above; mom2 = 0.9·mom1 + Δ2 = [0.0432046120, −0.0137163014, 0]
// p2 = p1 − mom2 = [0.9251726746, −0.4546609260, 2].
TEST(RMSprop, MomentumTwoSteps) {
    Vec p = kP0, v(3, 0.0f), mom(3, 0.0f);
    rmsprop_update(p.data(), kG1.data(), v.data(), mom.data(), 3, 0.01f, 0.9f, 0.9f, 1e-7f, 0.0f);
    expect_values(mom, {0.0316227134f, -0.0316227726f, 0.0f});
    expect_values(p, {0.9683772866f, -0.4683772274f, 2.0f});
    rmsprop_update(p.data(), kG2.data(), v.data(), mom.data(), 3, 0.01f, 0.9f, 0.9f, 1e-7f, 0.0f);
    expect_values(mom, {0.0432046120f, -0.0137163014f, 0.0f});
    expect_values(p, {0.9251726746f, -0.4546609260f, 2.0f});
}

// ε = 0.01 goes under the root: 1 − 0.005 / √0.035 = 0.9732738758
// (√v + ε would give 0.9702...), −0.5 + 0.02 / √0.41 = −0.4687652476.
TEST(RMSprop, EpsilonIsUnderTheRoot) {
    Vec p = kP0, v(3, 0.0f);
    rmsprop_update(p.data(), kG1.data(), v.data(), nullptr, 3, 0.01f, 0.9f, 0.0f, 0.01f, 0.0f);
    expect_values(p, {0.9732738758f, -0.4687652476f, 2.0f});
}

// wd = 0.5, lr = 0.01: p shrinks by 0.5% first: [0.995 − 0.0316227134, −0.4975 + 0.0316227726, 1.99].
TEST(RMSprop, WeightDecayComesFirst) {
    Vec p = kP0, v(3, 0.0f);
    rmsprop_update(p.data(), kG1.data(), v.data(), nullptr, 3, 0.01f, 0.9f, 0.0f, 1e-7f, 0.5f);
    expect_values(p, {0.9633772866f, -0.4658772274f, 1.99f});
}

// The optimizer state: parameters, one or two state arrays (unused ones stay 0).
struct State {
    Vec p, s1, s2;
};

// One configuration, run with the fast kernel or the reference. A null state
// array where the header allows it also checks that it is never touched.
using Step = std::function<void(bool fast, State&, const Vec& g, int64_t t)>;

const std::vector<std::pair<std::string, Step>>& all_variants() {
    static const std::vector<std::pair<std::string, Step>> variants = {
        {"sgd",
         [](bool fast, State& s, const Vec& g, int64_t) {
             (fast ? sgd_update : reference::sgd_update)(s.p.data(), g.data(), nullptr,
                                                         static_cast<int64_t>(g.size()), 0.05f,
                                                         0.0f, false, 0.0f);
         }},
        {"sgd weight_decay",
         [](bool fast, State& s, const Vec& g, int64_t) {
             (fast ? sgd_update : reference::sgd_update)(s.p.data(), g.data(), nullptr,
                                                         static_cast<int64_t>(g.size()), 0.05f,
                                                         0.0f, false, 0.01f);
         }},
        {"sgd momentum",
         [](bool fast, State& s, const Vec& g, int64_t) {
             (fast ? sgd_update : reference::sgd_update)(s.p.data(), g.data(), s.s1.data(),
                                                         static_cast<int64_t>(g.size()), 0.05f,
                                                         0.9f, false, 0.0f);
         }},
        {"sgd nesterov weight_decay",
         [](bool fast, State& s, const Vec& g, int64_t) {
             (fast ? sgd_update : reference::sgd_update)(s.p.data(), g.data(), s.s1.data(),
                                                         static_cast<int64_t>(g.size()), 0.05f,
                                                         0.9f, true, 0.01f);
         }},
        {"adam",
         [](bool fast, State& s, const Vec& g, int64_t t) {
             (fast ? adam_update : reference::adam_update)(
                 s.p.data(), g.data(), s.s1.data(), s.s2.data(), static_cast<int64_t>(g.size()),
                 0.001f, 0.9f, 0.999f, 1e-7f, t, 0.0f);
         }},
        // β2 this close to 1 makes 1 − β2^t tiny: α̂ must be formed in double.
        {"adam beta2=0.99999",
         [](bool fast, State& s, const Vec& g, int64_t t) {
             (fast ? adam_update : reference::adam_update)(
                 s.p.data(), g.data(), s.s1.data(), s.s2.data(), static_cast<int64_t>(g.size()),
                 0.1f, 0.9f, 0.99999f, 1e-7f, t, 0.0f);
         }},
        {"adamw",
         [](bool fast, State& s, const Vec& g, int64_t t) {
             (fast ? adam_update : reference::adam_update)(
                 s.p.data(), g.data(), s.s1.data(), s.s2.data(), static_cast<int64_t>(g.size()),
                 0.001f, 0.9f, 0.999f, 1e-7f, t, 0.004f);
         }},
        {"rmsprop",
         [](bool fast, State& s, const Vec& g, int64_t) {
             (fast ? rmsprop_update : reference::rmsprop_update)(
                 s.p.data(), g.data(), s.s1.data(), nullptr, static_cast<int64_t>(g.size()), 0.001f,
                 0.9f, 0.0f, 1e-7f, 0.0f);
         }},
        {"rmsprop momentum weight_decay",
         [](bool fast, State& s, const Vec& g, int64_t) {
             (fast ? rmsprop_update : reference::rmsprop_update)(
                 s.p.data(), g.data(), s.s1.data(), s.s2.data(), static_cast<int64_t>(g.size()),
                 0.001f, 0.9f, 0.9f, 1e-7f, 0.004f);
         }},
    };
    return variants;
}

// Three steps from random weights, with a fresh random gradient at each step.
TEST(Optimizers, MatchReferenceOnAwkwardAndLargeSizes) {
    std::vector<int64_t> sizes = kAwkwardSizes;
    sizes.push_back(100003);  // prime, and several chunks of the parallel grain
    for (const auto& [name, step] : all_variants()) {
        for (const int64_t n : sizes) {
            const State start{random_vector(n, 1), Vec(n, 0.0f), Vec(n, 0.0f)};
            State want = start;
            for (int64_t t = 1; t <= 3; ++t) step(false, want, random_vector(n, 10 + t), t);
            for (const int threads : kThreadCounts) {
                SCOPED_TRACE(name + " n=" + std::to_string(n) + " threads " +
                             std::to_string(threads));
                ThreadCountGuard guard(threads);
                State got = start;
                for (int64_t t = 1; t <= 3; ++t) step(true, got, random_vector(n, 10 + t), t);
                expect_close(got.p, want.p, 1e-5f, 1e-7f);
                expect_close(got.s1, want.s1, 1e-5f, 1e-7f);
                expect_close(got.s2, want.s2, 1e-5f, 1e-7f);
            }
        }
    }
}

// One pass over a list of arrays (one parallel region; each chunk updates a
// part of every array) gives exactly what updating each array on its own gives.
TEST(Optimizers, ListUpdateEqualsOneArrayAtATime) {
    const std::vector<int64_t> sizes = {1, 17, 40000, 3};
    // Each variant: the list call, and the single-array call for array t.
    using ListCall = std::function<void(const ParamList&)>;
    using OneCall = std::function<void(float*, const float*, float*, float*, int64_t)>;
    const std::vector<std::pair<std::string, std::pair<ListCall, OneCall>>> variants = {
            {"sgd nesterov",
             {[](const ParamList& l) { sgd_update_many(l, 0.1f, 0.9f, true, 0.01f); },
              [](float* p, const float* g, float* a, float*, int64_t n) {
                  sgd_update(p, g, a, n, 0.1f, 0.9f, true, 0.01f);
              }}},
            {"adam",
             {[](const ParamList& l) {
                  adam_update_many(l, 0.01f, 0.9f, 0.999f, 1e-7f, 3, 0.004f);
              },
              [](float* p, const float* g, float* a, float* b, int64_t n) {
                  adam_update(p, g, a, b, n, 0.01f, 0.9f, 0.999f, 1e-7f, 3, 0.004f);
              }}},
            {"rmsprop momentum",
             {[](const ParamList& l) { rmsprop_update_many(l, 0.01f, 0.9f, 0.5f, 1e-7f, 0.0f); },
              [](float* p, const float* g, float* a, float* b, int64_t n) {
                  rmsprop_update(p, g, a, b, n, 0.01f, 0.9f, 0.5f, 1e-7f, 0.0f);
              }}},
        };
    for (const auto& [name, calls] : variants) {
        for (const int threads : kThreadCounts) {
            SCOPED_TRACE(name + " threads " + std::to_string(threads));
            ThreadCountGuard guard(threads);
            std::vector<Vec> p, g, a, b, p1, a1, b1;
            for (size_t t = 0; t < sizes.size(); ++t) {
                p.push_back(random_vector(sizes[t], 1 + t));
                g.push_back(random_vector(sizes[t], 20 + t));
                a.push_back(random_vector(sizes[t], 40 + t, 0.0f, 1.0f));
                b.push_back(random_vector(sizes[t], 60 + t, 0.0f, 1.0f));
            }
            p1 = p, a1 = a, b1 = b;
            std::vector<float*> pp, ap, bp;
            std::vector<const float*> gp;
            for (size_t t = 0; t < sizes.size(); ++t) {
                pp.push_back(p[t].data());
                gp.push_back(g[t].data());
                ap.push_back(a[t].data());
                bp.push_back(b[t].data());
                calls.second(p1[t].data(), g[t].data(), a1[t].data(), b1[t].data(), sizes[t]);
            }
            calls.first(ParamList{static_cast<int64_t>(sizes.size()), pp.data(), gp.data(),
                                  ap.data(), bp.data(), sizes.data()});
            for (size_t t = 0; t < sizes.size(); ++t) {
                EXPECT_EQ(p[t], p1[t]) << "array " << t;
                EXPECT_EQ(a[t], a1[t]) << "array " << t;
                EXPECT_EQ(b[t], b1[t]) << "array " << t;
            }
        }
    }
}

// ---------------------------------------------------------------- gradient clipping

// A ParamList over gradient arrays only (what the norm kernels read).
struct GradList {
    std::vector<Vec> g;
    std::vector<const float*> gp;
    std::vector<int64_t> n;
    explicit GradList(std::vector<Vec> arrays) : g(std::move(arrays)) {
        for (const Vec& a : g) {
            gp.push_back(a.data());
            n.push_back(static_cast<int64_t>(a.size()));
        }
    }
    ParamList list() const {
        return {static_cast<int64_t>(g.size()), nullptr, gp.data(), nullptr, nullptr, n.data()};
    }
};

// ‖[3, 4]‖² = 25, ‖[1, 2, 2]‖² = 9, an empty array 0, ‖[0.5]‖² = 0.25.
TEST(GradSumOfSquares, ByHand) {
    const GradList grads({{3.0f, 4.0f}, {1.0f, 2.0f, 2.0f}, {}, {0.5f}});
    std::vector<double> got(4, -1.0);
    grad_sum_of_squares(grads.list(), got.data());
    EXPECT_EQ(got, (std::vector<double>{25.0, 9.0, 0.0, 0.25}));
}

// Sizes around the 4096-value block and the 8 lanes, several arrays in one
// list (empty ones among them): close to the plain double loop, and the same
// bits with 1 and 2 threads — the fixed-order reduction.
TEST(GradSumOfSquares, MatchesReferenceAndIgnoresThreadCount) {
    std::vector<Vec> arrays;
    std::vector<int64_t> sizes = kAwkwardSizes;
    for (const int64_t n : {0, 4095, 4096, 4097, 8, 9, 100003, 0, 70000}) sizes.push_back(n);
    for (size_t t = 0; t < sizes.size(); ++t) arrays.push_back(random_vector(sizes[t], 300 + t, -3.0f, 3.0f));
    const GradList grads(arrays);
    std::vector<double> want(sizes.size());
    reference::grad_sum_of_squares(grads.list(), want.data());
    std::vector<std::vector<double>> got;
    for (const int threads : kThreadCounts) {
        ThreadCountGuard guard(threads);
        got.emplace_back(sizes.size());
        grad_sum_of_squares(grads.list(), got.back().data());
    }
    for (size_t t = 0; t < sizes.size(); ++t) {
        EXPECT_NEAR(got[0][t], want[t], 1e-12 * want[t]) << "array " << t << " of size " << sizes[t];
        EXPECT_EQ(got[0][t], got[1][t]) << "array " << t << ": 1 and 2 threads differ";
    }
}

// [3, 4] has norm 5, [0.3, 0.4] norm 0.5, [0, 0] norm 0.
// clipnorm 1: scales 1/5, 1 (already short enough), 1.
// global_clipnorm 1: ‖g‖ = √(25 + 0.25) = 5.0249378106, every scale 0.1990074332.
TEST(ClipScales, ByHand) {
    const GradList grads({{3.0f, 4.0f}, {0.3f, 0.4f}, {0.0f, 0.0f}});
    std::vector<float> scale(3);
    clip_scales(grads.list(), 1.0f, 0.0f, scale.data());
    expect_close(scale, {0.2f, 1.0f, 1.0f}, 1e-6f, 0.0f);
    clip_scales(grads.list(), 0.0f, 1.0f, scale.data());
    expect_close(scale, {0.1990074332f, 0.1990074332f, 0.1990074332f}, 1e-6f, 0.0f);
    // a global norm under the limit leaves the gradients alone; so do zero gradients
    clip_scales(grads.list(), 0.0f, 10.0f, scale.data());
    EXPECT_EQ(scale, (std::vector<float>{1.0f, 1.0f, 1.0f}));
    const GradList zeros({{0.0f}, {0.0f, 0.0f}});
    clip_scales(zeros.list(), 0.0f, 1.0f, scale.data());
    EXPECT_EQ(scale[0], 1.0f);
    EXPECT_EQ(scale[1], 1.0f);
}

// As Keras: a NaN anywhere makes the global scale NaN (so is an infinite
// global norm); per array, only that array's scale is NaN, and an infinite
// norm gives 0 (its finite values clip to 0).
TEST(ClipScales, NonFiniteGradients) {
    const float nan = std::numeric_limits<float>::quiet_NaN();
    const float inf = std::numeric_limits<float>::infinity();
    const GradList grads({{nan, 1.0f}, {3.0f, 4.0f}, {inf}});
    std::vector<float> scale(3);
    clip_scales(grads.list(), 1.0f, 0.0f, scale.data());
    EXPECT_TRUE(std::isnan(scale[0]));
    EXPECT_FLOAT_EQ(scale[1], 0.2f);
    EXPECT_EQ(scale[2], 0.0f);
    clip_scales(grads.list(), 0.0f, 1.0f, scale.data());
    for (const float s : scale) EXPECT_TRUE(std::isnan(s));
    const GradList infinite({{1.0f}, {inf}});
    clip_scales(infinite.list(), 0.0f, 1.0f, scale.data());
    EXPECT_TRUE(std::isnan(scale[0]));
}

// SGD, lr = 0.1, on kG1 = [0.5, −2, 0]:
// clipvalue 0.5: g = [0.5, −0.5, 0], p = [0.95, −0.45, 2].
// clipnorm 1: ‖g‖ = √4.25 = 2.0615528128, scale 0.4850712501, g = [0.2425356250, −0.9701425001, 0],
//             p = [0.9757464375, −0.4029857500, 2].
TEST(Clipping, SgdByHand) {
    Vec p = kP0;
    const float* g = kG1.data();
    float* pp = p.data();
    const int64_t n = 3;
    ParamList list{1, &pp, &g, nullptr, nullptr, &n};
    list.grad_clip = 0.5f;
    sgd_update_many(list, 0.1f, 0.0f, false, 0.0f);
    expect_values(p, {0.95f, -0.45f, 2.0f});

    p = kP0;
    float scale;
    list.grad_clip = std::numeric_limits<float>::infinity();
    clip_scales(list, 1.0f, 0.0f, &scale);
    EXPECT_NEAR(scale, 0.4850712501f, 1e-7f);
    list.grad_scale = &scale;
    sgd_update_many(list, 0.1f, 0.0f, false, 0.0f);
    expect_values(p, {0.9757464375f, -0.4029857500f, 2.0f});
}

// Clipping inside the update pass changes nothing but the gradient: for every
// optimizer, thread count and a list of awkward sizes, the clipped update is
// bit for bit the unclipped update of gradients clipped beforehand.
TEST(Clipping, InsideTheUpdateEqualsClippingFirst) {
    const std::vector<int64_t> sizes = {1, 17, 40000, 3, 4097};
    const std::vector<std::pair<std::string, std::function<void(const ParamList&)>>> updates = {
        {"sgd nesterov", [](const ParamList& l) { sgd_update_many(l, 0.1f, 0.9f, true, 0.01f); }},
        {"adam", [](const ParamList& l) { adam_update_many(l, 0.01f, 0.9f, 0.999f, 1e-7f, 3, 0.004f); }},
        {"rmsprop momentum",
         [](const ParamList& l) { rmsprop_update_many(l, 0.01f, 0.9f, 0.5f, 1e-7f, 0.0f); }},
    };
    for (const auto& [name, update] : updates) {
        for (const int threads : kThreadCounts) {
            for (const float clipvalue : {std::numeric_limits<float>::infinity(), 0.3f}) {
                SCOPED_TRACE(name + " threads " + std::to_string(threads) + " clipvalue " +
                             std::to_string(clipvalue));
                ThreadCountGuard guard(threads);
                std::vector<Vec> p, g, a, b;
                for (size_t t = 0; t < sizes.size(); ++t) {
                    p.push_back(random_vector(sizes[t], 1 + t));
                    g.push_back(random_vector(sizes[t], 20 + t, -2.0f, 2.0f));
                    a.push_back(random_vector(sizes[t], 40 + t, 0.0f, 1.0f));
                    b.push_back(random_vector(sizes[t], 60 + t, 0.0f, 1.0f));
                }
                std::vector<Vec> p1 = p, a1 = a, b1 = b, g1 = g;
                std::vector<float> scale(sizes.size());
                for (size_t t = 0; t < sizes.size(); ++t) scale[t] = 0.25f + 0.5f * t;
                for (size_t t = 0; t < sizes.size(); ++t)
                    for (float& x : g1[t]) x = std::min(std::max(x * scale[t], -clipvalue), clipvalue);
                auto pointers = [&](std::vector<Vec>& pv, std::vector<Vec>& gv, std::vector<Vec>& av,
                                    std::vector<Vec>& bv, std::vector<float*>& pp,
                                    std::vector<const float*>& gp, std::vector<float*>& ap,
                                    std::vector<float*>& bp) {
                    for (size_t t = 0; t < sizes.size(); ++t) {
                        pp.push_back(pv[t].data());
                        gp.push_back(gv[t].data());
                        ap.push_back(av[t].data());
                        bp.push_back(bv[t].data());
                    }
                };
                std::vector<float*> pp, ap, bp, pp1, ap1, bp1;
                std::vector<const float*> gp, gp1;
                pointers(p, g, a, b, pp, gp, ap, bp);
                pointers(p1, g1, a1, b1, pp1, gp1, ap1, bp1);
                ParamList clipped{static_cast<int64_t>(sizes.size()), pp.data(), gp.data(), ap.data(),
                                  bp.data(), sizes.data()};
                clipped.grad_scale = scale.data();
                clipped.grad_clip = clipvalue;
                update(clipped);
                update(ParamList{static_cast<int64_t>(sizes.size()), pp1.data(), gp1.data(),
                                 ap1.data(), bp1.data(), sizes.data()});
                for (size_t t = 0; t < sizes.size(); ++t) {
                    EXPECT_EQ(p[t], p1[t]) << "array " << t;
                    EXPECT_EQ(a[t], a1[t]) << "array " << t;
                    EXPECT_EQ(b[t], b1[t]) << "array " << t;
                }
            }
        }
    }
}

}  // namespace
}  // namespace fz::testing
