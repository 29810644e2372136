// conv.cpp — the window geometry, pooling and batch normalization on NHWC
// images, and the plain references of every kernel in conv.h (the convolution
// itself is in conv2d.cpp).
//
// Parallel work is split so that every output value belongs to one thread and
// is computed in a fixed order:
//   - the pooling forwards and batch norm's normalisation split the output
//     rows (one row per window, or per pixel);
//   - the pooling backwards, which scatter into the input, split the images:
//     windows overlap inside an image, never across images, so a thread that
//     owns image n owns every value its windows add to, and adds them in
//     window order — no atomics, the same sums for any thread count;
//   - per-channel sums (batch norm) split the channels and add rows in order.
// The loops over channels are the innermost, contiguous in NHWC, and compiled
// once per instruction set (simd.h).
#include "conv.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "conv_window.h"
#include "parallel.h"
#include "reductions.h"
#include "simd.h"

namespace fz {
namespace {

// Below ~16K values starting a parallel region costs more than it saves.
constexpr int64_t kGrain = 16384;

// Work items per parallel chunk when each item touches `item_size` values.
int64_t grain_for(int64_t item_size) {
    return std::max<int64_t>(1, kGrain / std::max<int64_t>(item_size, 1));
}

// One axis of the window geometry (see conv.h): output size and padding before.
void window_axis(int64_t in, int64_t k, int64_t stride, Padding padding, int64_t* out,
                 int64_t* pad_before) {
    if (padding == Padding::valid) {
        *out = in >= k ? (in - k) / stride + 1 : 0;
        *pad_before = 0;
    } else {
        *out = (in + stride - 1) / stride;
        *pad_before = std::max<int64_t>((*out - 1) * stride + k - in, 0) / 2;
    }
}

// take ? a : b for ints, written with a bit mask because GCC turns the ?: form
// into a branch, which stops the loop around it from being vectorised.
int32_t select(bool take, int32_t a, int32_t b) {
    const int32_t mask = -static_cast<int32_t>(take);  // all ones or all zeros
    return (a & mask) | (b & ~mask);
}

// The backwards of pooling scatter into the input: dx = 0, then add(n, img)
// adds the contributions of image n's windows into img = dx + n·H·W·C.
// Split over images (see the top), each image's windows added in order.
template <class Add>
void scatter_per_image(const Window2d& g, float* dx, const Add& add) {
    const int64_t image = g.h * g.w * g.c;
    parallel_for(0, g.n, grain_for(image), [&](int64_t n0, int64_t n1) {
        for (int64_t n = n0; n < n1; ++n) {
            float* img = dx + n * image;
            std::fill_n(img, image, 0.0f);
            add(n, img);
        }
    });
}

// Calls f(r, n, clip) for the windows r in [r0, r1) (r = (n·Ho + oh)·Wo + ow),
// in order; clip is the part of window r inside image n. Compiled once per
// instruction set with f inlined (simd.h), so f's loops over channels vectorise.
template <class F>
FZ_SIMD_CLONES void for_each_window(const Window2d& g, int64_t r0, int64_t r1, const F& f) {
    const int64_t windows = g.ho * g.wo;
    int64_t n = r0 / windows, oh = r0 % windows / g.wo, ow = r0 % g.wo;
    for (int64_t r = r0; r < r1; ++r) {
        f(r, n, clip_window(g, oh, ow));
        if (++ow == g.wo) {
            ow = 0;
            if (++oh == g.ho) oh = 0, ++n;
        }
    }
}

// The channel loops of the pooling kernels. __restrict promises the arrays do
// not overlap, which lets GCC vectorise them without a run-time overlap check
// (that check would cost more than the few vectors of one pixel).

// best, where = in[c] and its offset (max pooling's first cell).
inline void start_max(const float* __restrict in, int32_t at, int32_t channels,
                      float* __restrict best, int32_t* __restrict where) {
    for (int32_t c = 0; c < channels; ++c) {
        best[c] = in[c];
        where[c] = at + c;
    }
}

// best, where = the value and offset of in[c] where it is larger (max pooling).
// (32-bit loop counters, like the offsets: 64-bit ones would make GCC widen
// and narrow every vector of offsets.)
inline void keep_larger(const float* __restrict in, int32_t at, int32_t channels,
                        float* __restrict best, int32_t* __restrict where) {
    // Selects, not an if: on real data "larger?" is a coin flip the branch
    // predictor loses, while selects vectorise.
    for (int32_t c = 0; c < channels; ++c) {
        const float v = in[c], b = best[c];
        const bool larger = v > b;  // strict: the first maximum wins ties
        best[c] = larger ? v : b;
        where[c] = select(larger, at + c, where[c]);
    }
}

// out += grad · scale.
inline void add_scaled(const float* __restrict grad, float scale, int64_t channels,
                       float* __restrict out) {
    for (int64_t c = 0; c < channels; ++c) out[c] += grad[c] * scale;
}

// out += in.
inline void add_into(const float* __restrict in, int64_t channels, float* __restrict out) {
    for (int64_t c = 0; c < channels; ++c) out[c] += in[c];
}

// Windows [r0, r1) of max pooling: each output keeps the first largest value of its window.
void max_pool_windows(const Window2d& g, const float* x, int64_t r0, int64_t r1, float* y,
                      int32_t* argmax) {
    const int64_t image = g.h * g.w * g.c;
    const auto channels = static_cast<int32_t>(g.c);
    for_each_window(g, r0, r1, [&](int64_t r, int64_t n, const Clip& cl) {
        const float* img = x + n * image;
        float* best = y + r * g.c;
        int32_t* where = argmax + r * g.c;
        // Start from the window's first real pixel (every window has one),
        // then compare with the others.
        const auto first = static_cast<int32_t>(pixel(g, cl.ih0 + cl.i_lo, cl.iw0 + cl.j_lo));
        start_max(img + first, first, channels, best, where);
        for (int64_t i = cl.i_lo; i < cl.i_hi; ++i)
            for (int64_t j = i == cl.i_lo ? cl.j_lo + 1 : cl.j_lo; j < cl.j_hi; ++j) {
                const auto at = static_cast<int32_t>(pixel(g, cl.ih0 + i, cl.iw0 + j));
                keep_larger(img + at, at, channels, best, where);
            }
    });
}

// Windows [r0, r1) of average pooling: the mean of the window's real inputs.
void avg_pool_windows(const Window2d& g, const float* x, int64_t r0, int64_t r1, float* y) {
    const int64_t image = g.h * g.w * g.c;
    for_each_window(g, r0, r1, [&](int64_t r, int64_t n, const Clip& cl) {
        const float* img = x + n * image;
        float* out = y + r * g.c;
        std::fill_n(out, g.c, 0.0f);
        for (int64_t i = cl.i_lo; i < cl.i_hi; ++i)
            for (int64_t j = cl.j_lo; j < cl.j_hi; ++j)
                add_into(img + pixel(g, cl.ih0 + i, cl.iw0 + j), g.c, out);
        const float inv_count = 1.0f / static_cast<float>(cl.count());
        for (int64_t c = 0; c < g.c; ++c) out[c] *= inv_count;
    });
}

// The windows of image n of average pooling's backward, in order: each
// shares its gradient equally among the inputs it covered.
FZ_SIMD_CLONES void avg_pool_backward_image(const Window2d& g, const float* dy, int64_t n,
                                            float* img) {
    const int64_t windows = g.ho * g.wo;
    for_each_window(g, n * windows, (n + 1) * windows, [&](int64_t r, int64_t, const Clip& cl) {
        const float inv_count = 1.0f / static_cast<float>(cl.count());
        for (int64_t i = cl.i_lo; i < cl.i_hi; ++i)
            for (int64_t j = cl.j_lo; j < cl.j_hi; ++j)
                add_scaled(dy + r * g.c, inv_count, g.c, img + pixel(g, cl.ih0 + i, cl.iw0 + j));
    });
}

// Channel blocks of 16 floats (one 64-byte cache line of the outputs) per thread.
constexpr int64_t kChannelBlock = 16;

// For every channel c: finish(c, Σ_r term(r, c)), the sum over rows r in order,
// in double. Threads split the channels in blocks and each adds all rows for
// its block, so every sum is the same sequence of additions for any thread
// count. The inner loop runs along the channels of one row (contiguous).
template <class Term, class Finish>
void channel_sums(int64_t rows, int64_t channels, const Term& term, const Finish& finish) {
    const int64_t blocks = (channels + kChannelBlock - 1) / kChannelBlock;
    parallel_for(0, blocks, grain_for(rows * kChannelBlock), [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b) {
            const int64_t c0 = b * kChannelBlock;
            const int64_t nc = std::min(kChannelBlock, channels - c0);
            double acc[kChannelBlock] = {};
            for (int64_t r = 0; r < rows; ++r)
                for (int64_t j = 0; j < nc; ++j) acc[j] += term(r, c0 + j);
            for (int64_t j = 0; j < nc; ++j) finish(c0 + j, acc[j]);
        }
    });
}

// Calls f(i, c) for every element of a (rows, channels) array, split over rows.
template <class F>
void for_each_element(int64_t rows, int64_t channels, const F& f) {
    parallel_for(0, rows, grain_for(channels), [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r)
            for (int64_t c = 0; c < channels; ++c) f(r * channels + c, c);
    });
}

}  // namespace

