// attention.h — scaled dot-product attention, forward and backward.
//
// For each batch b and head h, with Q (Tq, dk), K (Tk, dk), V (Tk, dv) the
// slices of that (b, h):
//
//   forward    S = s·Q·Kᵀ (+ mask)          (Tq, Tk), s the scale, usually 1/√dk
//              P = softmax(S) along each row (Tq, Tk)  — saved for the backward
//              O = P·V                       (Tq, dv)
//   backward   dV = Pᵀ·dO,   dP = dO·Vᵀ
//              dS = P ⊙ (dP − rowsum(P ⊙ dP))   (softmax's backward, row by row)
//              dQ = s·dS·K,  dK = s·dSᵀ·Q
//
// (rowsum(P ⊙ dP) = rowsum(dO ⊙ O), since O = P·V: so the backward needs P but
// not O.)
//
// Dropout on the attention probabilities (Keras's MultiHeadAttention(dropout=),
// nanoGPT's attn_dropout), in training only: each P_ij is kept with
// probability 1 − rate and then scaled by 1/(1 − rate), so
//   forward    P̃ = P ⊙ M,  M_ij = [u_ij ≥ rate]/(1 − rate),  O = P̃·V
//   backward   dV = P̃ᵀ·dO,  dP = (dO·Vᵀ) ⊙ M,  then dS, dQ, dK as above
// with u_ij = random_uniform(seed, index of (b, h, i, j) in P) (csrc/random.h):
// a pure function of the seed and the position, so the mask is the same for
// any thread count and is not stored — the backward draws it again. P itself
// (saved) is the softmax before dropout.
//
// Masks. Query row i attends to key j, or not, by the mask: a masked score
// counts as −∞, so P_ij = 0. A row with every key masked has no key to attend
// to: its P row and its O row are all zeros (not NaN, and not Keras's uniform
// average over the masked keys), and it passes no gradient. NaNs are not
// masks: a NaN score makes its whole row of P and O NaN.
//
// Layouts. Q, K, V, O and their gradients are read and written in place with
// strides (HeadArray below), so the kernel takes the (batch, time, heads, dim)
// arrays a Dense projection reshaped gives, or slices of one fused QKV
// projection, or PyTorch's (batch, heads, time, dim), without a transposing
// copy. P is a contiguous (batch, heads, Tq, Tk) array, the caller's.
//
// What the forward saves: P, B·H·Tq·Tk floats — 0.75 MiB per layer for the
// GPT recipe (B 12, H 4, T 64), 24 MiB for MiniLM fine-tuning (B 32, H 12,
// T 128). The alternative, FlashAttention's, saves one log-sum-exp per row and
// recomputes S and P in the backward: it wins when P does not fit in memory
// bandwidth or cache, i.e. long sequences. At T ≤ 256 one head's P is at most
// 256 KiB (in L2), and recomputing it would repeat the QKᵀ product and the
// exps — most of the forward — so we keep P.
#pragma once
#include <cstdint>
#include <type_traits>

namespace fz {

// A (batch, time, heads, dim) array whose last axis is contiguous: element
// (b, t, h, i) is data[b·batch + t·time + h·head + i] (strides in elements).
template <class T>
struct HeadArray {
    T* data;
    int64_t batch, time, head;

    T* row(int64_t b, int64_t t, int64_t h) const { return data + b * batch + t * time + h * head; }

