// far_step.cpp — the textbook MLP's training step (784-128-10, relu, softmax,
// sparse cross-entropy, Adam) with fromzero's kernels, timed kernel by
// kernel, in windows bucketed by how long a cache line takes to go between
// the two threads and back.
//
// On a KVM guest the host sometimes runs the two vCPUs far apart: the round
// trip is then ~330 ns instead of ~55 ns, for seconds at a time
// (bench/thread_spread.py). This program repeats, in one process: a window of
// steps on 1 thread, then the round trip (median of 3 runs of 200 trips), a
// window on 2 threads, the round trip again. A 2-thread window counts as
// "near" (both round trips < 150 ns) or "far" (both 200–600 ns), when other
// programs used less than 0.1 CPU during it (/proc/stat). Each part of
// the step is timed on its own, and a window keeps the median over its steps
// (robust to the odd step another program interrupts); the table gives the
// median over windows. Before every 2-thread kernel the late-team back-off
// (parallel.h) is cleared: the 2-thread columns show what the team costs,
// or, where the runtime's far-team rule sends a region to one thread, what
// that rule gains.
//
// Build and run (the data: MNIST's training images and labels as raw
// float32 and int32, written by the Python line below):
//   python -c "import sys; sys.path.insert(0, 'bench'); import textbook_mlp, numpy as np; \
//     x, y = textbook_mlp.mnist()[:2]; x.tofile('/tmp/mnist_x.f32'); y.astype(np.int32).tofile('/tmp/mnist_y.i32')"
//   cmake -S . -B build/bench -DFROMZERO_BUILD_BENCH=ON -DCMAKE_BUILD_TYPE=Release
//   cmake --build build/bench --target fromzero_far_step_bench
//   build/bench/fromzero_far_step_bench /tmp/mnist_x.f32 /tmp/mnist_y.i32 [seconds] [batch]

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <numeric>
#include <random>
#include <ctime>
#include <string>
#include <thread>
#include <vector>

#include "dense.h"
#include "losses.h"
#include "optimizers.h"
#include "parallel.h"
#include "reductions.h"

// ns per round trip of a cache line between two threads (bench/round_trip.c,
// thread_spread.py's helper, linked in).
extern "C" double round_trip_ns(int trips);

namespace {

using fz::detail::now_ns;

std::vector<char> read_file(const char* path) {
    std::FILE* f = std::fopen(path, "rb");
    if (!f) {
        std::perror(path);
        std::exit(1);
    }
    std::fseek(f, 0, SEEK_END);
    std::vector<char> bytes(static_cast<size_t>(std::ftell(f)));
    std::fseek(f, 0, SEEK_SET);
    if (std::fread(bytes.data(), 1, bytes.size(), f) != bytes.size()) std::exit(1);
    std::fclose(f);
    return bytes;
}

double round_trip() {
    double r[3];
    for (double& v : r) v = round_trip_ns(200);
    std::sort(r, r + 3);
    return r[1];
}

// CPU seconds used by every program since boot, all cores (/proc/stat: all but idle and iowait).
double busy_seconds() {
    std::FILE* f = std::fopen("/proc/stat", "r");
    long long v[10] = {};
    if (!f || std::fscanf(f, "cpu %lld %lld %lld %lld %lld %lld %lld %lld %lld %lld", v, v + 1, v + 2,
                          v + 3, v + 4, v + 5, v + 6, v + 7, v + 8, v + 9) < 8)
        return 0;
    std::fclose(f);
    long long busy = 0;
    for (int i = 0; i < 10; ++i) busy += i == 3 || i == 4 ? 0 : v[i];
    return static_cast<double>(busy) / 100.0;  // USER_HZ
}

// CPU seconds this process has used.
double own_seconds() {
    timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0.0 : v[v.size() / 2];
}

constexpr int64_t kIn = 784, kHidden = 128, kOut = 10;
const char* const kParts[] = {"gather",       "dense fwd",   "dense_1 fwd", "loss",
                              "dense_1 bwd",  "dense bwd",   "adam",        "step"};
constexpr int kPartCount = 8;

struct Mlp {
    int64_t batch;
    std::vector<float> W1, b1, W2, b2, dW1, db1, dW2, db2, m[4], v[4];
    std::vector<float> x, h, p, row_loss, dlogits, dz2, dh, dz1;
    std::vector<int32_t> t;
    fz::DenseZeroSkip skip1, skip2;
    int64_t steps = 0;

