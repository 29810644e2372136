// optimizers.cpp — in-place parameter updates; formulas in optimizers.h.
//
// Each update is one pass over n floats, split into contiguous chunks across
// threads. The loop bodies only touch element i and every scalar factor is
// computed once beforehand, so GCC -O3 vectorises them (sqrt included, given
// -fno-math-errno), once per instruction set (simd.h). The operations are in
// the order Keras 3 writes them.
#include "optimizers.h"

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

// The driver of every optimizer: calls f(i, p_i) for i in [0, n), in chunks
// across threads, where p_i is p[i] after Keras's decoupled weight decay
// p ← p − lr·wd·p, applied first and only when wd > 0. f writes p[i].
template <class F>
void for_each_param(float* p, int64_t n, float lr, float weight_decay, F f) {
    const bool decay = weight_decay > 0.0f;
    const float lr_wd = lr * weight_decay;
    parallel_for(0, n, kGrain,
                 [=](int64_t lo, int64_t hi) { update_chunk(p, lo, hi, decay, lr_wd, f); });
}

}  // namespace

void sgd_update(float* p, const float* g, float* m, int64_t n, float lr, float momentum,
                bool nesterov, float weight_decay) {
    if (momentum == 0.0f) {
        for_each_param(p, n, lr, weight_decay, [=](int64_t i, float pi) { p[i] = pi - g[i] * lr; });
    } else if (nesterov) {
        for_each_param(p, n, lr, weight_decay, [=](int64_t i, float pi) {
            const float gi = g[i];
            const float mi = m[i] * momentum - gi * lr;
            m[i] = mi;
            p[i] = pi + (mi * momentum - gi * lr);
        });
    } else {
        for_each_param(p, n, lr, weight_decay, [=](int64_t i, float pi) {
            const float mi = m[i] * momentum - g[i] * lr;
            m[i] = mi;
            p[i] = pi + mi;
        });
    }
}

void adam_update(float* p, const float* g, float* m, float* v, int64_t n, float lr, float beta1,
                 float beta2, float epsilon, int64_t t, float weight_decay) {
    // Both bias corrections fold into the step size. In double: early on 1 − β2^t
    // is tiny and float's rounding of β2^t would be a large relative error.
    const double t_d = static_cast<double>(t);
    const float alpha = static_cast<float>(lr * std::sqrt(1.0 - std::pow(double{beta2}, t_d)) /
                                           (1.0 - std::pow(double{beta1}, t_d)));
    const float c1 = 1.0f - beta1, c2 = 1.0f - beta2;
    for_each_param(p, n, lr, weight_decay, [=](int64_t i, float pi) {
        const float gi = g[i];
        const float mi = m[i] + (gi - m[i]) * c1;
        const float vi = v[i] + (gi * gi - v[i]) * c2;
        m[i] = mi;
        v[i] = vi;
        p[i] = pi - mi * alpha / (std::sqrt(vi) + epsilon);
    });
}

void rmsprop_update(float* p, const float* g, float* v, float* mom, int64_t n, float lr, float rho,
                    float momentum, float epsilon, float weight_decay) {
    const float c = 1.0f - rho;
    // Updates v[i] and returns the step Δ_i.
    const auto step = [=](int64_t i) {
        const float gi = g[i];
        const float vi = rho * v[i] + c * (gi * gi);
        v[i] = vi;
        return lr * gi / std::sqrt(vi + epsilon);
    };
    if (momentum > 0.0f) {
        for_each_param(p, n, lr, weight_decay, [=](int64_t i, float pi) {
            const float mi = momentum * mom[i] + step(i);
            mom[i] = mi;
            p[i] = pi - mi;
        });
    } else {
        for_each_param(p, n, lr, weight_decay, [=](int64_t i, float pi) { p[i] = pi - step(i); });
    }
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