Window2d make_window2d(int64_t n, int64_t h, int64_t w, int64_t c, int64_t kh, int64_t kw,
                       int64_t sh, int64_t sw, Padding padding) {
    Window2d g{n, h, w, c, kh, kw, sh, sw, 0, 0, 0, 0};
    window_axis(h, kh, sh, padding, &g.ho, &g.pad_top);
    window_axis(w, kw, sw, padding, &g.wo, &g.pad_left);
    return g;
}

// ---------------------------------------------------------------- pooling

// The forwards are parallel over the windows, the backwards over the images.
void max_pool2d_forward(const Window2d& g, const float* x, float* y, int32_t* argmax) {
    parallel_for(0, g.positions(), grain_for(g.kh * g.kw * g.c), [&](int64_t r0, int64_t r1) {
        max_pool_windows(g, x, r0, r1, y, argmax);
    });
}

// dx = 0, then each output's gradient is added to the input that won its window.
void max_pool2d_backward(const Window2d& g, const float* dy, const int32_t* argmax, float* dx) {
    const int64_t per_image = g.ho * g.wo * g.c;
    scatter_per_image(g, dx, [&](int64_t n, float* img) {
        for (int64_t k = n * per_image; k < (n + 1) * per_image; ++k) img[argmax[k]] += dy[k];
    });
}

