// parallel.h — the one place fromzero talks to OpenMP.
//
// Kernels never write `#pragma omp` themselves; they call parallel_for with a
// grain size (the smallest amount of work worth a thread), like ATen's
// at::parallel_for, or parallel_pipeline for a sum split along k. Each call
// of f owns the outputs of its range, so no atomics are needed in the
// arithmetic. Thread t's share of a range is [n·t/team, n·(t+1)/team)
// whatever the grain (share_begin), so kernels over the same array find
// their part in their own core's cache.
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
//      region; afterwards a region tries the team again;
//   3. every 50 ms, has two threads of a region toss a cache line to each
//      other a few times: when the trip takes far longer than between two
//      cores of one chip (a VM whose vCPUs the host runs far apart), a
//      region of a training step with little work (a product, the batch
//      gather, the optimizer's update) runs on the calling thread
//      (far_team_runs_serially).
// Each thread also runs its part with the flush-to-zero setting in force
// (set_flush_denormal), and restores its own state on the way out.
#pragma once
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <thread>

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
constexpr int64_t kPipelineBlocks = 8;  // parallel_pipeline's blocks of rows
constexpr int64_t kSpinNs = 50'000;     // its waits spin this long before yielding
constexpr int64_t kProbeIntervalNs = 50'000'000;  // the round trip is measured this often
constexpr int kProbeTrips = 8;                    // the fastest of this many trips
constexpr int64_t kFarRoundTripNs = 150;          // a longer round trip: a far team ...
constexpr int64_t kFarGrains = 24;                // ... runs regions of fewer grains serially

inline int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

// One thread's share [lo, hi) of a region's range: parallel_for's next
// unclaimed chunk of it and its chunks [first, end) (parallel_pipeline's
// started flag and finished blocks); when its thread arrived in the region
// and when it found no work left.
struct alignas(64) ChunkCounter {
    std::atomic<int64_t> next{0};
    std::atomic<int64_t> done{0};
    int64_t first = 0, end = 0;
    int64_t lo = 0, hi = 0;
    int64_t arrived_ns = 0;
    int64_t done_ns = 0;
    int64_t waited_ns = 0;  // (parallel_pipeline) waiting for another thread's share
};

// The team's counters: on the stack for small teams.
class Shares {
public:
    explicit Shares(int team) : p_(team > kSmallTeam ? (large_.reset(new ChunkCounter[team]), large_.get()) : small_) {}
    ChunkCounter& operator[](int t) { return p_[t]; }
    ChunkCounter* data() { return p_; }
    alignas(64) std::atomic<int64_t> ball{0};  // (probe_round_trip)

private:
    ChunkCounter small_[kSmallTeam];
    std::unique_ptr<ChunkCounter[]> large_;
    ChunkCounter* p_;
};

// Chunks of at least `grain` iterations, up to kChunksPerThread per thread.
inline int64_t chunk_count(int64_t n, int64_t grain) {
    grain = std::max<int64_t>(grain, 1);
    return std::min<int64_t>((n + grain - 1) / grain, kChunksPerThread * get_num_threads());
}

// Waiting since since_ns for another thread of the team: spin for up to
// kSpinNs — a share's block takes a few microseconds — then let the core go,
// which the thread waited for may be sharing. (Yielding at once, a system
// call in a VM, made the forward product of the MNIST layer 50% slower.)
inline void pause(int64_t since_ns) {
    if (now_ns() - since_ns < kSpinNs) {
#ifdef FZ_HAVE_MXCSR
        _mm_pause();
#endif
    } else {
        std::this_thread::yield();
    }
}

