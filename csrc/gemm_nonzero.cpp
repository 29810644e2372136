// gemm_nonzero.cpp — the product of a matrix with many exact zeros (MNIST's
// pixels, ReLU outputs) by a dense one, skipping the zeros (gemm.h).
//
// gemm() sums each C(i, j) over k as a chain from +0 — a fused multiply-add
// per k on AVX2/AVX-512, a multiply then an add in the generic kernel — and
// adds the chains of successive kc-slices into C. A term with A(i, k) = 0 adds
// 0·B(k, j) = ±0 to the chain, which changes nothing (s + ±0 = s unless s is
// −0, which a chain from +0 only reaches when a product underflows). So
// leaving those k out of the chain gives the same bits, as long as
// everything else is done the same way: the same micro-kernel arithmetic
// (MicroKernel::run_nonzero_row), the same kc-slices, the epilogue on the same
// column tiles. For A with 80% zeros, 80% of the multiply-adds go.
//
// Cache use: row i of C needs the B rows of its non-zero k, 512 bytes each
// for a Dense layer of 128 units. The k of a slice are taken in blocks whose
// B rows fit in L2 (512 KB), and every row of C continues its chains over
// one block before the next block is read, so a B row comes from L2, not
// from memory, however many rows of C use it. The chains of the block's rows
// live in C itself between blocks (a float stored and reloaded is the same
// float). Why not L1-sized blocks: each block costs every row a call that
// loads and stores its accumulators (8 registers for 128 columns) and a scan
// for the block's last entry, and L2 feeds a B row about as fast as the
// multiply-adds use it. With 16 KB blocks (32 rows of B for 128 units, ~6
// entries of an MNIST row per block) the batch-32 MLP epoch took 4% longer.
#include <algorithm>

#include "gemm.h"
#include "gemm_microkernel.h"
#include "parallel.h"
#include "scratch.h"

