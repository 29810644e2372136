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

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "activations.h"
#include "conv.h"
#include "dense.h"
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

// Any object → a NumPy array (no copy when it already is one). A ragged list
// or an object NumPy cannot read is a TypeError naming the argument, with
// NumPy's reason.
py::array as_array(const py::handle& obj, const char* fn, const char* name) {
    if (py::isinstance<py::array>(obj)) return py::reinterpret_borrow<py::array>(obj);
    try {
        return py::array(py::reinterpret_borrow<py::object>(obj));
    } catch (py::error_already_set& e) {
        throw py::type_error(std::string(fn) + ": " + name + " must be array-like, got " +
                             std::string(py::str(py::type::handle_of(obj).attr("__name__"))) +
                             " (" + std::string(py::str(e.value())) + ")");
    }
}

// `arr` as the array type A (C-contiguous, forcecast): `arr` itself when it
// already is one, else a converted copy. Never A::ensure(arr): when NumPy
// cannot make the copy — say a np.broadcast_to view of shape (2**20, 2**20),
// whose copy needs 4 TB — ensure() clears the error and returns a null array,
// which then crashed the first kernel to read it. The converting constructor
// keeps NumPy's error; it is raised again naming the argument, a MemoryError
// staying a MemoryError.
template <class A>
A convert(const py::array& arr, const char* fn, const char* name) {
    try {
        return A(arr);
    } catch (py::error_already_set& e) {
        const std::string msg = std::string(fn) + ": cannot convert " + name + " of shape " +
                                shape_str(shape_of(arr)) + " and dtype " +
                                std::string(py::str(arr.dtype())) + " to a C-contiguous " +
                                std::string(py::str(py::dtype::of<typename A::value_type>())) +
                                " array: " + std::string(py::str(e.value()));
        if (e.matches(PyExc_MemoryError)) {
            PyErr_SetString(PyExc_MemoryError, msg.c_str());
            throw py::error_already_set();
        }
        fail(msg);
    }
}

// Any array-like → float32 C-contiguous (no copy when it already is one).
FloatArray as_float(const py::handle& obj, const char* fn, const char* name) {
    py::array arr = as_array(obj, fn, name);
    const char kind = arr.dtype().kind();
    if (kind != 'f' && kind != 'i' && kind != 'u' && kind != 'b')
        throw py::type_error(std::string(fn) + ": " + name + " must hold numbers, got dtype " +
                             std::string(py::str(arr.dtype())));
    return convert<FloatArray>(arr, fn, name);
}

// py::enum_ lets Python make an Activation from any int (Activation(99)). Such
// a value would reach a kernel's switch, whose fallback throws — inside an
// OpenMP region, where an exception is std::terminate. Every entry point
// taking an activation checks it here first.
Activation checked(Activation act, const char* fn) {
    switch (act) {
        case Activation::identity: case Activation::relu: case Activation::leaky_relu:
        case Activation::sigmoid: case Activation::tanh: case Activation::gelu:
        case Activation::softmax:
            return act;
    }
    fail(std::string(fn) + ": activation must be a fromzero.ops.Activation, got the value " +
         std::to_string(static_cast<int>(act)));
}

FloatArray as_matrix(const py::handle& obj, const char* fn, const char* name) {
    FloatArray a = as_float(obj, fn, name);
    if (a.ndim() != 2)
        fail(std::string(fn) + ": " + name + " must be 2-D, got shape " + shape_str(shape_of(a)));
    return a;
}