// What the regions have seen of the workers, shared by all calling threads.
struct TeamHealth {
    std::atomic<int64_t> serial_until_ns{0};  // run on the calling thread alone until then
    std::atomic<int64_t> backoff_ns{kFirstBackoffNs};
    std::atomic<int64_t> late_regions{0};     // how often workers were late (for tests and info)
    std::atomic<int64_t> round_trip_ns{0};    // a cache line between two threads and back, last measured
    std::atomic<int64_t> next_probe_ns{0};    // a region measures it again from then on
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

// A far team. On the 2-vCPU KVM guest measured (AMD EPYC), a cache line goes
// from one thread of the team to the other and back in ~55 ns most of the
// time, but for episodes of seconds, when the host runs the two vCPUs far
// apart, in ~330 ns. Every line that one thread writes and the other then
// reads costs that much more, and a training step is full of them: a
// kernel's output, split between the threads, read whole by the next kernel
// or by the small kernels in between that run on the calling thread. In the
// batch-128 MNIST MLP step (bench/far_step.cpp) the team took 271 µs near,
// 512 µs far, and one thread 406 µs: every kernel lost to one thread when far —
// the first layer's forward 183 µs against 134, its backward 154 against 149,
// the batch gather 86 against 66, the small second layer 51 against 22.
// So when the last round trip measured (probe_round_trip) is longer than
// kFarRoundTripNs, the regions of a training step run on the calling
// thread if they have fewer than kFarGrains grains of work (those of that
// step have at most 19), so that what one writes the next reads from its
// own cache: the products, whose threads all read the other operand, the
// batch gather, which fills the rows the first layer's pipeline reads
// across its k-shares, the activation gradient between products, and the
// optimizer's update, which reads the products' gradients (left on the
// team, it took 70–125 µs far against 29 serially, and the products after
// it slowed down too). Such a region says so by giving its grain of work as
// `far_grain` (parallel_for). The others (0) keep the team: a standalone
// elementwise or row-wise kernel, each thread reading and writing its own
// share, ran at full speed on a far team and at half on one thread (relu
// over 128×1024: 8.9 µs near, 12.5 µs serial; log-softmax 34 against 63
// µs). n/grain counts the work only when the grain is more than one
// iteration: with grain 1, each iteration is worth a thread already (a big
// GEMM's 32 panels of 1024²): those keep the team.
inline bool far_team_runs_serially(int64_t round_trip_ns, int64_t n, int64_t far_grain) {
    return round_trip_ns > kFarRoundTripNs && far_grain > 1 && n < kFarGrains * far_grain;
}

// One call on the calling thread, no parallel region: a single chunk, one
// thread asked for, already inside a region, a while after workers were
// late, or little work for a far team. Otherwise `probe` says whether this
// region is to measure the round trip (one region every kProbeIntervalNs,
// taking the team even when it is far, so that the end of a far episode is seen).
inline bool run_serially(int64_t n, int64_t far_grain, int64_t chunks, bool& probe) {
    probe = false;
#ifdef _OPENMP
    if (chunks <= 1 || get_num_threads() <= 1 || omp_in_parallel()) return true;
    TeamHealth& h = team_health();
    const int64_t now = now_ns();
    if (now < h.serial_until_ns.load(std::memory_order_relaxed)) return true;
    int64_t due = h.next_probe_ns.load(std::memory_order_relaxed);
    if (now >= due && h.next_probe_ns.compare_exchange_strong(due, now + kProbeIntervalNs,
                                                              std::memory_order_relaxed)) {
        probe = true;
        return false;
    }
    return far_team_runs_serially(h.round_trip_ns.load(std::memory_order_relaxed), n, far_grain);
#else
    (void)n, (void)far_grain, (void)chunks;
    return true;
#endif
}

// Threads 0 and 1 of a region, each done with its work, toss `ball` to each
// other kProbeTrips times; thread 0 times each trip and keeps the fastest
// (the first waits for thread 1 to arrive, and a trip during which either
// thread lost its core to another program takes milliseconds).
inline void probe_round_trip(std::atomic<int64_t>& ball, int me) {
#ifdef _OPENMP
    if (me > 1 || omp_get_num_threads() < 2) return;  // (the runtime may give fewer threads)
#endif
    int64_t fastest = INT64_MAX;
    for (int64_t trip = 0; trip < kProbeTrips; ++trip) {
        const int64_t start = now_ns();
        if (me == 0) {
            ball.store(2 * trip + 1, std::memory_order_release);
            while (ball.load(std::memory_order_acquire) != 2 * trip + 2) pause(start);
            fastest = std::min(fastest, now_ns() - start);
        } else {
            while (ball.load(std::memory_order_acquire) != 2 * trip + 1) pause(start);
            ball.store(2 * trip + 2, std::memory_order_release);
        }
    }
    if (me == 0) team_health().round_trip_ns.store(fastest, std::memory_order_relaxed);
}

// After a region: the longest a thread was there without working decides
// whether the team was late (team_was_late).
inline void record_team(const ChunkCounter* share, int team, int64_t start_ns) {
    const int64_t end_ns = now_ns();
    int64_t idle_ns = 0;
    for (int t = 0; t < team; ++t)
        idle_ns = std::max(idle_ns, (share[t].arrived_ns - start_ns) + share[t].waited_ns +
                                        (end_ns - share[t].done_ns));
    record_region(team_was_late(idle_ns, end_ns - start_ns), end_ns);
}

}  // namespace detail

