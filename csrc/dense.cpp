// dense.cpp — Dense forward/backward as compositions of the GEMM, activation
// and reduction kernels (formulas in dense.h).
#include "dense.h"

#include <algorithm>

#include "gemm.h"
#include "parallel.h"
#include "reductions.h"

namespace fz {

namespace {

// The activation the GEMM epilogue can apply (elementwise, and not GELU, whose
// backward needs z, which the epilogue overwrites).
bool epilogue_can_apply(Activation act) {
    return act != Activation::softmax && act != Activation::gelu;
}

// dz = dy ⊙ f'(z) and db = Σ_rows dz in one pass over dy. Threads split the
// columns, each adding its columns' rows in order, so db is the same for any
// thread count; a slice of at least 16 floats keeps threads off each other's
// cache lines.
void activation_and_bias_grad(const float* z, const float* y, const float* dy, float* dz,
                              float* db, int64_t batch, int64_t out, Activation act, float alpha) {
    const int64_t grain = std::max<int64_t>(16, 16384 / std::max<int64_t>(batch, 1));
    parallel_for(0, out, grain, [=](int64_t lo, int64_t hi) {
        if (db) std::fill(db + lo, db + hi, 0.0f);
        for (int64_t i = 0; i < batch; ++i) {
            const int64_t row = i * out + lo;
            activation_backward(act, z ? z + row : nullptr, y + row, dy + row, dz + row, hi - lo,
                                alpha);
            if (db)
                for (int64_t j = 0; j < hi - lo; ++j) db[lo + j] += dz[row + j];
        }
    });
}

}  // namespace

void dense_forward(const float* x, const float* W, const float* b, float* y, float* z,
                   int64_t batch, int64_t in, int64_t out, Activation act, float alpha) {
    GemmEpilogue ep;
    ep.bias = b;
    if (epilogue_can_apply(act)) {
        ep.activation = act;
        ep.alpha = alpha;
        gemm(false, false, batch, out, in, 1.0f, x, in, W, out, 0.0f, y, out, ep);
    } else if (act == Activation::softmax) {
        gemm(false, false, batch, out, in, 1.0f, x, in, W, out, 0.0f, y, out, ep);
        softmax_forward(y, y, batch, out);
    } else {  // GELU: keep z for the backward pass
        gemm(false, false, batch, out, in, 1.0f, x, in, W, out, 0.0f, z, out, ep);
        activation_forward(act, z, y, batch * out, alpha);
    }
}

void dense_backward(const float* x, const float* W, const float* z, const float* y,
                    const float* dy, float* dz, float* dW, float* db, float* dx, int64_t batch,
                    int64_t in, int64_t out, Activation act, float alpha) {
    if (act == Activation::softmax) {  // row-wise: needs whole rows, so two passes
        softmax_backward(y, dy, dz, batch, out);
        if (db) bias_grad(dz, db, batch, out);
    } else {
        activation_and_bias_grad(z, y, dy, dz, db, batch, out, act, alpha);
    }
    if (dW) gemm(true, false, in, out, batch, 1.0f, x, in, dz, out, 0.0f, dW, out);  // xᵀ·dz
    if (dx) gemm(false, true, batch, in, out, 1.0f, dz, out, W, out, 0.0f, dx, in);  // dz·Wᵀ
}

// Reference implementations: the same steps with the reference kernels, one
// operation at a time.
void reference::dense_forward(const float* x, const float* W, const float* b, float* y, float* z,
                              int64_t batch, int64_t in, int64_t out, Activation act,
                              float alpha) {
    GemmEpilogue ep;
    ep.bias = b;
    float* pre = z ? z : y;
    reference::gemm(false, false, batch, out, in, 1.0f, x, in, W, out, 0.0f, pre, out, ep);
    if (act == Activation::softmax)
        reference::softmax_forward(pre, y, batch, out);
    else
        reference::activation_forward(act, pre, y, batch * out, alpha);
}

void reference::dense_backward(const float* x, const float* W, const float* z, const float* y,
                               const float* dy, float* dz, float* dW, float* db, float* dx,
                               int64_t batch, int64_t in, int64_t out, Activation act,
                               float alpha) {
    if (act == Activation::softmax)
        reference::softmax_backward(y, dy, dz, batch, out);
    else
        reference::activation_backward(act, z, y, dy, dz, batch * out, alpha);
    if (db) reference::bias_grad(dz, db, batch, out);
    if (dW) reference::gemm(true, false, in, out, batch, 1.0f, x, in, dz, out, 0.0f, dW, out);
    if (dx) reference::gemm(false, true, batch, in, out, 1.0f, dz, out, W, out, 0.0f, dx, in);
}

}  // namespace fz
