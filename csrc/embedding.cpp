// embedding.cpp — row gather forward, column-split scatter-add backward
// (formulas in embedding.h).
#include "embedding.h"

#include <algorithm>

#include "parallel.h"

namespace fz {
namespace {

// Below ~16K floats copied or added, a parallel region costs more than it saves.
constexpr int64_t kGrain = 16384;

}  // namespace

// Threads split the rows of y; each row is one contiguous copy.
void embedding_forward(const int32_t* ids, const float* W, float* y, int64_t n, int64_t dim) {
    const int64_t grain = std::max<int64_t>(1, kGrain / std::max<int64_t>(dim, 1));
    parallel_for(0, n, grain, [=](int64_t lo, int64_t hi) {
        for (int64_t i = lo; i < hi; ++i)
            std::copy_n(W + static_cast<int64_t>(ids[i]) * dim, dim, y + i * dim);
    });
}

// First dW = 0, threads splitting its rows (one contiguous fill each). Then
// the scatter-add, threads splitting the columns of dW: each walks all n ids
// in order adding dy[i, lo:hi] into dW[ids[i], lo:hi]. Splitting the rows i
// instead would let two threads add into the same dW row (a repeated token),
// needing atomics or per-thread copies of dW. A slice of at least 16 floats
// keeps threads off each other's cache lines. (Zeroing inside the column
// split, as before, swept all vocab rows once per 16-column chunk with short
// strided fills: 7.0 ms against 1.0 ms for the reference at vocab 50,304.)
void embedding_backward(const int32_t* ids, const float* dy, float* dW, int64_t n,
                        int64_t vocab, int64_t dim) {
    const int64_t rows_grain = std::max<int64_t>(1, kGrain / std::max<int64_t>(dim, 1));
    parallel_for(0, vocab, rows_grain, [=](int64_t lo, int64_t hi) {
        std::fill(dW + lo * dim, dW + hi * dim, 0.0f);
    });
    const int64_t grain = std::max<int64_t>(16, kGrain / std::max<int64_t>(n, 1));
    parallel_for(0, dim, grain, [=](int64_t lo, int64_t hi) {
        for (int64_t i = 0; i < n; ++i) {
            const float* src = dy + i * dim;
            float* dst = dW + static_cast<int64_t>(ids[i]) * dim;
            for (int64_t j = lo; j < hi; ++j) dst[j] += src[j];
        }
    });
}

// Reference implementations: the definitions, one element at a time.
void reference::embedding_forward(const int32_t* ids, const float* W, float* y, int64_t n,
                                  int64_t dim) {
    for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < dim; ++j) y[i * dim + j] = W[ids[i] * dim + j];
}

void reference::embedding_backward(const int32_t* ids, const float* dy, float* dW, int64_t n,
                                   int64_t vocab, int64_t dim) {
    for (int64_t k = 0; k < vocab * dim; ++k) dW[k] = 0.0f;
    for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < dim; ++j) dW[ids[i] * dim + j] += dy[i * dim + j];
}

}  // namespace fz
