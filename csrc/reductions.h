// reductions.h — column sums, row argmax, and the minibatch gather.
#pragma once
#include <cstdint>

namespace fz {

// dy: (rows, cols), db: (cols,). db_j = Σ_i dy_ij — the bias gradient of a
// Dense layer, since y = xW + b adds b to every row. Rows are added in order.
void bias_grad(const float* dy, float* db, int64_t rows, int64_t cols);

// x: (rows, cols), out: (rows,). out_i = the first j with the largest x_ij.
void argmax_rows(const float* x, int32_t* out, int64_t rows, int64_t cols);

// scores: (rows, cols), labels: (rows,). How many rows have argmax == label.
int64_t count_correct(const float* scores, const int32_t* labels, int64_t rows, int64_t cols);

// dst[i, :] = src[index[i], :] for i < n; rows of row_len floats (or int32s).
// The caller checks every index against the number of rows in src.
void gather_rows(const float* src, int64_t row_len, const int64_t* index, int64_t n, float* dst);
void gather_rows(const int32_t* src, int64_t row_len, const int64_t* index, int64_t n,
                 int32_t* dst);

// Plain serial loops with the same signatures and semantics, kept as the
// oracle the tests compare the fast kernels against.
namespace reference {
void bias_grad(const float* dy, float* db, int64_t rows, int64_t cols);
void argmax_rows(const float* x, int32_t* out, int64_t rows, int64_t cols);
int64_t count_correct(const float* scores, const int32_t* labels, int64_t rows, int64_t cols);
void gather_rows(const float* src, int64_t row_len, const int64_t* index, int64_t n, float* dst);
void gather_rows(const int32_t* src, int64_t row_len, const int64_t* index, int64_t n,
                 int32_t* dst);
}  // namespace reference

}  // namespace fz
