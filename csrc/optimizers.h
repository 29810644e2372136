// optimizers.h — parameter updates in place, with Keras 3's formulas.
//
// p: parameters, g: their gradients, and the optimizer's state arrays, all of
// n floats. Gradient descent is θ ← θ − α∇J(θ); each optimizer below changes
// how the step is formed. A weight_decay > 0 first shrinks the weights,
// decoupled from the gradient as Keras (and AdamW) do: p ← p − lr·wd·p.
#pragma once
#include <cstdint>

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

// Plain serial loops with the same signatures and semantics, kept as the
// oracle the tests compare the fast kernels against.
// One step over many parameter arrays at once — every weight and bias of a
// model — in a single pass split across threads (one parallel region per
// step). Array t holds n[t] floats at p[t], its gradient at g[t], and the
// optimizer's state at s0[t] and s1[t]: m (momentum) for SGD; m, v for Adam;
// v, mom for RMSprop. A state list the update does not use may be null.
struct ParamList {
    int64_t count;
    float* const* p;
    const float* const* g;
    float* const* s0;
    float* const* s1;
    const int64_t* n;
};

void sgd_update_many(const ParamList& params, float lr, float momentum, bool nesterov,
                     float weight_decay);
void adam_update_many(const ParamList& params, float lr, float beta1, float beta2,
                      float epsilon, int64_t t, float weight_decay);
void rmsprop_update_many(const ParamList& params, float lr, float rho, float momentum,
                         float epsilon, float weight_decay);

namespace reference {
void sgd_update(float* p, const float* g, float* m, int64_t n, float lr, float momentum,
                bool nesterov, float weight_decay);
void adam_update(float* p, const float* g, float* m, float* v, int64_t n, float lr, float beta1,
                 float beta2, float epsilon, int64_t t, float weight_decay);
void rmsprop_update(float* p, const float* g, float* v, float* mom, int64_t n, float lr, float rho,
                    float momentum, float epsilon, float weight_decay);
}  // namespace reference

}  // namespace fz
