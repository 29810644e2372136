// parallel.h — the one place fromzero talks to OpenMP.
//
// Kernels never write `#pragma omp` themselves; they call parallel_for with a
// grain size (the smallest amount of work worth a thread), like ATen's
// at::parallel_for. Each call of f owns the outputs of its range, so no
// atomics are needed in the arithmetic.
//
// The contract a kernel keeps: what f computes for an output must not depend
// on how [begin, end) is cut — every output element is computed by the same
// sequence of operations whether f gets the whole range or any piece of it.
// parallel_for relies on it to cut the range freely, and so the results are
// bit-identical for any thread count and any load.
//
// A machine shared with other programs is the hard case. A parallel region
// ends when its last thread ends, and when two threads of the team share one
// core (another program took the other one, or the scheduler put them
// together) one of them runs only when the other's time slice of a few
// milliseconds ends: every region waits for it, and an epoch of 0.44 s on one
// thread took 1 to 18 s on two. So parallel_for
//   1. cuts the range into up to kChunksPerThread chunks per thread; each
//      thread works through its own share of them, then claims chunks left in
//      the others' shares: a slowed thread simply does fewer chunks;
//   2. times each thread's arrival in the region and the end of its work: a
//      thread idle for most of a region, longer than a core of its own ever
//      makes it wait (team_was_late), means the team did not run in parallel.
//      Then, for a while (16 ms; while it keeps happening, doubling up to
//      1 s), kernels run on the calling thread alone, with no parallel
//      region; afterwards a region tries the team again.
// Each thread also runs its part with the flush-to-zero setting in force
// (set_flush_denormal), and restores its own state on the way out.
#pragma once
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>

#if defined(__SSE__) || defined(__x86_64__)
#include <xmmintrin.h>
#define FZ_HAVE_MXCSR 1
#endif

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

// ---------------------------------------------------------------- denormals
//
// Floats below 2^-126 ≈ 1.18e-38 are "denormal" (subnormal): they fill the gap
// to zero with less precision, and on many CPUs every operation that reads or
// makes one takes a slow path, up to ~100 times slower. Training makes them
// (Adam's moments of always-zero inputs decay towards 0 as β^t). With flushing
// on, the kernels run with the CPU's two MXCSR switches set: FTZ (results that
// would be denormal become ±0) and DAZ (denormal inputs are read as ±0). The
// setting applies to fromzero's kernels only — each kernel thread sets it on
// entry and restores its previous state on exit, so Python's and NumPy's own
// float arithmetic is unchanged. On by default (docs/09-making-it-fast.md).
inline std::atomic<bool>& flush_denormal_setting() {
    static std::atomic<bool> on{true};
    return on;
}

inline bool get_flush_denormal() { return flush_denormal_setting().load(std::memory_order_relaxed); }
inline void set_flush_denormal(bool on) { flush_denormal_setting().store(on, std::memory_order_relaxed); }

// Puts the thread's FTZ/DAZ bits to the setting for its lifetime, then restores them.
class DenormalScope {
public:
    DenormalScope() {
#ifdef FZ_HAVE_MXCSR
        saved_ = _mm_getcsr();
        const unsigned wanted = get_flush_denormal() ? saved_ | kFtzDaz : saved_ & ~kFtzDaz;
        if (wanted != saved_) _mm_setcsr(wanted);
#endif
    }
    ~DenormalScope() {
#ifdef FZ_HAVE_MXCSR
        if (_mm_getcsr() != saved_) _mm_setcsr(saved_);
#endif
    }
    DenormalScope(const DenormalScope&) = delete;
    DenormalScope& operator=(const DenormalScope&) = delete;

private:
#ifdef FZ_HAVE_MXCSR
    static constexpr unsigned kFtzDaz = 0x8040;  // MXCSR bit 15 flush-to-zero, bit 6 denormals-are-zero
    unsigned saved_ = 0;
#endif
};

// ---------------------------------------------------------------- parallel_for

