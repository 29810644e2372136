// attention.cpp — scaled dot-product attention (formulas in attention.h).
//
// Work is split by (batch, head): a thread owns every row of P, O, dQ, dK and
// dV of its heads, so nothing is shared and dK, dV (sums over the queries) are
// added in the same order whatever the thread count. Within a head, queries
// go in blocks of query_block() rows, and each block's three products are GEMMs
// on per-head tiles read in place through the strides (lda = the time stride),
// run serially in the head's thread (a parallel region nested in another
// gets one thread: OpenMP's default max-active-levels is 1). The GEMM is much
// faster than hand-written loops here: one head's S = Q·Kᵀ at T = 64, dk = 32
// takes 2.8 µs, against 10 µs for loops vectorized over keys and 21 µs as
// dot products (one thread, measured).
//
// Q·Kᵀ and dO·Vᵀ multiply by a transposed operand, which the GEMM would pack
// (transpose) again for every query block; instead the head's Kᵀ (forward) or
// Vᵀ (backward) is transposed once into a per-thread scratch and read in place.
//
// With a causal mask, query block [i0, i1) sees no key past i1 − 1 + offset,
// so its products stop there: the tiles above the diagonal are never
// computed (at T = 64, blocks of 24 skip a third of the work, blocks of 32 a quarter).
#include "attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "gemm.h"
#include "gemm_microkernel.h"
#include "lanes.h"
#include "parallel.h"
#include "random.h"
#include "scratch.h"
#include "vecmath.h"