void avg_pool2d_forward(const Window2d& g, const float* x, float* y) {
    parallel_for(0, g.positions(), grain_for(g.kh * g.kw * g.c), [&](int64_t r0, int64_t r1) {
        avg_pool_windows(g, x, r0, r1, y);
    });
}

// dx = 0, then each output's gradient is shared equally by the inputs its window covered.
void avg_pool2d_backward(const Window2d& g, const float* dy, float* dx) {
    scatter_per_image(g, dx, [&](int64_t n, float* img) { avg_pool_backward_image(g, dy, n, img); });
}

// Parallel over images; each sums its pixels in order, channels contiguous.
void global_avg_pool2d_forward(const float* x, float* y, int64_t n, int64_t h, int64_t w,
                               int64_t c) {
    const int64_t pixels = h * w;
    parallel_for(0, n, grain_for(pixels * c), [&](int64_t n0, int64_t n1) {
        for (int64_t b = n0; b < n1; ++b) {
            float* out = y + b * c;
            std::fill_n(out, c, 0.0f);
            for (int64_t p = 0; p < pixels; ++p) {
                const float* in = x + (b * pixels + p) * c;
                for (int64_t k = 0; k < c; ++k) out[k] += in[k];
            }
            for (int64_t k = 0; k < c; ++k) out[k] /= static_cast<float>(pixels);
        }
    });
}

void global_avg_pool2d_backward(const float* dy, float* dx, int64_t n, int64_t h, int64_t w,
                                int64_t c) {
    const int64_t pixels = h * w;
    const float inv_pixels = 1.0f / static_cast<float>(pixels);
    parallel_for(0, n, grain_for(pixels * c), [&](int64_t n0, int64_t n1) {
        for (int64_t b = n0; b < n1; ++b)
            for (int64_t p = 0; p < pixels; ++p) {
                float* out = dx + (b * pixels + p) * c;
                for (int64_t k = 0; k < c; ++k) out[k] = dy[b * c + k] * inv_pixels;
            }
    });
}

// ---------------------------------------------------------------- batch norm

