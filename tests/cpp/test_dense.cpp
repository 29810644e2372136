// Dense forward/backward: the fused one-call kernels against the reference
// composition, for every activation, with and without bias / dW / dx, on
// awkward shapes and 1 and 2 threads; and the backward against finite
// differences of the forward.
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
    run_backward(dense_backward, fast);
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

}  // namespace
}  // namespace fz
