// Dense forward/backward: the fused one-call kernels against the reference
// composition, for every activation, with and without bias / dW / dx, on
// awkward shapes and 1 and 2 threads; and the backward against finite
// differences of the forward. Inference (z null): GELU in the GEMM epilogue.
#include <algorithm>
#include <string>

#include "dense.h"
#include "test_util.h"

namespace fz {
namespace {

using testing::ThreadCountGuard;

const Activation kActivations[] = {Activation::identity, Activation::relu,
                                   Activation::leaky_relu, Activation::sigmoid,
                                   Activation::tanh,     Activation::gelu,
                                   Activation::softmax};

struct DenseBuffers {
    std::vector<float> y, z, dz, dW, db, dx;
    DenseBuffers(int64_t batch, int64_t in, int64_t out)
        : y(batch * out), z(batch * out), dz(batch * out), dW(in * out), db(out), dx(batch * in) {}
};

void check_dense(int64_t batch, int64_t in, int64_t out, Activation act, bool bias, bool grads,
                 bool input_grad, int threads) {
    SCOPED_TRACE("batch=" + std::to_string(batch) + " in=" + std::to_string(in) +
                 " out=" + std::to_string(out) + " act=" + std::to_string(int(act)) +
                 " bias=" + std::to_string(bias) + " grads=" + std::to_string(grads) +
                 " dx=" + std::to_string(input_grad) + " threads=" + std::to_string(threads));
    ThreadCountGuard guard(threads);
    const float alpha = 0.2f;
    const auto x = testing::random_vector(batch * in, 1), W = testing::random_vector(in * out, 2);
    const auto b = testing::random_vector(out, 3), dy = testing::random_vector(batch * out, 4);
    DenseBuffers fast(batch, in, out), ref(batch, in, out);
    const float* bp = bias ? b.data() : nullptr;
    dense_forward(x.data(), W.data(), bp, fast.y.data(), fast.z.data(), batch, in, out, act, alpha);
    reference::dense_forward(x.data(), W.data(), bp, ref.y.data(), ref.z.data(), batch, in, out,
                             act, alpha);
    const float tol = 1e-5f * static_cast<float>(in + batch + 4);
    testing::expect_close(fast.y, ref.y, tol, tol);
    auto run_backward = [&](auto backward, DenseBuffers& d) {
        backward(x.data(), W.data(), d.z.data(), d.y.data(), dy.data(), d.dz.data(),
                 grads ? d.dW.data() : nullptr, grads && bias ? d.db.data() : nullptr,
                 input_grad ? d.dx.data() : nullptr, batch, in, out, act, alpha);
    };
    run_backward([](auto... args) { dense_backward(args...); }, fast);  // (its default skip = null)
    run_backward(reference::dense_backward, ref);
    testing::expect_close(fast.dz, ref.dz, tol, tol);
    testing::expect_close(fast.dW, ref.dW, tol, tol);
    testing::expect_close(fast.db, ref.db, tol, tol);
    testing::expect_close(fast.dx, ref.dx, tol, tol);
}

TEST(Dense, MatchesReferenceForEveryActivation) {
    for (int threads : testing::kThreadCounts)
        for (Activation act : kActivations)
            for (auto [batch, in, out] : {std::tuple<int64_t, int64_t, int64_t>{1, 1, 1},
                                          {3, 7, 5}, {32, 97, 131}, {17, 784, 10}, {64, 31, 300}})
                check_dense(batch, in, out, act, true, true, true, threads);
}

TEST(Dense, OptionalOutputsAreSkipped) {
    for (int threads : testing::kThreadCounts)
        for (bool bias : {false, true})
            for (bool grads : {false, true})
                for (bool input_grad : {false, true})
                    check_dense(13, 29, 37, Activation::relu, bias, grads, input_grad, threads);
}

// L = Σ y ⊙ r; backward(r) must give ∂L/∂x and ∂L/∂W, checked by central
// differences computed in double from the float forward.
TEST(Dense, BackwardMatchesFiniteDifferences) {
    const int64_t batch = 3, in = 4, out = 5;
    for (Activation act : {Activation::tanh, Activation::gelu, Activation::softmax}) {
        SCOPED_TRACE(int(act));
        auto x = testing::random_vector(batch * in, 5), W = testing::random_vector(in * out, 6);
        const auto b = testing::random_vector(out, 7), r = testing::random_vector(batch * out, 8);
        DenseBuffers d(batch, in, out);
        auto loss = [&]() {
            std::vector<float> y(batch * out), z(batch * out);
            dense_forward(x.data(), W.data(), b.data(), y.data(), z.data(), batch, in, out, act, 0);
            double sum = 0;
            for (size_t i = 0; i < y.size(); ++i) sum += double(y[i]) * r[i];
            return sum;
        };
        dense_forward(x.data(), W.data(), b.data(), d.y.data(), d.z.data(), batch, in, out, act, 0);
        dense_backward(x.data(), W.data(), d.z.data(), d.y.data(), r.data(), d.dz.data(),
                       d.dW.data(), d.db.data(), d.dx.data(), batch, in, out, act, 0);
        const float eps = 1e-2f;
        for (auto [values, grad] : {std::pair{&x, &d.dx}, std::pair{&W, &d.dW}}) {
            for (size_t i = 0; i < values->size(); ++i) {
                const float saved = (*values)[i];
                (*values)[i] = saved + eps;
                const double plus = loss();
                (*values)[i] = saved - eps;
                const double minus = loss();
                (*values)[i] = saved;
                EXPECT_NEAR((*grad)[i], (plus - minus) / (2 * eps), 2e-3) << "index " << i;
            }
        }
    }
}

// ---------------------------------------------------------------- LoRA

struct LoraBuffers {
    std::vector<float> h, y, z, dz, dh, dA, dB, dx;
    LoraBuffers(int64_t batch, int64_t in, int64_t out, int64_t rank)
        : h(batch * rank), y(batch * out), z(batch * out), dz(batch * out), dh(batch * rank),
          dA(in * rank), dB(rank * out), dx(batch * in) {}
};

struct LoraCase {
    int64_t batch, in, out, rank;
    std::vector<float> x, W, b, A, B, dy;
    LoraCase(int64_t batch_, int64_t in_, int64_t out_, int64_t rank_)
        : batch(batch_), in(in_), out(out_), rank(rank_), x(testing::random_vector(batch * in, 11)),
          W(testing::random_vector(in * out, 12)), b(testing::random_vector(out, 13)),
          A(testing::random_vector(in * rank, 14)), B(testing::random_vector(rank * out, 15)),
          dy(testing::random_vector(batch * out, 16)) {}