void batch_norm_forward(const float* x, const float* gamma, const float* beta, float* moving_mean,
                        float* moving_var, bool training, float momentum, float epsilon,
                        float* mean, float* inv_std, float* y, int64_t rows, int64_t channels) {
    const double m = static_cast<double>(rows);
    if (training) {
        channel_sums(rows, channels, [&](int64_t r, int64_t c) { return x[r * channels + c]; },
                     [&](int64_t c, double sum) { mean[c] = static_cast<float>(sum / m); });
        // Two passes (mean, then squared deviations) rather than E[x²] − E[x]²,
        // which cancels catastrophically when |μ| ≫ σ.
        channel_sums(
            rows, channels,
            [&](int64_t r, int64_t c) {
                const double d = static_cast<double>(x[r * channels + c]) - mean[c];
                return d * d;
            },
            [&](int64_t c, double sum) {
                const float var = static_cast<float>(sum / m);
                inv_std[c] = static_cast<float>(1.0 / std::sqrt(static_cast<double>(var) + epsilon));
                moving_mean[c] = moving_mean[c] * momentum + mean[c] * (1.0f - momentum);
                moving_var[c] = moving_var[c] * momentum + var * (1.0f - momentum);
            });
    } else {
        for (int64_t c = 0; c < channels; ++c) {
            mean[c] = moving_mean[c];
            inv_std[c] = static_cast<float>(1.0 / std::sqrt(static_cast<double>(moving_var[c]) + epsilon));
        }
    }
    for_each_element(rows, channels, [&](int64_t i, int64_t c) {
        y[i] = gamma[c] * ((x[i] - mean[c]) * inv_std[c]) + beta[c];
    });
}

void batch_norm_backward(const float* x, const float* gamma, const float* mean,
                         const float* inv_std, const float* dy, bool training, float* dx,
                         float* dgamma, float* dbeta, int64_t rows, int64_t channels) {
    channel_sums(rows, channels, [&](int64_t r, int64_t c) { return dy[r * channels + c]; },
                 [&](int64_t c, double sum) { dbeta[c] = static_cast<float>(sum); });
    channel_sums(
        rows, channels,
        [&](int64_t r, int64_t c) {
            const int64_t i = r * channels + c;
            return static_cast<double>(dy[i]) * ((x[i] - mean[c]) * inv_std[c]);
        },
        [&](int64_t c, double sum) { dgamma[c] = static_cast<float>(sum); });
    if (!dx) return;
    if (!training) {
        for_each_element(rows, channels, [&](int64_t i, int64_t c) {
            dx[i] = gamma[c] * inv_std[c] * dy[i];
        });
        return;
    }
    const float inv_m = 1.0f / static_cast<float>(rows);
    for_each_element(rows, channels, [&](int64_t i, int64_t c) {
        const float x_hat = (x[i] - mean[c]) * inv_std[c];
        dx[i] = gamma[c] * inv_std[c] * (dy[i] - dbeta[c] * inv_m - x_hat * (dgamma[c] * inv_m));
    });
}

