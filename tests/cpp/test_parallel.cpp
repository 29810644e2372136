// parallel_for: every index exactly once whatever the thread count, the
// serial fallback after a late team (a thread that stalls), and the flush-to-zero setting applied
// in every kernel thread and restored on the calling thread.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <mutex>
#include <cmath>
#include <cstring>
#include <limits>
#include <thread>
#include <chrono>
#include <vector>

#include "gemm.h"
#include "parallel.h"
#include "test_util.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace fz {
namespace {

using testing::ThreadCountGuard;

// Flushing back on (the default) however a test ends.
struct FlushGuard {
    bool saved = get_flush_denormal();
    ~FlushGuard() { set_flush_denormal(saved); }
};

TEST(ParallelFor, EveryIndexExactlyOnceWithAnyThreadCount) {
    for (int threads : {1, 2, 3, 8})
        for (int64_t n : testing::kAwkwardSizes)
            for (int64_t grain : {int64_t{1}, int64_t{5}, int64_t{64}}) {
                ThreadCountGuard guard(threads);
                std::vector<int> seen(static_cast<size_t>(n), 0);
                parallel_for(10, 10 + n, grain, [&](int64_t lo, int64_t hi) {
                    ASSERT_LT(lo, hi);
                    for (int64_t i = lo; i < hi; ++i) ++seen[static_cast<size_t>(i - 10)];
                });
                for (int64_t i = 0; i < n; ++i)
                    ASSERT_EQ(seen[static_cast<size_t>(i)], 1)
                        << "threads=" << threads << " n=" << n << " grain=" << grain << " i=" << i;
            }
}

// How many calls parallel_for makes over [0, n); each must be given the whole range.
int calls_over_whole_range(int64_t n, int64_t grain) {
    int calls = 0;
    parallel_for(0, n, grain, [&](int64_t lo, int64_t hi) {
        ++calls;
        EXPECT_EQ(lo, 0);
        EXPECT_EQ(hi, n);
    });
    return calls;
}

TEST(ParallelFor, SmallRangesAndEmptyRangesRunInline) {
    ThreadCountGuard guard(2);
    EXPECT_EQ(calls_over_whole_range(100, 1000), 1);
    int calls = 0;
    parallel_for(5, 5, 1, [&](int64_t, int64_t) { ++calls; });
    parallel_for(5, 3, 1, [&](int64_t, int64_t) { ++calls; });
    EXPECT_EQ(calls, 0);
}

// One thread asked for: one call on the calling thread, not a region of one
// thread that would cut the range into chunks for nothing.
TEST(ParallelFor, OneThreadRunsTheWholeRangeAsOneCall) {
    ThreadCountGuard guard(1);
    EXPECT_EQ(calls_over_whole_range(100000, 1), 1);
}

// Thread t's share of a range is [n·t/team, n·(t+1)/team) whatever the grain:
// no chunk crosses a share's border, so kernels over the same array with
// different grains give each thread the same part of it. (784 rows in 5
// chunks — the weight gradient of the MNIST layer — used to cut the shares at
// row 313, while the optimizer's cut them at 340 and the product at 392.)
TEST(ParallelFor, SharesAreTheSameWhateverTheGrain) {
    for (int threads : {2, 3, 8})
        for (int64_t n : {int64_t{784}, int64_t{1031}, int64_t{97}})
            for (int64_t grain : {int64_t{1}, int64_t{5}, int64_t{170}, n / 3}) {
                ThreadCountGuard guard(threads);
                detail::team_health().serial_until_ns.store(0);
                const int64_t chunks = detail::chunk_count(n, grain);
                const int64_t team = std::min<int64_t>(threads, chunks);
                std::mutex mutex;
                std::vector<std::pair<int64_t, int64_t>> calls;
                parallel_for(0, n, grain, [&](int64_t lo, int64_t hi) {
                    std::lock_guard<std::mutex> lock(mutex);
                    calls.emplace_back(lo, hi);
                });
                if (team < 2) continue;
                EXPECT_EQ(static_cast<int64_t>(calls.size()), chunks);
                for (const auto& [lo, hi] : calls) {
                    int64_t share = 0;
                    while (share_begin(0, n, share + 1, team) <= lo) ++share;
                    EXPECT_LE(hi, share_begin(0, n, share + 1, team))
                        << "threads=" << threads << " n=" << n << " grain=" << grain << " chunk ["
                        << lo << ", " << hi << ") crosses the end of share " << share;
                }
            }
}

// parallel_pipeline: every share of the range and every block of rows gets
// exactly one call, the shares are parallel_for's, and on each block share t
// runs after share t − 1 has returned. A fold over the shares in order —
// x ← 31·x + (share's lo), per row — comes out as on one thread.
void check_pipeline(int threads, int64_t n, int64_t rows, int64_t grain, int64_t stall_share = -1) {
    SCOPED_TRACE("threads=" + std::to_string(threads) + " n=" + std::to_string(n) +
                 " rows=" + std::to_string(rows) + " grain=" + std::to_string(grain));
    ThreadCountGuard guard(threads);
    detail::team_health().serial_until_ns.store(0);
    bool probe;
    const int64_t team = detail::run_serially(n, grain, detail::chunk_count(n, grain), probe)
                             ? 1
                             : std::min<int64_t>(threads, detail::chunk_count(n, grain));
    std::vector<int64_t> fold(static_cast<size_t>(rows), 0), want(static_cast<size_t>(rows), 0);
    for (int64_t t = 0; t < team; ++t)
        for (auto& x : want) x = 31 * x + share_begin(0, n, t, team);
    std::mutex mutex;
    std::vector<std::array<int64_t, 4>> calls;
    std::atomic<bool> stalled{false};
    parallel_pipeline(0, n, grain, rows, [&](int64_t lo, int64_t hi, int64_t r0, int64_t r1) {
        if (stall_share >= 0 && lo == share_begin(0, n, stall_share, team) && r0 == 0 &&
            !stalled.exchange(true))
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        for (int64_t r = r0; r < r1; ++r) fold[static_cast<size_t>(r)] = 31 * fold[static_cast<size_t>(r)] + lo;
        std::lock_guard<std::mutex> lock(mutex);
        calls.push_back({lo, hi, r0, r1});
    });
    EXPECT_EQ(fold, want);
    // each (share, block) once: the calls tile [0, n) × [0, rows) exactly once
    std::vector<int> seen(static_cast<size_t>(n * rows), 0);
    for (const auto& [lo, hi, r0, r1] : calls) {
        int64_t share = 0;
        while (share_begin(0, n, share + 1, team) <= lo) ++share;
        EXPECT_EQ(lo, share_begin(0, n, share, team));
        EXPECT_EQ(hi, share_begin(0, n, share + 1, team));
        for (int64_t r = r0; r < r1; ++r)
            for (int64_t k = lo; k < hi; ++k) ++seen[static_cast<size_t>(r * n + k)];
    }
    for (int v : seen) ASSERT_EQ(v, 1);
    detail::team_health().serial_until_ns.store(0);
    detail::team_health().backoff_ns.store(detail::kFirstBackoffNs);
}

TEST(ParallelPipeline, EachShareOfEachBlockOnceAndInOrder) {
    for (int threads : {1, 2, 3, 8})
        for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{784}, int64_t{1031}})
            for (int64_t rows : {int64_t{1}, int64_t{3}, int64_t{32}, int64_t{97}})
                for (int64_t grain : {int64_t{1}, int64_t{100}}) check_pipeline(threads, n, rows, grain);
}

