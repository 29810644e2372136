// optimizers.cpp — in-place parameter updates; formulas in optimizers.h.
//
// Each update is one pass over n floats, split into contiguous chunks across
// threads. The loop bodies only touch element i and every scalar factor is
// computed once beforehand, so GCC -O3 vectorises them (sqrt included, given
// -fno-math-errno), once per instruction set (simd.h). The operations are in
// the order Keras 3 writes them.
#include "optimizers.h"

#include <algorithm>
#include <cmath>

#include "parallel.h"
#include "simd.h"

namespace fz {
namespace {

// Updates are memory-bound and cheap per element: a thread pays off only past ~16K.
constexpr int64_t kGrain = 1 << 14;

// One chunk's loop: f(i, p_i) with p_i the weight after decay. Everything
// arrives by value, so GCC sees that no scalar (lr, β, ...) aliases the arrays
// and vectorises f's body. Read through the closure the threads share, those
// floats could alias p[i] and most of these loops stay scalar.
template <class F>
FZ_SIMD_CLONES void update_chunk(float* p, int64_t lo, int64_t hi, bool decay, float lr_wd, F f) {
    if (decay) {
        for (int64_t i = lo; i < hi; ++i) f(i, p[i] - lr_wd * p[i]);
    } else {
        for (int64_t i = lo; i < hi; ++i) f(i, p[i]);
    }
}

// The driver of every optimizer. The arrays of the list are laid end to end
// as one range of Σ n[t] indices, which parallel_for splits into chunks; in
// the part of a chunk that falls in array t, it calls f(i, p_i) with
// f = make_f(t) (the update bound to array t's gradient and state) and p_i
// the weight after Keras's decoupled weight decay p ← p − lr·wd·p, applied
// first and only when wd > 0. f writes p[i]. Each value is updated by one
// thread with the same arithmetic, so the split does not change the result.
template <class MakeF>
void for_each_param(const ParamList& list, float lr, float weight_decay, MakeF make_f) {
    const bool decay = weight_decay > 0.0f;
    const float lr_wd = lr * weight_decay;
    int64_t total = 0;
    for (int64_t t = 0; t < list.count; ++t) total += list.n[t];
    parallel_for(0, total, kGrain, [=](int64_t lo, int64_t hi) {
        int64_t start = 0;  // where array t begins in the concatenated range
        for (int64_t t = 0; t < list.count && start < hi; start += list.n[t], ++t) {
            const int64_t a = std::max(lo, start), b = std::min(hi, start + list.n[t]);
            if (a < b) update_chunk(list.p[t], a - start, b - start, decay, lr_wd, make_f(t));
        }
    });
}

// A list holding one array, for the single-array entry points.
struct OneParam {
    float* p;
    const float* g;
    float* s0;
    float* s1;
    int64_t n;
    ParamList list() const { return {1, &p, &g, &s0, &s1, &n}; }
};

}  // namespace

void sgd_update_many(const ParamList& list, float lr, float momentum, bool nesterov,
                     float weight_decay) {
    for_each_param(list, lr, weight_decay, [=](int64_t t) {
        float* const p = list.p[t];
        const float* const g = list.g[t];
        float* const m = momentum != 0.0f ? list.s0[t] : nullptr;
        return [=](int64_t i, float pi) {
            if (momentum == 0.0f) {
                p[i] = pi - g[i] * lr;
                return;
            }
            const float gi = g[i];
            const float mi = m[i] * momentum - gi * lr;
            m[i] = mi;
            p[i] = nesterov ? pi + (mi * momentum - gi * lr) : pi + mi;
        };
    });
}

void adam_update_many(const ParamList& list, float lr, float beta1, float beta2,
                      float epsilon, int64_t t, float weight_decay) {
    // Both bias corrections fold into the step size. In double: early on 1 − β2^t
    // is tiny and float's rounding of β2^t would be a large relative error.
    const double t_d = static_cast<double>(t);
    const float alpha = static_cast<float>(lr * std::sqrt(1.0 - std::pow(double{beta2}, t_d)) /
                                           (1.0 - std::pow(double{beta1}, t_d)));
    const float c1 = 1.0f - beta1, c2 = 1.0f - beta2;
    for_each_param(list, lr, weight_decay, [=](int64_t k) {
        float* const p = list.p[k];
        const float* const g = list.g[k];
        float* const m = list.s0[k];
        float* const v = list.s1[k];
        return [=](int64_t i, float pi) {
            const float gi = g[i];
            const float mi = m[i] + (gi - m[i]) * c1;
            const float vi = v[i] + (gi * gi - v[i]) * c2;
            m[i] = mi;
            v[i] = vi;
            p[i] = pi - mi * alpha / (std::sqrt(vi) + epsilon);
        };
    });
}

void rmsprop_update_many(const ParamList& list, float lr, float rho, float momentum,
                         float epsilon, float weight_decay) {
    const float c = 1.0f - rho;
    for_each_param(list, lr, weight_decay, [=](int64_t t) {
        float* const p = list.p[t];
        const float* const g = list.g[t];
        float* const v = list.s0[t];
        float* const mom = momentum > 0.0f ? list.s1[t] : nullptr;
        return [=](int64_t i, float pi) {
            const float gi = g[i];
            const float vi = rho * v[i] + c * (gi * gi);
            v[i] = vi;
            const float step = lr * gi / std::sqrt(vi + epsilon);  // Δ_i
            if (momentum > 0.0f) {
                const float mi = momentum * mom[i] + step;
                mom[i] = mi;
                p[i] = pi - mi;
            } else {
                p[i] = pi - step;
            }
        };
    });
}

void sgd_update(float* p, const float* g, float* m, int64_t n, float lr, float momentum,
                bool nesterov, float weight_decay) {
    sgd_update_many(OneParam{p, g, m, nullptr, n}.list(), lr, momentum, nesterov, weight_decay);
}

void adam_update(float* p, const float* g, float* m, float* v, int64_t n, float lr, float beta1,
                 float beta2, float epsilon, int64_t t, float weight_decay) {
    adam_update_many(OneParam{p, g, m, v, n}.list(), lr, beta1, beta2, epsilon, t, weight_decay);
}

void rmsprop_update(float* p, const float* g, float* v, float* mom, int64_t n, float lr, float rho,
                    float momentum, float epsilon, float weight_decay) {
    rmsprop_update_many(OneParam{p, g, v, mom, n}.list(), lr, rho, momentum, epsilon, weight_decay);
}

// Reference implementations: the plain loops the fast kernels are tested against.
// Weight decay is its own first pass here, as the formulas read.
namespace reference {

void sgd_update(float* p, const float* g, float* m, int64_t n, float lr, float momentum,
                bool nesterov, float weight_decay) {
    if (weight_decay > 0.0f) {
        for (int64_t i = 0; i < n; ++i) p[i] -= lr * weight_decay * p[i];
    }
    for (int64_t i = 0; i < n; ++i) {
        if (momentum == 0.0f) {
            p[i] -= lr * g[i];
        } else {
            m[i] = momentum * m[i] - lr * g[i];
            p[i] += nesterov ? momentum * m[i] - lr * g[i] : m[i];
        }
    }
}

void adam_update(float* p, const float* g, float* m, float* v, int64_t n, float lr, float beta1,
                 float beta2, float epsilon, int64_t t, float weight_decay) {
    if (weight_decay > 0.0f) {
        for (int64_t i = 0; i < n; ++i) p[i] -= lr * weight_decay * p[i];
    }
    const double alpha_hat = lr * std::sqrt(1.0 - std::pow(beta2, t)) / (1.0 - std::pow(beta1, t));
    for (int64_t i = 0; i < n; ++i) {
        m[i] += (1.0f - beta1) * (g[i] - m[i]);
        v[i] += (1.0f - beta2) * (g[i] * g[i] - v[i]);
        p[i] -= static_cast<float>(alpha_hat * m[i] / (std::sqrt(v[i]) + epsilon));
    }
}

void rmsprop_update(float* p, const float* g, float* v, float* mom, int64_t n, float lr, float rho,
                    float momentum, float epsilon, float weight_decay) {
    if (weight_decay > 0.0f) {
        for (int64_t i = 0; i < n; ++i) p[i] -= lr * weight_decay * p[i];
    }
    for (int64_t i = 0; i < n; ++i) {
        v[i] = rho * v[i] + (1.0f - rho) * g[i] * g[i];
        const float delta = lr * g[i] / std::sqrt(v[i] + epsilon);
        if (momentum > 0.0f) {
            mom[i] = momentum * mom[i] + delta;
            p[i] -= mom[i];
        } else {
            p[i] -= delta;
        }
    }
}

}  // namespace reference
}  // namespace fz
