// conv.h — convolution, pooling and batch normalization on NHWC images.
//
// Images are (N, H, W, C): batch, height, width, channels, channels fastest
// (Keras's channels_last). A 2-D sliding window (a convolution kernel or a
// pooling window) of kh×kw moves with strides (sh, sw) over the image padded
// with pad_top rows and pad_left columns before it (and whatever is needed
// after it). Output position (oh, ow) sees input rows and columns
//
//   ih = oh·sh − pad_top + i,   iw = ow·sw − pad_left + j,   0 ≤ i < kh, 0 ≤ j < kw
//
// and positions outside [0, H)×[0, W) are padding. Padding follows Keras:
//   valid  no padding:  Ho = ⌊(H − kh) / sh⌋ + 1   (0 when kh > H)
//   same   Ho = ⌈H / sh⌉, total padding max((Ho − 1)·sh + kh − H, 0), the
//          smaller half (total / 2) on top, the rest at the bottom (TensorFlow)
// and likewise for the columns. Every window then holds at least one real
// input, so max and average pooling are always defined.
//
// Each op is an <op>_forward / <op>_backward pair, llm.c style; outputs are
// written, never accumulated into; workspaces are the caller's, so no kernel
// allocates memory. Every kernel is deterministic: each output is computed by
// one thread in a fixed order, so results are bit-identical for any thread count.
#pragma once
#include <cstdint>

#include "activations.h"

namespace fz {

enum class Padding : int { valid = 0, same = 1 };

// The geometry of one sliding-window op on an (n, h, w, c) batch.
struct Window2d {
    int64_t n, h, w, c;         // input
    int64_t kh, kw;             // window
    int64_t sh, sw;             // strides
    int64_t pad_top, pad_left;  // padding before the first row / column
    int64_t ho, wo;             // output height and width (0 if the window never fits)

