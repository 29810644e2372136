// losses.cpp — loss values and gradients; shapes and formulas in losses.h.
//
// Every loss is row-parallel: one thread computes a whole row (its loss and its
// gradient row), and the row losses are then added serially in row order, so
// the result does not depend on the thread count. Within a row, exp and log
// come from the vector math (vecmath.h), and sums are accumulated in double
// in vec::sum's fixed order. Terms that need a logarithm or an exponential
// first are computed block by block into small stack buffers that stay in L1.
#include "losses.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "parallel.h"
#include "simd.h"
#include "vecmath.h"

namespace fz {
namespace {

// A thread gets rows holding at least this many elements.
constexpr int64_t kRowGrain = 4096;

// Row blocks for the stack buffers: 3 buffers of 1 KiB.
constexpr int64_t kBlock = 256;

constexpr float kProbMax = 1.0f - kProbEpsilon;

// Keras clips probabilities to [ε, 1 − ε] before log(). Where the clip is active
// the loss no longer depends on p, so its gradient there is 0. NaN counts as not
// clipped, so it propagates into the gradient instead of being hidden.
template <class T>
bool is_clipped(T p) {
    return (p < T(kProbEpsilon)) | (p > T(kProbMax));
}
template <class T>
T clip_prob(T p) {
    const T at_least_epsilon = p < T(kProbEpsilon) ? T(kProbEpsilon) : p;  // NaN stays NaN
    return at_least_epsilon > T(kProbMax) ? T(kProbMax) : at_least_epsilon;
}

// op(j) for j in [0, n): a counted loop GCC vectorises, once per instruction set.
// Only if op has no branch around a load (GCC must not load what the C++
// would skip), so the ops below load first and then choose between values.
template <class Op>
FZ_SIMD_CLONES void for_each_index(int64_t n, Op op) {
    for (int64_t j = 0; j < n; ++j) op(j);
}

// Σ_j term(buffer, j0, n) over a row of `cols` values, block by block: `fill`
// writes the n terms of the block starting at j0 into `buffer` and they are
// added by vec::sum; the block sums are added in order.
template <class Fill>
double sum_by_blocks(int64_t cols, const Fill& fill) {
    float buffer[kBlock];
    double total = 0.0;
    for (int64_t j0 = 0; j0 < cols; j0 += kBlock) {
        const int64_t n = std::min(kBlock, cols - j0);
        fill(buffer, j0, n);
        total += vec::sum(buffer, n);
    }
    return total;
}

// e_j = exp(z_j − max) for one row of logits, and their sum in double, so that
// log Σ_j exp(z_j) = max + log(sum) and softmax_j = e_j / sum. Subtracting the
// max keeps every exp() in (0, 1]: nothing overflows, even for logits of ±1e4.
struct RowExp {
    float max;
    double sum;
    double log_sum_exp() const { return max + std::log(sum); }
};
RowExp row_exp(const float* z, int64_t cols, float* e /* may be null */) {
    const float max = vec::max(z, cols);
    return {max, vec::exp_sum(z, max, e, cols)};
}

// The softmax cross-entropy gradient row, g_j = a·p_j − b·[j == label] or
// g_j = a·p_j − b·t_j, with b = grad_scale and a = grad_scale·Σt. When p holds
// the unnormalised e_j of row_exp, a also carries the 1/sum. p may alias g.
void sparse_ce_grad_row(const float* p, int32_t label, float* g, int64_t cols, float a, float b) {
    for_each_index(cols, [=](int64_t j) { g[j] = a * p[j]; });
    g[label] -= b;
}
void dense_ce_grad_row(const float* p, const float* t, float* g, int64_t cols, float a, float b) {
    for_each_index(cols, [=](int64_t j) { g[j] = a * p[j] - b * t[j]; });
}

// Calls f(i) for every row i, with the rows split into contiguous chunks across threads.
template <class F>
void for_each_row(int64_t rows, int64_t cols, const F& f) {
    const int64_t grain = std::max<int64_t>(1, kRowGrain / std::max<int64_t>(cols, 1));
    parallel_for(0, rows, grain, [&](int64_t lo, int64_t hi) {
        for (int64_t i = lo; i < hi; ++i) f(i);
    });
}

// The driver of every loss: row_loss[i] = f(i, g), where f also fills the
// gradient row g (null when the caller wants the value only). Returns Σ row_loss.
template <class F>
double sum_row_losses(float* row_loss, float* grad, int64_t rows, int64_t cols, const F& f) {
    for_each_row(rows, cols, [&](int64_t i) {
        row_loss[i] = static_cast<float>(f(i, grad ? grad + i * cols : nullptr));
    });
    double total = 0.0;
    for (int64_t i = 0; i < rows; ++i) total += row_loss[i];
    return total;
}

}  // namespace

double sparse_categorical_crossentropy_from_logits(const float* logits, const int32_t* labels,
                                                   float* row_loss, float* grad, int64_t rows,
                                                   int64_t cols, float grad_scale) {
    return sum_row_losses(row_loss, grad, rows, cols, [&](int64_t i, float* g) {
        const float* z = logits + i * cols;
        const RowExp r = row_exp(z, cols, g);  // g holds e_j until scaled into the gradient
        if (g) {
            const float a = static_cast<float>(grad_scale / r.sum);
            sparse_ce_grad_row(g, labels[i], g, cols, a, grad_scale);
        }
        return r.log_sum_exp() - z[labels[i]];
    });
}

double sparse_categorical_crossentropy(const float* probs, const int32_t* labels, float* row_loss,
                                       float* grad, int64_t rows, int64_t cols, float grad_scale) {
    return sum_row_losses(row_loss, grad, rows, cols, [&](int64_t i, float* g) {
        const float p = probs[i * cols + labels[i]];
        if (g) {
            std::fill(g, g + cols, 0.0f);
            if (!is_clipped(p)) g[labels[i]] = -grad_scale / p;
        }
        return -std::log(static_cast<double>(clip_prob(p)));
    });
}

double categorical_crossentropy_from_logits(const float* logits, const float* targets,
                                            float* row_loss, float* grad, int64_t rows,
                                            int64_t cols, float grad_scale) {
    return sum_row_losses(row_loss, grad, rows, cols, [&](int64_t i, float* g) {
        const float* z = logits + i * cols;
        const float* t = targets + i * cols;
        const RowExp r = row_exp(z, cols, g);
        const auto log_sum = static_cast<float>(std::log(r.sum));
        const float max = r.max;
        // Σ_j t_j (lse − z_j) term by term, lse − z_j = (max − z_j) + log(sum):
        // every term is ≥ 0, so nothing cancels.
        const double loss = sum_by_blocks(cols, [&](float* term, int64_t j0, int64_t n) {
            for_each_index(n, [=](int64_t j) { term[j] = t[j0 + j] * ((max - z[j0 + j]) + log_sum); });
        });
        if (g) {
            const float a = static_cast<float>(grad_scale * vec::sum(t, cols) / r.sum);
            dense_ce_grad_row(g, t, g, cols, a, grad_scale);
        }
        return loss;
    });
}

double categorical_crossentropy(const float* probs, const float* targets, float* row_loss,
                                float* grad, int64_t rows, int64_t cols, float grad_scale) {
    return sum_row_losses(row_loss, grad, rows, cols, [&](int64_t i, float* g) {
        const float* p = probs + i * cols;
        const float* t = targets + i * cols;
        const double s = vec::sum(p, cols);
        const auto inv_s = static_cast<float>(1.0 / s);
        // loss = −Σ t_j log(clip(q_j)), q_j = p_j / S, block by block; the
        // blocks also give Σ t_j over the unclipped q_j: only those depend on
        // p, so only their targets enter the Σt/S term of the gradient.
        float log_q[kBlock];
        double loss = 0.0;
        const double t_unclipped = sum_by_blocks(cols, [&](float* t_live, int64_t j0, int64_t n) {
            for_each_index(n, [=, &log_q](int64_t j) {
                const float q = p[j0 + j] * inv_s, tj = t[j0 + j];
                log_q[j] = clip_prob(q);
                t_live[j] = is_clipped(q) ? 0.0f : tj;
            });
            vec::log(log_q, log_q, n);
            loss -= vec::dot(t + j0, log_q, n);
        });
        if (g) {
            const float c = static_cast<float>(grad_scale * t_unclipped / s);
            for_each_index(cols, [=](int64_t j) {  // c, or c − grad_scale·t/p where unclipped
                const bool clipped = is_clipped(p[j] * inv_s);
                const float scale = clipped ? 0.0f : grad_scale, denominator = clipped ? 1.0f : p[j];
                g[j] = c - scale * t[j] / denominator;
            });
        }
        return loss;
    });
}

void softmax_crossentropy_backward(const float* probs, const int32_t* labels, float* dlogits,
                                   int64_t rows, int64_t cols, float grad_scale) {
    for_each_row(rows, cols, [&](int64_t i) {
        sparse_ce_grad_row(probs + i * cols, labels[i], dlogits + i * cols, cols, grad_scale,
                           grad_scale);
    });
}

void softmax_crossentropy_backward_dense(const float* probs, const float* targets, float* dlogits,
                                         int64_t rows, int64_t cols, float grad_scale) {
    for_each_row(rows, cols, [&](int64_t i) {
        const float* t = targets + i * cols;
        const float a = static_cast<float>(grad_scale * vec::sum(t, cols));
        dense_ce_grad_row(probs + i * cols, t, dlogits + i * cols, cols, a, grad_scale);
    });
}

double mean_squared_error(const float* pred, const float* targets, float* row_loss, float* grad,
                          int64_t rows, int64_t cols, float grad_scale) {
    const float k = 2.0f * grad_scale / static_cast<float>(cols);
    return sum_row_losses(row_loss, grad, rows, cols, [&](int64_t i, float* g) {
        const float* p = pred + i * cols;
        const float* t = targets + i * cols;
        // Σ d_j² with d_j = p_j − t_j rounded to float, squared exactly by vec::dot.
        float d[kBlock];
        double loss = 0.0;
        for (int64_t j0 = 0; j0 < cols; j0 += kBlock) {
            const int64_t n = std::min(kBlock, cols - j0);
            for_each_index(n, [=, &d](int64_t j) { d[j] = p[j0 + j] - t[j0 + j]; });
            loss += vec::dot(d, d, n);
        }
        if (g) for_each_index(cols, [=](int64_t j) { g[j] = k * (p[j] - t[j]); });
        return loss / static_cast<double>(cols);
    });
}

double binary_crossentropy(const float* probs, const float* targets, float* row_loss, float* grad,
                           int64_t rows, int64_t cols, float grad_scale) {
    const float k = grad_scale / static_cast<float>(cols);
    return sum_row_losses(row_loss, grad, rows, cols, [&](int64_t i, float* g) {
        const float* p = probs + i * cols;
        const float* t = targets + i * cols;
        // term_j = t log(c) + (1 − t) log(1 − c), c = clip(p_j)
        float log_c[kBlock], log_1mc[kBlock];
        const double loss = sum_by_blocks(cols, [&](float* term, int64_t j0, int64_t n) {
            for_each_index(n, [=, &log_c, &log_1mc](int64_t j) {
                const float c = clip_prob(p[j0 + j]);
                log_c[j] = c;
                log_1mc[j] = 1.0f - c;
            });
            vec::log(log_c, log_c, n);
            vec::log(log_1mc, log_1mc, n);
            for_each_index(n, [=, &log_c, &log_1mc](int64_t j) {
                term[j] = t[j0 + j] * log_c[j] + (1.0f - t[j0 + j]) * log_1mc[j];
            });
        });
        if (g) {
            for_each_index(cols, [=](int64_t j) {  // 0 where clipped
                const float c = clip_prob(p[j]);
                g[j] = (is_clipped(p[j]) ? 0.0f : k) * (c - t[j]) / (c * (1.0f - c));
            });
        }
        return -loss / static_cast<double>(cols);
    });
}

double binary_crossentropy_from_logits(const float* logits, const float* targets, float* row_loss,
                                       float* grad, int64_t rows, int64_t cols, float grad_scale) {
    const float k = grad_scale / static_cast<float>(cols);
    return sum_row_losses(row_loss, grad, rows, cols, [&](int64_t i, float* g) {
        const float* z = logits + i * cols;
        const float* t = targets + i * cols;
        // e = exp(−|z|) is in (0, 1], so neither log1p(e) nor the sigmoid
        // σ(z) = 1/(1+e) (z ≥ 0) or e/(1+e) (z < 0) can overflow.
        float e[kBlock], softplus[kBlock];
        const double loss = sum_by_blocks(cols, [&](float* term, int64_t j0, int64_t n) {
            for_each_index(n, [=, &e](int64_t j) { e[j] = -std::fabs(z[j0 + j]); });
            vec::exp(e, e, n);
            vec::log1p(e, softplus, n);
            for_each_index(n, [=, &softplus](int64_t j) {
                term[j] = std::max(z[j0 + j], 0.0f) - z[j0 + j] * t[j0 + j] + softplus[j];
            });
            if (g) {
                for_each_index(n, [=, &e](int64_t j) {
                    const float zj = z[j0 + j];
                    g[j0 + j] = k * ((zj >= 0.0f ? 1.0f : e[j]) / (1.0f + e[j]) - t[j0 + j]);
                });
            }
        });
        return loss / static_cast<double>(cols);
    });
}

// Reference implementations: the plain loops the fast kernels are tested against.
// They compute in double throughout, so the tests also use them as the accurate
// objective for finite differences.
namespace reference {
namespace {

double log_sum_exp(const float* z, int64_t n) {
    double max = z[0];
    for (int64_t j = 1; j < n; ++j) max = std::max(max, static_cast<double>(z[j]));
    double sum = 0.0;
    for (int64_t j = 0; j < n; ++j) sum += std::exp(z[j] - max);
    return max + std::log(sum);
}

}  // namespace

double sparse_categorical_crossentropy_from_logits(const float* logits, const int32_t* labels,
                                                   float* row_loss, float* grad, int64_t rows,
                                                   int64_t cols, float grad_scale) {
    double total = 0.0;
    for (int64_t i = 0; i < rows; ++i) {
        const float* z = logits + i * cols;
        const double lse = log_sum_exp(z, cols);
        const double loss = lse - z[labels[i]];
        row_loss[i] = static_cast<float>(loss);
        total += loss;
        if (!grad) continue;
        for (int64_t j = 0; j < cols; ++j) {
            const double softmax = std::exp(z[j] - lse);
            grad[i * cols + j] = static_cast<float>(grad_scale * (softmax - (j == labels[i])));
        }
    }
    return total;
}

double sparse_categorical_crossentropy(const float* probs, const int32_t* labels, float* row_loss,
                                       float* grad, int64_t rows, int64_t cols, float grad_scale) {
    double total = 0.0;
    for (int64_t i = 0; i < rows; ++i) {
        const double p = probs[i * cols + labels[i]];
        const double loss = -std::log(clip_prob(p));
        row_loss[i] = static_cast<float>(loss);
        total += loss;
        if (!grad) continue;
        for (int64_t j = 0; j < cols; ++j) {
            const bool live = j == labels[i] && !is_clipped(p);
            grad[i * cols + j] = live ? static_cast<float>(-grad_scale / p) : 0.0f;
        }
    }
    return total;
}

double categorical_crossentropy_from_logits(const float* logits, const float* targets,
                                            float* row_loss, float* grad, int64_t rows,
                                            int64_t cols, float grad_scale) {
    double total = 0.0;
    for (int64_t i = 0; i < rows; ++i) {
        const float* z = logits + i * cols;
        const float* t = targets + i * cols;
        const double lse = log_sum_exp(z, cols);
        double loss = 0.0, t_sum = 0.0;
        for (int64_t j = 0; j < cols; ++j) {
            loss += t[j] * (lse - z[j]);
            t_sum += t[j];
        }
        row_loss[i] = static_cast<float>(loss);
        total += loss;
        if (!grad) continue;
        for (int64_t j = 0; j < cols; ++j) {
            const double softmax = std::exp(z[j] - lse);
            grad[i * cols + j] = static_cast<float>(grad_scale * (softmax * t_sum - t[j]));
        }
    }
    return total;
}

double categorical_crossentropy(const float* probs, const float* targets, float* row_loss,
                                float* grad, int64_t rows, int64_t cols, float grad_scale) {
    double total = 0.0;
    for (int64_t i = 0; i < rows; ++i) {
        const float* p = probs + i * cols;
        const float* t = targets + i * cols;
        double s = 0.0;
        for (int64_t j = 0; j < cols; ++j) s += p[j];
        double loss = 0.0, t_unclipped = 0.0;
        for (int64_t j = 0; j < cols; ++j) {
            const double q = p[j] / s;
            loss -= t[j] * std::log(clip_prob(q));
            if (!is_clipped(q)) t_unclipped += t[j];
        }
        row_loss[i] = static_cast<float>(loss);
        total += loss;
        if (!grad) continue;
        for (int64_t j = 0; j < cols; ++j) {
            const double dq = is_clipped(p[j] / s) ? 0.0 : -t[j] / static_cast<double>(p[j]);
            grad[i * cols + j] = static_cast<float>(grad_scale * (dq + t_unclipped / s));
        }
    }
    return total;
}

void softmax_crossentropy_backward(const float* probs, const int32_t* labels, float* dlogits,
                                   int64_t rows, int64_t cols, float grad_scale) {
    for (int64_t i = 0; i < rows; ++i) {
        for (int64_t j = 0; j < cols; ++j) {
            const double p = probs[i * cols + j];
            dlogits[i * cols + j] = static_cast<float>(grad_scale * (p - (j == labels[i])));
        }
    }
}

void softmax_crossentropy_backward_dense(const float* probs, const float* targets, float* dlogits,
                                         int64_t rows, int64_t cols, float grad_scale) {
    for (int64_t i = 0; i < rows; ++i) {
        double t_sum = 0.0;
        for (int64_t j = 0; j < cols; ++j) t_sum += targets[i * cols + j];
        for (int64_t j = 0; j < cols; ++j) {
            const double p = probs[i * cols + j], t = targets[i * cols + j];
            dlogits[i * cols + j] = static_cast<float>(grad_scale * (p * t_sum - t));
        }
    }
}

double mean_squared_error(const float* pred, const float* targets, float* row_loss, float* grad,
                          int64_t rows, int64_t cols, float grad_scale) {
    double total = 0.0;
    for (int64_t i = 0; i < rows; ++i) {
        double loss = 0.0;
        for (int64_t j = 0; j < cols; ++j) {
            const double d = static_cast<double>(pred[i * cols + j]) - targets[i * cols + j];
            loss += d * d / cols;
            if (grad) grad[i * cols + j] = static_cast<float>(grad_scale * 2.0 * d / cols);
        }
        row_loss[i] = static_cast<float>(loss);
        total += loss;
    }
    return total;
}

double binary_crossentropy(const float* probs, const float* targets, float* row_loss, float* grad,
                           int64_t rows, int64_t cols, float grad_scale) {
    double total = 0.0;
    for (int64_t i = 0; i < rows; ++i) {
        double loss = 0.0;
        for (int64_t j = 0; j < cols; ++j) {
            const double p = probs[i * cols + j], t = targets[i * cols + j];
            const double c = clip_prob(p);
            loss -= (t * std::log(c) + (1.0 - t) * std::log(1.0 - c)) / cols;
            if (grad) {
                const double d = is_clipped(p) ? 0.0 : (c - t) / (c * (1.0 - c)) / cols;
                grad[i * cols + j] = static_cast<float>(grad_scale * d);
            }
        }
        row_loss[i] = static_cast<float>(loss);
        total += loss;
    }
    return total;
}

double binary_crossentropy_from_logits(const float* logits, const float* targets, float* row_loss,
                                       float* grad, int64_t rows, int64_t cols, float grad_scale) {
    double total = 0.0;
    for (int64_t i = 0; i < rows; ++i) {
        double loss = 0.0;
        for (int64_t j = 0; j < cols; ++j) {
            const double z = logits[i * cols + j], t = targets[i * cols + j];
            loss += (std::max(z, 0.0) - z * t + std::log(1.0 + std::exp(-std::fabs(z)))) / cols;
            if (grad) {
                const double sigmoid = 1.0 / (1.0 + std::exp(-z));
                grad[i * cols + j] = static_cast<float>(grad_scale * (sigmoid - t) / cols);
            }
        }
        row_loss[i] = static_cast<float>(loss);
        total += loss;
    }
    return total;
}

}  // namespace reference
}  // namespace fz
