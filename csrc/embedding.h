// embedding.h — a lookup table of learned vectors, forward and backward.
//
// Shapes: ids (n,) int32, W (vocab, dim), y and dy (n, dim), dW (vocab, dim).
//
//   forward    y[i, :] = W[ids[i], :]                       (a row gather)
//   backward   dW[v, :] = Σ_{i : ids[i] = v} dy[i, :]       (a scatter-add)
//
// Embedding(ids) equals one_hot(ids) · W, so the backward is one_hotᵀ · dy:
// each occurrence of token v adds its output gradient to row v, and rows of
// tokens absent from the batch get zero.
//
// The kernels assume every id is in [0, vocab): they index W and dW with it
// unchecked. The caller (the Python binding) checks the ids first.
#pragma once
#include <cstdint>

namespace fz {

// y = W[ids]: n rows of dim floats.
void embedding_forward(const int32_t* ids, const float* W, float* y, int64_t n, int64_t dim);

// dW = scatter-add of dy's rows by ids; dW is overwritten (zeroed, then summed
// into). Every dW element sums its rows i in increasing order whatever the
// thread count: threads split the columns, not the rows, so no two threads
// ever add into the same element and no atomics are needed.
void embedding_backward(const int32_t* ids, const float* dy, float* dW, int64_t n,
                        int64_t vocab, int64_t dim);

namespace reference {
void embedding_forward(const int32_t* ids, const float* W, float* y, int64_t n, int64_t dim);
void embedding_backward(const int32_t* ids, const float* dy, float* dW, int64_t n,
                        int64_t vocab, int64_t dim);
}  // namespace reference

}  // namespace fz