    int64_t patch() const { return kh * kw * c; }     // values under one window
    int64_t positions() const { return n * ho * wo; }  // windows in the batch
};

// The geometry above for kernel/pool size (kh, kw), strides (sh, sw) >= 1.
Window2d make_window2d(int64_t n, int64_t h, int64_t w, int64_t c, int64_t kh, int64_t kw,
                       int64_t sh, int64_t sw, Padding padding);

// ---------------------------------------------------------------- conv2d
//
// x: (N, H, W, C), kernel: (kh, kw, C, F), bias: (F,) or null, y: (N, Ho, Wo, F)
//   y[n,oh,ow,f] = act(bias[f] + Σ_{i,j,c} x[n, oh·sh−pt+i, ow·sw−pl+j, c] · kernel[i,j,c,f])
// (padding reads as 0). As matrices this is a Dense layer applied to every
// window: cols = im2col(x) is (N·Ho·Wo, kh·kw·C), one row per window, laid out
// (i, j, c) like the kernel's rows, so
//   y = act(cols · K + bias),   K = kernel viewed as (kh·kw·C, F),
// one GEMM with the bias and activation in its epilogue (elementwise
// activations only: not softmax). cols is never built whole: conv2d.cpp
// builds it a block of rows at a time, in cache, for the GEMM micro-kernel.
void conv2d_forward(const Window2d& g, const float* x, const float* kernel, const float* bias,
                    int64_t filters, Activation act, float alpha, float* y);

// dy: (N, Ho, Wo, F), ∂L/∂y. With z = cols·K + b and y = act(z):
//   dz      = dy · act'(z)           (N, Ho, Wo, F)   act' written in terms of y (activations.h)
//   dkernel = colsᵀ · dz             (kh·kw·C, F)     skipped if dkernel is null
//   dbias   = Σ_rows dz              (F,)             skipped if dbias is null
//   dx      = col2im(dz · Kᵀ)        (N, H, W, C)     skipped if dx is null
// col2im adds each row of dcols = dz · Kᵀ back onto the input values its
// window read (windows overlap, so inputs collect several terms). x is the
// forward's input (cols = im2col(x) is rebuilt block by block), y its output
// (read only when act is not identity; then dz never exists whole either).
// act: an activation whose derivative needs only y (not GELU, not softmax).
void conv2d_backward(const Window2d& g, const float* x, const float* kernel, const float* dy,
                     int64_t filters, float* dkernel, float* dbias, float* dx,
                     Activation act = Activation::identity, const float* y = nullptr,
                     float alpha = 0.0f);

// The two above with a given GEMM plan: its micro-kernel, and its kc, where
// the forward's sums over a window are cut (the tests run every available
// micro-kernel with several cache sizes).
struct GemmPlan;
void conv2d_forward_with_plan(const GemmPlan& plan, const Window2d& g, const float* x,
                              const float* kernel, const float* bias, int64_t filters,
                              Activation act, float alpha, float* y);
void conv2d_backward_with_plan(const GemmPlan& plan, const Window2d& g, const float* x,
                               const float* kernel, const float* dy, int64_t filters,
                               float* dkernel, float* dbias, float* dx, Activation act,
                               const float* y, float alpha);

// ---------------------------------------------------------------- pooling
//
// x: (N, H, W, C), y: (N, Ho, Wo, C), each channel pooled on its own.

// y[n,oh,ow,c] = max over the window's real inputs. argmax: (N, Ho, Wo, C)
// gets the offset (ih·W + iw)·C + c of that maximum inside image n (the first
// one on ties), which is all backward needs.
void max_pool2d_forward(const Window2d& g, const float* x, float* y, int32_t* argmax);

// dx[n] = Σ over outputs of dy[n,oh,ow,c] placed at argmax: the gradient flows
// only to the input that won. dy, argmax: (N, Ho, Wo, C), dx: (N, H, W, C).
void max_pool2d_backward(const Window2d& g, const float* dy, const int32_t* argmax, float* dx);

// y = the mean of the window's real inputs: with "same" padding the edge
// windows divide by how many inputs they cover, not kh·kw (as Keras).
void avg_pool2d_forward(const Window2d& g, const float* x, float* y);

// dx[input] = Σ over windows covering it of dy[window] / count(window).
void avg_pool2d_backward(const Window2d& g, const float* dy, float* dx);

// x: (N, H, W, C), y: (N, C). y[n,c] = (1 / H·W) Σ_{h,w} x[n,h,w,c].
void global_avg_pool2d_forward(const float* x, float* y, int64_t n, int64_t h, int64_t w,
                               int64_t c);

// dy: (N, C), dx: (N, H, W, C). dx[n,h,w,c] = dy[n,c] / (H·W).
void global_avg_pool2d_backward(const float* dy, float* dx, int64_t n, int64_t h, int64_t w,
                                int64_t c);

// ---------------------------------------------------------------- batch norm
//
// x, y: (rows, C): the last axis is the channel, every other axis (N·H·W for
// images, N for vectors) a row. Per channel c, over the rows r:
//   training   μ_c = (1/m) Σ_r x[r,c],   σ²_c = (1/m) Σ_r (x[r,c] − μ_c)²   (biased, m = rows)
//              moving_mean ← momentum·moving_mean + (1 − momentum)·μ     (Keras's update;
//              moving_var  ← momentum·moving_var  + (1 − momentum)·σ²     biased σ², as Keras)
//   inference  μ = moving_mean, σ² = moving_var
//   both       y = γ · (x − μ) · s + β,   s = 1 / √(σ² + ε)
// mean, inv_std: (C,) outputs μ and s, kept for backward. The sums are taken
// in double, rows in order, one channel block per thread.
void batch_norm_forward(const float* x, const float* gamma, const float* beta, float* moving_mean,
                        float* moving_var, bool training, float momentum, float epsilon,
                        float* mean, float* inv_std, float* y, int64_t rows, int64_t channels);

// With x̂ = (x − μ)·s and per-channel sums over the rows:
//   dβ = Σ dy,   dγ = Σ dy·x̂
//   training   dx = γ·s · (dy − dβ/m − x̂·dγ/m)   (μ and σ² depend on x too)
//   inference  dx = γ·s · dy                      (μ, σ² are constants)
// mean, inv_std: from batch_norm_forward with the same `training`.
void batch_norm_backward(const float* x, const float* gamma, const float* mean,
                         const float* inv_std, const float* dy, bool training, float* dx,
                         float* dgamma, float* dbeta, int64_t rows, int64_t channels);

// Plain serial loops straight from the formulas above (convolution as direct
// sums over the window, no im2col), accumulated in double: the oracle the fast
// kernels are tested against. They need no workspace, and conv2d's backward
// reads x itself rather than its im2col.
namespace reference {
void conv2d_forward(const Window2d& g, const float* x, const float* kernel, const float* bias,
                    int64_t filters, Activation act, float alpha, float* y);
void conv2d_backward(const Window2d& g, const float* x, const float* kernel, const float* dy,
                     int64_t filters, float* dkernel, float* dbias, float* dx,
                     Activation act = Activation::identity, const float* y = nullptr,
                     float alpha = 0.0f);
void max_pool2d_forward(const Window2d& g, const float* x, float* y, int32_t* argmax);
void max_pool2d_backward(const Window2d& g, const float* dy, const int32_t* argmax, float* dx);
void avg_pool2d_forward(const Window2d& g, const float* x, float* y);
void avg_pool2d_backward(const Window2d& g, const float* dy, float* dx);
void global_avg_pool2d_forward(const float* x, float* y, int64_t n, int64_t h, int64_t w,
                               int64_t c);
void global_avg_pool2d_backward(const float* dy, float* dx, int64_t n, int64_t h, int64_t w,
                                int64_t c);
void batch_norm_forward(const float* x, const float* gamma, const float* beta, float* moving_mean,
                        float* moving_var, bool training, float momentum, float epsilon,
                        float* mean, float* inv_std, float* y, int64_t rows, int64_t channels);
void batch_norm_backward(const float* x, const float* gamma, const float* mean,
                         const float* inv_std, const float* dy, bool training, float* dx,
                         float* dgamma, float* dbeta, int64_t rows, int64_t channels);
}  // namespace reference

}  // namespace fz