namespace fz {
namespace {

// Query rows per block: small enough to skip most of the masked half of a
// causal score matrix, large enough to keep the GEMM busy, and four rows of
// micro-kernel tiles (so no block has a ragged edge tile): 32 with the
// AVX-512 kernel (MR = 8), 24 with AVX2's (MR = 6). Measured at the GPT
// recipe's T = 64, causal, dk = 32: on AVX2 (callgrind, 8 to 64) 24 is best,
// within 2% (forward) and 11% (backward) of the best (48) at T = 128 without
// a mask; on AVX-512 (Zen 4, one thread, best of 400) 32 takes 408 µs
// forward and 528 µs backward per layer against 439 and 586 µs for 24 (16:
// 430 and 557; 64: 465 and 629). Fixed per CPU, like the GEMM's kc: the
// thread count never changes it, so results stay bit-identical across
// thread counts.
int64_t query_block() {
    static const int64_t rows = 4 * gemm_plan().kernel->mr;
    return rows;
}

// Below this many flops a parallel region costs more than it saves.
constexpr int64_t kMinFlopsPerThread = 1 << 17;

// p[0:n] ← softmax(p[0:n]) in place. Entries equal to −∞ (masked) become 0; if
// all are −∞ the row becomes all zeros. NaNs propagate: a row with a NaN score
// is all NaN. This is the one place attention calls exp: vec::exp_sum writes
// e^(p − max) with the vectorized exp (csrc/vecmath.h) and sums it exactly.
void softmax_row(float* p, int64_t n) {
    const float max = lane_max(p, n);  // ignores NaNs
    if (max == -INFINITY) {  // every key masked, or NaN: zeros, keeping the NaNs
        for (int64_t j = 0; j < n; ++j) p[j] = std::isnan(p[j]) ? p[j] : 0.0f;
        return;
    }
    const float inv = 1.0f / static_cast<float>(vec::exp_sum(p, max, p, n));
    for (int64_t j = 0; j < n; ++j) p[j] *= inv;
}

// The keys [0, end) that query block [i0, i1) may see at all: everything
// except, under a causal mask, the keys past the block's last query.
int64_t visible_keys(const AttentionShape& s, const AttentionMask& m, int64_t i1) {
    if (!m.causal) return s.kv_len;
    return std::clamp<int64_t>(i1 + m.causal_offset, 0, s.kv_len);
}

// Row i of the scaled scores for (b, h), computed for keys [0, end), becomes
// row i of P: the mask applied (masked scores to −∞, then the additive mask),
// softmax over [0, end), and P = 0 for the keys [end, Tk) never computed.
void mask_and_softmax(const AttentionShape& s, const AttentionMask& m, int64_t b, int64_t h,
                      int64_t i, int64_t end, float* p) {
    const int64_t seen =
        m.causal ? std::clamp<int64_t>(i + m.causal_offset + 1, 0, end) : end;
    std::fill(p + seen, p + s.kv_len, 0.0f);
    if (m.keep) {
        const uint8_t* keep = m.keep + b * m.keep_batch + h * m.keep_head + i * m.keep_query;
        for (int64_t j = 0; j < seen; ++j)
            if (!keep[j]) p[j] = -INFINITY;
    }
    if (m.bias) {
        const float* bias = m.bias + b * m.bias_batch + h * m.bias_head + i * m.bias_query;
        for (int64_t j = 0; j < seen; ++j) p[j] += bias[j];
    }
    softmax_row(p, seen);
}

// Row by row, dS = P ⊙ (dP − Σ_j P ⊙ dP) in place of dP; n keys per row.
void softmax_backward_rows(const float* P, int64_t ldp, float* dS, int64_t ld, int64_t rows,
                           int64_t n) {
    for (int64_t i = 0; i < rows; ++i) {
        const float* p = P + i * ldp;
        float* d = dS + i * ld;
        const float dot = lane_sum(n, [=](int64_t j) { return p[j] * d[j]; });
        for (int64_t j = 0; j < n; ++j) d[j] = p[j] * (d[j] - dot);
    }
}

// out (dim, n) ← the rows [0, n) of one head of x, transposed.
void transpose_head(HeadArray<const float> x, int64_t b, int64_t h, int64_t n, int64_t dim,
                    float* out) {
    for (int64_t t = 0; t < n; ++t) {
        const float* row = x.row(b, t, h);
        for (int64_t d = 0; d < dim; ++d) out[d * n + t] = row[d];
    }
}

// The rows of one head of a HeadArray set to zero.
void zero_head_rows(HeadArray<float> x, int64_t b, int64_t h, int64_t rows, int64_t dim) {
    for (int64_t t = 0; t < rows; ++t) std::fill_n(x.row(b, t, h), dim, 0.0f);
}

int64_t unit_grain(int64_t flops_per_unit) {
    return std::max<int64_t>(1, kMinFlopsPerThread / std::max<int64_t>(flops_per_unit, 1));
}

// M_ij of the dropout mask (attention.h): 1/(1 − rate) or 0, drawn from the
// position of P_ij in the (B, H, Tq, Tk) array. Shared by the fast kernels
// and the reference, so both drop the same entries.
float dropout_keep(const AttentionShape& s, const AttentionDropout& d, int64_t b, int64_t h,
                   int64_t i, int64_t j) {
    const auto index = static_cast<uint64_t>(((b * s.heads + h) * s.q_len + i) * s.kv_len + j);
    return random_uniform(d.seed, index) >= d.rate ? 1.0f / (1.0f - d.rate) : 0.0f;
}

// keep[r, j] = M for the rows [i0, i0 + m) and keys [0, end) of (b, h), and
// dropped[r, j] = P ⊙ M (ld end); P has row stride Tk.
void draw_dropout(const AttentionShape& s, const AttentionDropout& d, int64_t b, int64_t h,
                  int64_t i0, int64_t m, int64_t end, const float* P, float* keep, float* dropped) {
    for (int64_t r = 0; r < m; ++r)
        for (int64_t j = 0; j < end; ++j) {
            const float mask = dropout_keep(s, d, b, h, i0 + r, j);
            if (keep) keep[r * end + j] = mask;
            dropped[r * end + j] = P[r * s.kv_len + j] * mask;
        }
}

// The forward pass of one (b, h): for each block of queries, S = scale·Q·Kᵀ
// over the keys the block may see, the mask and softmax row by row, then
// O = P·V (P̃·V with dropout). Row i of P goes to P_head + i·Tk (this head's
// part of the caller's probs) or, when P_head is null, into `block`, one
// query block at a time (inference: nothing is kept). Scratch: kt (dk·Tk
// floats) and, with dropout, dropped (query_block()·Tk).
void forward_head(const AttentionShape& s, float scale, HeadArray<const float> q,
                  HeadArray<const float> k, HeadArray<const float> v, const AttentionMask& mask,
                  const AttentionDropout& dropout, int64_t b, int64_t h, float* P_head,
                  float* block, float* kt, float* dropped, HeadArray<float> out) {
    const int64_t rows = query_block();
    transpose_head(k, b, h, s.kv_len, s.key_dim, kt);
    for (int64_t i0 = 0; i0 < s.q_len; i0 += rows) {
        const int64_t m = std::min(rows, s.q_len - i0);
        const int64_t end = visible_keys(s, mask, i0 + m);
        float* P = P_head ? P_head + i0 * s.kv_len : block;
        // S = scale·Q·Kᵀ for the block's rows and the keys it may see.
        gemm(false, false, m, end, s.key_dim, scale, q.row(b, i0, h), q.time, kt, s.kv_len, 0.0f,
             P, s.kv_len);
        for (int64_t i = i0; i < i0 + m; ++i)
            mask_and_softmax(s, mask, b, h, i, end, P + (i - i0) * s.kv_len);
        // O = P·V, or P̃·V with dropout (zero rows when no key is visible: a
        // GEMM with K = 0).
        const float* PV = P;
        int64_t ldp = s.kv_len;
        if (dropout.rate > 0.0f) {
            draw_dropout(s, dropout, b, h, i0, m, end, P, nullptr, dropped);
            PV = dropped, ldp = end;
        }
        gemm(false, false, m, s.value_dim, end, 1.0f, PV, ldp, v.row(b, 0, h), v.time, 0.0f,
             out.row(b, i0, h), out.time);
    }
}

}  // namespace

void attention_forward(const AttentionShape& s, float scale, HeadArray<const float> q,
                       HeadArray<const float> k, HeadArray<const float> v,
                       const AttentionMask& mask, float* probs, HeadArray<float> out,
                       const AttentionDropout& dropout) {
    const int64_t flops = 2 * s.q_len * s.kv_len * (s.key_dim + s.value_dim);
    const bool drop = dropout.rate > 0.0f;
    parallel_for(0, s.batch * s.heads, unit_grain(flops), [&](int64_t lo, int64_t hi) {
        const int64_t rows = query_block();
        thread_local std::vector<float> kt_buffer, dropped_buffer;
        float* const kt = scratch(kt_buffer, s.key_dim * s.kv_len);
        float* const dropped = drop ? scratch(dropped_buffer, rows * s.kv_len) : nullptr;
        for (int64_t u = lo; u < hi; ++u) {
            const int64_t b = u / s.heads, h = u % s.heads;
            forward_head(s, scale, q, k, v, mask, dropout, b, h,
                         probs + (b * s.heads + h) * s.q_len * s.kv_len, nullptr, kt, dropped, out);
        }
    });
}

namespace {

// Sequence s of a packed array: its rows as batch 0 of a HeadArray.
template <class T>
HeadArray<T> sequence(HeadArray<T> x, const int64_t* starts, int64_t s) {
    return {x.data + starts[s] * x.time, 0, x.time, x.head};
}

}  // namespace

// Units are (sequence, head) pairs, each one forward_head on its own length;
// parallel_for's chunks are claimed dynamically, which evens out the lengths.
void attention_forward_packed(int64_t sequences, const int64_t* starts, int64_t heads,
                              int64_t key_dim, int64_t value_dim, float scale,
                              HeadArray<const float> q, HeadArray<const float> k,
                              HeadArray<const float> v, HeadArray<float> out) {
    if (sequences <= 0 || heads <= 0) return;
    int64_t longest = 0, flops = 0;
    for (int64_t n = 0; n < sequences; ++n) {
        const int64_t T = starts[n + 1] - starts[n];
        longest = std::max(longest, T);
        flops += 2 * T * T * (key_dim + value_dim);
    }
    parallel_for(0, sequences * heads, unit_grain(flops / sequences), [&](int64_t lo, int64_t hi) {
        thread_local std::vector<float> kt_buffer, block_buffer;
        float* const kt = scratch(kt_buffer, key_dim * longest);
        float* const block = scratch(block_buffer, query_block() * longest);
        for (int64_t u = lo; u < hi; ++u) {
            const int64_t n = u / heads, h = u % heads, T = starts[n + 1] - starts[n];
            if (T == 0) continue;
            const AttentionShape one{1, heads, T, T, key_dim, value_dim};
            forward_head(one, scale, sequence(q, starts, n), sequence(k, starts, n),
                         sequence(v, starts, n), AttentionMask{}, AttentionDropout{}, 0, h,
                         nullptr, block, kt, nullptr, sequence(out, starts, n));
        }
    });
}

void attention_backward(const AttentionShape& s, float scale, HeadArray<const float> q,
                        HeadArray<const float> k, HeadArray<const float> v, const float* probs,
                        HeadArray<const float> dout, const AttentionMask& mask,
                        HeadArray<float> dq, HeadArray<float> dk, HeadArray<float> dv,
                        const AttentionDropout& dropout) {
    const int64_t flops = 4 * s.q_len * s.kv_len * (s.key_dim + s.value_dim);
    const bool drop = dropout.rate > 0.0f;
    parallel_for(0, s.batch * s.heads, unit_grain(flops), [&](int64_t lo, int64_t hi) {
        const int64_t rows = query_block();
        thread_local std::vector<float> vt_buffer, dS_buffer, keep_buffer, dropped_buffer;
        float* const vt = scratch(vt_buffer, s.value_dim * s.kv_len);
        float* const dS = scratch(dS_buffer, rows * s.kv_len);  // one query block
        float* const keep = drop ? scratch(keep_buffer, rows * s.kv_len) : nullptr;
        float* const dropped = drop ? scratch(dropped_buffer, rows * s.kv_len) : nullptr;
        for (int64_t u = lo; u < hi; ++u) {
            const int64_t b = u / s.heads, h = u % s.heads;
            transpose_head(v, b, h, s.kv_len, s.value_dim, vt);
            zero_head_rows(dk, b, h, s.kv_len, s.key_dim);
            zero_head_rows(dv, b, h, s.kv_len, s.value_dim);
            for (int64_t i0 = 0; i0 < s.q_len; i0 += rows) {
                const int64_t m = std::min(rows, s.q_len - i0);
                const int64_t end = visible_keys(s, mask, i0 + m);
                const float* P = probs + ((b * s.heads + h) * s.q_len + i0) * s.kv_len;
                const float* dO = dout.row(b, i0, h);
                // dV += Pᵀ·dO (P̃ᵀ·dO with dropout: the mask drawn again)
                const float* PV = P;
                int64_t ldp = s.kv_len;
                if (drop) {
                    draw_dropout(s, dropout, b, h, i0, m, end, P, keep, dropped);
                    PV = dropped, ldp = end;
                }
                gemm(true, false, end, s.value_dim, m, 1.0f, PV, ldp, dO, dout.time, 1.0f,
                     dv.row(b, 0, h), dv.time);
                // dP = dO·Vᵀ (⊙ M with dropout), then dS = P ⊙ (dP − rowsum(P ⊙ dP)) in place
                gemm(false, false, m, end, s.value_dim, 1.0f, dO, dout.time, vt, s.kv_len, 0.0f,
                     dS, end);
                if (drop)
                    for (int64_t e = 0; e < m * end; ++e) dS[e] *= keep[e];
                softmax_backward_rows(P, s.kv_len, dS, end, m, end);
                // dQ = scale·dS·K,  dK += scale·dSᵀ·Q
                gemm(false, false, m, s.key_dim, end, scale, dS, end, k.row(b, 0, h), k.time,
                     0.0f, dq.row(b, i0, h), dq.time);
                gemm(true, false, end, s.key_dim, m, scale, dS, end, q.row(b, i0, h), q.time,
                     1.0f, dk.row(b, 0, h), dk.time);
            }
        }
    });
}

// Reference implementations: the definitions element by element, in double.
namespace reference {
namespace {

bool visible(const AttentionMask& m, int64_t b, int64_t h, int64_t i, int64_t j) {
    if (m.causal && j > i + m.causal_offset) return false;
    return !m.keep || m.keep[b * m.keep_batch + h * m.keep_head + i * m.keep_query + j] != 0;
}

double dot(const float* a, const float* b, int64_t n) {
    double sum = 0.0;
    for (int64_t d = 0; d < n; ++d) sum += static_cast<double>(a[d]) * b[d];
    return sum;
}

}  // namespace

void attention_forward(const AttentionShape& s, float scale, HeadArray<const float> q,
                       HeadArray<const float> k, HeadArray<const float> v,
                       const AttentionMask& mask, float* probs, HeadArray<float> out,
                       const AttentionDropout& dropout) {
    std::vector<double> p(s.kv_len);
    for (int64_t b = 0; b < s.batch; ++b)
        for (int64_t h = 0; h < s.heads; ++h)
            for (int64_t i = 0; i < s.q_len; ++i) {
                // Scores, −∞ where masked; a NaN score makes the row NaN.
                double max = -INFINITY;
                bool any_visible = false, any_nan = false;
                for (int64_t j = 0; j < s.kv_len; ++j) {
                    p[j] = -INFINITY;
                    if (!visible(mask, b, h, i, j)) continue;
                    p[j] = scale * dot(q.row(b, i, h), k.row(b, j, h), s.key_dim);
                    if (mask.bias)
                        p[j] += mask.bias[b * mask.bias_batch + h * mask.bias_head +
                                          i * mask.bias_query + j];
                    any_nan = any_nan || std::isnan(p[j]);
                    any_visible = any_visible || p[j] > -INFINITY;
                    if (p[j] > max) max = p[j];
                }
                double sum = 0.0;
                for (int64_t j = 0; j < s.kv_len; ++j) {
                    p[j] = any_visible ? std::exp(p[j] - max) : 0.0;
                    sum += p[j];
                }
                float* P = probs + ((b * s.heads + h) * s.q_len + i) * s.kv_len;
                for (int64_t j = 0; j < s.kv_len; ++j) {
                    p[j] = any_nan ? NAN : any_visible ? p[j] / sum : 0.0;
                    P[j] = static_cast<float>(p[j]);
                }
                if (dropout.rate > 0.0f)
                    for (int64_t j = 0; j < s.kv_len; ++j) p[j] *= dropout_keep(s, dropout, b, h, i, j);
                for (int64_t d = 0; d < s.value_dim; ++d) {
                    double o = 0.0;
                    for (int64_t j = 0; j < s.kv_len; ++j) o += p[j] * v.row(b, j, h)[d];
                    out.row(b, i, h)[d] = static_cast<float>(o);
                }
            }
}

void attention_backward(const AttentionShape& s, float scale, HeadArray<const float> q,
                        HeadArray<const float> k, HeadArray<const float> v, const float* probs,
                        HeadArray<const float> dout, const AttentionMask&, HeadArray<float> dq,
                        HeadArray<float> dk, HeadArray<float> dv, const AttentionDropout& dropout) {
    // M_ij (1 without dropout): dV = (P ⊙ M)ᵀ·dO and dP = (dO·Vᵀ) ⊙ M.
    const auto keep = [&](int64_t b, int64_t h, int64_t i, int64_t j) {
        return dropout.rate > 0.0f ? static_cast<double>(dropout_keep(s, dropout, b, h, i, j)) : 1.0;
    };
    std::vector<double> dS(s.q_len * s.kv_len);
    for (int64_t b = 0; b < s.batch; ++b)
        for (int64_t h = 0; h < s.heads; ++h) {
            const float* P = probs + (b * s.heads + h) * s.q_len * s.kv_len;
            for (int64_t i = 0; i < s.q_len; ++i) {
                double rowsum = 0.0;
                for (int64_t j = 0; j < s.kv_len; ++j) {
                    const double dP = dot(dout.row(b, i, h), v.row(b, j, h), s.value_dim) * keep(b, h, i, j);
                    dS[i * s.kv_len + j] = dP;
                    rowsum += P[i * s.kv_len + j] * dP;
                }
                for (int64_t j = 0; j < s.kv_len; ++j)
                    dS[i * s.kv_len + j] = P[i * s.kv_len + j] * (dS[i * s.kv_len + j] - rowsum);
            }
            for (int64_t i = 0; i < s.q_len; ++i)
                for (int64_t d = 0; d < s.key_dim; ++d) {
                    double sum = 0.0;
                    for (int64_t j = 0; j < s.kv_len; ++j) sum += dS[i * s.kv_len + j] * k.row(b, j, h)[d];
                    dq.row(b, i, h)[d] = static_cast<float>(scale * sum);
                }
            for (int64_t j = 0; j < s.kv_len; ++j) {
                for (int64_t d = 0; d < s.key_dim; ++d) {
                    double sum = 0.0;
                    for (int64_t i = 0; i < s.q_len; ++i) sum += dS[i * s.kv_len + j] * q.row(b, i, h)[d];
                    dk.row(b, j, h)[d] = static_cast<float>(scale * sum);
                }
                for (int64_t d = 0; d < s.value_dim; ++d) {
                    double sum = 0.0;
                    for (int64_t i = 0; i < s.q_len; ++i)
                        sum += P[i * s.kv_len + j] * keep(b, h, i, j) *
                               static_cast<double>(dout.row(b, i, h)[d]);
                    dv.row(b, j, h)[d] = static_cast<float>(sum);
                }
            }
        }
}

void attention_forward_packed(int64_t sequences, const int64_t* starts, int64_t heads,
                              int64_t key_dim, int64_t value_dim, float scale,
                              HeadArray<const float> q, HeadArray<const float> k,
                              HeadArray<const float> v, HeadArray<float> out) {
    for (int64_t n = 0; n < sequences; ++n) {
        const int64_t T = starts[n + 1] - starts[n];
        std::vector<float> probs(heads * T * T);
        reference::attention_forward({1, heads, T, T, key_dim, value_dim}, scale,
                                     sequence(q, starts, n), sequence(k, starts, n),
                                     sequence(v, starts, n), AttentionMask{}, probs.data(),
                                     sequence(out, starts, n));
    }
}

}  // namespace reference
}  // namespace fz