// Where share t of [begin, end) begins when a team of `team` threads splits
// it: begin + n·t/team, whatever the grain or the number of chunks. Kernels
// that go over the same array as the same range give each thread the same
// part of it, which so stays in that thread's core's cache from one kernel
// to the next (the other core reading it costs about twice as long as its
// own L2 on the machines measured).
inline int64_t share_begin(int64_t begin, int64_t end, int64_t t, int64_t team) {
    return begin + (end - begin) * t / team;
}

// How many regions found a worker late since the process started.
inline int64_t late_regions() { return detail::team_health().late_regions.load(); }

// Calls f(chunk_begin, chunk_end) over [begin, end) cut into chunks of at
// least `grain` iterations, claimed by up to get_num_threads() threads. Small
// ranges, every range when one thread is asked for, every range for a
// while after workers were late, and, on a far team, small ones that move
// lines between the threads run as one call on the calling thread: no
// parallel region at all. Such a region passes its grain of work as
// `far_grain` (far_team_runs_serially): the iterations worth a thread, which
// may be fewer than `grain` when a kernel raises that to cut fewer chunks.
template <class F>
void parallel_for(int64_t begin, int64_t end, int64_t grain, const F& f, int64_t far_grain = 0) {
    const int64_t n = end - begin;
    if (n <= 0) return;
    const int64_t threads = get_num_threads();
    const int64_t chunks = detail::chunk_count(n, grain);
    bool probe;
    if (detail::run_serially(n, far_grain, chunks, probe)) {
        DenormalScope denormals;
        f(begin, end);
        return;
    }
#ifdef _OPENMP
    // Thread t's own chunks cut its share of the range (share_begin), and a
    // thread that runs out of its own chunks claims the others' (each share
    // has its own counter, on its own cache line).
    const int team = static_cast<int>(std::min(threads, chunks));
    detail::Shares share(team);
    for (int t = 0; t < team; ++t) {
        share[t].next.store(chunks * t / team, std::memory_order_relaxed);
        share[t].first = chunks * t / team;
        share[t].end = chunks * (t + 1) / team;
        share[t].lo = share_begin(begin, end, t, team);
        share[t].hi = share_begin(begin, end, t + 1, team);
    }
    const int64_t start_ns = detail::now_ns();
#pragma omp parallel num_threads(team)
    {
        DenormalScope denormals;
        const int me = omp_get_thread_num();
        share[me].arrived_ns = detail::now_ns();
        for (int v = 0; v < team; ++v) {  // my share first, then the next ones round the team
            detail::ChunkCounter& from = share[(me + v) % team];
            const int64_t pieces = from.end - from.first, length = from.hi - from.lo;
            for (int64_t c; (c = from.next.fetch_add(1, std::memory_order_relaxed)) < from.end;)
                f(from.lo + length * (c - from.first) / pieces,
                  from.lo + length * (c + 1 - from.first) / pieces);
        }
        share[me].done_ns = detail::now_ns();
        if (probe) detail::probe_round_trip(share.ball, me);
    }
    detail::record_team(share.data(), team, start_ns);
#endif
}

