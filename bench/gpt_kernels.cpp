// gpt_kernels.cpp — times the GPT kernels (embedding, LayerNorm, attention)
// against their plain reference loops, at the sizes of the GPT recipe
// (batch 12, T 64, 4 heads of 32, hidden 128), MiniLM (T 128, 12 heads of 32)
// and one generation step (1 query against 64 cached keys).
//
// Build and run:
//   cmake -S . -B build/bench -DFROMZERO_BUILD_BENCH=ON -DCMAKE_BUILD_TYPE=Release
//   cmake --build build/bench --target fromzero_gpt_kernels_bench
//   build/bench/fromzero_gpt_kernels_bench [threads]
// Prints the median of repeated calls in microseconds, fast and reference.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "attention.h"
#include "cpu_features.h"
#include "embedding.h"
#include "layernorm.h"
#include "parallel.h"

namespace {

std::vector<float> random_vector(size_t n, unsigned seed) {
    std::mt19937 gen(seed);
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    std::vector<float> v(n);
    for (auto& x : v) x = dist(gen);
    return v;
}

// Median wall time of f in microseconds over enough repeats to fill ~0.3 s.
double median_us(const std::function<void()>& f) {
    using clock = std::chrono::steady_clock;
    f();  // warm up caches and thread pools
    std::vector<double> times;
    const auto start = clock::now();
    while (times.size() < 5 || (times.size() < 2000 && clock::now() - start < std::chrono::milliseconds(300))) {
        const auto t0 = clock::now();
        f();
        times.push_back(std::chrono::duration<double, std::micro>(clock::now() - t0).count());
    }
    std::nth_element(times.begin(), times.begin() + times.size() / 2, times.end());
    return times[times.size() / 2];
}

void row(const char* name, const std::function<void()>& fast, const std::function<void()>& ref) {
    const double f = median_us(fast), r = median_us(ref);
    std::printf("%-44s %10.1f %12.1f %8.1fx\n", name, f, r, r / f);
}

void bench_attention(const char* name, fz::AttentionShape s, bool causal, bool padding,
                     bool backward) {
    const auto q = random_vector(s.batch * s.q_len * s.heads * s.key_dim, 1);
    const auto k = random_vector(s.batch * s.kv_len * s.heads * s.key_dim, 2);
    const auto v = random_vector(s.batch * s.kv_len * s.heads * s.value_dim, 3);
    const auto dout = random_vector(s.batch * s.q_len * s.heads * s.value_dim, 4);
    std::vector<float> probs(s.batch * s.heads * s.q_len * s.kv_len), out(dout.size()),
        dq(q.size()), dk(k.size()), dv(v.size());
    std::vector<uint8_t> keep(s.batch * s.kv_len, 1);
    fz::AttentionMask mask;
    mask.causal = causal;
    mask.causal_offset = s.kv_len - s.q_len;
    if (padding) {  // the last quarter of every sequence is padding
        for (int64_t b = 0; b < s.batch; ++b)
            for (int64_t j = s.kv_len * 3 / 4; j < s.kv_len; ++j) keep[b * s.kv_len + j] = 0;
        mask.keep = keep.data();
        mask.keep_batch = s.kv_len;
    }
    const float scale = 1.0f / std::sqrt(static_cast<float>(s.key_dim));
    auto heads = [&](auto* data, int64_t T, int64_t D) {
        return fz::contiguous_heads(data, T, s.heads, D);
    };
    auto forward = [&](auto f) {
        return [&, f] {
            f(s, scale, heads(q.data(), s.q_len, s.key_dim), heads(k.data(), s.kv_len, s.key_dim),
              heads(v.data(), s.kv_len, s.value_dim), mask, probs.data(),
              heads(out.data(), s.q_len, s.value_dim), fz::AttentionDropout{});
        };
    };
    auto backward_fn = [&](auto f) {
        return [&, f] {
            f(s, scale, heads(q.data(), s.q_len, s.key_dim), heads(k.data(), s.kv_len, s.key_dim),
              heads(v.data(), s.kv_len, s.value_dim), probs.data(),
              heads(dout.data(), s.q_len, s.value_dim), mask, heads(dq.data(), s.q_len, s.key_dim),
              heads(dk.data(), s.kv_len, s.key_dim), heads(dv.data(), s.kv_len, s.value_dim),
              fz::AttentionDropout{});
        };
    };
    char label[128];
    std::snprintf(label, sizeof label, "attention forward  %s", name);
    row(label, forward(fz::attention_forward), forward(fz::reference::attention_forward));
    if (!backward) return;
    fz::attention_forward(s, scale, heads(q.data(), s.q_len, s.key_dim),
                          heads(k.data(), s.kv_len, s.key_dim), heads(v.data(), s.kv_len, s.value_dim),
                          mask, probs.data(), heads(out.data(), s.q_len, s.value_dim));
    std::snprintf(label, sizeof label, "attention backward %s", name);
    row(label, backward_fn(fz::attention_backward), backward_fn(fz::reference::attention_backward));
}

void bench_layernorm(int64_t rows, int64_t C) {
    const auto x = random_vector(rows * C, 1), gamma = random_vector(C, 2),
               beta = random_vector(C, 3), dy = random_vector(rows * C, 4);
    std::vector<float> y(rows * C), mean(rows), rstd(rows), dx(rows * C), dgamma(C), dbeta(C);
    auto forward = [&](auto f) {
        return [&, f] { f(x.data(), gamma.data(), beta.data(), y.data(), mean.data(), rstd.data(), rows, C, 1e-5f); };
    };
    auto backward = [&](auto f) {
        return [&, f] {
            f(x.data(), gamma.data(), mean.data(), rstd.data(), dy.data(), dx.data(), dgamma.data(),
              dbeta.data(), rows, C);
        };
    };
    char label[128];
    std::snprintf(label, sizeof label, "layernorm forward  %lldx%lld", (long long)rows, (long long)C);
    row(label, forward(fz::layernorm_forward), forward(fz::reference::layernorm_forward));
    std::snprintf(label, sizeof label, "layernorm backward %lldx%lld", (long long)rows, (long long)C);
    row(label, backward(fz::layernorm_backward), backward(fz::reference::layernorm_backward));
}

void bench_embedding(int64_t n, int64_t vocab, int64_t dim) {
    std::vector<int32_t> ids(n);
    for (int64_t i = 0; i < n; ++i) ids[i] = static_cast<int32_t>((i * 7919) % vocab);
    const auto W = random_vector(vocab * dim, 1), dy = random_vector(n * dim, 2);
    std::vector<float> y(n * dim), dW(vocab * dim);
    char label[128];
    std::snprintf(label, sizeof label, "embedding forward  n=%lld vocab=%lld dim=%lld", (long long)n,
                  (long long)vocab, (long long)dim);
    row(label, [&] { fz::embedding_forward(ids.data(), W.data(), y.data(), n, dim); },
        [&] { fz::reference::embedding_forward(ids.data(), W.data(), y.data(), n, dim); });
    std::snprintf(label, sizeof label, "embedding backward n=%lld vocab=%lld dim=%lld", (long long)n,
                  (long long)vocab, (long long)dim);
    row(label, [&] { fz::embedding_backward(ids.data(), dy.data(), dW.data(), n, vocab, dim); },
        [&] { fz::reference::embedding_backward(ids.data(), dy.data(), dW.data(), n, vocab, dim); });
}

// The roof of every fp32 kernel: one core's multiply-add throughput, measured
// by 12 independent chains of fused multiply-adds (enough to cover the FMA
// latency on two pipes), best of many short runs so other load drops out.
// 2 FLOPs per lane per FMA. A Zen 4 core gives the same with 256- and
// 512-bit vectors (two 256-bit pipes; a 512-bit FMA takes both).
#if defined(__x86_64__)
__attribute__((target("avx2,fma"), noinline)) float fma_chains(int64_t iters) {
    __m256 x[12];
    for (int i = 0; i < 12; ++i) x[i] = _mm256_set1_ps(1.0f + 1e-3f * static_cast<float>(i));
    const __m256 m = _mm256_set1_ps(0.9999f), c = _mm256_set1_ps(1e-4f);
    for (int64_t k = 0; k < iters; ++k)
#pragma GCC unroll 12
        for (int i = 0; i < 12; ++i) x[i] = _mm256_fmadd_ps(x[i], m, c);
    float sum = 0.0f;
    for (int i = 0; i < 12; ++i) sum += _mm256_cvtss_f32(x[i]);
    return sum;
}

// GFLOP/s of one core with 256-bit FMAs (AVX2; 0 when the CPU has none).
double fma_peak_gflops() {
    if (!fz::cpu_features().avx2_fma) return 0.0;
    constexpr int64_t iters = 20000;
    double best = 1e30;
    volatile float sink = 0.0f;
    for (int r = 0; r < 2000; ++r) {
        const auto t0 = std::chrono::steady_clock::now();
        sink = sink + fma_chains(iters);
        best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    return static_cast<double>(iters) * 12 * 8 * 2 / best / 1e9;
}
#else
double fma_peak_gflops() { return 0.0; }
#endif

}  // namespace

int main(int argc, char** argv) {
    if (argc > 1) fz::set_num_threads(std::atoi(argv[1]));
    std::printf("fp32 FMA peak of one core (256-bit FMA chains, best of 2000): %.1f GFLOP/s\n",
                fma_peak_gflops());
    std::printf("threads: %d\n%-44s %10s %12s %9s\n", fz::get_num_threads(), "kernel (median us)",
                "fast", "reference", "speedup");
    bench_embedding(12 * 64, 65, 128);
    bench_embedding(12 * 64, 50304, 128);
    bench_layernorm(12 * 64, 128);
    bench_layernorm(32 * 128, 384);
    bench_attention("GPT B12 H4 T64 d32 causal", {12, 4, 64, 64, 32, 32}, true, false, true);
    bench_attention("GPT B1 H4 Tq1 Tk64 d32 (cache)", {1, 4, 1, 64, 32, 32}, true, false, false);
    bench_attention("MiniLM B32 H12 T128 d32 padding", {32, 12, 128, 128, 32, 32}, false, true, true);
    return 0;
}