    explicit Mlp(int64_t batch_size) : batch(batch_size) {
        std::mt19937 gen(0);
        std::uniform_real_distribution<float> u(-0.08f, 0.08f);
        W1.resize(kIn * kHidden), W2.resize(kHidden * kOut);
        for (auto& w : W1) w = u(gen);
        for (auto& w : W2) w = u(gen);
        b1.assign(kHidden, 0), b2.assign(kOut, 0);
        dW1.resize(W1.size()), db1.resize(b1.size()), dW2.resize(W2.size()), db2.resize(b2.size());
        const size_t n[4] = {W1.size(), b1.size(), W2.size(), b2.size()};
        for (int k = 0; k < 4; ++k) m[k].assign(n[k], 0), v[k].assign(n[k], 0);
        x.resize(batch * kIn), h.resize(batch * kHidden), p.resize(batch * kOut);
        row_loss.resize(batch), dlogits.resize(batch * kOut), dz2.resize(batch * kOut);
        dh.resize(batch * kHidden), dz1.resize(batch * kHidden), t.resize(batch);
    }

    // One step on the rows `index` of (X, Y); adds each part's ns to `ns`.
    void step(const float* X, const int32_t* Y, const int64_t* index, double* ns, bool team) {
        int64_t at = now_ns();
        const auto part = [&](int i) {
            const int64_t now = now_ns();
            ns[i] = static_cast<double>(now - at);
            at = now;
            if (team) fz::detail::team_health().serial_until_ns.store(0);
        };
        const int64_t start = at;
        fz::gather_rows(X, kIn, index, batch, x.data());
        fz::gather_rows(Y, 1, index, batch, t.data());
        part(0);
        fz::dense_forward(x.data(), W1.data(), b1.data(), h.data(), nullptr, batch, kIn, kHidden,
                          fz::Activation::relu, 0.0f, &skip1);
        part(1);
        fz::dense_forward(h.data(), W2.data(), b2.data(), p.data(), nullptr, batch, kHidden, kOut,
                          fz::Activation::softmax, 0.0f, &skip2);
        part(2);
        fz::sparse_categorical_crossentropy(p.data(), t.data(), row_loss.data(), nullptr, batch,
                                            kOut, 1.0f);
        fz::softmax_crossentropy_backward(p.data(), t.data(), dlogits.data(), batch, kOut,
                                          1.0f / static_cast<float>(batch));
        part(3);
        fz::dense_backward(h.data(), W2.data(), nullptr, p.data(), dlogits.data(), dz2.data(),
                           dW2.data(), db2.data(), dh.data(), batch, kHidden, kOut,
                           fz::Activation::identity, 0.0f, &skip2);
        part(4);
        fz::dense_backward(x.data(), W1.data(), nullptr, h.data(), dh.data(), dz1.data(),
                           dW1.data(), db1.data(), nullptr, batch, kIn, kHidden,
                           fz::Activation::relu, 0.0f, &skip1);
        part(5);
        float* params[4] = {W1.data(), b1.data(), W2.data(), b2.data()};
        const float* grads[4] = {dW1.data(), db1.data(), dW2.data(), db2.data()};
        float* s0[4] = {m[0].data(), m[1].data(), m[2].data(), m[3].data()};
        float* s1[4] = {v[0].data(), v[1].data(), v[2].data(), v[3].data()};
        const int64_t n[4] = {static_cast<int64_t>(W1.size()), kHidden,
                              static_cast<int64_t>(W2.size()), kOut};
        fz::adam_update_many(fz::ParamList{4, params, grads, s0, s1, n}, 1e-3f, 0.9f, 0.999f,
                             1e-7f, ++steps, 0.0f);
        part(6);
        ns[7] = static_cast<double>(now_ns() - start);
    }
};

}  // namespace

