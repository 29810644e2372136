// Scaled dot-product attention: the fast kernels against the reference on
// awkward shapes (T = 1, 7, 65; head_dim 1, 33; Tq ≠ Tk; dk ≠ dv), every kind
// of mask, three memory layouts; fully masked rows; 1 and 2 threads bit for
// bit; one query against a key/value cache equal to the full computation bit
// for bit; the backward against finite differences of a double-precision
// forward; and dropout of the probabilities (the same mask as the reference,
// for any thread count, drawn again by the backward, the right fraction dropped).
#include <array>
#include <cmath>
#include <functional>
#include <random>
#include <string>

#include "attention.h"
#include "random.h"
#include "test_util.h"

namespace fz {
namespace {

using testing::expect_close;
using testing::random_vector;
using testing::ThreadCountGuard;

enum class Layout { bthd, bhtd, padded };
enum class MaskKind { none, causal, padding, causal_padding, full_keep, bias };

const char* name(Layout l) {
    return l == Layout::bthd ? "bthd" : l == Layout::bhtd ? "bhtd" : "padded";
}
const char* name(MaskKind m) {
    const char* names[] = {"none", "causal", "padding", "causal_padding", "full_keep", "bias"};
    return names[static_cast<int>(m)];
}

// A (B, T, H, D) array stored in one of three layouts: contiguous (B, T, H, D);
// PyTorch's (B, H, T, D); or rows padded with unused floats (like slices of a
// fused QKV projection). Unused floats hold a sentinel that must survive.
class Heads {
public:
    Heads(int64_t B, int64_t T, int64_t H, int64_t D, Layout layout) : B_(B), T_(T), H_(H), D_(D) {
        int64_t size = 0;
        switch (layout) {
            case Layout::bthd: strides_ = {T * H * D, H * D, D}; size = B * T * H * D; break;
            case Layout::bhtd: strides_ = {H * T * D, D, T * D}; size = B * H * T * D; break;
            case Layout::padded:
                strides_ = {T * (H * D + 3) + 5, H * D + 3, D};
                size = B * strides_[0];
                break;
        }
        buffer_.assign(static_cast<size_t>(size), kSentinel);
    }
    HeadArray<float> view() { return {buffer_.data(), strides_[0], strides_[1], strides_[2]}; }
    HeadArray<const float> cview() const {
        return {buffer_.data(), strides_[0], strides_[1], strides_[2]};
    }
    // The values in logical (B, T, H, D) order.
    void set(const std::vector<float>& logical) {
        for_each([&](int64_t index, float& x) { x = logical[index]; });
    }
    std::vector<float> get() {
        std::vector<float> logical(B_ * T_ * H_ * D_);
        for_each([&](int64_t index, float& x) { logical[index] = x; });
        return logical;
    }
    int64_t sentinels() const {
        int64_t n = 0;
        for (float x : buffer_) n += x == kSentinel;
        return n;
    }
    int64_t unused() const { return static_cast<int64_t>(buffer_.size()) - B_ * T_ * H_ * D_; }

private:
    static constexpr float kSentinel = -12345.0f;
    template <class F>
    void for_each(F f) {
        int64_t index = 0;
        for (int64_t b = 0; b < B_; ++b)
            for (int64_t t = 0; t < T_; ++t)
                for (int64_t h = 0; h < H_; ++h)
                    for (int64_t d = 0; d < D_; ++d)
                        f(index++, buffer_[b * strides_[0] + t * strides_[1] + h * strides_[2] + d]);
    }
    int64_t B_, T_, H_, D_;
    std::array<int64_t, 3> strides_;
    std::vector<float> buffer_;
};

struct Case {
    AttentionShape s;
    MaskKind mask = MaskKind::none;
    Layout layout = Layout::bthd;
    bool cache_offset = false;  // causal_offset = Tk − Tq instead of 0
    AttentionDropout dropout = {};
};

std::string describe(const Case& c) {
    return "B=" + std::to_string(c.s.batch) + " H=" + std::to_string(c.s.heads) +
           " Tq=" + std::to_string(c.s.q_len) + " Tk=" + std::to_string(c.s.kv_len) +
           " dk=" + std::to_string(c.s.key_dim) + " dv=" + std::to_string(c.s.value_dim) +
           " mask=" + name(c.mask) + " layout=" + name(c.layout) +
           " cache_offset=" + std::to_string(c.cache_offset) +
           " dropout=" + std::to_string(c.dropout.rate);
}

// The mask arrays of a case, and the AttentionMask that reads them.
struct MaskData {
    std::vector<uint8_t> keep;
    std::vector<float> bias;
    AttentionMask mask;
};

MaskData make_mask(const Case& c) {
    const AttentionShape& s = c.s;
    MaskData m;
    std::mt19937 gen(99);
    m.mask.causal = c.mask == MaskKind::causal || c.mask == MaskKind::causal_padding;
    m.mask.causal_offset = c.cache_offset ? s.kv_len - s.q_len : 0;
    if (c.mask == MaskKind::padding || c.mask == MaskKind::causal_padding) {
        // (B, Tk): batch b keeps its first Tk − b keys; so the last batch of a
        // short sequence has every key masked.
        m.keep.resize(s.batch * s.kv_len);
        for (int64_t b = 0; b < s.batch; ++b)
            for (int64_t j = 0; j < s.kv_len; ++j) m.keep[b * s.kv_len + j] = j < s.kv_len - b;
        m.mask.keep = m.keep.data();
        m.mask.keep_batch = s.kv_len;
    } else if (c.mask == MaskKind::full_keep) {
        // (B, Tq, Tk), about 30% masked, and query row 0 of batch 0 fully masked.
        m.keep.resize(s.batch * s.q_len * s.kv_len);
        for (auto& x : m.keep) x = gen() % 10 >= 3;
        for (int64_t j = 0; j < s.kv_len; ++j) m.keep[j] = 0;
        m.mask.keep = m.keep.data();
        m.mask.keep_batch = s.q_len * s.kv_len;
        m.mask.keep_query = s.kv_len;
    } else if (c.mask == MaskKind::bias) {
        // (B, H, Tq, Tk) additive, some entries −∞.
        m.bias = random_vector(s.batch * s.heads * s.q_len * s.kv_len, 98, -2.0f, 2.0f);
        for (auto& x : m.bias)
            if (gen() % 5 == 0) x = -INFINITY;
        m.mask.bias = m.bias.data();
        m.mask.bias_batch = s.heads * s.q_len * s.kv_len;
        m.mask.bias_head = s.q_len * s.kv_len;
        m.mask.bias_query = s.kv_len;
    }
    return m;
}

struct Results {
    std::vector<float> probs, out, dq, dk, dv;
};

using Forward = decltype(&attention_forward);
using Backward = decltype(&attention_backward);

Results run(const Case& c, Forward forward, Backward backward) {
    const AttentionShape& s = c.s;
    Heads q(s.batch, s.q_len, s.heads, s.key_dim, c.layout);
    Heads k(s.batch, s.kv_len, s.heads, s.key_dim, c.layout);
    Heads v(s.batch, s.kv_len, s.heads, s.value_dim, c.layout);
    Heads dout(s.batch, s.q_len, s.heads, s.value_dim, c.layout);
    Heads out(s.batch, s.q_len, s.heads, s.value_dim, c.layout);
    Heads dq(s.batch, s.q_len, s.heads, s.key_dim, c.layout);
    Heads dk(s.batch, s.kv_len, s.heads, s.key_dim, c.layout);
    Heads dv(s.batch, s.kv_len, s.heads, s.value_dim, c.layout);
    q.set(random_vector(s.batch * s.q_len * s.heads * s.key_dim, 1, -2.0f, 2.0f));
    k.set(random_vector(s.batch * s.kv_len * s.heads * s.key_dim, 2, -2.0f, 2.0f));
    v.set(random_vector(s.batch * s.kv_len * s.heads * s.value_dim, 3));
    dout.set(random_vector(s.batch * s.q_len * s.heads * s.value_dim, 4));
    const MaskData m = make_mask(c);
    Results r;
    r.probs.assign(s.batch * s.heads * s.q_len * s.kv_len, NAN);
    const float scale = 1.0f / std::sqrt(static_cast<float>(s.key_dim));
    forward(s, scale, q.cview(), k.cview(), v.cview(), m.mask, r.probs.data(), out.view(),
            c.dropout);
    backward(s, scale, q.cview(), k.cview(), v.cview(), r.probs.data(), dout.cview(), m.mask,
             dq.view(), dk.view(), dv.view(), c.dropout);
    for (Heads* h : {&out, &dq, &dk, &dv}) EXPECT_EQ(h->sentinels(), h->unused());
    r.out = out.get();
    r.dq = dq.get();
    r.dk = dk.get();
    r.dv = dv.get();
    return r;
}

void expect_equal(const Results& a, const Results& b) {
    EXPECT_EQ(a.probs, b.probs);
    EXPECT_EQ(a.out, b.out);
    EXPECT_EQ(a.dq, b.dq);
    EXPECT_EQ(a.dk, b.dk);
    EXPECT_EQ(a.dv, b.dv);
}

void check_against_reference(const Case& c) {
    SCOPED_TRACE(describe(c));
    const Results fast = run(c, attention_forward, attention_backward);
    const Results ref = run(c, reference::attention_forward, reference::attention_backward);
    const float tol = 2e-6f * static_cast<float>(c.s.kv_len + c.s.key_dim + c.s.value_dim);
    expect_close(fast.probs, ref.probs, tol, tol);
    expect_close(fast.out, ref.out, tol, tol);
    expect_close(fast.dq, ref.dq, tol, tol);
    expect_close(fast.dk, ref.dk, tol, tol);
    expect_close(fast.dv, ref.dv, tol, tol);
}

std::vector<AttentionShape> awkward_shapes() {
    return {
        {1, 1, 1, 1, 1, 1},      // everything 1
        {2, 3, 7, 7, 33, 5},     // dk ≠ dv, head_dim 33
        {2, 2, 65, 65, 32, 32},  // past several query blocks
        {3, 1, 7, 13, 8, 1},     // more keys than queries, value dim 1
        {1, 2, 13, 7, 1, 9},     // more queries than keys, key dim 1
        {2, 4, 1, 65, 16, 16},   // one query against 65 cached keys
    };
}

TEST(Attention, MatchesReference) {
    for (int threads : testing::kThreadCounts) {
        ThreadCountGuard guard(threads);
        for (const AttentionShape& s : awkward_shapes())
            for (MaskKind mask : {MaskKind::none, MaskKind::causal, MaskKind::padding,
                                  MaskKind::causal_padding, MaskKind::full_keep, MaskKind::bias})
                for (bool cache_offset : {false, true}) {
                    const bool causal = mask == MaskKind::causal || mask == MaskKind::causal_padding;
                    if (cache_offset && !causal) continue;
                    check_against_reference({s, mask, Layout::bthd, cache_offset});
                }
    }
}

// Strides are honoured: the same logical arrays in other layouts give the same
// numbers bit for bit, and nothing outside the arrays is written.
TEST(Attention, LayoutsGiveIdenticalResults) {
    for (const AttentionShape& s : awkward_shapes())
        for (MaskKind mask : {MaskKind::none, MaskKind::causal_padding, MaskKind::bias}) {
            Case c{s, mask, Layout::bthd};
            SCOPED_TRACE(describe(c));
            const Results base = run(c, attention_forward, attention_backward);
            for (Layout layout : {Layout::bhtd, Layout::padded}) {
                c.layout = layout;
                SCOPED_TRACE(name(layout));
                expect_equal(run(c, attention_forward, attention_backward), base);
            }
        }
}

TEST(Attention, BitIdenticalForOneAndTwoThreads) {
    for (const Case& c : {Case{{2, 3, 65, 65, 33, 33}, MaskKind::causal},
                          Case{{2, 4, 64, 64, 32, 32}, MaskKind::causal},
                          Case{{4, 2, 17, 70, 16, 8}, MaskKind::padding},
                          Case{{2, 2, 40, 40, 32, 32}, MaskKind::bias}}) {
        SCOPED_TRACE(describe(c));
        Results results[2];
        for (int t = 0; t < 2; ++t) {
            ThreadCountGuard guard(t + 1);
            results[t] = run(c, attention_forward, attention_backward);
        }
        expect_equal(results[0], results[1]);
    }
}

// A query row whose keys are all masked attends to nothing: its P and O rows
// are zero (not NaN), it contributes no gradient, and the other rows are
// unaffected.
TEST(Attention, FullyMaskedRowsAreZero) {
    const Case c{{3, 2, 5, 2, 4, 3}, MaskKind::padding};  // batch 2 masks both keys
    const Results r = run(c, attention_forward, attention_backward);
    const int64_t H = 2, Tq = 5, Tk = 2, dk = 4, dv = 3;
    for (int64_t h = 0; h < H; ++h)
        for (int64_t i = 0; i < Tq; ++i) {
            for (int64_t j = 0; j < Tk; ++j) EXPECT_EQ(r.probs[((2 * H + h) * Tq + i) * Tk + j], 0.0f);
            for (int64_t d = 0; d < dv; ++d) EXPECT_EQ(r.out[((2 * Tq + i) * H + h) * dv + d], 0.0f);
            for (int64_t d = 0; d < dk; ++d) EXPECT_EQ(r.dq[((2 * Tq + i) * H + h) * dk + d], 0.0f);
        }
    for (int64_t j = 0; j < Tk; ++j)
        for (int64_t h = 0; h < H; ++h) {
            for (int64_t d = 0; d < dk; ++d) EXPECT_EQ(r.dk[((2 * Tk + j) * H + h) * dk + d], 0.0f);
            for (int64_t d = 0; d < dv; ++d) EXPECT_EQ(r.dv[((2 * Tk + j) * H + h) * dv + d], 0.0f);
        }
    // Batch 1 masks its last key: P there is 0 and the rows still sum to 1.
    for (int64_t h = 0; h < H; ++h)
        for (int64_t i = 0; i < Tq; ++i) {
            const float* p = &r.probs[((1 * H + h) * Tq + i) * Tk];
            EXPECT_EQ(p[1], 0.0f);
            EXPECT_FLOAT_EQ(p[0], 1.0f);
        }
    check_against_reference(c);
}

// A NaN in a query row makes that row's P and O NaN (a fully masked row must
// not hide it as zeros); other rows are untouched.
TEST(Attention, NaNScoresPropagate) {
    for (bool masked : {false, true}) {
        SCOPED_TRACE(masked ? "all keys masked but one NaN" : "no mask");
        const int64_t T = 5, d = 4;
        auto q = random_vector(T * d, 31), k = random_vector(T * d, 32), v = random_vector(T * d, 33);
        q[2 * d + 1] = NAN;  // query row 2
        // Masked: every key hidden by an additive −∞, so only the NaN is left.
        std::vector<float> bias(T * T, masked ? -INFINITY : 0.0f);
        AttentionMask mask;
        mask.bias = bias.data();
        mask.bias_query = T;
        std::vector<float> probs(T * T), out(T * d), ref_probs(T * T), ref_out(T * d);
        const AttentionShape s{1, 1, T, T, d, d};
        attention_forward(s, 0.5f, contiguous_heads<const float>(q.data(), T, 1, d),
                          contiguous_heads<const float>(k.data(), T, 1, d),
                          contiguous_heads<const float>(v.data(), T, 1, d), mask, probs.data(),
                          contiguous_heads(out.data(), T, 1, d));
        reference::attention_forward(s, 0.5f, contiguous_heads<const float>(q.data(), T, 1, d),
                                     contiguous_heads<const float>(k.data(), T, 1, d),
                                     contiguous_heads<const float>(v.data(), T, 1, d), mask,
                                     ref_probs.data(), contiguous_heads(ref_out.data(), T, 1, d));
        for (int64_t i = 0; i < T; ++i) {
            const bool nan_row = i == 2;
            for (int64_t j = 0; j < T; ++j)
                EXPECT_EQ(std::isnan(probs[i * T + j]), nan_row) << i << "," << j;
            for (int64_t c = 0; c < d; ++c) {
                EXPECT_EQ(std::isnan(out[i * d + c]), nan_row) << i << "," << c;
                if (masked && !nan_row) EXPECT_EQ(out[i * d + c], 0.0f);
            }
        }
        expect_close(probs, ref_probs, 1e-5f, 1e-6f);
        expect_close(out, ref_out, 1e-5f, 1e-6f);
    }
}

// Generation with a key/value cache: query i alone, against the first i + 1
// keys (causal_offset = Tk − Tq = i), gives row i of the full causal
// computation bit for bit, so cached generation equals recomputing the window.
TEST(Attention, CachedQueryEqualsFullComputation) {
    const int64_t B = 2, H = 3, T = 37, d = 16;
    const auto q = random_vector(B * T * H * d, 11), k = random_vector(B * T * H * d, 12),
               v = random_vector(B * T * H * d, 13);
    const float scale = 0.25f;
    AttentionMask causal;
    causal.causal = true;
    std::vector<float> probs(B * H * T * T), out(B * T * H * d);
    attention_forward({B, H, T, T, d, d}, scale, contiguous_heads(q.data(), T, H, d),
                      contiguous_heads(k.data(), T, H, d), contiguous_heads(v.data(), T, H, d),
                      causal, probs.data(), contiguous_heads(out.data(), T, H, d));
    for (int64_t i = 0; i < T; ++i) {
        SCOPED_TRACE("position " + std::to_string(i));
        AttentionMask cached = causal;
        cached.causal_offset = i;  // Tk − Tq
        std::vector<float> p1(B * H * (i + 1)), o1(B * T * H * d, NAN);
        // The query row i of a (B, T, H, d) array, as a (B, 1, H, d) array.
        HeadArray<const float> qi = contiguous_heads(q.data(), T, H, d);
        qi.data += i * qi.time;
        HeadArray<float> oi = contiguous_heads(o1.data(), T, H, d);
        oi.data += i * oi.time;
        attention_forward({B, H, 1, i + 1, d, d}, scale, qi, contiguous_heads(k.data(), T, H, d),
                          contiguous_heads(v.data(), T, H, d), cached, p1.data(), oi);
        for (int64_t b = 0; b < B; ++b)
            for (int64_t h = 0; h < H; ++h) {
                for (int64_t j = 0; j <= i; ++j)
                    ASSERT_EQ(p1[(b * H + h) * (i + 1) + j], probs[((b * H + h) * T + i) * T + j]);
                for (int64_t c = 0; c < d; ++c)
                    ASSERT_EQ(o1[((b * T + i) * H + h) * d + c], out[((b * T + i) * H + h) * d + c]);
            }
    }
}

// L = Σ O ⊙ R with O computed in double from the definition (masks and
// dropout included: M from random_uniform at P's index); central differences
// for Q, K and V against the kernel's backward.
TEST(Attention, BackwardMatchesFiniteDifferences) {
    for (float rate : {0.0f, 0.4f})
    for (MaskKind mask : {MaskKind::none, MaskKind::causal, MaskKind::causal_padding,
                          MaskKind::full_keep, MaskKind::bias}) {
        const Case c{{2, 2, 4, 5, 3, 2}, mask, Layout::bthd, true, {rate, 9}};
        SCOPED_TRACE(describe(c));
        const AttentionShape& s = c.s;
        const MaskData m = make_mask(c);
        auto qf = random_vector(s.batch * s.q_len * s.heads * s.key_dim, 21, -2.0f, 2.0f);
        auto kf = random_vector(s.batch * s.kv_len * s.heads * s.key_dim, 22, -2.0f, 2.0f);
        auto vf = random_vector(s.batch * s.kv_len * s.heads * s.value_dim, 23);
        const auto r = random_vector(s.batch * s.q_len * s.heads * s.value_dim, 24);
        const double scale = 1.0 / std::sqrt(double(s.key_dim));
        std::vector<double> q(qf.begin(), qf.end()), k(kf.begin(), kf.end()), v(vf.begin(), vf.end());
        auto at = [&](const std::vector<double>& x, int64_t b, int64_t t, int64_t T, int64_t h,
                      int64_t D, int64_t i) { return x[((b * T + t) * s.heads + h) * D + i]; };
        auto keep = [&](int64_t b, int64_t h, int64_t i, int64_t j) {
            const auto index = uint64_t(((b * s.heads + h) * s.q_len + i) * s.kv_len + j);
            return random_uniform(c.dropout.seed, index) >= rate ? 1.0 / (1.0 - rate) : 0.0;
        };
        auto loss = [&]() {
            double total = 0.0;
            for (int64_t b = 0; b < s.batch; ++b)
                for (int64_t h = 0; h < s.heads; ++h)
                    for (int64_t i = 0; i < s.q_len; ++i) {
                        std::vector<double> p(s.kv_len, -INFINITY);
                        double max = -INFINITY, sum = 0.0;
                        for (int64_t j = 0; j < s.kv_len; ++j) {
                            const AttentionMask& am = m.mask;
                            if (am.causal && j > i + am.causal_offset) continue;
                            if (am.keep && !am.keep[b * am.keep_batch + i * am.keep_query + j]) continue;
                            p[j] = 0.0;
                            for (int64_t e = 0; e < s.key_dim; ++e)
                                p[j] += scale * at(q, b, i, s.q_len, h, s.key_dim, e) *
                                        at(k, b, j, s.kv_len, h, s.key_dim, e);
                            if (am.bias)
                                p[j] += am.bias[b * am.bias_batch + h * am.bias_head +
                                                i * am.bias_query + j];
                            max = std::max(max, p[j]);
                        }
                        if (max == -INFINITY) continue;  // a fully masked row: O = 0
                        for (auto& x : p) sum += x = std::exp(x - max);
                        for (int64_t e = 0; e < s.value_dim; ++e) {
                            double o = 0.0;
                            for (int64_t j = 0; j < s.kv_len; ++j)
                                o += p[j] / sum * keep(b, h, i, j) *
                                     at(v, b, j, s.kv_len, h, s.value_dim, e);
                            total += o * r[((b * s.q_len + i) * s.heads + h) * s.value_dim + e];
                        }
                    }
            return total;
        };
        std::vector<float> probs(s.batch * s.heads * s.q_len * s.kv_len), out(r.size()),
            dq(qf.size()), dk(kf.size()), dv(vf.size());
        auto heads = [&](auto* data, int64_t T, int64_t D) {
            return contiguous_heads(data, T, s.heads, D);
        };
        attention_forward(s, float(scale), heads(qf.data(), s.q_len, s.key_dim),
                          heads(kf.data(), s.kv_len, s.key_dim),
                          heads(vf.data(), s.kv_len, s.value_dim), m.mask, probs.data(),
                          heads(out.data(), s.q_len, s.value_dim), c.dropout);
        attention_backward(s, float(scale), heads(qf.data(), s.q_len, s.key_dim),
                           heads(kf.data(), s.kv_len, s.key_dim),
                           heads(vf.data(), s.kv_len, s.value_dim), probs.data(),
                           heads(r.data(), s.q_len, s.value_dim), m.mask,
                           heads(dq.data(), s.q_len, s.key_dim),
                           heads(dk.data(), s.kv_len, s.key_dim),
                           heads(dv.data(), s.kv_len, s.value_dim), c.dropout);
        const double h = 1e-6;
        for (auto [values, grad] : {std::pair{&q, &dq}, {&k, &dk}, {&v, &dv}}) {
            for (size_t i = 0; i < values->size(); ++i) {
                const double saved = (*values)[i];
                (*values)[i] = saved + h;
                const double plus = loss();
                (*values)[i] = saved - h;
                const double minus = loss();
                (*values)[i] = saved;
                const double numeric = (plus - minus) / (2 * h);
                EXPECT_NEAR((*grad)[i], numeric, 1e-4 * (1 + std::fabs(numeric))) << "index " << i;
            }
        }
    }
}

// Dropout of P: the fast kernels drop the same entries as the reference (both
// draw M from the position in P), for every mask and 1 or 2 threads.
TEST(AttentionDropout, MatchesReference) {
    for (int threads : testing::kThreadCounts) {
        ThreadCountGuard guard(threads);
        for (const AttentionShape& s : awkward_shapes())
            for (MaskKind mask : {MaskKind::none, MaskKind::causal, MaskKind::full_keep})
                for (float rate : {0.1f, 0.5f, 0.9f})
                    check_against_reference({s, mask, Layout::bthd, false, {rate, 1234}});
    }
}

TEST(AttentionDropout, BitIdenticalForOneAndTwoThreadsAndLayouts) {
    for (const Case& base : {Case{{2, 4, 64, 64, 32, 32}, MaskKind::causal},
                             Case{{3, 2, 65, 17, 8, 16}, MaskKind::padding}}) {
        Case c = base;
        c.dropout = {0.2f, 77};
        SCOPED_TRACE(describe(c));
        Results results[2];
        for (int t = 0; t < 2; ++t) {
            ThreadCountGuard guard(t + 1);
            results[t] = run(c, attention_forward, attention_backward);
        }
        expect_equal(results[0], results[1]);
        c.layout = Layout::padded;
        expect_equal(run(c, attention_forward, attention_backward), results[0]);
    }
}

// The seed decides the mask: another seed gives another output, the same seed
// the same; P (saved) is the softmax before dropout, so it does not change.
// O = P̃·V with about `rate` of P̃'s entries zero: checked through V = one-hot
// columns, which make O's column j equal to P̃'s column j.
TEST(AttentionDropout, DropsTheRateAndScalesTheRest) {
    const int64_t B = 2, H = 2, T = 64;
    const AttentionShape s{B, H, T, T, 4, T};
    const auto q = random_vector(B * T * H * 4, 5), k = random_vector(B * T * H * 4, 6);
    std::vector<float> v(B * T * H * T, 0.0f);  // V row j = e_j in every head
    for (int64_t b = 0; b < B; ++b)
        for (int64_t j = 0; j < T; ++j)
            for (int64_t h = 0; h < H; ++h) v[((b * T + j) * H + h) * T + j] = 1.0f;
    const float rate = 0.25f;
    auto forward = [&](const AttentionDropout& d, std::vector<float>& probs) {
        std::vector<float> out(B * T * H * T);
        attention_forward(s, 0.5f, contiguous_heads(q.data(), T, H, 4),
                          contiguous_heads(k.data(), T, H, 4), contiguous_heads(v.data(), T, H, T),
                          {}, probs.data(), contiguous_heads(out.data(), T, H, T), d);
        return out;
    };
    std::vector<float> p0(B * H * T * T), p1(p0.size()), p2(p0.size()), p3(p0.size());
    const auto plain = forward({}, p0), a = forward({rate, 1}, p1), again = forward({rate, 1}, p2),
               other = forward({rate, 2}, p3);
    EXPECT_EQ(p0, p1);
    EXPECT_EQ(a, again);
    EXPECT_NE(a, other);
    int64_t dropped = 0;
    for (int64_t b = 0; b < B; ++b)
        for (int64_t i = 0; i < T; ++i)
            for (int64_t h = 0; h < H; ++h)
                for (int64_t j = 0; j < T; ++j) {
                    const int64_t at = ((b * T + i) * H + h) * T + j;
                    if (a[at] == 0.0f) {
                        ++dropped;
                    } else {
                        EXPECT_NEAR(a[at], plain[at] / (1.0f - rate), 1e-6f);
                    }
                }
    const double fraction = double(dropped) / double(B * H * T * T);
    EXPECT_NEAR(fraction, rate, 0.02);
}

// ---------------------------------------------------------------- packed sequences

// Sequences of these lengths back to back (an empty one, a single token, one
// past several query blocks), as one (1, tokens, H, D) array in a layout.
struct Packed {
    std::vector<int64_t> starts;
    int64_t H, dk, dv;
    Heads q, k, v, out;