// A pipeline along the shares of a range: calls f(lo, hi, r0, r1) for every
// share [lo, hi) of [begin, end) — the shares parallel_for gives the team —
// and every block [r0, r1) of the rows [0, rows), cut into up to
// kPipelineBlocks blocks, so that for each block the shares run in order:
// share t on rows [r0, r1) starts only after share t−1 on them has returned
// (and sees what it wrote). Serially: one call f(begin, end, 0, rows).
//
// What it is for: a product summed over k, C = A·W with W's rows split
// between the threads by k. Each thread continues the sums that the share
// before it left in C, so every sum is the same chain of operations in the
// same order as on one thread, and each thread reads only its own rows of W
// — the rows that it also updates in the optimizer step (for_each_param) and
// whose gradient it computes (parallel_for over W's rows): the weights stay
// in one core's cache from kernel to kernel instead of moving between cores.
//
// Thread t runs share t, block after block. A thread that has waited
// kSpinNs for share t−1 of a block that nobody has started (its thread is
// late) runs that share itself, and a thread done with its own share takes
// any share not started, so no thread waits long for one that has not
// arrived. (Taking share t−1 at once would serialise the pipeline: a worker
// often enters the region before the thread that opened it.) Waiting spins
// kSpinNs, then yields the core, which a thread of the team may share.
template <class F>
void parallel_pipeline(int64_t begin, int64_t end, int64_t grain, int64_t rows, const F& f) {
    const int64_t n = end - begin;
    if (n <= 0 || rows <= 0) return;
    const int64_t chunks = detail::chunk_count(n, grain);
    bool probe;
    if (detail::run_serially(n, grain, chunks, probe)) {
        DenormalScope denormals;
        f(begin, end, int64_t{0}, rows);
        return;
    }
#ifdef _OPENMP
    const int team = static_cast<int>(std::min<int64_t>(get_num_threads(), chunks));
    const int64_t blocks = std::min(rows, detail::kPipelineBlocks);
    detail::Shares share(team);
    for (int t = 0; t < team; ++t) {
        share[t].next.store(0, std::memory_order_relaxed);  // 0: not started, 1: started
        share[t].done.store(0, std::memory_order_relaxed);  // blocks finished
        share[t].lo = share_begin(begin, end, t, team);
        share[t].hi = share_begin(begin, end, t + 1, team);
    }
    const auto start = [&](int t) {  // claims share t if nobody has started it
        return share[t].next.load(std::memory_order_relaxed) == 0 &&
               share[t].next.exchange(1, std::memory_order_relaxed) == 0;
    };
    const int64_t start_ns = detail::now_ns();
#pragma omp parallel num_threads(team)
    {
        DenormalScope denormals;
        const int me = omp_get_thread_num();
        share[me].arrived_ns = detail::now_ns();
        // Runs share t over every block, after share t − 1 of each block.
        const auto run = [&](int t, const auto& run_share) -> void {
            for (int64_t b = 0; b < blocks; ++b) {
                int64_t wait_from_ns = 0;
                for (int spins = 0; t > 0 && share[t - 1].done.load(std::memory_order_acquire) <= b;
                     ++spins) {
                    if (spins == 0) {
                        wait_from_ns = detail::now_ns();
                    } else if (detail::now_ns() - wait_from_ns > detail::kSpinNs && start(t - 1)) {
                        run_share(t - 1, run_share);  // its thread is late
                        continue;
                    }
                    detail::pause(wait_from_ns);
                }
                if (wait_from_ns) share[me].waited_ns += detail::now_ns() - wait_from_ns;
                f(share[t].lo, share[t].hi, rows * b / blocks, rows * (b + 1) / blocks);
                share[t].done.store(b + 1, std::memory_order_release);
            }
        };
        if (start(me)) run(me, run);
        for (int t = 0; t < team; ++t)
            if (start(t)) run(t, run);
        share[me].done_ns = detail::now_ns();
        if (probe) detail::probe_round_trip(share.ball, me);
    }
    detail::record_team(share.data(), team, start_ns);
#endif
}

}  // namespace fz
