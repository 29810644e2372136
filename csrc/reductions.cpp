// reductions.cpp — column sums, row argmax, and the minibatch gather.
//
// Each kernel splits its output among threads (columns of db, rows of out or
// dst), so every output value is computed by one thread in a fixed order and
// the results do not depend on the thread count.
#include "reductions.h"

#include <algorithm>
#include <atomic>
#include <cmath>

#include "parallel.h"

namespace fz {
namespace {

// Below ~16K values starting a parallel region costs more than it saves.
constexpr int64_t kGrain = 16384;

// Rows per parallel chunk for row-wise kernels: about kGrain values, at least one row.
int64_t row_grain(int64_t row_len) {
    return std::max<int64_t>(1, kGrain / std::max<int64_t>(row_len, 1));
}

// The first index of the largest of row[0..cols): the strict > keeps the
// earlier of equal values (0 when cols == 0). A NaN counts as the largest, as
// in NumPy's argmax: the first NaN wins. (With > alone a NaN was skipped, so
// [1, nan, 3] gave 2 where NumPy gives 1.) Scalar: an index-tracking
// reduction with first-wins ties does not vectorise without -ffast-math.
int32_t row_argmax(const float* row, int64_t cols) {
    int64_t best = 0;
    for (int64_t j = 1; j < cols && !std::isnan(row[best]); ++j)
        if (row[j] > row[best] || std::isnan(row[j])) best = j;
    return static_cast<int32_t>(best);
}

// src: (?, row_len), index: (n,), dst: (n, row_len). dst[i, :] = src[index[i], :].
// Each row is one contiguous copy (a memmove for trivially copyable T). The
// batch it fills is read by the first layer across its k-shares, so its rows
// move between the threads: a far team runs a small gather serially (far_grain).
template <class T>
void gather(const T* src, int64_t row_len, const int64_t* index, int64_t n, T* dst) {
    const int64_t grain = row_grain(row_len);
    parallel_for(
        0, n, grain,
        [=](int64_t lo, int64_t hi) {
            for (int64_t i = lo; i < hi; ++i)
                std::copy_n(src + index[i] * row_len, row_len, dst + i * row_len);
        },
        grain);
}

}  // namespace

// dy: (rows, cols), db: (cols,). db_j = Σ_i dy_ij, rows added in order.
// Parallel over columns, not rows: a thread owns a slice of db and adds every
// row into it in order, so each sum is the same sequence of additions for any
// thread count (splitting rows would need per-thread partial sums whose
// grouping depends on the thread count). The inner loop runs along a row,
// contiguous in dy and db, so it vectorises; a slice of at least 16 floats (a
// 64-byte cache line) keeps threads from writing the same line of db.
void bias_grad(const float* dy, float* db, int64_t rows, int64_t cols) {
    const int64_t grain = std::max<int64_t>(16, kGrain / std::max<int64_t>(rows, 1));
    parallel_for(0, cols, grain, [=](int64_t lo, int64_t hi) {
        std::fill(db + lo, db + hi, 0.0f);
        for (int64_t i = 0; i < rows; ++i) {
            const float* row = dy + i * cols;
            for (int64_t j = lo; j < hi; ++j) db[j] += row[j];
        }
    });
}

// x: (rows, cols), out: (rows,). out_i = the first j with the largest x_ij.
void argmax_rows(const float* x, int32_t* out, int64_t rows, int64_t cols) {
    parallel_for(0, rows, row_grain(cols), [=](int64_t lo, int64_t hi) {
        for (int64_t i = lo; i < hi; ++i) out[i] = row_argmax(x + i * cols, cols);
    });
}

// scores: (rows, cols), labels: (rows,). Σ_i [argmax_j scores_ij == labels_i].
// Each chunk counts its rows and adds its count to the total once; integer
// addition is exact, so the order in which chunks finish does not matter.
int64_t count_correct(const float* scores, const int32_t* labels, int64_t rows, int64_t cols) {
    std::atomic<int64_t> total{0};
    parallel_for(0, rows, row_grain(cols), [&](int64_t lo, int64_t hi) {
        int64_t correct = 0;
        for (int64_t i = lo; i < hi; ++i)
            correct += row_argmax(scores + i * cols, cols) == labels[i];
        total.fetch_add(correct, std::memory_order_relaxed);
    });
    return total.load();
}

void gather_rows(const float* src, int64_t row_len, const int64_t* index, int64_t n, float* dst) {
    gather(src, row_len, index, n, dst);
}

void gather_rows(const int32_t* src, int64_t row_len, const int64_t* index, int64_t n,
                 int32_t* dst) {
    gather(src, row_len, index, n, dst);
}

// Reference implementations: the plain loops the fast kernels are tested against.
namespace reference {
namespace {

template <class T>
void gather(const T* src, int64_t row_len, const int64_t* index, int64_t n, T* dst) {
    for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < row_len; ++j) dst[i * row_len + j] = src[index[i] * row_len + j];
}

}  // namespace

void bias_grad(const float* dy, float* db, int64_t rows, int64_t cols) {
    for (int64_t j = 0; j < cols; ++j) {
        float sum = 0.0f;
        for (int64_t i = 0; i < rows; ++i) sum += dy[i * cols + j];
        db[j] = sum;
    }
}

void argmax_rows(const float* x, int32_t* out, int64_t rows, int64_t cols) {
    for (int64_t i = 0; i < rows; ++i) {
        int32_t best = 0;
        for (int64_t j = 1; j < cols && !std::isnan(x[i * cols + best]); ++j)
            if (x[i * cols + j] > x[i * cols + best] || std::isnan(x[i * cols + j]))
                best = static_cast<int32_t>(j);
        out[i] = best;
    }
}

int64_t count_correct(const float* scores, const int32_t* labels, int64_t rows, int64_t cols) {
    int64_t correct = 0;
    for (int64_t i = 0; i < rows; ++i) {
        int32_t best;
        argmax_rows(scores + i * cols, &best, 1, cols);
        if (best == labels[i]) ++correct;
    }
    return correct;
}

void gather_rows(const float* src, int64_t row_len, const int64_t* index, int64_t n, float* dst) {
    gather(src, row_len, index, n, dst);
}

void gather_rows(const int32_t* src, int64_t row_len, const int64_t* index, int64_t n,
                 int32_t* dst) {
    gather(src, row_len, index, n, dst);
}

}  // namespace reference
}  // namespace fz