    Packed(const std::vector<int64_t>& lengths, int64_t H_, int64_t dk_, int64_t dv_, Layout layout)
        : starts(offsets(lengths)), H(H_), dk(dk_), dv(dv_),
          q(1, tokens(), H, dk, layout), k(1, tokens(), H, dk, layout),
          v(1, tokens(), H, dv, layout), out(1, tokens(), H, dv, layout) {
        q.set(random_vector(tokens() * H * dk, 11, -2.0f, 2.0f));
        k.set(random_vector(tokens() * H * dk, 12, -2.0f, 2.0f));
        v.set(random_vector(tokens() * H * dv, 13));
    }
    static std::vector<int64_t> offsets(const std::vector<int64_t>& lengths) {
        std::vector<int64_t> s{0};
        for (int64_t n : lengths) s.push_back(s.back() + n);
        return s;
    }
    int64_t tokens() const { return starts.back(); }
    int64_t sequences() const { return static_cast<int64_t>(starts.size()) - 1; }

    using Kernel = decltype(&attention_forward_packed);
    std::vector<float> run(Kernel kernel) {
        kernel(sequences(), starts.data(), H, dk, dv, 1.0f / std::sqrt(float(dk)), q.cview(),
               k.cview(), v.cview(), out.view());
        EXPECT_EQ(out.sentinels(), out.unused());
        return out.get();
    }
};

const std::vector<int64_t> kPackedLengths = {7, 1, 0, 65, 30, 2, 49};

TEST(AttentionPacked, MatchesReference) {
    for (int threads : testing::kThreadCounts) {
        ThreadCountGuard guard(threads);
        for (auto [H, dk, dv] : {std::array<int64_t, 3>{3, 33, 5}, {12, 32, 32}, {1, 1, 1}}) {
            SCOPED_TRACE("H=" + std::to_string(H) + " dk=" + std::to_string(dk) +
                         " dv=" + std::to_string(dv) + " threads=" + std::to_string(threads));
            Packed p(kPackedLengths, H, dk, dv, Layout::bthd);
            const auto fast = p.run(attention_forward_packed);
            const auto ref = p.run(reference::attention_forward_packed);
            const float tol = 2e-6f * static_cast<float>(65 + dk + dv);
            expect_close(fast, ref, tol, tol);
        }
    }
}

// Each sequence's rows are bit for bit attention_forward on that sequence
// alone (batch 1, no mask): packing changes no number, whatever else is in
// the batch, the layout or the thread count.
TEST(AttentionPacked, EachSequenceEqualsItsOwnForward) {
    const int64_t H = 4, dk = 32, dv = 16;
    std::vector<float> results[2];
    for (int t = 0; t < 2; ++t) {
        ThreadCountGuard guard(t + 1);
        for (Layout layout : {Layout::bthd, Layout::padded}) {
            SCOPED_TRACE(std::string(name(layout)) + " threads=" + std::to_string(t + 1));
            Packed p(kPackedLengths, H, dk, dv, layout);
            const auto packed = p.run(attention_forward_packed);
            const auto q = p.q.get(), k = p.k.get(), v = p.v.get();
            for (int64_t n = 0; n < p.sequences(); ++n) {
                const int64_t T = p.starts[n + 1] - p.starts[n], first = p.starts[n];
                if (T == 0) continue;
                std::vector<float> probs(H * T * T), out(T * H * dv);
                attention_forward({1, H, T, T, dk, dv}, 1.0f / std::sqrt(float(dk)),
                                  contiguous_heads(q.data() + first * H * dk, T, H, dk),
                                  contiguous_heads(k.data() + first * H * dk, T, H, dk),
                                  contiguous_heads(v.data() + first * H * dv, T, H, dv), {},
                                  probs.data(), contiguous_heads(out.data(), T, H, dv));
                const std::vector<float> rows(packed.begin() + first * H * dv,
                                              packed.begin() + (first + T) * H * dv);
                EXPECT_EQ(rows, out) << "sequence " << n;
            }
            if (layout == Layout::bthd) results[t] = packed;
        }
    }
    EXPECT_EQ(results[0], results[1]);
}

}  // namespace
}  // namespace fz
