// layernorm.cpp — fused layer normalization (formulas in layernorm.h).
//
// Forward: threads split the rows; each row is read from memory once and
// swept three times while it sits in L1 (sum → μ, squared deviations → σ²,
// then y), so mean and variance take one pass over memory and the two-sweep
// variance Σ(x − μ)² avoids the cancellation of Σx² − Cμ².
//
// Backward: rows are grouped in blocks of a fixed kRowBlock rows. A block's
// owner computes dx for its rows and the block's partial sums of dγ and dβ;
// then threads split the columns and add the partial sums block by block. The
// grouping never depends on the thread count, so neither do the sums.
#include "layernorm.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "lanes.h"
#include "parallel.h"
#include "scratch.h"
#include "simd.h"

namespace fz {
namespace {

// Below ~16K floats a parallel region costs more than it saves.
constexpr int64_t kGrain = 16384;

// Rows per block of the backward's dγ/dβ partial sums.
constexpr int64_t kRowBlock = 32;

FZ_SIMD_CLONES void normalize_row(const float* x, const float* gamma, const float* beta, float* y,
                                  float* mean, float* rstd, int64_t C, float epsilon) {
    const float inv_c = 1.0f / static_cast<float>(C);
    const float mu = lane_sum(C, [=](int64_t j) { return x[j]; }) * inv_c;
    const float var = lane_sum(C, [=](int64_t j) { return (x[j] - mu) * (x[j] - mu); }) * inv_c;
    const float r = 1.0f / std::sqrt(var + epsilon);
    *mean = mu;
    *rstd = r;
    for (int64_t j = 0; j < C; ++j) {
        const float xhat = (x[j] - mu) * r;
        y[j] = (gamma ? gamma[j] * xhat : xhat) + (beta ? beta[j] : 0.0f);
    }
}

// The row's terms dy·x̂ and dy added into the block's partial sums pg and pb
// (null: not wanted), then dx (null: not wanted). The sums read dy before dx
// is written, so dx may alias dy.
FZ_SIMD_CLONES void backward_row(const float* x, const float* gamma, float mu, float r,
                                 const float* dy, float* dx, float* pg, float* pb, int64_t C) {
    if (pg)
        for (int64_t j = 0; j < C; ++j) {
            pg[j] += dy[j] * ((x[j] - mu) * r);
            pb[j] += dy[j];
        }
    if (!dx) return;
    auto g = [=](int64_t j) { return gamma ? dy[j] * gamma[j] : dy[j]; };
    auto g_xhat = [=](int64_t j) { return g(j) * ((x[j] - mu) * r); };
    const auto [sum_g, sum_gx] = lane_sum2(C, g, g_xhat);
    const float inv_c = 1.0f / static_cast<float>(C);
    const float mean_g = sum_g * inv_c, mean_gx = sum_gx * inv_c;
    for (int64_t j = 0; j < C; ++j) dx[j] = r * (g(j) - mean_g - ((x[j] - mu) * r) * mean_gx);
}

}  // namespace

void layernorm_forward(const float* x, const float* gamma, const float* beta, float* y,
                       float* mean, float* rstd, int64_t rows, int64_t C, float epsilon) {
    const int64_t grain = std::max<int64_t>(1, kGrain / std::max<int64_t>(C, 1));
    parallel_for(0, rows, grain, [=](int64_t lo, int64_t hi) {
        for (int64_t i = lo; i < hi; ++i)
            normalize_row(x + i * C, gamma, beta, y + i * C, mean + i, rstd + i, C, epsilon);
    });
}

void layernorm_backward(const float* x, const float* gamma, const float* mean, const float* rstd,
                        const float* dy, float* dx, float* dgamma, float* dbeta, int64_t rows,
                        int64_t C) {
    const int64_t blocks = (rows + kRowBlock - 1) / kRowBlock;
    // partial + 2·C·b = block b's sums: C floats for dγ, then C for dβ; each
    // block's owner zeroes them. The calling thread's buffer, reused every step.
    thread_local std::vector<float> partial_buf;
    float* const partial = (dgamma || dbeta) ? scratch(partial_buf, blocks * 2 * C) : nullptr;
    const int64_t grain = std::max<int64_t>(1, kGrain / (kRowBlock * std::max<int64_t>(C, 1)));
    parallel_for(0, blocks, grain, [&](int64_t lo, int64_t hi) {
        for (int64_t b = lo; b < hi; ++b) {
            float* pg = partial ? partial + b * 2 * C : nullptr;
            if (pg) std::fill(pg, pg + 2 * C, 0.0f);
            for (int64_t i = b * kRowBlock; i < std::min(rows, (b + 1) * kRowBlock); ++i)
                backward_row(x + i * C, gamma, mean[i], rstd[i], dy + i * C,
                             dx ? dx + i * C : nullptr, pg, pg ? pg + C : nullptr, C);
        }
    });
    if (!dgamma && !dbeta) return;
    const int64_t col_grain = std::max<int64_t>(16, kGrain / std::max<int64_t>(blocks, 1));
    parallel_for(0, C, col_grain, [&](int64_t lo, int64_t hi) {
        if (dgamma) std::fill(dgamma + lo, dgamma + hi, 0.0f);
        if (dbeta) std::fill(dbeta + lo, dbeta + hi, 0.0f);
        for (int64_t b = 0; b < blocks; ++b) {
            const float* pg = partial + b * 2 * C;
            for (int64_t j = lo; j < hi; ++j) {
                if (dgamma) dgamma[j] += pg[j];
                if (dbeta) dbeta[j] += pg[C + j];
            }
        }
    });
}

// Reference implementations: the formulas row by row, accumulated in double.
void reference::layernorm_forward(const float* x, const float* gamma, const float* beta, float* y,
                                  float* mean, float* rstd, int64_t rows, int64_t C,
                                  float epsilon) {
    for (int64_t i = 0; i < rows; ++i) {
        const float* xr = x + i * C;
        double sum = 0.0, sq = 0.0;
        for (int64_t j = 0; j < C; ++j) sum += xr[j];
        const double mu = sum / C;
        for (int64_t j = 0; j < C; ++j) sq += (xr[j] - mu) * (xr[j] - mu);
        const double r = 1.0 / std::sqrt(sq / C + epsilon);
        for (int64_t j = 0; j < C; ++j) {
            const double xhat = (xr[j] - mu) * r;
            y[i * C + j] = static_cast<float>((gamma ? gamma[j] : 1.0) * xhat + (beta ? beta[j] : 0.0));
        }
        mean[i] = static_cast<float>(mu);
        rstd[i] = static_cast<float>(r);
    }
}

void reference::layernorm_backward(const float* x, const float* gamma, const float* mean,
                                   const float* rstd, const float* dy, float* dx, float* dgamma,
                                   float* dbeta, int64_t rows, int64_t C) {
    std::vector<double> sum_g(C, 0.0), sum_b(C, 0.0);
    for (int64_t i = 0; i < rows; ++i) {
        const float* xr = x + i * C;
        const float* dyr = dy + i * C;
        double mean_g = 0.0, mean_gx = 0.0;
        for (int64_t j = 0; j < C; ++j) {
            const double xhat = (xr[j] - static_cast<double>(mean[i])) * rstd[i];
            const double g = dyr[j] * (gamma ? gamma[j] : 1.0);
            mean_g += g / C;
            mean_gx += g * xhat / C;
            sum_g[j] += dyr[j] * xhat;
            sum_b[j] += dyr[j];
        }
        if (!dx) continue;
        for (int64_t j = 0; j < C; ++j) {
            const double xhat = (xr[j] - static_cast<double>(mean[i])) * rstd[i];
            const double g = dyr[j] * (gamma ? gamma[j] : 1.0);
            dx[i * C + j] = static_cast<float>(rstd[i] * (g - mean_g - xhat * mean_gx));
        }
    }
    for (int64_t j = 0; j < C; ++j) {
        if (dgamma) dgamma[j] = static_cast<float>(sum_g[j]);
        if (dbeta) dbeta[j] = static_cast<float>(sum_b[j]);
    }
}

}  // namespace fz