// The thread running the first block of a share stops for 20 ms (its core
// taken): the others wait for it or run the shares nobody started, and the
// fold is still the one-thread fold.
TEST(ParallelPipeline, AThreadThatStallsLeavesTheOrderIntact) {
    for (int64_t stall : {0, 1}) check_pipeline(2, 784, 32, 1, stall);
    for (int64_t stall : {0, 1, 2}) check_pipeline(3, 100, 17, 1, stall);
}

TEST(ParallelPipeline, EmptyRangesMakeNoCall) {
    ThreadCountGuard guard(2);
    int calls = 0;
    parallel_pipeline(5, 5, 1, 10, [&](int64_t, int64_t, int64_t, int64_t) { ++calls; });
    parallel_pipeline(0, 10, 1, 0, [&](int64_t, int64_t, int64_t, int64_t) { ++calls; });
    EXPECT_EQ(calls, 0);
}

#ifdef _OPENMP
TEST(ParallelFor, RunsSeriallyWhileWorkersAreLateThenTriesAgain) {
    ThreadCountGuard guard(2);
    // After a late region (recorded here by hand) the next
    // regions run as one call on the calling thread ... (the region "ended" a
    // minute from now, so that a loaded machine pausing this test cannot end
    // the back-off before the check)
    detail::record_region(true, detail::now_ns() + 60'000'000'000);
    int calls = 0;
    bool on_team = false;
    parallel_for(0, 1000, 1, [&](int64_t lo, int64_t hi) {
        ++calls;
        on_team = on_team || omp_in_parallel();
        EXPECT_EQ(lo, 0);
        EXPECT_EQ(hi, 1000);
    });
    EXPECT_EQ(calls, 1);
    EXPECT_FALSE(on_team);
    EXPECT_GE(late_regions(), 1);
    // ... until the back-off has passed; then the team is tried again.
    detail::team_health().serial_until_ns.store(0);
    std::atomic<bool> on_a_team{false};
    parallel_for(0, 1000, 1, [&](int64_t, int64_t) {
        if (omp_in_parallel()) on_a_team = true;
    });
    EXPECT_TRUE(on_a_team);  // (which threads took the chunks depends on the machine's load)
    detail::team_health().serial_until_ns.store(0);
}

TEST(ParallelFor, BackOffDoublesWhileLatenessRepeatsAndResetsAfterAGoodStretch) {
    const int64_t now = detail::now_ns();
    detail::team_health().backoff_ns.store(detail::kFirstBackoffNs);
    for (int i = 0; i < 40; ++i) detail::record_region(true, now);
    EXPECT_EQ(detail::team_health().backoff_ns.load(), detail::kMaxBackoffNs);
    EXPECT_EQ(detail::team_health().serial_until_ns.load(), now + detail::kMaxBackoffNs);
    // One good region right after the serial stretch does not reset it ...
    const int64_t retry = now + detail::kMaxBackoffNs + 1;
    detail::record_region(false, retry);
    EXPECT_EQ(detail::team_health().backoff_ns.load(), detail::kMaxBackoffNs);
    // ... a whole back-off time of good regions does.
    detail::record_region(false, retry + detail::kMaxBackoffNs);
    EXPECT_EQ(detail::team_health().backoff_ns.load(), detail::kFirstBackoffNs);
    detail::team_health().serial_until_ns.store(0);
}

TEST(ParallelFor, LateMeansAThreadIdleForMostOfALongEnoughRegion) {
    constexpr int64_t us = 1000;
    EXPECT_FALSE(detail::team_was_late(5 * us, 6 * us));        // a slow wake-up in a short region
    EXPECT_FALSE(detail::team_was_late(150 * us, 160 * us));    // still shorter than kLateWaitNs
    EXPECT_FALSE(detail::team_was_late(1000 * us, 2000 * us));  // one chunk of waiting at the end
    EXPECT_TRUE(detail::team_was_late(3000 * us, 3100 * us));   // a time slice spent waiting
    EXPECT_TRUE(detail::team_was_late(300 * us, 350 * us));
}

// A thread of the team that stops for 30 ms in the middle of the region (as a
// thread does whose core another program holds): the other finishes every
// other chunk and waits, the region counts as late, and the next regions run
// on the calling thread alone — with each index still done exactly once.
TEST(ParallelFor, AThreadThatStallsMakesTheNextRegionsSerial) {
    ThreadCountGuard guard(2);
    detail::team_health().serial_until_ns.store(0);
    detail::team_health().backoff_ns.store(detail::kFirstBackoffNs);
    const int64_t late_before = late_regions();
    std::vector<int> seen(64, 0);
    std::atomic<int> threads_seen{0};
    parallel_for(0, 64, 1, [&](int64_t lo, int64_t hi) {
        if (lo == 0) std::this_thread::sleep_for(std::chrono::milliseconds(30));
        if (omp_in_parallel()) threads_seen.fetch_or(1 << omp_get_thread_num());
        for (int64_t i = lo; i < hi; ++i) ++seen[static_cast<size_t>(i)];
    });
    for (int v : seen) ASSERT_EQ(v, 1);
    EXPECT_EQ(late_regions(), late_before + 1);
    int calls = 0;
    parallel_for(0, 1000, 1, [&](int64_t, int64_t) {
        ++calls;
        EXPECT_FALSE(omp_in_parallel());
    });
    EXPECT_EQ(calls, 1);
    detail::team_health().serial_until_ns.store(0);
    detail::team_health().backoff_ns.store(detail::kFirstBackoffNs);
}

// The round trips measured on the 2-vCPU KVM guest (~55 ns near, ~330 ns
// far) and the regions of the batch-128 MNIST step that move lines between
// the threads: when far, those run on one thread; big GEMMs, long passes
// and regions that give no far grain keep the team.
TEST(ParallelFor, AFarTeamRunsOnlyRegionsOfLittleWorkSerially) {
    const int64_t near = 55, far = 330;
    EXPECT_FALSE(detail::far_team_runs_serially(near, 784, 42));  // first layer's forward
    EXPECT_FALSE(detail::far_team_runs_serially(0, 784, 42));     // not measured yet
    EXPECT_FALSE(detail::far_team_runs_serially(detail::kFarRoundTripNs, 784, 42));
    EXPECT_TRUE(detail::far_team_runs_serially(far, 784, 42));
    EXPECT_TRUE(detail::far_team_runs_serially(far, 128, 20));        // the batch gather
    EXPECT_TRUE(detail::far_team_runs_serially(far, 784, 42));        // its weight gradient
    EXPECT_TRUE(detail::far_team_runs_serially(far, 101898, 16384));  // Adam over its weights
    EXPECT_FALSE(detail::far_team_runs_serially(far, 131072, 0));  // relu 128×1024: no far grain
    EXPECT_FALSE(detail::far_team_runs_serially(far, 32, 1));         // 1024² GEMM: 32 panels
    EXPECT_FALSE(detail::far_team_runs_serially(far, 16, 1));         // 512²: 16 panels
    EXPECT_FALSE(detail::far_team_runs_serially(far, 128, 1));  // 4096²: 128 panels, work grain 1
    EXPECT_FALSE(detail::far_team_runs_serially(far, 1 << 22, 16384));  // 256 grains
}

// The first region once the probe is due measures the round trip on the team
// (even when the last measure said far); the next ones go by that measure.
TEST(ParallelFor, ARegionMeasuresTheRoundTripWhenDueAndAFarTeamTakesOnlyBigRegions) {
    ThreadCountGuard guard(2);
    detail::TeamHealth& h = detail::team_health();
    h.serial_until_ns.store(0);
    h.round_trip_ns.store(-1);
    h.next_probe_ns.store(0);
    std::atomic<int> team_size{1};
    parallel_for(0, 1000, 1, [&](int64_t, int64_t) { team_size = omp_get_num_threads(); });
    if (team_size == 2) {  // (the OpenMP runtime may give fewer threads than asked)
        EXPECT_GE(h.round_trip_ns.load(), 0);
        EXPECT_GT(h.next_probe_ns.load(), 0);
    }
    h.next_probe_ns.store(INT64_MAX);
    h.serial_until_ns.store(0);
    h.round_trip_ns.store(330);
    // (any region below could find the worker late on a loaded machine, and
    // the back-off would run the next one serially: cleared before each)
    std::atomic<bool> on_team{false};
    int calls = 0;
    parallel_for(
        0, 128, 20,
        [&](int64_t, int64_t) {
            ++calls;
            on_team = on_team || omp_in_parallel();
        },
        20);
    EXPECT_EQ(calls, 1);
    EXPECT_FALSE(on_team);
    std::atomic<int> parallel_calls{0};  // the same region without a far grain keeps the team
    h.serial_until_ns.store(0);
    parallel_for(0, 128, 20, [&](int64_t, int64_t) {
        if (omp_in_parallel()) ++parallel_calls;
    });
    EXPECT_EQ(parallel_calls.load(), 7);  // ceil(128 / 20) chunks, on the team
    parallel_calls = 0;
    h.serial_until_ns.store(0);
    parallel_for(
        0, 32, 1, [&](int64_t, int64_t) {
            if (omp_in_parallel()) ++parallel_calls;
        },
        1);
    EXPECT_EQ(parallel_calls.load(), 8);  // kChunksPerThread per thread, on the team
    parallel_calls = 0;  // a grain raised to cut fewer chunks: the far grain decides
    h.serial_until_ns.store(0);
    parallel_for(
        0, 128, 32, [&](int64_t, int64_t) {
            if (omp_in_parallel()) ++parallel_calls;
        },
        1);
    EXPECT_EQ(parallel_calls.load(), 4);
    h.round_trip_ns.store(0);
    h.serial_until_ns.store(0);
}
#endif

// 2^-70 · 2^-70 = 2^-140 is below the smallest normal float 2^-126: a
// denormal, or 0 when flushed. Each element of C is one such product.
std::vector<float> denormal_products(int threads, bool flush) {
    ThreadCountGuard guard(threads);
    set_flush_denormal(flush);
    const int64_t n = 96;  // 2·96³ flops: enough for two threads
    std::vector<float> A(n * n, 0.0f), B(n * n, std::ldexp(1.0f, -70)), C(n * n, 1.0f);
    for (int64_t i = 0; i < n; ++i) A[i * n + i] = std::ldexp(1.0f, -70);
    gemm(false, false, n, n, n, 1.0f, A.data(), n, B.data(), n, 0.0f, C.data(), n);
    return C;
}

TEST(Denormals, FlushedInEveryThreadOrKeptAsTheSettingSays) {
    FlushGuard restore;
    const float tiny = std::ldexp(1.0f, -140);
    ASSERT_EQ(std::fpclassify(tiny), FP_SUBNORMAL);
    for (int threads : testing::kThreadCounts) {
        for (float c : denormal_products(threads, true)) ASSERT_EQ(c, 0.0f) << threads;
        for (float c : denormal_products(threads, false)) ASSERT_EQ(c, tiny) << threads;
    }
}

TEST(Denormals, CallingThreadKeepsItsOwnFloatBehaviour) {
    FlushGuard restore;
    set_flush_denormal(true);
    denormal_products(1, true);
    denormal_products(2, true);
    // Ordinary code after the kernels still makes denormals.
    volatile float a = std::ldexp(1.0f, -70);
    const float product = a * a;
    EXPECT_EQ(std::fpclassify(product), FP_SUBNORMAL);
    EXPECT_EQ(std::numeric_limits<float>::denorm_min() > 0.0f, true);
}

}  // namespace
}  // namespace fz