int main(int argc, char** argv) {
    if (argc < 3) {
        std::fprintf(stderr, "usage: %s mnist_x.f32 mnist_y.i32 [seconds] [batch]\n", argv[0]);
        return 1;
    }
    const std::vector<char> xb = read_file(argv[1]), yb = read_file(argv[2]);
    const double seconds = argc > 3 ? std::atof(argv[3]) : 60.0;
    const int64_t batch = argc > 4 ? std::atoll(argv[4]) : 128;
    const auto* X = reinterpret_cast<const float*>(xb.data());
    const auto* Y = reinterpret_cast<const int32_t*>(yb.data());
    const int64_t images = static_cast<int64_t>(yb.size() / sizeof(int32_t));
    std::vector<int64_t> order(images);
    std::iota(order.begin(), order.end(), 0);
    std::mt19937 gen(1);
    std::shuffle(order.begin(), order.end(), gen);

    Mlp mlp(batch);
    constexpr int kSteps = 300;  // per window: ~0.1 s
    std::map<std::string, std::vector<std::vector<double>>> windows;  // bucket → per-window medians
    int64_t position = 0, skipped = 0;
    const int64_t deadline = now_ns() + static_cast<int64_t>(seconds * 1e9);
    const auto run_window = [&](bool team) {
        std::vector<std::vector<double>> ns(kPartCount);
        double part_ns[kPartCount];
        for (int s = 0; s < kSteps + 3; ++s) {
            if (position + batch > images) position = 0;
            mlp.step(X, Y, order.data() + position, part_ns, team);
            position += batch;
            if (s >= 3)  // warm: the first steps after a switch of thread count
                for (int i = 0; i < kPartCount; ++i) ns[i].push_back(part_ns[i]);
        }
        std::vector<double> med(kPartCount);
        for (int i = 0; i < kPartCount; ++i) med[i] = median(ns[i]);
        return med;
    };
    // A window's medians, and the CPU seconds per second that other programs
    // used meanwhile (/proc/stat counts in 10 ms).
    const auto measured = [&](bool team, double& others) {
        const double busy = busy_seconds(), own = own_seconds();
        const int64_t start = now_ns();
        std::vector<double> med = run_window(team);
        others = (busy_seconds() - busy - (own_seconds() - own)) /
                 (static_cast<double>(now_ns() - start) * 1e-9);
        return med;
    };
    while (now_ns() < deadline) {
        double others, others_one;
        fz::set_num_threads(1);
        const std::vector<double> one = measured(false, others_one);
        fz::set_num_threads(2);
        const double before = round_trip();
        const std::vector<double> med = measured(true, others);
        const double after = round_trip();
        const char* kind = others > 0.1                                         ? nullptr
                           : before < 150 && after < 150                        ? "near"
                           : before > 200 && before < 600 && after > 200 && after < 600 ? "far"
                                                                                           : nullptr;
        // One line per window, every part in us: 1 thread's, then the team's.
        std::fprintf(stderr, "rt %.0f %.0f others %.2f %s", before, after, others, kind ? kind : "skipped");
        for (int i = 0; i < kPartCount; ++i) std::fprintf(stderr, " %.1f/%.1f", one[i] / 1e3, med[i] / 1e3);
        std::fprintf(stderr, "\n");
        if (others_one <= 0.1) windows["1 thread"].push_back(one);
        if (kind)
            windows[kind].push_back(med);
        else
            ++skipped;
        // While other programs keep a core busy the team cannot run in parallel: wait.
        if (others > 0.1) std::this_thread::sleep_for(std::chrono::seconds(1));
    }
    std::printf("batch %lld, %d steps per window; windows:", static_cast<long long>(batch), kSteps);
    const char* const buckets[] = {"1 thread", "near", "far"};
    for (const char* b : buckets) std::printf(" %s %zu,", b, windows[b].size());
    std::printf(" skipped %lld\n%-14s", static_cast<long long>(skipped), "part (us)");
    for (const char* b : buckets) std::printf("%10s", b);
    std::printf("\n");
    for (int i = 0; i < kPartCount; ++i) {
        std::printf("%-14s", kParts[i]);
        for (const char* b : buckets) {
            std::vector<double> v;
            for (const auto& w : windows[b]) v.push_back(w[i]);
            std::printf("%10.1f", median(v) / 1e3);
        }
        std::printf("\n");
    }
}