// Integer labels → int32, every one checked to lie in [0, classes).
LabelArray as_labels(const py::handle& obj, py::ssize_t rows, py::ssize_t classes, const char* fn) {
    py::array arr = as_array(obj, fn, "labels");
    if (arr.dtype().kind() != 'i' && arr.dtype().kind() != 'u')
        throw py::type_error(std::string(fn) + ": labels must be an integer array, got dtype " +
                             std::string(py::str(arr.dtype())));
    if (arr.ndim() != 1 || arr.shape(0) != rows)
        fail(std::string(fn) + ": labels must have shape (" + std::to_string(rows) + ",), got " +
             shape_str(shape_of(arr)));
    IndexArray wide = convert<IndexArray>(arr, fn, "labels");
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
    if (!(a.flags() & py::array::c_style)) {
        Shape strides(a.strides(), a.strides() + a.ndim());
        fail(std::string(fn) + ": " + name + " must be C-contiguous, got an array of shape " +
             shape_str(shape_of(a)) + " with byte strides " + shape_str(strides) +
             " (np.ascontiguousarray makes one)");
    }
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

void require_disjoint(const py::array& out, const py::array& in, const char* fn, const char* out_name,
                      const char* in_name) {
    if (overlaps(out, in))
        fail(std::string(fn) + ": " + out_name + " must not overlap " + in_name);
}

// Elementwise kernels read element i of every input before writing element i
// of the output, so an output may be exactly one of the inputs (in place) —
// but not a shifted view of it, whose elements the loop would overwrite
// before reading them.
void require_same_or_disjoint(const py::array& out, const py::array& in, const char* fn,
                              const char* out_name, const char* in_name) {
    if (out.data() == in.data() && out.nbytes() == in.nbytes()) return;
    if (overlaps(out, in))
        fail(std::string(fn) + ": " + out_name + " overlaps " + in_name +
             " without being the same array (in place is fine, a shifted view is not)");
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
    activation = checked(activation, fn);
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
    if (bias) require_disjoint(c, *bias, fn, "out", "bias");
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

// ---------------------------------------------------------------- Dense layer

void require_shape(const py::array& a, const Shape& shape, const char* fn, const char* name) {
    if (shape_of(a) != shape)
        fail(std::string(fn) + ": " + name + " must have shape " + shape_str(shape) + ", got " +
             shape_str(shape_of(a)));
}

// y = f(x·W + b), one call (csrc/dense.h). z receives x·W + b for GELU.
py::array_t<float> dense_forward(const py::handle& x_in, const py::handle& w_in,
                                 const std::optional<py::handle>& b_in, Activation act,
                                 float alpha, std::optional<py::array> out,
                                 std::optional<py::array> z_out) {
    const char* fn = "dense_forward";
    act = checked(act, fn);
    FloatArray x = as_matrix(x_in, fn, "x"), W = as_matrix(w_in, fn, "kernel");
    const py::ssize_t batch = x.shape(0), in = x.shape(1), units = W.shape(1);
    if (W.shape(0) != in)
        fail(std::string(fn) + ": x has shape " + shape_str(shape_of(x)) + " but kernel has shape " +
             shape_str(shape_of(W)) + ": expected " + std::to_string(W.shape(0)) + " input features");
    std::optional<FloatArray> b;
    if (b_in && !b_in->is_none()) {
        b = as_float(*b_in, fn, "bias");
        require_shape(*b, {units}, fn, "bias");
    }
    py::array_t<float> y = output(out, {batch, units}, fn, "out");
    std::optional<py::array_t<float>> z;
    if (fz::activation_backward_needs_input(act)) {
        if (!z_out) fail(std::string(fn) + ": this activation needs z_out for its backward pass");
        z = output(z_out, {batch, units}, fn, "z_out");
    }
    if (overlaps(y, x) || overlaps(y, W)) fail(std::string(fn) + ": out must not overlap x or kernel");
    if (b) require_disjoint(y, *b, fn, "out", "bias");
    if (z) {
        for (const py::array& in : {py::array(x), py::array(W)})
            require_disjoint(*z, in, fn, "z_out", "x or kernel");
        if (b) require_disjoint(*z, *b, fn, "z_out", "bias");
        require_disjoint(*z, y, fn, "z_out", "out");
    }
    const float* xp = x.data();
    const float* wp = W.data();
    const float* bp = b ? b->data() : nullptr;
    float* yp = y.mutable_data();
    float* zp = z ? z->mutable_data() : nullptr;
    py::gil_scoped_release nogil;
    fz::dense_forward(xp, wp, bp, yp, zp, batch, in, units, act, alpha);
    return y;
}

// From dy: dz = dy ⊙ f'(z) into dz_out, then db, dW (when given) and dx (when
// given, else None is returned), one call (csrc/dense.h).
py::object dense_backward(const py::handle& x_in, const py::handle& w_in,
                          const std::optional<py::handle>& z_in, const py::handle& y_in,
                          const py::handle& dy_in, Activation act, float alpha, py::array dz_out,
                          std::optional<py::array> dw_out, std::optional<py::array> db_out,
                          std::optional<py::array> dx_out) {
    const char* fn = "dense_backward";
    act = checked(act, fn);
    FloatArray x = as_matrix(x_in, fn, "x"), W = as_matrix(w_in, fn, "kernel");
    const py::ssize_t batch = x.shape(0), in = x.shape(1), units = W.shape(1);
    require_shape(W, {in, units}, fn, "kernel");
    FloatArray y = as_float(y_in, fn, "y"), dy = as_float(dy_in, fn, "dy");
    require_shape(y, {batch, units}, fn, "y");
    require_shape(dy, {batch, units}, fn, "dy");
    std::optional<FloatArray> z;
    if (fz::activation_backward_needs_input(act)) {
        if (!z_in || z_in->is_none()) fail(std::string(fn) + ": this activation needs z");
        z = as_float(*z_in, fn, "z");
        require_shape(*z, {batch, units}, fn, "z");
    }
    py::array_t<float> dz = state(dz_out, {batch, units}, fn, "dz_out");
    std::optional<py::array_t<float>> dW, db, dx;
    if (dw_out) dW = state(*dw_out, {in, units}, fn, "dw_out");
    if (db_out) db = state(*db_out, {units}, fn, "db_out");
    if (dx_out) dx = state(*dx_out, {batch, in}, fn, "dx_out");
    // Every output is written while inputs are still being read (dz before the
    // GEMMs that read it, for instance), so no output may share memory with an
    // input or with another output.
    std::vector<std::pair<py::array, const char*>> outs{{dz, "dz_out"}};
    if (dW) outs.emplace_back(*dW, "dw_out");
    if (db) outs.emplace_back(*db, "db_out");
    if (dx) outs.emplace_back(*dx, "dx_out");
    std::vector<std::pair<py::array, const char*>> ins{{x, "x"}, {W, "kernel"}, {y, "y"}, {dy, "dy"}};
    if (z) ins.emplace_back(*z, "z");
    for (size_t i = 0; i < outs.size(); ++i) {
        for (const auto& in : ins) require_disjoint(outs[i].first, in.first, fn, outs[i].second, in.second);
        for (size_t j = 0; j < i; ++j)
            require_disjoint(outs[i].first, outs[j].first, fn, outs[i].second, outs[j].second);
    }
    const float* xp = x.data();
    const float* wp = W.data();
    const float* zp = z ? z->data() : nullptr;
    const float* yp = y.data();
    const float* dyp = dy.data();
    float* dzp = dz.mutable_data();
    float* dwp = dW ? dW->mutable_data() : nullptr;
    float* dbp = db ? db->mutable_data() : nullptr;
    float* dxp = dx ? dx->mutable_data() : nullptr;
    {
        py::gil_scoped_release nogil;
        fz::dense_backward(xp, wp, zp, yp, dyp, dzp, dwp, dbp, dxp, batch, in, units, act, alpha);
    }
    if (dx) return *dx;
    return py::none();
}

// ---------------------------------------------------------------- activations

py::array_t<float> activation_forward(Activation act, const py::handle& x_in, float alpha,
                                      std::optional<py::array> out) {
    act = checked(act, "activation_forward");
    FloatArray x = as_float(x_in, "activation_forward", "x");
    if (act == Activation::softmax) {
        if (x.ndim() != 2) fail("softmax: x must be 2-D (batch, classes), got " + shape_str(shape_of(x)));
        py::array_t<float> y = output(out, shape_of(x), "softmax", "out");
        require_same_or_disjoint(y, x, "softmax", "out", "x");
        const int64_t rows = x.shape(0), cols = x.shape(1);
        const float* xp = x.data();
        float* yp = y.mutable_data();
        py::gil_scoped_release nogil;
        fz::softmax_forward(xp, yp, rows, cols);
        return y;
    }
    py::array_t<float> y = output(out, shape_of(x), "activation_forward", "out");
    require_same_or_disjoint(y, x, "activation_forward", "out", "x");
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
    act = checked(act, fn);
    FloatArray y = as_float(y_in, fn, "y"), dy = as_float(dy_in, fn, "dy");
    require_same_shape(y, dy, fn, "y", "dy");
    py::array_t<float> dx = output(out, shape_of(dy), fn, "out");
    require_same_or_disjoint(dx, y, fn, "out", "y");
    require_same_or_disjoint(dx, dy, fn, "out", "dy");
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
        require_same_or_disjoint(dx, *x, fn, "out", "x");
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
    // A row's gradient is written while its loss still reads the row.
    for (const py::array& in : {py::array(pred), py::array(target)}) {
        require_disjoint(row_loss, in, fn, "row_loss", "y_pred or y_true");
        if (grad) require_disjoint(*grad, in, fn, "grad", "y_pred or y_true");
    }
    if (grad) require_disjoint(*grad, row_loss, fn, "grad", "row_loss");
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
    require_same_or_disjoint(dlogits, probs, fn, "out", "probs");
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
        require_same_or_disjoint(dlogits, target, fn, "out", "y_true");
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
    require_disjoint(db, dy, "bias_grad", "out", "dy");
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
// float32 data and int32 labels; `s` is src already converted.
template <class T>
py::array gather_typed(const py::array_t<T, py::array::c_style | py::array::forcecast>& s,
                       const IndexArray& index, const Shape& shape, std::optional<py::array> out) {
    const char* fn = "gather_rows";
    py::array_t<T> dst;
    if (!out) {
        dst = py::array_t<T>(shape);
    } else {
        if (!py::isinstance<py::array_t<T>>(*out) || !(out->flags() & py::array::c_style) ||
            !out->writeable() || shape_of(*out) != shape)
            fail(std::string(fn) + ": out must be a writable C-contiguous " +
                 std::string(py::str(py::dtype::of<T>())) + " array of shape " + shape_str(shape) +
                 ", got " + std::string(py::str(out->dtype())) + " " + shape_str(shape_of(*out)) +
                 (out->writeable() ? "" : " (read-only)"));
        dst = py::reinterpret_borrow<py::array_t<T>>(*out);
        require_disjoint(dst, s, fn, "out", "src");
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

py::array gather_rows(const py::handle& src_in, const py::handle& index_in, std::optional<py::array> out) {
    const char* fn = "gather_rows";
    py::array index_arr = as_array(index_in, fn, "index");
    if (index_arr.ndim() != 1 ||
        (index_arr.size() > 0 && index_arr.dtype().kind() != 'i' && index_arr.dtype().kind() != 'u'))
        fail("gather_rows: index must be a 1-D integer array, got shape " +
             shape_str(shape_of(index_arr)) + " and dtype " + std::string(py::str(index_arr.dtype())));
    IndexArray index = convert<IndexArray>(index_arr, fn, "index");
    py::array src = as_array(src_in, fn, "src");
    if (src.ndim() < 1) fail("gather_rows: src must have at least one axis, got a 0-d array");
    const py::ssize_t n_src = src.shape(0);
    const int64_t* ip = index.data();
    for (py::ssize_t i = 0; i < index.shape(0); ++i)
        if (ip[i] < 0 || ip[i] >= n_src)
            fail("gather_rows: index " + std::to_string(ip[i]) + " at position " + std::to_string(i) +
                 " is outside [0, " + std::to_string(n_src) + ")");
    Shape shape = shape_of(src);
    shape[0] = index.shape(0);
    const char kind = src.dtype().kind();
    if (kind == 'i' || kind == 'u') {
        // Integers are gathered as int32 (labels): a wider value would wrap.
        // The check runs on a C-contiguous copy (itself a clean MemoryError
        // for a huge view), with uint64 kept unsigned so no value wraps.
        const auto check_range = [&](auto wide) {
            const auto* p = wide.data();
            for (py::ssize_t i = 0; i < wide.size(); ++i)
                if (p[i] > INT32_MAX || (kind == 'i' && static_cast<int64_t>(p[i]) < INT32_MIN))
                    fail("gather_rows: integer src (dtype " + std::string(py::str(src.dtype())) +
                         ") holds " + std::to_string(p[i]) + " at flat index " + std::to_string(i) +
                         ", outside int32, the type integers are gathered as");
        };
        if (kind == 'u' && src.itemsize() >= 4)
            check_range(convert<py::array_t<uint64_t, py::array::c_style | py::array::forcecast>>(
                src, fn, "src"));
        else if (kind == 'i' && src.itemsize() > 4)
            check_range(convert<IndexArray>(src, fn, "src"));
        return gather_typed<int32_t>(convert<py::array_t<int32_t, py::array::c_style | py::array::forcecast>>(
                                         src, fn, "src"), index, shape, out);
    }
    return gather_typed<float>(as_float(src, fn, "src"), index, shape, out);
}

// ---------------------------------------------------------------- optimizers
//
// One optimizer step updates every parameter array in one call: all arrays are
// checked first, then the GIL is released once and one kernel pass (one
// parallel region) updates them all.

struct UpdateTensors {
    std::vector<FloatArray> grads;  // the converted gradients, alive while kernels run
    std::vector<const float*> grad_data;
    std::vector<float*> params;
    std::vector<int64_t> sizes;
    std::vector<std::vector<float*>> slots;  // slots[s][t]: state array s of parameter t

    // The kernels' view of all of it (csrc/optimizers.h); unused slots are null.
    fz::ParamList list() const {
        auto slot = [&](size_t s) { return s < slots.size() && !slots[s].empty() ? slots[s].data() : nullptr; };
        return {static_cast<int64_t>(params.size()), params.data(), grad_data.data(), slot(0), slot(1),
                sizes.data()};
    }
};

// Checks params[t] (writable float32 arrays), grads[t] (same shapes) and each
// slot list (state arrays shaped like the parameters); `slots` pairs a name
// with a list, or with None for a slot this update does not use.
UpdateTensors collect_update(const char* fn, const py::sequence& params, const py::sequence& grads,
                             const std::vector<std::pair<const char*, py::object>>& slots,
                             float lr) {
    if (!std::isfinite(lr) || lr < 0)
        fail(std::string(fn) + ": learning_rate must be finite and >= 0, got " + std::to_string(lr));
    const size_t count = py::len(params);
    if (py::len(grads) != count)
        fail(std::string(fn) + ": got " + std::to_string(count) + " parameters but " +
             std::to_string(py::len(grads)) + " gradients");
    UpdateTensors u;
    u.slots.resize(slots.size());
    for (size_t t = 0; t < count; ++t) {
        const std::string where = " " + std::to_string(t);
        if (!py::isinstance<py::array>(params[t]))
            throw py::type_error(std::string(fn) + ": parameter" + where + " must be a numpy array");
        const auto param = py::reinterpret_borrow<py::array>(params[t]);
        auto p = state(param, shape_of(param), fn, ("parameter" + where).c_str());
        FloatArray g = as_float(grads[t], fn, ("gradient" + where).c_str());
        require_same_shape(g, p, fn, ("gradient" + where).c_str(), ("parameter" + where).c_str());
        for (size_t other = 0; other < t; ++other)
            if (u.params[other] == p.mutable_data())
                fail(std::string(fn) + ": parameter" + where + " is the same array as parameter " +
                     std::to_string(other) + "; each array must be updated once per step");
        u.params.push_back(p.mutable_data());
        u.sizes.push_back(p.size());
        u.grads.push_back(g);
        u.grad_data.push_back(g.data());
        for (size_t s = 0; s < slots.size(); ++s) {
            if (slots[s].second.is_none()) continue;
            if (!py::isinstance<py::sequence>(slots[s].second))
                throw py::type_error(std::string(fn) + ": " + slots[s].first +
                                     " must be a list of arrays (one per parameter), got " +
                                     std::string(py::repr(slots[s].second)));
            const py::sequence list = slots[s].second.cast<py::sequence>();
            if (py::len(list) != count)
                fail(std::string(fn) + ": " + slots[s].first + " must hold one array per parameter (" +
                     std::to_string(count) + "), got " + std::to_string(py::len(list)));
            if (!py::isinstance<py::array>(list[t]))
                throw py::type_error(std::string(fn) + ": " + slots[s].first + where + " must be a numpy array");
            u.slots[s].push_back(state(py::reinterpret_borrow<py::array>(list[t]), shape_of(p), fn,
                                       (slots[s].first + where).c_str()).mutable_data());
        }
    }
    return u;
}

void sgd_update(const py::sequence& params, const py::sequence& grads, const py::object& momentum_buffers,
                float lr, float momentum, bool nesterov, float weight_decay) {
    const char* fn = "sgd_update";
    require_finite_param(momentum, fn, "momentum", 0.0, 1.0);
    if (momentum > 0 && momentum_buffers.is_none())
        fail("sgd_update: momentum > 0 needs momentum buffers");
    UpdateTensors u = collect_update(fn, params, grads, {{"momentum buffer", momentum_buffers}}, lr);
    py::gil_scoped_release nogil;
    fz::sgd_update_many(u.list(), lr, momentum, nesterov, weight_decay);
}

void adam_update(const py::sequence& params, const py::sequence& grads, const py::sequence& m,
                 const py::sequence& v, float lr, float beta1, float beta2, float epsilon,
                 int64_t step, float weight_decay) {
    const char* fn = "adam_update";
    require_finite_param(beta1, fn, "beta_1", 0.0, 1.0);
    require_finite_param(beta2, fn, "beta_2", 0.0, 1.0);
    if (step < 1) fail("adam_update: step must be >= 1, got " + std::to_string(step));
    UpdateTensors u = collect_update(fn, params, grads, {{"m", m}, {"v", v}}, lr);
    py::gil_scoped_release nogil;
    fz::adam_update_many(u.list(), lr, beta1, beta2, epsilon, step, weight_decay);
}

void rmsprop_update(const py::sequence& params, const py::sequence& grads, const py::sequence& v,
                    const py::object& momentum_buffers, float lr, float rho, float momentum,
                    float epsilon, float weight_decay) {
    const char* fn = "rmsprop_update";
    require_finite_param(rho, fn, "rho", 0.0, 1.0);
    if (momentum > 0 && momentum_buffers.is_none())
        fail("rmsprop_update: momentum > 0 needs momentum buffers");
    UpdateTensors u =
        collect_update(fn, params, grads, {{"v", v}, {"momentum buffer", momentum_buffers}}, lr);
    py::gil_scoped_release nogil;
    fz::rmsprop_update_many(u.list(), lr, rho, momentum, epsilon, weight_decay);
}

// ---------------------------------------------------------------- randomness

py::tuple dropout_forward(const py::handle& x_in, float rate, uint64_t seed,
                          std::optional<py::array> out, std::optional<py::array> mask_out) {
    const char* fn = "dropout_forward";
    FloatArray x = as_float(x_in, fn, "x");
    if (!(rate >= 0.0f && rate < 1.0f)) fail("dropout: rate must be in [0, 1), got " + std::to_string(rate));
    py::array_t<float> y = output(out, shape_of(x), fn, "out");
    py::array_t<float> mask = output(mask_out, shape_of(x), fn, "mask");
    // y may be x (in place); the mask is written before x_i is read.
    require_same_or_disjoint(y, x, fn, "out", "x");
    require_disjoint(mask, x, fn, "mask", "x");
    require_disjoint(mask, y, fn, "mask", "out");
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
    require_same_or_disjoint(dx, dy, fn, "out", "dy");
    require_same_or_disjoint(dx, mask, fn, "out", "mask");
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
    py::array_t<int64_t> out;
    try {
        out = py::array_t<int64_t>(n);
    } catch (py::error_already_set& e) {  // NumPy's "array is too big" or MemoryError, named
        if (e.matches(PyExc_MemoryError)) throw;
        fail("random_permutation: n = " + std::to_string(n) + " values cannot be allocated: " +
             std::string(py::str(e.value())));
    }
    int64_t* op = out.mutable_data();
    py::gil_scoped_release nogil;
    fz::random_permutation(op, n, seed);
    return out;
}

// ---------------------------------------------------------------- convolution, pooling, batch norm
//
// Images are NHWC float32 (csrc/conv.h). Sizes come in as (height, width)
// pairs and padding as "valid" or "same"; every size is checked, and a window
// that does not fit its input is a ValueError naming both, before any kernel runs.

using Pair = std::array<int64_t, 2>;
using IntArray = py::array_t<int32_t, py::array::c_style | py::array::forcecast>;

std::string pair_str(Pair p) { return "(" + std::to_string(p[0]) + ", " + std::to_string(p[1]) + ")"; }

fz::Padding parse_padding(const std::string& padding, const char* fn) {
    if (padding == "valid") return fz::Padding::valid;
    if (padding == "same") return fz::Padding::same;
    fail(std::string(fn) + ": padding must be 'valid' or 'same', got '" + padding + "'");
}

// A 4-D shape (batch, height, width, channels) with a non-empty image.
void require_image_shape(const Shape& s, const char* fn, const char* name) {
    if (s.size() != 4)
        fail(std::string(fn) + ": " + name + " must be 4-D (batch, height, width, channels), got shape " +
             shape_str(s) + (s.size() == 3 ? "; add a channel axis, e.g. x.reshape(*x.shape, 1)" : ""));
    if (s[0] < 0 || s[1] < 1 || s[2] < 1 || s[3] < 1)
        fail(std::string(fn) + ": " + name + " must have height, width and channels >= 1, got shape " +
             shape_str(s));
}

FloatArray as_images(const py::handle& obj, const char* fn, const char* name) {
    FloatArray a = as_float(obj, fn, name);
    require_image_shape(shape_of(a), fn, name);
    return a;
}

// The geometry of a `window` sliding with `strides` over images of `input`
// shape; `what` names the window in messages ("kernel", "pool_size").
fz::Window2d window_geometry(const Shape& input, Pair window, Pair strides,
                             const std::string& padding, const char* fn, const char* what) {
    if (window[0] < 1 || window[1] < 1)
        fail(std::string(fn) + ": " + what + " must be >= 1, got " + pair_str(window));
    if (strides[0] < 1 || strides[1] < 1)
        fail(std::string(fn) + ": strides must be >= 1, got " + pair_str(strides));
    const fz::Window2d g = fz::make_window2d(input[0], input[1], input[2], input[3], window[0],
                                             window[1], strides[0], strides[1],
                                             parse_padding(padding, fn));
    if (g.ho < 1 || g.wo < 1)
        fail(std::string(fn) + ": a " + what + " of " + pair_str(window) +
             " does not fit in images of " + std::to_string(input[1]) + "x" +
             std::to_string(input[2]) + " with padding='valid' (the output would be " +
             std::to_string(g.ho) + "x" + std::to_string(g.wo) +
             "); use padding='same' or a smaller window");
    return g;
}

Shape image_shape(const fz::Window2d& g, int64_t channels) { return {g.n, g.ho, g.wo, channels}; }

// A caller's int32 output array (max pooling's argmax), or a fresh one.
py::array_t<int32_t> index_output(const std::optional<py::array>& out, const Shape& shape,
                                  const char* fn, const char* name) {
    if (!out) return py::array_t<int32_t>(shape);
    if (!py::isinstance<py::array_t<int32_t>>(*out) || !(out->flags() & py::array::c_style) ||
        !out->writeable() || shape_of(*out) != shape)
        fail(std::string(fn) + ": " + name + " must be a writable C-contiguous int32 array of shape " +
             shape_str(shape) + ", got " + std::string(py::str(out->dtype())) + " " +
             shape_str(shape_of(*out)));
    return py::reinterpret_borrow<py::array_t<int32_t>>(*out);
}

// y = act(conv(x, kernel) + bias).
py::array_t<float> conv2d_forward(const py::handle& x_in, const py::handle& kernel_in,
                                  const std::optional<py::handle>& bias_in, Pair strides,
                                  const std::string& padding, Activation act, float alpha,
                                  std::optional<py::array> out) {
    const char* fn = "conv2d_forward";
    act = checked(act, fn);
    FloatArray x = as_images(x_in, fn, "x");
    FloatArray kernel = as_float(kernel_in, fn, "kernel");
    if (kernel.ndim() != 4)
        fail(std::string(fn) + ": kernel must be 4-D (kh, kw, in_channels, filters), got shape " +
             shape_str(shape_of(kernel)));
    if (kernel.shape(2) != x.shape(3))
        fail(std::string(fn) + ": kernel has shape " + shape_str(shape_of(kernel)) + " for " +
             std::to_string(kernel.shape(2)) + " input channels but x has shape " +
             shape_str(shape_of(x)) + " with " + std::to_string(x.shape(3)));
    if (act == Activation::softmax)
        fail(std::string(fn) + ": the epilogue applies elementwise activations only; use softmax afterwards");
    const int64_t filters = kernel.shape(3);
    if (filters < 1) fail(std::string(fn) + ": kernel has no filters: shape " + shape_str(shape_of(kernel)));
    const fz::Window2d g = window_geometry(shape_of(x), {kernel.shape(0), kernel.shape(1)}, strides,
                                           padding, fn, "kernel");
    std::optional<FloatArray> bias;
    if (bias_in && !bias_in->is_none()) {
        bias = as_float(*bias_in, fn, "bias");
        require_shape(*bias, {filters}, fn, "bias");
    }
    py::array_t<float> y = output(out, image_shape(g, filters), fn, "out");
    for (const py::array& in : {py::array(x), py::array(kernel)})
        require_disjoint(y, in, fn, "out", "the inputs");
    const float* xp = x.data();
    const float* kp = kernel.data();
    const float* bp = bias ? bias->data() : nullptr;
    float* yp = y.mutable_data();
    {
        py::gil_scoped_release nogil;
        fz::conv2d_forward(g, xp, kp, bp, filters, act, alpha, yp);
    }
    return y;
}

// From dy = ∂L/∂y, x (the forward's input) and, for an activation, y (its
// output): returns (dx, dkernel, dbias), each None when not asked for — dx
// when need_dx is false (a first layer), dkernel and dbias when need_dparams is
// false (a frozen layer), dbias when use_bias is false.
py::tuple conv2d_backward(const py::handle& dy_in, const py::handle& kernel_in,
                          const py::handle& x_in, Pair strides, const std::string& padding,
                          bool use_bias, bool need_dx, bool need_dparams,
                          std::optional<py::array> dx_out, std::optional<py::array> dkernel_out,
                          std::optional<py::array> dbias_out, Activation act,
                          const std::optional<py::handle>& y_in, float alpha) {
    const char* fn = "conv2d_backward";
    act = checked(act, fn);
    if (act == Activation::softmax || fz::activation_backward_needs_input(act))
        fail(std::string(fn) + ": activation must have a derivative written in terms of y "
             "(not gelu or softmax: apply their backward first and pass identity)");
    FloatArray x = as_images(x_in, fn, "x");
    const Shape in_shape = shape_of(x);
    FloatArray kernel = as_float(kernel_in, fn, "kernel");
    if (kernel.ndim() != 4 || kernel.shape(2) != in_shape[3] || kernel.shape(3) < 1)
        fail(std::string(fn) + ": kernel must have shape (kh, kw, " + std::to_string(in_shape[3]) +
             ", filters) for x of shape " + shape_str(in_shape) + ", got " + shape_str(shape_of(kernel)));
    const int64_t filters = kernel.shape(3);
    const fz::Window2d g = window_geometry(in_shape, {kernel.shape(0), kernel.shape(1)}, strides,
                                           padding, fn, "kernel");
    FloatArray dy = as_float(dy_in, fn, "dy");
    require_shape(dy, image_shape(g, filters), fn, "dy");
    std::optional<FloatArray> y;
    if (act != Activation::identity) {
        if (!y_in || y_in->is_none())
            fail(std::string(fn) + ": y (the forward's output) is needed for the activation's derivative");
        y = as_float(*y_in, fn, "y");
        require_shape(*y, image_shape(g, filters), fn, "y");
    }
    std::optional<py::array_t<float>> dx, dkernel, dbias;
    if (need_dx) {
        dx = output(dx_out, in_shape, fn, "dx_out");
        for (const py::array& in : {py::array(dy), py::array(kernel), py::array(x)})
            require_disjoint(*dx, in, fn, "dx_out", "the inputs");
        if (y) require_disjoint(*dx, *y, fn, "dx_out", "the inputs");
    }
    if (need_dparams) {
        dkernel = output(dkernel_out, shape_of(kernel), fn, "dkernel_out");
        if (use_bias) dbias = output(dbias_out, {filters}, fn, "dbias_out");
    }
    const float* dyp = dy.data();
    const float* yp = y ? y->data() : nullptr;
    const float* kp = kernel.data();
    const float* xp = x.data();
    float* dxp = dx ? dx->mutable_data() : nullptr;
    float* dkp = dkernel ? dkernel->mutable_data() : nullptr;
    float* dbp = dbias ? dbias->mutable_data() : nullptr;
    {
        py::gil_scoped_release nogil;
        fz::conv2d_backward(g, xp, kp, dyp, filters, dkp, dbp, dxp, act, yp, alpha);
    }
    const auto or_none = [](const std::optional<py::array_t<float>>& a) -> py::object {
        return a ? py::object(*a) : py::object(py::none());
    };
    return py::make_tuple(or_none(dx), or_none(dkernel), or_none(dbias));
}

// Returns (y, argmax); argmax holds, per output, the offset inside its image
// of the input that won, for max_pool2d_backward.
py::tuple max_pool2d_forward(const py::handle& x_in, Pair pool_size, Pair strides,
                             const std::string& padding, std::optional<py::array> out,
                             std::optional<py::array> argmax_out) {
    const char* fn = "max_pool2d_forward";
    FloatArray x = as_images(x_in, fn, "x");
    const fz::Window2d g = window_geometry(shape_of(x), pool_size, strides, padding, fn, "pool_size");
    if (g.h * g.w * g.c > INT32_MAX)
        fail(std::string(fn) + ": images of shape " + shape_str(shape_of(x)) +
             " have too many values for int32 argmax offsets");
    py::array_t<float> y = output(out, image_shape(g, g.c), fn, "out");
    py::array_t<int32_t> argmax = index_output(argmax_out, image_shape(g, g.c), fn, "argmax");
    require_disjoint(y, x, fn, "out", "x");
    const float* xp = x.data();
    float* yp = y.mutable_data();
    int32_t* ap = argmax.mutable_data();
    {
        py::gil_scoped_release nogil;
        fz::max_pool2d_forward(g, xp, yp, ap);
    }
    return py::make_tuple(y, argmax);
}

py::array_t<float> max_pool2d_backward(const py::handle& dy_in, const py::handle& argmax_in,
                                       const std::vector<int64_t>& input_shape, Pair pool_size,
                                       Pair strides, const std::string& padding,
                                       std::optional<py::array> out) {
    const char* fn = "max_pool2d_backward";
    const Shape in_shape(input_shape.begin(), input_shape.end());
    require_image_shape(in_shape, fn, "input_shape");
    const fz::Window2d g = window_geometry(in_shape, pool_size, strides, padding, fn, "pool_size");
    FloatArray dy = as_float(dy_in, fn, "dy");
    require_shape(dy, image_shape(g, g.c), fn, "dy");
    py::array argmax_arr = py::array::ensure(argmax_in);
    if (!argmax_arr || (argmax_arr.dtype().kind() != 'i' && argmax_arr.dtype().kind() != 'u'))
        throw py::type_error(std::string(fn) + ": argmax must be an integer array");
    IntArray argmax = convert<IntArray>(argmax_arr, fn, "argmax");
    require_shape(argmax, image_shape(g, g.c), fn, "argmax");
    // Every offset is checked: a wrong one would write outside its image. The
    // smallest and largest first, in a loop that vectorises; the culprit is
    // looked for only when there is one.
    const int64_t image = g.h * g.w * g.c;
    const int32_t* ap = argmax.data();
    const py::ssize_t count = argmax.size();
    int32_t lo = 0, hi = 0;
    for (py::ssize_t k = 0; k < count; ++k) {
        lo = std::min(lo, ap[k]);
        hi = std::max(hi, ap[k]);
    }
    if (lo < 0 || hi >= image)
        for (py::ssize_t k = 0; k < count; ++k)
            if (ap[k] < 0 || ap[k] >= image)
                fail(std::string(fn) + ": argmax value " + std::to_string(ap[k]) +
                     " at flat index " + std::to_string(k) + " is outside [0, " +
                     std::to_string(image) + ")");
    py::array_t<float> dx = output(out, in_shape, fn, "out");
    require_disjoint(dx, dy, fn, "out", "dy");
    const float* dyp = dy.data();
    float* dxp = dx.mutable_data();
    py::gil_scoped_release nogil;
    fz::max_pool2d_backward(g, dyp, ap, dxp);
    return dx;
}

py::array_t<float> avg_pool2d_forward(const py::handle& x_in, Pair pool_size, Pair strides,
                                      const std::string& padding, std::optional<py::array> out) {
    const char* fn = "avg_pool2d_forward";
    FloatArray x = as_images(x_in, fn, "x");
    const fz::Window2d g = window_geometry(shape_of(x), pool_size, strides, padding, fn, "pool_size");
    py::array_t<float> y = output(out, image_shape(g, g.c), fn, "out");
    require_disjoint(y, x, fn, "out", "x");
    const float* xp = x.data();
    float* yp = y.mutable_data();
    py::gil_scoped_release nogil;
    fz::avg_pool2d_forward(g, xp, yp);
    return y;
}

py::array_t<float> avg_pool2d_backward(const py::handle& dy_in, const std::vector<int64_t>& input_shape,
                                       Pair pool_size, Pair strides, const std::string& padding,
                                       std::optional<py::array> out) {
    const char* fn = "avg_pool2d_backward";
    const Shape in_shape(input_shape.begin(), input_shape.end());
    require_image_shape(in_shape, fn, "input_shape");
    const fz::Window2d g = window_geometry(in_shape, pool_size, strides, padding, fn, "pool_size");
    FloatArray dy = as_float(dy_in, fn, "dy");
    require_shape(dy, image_shape(g, g.c), fn, "dy");
    py::array_t<float> dx = output(out, in_shape, fn, "out");
    require_disjoint(dx, dy, fn, "out", "dy");
    const float* dyp = dy.data();
    float* dxp = dx.mutable_data();
    py::gil_scoped_release nogil;
    fz::avg_pool2d_backward(g, dyp, dxp);
    return dx;
}

// (N, H, W, C) → (N, C), the mean over each image.
py::array_t<float> global_avg_pool2d_forward(const py::handle& x_in, std::optional<py::array> out) {
    const char* fn = "global_avg_pool2d_forward";
    FloatArray x = as_images(x_in, fn, "x");
    const int64_t n = x.shape(0), h = x.shape(1), w = x.shape(2), c = x.shape(3);
    py::array_t<float> y = output(out, {n, c}, fn, "out");
    require_disjoint(y, x, fn, "out", "x");
    const float* xp = x.data();
    float* yp = y.mutable_data();
    py::gil_scoped_release nogil;
    fz::global_avg_pool2d_forward(xp, yp, n, h, w, c);
    return y;
}

py::array_t<float> global_avg_pool2d_backward(const py::handle& dy_in,
                                              const std::vector<int64_t>& input_shape,
                                              std::optional<py::array> out) {
    const char* fn = "global_avg_pool2d_backward";
    const Shape in_shape(input_shape.begin(), input_shape.end());
    require_image_shape(in_shape, fn, "input_shape");
    FloatArray dy = as_float(dy_in, fn, "dy");
    require_shape(dy, {in_shape[0], in_shape[3]}, fn, "dy");
    py::array_t<float> dx = output(out, in_shape, fn, "out");
    require_disjoint(dx, dy, fn, "out", "dy");
    const float* dyp = dy.data();
    float* dxp = dx.mutable_data();
    py::gil_scoped_release nogil;
    fz::global_avg_pool2d_backward(dyp, dxp, in_shape[0], in_shape[1], in_shape[2], in_shape[3]);
    return dx;
}

// x: (..., C), normalised per channel (the last axis) over all other axes.
// moving_mean and moving_var are state arrays, updated in place when training.
// Returns (y, mean, inv_std), the statistics used, for batch_norm_backward.
py::tuple batch_norm_forward(const py::handle& x_in, const py::handle& gamma_in,
                             const py::handle& beta_in, py::array moving_mean_in,
                             py::array moving_var_in, bool training, float momentum, float epsilon,
                             std::optional<py::array> out, std::optional<py::array> mean_out,
                             std::optional<py::array> inv_std_out) {
    const char* fn = "batch_norm_forward";
    FloatArray x = as_float(x_in, fn, "x");
    if (x.ndim() < 2 || x.size() == 0)
        fail(std::string(fn) + ": x must have a batch axis and a channel axis and not be empty, got shape " +
             shape_str(shape_of(x)));
    const int64_t channels = x.shape(x.ndim() - 1), rows = x.size() / channels;
    require_finite_param(momentum, fn, "momentum", 0.0, 1.0);
    if (!(epsilon > 0.0f) || !std::isfinite(epsilon))
        fail(std::string(fn) + ": epsilon must be finite and > 0, got " + std::to_string(epsilon));
    FloatArray gamma = as_float(gamma_in, fn, "gamma"), beta = as_float(beta_in, fn, "beta");
    require_shape(gamma, {channels}, fn, "gamma");
    require_shape(beta, {channels}, fn, "beta");
    auto moving_mean = state(moving_mean_in, {channels}, fn, "moving_mean");
    auto moving_var = state(moving_var_in, {channels}, fn, "moving_var");
    py::array_t<float> y = output(out, shape_of(x), fn, "out");
    py::array_t<float> mean = output(mean_out, {channels}, fn, "mean");
    py::array_t<float> inv_std = output(inv_std_out, {channels}, fn, "inv_std");
    require_disjoint(y, x, fn, "out", "x");
    const float* xp = x.data();
    const float* gp = gamma.data();
    const float* bp = beta.data();
    float* mmp = moving_mean.mutable_data();
    float* mvp = moving_var.mutable_data();
    float* meanp = mean.mutable_data();
    float* isp = inv_std.mutable_data();
    float* yp = y.mutable_data();
    {
        py::gil_scoped_release nogil;
        fz::batch_norm_forward(xp, gp, bp, mmp, mvp, training, momentum, epsilon, meanp, isp, yp,
                               rows, channels);
    }
    return py::make_tuple(y, mean, inv_std);
}

// Returns (dx, dgamma, dbeta); mean and inv_std come from batch_norm_forward
// with the same `training`.
py::tuple batch_norm_backward(const py::handle& x_in, const py::handle& gamma_in,
                              const py::handle& mean_in, const py::handle& inv_std_in,
                              const py::handle& dy_in, bool training, std::optional<py::array> out,
                              std::optional<py::array> dgamma_out,
                              std::optional<py::array> dbeta_out) {
    const char* fn = "batch_norm_backward";
    FloatArray x = as_float(x_in, fn, "x"), dy = as_float(dy_in, fn, "dy");
    if (x.ndim() < 2 || x.size() == 0)
        fail(std::string(fn) + ": x must have a batch axis and a channel axis and not be empty, got shape " +
             shape_str(shape_of(x)));
    require_same_shape(dy, x, fn, "dy", "x");
    const int64_t channels = x.shape(x.ndim() - 1), rows = x.size() / channels;
    FloatArray gamma = as_float(gamma_in, fn, "gamma"), mean = as_float(mean_in, fn, "mean"),
               inv_std = as_float(inv_std_in, fn, "inv_std");
    require_shape(gamma, {channels}, fn, "gamma");
    require_shape(mean, {channels}, fn, "mean");
    require_shape(inv_std, {channels}, fn, "inv_std");
    py::array_t<float> dx = output(out, shape_of(x), fn, "out");
    py::array_t<float> dgamma = output(dgamma_out, {channels}, fn, "dgamma");
    py::array_t<float> dbeta = output(dbeta_out, {channels}, fn, "dbeta");
    require_disjoint(dx, x, fn, "out", "x");
    require_disjoint(dx, dy, fn, "out", "dy");
    const float* xp = x.data();
    const float* gp = gamma.data();
    const float* mp = mean.data();
    const float* sp = inv_std.data();
    const float* dyp = dy.data();
    float* dxp = dx.mutable_data();
    float* dgp = dgamma.mutable_data();
    float* dbp = dbeta.mutable_data();
    {
        py::gil_scoped_release nogil;
        fz::batch_norm_backward(xp, gp, mp, sp, dyp, training, dxp, dgp, dbp, rows, channels);
    }
    return py::make_tuple(dx, dgamma, dbeta);
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
    m.def("set_num_threads", [](const py::handle& value) {
        // An int (or NumPy integer), not a bool, float or string. Bounded
        // above too: OpenMP starts that many threads on a large kernel, and
        // libgomp exits the process when the OS refuses to create one.
        constexpr long long kMaxThreads = 1024;
        const std::string got = py::repr(value);
        if (PyBool_Check(value.ptr()) || !PyIndex_Check(value.ptr()))
            throw py::type_error("set_num_threads: n must be an integer, got " + got);
        int overflow = 0;
        const py::int_ as_int(py::reinterpret_borrow<py::object>(value));
        const long long n = PyLong_AsLongLongAndOverflow(as_int.ptr(), &overflow);
        if ((overflow < 0) || (!overflow && n < 1))
            fail("set_num_threads: n must be >= 1, got " + got);
        if (overflow > 0 || n > kMaxThreads)
            fail("set_num_threads: n must be <= " + std::to_string(kMaxThreads) + ", got " + got);
        fz::set_num_threads(static_cast<int>(n));
    }, py::arg("n"));
    m.def("gemm_kernel_name", &fz::gemm_kernel_name);

    const auto none = py::none();
    m.def("matmul", &matmul, py::arg("a"), py::arg("b"), py::arg("transpose_a") = false,
          py::arg("transpose_b") = false, py::arg("bias") = none,
          py::arg("activation") = Activation::identity, py::arg("alpha") = 0.0f,
          py::arg("out") = none, py::arg("accumulate") = false, py::arg("reference") = false);
    m.def("dense_forward", &dense_forward, py::arg("x"), py::arg("kernel"), py::arg("bias"),
          py::arg("activation"), py::arg("alpha") = 0.0f, py::arg("out") = none,
          py::arg("z_out") = none);
    m.def("dense_backward", &dense_backward, py::arg("x"), py::arg("kernel"), py::arg("z"),
          py::arg("y"), py::arg("dy"), py::arg("activation"), py::arg("alpha"), py::arg("dz_out"),
          py::arg("dw_out") = none, py::arg("db_out") = none, py::arg("dx_out") = none);
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

    // Optimizers take lists: params[t] is updated in place from grads[t].
    m.def("sgd_update", &sgd_update, py::arg("params"), py::arg("grads"), py::arg("momentum_buffers"),
          py::arg("learning_rate"), py::arg("momentum"), py::arg("nesterov"), py::arg("weight_decay"));
    m.def("adam_update", &adam_update, py::arg("params"), py::arg("grads"), py::arg("m"), py::arg("v"),
          py::arg("learning_rate"), py::arg("beta_1"), py::arg("beta_2"), py::arg("epsilon"),
          py::arg("step"), py::arg("weight_decay"));
    m.def("rmsprop_update", &rmsprop_update, py::arg("params"), py::arg("grads"), py::arg("v"),
          py::arg("momentum_buffers"), py::arg("learning_rate"), py::arg("rho"), py::arg("momentum"),
          py::arg("epsilon"), py::arg("weight_decay"));

    m.def("dropout_forward", &dropout_forward, py::arg("x"), py::arg("rate"), py::arg("seed"),
          py::arg("out") = none, py::arg("mask") = none);
    m.def("dropout_backward", &dropout_backward, py::arg("dy"), py::arg("mask"), py::arg("out") = none);
    m.def("random_permutation", &random_permutation, py::arg("n"), py::arg("seed"));

    // Convolution, pooling, batch norm on NHWC images (csrc/conv.h).
    m.def("conv2d_forward", &conv2d_forward, py::arg("x"), py::arg("kernel"), py::arg("bias") = none,
          py::arg("strides") = Pair{1, 1}, py::arg("padding") = "valid",
          py::arg("activation") = Activation::identity, py::arg("alpha") = 0.0f,
          py::arg("out") = none);
    m.def("conv2d_backward", &conv2d_backward, py::arg("dy"), py::arg("kernel"), py::arg("x"),
          py::arg("strides") = Pair{1, 1}, py::arg("padding") = "valid",
          py::arg("use_bias") = true, py::arg("need_dx") = true, py::arg("need_dparams") = true,
          py::arg("dx_out") = none, py::arg("dkernel_out") = none, py::arg("dbias_out") = none,
          py::arg("activation") = Activation::identity, py::arg("y") = none,
          py::arg("alpha") = 0.0f);
    m.def("max_pool2d_forward", &max_pool2d_forward, py::arg("x"), py::arg("pool_size"),
          py::arg("strides"), py::arg("padding") = "valid", py::arg("out") = none,
          py::arg("argmax") = none);
    m.def("max_pool2d_backward", &max_pool2d_backward, py::arg("dy"), py::arg("argmax"),
          py::arg("input_shape"), py::arg("pool_size"), py::arg("strides"),
          py::arg("padding") = "valid", py::arg("out") = none);
    m.def("avg_pool2d_forward", &avg_pool2d_forward, py::arg("x"), py::arg("pool_size"),
          py::arg("strides"), py::arg("padding") = "valid", py::arg("out") = none);
    m.def("avg_pool2d_backward", &avg_pool2d_backward, py::arg("dy"), py::arg("input_shape"),
          py::arg("pool_size"), py::arg("strides"), py::arg("padding") = "valid",
          py::arg("out") = none);
    m.def("global_avg_pool2d_forward", &global_avg_pool2d_forward, py::arg("x"), py::arg("out") = none);
    m.def("global_avg_pool2d_backward", &global_avg_pool2d_backward, py::arg("dy"),
          py::arg("input_shape"), py::arg("out") = none);
    m.def("batch_norm_forward", &batch_norm_forward, py::arg("x"), py::arg("gamma"), py::arg("beta"),
          py::arg("moving_mean"), py::arg("moving_var"), py::arg("training"),
          py::arg("momentum") = 0.99f, py::arg("epsilon") = 1e-3f, py::arg("out") = none,
          py::arg("mean") = none, py::arg("inv_std") = none);
    m.def("batch_norm_backward", &batch_norm_backward, py::arg("x"), py::arg("gamma"),
          py::arg("mean"), py::arg("inv_std"), py::arg("dy"), py::arg("training"),
          py::arg("out") = none, py::arg("dgamma") = none, py::arg("dbeta") = none);
}