namespace fz {

namespace {
// Below this many flops per thread, a second thread costs more than it saves.
constexpr int64_t kMinFlopsPerThread = 1 << 18;
// The B rows of one k-block take at most this many bytes (half the 1–2 MB
// L2 of recent x86 cores; a 784 × 128 Dense weight, 401 KB, is one block).
constexpr int64_t kBlockBytes = 512 * 1024;

// C = act(C + bias) on rows [lo, hi), on gemm's tiles of nr columns.
void epilogue_rows(const MicroKernel& uk, const GemmEpilogue& ep, int64_t N, float* C,
                   int64_t ldc, int64_t lo, int64_t hi) {
    if (ep.bias || ep.activation != Activation::identity)
        for (int64_t r = lo; r < hi; ++r)
            for (int64_t j = 0; j < N; j += uk.nr)
                apply_epilogue(ep, C + r * ldc + j, ldc, 1, std::min<int64_t>(uk.nr, N - j), j);
}

// Rows [lo, hi) of C = act(A·B + bias) (gemm_nonzero_with_plan).
void nonzero_block(const GemmPlan& plan, const NonzeroRows& a, const float* B, int64_t ldb,
                   int64_t N, float* C, int64_t ldc, const GemmEpilogue& ep, int64_t lo,
                   int64_t hi) {
    const MicroKernel& uk = *plan.kernel;
    const int64_t K = a.cols, KC = plan.blocks.kc, rows = hi - lo;
    const int64_t KB = std::max<int64_t>(1, kBlockBytes / (N * static_cast<int64_t>(sizeof(float))));
    // Per row: the next entry to use, and the first entry of the current slice.
    thread_local std::vector<int64_t> next_buf, slice_first_buf;
    int64_t* next = scratch(next_buf, rows);
    int64_t* slice_first = scratch(slice_first_buf, rows);
    for (int64_t r = 0; r < rows; ++r) next[r] = a.first[lo + r];
    // The chains of the second and later kc-slices, added to C when complete.
    thread_local std::vector<float> slice_buf;
    const bool sliced = K > KC;
    float* const slice_sums = sliced ? scratch(slice_buf, rows * N) : nullptr;
    int64_t pc = 0;
    do {  // the kc-slices of gemm, at least one (K = 0: C = 0 as in gemm)
        const int64_t pc_end = std::min(K, pc + KC);
        float* const sums = pc == 0 ? C + lo * ldc : slice_sums;
        const int64_t ld_sums = pc == 0 ? ldc : N;
        std::copy(next, next + rows, slice_first);
        for (int64_t kb = pc; kb < pc_end || kb == pc; kb += KB) {
            const int64_t kb_end = std::min(pc_end, kb + KB);
            for (int64_t r = 0; r < rows; ++r) {
                const int64_t e = next[r], end = a.first[lo + r] + a.count[lo + r];
                int64_t e_next = end;  // all the row's entries left, unless some lie past the block:
                if (e < end && a.index[end - 1] >= kb_end)
                    for (e_next = e; a.index[e_next] < kb_end;) ++e_next;
                if (e_next == e) continue;
                uk.run_nonzero_row(e_next - e, a.value.data() + e, a.index.data() + e, B, ldb, N,
                                   sums + r * ld_sums, e == slice_first[r]);
                next[r] = e_next;
            }
        }
        for (int64_t r = 0; r < rows; ++r) {
            float* s = sums + r * ld_sums;
            if (next[r] == slice_first[r]) std::fill(s, s + N, 0.0f);  // no entry: +0
            if (pc > 0) {  // gemm: C = (slice sum)·α + C, α = 1
                float* c = C + (lo + r) * ldc;
                for (int64_t j = 0; j < N; ++j) c[j] = s[j] + c[j];
            }
        }
        pc = pc_end;
    } while (pc < K);
    epilogue_rows(uk, ep, N, C, ldc, lo, hi);
}

// The k in [k_lo, k_hi) of rows [lo, hi) of C = act(A·B + bias), for A of
// one kc-slice (K ≤ kc): each row's chain continues from what C holds when
// entries of lower k came before (parallel_pipeline runs the shares of k in
// order); the share that ends at K completes the rows. The same k-blocks as
// nonzero_block, and a chain continued through C is the same chain.
// share_first[r − lo], when given, is row r's first entry of k ≥ k_lo (the
// share just wrote its entries there); otherwise it is searched for.
void nonzero_k_share(const GemmPlan& plan, const NonzeroRows& a, const float* B, int64_t ldb,
                     int64_t N, float* C, int64_t ldc, const GemmEpilogue& ep, int64_t k_lo,
                     int64_t k_hi, int64_t lo, int64_t hi, const int64_t* share_first = nullptr) {
    const MicroKernel& uk = *plan.kernel;
    const int32_t* const index = a.index.data();
    // The rows' sums were last written by another core (the share before, or
    // the last share a step ago): ask for all their lines at once, not one
    // row's at a time as the chains reach them.
    for (int64_t r = lo; r < hi; ++r)
        for (int64_t j = 0; j < N; j += 64 / static_cast<int64_t>(sizeof(float)))
            __builtin_prefetch(C + r * ldc + j, 1);
    const int64_t KB = std::max<int64_t>(1, kBlockBytes / (N * static_cast<int64_t>(sizeof(float))));
    for (int64_t kb = k_lo; kb < k_hi; kb += KB) {
        const int64_t kb_end = std::min(k_hi, kb + KB);
        for (int64_t r = lo; r < hi; ++r) {
            const int32_t* const row = index + a.first[r];
            const int32_t* const row_end = row + a.count[r];
            // Not a search from the row's start: the entries before k_lo
            // were written by other threads, and a binary search's probes
            // each wait for one of their cache lines to come from the other
            // core (~330 ns when the host runs the two vCPUs far apart).
            const int32_t* const from = share_first ? index + share_first[r - lo] : row;
            const int32_t* const e = std::lower_bound(from, row_end, kb);
            const int32_t* const e_end = std::lower_bound(e, row_end, kb_end);
            if (e_end == e) continue;
            uk.run_nonzero_row(e_end - e, a.value.data() + (e - index), e, B, ldb, N, C + r * ldc,
                               e == row);
        }
    }
    if (k_hi < a.cols) return;
    for (int64_t r = lo; r < hi; ++r)
        if (a.count[r] == 0) std::fill(C + r * ldc, C + r * ldc + N, 0.0f);  // no entry: +0
    epilogue_rows(uk, ep, N, C, ldc, lo, hi);
}
}  // namespace

int64_t count_zeros(const float* X, int64_t rows, int64_t cols, int64_t ld, int64_t limit) {
    int64_t zeros = 0;
    for (int64_t r = 0; r < rows && r * cols < limit; ++r) {
        const float* x = X + r * ld;
        const int64_t n = std::min(cols, limit - r * cols);
        int32_t row_zeros = 0;  // (vectorises)
        for (int64_t k = 0; k < n; ++k) row_zeros += x[k] == 0.0f;
        zeros += row_zeros;
    }
    return zeros;
}

void nonzero_rows(const float* X, int64_t rows, int64_t cols, int64_t ld, NonzeroRows& out) {
    out.rows = rows, out.cols = cols;
    const NonzeroEntriesFn compact = gemm_plan().kernel->nonzero_entries;
    int64_t* first = scratch(out.first, rows);
    int32_t* count = scratch(out.count, rows);
    int64_t nnz = 0;
    for (int64_t r = 0; r < rows; ++r) {
        // room for a whole row and the vector nonzero_entries may write past
        // it; the buffers grow to twice what is needed at most
        const int64_t need = nnz + cols + 16;
        if (static_cast<int64_t>(out.index.size()) < need) {
            const int64_t size = std::min(std::max<int64_t>(need, 2 * static_cast<int64_t>(out.index.size())),
                                          rows * cols + 16);
            out.index.resize(size), out.value.resize(size);
        }
        first[r] = nnz;
        count[r] = static_cast<int32_t>(
            compact(X + r * ld, 0, cols, out.index.data() + nnz, out.value.data() + nnz));
        nnz += count[r];
    }
    out.nnz = nnz;
}

// Columns [lo, hi) of a, transposed: out's row c holds column c's entries
// for c in [lo, hi) (out.rows = hi; the rows before lo are left unset).
void transpose_columns(const NonzeroRows& a, int64_t lo, int64_t hi, NonzeroRows& out) {
    out.rows = hi, out.cols = a.rows;
    // Plain pointers, not the vectors: a store through out's int32 count could
    // otherwise be a's count, so GCC would reload a's row bounds after each.
    int64_t* const first = scratch(out.first, hi);
    int32_t* const count = scratch(out.count, hi);
    const int64_t* const a_first = a.first.data();
    const int32_t* const a_count = a.count.data();
    const int32_t* const a_index = a.index.data();
    const float* const a_value = a.value.data();
    // Each row's entries in [lo, hi): its index is increasing. A bound at
    // an end of [0, a.cols) needs no search: each search probes entries
    // that another thread may have written (gemm_skipping_zeros), each
    // probe a cache line from the other core.
    const auto entries = [&](int64_t r, int64_t& e, int64_t& end) {
        e = a_first[r], end = e + a_count[r];
        if (lo > 0) e = std::lower_bound(a_index + e, a_index + end, lo) - a_index;
        if (hi < a.cols) end = std::lower_bound(a_index + e, a_index + end, hi) - a_index;
    };
    // Count each column's entries, then place them: the entries stay packed
    // (in L1 for a batch of MNIST), which costs far fewer cache misses than a
    // slot of a.rows per column. While placing, first[c] is the next free
    // slot of column c; it is put back at the end.
    std::fill(count + lo, count + hi, 0);
    int64_t nnz = 0;
    for (int64_t r = 0, e, end; r < a.rows; ++r)
        for (entries(r, e, end), nnz += end - e; e < end; ++e) ++count[a_index[e]];
    int32_t* const index = scratch(out.index, nnz);
    float* const value = scratch(out.value, nnz);
    out.nnz = nnz;
    int64_t offset = 0;
    for (int64_t c = lo; c < hi; ++c) first[c] = offset, offset += count[c];
    for (int64_t r = 0, e, end; r < a.rows; ++r)
        for (entries(r, e, end); e < end; ++e) {
            const int64_t p = first[a_index[e]]++;
            index[p] = static_cast<int32_t>(r);
            value[p] = a_value[e];
        }
    for (int64_t c = lo; c < hi; ++c) first[c] -= count[c];
}

void transpose(const NonzeroRows& a, NonzeroRows& out) { transpose_columns(a, 0, a.cols, out); }

namespace {
// Threads split the larger of B and C, which then stays in the caches of the
// threads that own its parts (parallel.h, share_begin): a layer's weight B = W
// (K > M: a small batch) by its rows k, in a pipeline along k that continues
// each row's sums in order (parallel_pipeline); otherwise the rows of C (the
// weight gradient xᵀ·dz, a large batch). The pipeline needs the whole sum in
// one kc-slice.
bool pipeline_along_k(const GemmPlan& plan, int64_t M, int64_t K) {
    return K > M && K <= plan.blocks.kc;
}

// The pipeline's grain: k per thread worth its cost, for nnz entries in A.
int64_t grain_along_k(int64_t nnz, int64_t K, int64_t N) {
    const int64_t flops_per_k = 2 * N * std::max<int64_t>(1, nnz / K);
    return std::max<int64_t>(1, kMinFlopsPerThread / flops_per_k);
}
}  // namespace

void gemm_nonzero_with_plan(const GemmPlan& plan, const NonzeroRows& a, const float* B,
                            int64_t ldb, int64_t N, float* C, int64_t ldc,
                            const GemmEpilogue& ep) {
    const int64_t M = a.rows, K = a.cols;
    if (M <= 0 || N <= 0) return;
    if (pipeline_along_k(plan, M, K)) {
        parallel_pipeline(0, K, grain_along_k(a.nnz, K, N), M,
                          [&](int64_t k_lo, int64_t k_hi, int64_t lo, int64_t hi) {
                              nonzero_k_share(plan, a, B, ldb, N, C, ldc, ep, k_lo, k_hi, lo, hi);
                          });
        return;
    }
    const int64_t flops_per_row = 2 * N * std::max<int64_t>(1, a.nnz / M);
    const int64_t grain = std::max<int64_t>(1, kMinFlopsPerThread / flops_per_row);
    parallel_for(
        0, M, grain,
        [&](int64_t lo, int64_t hi) { nonzero_block(plan, a, B, ldb, N, C, ldc, ep, lo, hi); },
        grain);
}

void gemm_nonzero_transposed(const NonzeroRows& a, const float* B, int64_t ldb, int64_t N,
                             float* C, int64_t ldc) {
    const GemmPlan& plan = gemm_plan();
    const int64_t M = a.cols;
    if (M <= 0 || N <= 0) return;
    // Rows [lo, hi) of C need only a's columns [lo, hi): each chunk transposes
    // those itself, so the transpose is split between the threads as the
    // product is, and each thread's columns are in its own cache when it
    // multiplies. The rows of C are split as gemm_nonzero splits them (C is
    // a weight's gradient, whose rows the same thread owns in the forward
    // and in the optimizer step).
    // One chunk per thread: every chunk searches all of a's rows for its
    // columns, so more chunks would repeat that search.
    const int64_t flops_per_row = 2 * N * std::max<int64_t>(1, a.nnz / M);
    const int64_t threads = get_num_threads();
    const int64_t work_grain = std::max<int64_t>(1, kMinFlopsPerThread / flops_per_row);
    const int64_t grain = std::max(work_grain, (M + threads - 1) / threads);
    parallel_for(
        0, M, grain,
        [&](int64_t lo, int64_t hi) {
            thread_local NonzeroRows columns;
            transpose_columns(a, lo, hi, columns);
            nonzero_block(plan, columns, B, ldb, N, C, ldc, GemmEpilogue{}, lo, hi);
        },
        work_grain);
}

void gemm_nonzero(const NonzeroRows& a, const float* B, int64_t ldb, int64_t N, float* C,
                  int64_t ldc, const GemmEpilogue& epilogue) {
    gemm_nonzero_with_plan(gemm_plan(), a, B, ldb, N, C, ldc, epilogue);
}

void gemm_skipping_zeros(const float* X, int64_t M, int64_t K, int64_t ldx, const float* B,
                         int64_t ldb, int64_t N, float* C, int64_t ldc, const GemmEpilogue& ep,
                         NonzeroRows& a) {
    const GemmPlan& plan = gemm_plan();
    if (M <= 0 || N <= 0 || !pipeline_along_k(plan, M, K)) {
        nonzero_rows(X, M, K, ldx, a);
        gemm_nonzero_with_plan(plan, a, B, ldb, N, C, ldc, ep);
        return;
    }
    // In the pipeline each share finds the entries of its own k in each block
    // of rows just before it multiplies them, so the threads share that work
    // and none waits for the whole of it. Row r's entries start at r·stride:
    // a share appends after those of the shares before it (which ran before
    // it on these rows), and its kernel's writes past its last entry (up to
    // 16) land where the next share's will go, or in the row's spare 16.
    const int64_t stride = K + 16;
    a.rows = M, a.cols = K;
    int64_t* const first = scratch(a.first, M);
    int32_t* const count = scratch(a.count, M);
    int32_t* const index = scratch(a.index, M * stride);
    float* const value = scratch(a.value, M * stride);
    const NonzeroEntriesFn compact = plan.kernel->nonzero_entries;
    const int64_t sample = std::min<int64_t>(M * K, 4096);
    const int64_t nnz_estimate = (sample - count_zeros(X, M, K, ldx, sample)) * (M * K) / sample;
    parallel_pipeline(0, K, grain_along_k(nnz_estimate, K, N), M,
                      [&](int64_t k_lo, int64_t k_hi, int64_t lo, int64_t hi) {
                          thread_local std::vector<int64_t> share_first_buf;
                          int64_t* const share_first = scratch(share_first_buf, hi - lo);
                          for (int64_t r = lo; r < hi; ++r) {
                              if (k_lo == 0) first[r] = r * stride, count[r] = 0;
                              const int64_t at = first[r] + count[r];
                              share_first[r - lo] = at;
                              count[r] += static_cast<int32_t>(
                                  compact(X + r * ldx, k_lo, k_hi, index + at, value + at));
                          }
                          nonzero_k_share(plan, a, B, ldb, N, C, ldc, ep, k_lo, k_hi, lo, hi,
                                          share_first);
                      });
    a.nnz = 0;
    for (int64_t r = 0; r < M; ++r) a.nnz += count[r];
}

void reference::gemm_nonzero(const NonzeroRows& a, const float* B, int64_t ldb, int64_t N,
                             float* C, int64_t ldc, const GemmEpilogue& ep) {
    for (int64_t r = 0; r < a.rows; ++r) {
        float* c = C + r * ldc;
        for (int64_t j = 0; j < N; ++j) {
            double sum = 0.0;
            for (int64_t e = a.first[r]; e < a.first[r] + a.count[r]; ++e)
                sum += static_cast<double>(a.value[e]) * B[a.index[e] * ldb + j];
            c[j] = static_cast<float>(sum);
            if (ep.bias) c[j] += ep.bias[j];
        }
        if (ep.activation != Activation::identity)
            reference::activation_forward(ep.activation, c, c, N, ep.alpha);
    }
}

}  // namespace fz