    template <class Forward>
    void forward(Forward f, LoraBuffers& d, float scale, Activation act) const {
        f(x.data(), W.data(), b.data(), A.data(), B.data(), scale, d.h.data(), d.y.data(),
          d.z.data(), batch, in, out, rank, act, 0.2f);
    }
    template <class Backward>
    void backward(Backward f, LoraBuffers& d, float scale, Activation act, bool adapter_grads,
                  bool input_grad) const {
        f(x.data(), W.data(), A.data(), B.data(), scale, d.h.data(), d.z.data(), d.y.data(),
          dy.data(), d.dz.data(), d.dh.data(), adapter_grads ? d.dA.data() : nullptr,
          adapter_grads ? d.dB.data() : nullptr, input_grad ? d.dx.data() : nullptr, batch, in,
          out, rank, act, 0.2f, false);
    }
};

TEST(DenseLora, MatchesReferenceForEveryActivation) {
    for (int threads : testing::kThreadCounts)
        for (Activation act : kActivations)
            for (auto [batch, in, out, rank] :
                 {std::tuple<int64_t, int64_t, int64_t, int64_t>{1, 1, 1, 1}, {3, 7, 5, 2},
                  {32, 97, 131, 8}, {17, 64, 10, 16}, {64, 31, 300, 4}, {5, 3, 4, 7}}) {
                SCOPED_TRACE("batch=" + std::to_string(batch) + " in=" + std::to_string(in) +
                             " out=" + std::to_string(out) + " rank=" + std::to_string(rank) +
                             " act=" + std::to_string(int(act)) +
                             " threads=" + std::to_string(threads));
                ThreadCountGuard guard(threads);
                const LoraCase c(batch, in, out, rank);
                LoraBuffers fast(batch, in, out, rank), ref(batch, in, out, rank);
                c.forward(dense_lora_forward, fast, 0.75f, act);
                c.forward(reference::dense_lora_forward, ref, 0.75f, act);
                const float tol = 1e-5f * static_cast<float>(in + batch + rank + 4);
                testing::expect_close(fast.h, ref.h, tol, tol);
                testing::expect_close(fast.y, ref.y, tol, tol);
                c.backward(dense_lora_backward, fast, 0.75f, act, true, true);
                c.backward(reference::dense_lora_backward, ref, 0.75f, act, true, true);
                testing::expect_close(fast.dz, ref.dz, tol, tol);
                testing::expect_close(fast.dA, ref.dA, tol, tol);
                testing::expect_close(fast.dB, ref.dB, tol, tol);
                testing::expect_close(fast.dx, ref.dx, tol, tol);
            }
}

// Inference passes z = null: GELU then runs in the GEMM's epilogue instead of
// after it, for the plain and the adapted layer; y matches the reference (and
// the forward that keeps z) and nothing is written through z.
TEST(Dense, InferenceWithoutZAppliesGeluInTheEpilogue) {
    for (int threads : testing::kThreadCounts)
        for (auto [batch, in, out, rank] :
             {std::tuple<int64_t, int64_t, int64_t, int64_t>{1, 1, 1, 1}, {3, 7, 5, 2},
              {32, 97, 131, 8}, {45, 384, 1536, 4}, {64, 31, 300, 3}}) {
            SCOPED_TRACE("batch=" + std::to_string(batch) + " in=" + std::to_string(in) +
                         " out=" + std::to_string(out) + " threads=" + std::to_string(threads));
            ThreadCountGuard guard(threads);
            const LoraCase c(batch, in, out, rank);
            const float tol = 1e-5f * static_cast<float>(in + batch + rank + 4);
            LoraBuffers with_z(batch, in, out, rank), ref(batch, in, out, rank);
            std::vector<float> y(batch * out, NAN);
            dense_forward(c.x.data(), c.W.data(), c.b.data(), y.data(), nullptr, batch, in, out,
                          Activation::gelu, 0.0f);
            reference::dense_forward(c.x.data(), c.W.data(), c.b.data(), ref.y.data(), nullptr,
                                     batch, in, out, Activation::gelu, 0.0f);
            dense_forward(c.x.data(), c.W.data(), c.b.data(), with_z.y.data(), with_z.z.data(),
                          batch, in, out, Activation::gelu, 0.0f);
            testing::expect_close(y, ref.y, tol, tol);
            testing::expect_close(y, with_z.y, 1e-6f, 1e-7f);
            std::vector<float> h(batch * rank), y_lora(batch * out, NAN);
            dense_lora_forward(c.x.data(), c.W.data(), c.b.data(), c.A.data(), c.B.data(), 0.75f,
                               h.data(), y_lora.data(), nullptr, batch, in, out, rank,
                               Activation::gelu, 0.0f);
            c.forward(reference::dense_lora_forward, ref, 0.75f, Activation::gelu);
            testing::expect_close(y_lora, ref.y, tol, tol);
        }
}

TEST(DenseLora, OptionalOutputsAreSkipped) {
    for (int threads : testing::kThreadCounts)
        for (bool adapter_grads : {false, true})
            for (bool input_grad : {false, true}) {
                ThreadCountGuard guard(threads);
                const LoraCase c(13, 29, 37, 3);
                LoraBuffers fast(13, 29, 37, 3), ref(13, 29, 37, 3);
                for (auto* d : {&fast, &ref}) {  // untouched outputs keep this marker
                    std::fill(d->dA.begin(), d->dA.end(), 7.0f);
                    std::fill(d->dB.begin(), d->dB.end(), 7.0f);
                    std::fill(d->dx.begin(), d->dx.end(), 7.0f);
                }
                c.forward(dense_lora_forward, fast, 2.0f, Activation::relu);
                c.forward(reference::dense_lora_forward, ref, 2.0f, Activation::relu);
                c.backward(dense_lora_backward, fast, 2.0f, Activation::relu, adapter_grads,
                           input_grad);
                c.backward(reference::dense_lora_backward, ref, 2.0f, Activation::relu,
                           adapter_grads, input_grad);
                testing::expect_close(fast.dA, ref.dA, 1e-4f, 1e-4f);
                testing::expect_close(fast.dB, ref.dB, 1e-4f, 1e-4f);
                testing::expect_close(fast.dx, ref.dx, 1e-4f, 1e-4f);
                EXPECT_EQ(fast.dA[0] == 7.0f, !adapter_grads);
                EXPECT_EQ(fast.dx[0] == 7.0f, !input_grad);
            }
}

// accumulate_dx: dx += dz·Wᵀ + dh·Aᵀ, the same as adding the plain result.
TEST(DenseLora, AccumulatesIntoDx) {
    for (int threads : testing::kThreadCounts) {
        ThreadCountGuard guard(threads);
        const LoraCase c(11, 23, 9, 3);
        LoraBuffers d(11, 23, 9, 3);
        c.forward(dense_lora_forward, d, 1.0f, Activation::identity);
        c.backward(dense_lora_backward, d, 1.0f, Activation::identity, false, true);
        const auto plain = d.dx;
        const auto start = testing::random_vector(11 * 23, 17);
        for (auto backward : {dense_lora_backward, reference::dense_lora_backward}) {
            std::vector<float> dx(start);
            backward(c.x.data(), c.W.data(), c.A.data(), c.B.data(), 1.0f, d.h.data(), d.z.data(),
                     d.y.data(), c.dy.data(), d.dz.data(), d.dh.data(), nullptr, nullptr, dx.data(),
                     11, 23, 9, 3, Activation::identity, 0.0f, true);
            for (size_t i = 0; i < dx.size(); ++i) dx[i] -= start[i];
            testing::expect_close(dx, plain, 1e-5f, 1e-5f);
        }
    }
}

// With B = 0, the adapter's initial value, the layer is the base layer, bit for bit.
TEST(DenseLora, ZeroBIsTheBaseLayerExactly) {
    for (int threads : testing::kThreadCounts)
        for (Activation act : kActivations) {
            ThreadCountGuard guard(threads);
            LoraCase c(9, 33, 21, 4);
            std::fill(c.B.begin(), c.B.end(), 0.0f);
            LoraBuffers d(9, 33, 21, 4);
            DenseBuffers base(9, 33, 21);
            c.forward(dense_lora_forward, d, 1.5f, act);
            dense_forward(c.x.data(), c.W.data(), c.b.data(), base.y.data(), base.z.data(), 9, 33,
                          21, act, 0.2f);
            EXPECT_EQ(d.y, base.y) << "activation " << int(act);
        }
}

// The adapter is the layer with kernel W + s·A·B (what merging computes).
TEST(DenseLora, EqualsDenseWithTheMergedKernel) {
    const int64_t batch = 6, in = 19, out = 11, rank = 3;
    const float scale = 0.5f;
    const LoraCase c(batch, in, out, rank);
    std::vector<float> merged(c.W);
    for (int64_t i = 0; i < in; ++i)
        for (int64_t j = 0; j < out; ++j) {
            double ab = 0;
            for (int64_t r = 0; r < rank; ++r) ab += double(c.A[i * rank + r]) * c.B[r * out + j];
            merged[i * out + j] += static_cast<float>(scale * ab);
        }
    LoraBuffers d(batch, in, out, rank);
    DenseBuffers base(batch, in, out);
    c.forward(dense_lora_forward, d, scale, Activation::tanh);
    dense_forward(c.x.data(), merged.data(), c.b.data(), base.y.data(), base.z.data(), batch, in,
                  out, Activation::tanh, 0);
    testing::expect_close(d.y, base.y, 1e-5f, 1e-5f);
}

// L = Σ y ⊙ r: dA, dB and dx against central differences of the forward.
TEST(DenseLora, BackwardMatchesFiniteDifferences) {
    const int64_t batch = 3, in = 4, out = 5, rank = 2;
    for (Activation act : {Activation::tanh, Activation::gelu, Activation::softmax}) {
        SCOPED_TRACE(int(act));
        LoraCase c(batch, in, out, rank);
        LoraBuffers d(batch, in, out, rank);
        auto loss = [&]() {
            LoraBuffers e(batch, in, out, rank);
            c.forward(dense_lora_forward, e, 0.8f, act);
            double sum = 0;
            for (size_t i = 0; i < e.y.size(); ++i) sum += double(e.y[i]) * c.dy[i];
            return sum;
        };
        c.forward(dense_lora_forward, d, 0.8f, act);
        c.backward(dense_lora_backward, d, 0.8f, act, true, true);
        const float eps = 1e-2f;
        for (auto [values, grad] : {std::pair{&c.x, &d.dx}, std::pair{&c.A, &d.dA},
                                    std::pair{&c.B, &d.dB}}) {
            for (size_t i = 0; i < values->size(); ++i) {
                const float saved = (*values)[i];
                (*values)[i] = saved + eps;
                const double plus = loss();
                (*values)[i] = saved - eps;
                const double minus = loss();
                (*values)[i] = saved;
                EXPECT_NEAR((*grad)[i], (plus - minus) / (2 * eps), 2e-3) << "index " << i;
            }
        }
    }
}

}  // namespace
}  // namespace fz
