// bindings.cpp — the only file that knows about Python: fromzero._core.
//
// Every function here does the same three things, in order:
//   1. turn its arguments into float32 / int32 C-contiguous arrays (copying
//      only when the caller's array is not already one) and check every shape,
//      index and parameter, raising ValueError / TypeError that names the
//      argument and its shape — before any pointer reaches a kernel;
//   2. release the GIL and call the kernel;
//   3. return the output array (allocated here unless the caller passed `out`).
// Output and state arrays (`out`, optimizer slots) are never converted: they
// must already be writable float32 C-contiguous arrays of the right shape,
// because a converted copy would silently swallow the result.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <cstdint>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "activations.h"
#include "gemm.h"
#include "losses.h"
#include "optimizers.h"
#include "parallel.h"
#include "random.h"
#include "reductions.h"

namespace py = pybind11;
using fz::Activation;

namespace {

using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;
using IndexArray = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;
using LabelArray = py::array_t<int32_t, py::array::c_style>;
using Shape = std::vector<py::ssize_t>;

std::string shape_str(const Shape& s) {
    std::ostringstream o;
    o << "(";
    for (size_t i = 0; i < s.size(); ++i) o << (i ? ", " : "") << s[i];
    o << (s.size() == 1 ? ",)" : ")");
    return o.str();
}

Shape shape_of(const py::array& a) { return Shape(a.shape(), a.shape() + a.ndim()); }

[[noreturn]] void fail(const std::string& msg) { throw py::value_error(msg); }

// Any array-like → float32 C-contiguous (no copy when it already is one).
FloatArray as_float(const py::handle& obj, const char* fn, const char* name) {
    py::array arr = py::array::ensure(obj);
    if (!arr) throw py::type_error(std::string(fn) + ": " + name + " must be array-like");
    const char kind = arr.dtype().kind();
    if (kind != 'f' && kind != 'i' && kind != 'u' && kind != 'b')
        throw py::type_error(std::string(fn) + ": " + name + " must hold numbers, got dtype " +
                             std::string(py::str(arr.dtype())));
    return FloatArray::ensure(arr);
}

FloatArray as_matrix(const py::handle& obj, const char* fn, const char* name) {
    FloatArray a = as_float(obj, fn, name);
    if (a.ndim() != 2)
        fail(std::string(fn) + ": " + name + " must be 2-D, got shape " + shape_str(shape_of(a)));
    return a;
}

// Integer labels → int32, every one checked to lie in [0, classes).
LabelArray as_labels(const py::handle& obj, py::ssize_t rows, py::ssize_t classes, const char* fn) {
    py::array arr = py::array::ensure(obj);
    if (!arr || (arr.dtype().kind() != 'i' && arr.dtype().kind() != 'u'))
        throw py::type_error(std::string(fn) + ": labels must be an integer array, got " +
                             (arr ? std::string(py::str(arr.dtype())) : std::string("a non-array")));
    if (arr.ndim() != 1 || arr.shape(0) != rows)
        fail(std::string(fn) + ": labels must have shape (" + std::to_string(rows) + ",), got " +
             shape_str(shape_of(arr)));
    IndexArray wide = IndexArray::ensure(arr);
    const int64_t* p = wide.data();
    for (py::ssize_t i = 0; i < rows; ++i)
        if (p[i] < 0 || p[i] >= classes)
            fail(std::string(fn) + ": label " + std::to_string(p[i]) + " at index " +
                 std::to_string(i) + " is outside [0, " + std::to_string(classes) + ")");
    LabelArray labels(rows);
    int32_t* q = labels.mutable_data();
    for (py::ssize_t i = 0; i < rows; ++i) q[i] = static_cast<int32_t>(p[i]);
    return labels;
}

// A caller-provided output or state array: used as is, so it must already be
// exactly right. With `out` = None a fresh array is allocated.
py::array_t<float> output(const std::optional<py::array>& out, const Shape& shape, const char* fn,
                          const char* name) {
    if (!out) return py::array_t<float>(shape);
    const py::array& a = *out;
    if (!py::isinstance<py::array_t<float>>(a) || a.dtype().kind() != 'f' || a.itemsize() != 4)
        throw py::type_error(std::string(fn) + ": " + name + " must be a float32 array, got " +
                             std::string(py::str(a.dtype())));
    if (!(a.flags() & py::array::c_style))
        fail(std::string(fn) + ": " + name + " must be C-contiguous");
    if (!a.writeable()) fail(std::string(fn) + ": " + name + " is read-only");
    if (shape_of(a) != shape)
        fail(std::string(fn) + ": " + name + " must have shape " + shape_str(shape) + ", got " +
             shape_str(shape_of(a)));
    return py::reinterpret_borrow<py::array_t<float>>(a);
}

py::array_t<float> state(const py::array& a, const Shape& shape, const char* fn, const char* name) {
    return output(std::optional<py::array>(a), shape, fn, name);
}

void require_same_shape(const py::array& a, const py::array& b, const char* fn, const char* an,
                        const char* bn) {
    if (shape_of(a) != shape_of(b))
        fail(std::string(fn) + ": " + an + " has shape " + shape_str(shape_of(a)) + " but " + bn +
             " has shape " + shape_str(shape_of(b)));
}

bool overlaps(const py::array& a, const py::array& b) {
    const char* a0 = static_cast<const char*>(a.data());
    const char* b0 = static_cast<const char*>(b.data());
    return a0 < b0 + b.nbytes() && b0 < a0 + a.nbytes();
}

void require_finite_param(double v, const char* fn, const char* name, double lo, double hi) {
    if (!(v >= lo && v <= hi))
        fail(std::string(fn) + ": " + name + " must be in [" + std::to_string(lo) + ", " +
             std::to_string(hi) + "], got " + std::to_string(v));
}

// ---------------------------------------------------------------- GEMM

// out = act(op(a) · op(b) + bias [+ out if accumulate])
py::array_t<float> matmul(const py::handle& a_in, const py::handle& b_in, bool transpose_a,
                          bool transpose_b, const std::optional<py::handle>& bias_in,
                          Activation activation, float alpha, std::optional<py::array> out,
                          bool accumulate, bool reference) {
    const char* fn = "matmul";
    FloatArray a = as_matrix(a_in, fn, "a"), b = as_matrix(b_in, fn, "b");
    const py::ssize_t M = transpose_a ? a.shape(1) : a.shape(0);
    const py::ssize_t K = transpose_a ? a.shape(0) : a.shape(1);
    const py::ssize_t Kb = transpose_b ? b.shape(1) : b.shape(0);
    const py::ssize_t N = transpose_b ? b.shape(0) : b.shape(1);
    if (K != Kb)
        fail(std::string(fn) + ": inner dimensions differ: op(a) is (" + std::to_string(M) + ", " +
             std::to_string(K) + ") and op(b) is (" + std::to_string(Kb) + ", " + std::to_string(N) +
             ") (a has shape " + shape_str(shape_of(a)) + ", b has shape " + shape_str(shape_of(b)) +
             ", transpose_a=" + (transpose_a ? "True" : "False") +
             ", transpose_b=" + (transpose_b ? "True" : "False") + ")");
    if (activation == Activation::softmax)
        fail("matmul: the epilogue applies elementwise activations only; use softmax afterwards");
    if (accumulate && !out) fail("matmul: accumulate=True needs out=");
    std::optional<FloatArray> bias;
    if (bias_in && !bias_in->is_none()) {
        bias = as_float(*bias_in, fn, "bias");
        if (bias->ndim() != 1 || bias->shape(0) != N)
            fail(std::string(fn) + ": bias must have shape (" + std::to_string(N) + ",), got " +
                 shape_str(shape_of(*bias)));
    }
    py::array_t<float> c = output(out, {M, N}, fn, "out");
    if (overlaps(c, a) || overlaps(c, b)) fail("matmul: out must not overlap a or b");
    fz::GemmEpilogue ep;
    ep.bias = bias ? bias->data() : nullptr;
    ep.activation = activation;
    ep.alpha = alpha;
    const float* A = a.data();
    const float* B = b.data();
    float* C = c.mutable_data();
    const int64_t lda = a.shape(1), ldb = b.shape(1);
    {
        py::gil_scoped_release nogil;
        auto run = reference ? fz::reference::gemm : fz::gemm;
        run(transpose_a, transpose_b, M, N, K, 1.0f, A, lda, B, ldb, accumulate ? 1.0f : 0.0f, C,
            N, ep);
    }
    return c;
}

// ---------------------------------------------------------------- activations

py::array_t<float> activation_forward(Activation act, const py::handle& x_in, float alpha,
                                      std::optional<py::array> out) {
    FloatArray x = as_float(x_in, "activation_forward", "x");
    if (act == Activation::softmax) {
        if (x.ndim() != 2) fail("softmax: x must be 2-D (batch, classes), got " + shape_str(shape_of(x)));
        py::array_t<float> y = output(out, shape_of(x), "softmax", "out");
        const int64_t rows = x.shape(0), cols = x.shape(1);
        const float* xp = x.data();
        float* yp = y.mutable_data();
        py::gil_scoped_release nogil;
        fz::softmax_forward(xp, yp, rows, cols);
        return y;
    }
    py::array_t<float> y = output(out, shape_of(x), "activation_forward", "out");
    const float* xp = x.data();
    float* yp = y.mutable_data();
    const int64_t n = x.size();
    py::gil_scoped_release nogil;
    fz::activation_forward(act, xp, yp, n, alpha);
    return y;
}

// dx = dy · f'(x), with f' written in terms of y (and x for GELU).
py::array_t<float> activation_backward(Activation act, const std::optional<py::handle>& x_in,
                                       const py::handle& y_in, const py::handle& dy_in, float alpha,
                                       std::optional<py::array> out) {
    const char* fn = "activation_backward";
    FloatArray y = as_float(y_in, fn, "y"), dy = as_float(dy_in, fn, "dy");
    require_same_shape(y, dy, fn, "y", "dy");
    py::array_t<float> dx = output(out, shape_of(dy), fn, "out");
    const float* yp = y.data();
    const float* dyp = dy.data();
    float* dxp = dx.mutable_data();
    if (act == Activation::softmax) {
        if (y.ndim() != 2) fail("softmax backward: y must be 2-D, got " + shape_str(shape_of(y)));
        const int64_t rows = y.shape(0), cols = y.shape(1);
        py::gil_scoped_release nogil;
        fz::softmax_backward(yp, dyp, dxp, rows, cols);
        return dx;
    }
    std::optional<FloatArray> x;
    if (fz::activation_backward_needs_input(act)) {
        if (!x_in || x_in->is_none()) fail(std::string(fn) + ": this activation needs x");
        x = as_float(*x_in, fn, "x");
        require_same_shape(*x, y, fn, "x", "y");
    }
    const float* xp = x ? x->data() : nullptr;
    const int64_t n = y.size();
    py::gil_scoped_release nogil;
    fz::activation_backward(act, xp, yp, dyp, dxp, n, alpha);
    return dx;
}

// ---------------------------------------------------------------- losses

// Every loss kernel has the signature (pred, target, row_loss, grad, rows, cols, scale).
template <class Target>
using LossKernel = double (*)(const float*, const Target*, float*, float*, int64_t, int64_t, float);

// Runs a loss kernel: returns the summed loss and, when grad is requested
// (grad_out given or want_grad), the gradient array.
template <class Target>
py::object run_loss(LossKernel<Target> kernel, const char* fn, const FloatArray& pred,
                    const py::array_t<Target>& target, float grad_scale,
                    std::optional<py::array> row_loss_out, std::optional<py::array> grad_out,
                    bool want_grad) {
    const int64_t rows = pred.shape(0), cols = pred.shape(1);
    py::array_t<float> row_loss = output(row_loss_out, {pred.shape(0)}, fn, "row_loss");
    std::optional<py::array_t<float>> grad;
    if (grad_out || want_grad) grad = output(grad_out, shape_of(pred), fn, "grad");
    const float* pp = pred.data();
    const Target* tp = target.data();
    float* lp = row_loss.mutable_data();
    float* gp = grad ? grad->mutable_data() : nullptr;
    double total;
    {
        py::gil_scoped_release nogil;
        total = kernel(pp, tp, lp, gp, rows, cols, grad_scale);
    }
    if (grad) return py::make_tuple(total, *grad);
    return py::float_(total);
}

py::object sparse_loss(LossKernel<int32_t> kernel, const char* fn, const py::handle& pred_in,
                       const py::handle& labels_in, float grad_scale,
                       std::optional<py::array> row_loss, std::optional<py::array> grad,
                       bool want_grad) {
    FloatArray pred = as_matrix(pred_in, fn, "y_pred");
    LabelArray labels = as_labels(labels_in, pred.shape(0), pred.shape(1), fn);
    return run_loss<int32_t>(kernel, fn, pred, labels, grad_scale, row_loss, grad, want_grad);
}

py::object dense_loss(LossKernel<float> kernel, const char* fn, const py::handle& pred_in,
                      const py::handle& target_in, float grad_scale,
                      std::optional<py::array> row_loss, std::optional<py::array> grad,
                      bool want_grad) {
    FloatArray pred = as_matrix(pred_in, fn, "y_pred");
    FloatArray target = as_float(target_in, fn, "y_true");
    require_same_shape(target, pred, fn, "y_true", "y_pred");
    return run_loss<float>(kernel, fn, pred, target, grad_scale, row_loss, grad, want_grad);
}

py::array_t<float> softmax_crossentropy_backward(const py::handle& probs_in,
                                                 const py::handle& target_in, bool sparse,
                                                 float grad_scale, std::optional<py::array> out) {
    const char* fn = "softmax_crossentropy_backward";
    FloatArray probs = as_matrix(probs_in, fn, "probs");
    const int64_t rows = probs.shape(0), cols = probs.shape(1);
    py::array_t<float> dlogits = output(out, shape_of(probs), fn, "out");
    const float* pp = probs.data();
    float* dp = dlogits.mutable_data();
    if (sparse) {
        LabelArray labels = as_labels(target_in, rows, cols, fn);
        const int32_t* lp = labels.data();
        py::gil_scoped_release nogil;
        fz::softmax_crossentropy_backward(pp, lp, dp, rows, cols, grad_scale);
    } else {
        FloatArray target = as_float(target_in, fn, "y_true");
        require_same_shape(target, probs, fn, "y_true", "probs");
        const float* tp = target.data();
        py::gil_scoped_release nogil;
        fz::softmax_crossentropy_backward_dense(pp, tp, dp, rows, cols, grad_scale);
    }
    return dlogits;
}

// ---------------------------------------------------------------- reductions

py::array_t<float> bias_grad(const py::handle& dy_in, std::optional<py::array> out) {
    FloatArray dy = as_matrix(dy_in, "bias_grad", "dy");
    py::array_t<float> db = output(out, {dy.shape(1)}, "bias_grad", "out");
    const int64_t rows = dy.shape(0), cols = dy.shape(1);
    const float* dyp = dy.data();
    float* dbp = db.mutable_data();
    py::gil_scoped_release nogil;
    fz::bias_grad(dyp, dbp, rows, cols);
    return db;
}

py::array_t<int32_t> argmax_rows(const py::handle& x_in) {
    FloatArray x = as_matrix(x_in, "argmax", "x");
    if (x.shape(1) == 0) fail("argmax: x has no columns");
    py::array_t<int32_t> out(x.shape(0));
    const int64_t rows = x.shape(0), cols = x.shape(1);
    const float* xp = x.data();
    int32_t* op = out.mutable_data();
    py::gil_scoped_release nogil;
    fz::argmax_rows(xp, op, rows, cols);
    return out;
}

int64_t count_correct(const py::handle& scores_in, const py::handle& labels_in) {
    FloatArray scores = as_matrix(scores_in, "count_correct", "scores");
    LabelArray labels = as_labels(labels_in, scores.shape(0), scores.shape(1), "count_correct");
    const int64_t rows = scores.shape(0), cols = scores.shape(1);
    const float* sp = scores.data();
    const int32_t* lp = labels.data();
    py::gil_scoped_release nogil;
    return fz::count_correct(sp, lp, rows, cols);
}

// out[i] = src[index[i]] along the first axis (the minibatch gather), for
// float32 data and int32 labels.
template <class T>
py::array gather_typed(const py::array& src, const IndexArray& index, const Shape& shape,
                       std::optional<py::array> out) {
    const char* fn = "gather_rows";
    auto s = py::array_t<T, py::array::c_style | py::array::forcecast>::ensure(src);
    py::array_t<T> dst;
    if (!out) {
        dst = py::array_t<T>(shape);
    } else {
        if (!py::isinstance<py::array_t<T>>(*out) || !(out->flags() & py::array::c_style) ||
            !out->writeable() || shape_of(*out) != shape)
            fail(std::string(fn) + ": out must be a writable C-contiguous " +
                 std::string(py::str(py::dtype::of<T>())) + " array of shape " + shape_str(shape));
        dst = py::reinterpret_borrow<py::array_t<T>>(*out);
    }
    const int64_t n_src = s.shape(0), n = index.shape(0);
    const int64_t row_len = n_src ? s.size() / n_src : 0;
    const T* sp = s.data();
    const int64_t* ip = index.data();
    T* dp = dst.mutable_data();
    py::gil_scoped_release nogil;
    fz::gather_rows(sp, row_len, ip, n, dp);
    return dst;
}

py::array gather_rows(const py::array& src, const py::handle& index_in, std::optional<py::array> out) {
    py::array index_arr = py::array::ensure(index_in);
    if (!index_arr || index_arr.ndim() != 1 ||
        (index_arr.size() > 0 && index_arr.dtype().kind() != 'i' && index_arr.dtype().kind() != 'u'))
        fail("gather_rows: index must be a 1-D integer array");
    IndexArray index = IndexArray::ensure(index_arr);
    if (src.ndim() < 1) fail("gather_rows: src must have at least one axis");
    const py::ssize_t n_src = src.shape(0);
    const int64_t* ip = index.data();
    for (py::ssize_t i = 0; i < index.shape(0); ++i)
        if (ip[i] < 0 || ip[i] >= n_src)
            fail("gather_rows: index " + std::to_string(ip[i]) + " at position " + std::to_string(i) +
                 " is outside [0, " + std::to_string(n_src) + ")");
    Shape shape = shape_of(src);
    shape[0] = index.shape(0);
    if (src.dtype().kind() == 'i' || src.dtype().kind() == 'u')
        return gather_typed<int32_t>(src, index, shape, out);
    as_float(src, "gather_rows", "src");  // the dtype check and message
    return gather_typed<float>(src, index, shape, out);
}

// ---------------------------------------------------------------- optimizers

void check_update_args(const py::array& p, const FloatArray& g, const char* fn, float lr) {
    require_same_shape(g, p, fn, "grad", "param");
    if (!std::isfinite(lr) || lr < 0) fail(std::string(fn) + ": learning_rate must be finite and >= 0");
}

void sgd_update(py::array param, const py::handle& grad_in, std::optional<py::array> momentum_buf,
                float lr, float momentum, bool nesterov, float weight_decay) {
    const char* fn = "sgd_update";
    auto p = state(param, shape_of(param), fn, "param");
    FloatArray g = as_float(grad_in, fn, "grad");
    check_update_args(p, g, fn, lr);
    require_finite_param(momentum, fn, "momentum", 0.0, 1.0);
    std::optional<py::array_t<float>> m;
    if (momentum > 0) {
        if (!momentum_buf) fail("sgd_update: momentum > 0 needs a momentum buffer");
        m = state(*momentum_buf, shape_of(p), fn, "momentum buffer");
    }
    float* pp = p.mutable_data();
    const float* gp = g.data();
    float* mp = m ? m->mutable_data() : nullptr;
    const int64_t n = p.size();
    py::gil_scoped_release nogil;
    fz::sgd_update(pp, gp, mp, n, lr, momentum, nesterov, weight_decay);
}

void adam_update(py::array param, const py::handle& grad_in, py::array m_in, py::array v_in,
                 float lr, float beta1, float beta2, float epsilon, int64_t t, float weight_decay) {
    const char* fn = "adam_update";
    auto p = state(param, shape_of(param), fn, "param");
    FloatArray g = as_float(grad_in, fn, "grad");
    check_update_args(p, g, fn, lr);
    auto m = state(m_in, shape_of(p), fn, "m"), v = state(v_in, shape_of(p), fn, "v");
    require_finite_param(beta1, fn, "beta_1", 0.0, 1.0);
    require_finite_param(beta2, fn, "beta_2", 0.0, 1.0);
    if (t < 1) fail("adam_update: step t must be >= 1, got " + std::to_string(t));
    float* pp = p.mutable_data();
    const float* gp = g.data();
    float* mp = m.mutable_data();
    float* vp = v.mutable_data();
    const int64_t n = p.size();
    py::gil_scoped_release nogil;
    fz::adam_update(pp, gp, mp, vp, n, lr, beta1, beta2, epsilon, t, weight_decay);
}

void rmsprop_update(py::array param, const py::handle& grad_in, py::array v_in,
                    std::optional<py::array> momentum_buf, float lr, float rho, float momentum,
                    float epsilon, float weight_decay) {
    const char* fn = "rmsprop_update";
    auto p = state(param, shape_of(param), fn, "param");
    FloatArray g = as_float(grad_in, fn, "grad");
    check_update_args(p, g, fn, lr);
    auto v = state(v_in, shape_of(p), fn, "v");
    require_finite_param(rho, fn, "rho", 0.0, 1.0);
    std::optional<py::array_t<float>> mom;
    if (momentum > 0) {
        if (!momentum_buf) fail("rmsprop_update: momentum > 0 needs a momentum buffer");
        mom = state(*momentum_buf, shape_of(p), fn, "momentum buffer");
    }
    float* pp = p.mutable_data();
    const float* gp = g.data();
    float* vp = v.mutable_data();
    float* mp = mom ? mom->mutable_data() : nullptr;
    const int64_t n = p.size();
    py::gil_scoped_release nogil;
    fz::rmsprop_update(pp, gp, vp, mp, n, lr, rho, momentum, epsilon, weight_decay);
}

// ---------------------------------------------------------------- randomness

py::tuple dropout_forward(const py::handle& x_in, float rate, uint64_t seed,
                          std::optional<py::array> out, std::optional<py::array> mask_out) {
    const char* fn = "dropout_forward";
    FloatArray x = as_float(x_in, fn, "x");
    if (!(rate >= 0.0f && rate < 1.0f)) fail("dropout: rate must be in [0, 1), got " + std::to_string(rate));
    py::array_t<float> y = output(out, shape_of(x), fn, "out");
    py::array_t<float> mask = output(mask_out, shape_of(x), fn, "mask");
    const float* xp = x.data();
    float* yp = y.mutable_data();
    float* mp = mask.mutable_data();
    const int64_t n = x.size();
    {
        py::gil_scoped_release nogil;
        fz::dropout_forward(xp, yp, mp, n, rate, seed);
    }
    return py::make_tuple(y, mask);
}

py::array_t<float> dropout_backward(const py::handle& dy_in, const py::handle& mask_in,
                                    std::optional<py::array> out) {
    const char* fn = "dropout_backward";
    FloatArray dy = as_float(dy_in, fn, "dy"), mask = as_float(mask_in, fn, "mask");
    require_same_shape(dy, mask, fn, "dy", "mask");
    py::array_t<float> dx = output(out, shape_of(dy), fn, "out");
    const float* dyp = dy.data();
    const float* mp = mask.data();
    float* dxp = dx.mutable_data();
    const int64_t n = dy.size();
    py::gil_scoped_release nogil;
    fz::dropout_backward(dyp, mp, dxp, n);
    return dx;
}

py::array_t<int64_t> random_permutation(int64_t n, uint64_t seed) {
    if (n < 0) fail("random_permutation: n must be >= 0, got " + std::to_string(n));
    py::array_t<int64_t> out(n);
    int64_t* op = out.mutable_data();
    py::gil_scoped_release nogil;
    fz::random_permutation(op, n, seed);
    return out;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
    m.doc() = "fromzero's compiled kernels (C++17 + OpenMP). Use them through fromzero.ops.";
#ifdef FROMZERO_VERSION
    m.attr("__version__") = FROMZERO_VERSION;
#endif

    py::enum_<Activation>(m, "Activation")
        .value("identity", Activation::identity)
        .value("relu", Activation::relu)
        .value("leaky_relu", Activation::leaky_relu)
        .value("sigmoid", Activation::sigmoid)
        .value("tanh", Activation::tanh)
        .value("gelu", Activation::gelu)
        .value("softmax", Activation::softmax);

    m.def("has_openmp", &fz::has_openmp);
    m.def("get_num_threads", &fz::get_num_threads);
    m.def("set_num_threads", [](int n) {
        if (n < 1) fail("set_num_threads: n must be >= 1, got " + std::to_string(n));
        fz::set_num_threads(n);
    });
    m.def("gemm_kernel_name", &fz::gemm_kernel_name);

    const auto none = py::none();
    m.def("matmul", &matmul, py::arg("a"), py::arg("b"), py::arg("transpose_a") = false,
          py::arg("transpose_b") = false, py::arg("bias") = none,
          py::arg("activation") = Activation::identity, py::arg("alpha") = 0.0f,
          py::arg("out") = none, py::arg("accumulate") = false, py::arg("reference") = false);
    m.def("activation_forward", &activation_forward, py::arg("activation"), py::arg("x"),
          py::arg("alpha") = 0.0f, py::arg("out") = none);
    m.def("activation_backward", &activation_backward, py::arg("activation"), py::arg("x"),
          py::arg("y"), py::arg("dy"), py::arg("alpha") = 0.0f, py::arg("out") = none);

    // Losses: fn(y_pred, y_true, grad_scale=1, row_loss=None, grad=None, want_grad=False)
    // returns the summed loss, or (sum, grad) when a gradient is asked for.
    const auto sparse = [&](const char* name, LossKernel<int32_t> k) {
        m.def(name, [k, name](const py::handle& p, const py::handle& t, float s,
                              std::optional<py::array> rl, std::optional<py::array> g, bool w) {
            return sparse_loss(k, name, p, t, s, rl, g, w);
        }, py::arg("y_pred"), py::arg("y_true"), py::arg("grad_scale") = 1.0f,
           py::arg("row_loss") = py::none(), py::arg("grad") = py::none(), py::arg("want_grad") = false);
    };
    const auto dense = [&](const char* name, LossKernel<float> k) {
        m.def(name, [k, name](const py::handle& p, const py::handle& t, float s,
                              std::optional<py::array> rl, std::optional<py::array> g, bool w) {
            return dense_loss(k, name, p, t, s, rl, g, w);
        }, py::arg("y_pred"), py::arg("y_true"), py::arg("grad_scale") = 1.0f,
           py::arg("row_loss") = py::none(), py::arg("grad") = py::none(), py::arg("want_grad") = false);
    };
    sparse("sparse_categorical_crossentropy", fz::sparse_categorical_crossentropy);
    sparse("sparse_categorical_crossentropy_from_logits", fz::sparse_categorical_crossentropy_from_logits);
    dense("categorical_crossentropy", fz::categorical_crossentropy);
    dense("categorical_crossentropy_from_logits", fz::categorical_crossentropy_from_logits);
    dense("mean_squared_error", fz::mean_squared_error);
    dense("binary_crossentropy", fz::binary_crossentropy);
    dense("binary_crossentropy_from_logits", fz::binary_crossentropy_from_logits);
    m.def("softmax_crossentropy_backward", &softmax_crossentropy_backward, py::arg("probs"),
          py::arg("y_true"), py::arg("sparse"), py::arg("grad_scale") = 1.0f, py::arg("out") = none);

    m.def("bias_grad", &bias_grad, py::arg("dy"), py::arg("out") = none);
    m.def("argmax", &argmax_rows, py::arg("x"));
    m.def("count_correct", &count_correct, py::arg("scores"), py::arg("labels"));
    m.def("gather_rows", &gather_rows, py::arg("src"), py::arg("index"), py::arg("out") = none);

    m.def("sgd_update", &sgd_update, py::arg("param"), py::arg("grad"), py::arg("momentum_buffer"),
          py::arg("learning_rate"), py::arg("momentum"), py::arg("nesterov"), py::arg("weight_decay"));
    m.def("adam_update", &adam_update, py::arg("param"), py::arg("grad"), py::arg("m"), py::arg("v"),
          py::arg("learning_rate"), py::arg("beta_1"), py::arg("beta_2"), py::arg("epsilon"),
          py::arg("step"), py::arg("weight_decay"));
    m.def("rmsprop_update", &rmsprop_update, py::arg("param"), py::arg("grad"), py::arg("v"),
          py::arg("momentum_buffer"), py::arg("learning_rate"), py::arg("rho"), py::arg("momentum"),
          py::arg("epsilon"), py::arg("weight_decay"));

    m.def("dropout_forward", &dropout_forward, py::arg("x"), py::arg("rate"), py::arg("seed"),
          py::arg("out") = none, py::arg("mask") = none);
    m.def("dropout_backward", &dropout_backward, py::arg("dy"), py::arg("mask"), py::arg("out") = none);
    m.def("random_permutation", &random_permutation, py::arg("n"), py::arg("seed"));
}