// ---------------------------------------------------------------- reference
//
// Straight from the definitions: loops over every window cell with an explicit
// "is this padding?" test, sums in double, one thread.
namespace reference {
namespace {

// Calls f(ih, iw, cell) for every real input pixel (ih, iw) under the window at
// (oh, ow), in (i, j) order; cell = i·kw + j is the window cell it sits in.
template <class F>
void window_cells(const Window2d& g, int64_t oh, int64_t ow, const F& f) {
    for (int64_t i = 0; i < g.kh; ++i)
        for (int64_t j = 0; j < g.kw; ++j) {
            const int64_t ih = oh * g.sh - g.pad_top + i, iw = ow * g.sw - g.pad_left + j;
            if (ih >= 0 && ih < g.h && iw >= 0 && iw < g.w) f(ih, iw, i * g.kw + j);
        }
}

int64_t x_index(const Window2d& g, int64_t n, int64_t ih, int64_t iw, int64_t c) {
    return ((n * g.h + ih) * g.w + iw) * g.c + c;
}

int64_t y_index(const Window2d& g, int64_t n, int64_t oh, int64_t ow, int64_t f, int64_t depth) {
    return ((n * g.ho + oh) * g.wo + ow) * depth + f;
}

}  // namespace

void conv2d_forward(const Window2d& g, const float* x, const float* kernel, const float* bias,
                    int64_t filters, Activation act, float alpha, float* y) {
    for (int64_t n = 0; n < g.n; ++n)
        for (int64_t oh = 0; oh < g.ho; ++oh)
            for (int64_t ow = 0; ow < g.wo; ++ow)
                for (int64_t f = 0; f < filters; ++f) {
                    double sum = bias ? bias[f] : 0.0;
                    window_cells(g, oh, ow, [&](int64_t ih, int64_t iw, int64_t cell) {
                        for (int64_t c = 0; c < g.c; ++c)
                            sum += static_cast<double>(x[x_index(g, n, ih, iw, c)]) *
                                   kernel[(cell * g.c + c) * filters + f];
                    });
                    float& out = y[y_index(g, n, oh, ow, f, filters)];
                    out = static_cast<float>(sum);
                    reference::activation_forward(act, &out, &out, 1, alpha);
                }
}

void conv2d_backward(const Window2d& g, const float* x, const float* kernel, const float* dy,
                     int64_t filters, float* dkernel, float* dbias, float* dx, Activation act,
                     const float* y, float alpha) {
    std::vector<float> dz(dy, dy + g.positions() * filters);
    if (act != Activation::identity)
        reference::activation_backward(act, nullptr, y, dy, dz.data(), dz.size(), alpha);
    std::vector<double> dk(g.patch() * filters, 0.0), db(filters, 0.0),
        dxs(g.n * g.h * g.w * g.c, 0.0);
    for (int64_t n = 0; n < g.n; ++n)
        for (int64_t oh = 0; oh < g.ho; ++oh)
            for (int64_t ow = 0; ow < g.wo; ++ow)
                for (int64_t f = 0; f < filters; ++f) {
                    const double d = dz[y_index(g, n, oh, ow, f, filters)];
                    db[f] += d;
                    window_cells(g, oh, ow, [&](int64_t ih, int64_t iw, int64_t cell) {
                        for (int64_t c = 0; c < g.c; ++c) {
                            const int64_t k = (cell * g.c + c) * filters + f;
                            dk[k] += d * x[x_index(g, n, ih, iw, c)];
                            dxs[x_index(g, n, ih, iw, c)] += d * kernel[k];
                        }
                    });
                }
    if (dkernel) std::copy(dk.begin(), dk.end(), dkernel);
    if (dbias) std::copy(db.begin(), db.end(), dbias);
    if (dx) std::copy(dxs.begin(), dxs.end(), dx);
}

void max_pool2d_forward(const Window2d& g, const float* x, float* y, int32_t* argmax) {
    for (int64_t n = 0; n < g.n; ++n)
        for (int64_t oh = 0; oh < g.ho; ++oh)
            for (int64_t ow = 0; ow < g.wo; ++ow)
                for (int64_t c = 0; c < g.c; ++c) {
                    int64_t best = -1;
                    window_cells(g, oh, ow, [&](int64_t ih, int64_t iw, int64_t) {
                        const int64_t k = x_index(g, n, ih, iw, c);
                        if (best < 0 || x[k] > x[best]) best = k;
                    });
                    const int64_t o = y_index(g, n, oh, ow, c, g.c);
                    y[o] = x[best];
                    argmax[o] = static_cast<int32_t>(best - n * g.h * g.w * g.c);
                }
}

void max_pool2d_backward(const Window2d& g, const float* dy, const int32_t* argmax, float* dx) {
    const int64_t image = g.h * g.w * g.c, per_image = g.ho * g.wo * g.c;
    std::fill_n(dx, g.n * image, 0.0f);
    for (int64_t k = 0; k < g.n * per_image; ++k) dx[k / per_image * image + argmax[k]] += dy[k];
}

void avg_pool2d_forward(const Window2d& g, const float* x, float* y) {
    for (int64_t n = 0; n < g.n; ++n)
        for (int64_t oh = 0; oh < g.ho; ++oh)
            for (int64_t ow = 0; ow < g.wo; ++ow)
                for (int64_t c = 0; c < g.c; ++c) {
                    double sum = 0.0;
                    int64_t count = 0;
                    window_cells(g, oh, ow, [&](int64_t ih, int64_t iw, int64_t) {
                        sum += x[x_index(g, n, ih, iw, c)];
                        ++count;
                    });
                    y[y_index(g, n, oh, ow, c, g.c)] = static_cast<float>(sum / count);
                }
}

void avg_pool2d_backward(const Window2d& g, const float* dy, float* dx) {
    std::vector<double> acc(g.n * g.h * g.w * g.c, 0.0);
    for (int64_t n = 0; n < g.n; ++n)
        for (int64_t oh = 0; oh < g.ho; ++oh)
            for (int64_t ow = 0; ow < g.wo; ++ow) {
                int64_t count = 0;
                window_cells(g, oh, ow, [&](int64_t, int64_t, int64_t) { ++count; });
                for (int64_t c = 0; c < g.c; ++c) {
                    const double d = static_cast<double>(dy[y_index(g, n, oh, ow, c, g.c)]) / count;
                    window_cells(g, oh, ow, [&](int64_t ih, int64_t iw, int64_t) {
                        acc[x_index(g, n, ih, iw, c)] += d;
                    });
                }
            }
    std::copy(acc.begin(), acc.end(), dx);
}

void global_avg_pool2d_forward(const float* x, float* y, int64_t n, int64_t h, int64_t w,
                               int64_t c) {
    for (int64_t b = 0; b < n; ++b)
        for (int64_t k = 0; k < c; ++k) {
            double sum = 0.0;
            for (int64_t p = 0; p < h * w; ++p) sum += x[(b * h * w + p) * c + k];
            y[b * c + k] = static_cast<float>(sum / (h * w));
        }
}

void global_avg_pool2d_backward(const float* dy, float* dx, int64_t n, int64_t h, int64_t w,
                                int64_t c) {
    for (int64_t b = 0; b < n; ++b)
        for (int64_t p = 0; p < h * w; ++p)
            for (int64_t k = 0; k < c; ++k)
                dx[(b * h * w + p) * c + k] = static_cast<float>(static_cast<double>(dy[b * c + k]) / (h * w));
}

void batch_norm_forward(const float* x, const float* gamma, const float* beta, float* moving_mean,
                        float* moving_var, bool training, float momentum, float epsilon,
                        float* mean, float* inv_std, float* y, int64_t rows, int64_t channels) {
    for (int64_t c = 0; c < channels; ++c) {
        double mu, var;
        if (training) {
            double sum = 0.0, sq = 0.0;
            for (int64_t r = 0; r < rows; ++r) sum += x[r * channels + c];
            mu = sum / rows;
            for (int64_t r = 0; r < rows; ++r) sq += (x[r * channels + c] - mu) * (x[r * channels + c] - mu);
            var = sq / rows;
            moving_mean[c] = static_cast<float>(moving_mean[c] * momentum + mu * (1.0 - momentum));
            moving_var[c] = static_cast<float>(moving_var[c] * momentum + var * (1.0 - momentum));
        } else {
            mu = moving_mean[c];
            var = moving_var[c];
        }
        const double s = 1.0 / std::sqrt(var + epsilon);
        mean[c] = static_cast<float>(mu);
        inv_std[c] = static_cast<float>(s);
        for (int64_t r = 0; r < rows; ++r) {
            const int64_t i = r * channels + c;
            y[i] = static_cast<float>(gamma[c] * (x[i] - mu) * s + beta[c]);
        }
    }
}

void batch_norm_backward(const float* x, const float* gamma, const float* mean,
                         const float* inv_std, const float* dy, bool training, float* dx,
                         float* dgamma, float* dbeta, int64_t rows, int64_t channels) {
    for (int64_t c = 0; c < channels; ++c) {
        double db = 0.0, dg = 0.0;
        for (int64_t r = 0; r < rows; ++r) {
            const int64_t i = r * channels + c;
            db += dy[i];
            dg += static_cast<double>(dy[i]) * (x[i] - mean[c]) * inv_std[c];
        }
        dbeta[c] = static_cast<float>(db);
        dgamma[c] = static_cast<float>(dg);
        if (!dx) continue;
        for (int64_t r = 0; r < rows; ++r) {
            const int64_t i = r * channels + c;
            const double x_hat = (x[i] - static_cast<double>(mean[c])) * inv_std[c];
            const double centred = training ? dy[i] - db / rows - x_hat * dg / rows : dy[i];
            dx[i] = static_cast<float>(static_cast<double>(gamma[c]) * inv_std[c] * centred);
        }
    }
}

}  // namespace reference
}  // namespace fz
