// parallel.h — the one place fromzero talks to OpenMP.
//
// Kernels never write `#pragma omp` themselves; they call parallel_for with a
// grain size (the smallest amount of work worth a thread), like ATen's
// at::parallel_for. Work is split into contiguous chunks, each thread owns the
// outputs of its chunk, so no atomics are needed and every output element is
// computed by the same sequence of operations whatever the thread count.
#pragma once
#include <algorithm>
#include <atomic>
#include <cstdint>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace fz {

inline bool has_openmp() {
#ifdef _OPENMP
    return true;
#else
    return false;
#endif
}

// The count set by set_num_threads, 0 until then. One value for the whole
// process, as torch.set_num_threads: omp_set_num_threads() alone sets only the
// calling thread's OpenMP setting, so a count set from Python's main thread
// did not apply to kernels called from other Python threads (each of which
// starts with OMP_NUM_THREADS or the core count).
inline std::atomic<int>& num_threads_setting() {
    static std::atomic<int> n{0};
    return n;
}

// Threads used by the kernels (OMP_NUM_THREADS or the core count by default).
inline int get_num_threads() {
#ifdef _OPENMP
    const int n = num_threads_setting().load(std::memory_order_relaxed);
    return n > 0 ? n : omp_get_max_threads();
#else
    return 1;
#endif
}

inline void set_num_threads(int n) {
#ifdef _OPENMP
    n = std::max(1, n);
    num_threads_setting().store(n, std::memory_order_relaxed);
    omp_set_num_threads(n);
#else
    (void)n;
#endif
}

// Calls f(chunk_begin, chunk_end) over [begin, end) split into at most
// get_num_threads() contiguous chunks of at least `grain` iterations.
// Small ranges run inline on the calling thread: no parallel region at all.
template <class F>
void parallel_for(int64_t begin, int64_t end, int64_t grain, const F& f) {
    const int64_t n = end - begin;
    if (n <= 0) return;
    grain = std::max<int64_t>(grain, 1);
    const int64_t max_chunks = (n + grain - 1) / grain;
    const int64_t chunks = std::min<int64_t>(get_num_threads(), max_chunks);
    if (chunks <= 1) {
        f(begin, end);
        return;
    }
#ifdef _OPENMP
#pragma omp parallel num_threads(static_cast<int>(chunks))
    {
        const int64_t t = omp_get_thread_num();
        const int64_t nt = omp_get_num_threads();
        const int64_t lo = begin + n * t / nt;
        const int64_t hi = begin + n * (t + 1) / nt;
        if (lo < hi) f(lo, hi);
    }
#else
    f(begin, end);
#endif
}

}  // namespace fz