namespace detail {

constexpr int64_t kChunksPerThread = 4;
constexpr int kSmallTeam = 16;  // teams up to this size keep their chunk counters on the stack
constexpr int64_t kLateWaitNs = 200'000;       // idle time in a region that can count as late
constexpr int64_t kFirstBackoffNs = 16'000'000;  // then 16 ms on one thread, doubling ...
constexpr int64_t kMaxBackoffNs = 1'000'000'000;  // ... up to 1 s

inline int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

// The next unclaimed chunk of one thread's share and the end of that share;
// when its thread arrived in the region and when it found no chunk left.
struct alignas(64) ChunkCounter {
    std::atomic<int64_t> next{0};
    int64_t end = 0;
    int64_t arrived_ns = 0;
    int64_t done_ns = 0;
};

// What the regions have seen of the workers, shared by all calling threads.
struct TeamHealth {
    std::atomic<int64_t> serial_until_ns{0};  // run on the calling thread alone until then
    std::atomic<int64_t> backoff_ns{kFirstBackoffNs};
    std::atomic<int64_t> late_regions{0};     // how often workers were late (for tests and info)
};

inline TeamHealth& team_health() {
    static TeamHealth health;
    return health;
}

// A region whose threads each have a core of their own keeps every thread
// busy but for a few microseconds: waking a sleeping worker takes ~50 µs, and
// the chunks claimed dynamically leave at most about one chunk's time of
// waiting at the end. When two of its threads share one core — another
// program took the other, or the scheduler put them together — one of them
// runs only when the other's time slice ends: it arrives, or finishes the
// chunk it holds, milliseconds late while the others wait. So a thread idle
// in the region (arriving after its start, or waiting at its end) longer than
// kLateWaitNs and longer than 3/4 of the whole region means the team did not
// run in parallel. (A region cut so unevenly that a thread with a core of its
// own idles for 3/4 of it gained less than 1.25× from the team: running the
// next ones serially costs it little.)
inline bool team_was_late(int64_t idle_ns, int64_t region_ns) {
    return idle_ns > kLateWaitNs && 4 * idle_ns > 3 * region_ns;
}

// After a region where the team was late, the next regions run serially for
// the back-off time. While lateness repeats the back-off doubles, so on a
// machine that stays busy the late regions that try the team again become
// rare: each costs a few ms at most (a scheduler tick, or libgomp's spin),
// under 1 % of the 1 s it ends up at, and a machine that becomes quiet again
// gets its second core back within a second. It resets only when the team has then
// run a whole back-off time without lateness: one good region proves little
// (after a serial stretch the worker is asleep, and its first region is often
// fine), and resetting on it made a loaded machine pay a late region every
// 16 ms.
inline void record_region(bool late, int64_t end_ns) {
    TeamHealth& h = team_health();
    const int64_t backoff = h.backoff_ns.load(std::memory_order_relaxed);
    if (late) {
        h.serial_until_ns.store(end_ns + backoff, std::memory_order_relaxed);
        h.backoff_ns.store(std::min(2 * backoff, kMaxBackoffNs), std::memory_order_relaxed);
        h.late_regions.fetch_add(1, std::memory_order_relaxed);
    } else if (backoff != kFirstBackoffNs &&
               end_ns > h.serial_until_ns.load(std::memory_order_relaxed) + backoff) {
        h.backoff_ns.store(kFirstBackoffNs, std::memory_order_relaxed);
    }
}

}  // namespace detail

// How many regions found a worker late since the process started.
inline int64_t late_regions() { return detail::team_health().late_regions.load(); }

// Calls f(chunk_begin, chunk_end) over [begin, end) cut into chunks of at
// least `grain` iterations, claimed by up to get_num_threads() threads. Small
// ranges, every range when one thread is asked for, and every range for a
// while after workers were late run as one call on the calling thread: no
// parallel region at all.
template <class F>
void parallel_for(int64_t begin, int64_t end, int64_t grain, const F& f) {
    const int64_t n = end - begin;
    if (n <= 0) return;
    grain = std::max<int64_t>(grain, 1);
    const int64_t threads = get_num_threads();
    const int64_t chunks = std::min<int64_t>((n + grain - 1) / grain, detail::kChunksPerThread * threads);
    bool serial = chunks <= 1 || threads <= 1;
#ifdef _OPENMP
    serial = serial || omp_in_parallel() ||
             detail::now_ns() < detail::team_health().serial_until_ns.load(std::memory_order_relaxed);
#else
    serial = true;
#endif
    if (serial) {
        DenormalScope denormals;
        f(begin, end);
        return;
    }
#ifdef _OPENMP
    // Thread t's own chunks are [chunks·t/team, chunks·(t+1)/team): the
    // contiguous share a static split would give it, so consecutive kernels
    // over the same arrays find their part in the same core's cache. A thread
    // that runs out of its own chunks claims the others' (each share has its
    // own counter, on its own cache line).
    const int team = static_cast<int>(std::min(threads, chunks));
    detail::ChunkCounter small[detail::kSmallTeam];
    std::unique_ptr<detail::ChunkCounter[]> large;
    detail::ChunkCounter* share = small;
    if (team > detail::kSmallTeam) share = (large.reset(new detail::ChunkCounter[team]), large.get());
    for (int t = 0; t < team; ++t) {
        share[t].next.store(chunks * t / team, std::memory_order_relaxed);
        share[t].end = chunks * (t + 1) / team;
    }
    const int64_t start_ns = detail::now_ns();
#pragma omp parallel num_threads(team)
    {
        DenormalScope denormals;
        const int me = omp_get_thread_num();
        share[me].arrived_ns = detail::now_ns();
        for (int v = 0; v < team; ++v) {  // my share first, then the next ones round the team
            detail::ChunkCounter& from = share[(me + v) % team];
            for (int64_t c; (c = from.next.fetch_add(1, std::memory_order_relaxed)) < from.end;)
                f(begin + n * c / chunks, begin + n * (c + 1) / chunks);
        }
        share[me].done_ns = detail::now_ns();
    }
    const int64_t end_ns = detail::now_ns();
    int64_t idle_ns = 0;  // the longest a thread of the team was there without working
    for (int t = 0; t < team; ++t)
        idle_ns = std::max(idle_ns, (share[t].arrived_ns - start_ns) + (end_ns - share[t].done_ns));
    detail::record_region(detail::team_was_late(idle_ns, end_ns - start_ns), end_ns);
#endif
}

}  // namespace fz
