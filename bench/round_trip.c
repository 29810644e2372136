// The round trip of a cache line between two OpenMP threads, for
// bench/thread_spread.py (compiled there with `cc -O2 -fopenmp -shared`).
// Thread 0 waits for the ball to hold 2i and throws 2i + 1, thread 1 waits for
// 2i + 1 and throws 2i + 2; the first trip also waits for thread 1 to arrive.
#include <omp.h>
#include <stdatomic.h>
#include <time.h>
static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}
double round_trip_ns(int trips) {
    static _Alignas(64) _Atomic int ball;
    double ns = 0;
    atomic_store(&ball, 0);
#pragma omp parallel num_threads(2)
    if (omp_get_num_threads() == 2) {
        const int me = omp_get_thread_num();
        double start = 0;
        for (int i = 0; i <= trips && !(me == 1 && i == trips); ++i) {
            const int mine = 2 * i + me;
            while (atomic_load_explicit(&ball, memory_order_acquire) != mine) {}
            if (me == 0 && i == 1) start = now_ns();
            if (me == 0 && i == trips) { ns = (now_ns() - start) / (trips - 1); break; }
            atomic_store_explicit(&ball, mine + 1, memory_order_release);
        }
    }
    return ns;
}
