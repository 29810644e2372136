// optimizers.h — parameter updates in place, with Keras 3's formulas.
//
// p: parameters, g: their gradients, and the optimizer's state arrays, all of
// n floats. Gradient descent is θ ← θ − α∇J(θ); each optimizer below changes
// how the step is formed. A weight_decay > 0 first shrinks the weights,
// decoupled from the gradient as Keras (and AdamW) do: p ← p − lr·wd·p.
#pragma once
#include <cstdint>
#include <limits>

namespace fz {

// SGD. momentum == 0:  p ← p − lr·g
// momentum > 0:        m ← momentum·m − lr·g
//                      p ← p + m                      (classical)
//                      p ← p + momentum·m − lr·g      (Nesterov)
// m may be null when momentum == 0.
void sgd_update(float* p, const float* g, float* m, int64_t n, float lr, float momentum,
                bool nesterov, float weight_decay);

// Adam at step t (1, 2, ...):
//   m ← m + (1 − β1)(g − m)
//   v ← v + (1 − β2)(g² − v)
//   p ← p − α̂ m / (√v + ε),  α̂ = lr √(1 − β2^t) / (1 − β1^t)
// AdamW is the same with weight_decay > 0.
void adam_update(float* p, const float* g, float* m, float* v, int64_t n, float lr, float beta1,
                 float beta2, float epsilon, int64_t t, float weight_decay);

// RMSprop:
//   v ← ρ v + (1 − ρ) g²
//   Δ = lr · g / √(v + ε)
//   p ← p − Δ                          (momentum == 0; mom may be null)
//   mom ← momentum·mom + Δ; p ← p − mom (momentum > 0)
void rmsprop_update(float* p, const float* g, float* v, float* mom, int64_t n, float lr, float rho,
                    float momentum, float epsilon, float weight_decay);

// One step over many parameter arrays at once — every weight and bias of a
// model — in a single pass split across threads (one parallel region per
// step). Array t holds n[t] floats at p[t], its gradient at g[t], and the
// optimizer's state at s0[t] and s1[t]: m (momentum) for SGD; m, v for Adam;
// v, mom for RMSprop. A state list the update does not use may be null.
//
// Gradient clipping happens as the update reads each gradient value, in the
// same pass (no clipped copy of the gradients is ever written):
//     g ← min(max(g · grad_scale[t], −grad_clip), grad_clip)
// grad_scale null means no scaling (clip_scales below computes it for
// Keras's clipnorm / global_clipnorm), grad_clip = +∞ no clamp (clipvalue).
//
// decays[t] == 0 exempts array t from the weight decay (Keras's
// exclude_from_weight_decay; nanoGPT decays matrices only, not biases or
// LayerNorm's γ and β); decays null: every array decays.
struct ParamList {
    int64_t count;
    float* const* p;
    const float* const* g;
    float* const* s0;
    float* const* s1;
    const int64_t* n;
    const float* grad_scale = nullptr;
    float grad_clip = std::numeric_limits<float>::infinity();
    const uint8_t* decays = nullptr;
};

void sgd_update_many(const ParamList& params, float lr, float momentum, bool nesterov,
                     float weight_decay);
void adam_update_many(const ParamList& params, float lr, float beta1, float beta2,
                      float epsilon, int64_t t, float weight_decay);
void rmsprop_update_many(const ParamList& params, float lr, float rho, float momentum,
                         float epsilon, float weight_decay);

// The gradient norms behind clipping. sum_sq[t] = Σ_i g[t][i]² for every
// array of the list (only g and n are read): one read of the gradients,
// summed in double in a fixed order — blocks of 4096 values, each summed in 8
// interleaved lanes, the blocks of an array added in index order — so the
// result is the same bit for bit for any thread count and instruction set.
void grad_sum_of_squares(const ParamList& params, double* sum_sq);

// The factor each gradient array is multiplied by, as Keras 3 clips:
//   clipnorm > 0:         scale[t] = clipnorm / max(‖g_t‖, clipnorm)   (each array on its own)
//   global_clipnorm > 0:  scale[t] = min(1, global_clipnorm / ‖g‖),  ‖g‖² = Σ_t ‖g_t‖²
//                         (all arrays together, so their directions are kept)
// A NaN norm (or an infinite global norm) gives NaN, as in Keras: the step
// is NaN rather than silently something else. Exactly one of the two is > 0.
void clip_scales(const ParamList& params, float clipnorm, float global_clipnorm, float* scale);

// Plain serial loops with the same signatures and semantics, kept as the
// oracle the tests compare the fast kernels against.
namespace reference {
void grad_sum_of_squares(const ParamList& params, double* sum_sq);
void sgd_update(float* p, const float* g, float* m, int64_t n, float lr, float momentum,
                bool nesterov, float weight_decay);
void adam_update(float* p, const float* g, float* m, float* v, int64_t n, float lr, float beta1,
                 float beta2, float epsilon, int64_t t, float weight_decay);
void rmsprop_update(float* p, const float* g, float* v, float* mom, int64_t n, float lr, float rho,
                    float momentum, float epsilon, float weight_decay);
}  // namespace reference

}  // namespace fz
