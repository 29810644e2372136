// losses.h — loss values and their gradients, one pass each.
//
// Shapes: predictions and dense targets are (rows, cols); sparse labels are
// (rows,) int32 class indices that the caller has already checked to lie in
// [0, cols). Each kernel writes the loss of every row into row_loss (rows,)
// and returns their sum, added in row order so the result does not depend on
// the thread count. When grad is not null it receives
//     grad = grad_scale * ∂(Σ_rows row_loss) / ∂input,
// so grad_scale = 1/rows gives the gradient of the batch mean (Keras's
// reduction). grad may be null to compute the value only.
//
// As in Keras, probabilities are clipped to [kProbEpsilon, 1 - kProbEpsilon]
// before log() so a confident wrong answer gives a large finite loss.
#pragma once
#include <cstdint>

namespace fz {

constexpr float kProbEpsilon = 1e-7f;

// Softmax cross-entropy from logits z, fused:
//   row_loss_i = log Σ_j exp(z_ij) - z_i,label_i
//   grad_ij    = grad_scale * (softmax(z)_ij - [j == label_i])
double sparse_categorical_crossentropy_from_logits(const float* logits, const int32_t* labels,
                                                   float* row_loss, float* grad, int64_t rows,
                                                   int64_t cols, float grad_scale);

// Cross-entropy from probabilities p (e.g. a softmax output):
//   row_loss_i = -log(clip(p_i,label_i))
//   grad_ij    = grad_scale * (-[j == label_i] / clip(p_ij))   (0 where clipped)
double sparse_categorical_crossentropy(const float* probs, const int32_t* labels, float* row_loss,
                                       float* grad, int64_t rows, int64_t cols, float grad_scale);

// Dense (one-hot or soft) targets t, from logits:
//   row_loss_i = Σ_j t_ij (log Σ_k exp(z_ik) - z_ij)
//   grad_ij    = grad_scale * (softmax(z)_ij Σ_k t_ik - t_ij)
double categorical_crossentropy_from_logits(const float* logits, const float* targets,
                                            float* row_loss, float* grad, int64_t rows,
                                            int64_t cols, float grad_scale);

// Dense targets t, from probabilities p. As Keras, p is first normalised by its
// row sum S_i = Σ_k p_ik, then clipped:
//   row_loss_i = -Σ_j t_ij log(clip(p_ij / S_i))
//   grad_ij    = grad_scale * (-t_ij / p_ij + Σ_k t_ik / S_i)
// (the derivative of the clipped function: clipped entries contribute
// neither their -t/p term nor their t to the sum)
double categorical_crossentropy(const float* probs, const float* targets, float* row_loss,
                                float* grad, int64_t rows, int64_t cols, float grad_scale);

// The gradient of cross-entropy with respect to the logits of a softmax layer,
// given the softmax output p itself (the fused path used by frameworks when a
// softmax output layer meets a cross-entropy loss):
//   dlogits_ij = grad_scale * (p_ij - [j == label_i])          (sparse labels)
//   dlogits_ij = grad_scale * (p_ij Σ_k t_ik - t_ij)            (dense targets)
void softmax_crossentropy_backward(const float* probs, const int32_t* labels, float* dlogits,
                                   int64_t rows, int64_t cols, float grad_scale);
void softmax_crossentropy_backward_dense(const float* probs, const float* targets, float* dlogits,
                                         int64_t rows, int64_t cols, float grad_scale);

// Mean squared error, mean over the last axis as Keras:
//   row_loss_i = (1/cols) Σ_j (p_ij - t_ij)^2
//   grad_ij    = grad_scale * 2 (p_ij - t_ij) / cols
double mean_squared_error(const float* pred, const float* targets, float* row_loss, float* grad,
                          int64_t rows, int64_t cols, float grad_scale);

// Binary cross-entropy from probabilities, mean over the last axis:
//   row_loss_i = -(1/cols) Σ_j [t log(clip(p)) + (1 - t) log(1 - clip(p))]
//   grad_ij    = grad_scale * (clip(p) - t) / (clip(p) (1 - clip(p))) / cols   (0 where clipped)
double binary_crossentropy(const float* probs, const float* targets, float* row_loss, float* grad,
                           int64_t rows, int64_t cols, float grad_scale);

// Binary cross-entropy from logits z, written stably:
//   row_loss_i = (1/cols) Σ_j [max(z, 0) - z t + log(1 + exp(-|z|))]
//   grad_ij    = grad_scale * (sigmoid(z) - t) / cols
double binary_crossentropy_from_logits(const float* logits, const float* targets, float* row_loss,
                                       float* grad, int64_t rows, int64_t cols, float grad_scale);

// Plain serial loops with the same signatures and semantics, kept as the
// oracle the tests compare the fast kernels against.
namespace reference {
double sparse_categorical_crossentropy_from_logits(const float* logits, const int32_t* labels,
                                                   float* row_loss, float* grad, int64_t rows,
                                                   int64_t cols, float grad_scale);
double sparse_categorical_crossentropy(const float* probs, const int32_t* labels, float* row_loss,
                                       float* grad, int64_t rows, int64_t cols, float grad_scale);
double categorical_crossentropy_from_logits(const float* logits, const float* targets,
                                            float* row_loss, float* grad, int64_t rows,
                                            int64_t cols, float grad_scale);
double categorical_crossentropy(const float* probs, const float* targets, float* row_loss,
                                float* grad, int64_t rows, int64_t cols, float grad_scale);
void softmax_crossentropy_backward(const float* probs, const int32_t* labels, float* dlogits,
                                   int64_t rows, int64_t cols, float grad_scale);
void softmax_crossentropy_backward_dense(const float* probs, const float* targets, float* dlogits,
                                         int64_t rows, int64_t cols, float grad_scale);
double mean_squared_error(const float* pred, const float* targets, float* row_loss, float* grad,
                          int64_t rows, int64_t cols, float grad_scale);
double binary_crossentropy(const float* probs, const float* targets, float* row_loss, float* grad,
                           int64_t rows, int64_t cols, float grad_scale);
double binary_crossentropy_from_logits(const float* logits, const float* targets, float* row_loss,
                                       float* grad, int64_t rows, int64_t cols, float grad_scale);
}  // namespace reference

}  // namespace fz
