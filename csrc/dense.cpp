// dense.cpp — Dense forward/backward as compositions of the GEMM, activation
// and reduction kernels (formulas in dense.h).
#include "dense.h"

#include <algorithm>
#include <atomic>

#include "gemm.h"
#include "parallel.h"
#include "reductions.h"

namespace fz {

namespace {

// The activation the GEMM epilogue can apply: an elementwise one, and GELU
// only when z is not wanted (inference): its backward needs z, which the
// epilogue would overwrite.
bool epilogue_can_apply(Activation act, const float* z = nullptr) {
    return act != Activation::softmax && (act != Activation::gelu || z == nullptr);
}

// dz = dy ⊙ f'(z) and db = Σ_rows dz in one pass over dy. Threads split the
// columns, each adding its columns' rows in order, so db is the same for any
// thread count; a slice of at least 16 floats keeps threads off each other's
// cache lines. It sits between products, which a far team runs on the
// calling thread: so does it then (far_grain).
void activation_and_bias_grad(const float* z, const float* y, const float* dy, float* dz,
                              float* db, int64_t batch, int64_t out, Activation act, float alpha) {
    const int64_t grain = std::max<int64_t>(16, 16384 / std::max<int64_t>(batch, 1));
    parallel_for(
        0, out, grain,
        [=](int64_t lo, int64_t hi) {
            if (db) std::fill(db + lo, db + hi, 0.0f);
            for (int64_t i = 0; i < batch; ++i) {
                const int64_t row = i * out + lo;
                activation_backward(act, z ? z + row : nullptr, y + row, dy + row, dz + row,
                                    hi - lo, alpha);
                if (db)
                    for (int64_t j = 0; j < hi - lo; ++j) db[lo + j] += dz[row + j];
            }
        },
        grain);
}

std::atomic<float>& zero_skip_threshold_setting() {
    static std::atomic<float> fraction{kDefaultZeroSkipThreshold};
    return fraction;
}

// Whether to skip x's zeros: the zero fraction of its first 4096 entries
// (a fraction of a microsecond to count) against the threshold.
bool worth_skipping_zeros(const float* x, int64_t batch, int64_t in) {
    const float threshold = zero_skip_threshold();
    if (threshold > 1.0f || batch * in == 0 || in > INT32_MAX || batch > INT32_MAX) return false;
    const int64_t sample = std::min<int64_t>(batch * in, 4096);
    return count_zeros(x, batch, in, in, sample) >= threshold * static_cast<float>(sample);
}

}  // namespace

float zero_skip_threshold() { return zero_skip_threshold_setting().load(std::memory_order_relaxed); }
void set_zero_skip_threshold(float fraction) {
    zero_skip_threshold_setting().store(fraction, std::memory_order_relaxed);
}

void dense_forward(const float* x, const float* W, const float* b, float* y, float* z,
                   int64_t batch, int64_t in, int64_t out, Activation act, float alpha,
                   DenseZeroSkip* skip) {
    const bool skipping = skip && worth_skipping_zeros(x, batch, in);
    if (skip) skip->x = skipping ? x : nullptr;
    // C = x·W (+ the epilogue), with or without x's zeros: the same bits.
    const auto product = [&](float* C, const GemmEpilogue& ep) {
        if (skipping)
            gemm_skipping_zeros(x, batch, in, in, W, out, out, C, out, ep, skip->x_rows);
        else
            gemm(false, false, batch, out, in, 1.0f, x, in, W, out, 0.0f, C, out, ep);
    };
    GemmEpilogue ep;
    ep.bias = b;
    if (epilogue_can_apply(act, z)) {
        ep.activation = act;
        ep.alpha = alpha;
        product(y, ep);
    } else if (act == Activation::softmax) {
        product(y, ep);
        softmax_forward(y, y, batch, out);
    } else {  // GELU with z: keep z for the backward pass
        product(z, ep);
        activation_forward(act, z, y, batch * out, alpha);
    }
}

void dense_backward(const float* x, const float* W, const float* z, const float* y,
                    const float* dy, float* dz, float* dW, float* db, float* dx, int64_t batch,
                    int64_t in, int64_t out, Activation act, float alpha, DenseZeroSkip* skip) {
    if (act == Activation::softmax) {  // row-wise: needs whole rows, so two passes
        softmax_backward(y, dy, dz, batch, out);
        if (db) bias_grad(dz, db, batch, out);
    } else {
        activation_and_bias_grad(z, y, dy, dz, db, batch, out, act, alpha);
    }
    const bool skipping = skip && skip->x == x && skip->x_rows.rows == batch &&
                          skip->x_rows.cols == in;
    if (dW && skipping) {  // xᵀ·dz over the non-zero x[i, k]: row k of dW from x's column k
        gemm_nonzero_transposed(skip->x_rows, dz, out, out, dW, out);
    } else if (dW) {
        gemm(true, false, in, out, batch, 1.0f, x, in, dz, out, 0.0f, dW, out);  // xᵀ·dz
    }
    if (dx) gemm(false, true, batch, in, out, 1.0f, dz, out, W, out, 0.0f, dx, in);  // dz·Wᵀ
}

// LoRA: the base product and the adapter's two thin products (rank columns)
// are separate GEMMs; the last one adds h·B onto x·W + b (β = 1) and applies
// the activation in its epilogue, so y is written once more, not twice.
void dense_lora_forward(const float* x, const float* W, const float* b, const float* A,
                        const float* B, float scale, float* h, float* y, float* z,
                        int64_t batch, int64_t in, int64_t out, int64_t rank, Activation act,
                        float alpha) {
    gemm(false, false, batch, rank, in, scale, x, in, A, rank, 0.0f, h, rank);  // h = s·x·A
    GemmEpilogue base, adapter;
    base.bias = b;
    const bool keep_z = act == Activation::gelu && z;  // GELU's backward needs z
    float* pre = keep_z ? z : y;
    gemm(false, false, batch, out, in, 1.0f, x, in, W, out, 0.0f, pre, out, base);
    if (epilogue_can_apply(act, z)) adapter.activation = act, adapter.alpha = alpha;
    gemm(false, false, batch, out, rank, 1.0f, h, rank, B, out, 1.0f, pre, out, adapter);
    if (act == Activation::softmax)
        softmax_forward(y, y, batch, out);
    else if (keep_z)
        activation_forward(act, z, y, batch * out, alpha);
}

void dense_lora_backward(const float* x, const float* W, const float* A, const float* B,
                         float scale, const float* h, const float* z, const float* y,
                         const float* dy, float* dz, float* dh, float* dA, float* dB, float* dx,
                         int64_t batch, int64_t in, int64_t out, int64_t rank, Activation act,
                         float alpha, bool accumulate_dx) {
    if (act == Activation::softmax)
        softmax_backward(y, dy, dz, batch, out);
    else
        activation_and_bias_grad(z, y, dy, dz, nullptr, batch, out, act, alpha);
    if (dB) gemm(true, false, rank, out, batch, 1.0f, h, rank, dz, out, 0.0f, dB, out);  // hᵀ·dz
    if (!dA && !dx) return;
    gemm(false, true, batch, rank, out, scale, dz, out, B, out, 0.0f, dh, rank);  // s·dz·Bᵀ
    if (dA) gemm(true, false, in, rank, batch, 1.0f, x, in, dh, rank, 0.0f, dA, rank);  // xᵀ·dh
    if (dx) {
        const float beta = accumulate_dx ? 1.0f : 0.0f;
        gemm(false, true, batch, in, out, 1.0f, dz, out, W, out, beta, dx, in);   // dz·Wᵀ
        gemm(false, true, batch, in, rank, 1.0f, dh, rank, A, rank, 1.0f, dx, in);  // + dh·Aᵀ
    }
}

namespace {

// y = f(pre) on a (batch, out) matrix with the reference kernels: softmax row
// by row, any other activation elementwise.
void reference_activation_forward(Activation act, const float* pre, float* y, int64_t batch,
                                  int64_t out, float alpha) {
    if (act == Activation::softmax)
        reference::softmax_forward(pre, y, batch, out);
    else
        reference::activation_forward(act, pre, y, batch * out, alpha);
}

// dz = dy ⊙ f'(z), the same split.
void reference_activation_backward(Activation act, const float* z, const float* y,
                                   const float* dy, float* dz, int64_t batch, int64_t out,
                                   float alpha) {
    if (act == Activation::softmax)
        reference::softmax_backward(y, dy, dz, batch, out);
    else
        reference::activation_backward(act, z, y, dy, dz, batch * out, alpha);
}

}  // namespace

// Reference implementations: the same steps with the reference kernels, one
// operation at a time.
void reference::dense_forward(const float* x, const float* W, const float* b, float* y, float* z,
                              int64_t batch, int64_t in, int64_t out, Activation act,
                              float alpha) {
    GemmEpilogue ep;
    ep.bias = b;
    float* pre = z ? z : y;
    reference::gemm(false, false, batch, out, in, 1.0f, x, in, W, out, 0.0f, pre, out, ep);
    reference_activation_forward(act, pre, y, batch, out, alpha);
}

void reference::dense_backward(const float* x, const float* W, const float* z, const float* y,
                               const float* dy, float* dz, float* dW, float* db, float* dx,
                               int64_t batch, int64_t in, int64_t out, Activation act,
                               float alpha) {
    reference_activation_backward(act, z, y, dy, dz, batch, out, alpha);
    if (db) reference::bias_grad(dz, db, batch, out);
    if (dW) reference::gemm(true, false, in, out, batch, 1.0f, x, in, dz, out, 0.0f, dW, out);
    if (dx) reference::gemm(false, true, batch, in, out, 1.0f, dz, out, W, out, 0.0f, dx, in);
}

// The LoRA reference materialises nothing either, but runs every step with the
// reference kernels, one operation at a time.
void reference::dense_lora_forward(const float* x, const float* W, const float* b,
                                   const float* A, const float* B, float scale, float* h,
                                   float* y, float* z, int64_t batch, int64_t in, int64_t out,
                                   int64_t rank, Activation act, float alpha) {
    GemmEpilogue ep;
    ep.bias = b;
    float* pre = z ? z : y;
    reference::gemm(false, false, batch, rank, in, scale, x, in, A, rank, 0.0f, h, rank);
    reference::gemm(false, false, batch, out, in, 1.0f, x, in, W, out, 0.0f, pre, out, ep);
    reference::gemm(false, false, batch, out, rank, 1.0f, h, rank, B, out, 1.0f, pre, out);
    reference_activation_forward(act, pre, y, batch, out, alpha);
}

void reference::dense_lora_backward(const float* x, const float* W, const float* A,
                                    const float* B, float scale, const float* h, const float* z,
                                    const float* y, const float* dy, float* dz, float* dh,
                                    float* dA, float* dB, float* dx, int64_t batch, int64_t in,
                                    int64_t out, int64_t rank, Activation act, float alpha,
                                    bool accumulate_dx) {
    reference_activation_backward(act, z, y, dy, dz, batch, out, alpha);
    reference::gemm(false, true, batch, rank, out, scale, dz, out, B, out, 0.0f, dh, rank);
    if (dB) reference::gemm(true, false, rank, out, batch, 1.0f, h, rank, dz, out, 0.0f, dB, out);
    if (dA) reference::gemm(true, false, in, rank, batch, 1.0f, x, in, dh, rank, 0.0f, dA, rank);
    if (dx) {
        const float beta = accumulate_dx ? 1.0f : 0.0f;
        reference::gemm(false, true, batch, in, out, 1.0f, dz, out, W, out, beta, dx, in);
        reference::gemm(false, true, batch, in, rank, 1.0f, dh, rank, A, rank, 1.0f, dx, in);
    }
}

}  // namespace fz