    // A writable array converts to a read-only one.
    template <class U = T, class = std::enable_if_t<!std::is_const_v<U>>>
    operator HeadArray<const U>() const {
        return {data, batch, time, head};
    }
};

// The strides of a contiguous (batch, time, heads, dim) array.
template <class T>
HeadArray<T> contiguous_heads(T* data, int64_t time, int64_t heads, int64_t dim) {
    return {data, time * heads * dim, heads * dim, dim};
}

struct AttentionShape {
    int64_t batch, heads;
    int64_t q_len, kv_len;       // Tq queries, Tk keys and values
    int64_t key_dim, value_dim;  // dk (Q and K), dv (V and O)
};

// Which keys each query may attend to; all parts combine (a key is visible
// only if every part allows it). Default: no mask.
//
// A (batch, heads, Tq, Tk) mask array is read with strides, the key axis
// contiguous: element (b, h, i, j) is data[b·batch + h·head + i·query + j]. A
// stride of 0 broadcasts: Keras's attention_mask (B, Tq, Tk) is
// {Tq·Tk, 0, Tk}, a key-padding mask (B, Tk) is {Tk, 0, 0}.
struct AttentionMask {
    // Causal: query i sees key j only if j ≤ i + causal_offset. With
    // causal_offset = Tk − Tq the queries are the last Tq positions (a
    // key/value cache: one new query against t cached keys); with 0 they are
    // the first (Keras's use_causal_mask and PyTorch's is_causal when Tq ≠ Tk).
    bool causal = false;
    int64_t causal_offset = 0;
    // Boolean mask: nonzero = may attend (Keras's convention), or null.
    const uint8_t* keep = nullptr;
    int64_t keep_batch = 0, keep_head = 0, keep_query = 0;
    // Additive mask added to the scaled scores (−∞ masks), or null.
    const float* bias = nullptr;
    int64_t bias_batch = 0, bias_head = 0, bias_query = 0;
};

// Dropout of the probabilities (above): rate in [0, 1); 0 = none.
struct AttentionDropout {
    float rate = 0.0f;
    uint64_t seed = 0;
};

// O = softmax(scale·Q·Kᵀ + mask)·V (P dropped out first when dropout.rate > 0);
// writes P into probs (B, H, Tq, Tk), masked entries 0. Every pointer is the
// caller's and must be valid for the shape and strides given; out must not
// overlap q, k, v or probs.
void attention_forward(const AttentionShape& shape, float scale, HeadArray<const float> q,
                       HeadArray<const float> k, HeadArray<const float> v,
                       const AttentionMask& mask, float* probs, HeadArray<float> out,
                       const AttentionDropout& dropout = {});

// From dO and the forward's probs: writes dq, dk, dv (overwritten, shaped and
// strided like q, k, v). mask and dropout must be the forward's: only the
// mask's causal part is read, to skip the keys no query sees (P is already 0
// wherever the mask hides a key). The gradients must not overlap each other
// or the inputs.
void attention_backward(const AttentionShape& shape, float scale, HeadArray<const float> q,
                        HeadArray<const float> k, HeadArray<const float> v, const float* probs,
                        HeadArray<const float> dout, const AttentionMask& mask,
                        HeadArray<float> dq, HeadArray<float> dk, HeadArray<float> dv,
                        const AttentionDropout& dropout = {});

// ---------------------------------------------------------------- packed sequences
//
// Inference on sequences of different lengths without padding (the sentence
// encoder, python/fromzero/pretrained.py): the n sequences' tokens lie back to
// back along the time axis, sequence s at the rows [starts[s], starts[s+1]),
// and each query attends to the keys of its own sequence only:
//
//   O_s = softmax(scale·Q_s·K_sᵀ)·V_s      for each sequence s and head h
//
// So no work goes to padding, and each sequence's O is bit for bit what
// attention_forward gives for that sequence alone (batch 1, no mask). Nothing
// is saved for a backward: P lives one query block at a time in a per-thread
// scratch. starts: n + 1 non-decreasing offsets from 0 (the caller's checks).
// q, k (tokens, heads, key_dim), v, out (tokens, heads, value_dim) are read
// and written through their time and head strides (the batch stride is not
// used); out must not overlap q, k or v.
void attention_forward_packed(int64_t sequences, const int64_t* starts, int64_t heads,
                              int64_t key_dim, int64_t value_dim, float scale,
                              HeadArray<const float> q, HeadArray<const float> k,
                              HeadArray<const float> v, HeadArray<float> out);

namespace reference {
void attention_forward(const AttentionShape& shape, float scale, HeadArray<const float> q,
                       HeadArray<const float> k, HeadArray<const float> v,
                       const AttentionMask& mask, float* probs, HeadArray<float> out,
                       const AttentionDropout& dropout = {});
void attention_backward(const AttentionShape& shape, float scale, HeadArray<const float> q,
                        HeadArray<const float> k, HeadArray<const float> v, const float* probs,
                        HeadArray<const float> dout, const AttentionMask& mask,
                        HeadArray<float> dq, HeadArray<float> dk, HeadArray<float> dv,
                        const AttentionDropout& dropout = {});
// Each sequence through reference::attention_forward on its own.
void attention_forward_packed(int64_t sequences, const int64_t* starts, int64_t heads,
                              int64_t key_dim, int64_t value_dim, float scale,
                              HeadArray<const float> q, HeadArray<const float> k,
                              HeadArray<const float> v, HeadArray<float> out);
}  // namespace reference

}  // namespace fz
