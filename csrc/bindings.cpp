// bindings.cpp — the only file that knows about Python: fromzero._core.
//
// Each kernel is bound by one declaration (a Spec: the Python signature, every
// array's role, dtype and dims, every ranged scalar's Limit) and a short body;
// binding_checks.h turns the declaration into the checks, so no pointer
// reaches a kernel before every argument is known to be right.
//
// How to bind a new kernel (the layer-norm forward, say), in PYBIND11_MODULE:
//   kernel(Spec("layernorm_forward(x, gamma, beta, epsilon=1e-05, out=None)",
//               "y = γ·(x − μ)/√(σ² + ε) + β over the last axis")
//              .in("x", "..., features").in("gamma", "features").in("beta", "features")
//              .out("out", "..., features").in_place("x")  // only if the kernel allows y = x
//              .param("epsilon", kBatchNormEpsilon)         // or a new Limit in kLimits
//              .example("...=4x3 features=5"),             // a valid call, for the generated tests
//          [](Call& c) {
//              const float eps = c.param("epsilon");         // range-checked; c.get<T> for others
//              FloatArray x = c.in("x"), gamma = c.in("gamma"), beta = c.in("beta");
//              auto y = c.out("out");                        // the caller's out= checked, or fresh
//              c.run([&] { fz::layernorm_forward(x.data(), ..., y.mutable_data(), ...); });
//              return y;
//          });
// Dims are symbols shared by the arrays ("_" any size, "..." any number of
// axes); c.let binds one computed here, c.check(cond, parts...) adds a rule
// they cannot express. c.run checks every written array for overlap with every
// other, releases the GIL and runs the kernel. tests/test_aliasing.py then
// attacks the new kernel from its declaration.
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "activations.h"
#include "attention.h"
#include "binding_checks.h"
#include "conv.h"
#include "dense.h"
#include "embedding.h"
#include "gemm.h"
#include "layernorm.h"
#include "losses.h"
#include "optimizers.h"
#include "parallel.h"
#include "random.h"
#include "reductions.h"
#include "vecmath.h"

namespace py = pybind11;
using namespace fz::bind;
using fz::Activation;

namespace {

constexpr double inf = std::numeric_limits<double>::infinity();

// The range of every scalar hyperparameter a kernel takes: the one owner of
// these rules (Python reads them with fromzero.ops.limits()). Keras's ranges.
const Limit kLearningRate{"learning_rate", 0, inf, false, true, "θ ← θ − α·∇J(θ); α = 0 leaves θ as it is"};
const Limit kMomentum{"momentum", 0, 1, false, false, "the share of the last velocity kept (SGD, RMSprop)"};
const Limit kBeta{"beta", 0, 1, false, true, "Adam's decay rates: the bias correction divides by 1 − βᵗ"};
const Limit kRho{"rho", 0, 1, false, false, "RMSprop's decay rate of the running mean of g²"};
const Limit kEpsilon{"epsilon", 0, inf, false, true, "added to an optimizer's denominator √v"};
const Limit kWeightDecay{"weight_decay", 0, inf, false, true, "θ ← θ − α·wd·θ shrinks the weights"};
const Limit kBatchNormMomentum{"batch_norm_momentum", 0, 1, false, false,
                               "moving ← momentum·moving + (1 − momentum)·batch"};
const Limit kBatchNormEpsilon{"batch_norm_epsilon", 0, inf, true, true, "keeps 1/√(σ² + ε) finite when σ² = 0"};
const Limit kLayerNormEpsilon{"layer_norm_epsilon", 0, inf, true, true, "keeps 1/√(σ² + ε) finite when σ² = 0"};
const Limit kAttentionScale{"attention_scale", -inf, inf, true, true, "the scores are scale·q·kᵀ; any finite factor"};
const Limit kDropoutRate{"dropout_rate", 0, 1, false, true, "kept values are scaled by 1/(1 − rate)"};
const Limit kSlope{"negative_slope", 0, inf, false, true, "LeakyReLU's slope: its backward reads the sign of x from y"};
const Limit kGradScale{"grad_scale", -inf, inf, true, true, "any finite factor"};
const Limit kClip{"clip", 0, inf, false, true, "clipnorm, global_clipnorm, clipvalue (Keras's); 0: no clipping"};
const Limit kLoraScale{"lora_scale", -inf, inf, true, true, "lora_alpha / rank: any finite factor"};
const Limit* const kLimits[] = {&kLearningRate, &kMomentum, &kBeta, &kRho, &kEpsilon, &kWeightDecay,
                                &kBatchNormMomentum, &kBatchNormEpsilon, &kLayerNormEpsilon, &kAttentionScale,
                                &kDropoutRate, &kSlope, &kGradScale, &kClip, &kLoraScale};

// A Dense layer's zero-skipping state (fz::DenseZeroSkip) as a Python object
// the layer owns and passes to dense_forward and dense_backward.
struct ZeroSkipState {
    fz::DenseZeroSkip skip;
    std::mutex lock;  // two threads passing one state take turns
    py::object x;     // the forward's x, kept alive: no other array takes its address
};

// The state given as zero_skip=, locked for the kernel's run (unlocked: none given).
ZeroSkipState* zero_skip_state(Call& c) {
    return c.given("zero_skip") ? c.get<ZeroSkipState*>("zero_skip") : nullptr;
}
std::unique_lock<std::mutex> lock(ZeroSkipState* s) {
    return s ? std::unique_lock<std::mutex>(s->lock) : std::unique_lock<std::mutex>();
}

// py::enum_ makes an Activation from any int (Activation(99)); such a value
// would reach a kernel's switch, whose fallback throws inside an OpenMP region
// (std::terminate). `elementwise`: a GEMM epilogue cannot apply softmax.
Activation activation(const Call& c, bool elementwise = false) {
    const auto act = c.get<Activation>("activation");
    switch (act) {
        case Activation::softmax:
            c.check(!elementwise, "the epilogue applies elementwise activations only; use softmax afterwards");
            [[fallthrough]];
        case Activation::identity: case Activation::relu: case Activation::leaky_relu:
        case Activation::sigmoid: case Activation::tanh: case Activation::gelu:
            return act;
    }
    c.fail("activation must be a fromzero.ops.Activation, got the value ", static_cast<int>(act));
}

template <class A>
py::object or_none(const std::optional<A>& a) { return a ? py::object(*a) : py::none(); }

// ---------------------------------------------------------------- losses
//
// Every loss kernel: (pred, target, row_loss, grad, rows, cols, scale) → Σ row_loss.
template <class Target>
using LossKernel = double (*)(const float*, const Target*, float*, float*, int64_t, int64_t, float);

template <class Target>
Spec loss_spec(const char* name) {
    Spec s(cat(name, "(y_pred, y_true, grad_scale=1.0, row_loss=None, grad=None, want_grad=False)"),
           "Σ_rows loss(y_pred, y_true), each row's loss into row_loss; (Σ, grad) when grad= is given or "
           "want_grad, grad = grad_scale·∂loss/∂y_pred");
    s.in("y_pred", "batch, classes");
    if (std::is_same_v<Target, int32_t>) s.in("y_true", "batch").dtype(DType::i32).values_below("classes");
    else s.in("y_true", "batch, classes");
    return s.out("row_loss", "batch").out("grad", "batch, classes").param("grad_scale", kGradScale)
        .example("batch=4 classes=3", "want_grad=True");
}

template <class Target>
py::object run_loss(Call& c, LossKernel<Target> kernel) {
    const float scale = c.param("grad_scale");
    FloatArray pred = c.in("y_pred");
    c.check(pred.shape(1) > 0, "y_pred must have at least one column, got shape ", ShapeOf{pred});
    const Array<Target> target = [&] {
        if constexpr (std::is_same_v<Target, int32_t>) return c.ints<int32_t>("y_true");
        else return c.in("y_true");
    }();
    auto row_loss = c.out("row_loss");
    auto grad = c.out_if("grad", c.given("grad") || c.get<bool>("want_grad"));
    double total = 0;
    c.run([&] {
        total = kernel(pred.data(), target.data(), row_loss.mutable_data(), mut(grad), pred.shape(0), pred.shape(1),
                       scale);
    });
    return grad ? py::object(py::make_tuple(total, *grad)) : py::float_(total);
}

// ---------------------------------------------------------------- gather, optimizers

template <class T>
py::object gather(Call& c, const Array<T>& src) {
    const auto index = c.ints<int64_t>("index");
    auto out = c.out<T>("out");
    const int64_t rows = src.shape(0), row_len = rows ? src.size() / rows : 0;
    c.run([&] { fz::gather_rows(src.data(), row_len, index.data(), index.shape(0), out.mutable_data()); });
    return out;
}

// params[t] (updated in place), grads[t] and the state lists (momentum
// buffers, Adam's m and v), each array shaped like its parameter, all checked
// before one kernel pass updates every parameter (csrc/optimizers.h).
struct Update {
    std::vector<FloatArray> grads;  // the converted gradients, alive while the kernel runs
    std::vector<const float*> g;
    std::vector<float*> p, s0, s1;
    std::vector<int64_t> n;
    std::vector<uint8_t> decays;  // empty: every parameter decays

    fz::ParamList list() const {
        fz::ParamList list{int64_t(p.size()), p.data(), g.data(), s0.empty() ? nullptr : s0.data(),
                           s1.empty() ? nullptr : s1.data(), n.data()};
        list.decays = decays.empty() ? nullptr : decays.data();
        return list;
    }
};

Update collect_update(Call& c, const char* slot0, const char* slot1) {
    c.check_type(py::isinstance<py::sequence>(c["params"]), "params must be a list of arrays, got ",
                 Repr{c["params"]});
    const auto params = c["params"].cast<py::sequence>();
    const auto grads = c.list("grads", params.size()), s0 = c.list(slot0, params.size()),
               s1 = slot1 ? c.list(slot1, params.size()) : std::nullopt;
    c.check_type(grads.has_value(), "grads must be a list of arrays, got None");
    Update u;
    for (int t = 0; t < int(params.size()); ++t) {
        auto p = c.state_at("params", t, params[t], nullptr);
        const Shape shape = shape_of(p);
        u.grads.push_back(c.in_at("grads", t, (*grads)[t], shape, "params"));
        u.p.push_back(p.mutable_data()), u.g.push_back(u.grads.back().data()), u.n.push_back(p.size());
        if (s0) u.s0.push_back(c.state_at(slot0, t, (*s0)[t], &shape).mutable_data());
        if (s1) u.s1.push_back(c.state_at(slot1, t, (*s1)[t], &shape).mutable_data());
    }
    // decays: one bool per parameter, False exempts it from weight_decay (None: all decay)
    if (c.given("decays")) {
        const auto decays = c.get<std::vector<bool>>("decays");
        c.check(decays.size() == params.size(), "decays must hold one bool per parameter: ", params.size(),
                " parameters, ", decays.size(), " values");
        u.decays.assign(decays.begin(), decays.end());
    }
    return u;
}

// Gradient clipping, Keras's three options (0 = off; Keras 3 allows at most
// one). The scales come from the deterministic norm kernel (fz::clip_scales);
// the update pass applies them as it reads each gradient (fz::ParamList), so
// clipping costs one more read of the gradients and no copy.
struct GradientClip {
    float clipnorm, global_clipnorm, clipvalue;
    std::vector<float> scale;  // one factor per array, when clipping by a norm

    // Points `list` at this clipping. Runs without the GIL: the norms read every gradient.
    void attach(fz::ParamList& list) {
        if (clipnorm > 0.0f || global_clipnorm > 0.0f) {
            scale.resize(static_cast<size_t>(list.count));
            fz::clip_scales(list, clipnorm, global_clipnorm, scale.data());
            list.grad_scale = scale.data();
        }
        if (clipvalue > 0.0f) list.grad_clip = clipvalue;
    }
};

GradientClip clipping(const Call& c) {
    const float norm = c.param("clipnorm"), global = c.param("global_clipnorm"), value = c.param("clipvalue");
    c.check((norm > 0) + (global > 0) + (value > 0) <= 1, "only one of clipnorm, global_clipnorm and clipvalue can "
            "be set, got ", norm, ", ", global, ", ", value);
    return {norm, global, value, {}};
}
constexpr const char* kClipArgs = ", decays=None, clipnorm=0.0, global_clipnorm=0.0, clipvalue=0.0)";

// ---------------------------------------------------------------- images (NHWC, csrc/conv.h)

using Pair = std::array<int64_t, 2>;
constexpr int64_t kMaxSize = int64_t(1) << 40;  // per dim from a Python int: window arithmetic stays in int64
const char* kImage = "batch, height, width, channels";
const char* kPooled = "batch, ho, wo, channels";
const char* kImageHint = "add a channel axis for one-channel images, e.g. x[..., None]";
const char* kConvSizes = "batch=2 height=5 width=4 channels=3 in_channels=channels kh=2 kw=3 filters=4 "
                         "ho=height-kh+1 wo=width-kw+1 positions=batch*ho*wo patch=kh*kw*channels";
const char* kPoolSizes = "batch=2 height=5 width=4 channels=3 ho=(height-2)//2+1 wo=(width-2)//2+1";
const char* kPoolBackArgs = "input_shape=(batch, height, width, channels), pool_size=(2, 2), strides=(2, 2)";

Shape text_shape(Pair p) { return {p[0], p[1]}; }

// Images of shape `s` with a non-empty picture, or an error naming `name`.
Shape images(const Call& c, const Shape& s, const char* name) {
    c.check(s[0] >= 0 && s[1] >= 1 && s[2] >= 1 && s[3] >= 1, name,
            " must have height, width and channels >= 1, got shape ", ShapeText{s});
    c.check(*std::max_element(s.begin(), s.end()) <= kMaxSize, name, " has a size above 2**40: ", ShapeText{s});
    c.numel(s, name);
    return s;
}

// A backward pass's input_shape, binding batch, height, width and channels.
Shape input_shape(Call& c) {
    const auto v = c.get<std::vector<int64_t>>("input_shape");
    const Shape s(v.begin(), v.end());
    c.check(s.size() == 4, "input_shape must be (batch, height, width, channels), got ", ShapeText{s});
    const char* dims[] = {"batch", "height", "width", "channels"};
    for (int k = 0; k < 4; ++k) c.let(dims[k], s[k], "input_shape", s);
    return images(c, s, "input_shape");
}

// The geometry of a `window` moving by strides over images of shape `in`
// (a ValueError naming both when it does not fit); binds ho, wo, positions, patch.
fz::Window2d window(Call& c, const Shape& in, Pair size, const char* what) {
    const auto strides = c.get<Pair>("strides");
    const auto padding = c.get<std::string>("padding");
    c.check(size[0] >= 1 && size[1] >= 1, what, " must be >= 1, got ", ShapeText{text_shape(size)});
    c.check(strides[0] >= 1 && strides[1] >= 1, "strides must be >= 1, got ", ShapeText{text_shape(strides)});
    c.check(std::max({size[0], size[1], strides[0], strides[1]}) <= kMaxSize, what, " and strides must be <= 2**40");
    c.check(padding == "valid" || padding == "same", "padding must be 'valid' or 'same', got '", padding, "'");
    c.numel({size[0], size[1], in[3]}, cat("a ", what, " window over channels"));
    const auto g = fz::make_window2d(in[0], in[1], in[2], in[3], size[0], size[1], strides[0], strides[1],
                                     padding == "same" ? fz::Padding::same : fz::Padding::valid);
    c.check(g.ho >= 1 && g.wo >= 1, "a ", what, " of ", ShapeText{text_shape(size)}, " does not fit in images of ",
            in[1], "x", in[2], " with padding='valid' (the output would be ", g.ho, "x", g.wo,
            "); use padding='same' or a smaller window");
    c.let("ho", g.ho), c.let("wo", g.wo), c.let("positions", g.positions()), c.let("patch", g.patch());
    return g;
}

// ---------------------------------------------------------------- attention (csrc/attention.h)
//
// q (batch, q_len, heads, key_dim), k (batch, kv_len, heads, key_dim), v and
// out (batch, ·, heads, value_dim), all contiguous; probs (batch, heads, q_len,
// kv_len). The arguments both passes share: the scale (default 1/√key_dim),
// the mask (a boolean (batch or 1, q_len or 1, kv_len) array, broadcast over
// heads; nonzero = may attend, Keras's convention), the causal flag and offset
// and the dropout.
const char* kAttentionSizes = "batch=2 q_len=3 kv_len=4 heads=2 key_dim=3 value_dim=2";
const char* kAttentionMaskSizes = "batch=2 q_len=3 kv_len=4 heads=2 key_dim=3 value_dim=2 mask=2x1x4";

struct AttentionArgs {
    fz::AttentionShape shape;
    float scale;
    fz::AttentionMask mask;
    fz::AttentionDropout dropout;
    std::optional<Array<uint8_t>> keep;  // alive while the kernel runs
};

AttentionArgs attention_args(Call& c, const FloatArray& q, const FloatArray& v) {
    AttentionArgs a;
    a.shape = {c.dim("batch"), c.dim("heads"), c.dim("q_len"), c.dim("kv_len"), c.dim("key_dim"),
               c.dim("value_dim")};
    c.check(a.shape.key_dim >= 1, "q and k must have key_dim >= 1, got q of shape ", ShapeOf{q});
    a.scale = c.given("scale") ? c.param("scale") : 1.0f / std::sqrt(static_cast<float>(a.shape.key_dim));
    a.mask.causal = c.get<bool>("causal");
    const auto offset = c.get<int64_t>("causal_offset");
    c.check(offset >= -a.shape.q_len && offset <= a.shape.kv_len, "causal_offset must be in [-q_len, kv_len] = [",
            -a.shape.q_len, ", ", a.shape.kv_len, "], got ", offset);
    a.mask.causal_offset = offset;
    if (c.given("mask")) {
        py::array raw = c.as_array(c["mask"], Label{"mask"});
        if (raw.dtype().kind() == 'b') raw = raw.attr("view")(py::dtype::of<uint8_t>());  // False/True as 0/1
        a.keep = c.ints<uint8_t>("mask", c.integers(raw, Label{"mask"}));
        const int64_t mb = a.keep->shape(0), mq = a.keep->shape(1);
        c.check((mb == a.shape.batch || mb == 1) && (mq == a.shape.q_len || mq == 1), "mask must have shape (",
                a.shape.batch, " or 1, ", a.shape.q_len, " or 1, ", a.shape.kv_len, ") for q of shape ", ShapeOf{q},
                " and v of shape ", ShapeOf{v}, ", got ", ShapeOf{*a.keep});
        a.mask.keep = a.keep->data();
        a.mask.keep_batch = mb == 1 ? 0 : mq * a.shape.kv_len;
        a.mask.keep_query = mq == 1 ? 0 : a.shape.kv_len;
    }
    a.dropout = {c.param("dropout_rate"), c.get<uint64_t>("seed")};
    return a;
}

fz::HeadArray<const float> heads(const FloatArray& x) {
    return fz::contiguous_heads(x.data(), x.shape(1), x.shape(2), x.shape(3));
}
fz::HeadArray<float> heads(py::array_t<float>& x) {
    return fz::contiguous_heads(x.mutable_data(), x.shape(1), x.shape(2), x.shape(3));
}

constexpr const char* kAttentionArgs = "mask=None, causal=False, causal_offset=0, scale=None, dropout_rate=0.0, seed=0";

Spec attention_spec(Spec s) {
    return s.in("q", "batch, q_len, heads, key_dim").in("k", "batch, kv_len, heads, key_dim")
        .in("v", "batch, kv_len, heads, value_dim").in("mask", "_, _, kv_len").dtype(DType::u8)
        .param("scale", kAttentionScale).param("dropout_rate", kDropoutRate);
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
            throw py::value_error("set_num_threads: n must be >= 1, got " + got);
        if (overflow > 0 || n > kMaxThreads)
            throw py::value_error("set_num_threads: n must be <= " + std::to_string(kMaxThreads) + ", got " + got);
        fz::set_num_threads(static_cast<int>(n));
    }, py::arg("n"));
    m.def("gemm_kernel_name", &fz::gemm_kernel_name);
    // Denormal flushing, the GEMM's plan for this CPU, late workers (fz.info()).
    m.def("get_flush_denormal", &fz::get_flush_denormal);
    m.def("set_flush_denormal", [](const py::handle& on) {
        if (!PyBool_Check(on.ptr()))
            throw py::type_error("set_flush_denormal: on must be True or False, got " + std::string(py::repr(on)));
        fz::set_flush_denormal(on.ptr() == Py_True);
    }, py::arg("on"));
    // Skipping a Dense input's zeros (csrc/dense.h): the state a layer keeps,
    // and the threshold, private (both paths give the same bits; the tests
    // force each path).
    py::class_<ZeroSkipState>(m, "DenseZeroSkip",
                              "What a Dense layer keeps between forward and backward to skip its "
                              "input's zeros (csrc/dense.h)")
        .def(py::init<>())
        .def_property_readonly("skipped", [](const ZeroSkipState& s) { return s.skip.x != nullptr; },
                               "Whether the last forward skipped its input's zeros");
    m.def("_zero_skip_threshold", &fz::zero_skip_threshold);
    m.def("_set_zero_skip_threshold", [](float fraction) {
        if (!(fraction >= 0.0f)) throw py::value_error("_set_zero_skip_threshold: fraction must be >= 0");
        fz::set_zero_skip_threshold(fraction);
    }, py::arg("fraction"));
    m.def("gemm_info", [] {
        const fz::GemmInfo g = fz::gemm_info();
        return py::dict(py::arg("kernel") = g.kernel, py::arg("mr") = g.mr, py::arg("nr") = g.nr,
                        py::arg("mc") = g.mc, py::arg("kc") = g.kc, py::arg("nc") = g.nc,
                        py::arg("l1d") = g.caches.l1d, py::arg("l2") = g.caches.l2, py::arg("l3") = g.caches.l3,
                        py::arg("caches_from") = g.caches.source);
    });
    m.def("late_regions", &fz::late_regions);
    m.def("kernel_specs", [] {
        py::dict d;
        for (const Spec& s : registry()) d[py::str(s.name)] = describe(s);
        return d;
    }, "Every kernel's declaration: signature, arrays (role, dims, dtype, in-place rules), ranged parameters.");
    m.def("limits", [] {
        py::dict d;
        for (const Limit* l : kLimits) d[l->name] = describe(*l);
        return d;
    }, "The range of every scalar hyperparameter, by name (the one owner of these rules).");

    py::options options;
    options.disable_function_signatures();  // each kernel's docstring starts with its declared signature
    py::dict scope;                          // what the signatures' defaults are evaluated in
    scope["Activation"] = m.attr("Activation");
    const auto kernel = [&](Spec spec, std::function<py::object(Call&)> body) {
        def(m, scope, std::move(spec), std::move(body));
    };

    // ------------------------------------------------------------ dense layers
    kernel(Spec("matmul(a, b, transpose_a=False, transpose_b=False, bias=None, activation=Activation.identity, "
                "alpha=0.0, out=None, accumulate=False, reference=False)",
                "out = act(op(a)·op(b) + bias [+ out when accumulate]), op(a) = aᵀ when transpose_a")
               .in("a", "_, _").in("b", "_, _").in("bias", "n").out("out", "m, n").param("alpha", kSlope)
               .example("a=5x3 b=3x4 m=a[0] n=b[1]", "activation=Activation.relu")
               .example("a=3x5 b=4x3 m=a[1] n=b[0]", "transpose_a=True, transpose_b=True, bias=None"),
           [](Call& c) {
               const Activation act = activation(c, true);
               const float alpha = c.param("alpha");
               const bool ta = c.get<bool>("transpose_a"), tb = c.get<bool>("transpose_b");
               const bool accumulate = c.get<bool>("accumulate");
               FloatArray a = c.in("a"), b = c.in("b");
               const int64_t M = a.shape(ta), K = a.shape(!ta), Kb = b.shape(tb), N = b.shape(!tb);
               c.check(K == Kb, "inner dimensions differ: op(a) is (", M, ", ", K, ") and op(b) is (", Kb, ", ", N,
                       ") (a has shape ", ShapeOf{a}, ", b has shape ", ShapeOf{b},
                       ", transpose_a=", ta ? "True" : "False", ", transpose_b=", tb ? "True" : "False", ")");
               c.check(!accumulate || c.given("out"), "accumulate=True needs out=");
               c.let("m", M), c.let("n", N);
               const auto bias = c.maybe_in("bias");
               auto y = c.out("out");
               fz::GemmEpilogue ep;
               ep.bias = ptr(bias), ep.activation = act, ep.alpha = alpha;
               const auto gemm = c.get<bool>("reference") ? fz::reference::gemm : fz::gemm;
               c.run([&] {
                   gemm(ta, tb, M, N, K, 1.0f, a.data(), a.shape(1), b.data(), b.shape(1), accumulate ? 1.0f : 0.0f,
                        y.mutable_data(), N, ep);
               });
               return y;
           });
    kernel(Spec("dense_forward(x, kernel, bias, activation, alpha=0.0, out=None, z_out=None, zero_skip=None)",
                "y = f(x·W + b) in one call (csrc/dense.h); z_out receives x·W + b, which GELU's backward needs "
                "(without it, for inference, GELU is applied in the GEMM's epilogue); zero_skip (a DenseZeroSkip) "
                "lets it skip x's zeros, same bits, and remembers them for dense_backward")
               .in("x", "batch, in").in("kernel", "in, units").in("bias", "units").out("out", "batch, units")
               .out("z_out", "batch, units").param("alpha", kSlope)
               .example("batch=3 in=4 units=5", "activation=Activation.gelu")
               .example("batch=3 in=4 units=5", "activation=Activation.softmax, z_out=None"),
           [](Call& c) {
               const Activation act = activation(c);
               const float alpha = c.param("alpha");
               FloatArray x = c.in("x"), w = c.in("kernel");
               const auto b = c.maybe_in("bias");
               auto y = c.out("out");
               auto z = c.out_if("z_out", fz::activation_backward_needs_input(act) && c.given("z_out"));
               ZeroSkipState* skip = zero_skip_state(c);
               if (skip) skip->x = x;
               c.run([&] {
                   const auto locked = lock(skip);
                   fz::dense_forward(x.data(), w.data(), ptr(b), y.mutable_data(), mut(z), x.shape(0), x.shape(1),
                                     w.shape(1), act, alpha, skip ? &skip->skip : nullptr);
               });
               return y;
           });
    kernel(Spec("dense_backward(x, kernel, z, y, dy, activation, alpha, dz_out, dw_out=None, db_out=None, "
                "dx_out=None, zero_skip=None)",
                "dz = dy ⊙ f'(z), then db = Σ dz, dW = xᵀ·dz and dx = dz·Wᵀ into the outputs given; returns dx "
                "(or None); zero_skip: the DenseZeroSkip dense_forward was given with this same, unchanged x")
               .in("x", "batch, in").in("kernel", "in, units").in("z", "batch, units").in("y", "batch, units")
               .in("dy", "batch, units").out("dz_out", "batch, units").in_place("dy").out("dw_out", "in, units")
               .out("db_out", "units").out("dx_out", "batch, in").param("alpha", kSlope)
               .example("batch=3 in=4 units=5", "activation=Activation.gelu, alpha=0.0")
               .example("batch=3 in=4 units=5", "activation=Activation.softmax, alpha=0.0, z=None"),
           [](Call& c) {
               const Activation act = activation(c);
               const float alpha = c.param("alpha");
               FloatArray x = c.in("x"), w = c.in("kernel"), y = c.in("y"), dy = c.in("dy");
               const bool needs_z = fz::activation_backward_needs_input(act);
               c.check(!needs_z || c.given("z"), "this activation needs z");
               const auto z = needs_z ? std::optional(c.in("z")) : std::nullopt;
               auto dz = c.out("dz_out");
               auto dw = c.out_if("dw_out", c.given("dw_out")), db = c.out_if("db_out", c.given("db_out")),
                    dx = c.out_if("dx_out", c.given("dx_out"));
               ZeroSkipState* skip = zero_skip_state(c);
               c.run([&] {
                   const auto locked = lock(skip);
                   fz::dense_backward(x.data(), w.data(), ptr(z), y.data(), dy.data(), dz.mutable_data(), mut(dw),
                                      mut(db), mut(dx), x.shape(0), x.shape(1), w.shape(1), act, alpha,
                                      skip ? &skip->skip : nullptr);
               });
               return or_none(dx);
           });

    kernel(Spec("dense_lora_forward(x, kernel, bias, lora_a, lora_b, scale, activation, alpha=0.0, h_out=None, "
                "out=None, z_out=None)",
                "(y, h): y = f(x·W + b + h·B), h = scale·x·A, the kernel and bias frozen (csrc/dense.h); h_out is "
                "what dense_lora_backward needs, z_out receives the pre-activation, which GELU's backward needs "
                "(without it, for inference, GELU is applied in the epilogue)")
               .in("x", "batch, in").in("kernel", "in, units").in("bias", "units").in("lora_a", "in, rank")
               .in("lora_b", "rank, units").out("h_out", "batch, rank").out("out", "batch, units")
               .out("z_out", "batch, units").param("scale", kLoraScale).param("alpha", kSlope)
               .example("batch=3 in=4 units=5 rank=2", "scale=0.5, activation=Activation.gelu")
               .example("batch=3 in=4 units=5 rank=2", "scale=2.0, activation=Activation.softmax, z_out=None"),
           [](Call& c) {
               const Activation act = activation(c);
               const float alpha = c.param("alpha"), scale = c.param("scale");
               FloatArray x = c.in("x"), w = c.in("kernel"), a = c.in("lora_a"), b = c.in("lora_b");
               const auto bias = c.maybe_in("bias");
               c.check(a.shape(1) >= 1, "lora_a must have at least one column (rank >= 1), got shape ", ShapeOf{a});
               auto h = c.out("h_out"), y = c.out("out");
               auto z = c.out_if("z_out", fz::activation_backward_needs_input(act) && c.given("z_out"));
               c.run([&] {
                   fz::dense_lora_forward(x.data(), w.data(), ptr(bias), a.data(), b.data(), scale, h.mutable_data(),
                                          y.mutable_data(), mut(z), x.shape(0), x.shape(1), w.shape(1), a.shape(1),
                                          act, alpha);
               });
               return py::make_tuple(y, h);
           });
    kernel(Spec("dense_lora_backward(x, kernel, lora_a, lora_b, scale, h, z, y, dy, activation, alpha, dz_out, "
                "dh_out, da_out=None, db_out=None, dx_out=None, accumulate=False)",
                "dz = dy ⊙ f'(z), dB = hᵀ·dz, dh = scale·dz·Bᵀ, dA = xᵀ·dh, dx = dz·Wᵀ + dh·Aᵀ (added to dx_out "
                "when accumulate) into the outputs given (no gradient for the frozen kernel and bias); returns dx "
                "(or None)")
               .in("x", "batch, in").in("kernel", "in, units").in("lora_a", "in, rank").in("lora_b", "rank, units")
               .in("h", "batch, rank").in("z", "batch, units").in("y", "batch, units").in("dy", "batch, units")
               .out("dz_out", "batch, units").in_place("dy").out("dh_out", "batch, rank").out("da_out", "in, rank")
               .out("db_out", "rank, units").out("dx_out", "batch, in").param("scale", kLoraScale)
               .param("alpha", kSlope)
               .example("batch=3 in=4 units=5 rank=2", "scale=0.5, activation=Activation.gelu, alpha=0.0")
               .example("batch=3 in=4 units=5 rank=2", "scale=2.0, activation=Activation.softmax, alpha=0.0, z=None"),
           [](Call& c) {
               const Activation act = activation(c);
               const float alpha = c.param("alpha"), scale = c.param("scale");
               FloatArray x = c.in("x"), w = c.in("kernel"), a = c.in("lora_a"), b = c.in("lora_b"), h = c.in("h"),
                          y = c.in("y"), dy = c.in("dy");
               c.check(a.shape(1) >= 1, "lora_a must have at least one column (rank >= 1), got shape ", ShapeOf{a});
               const bool needs_z = fz::activation_backward_needs_input(act);
               c.check(!needs_z || c.given("z"), "this activation needs z");
               const auto z = needs_z ? std::optional(c.in("z")) : std::nullopt;
               const bool accumulate = c.get<bool>("accumulate");
               c.check(!accumulate || c.given("dx_out"), "accumulate=True needs dx_out=");
               auto dz = c.out("dz_out"), dh = c.out("dh_out");
               auto da = c.out_if("da_out", c.given("da_out")), db = c.out_if("db_out", c.given("db_out")),
                    dx = c.out_if("dx_out", c.given("dx_out"));
               c.run([&] {
                   fz::dense_lora_backward(x.data(), w.data(), a.data(), b.data(), scale, h.data(), ptr(z), y.data(),
                                           dy.data(), dz.mutable_data(), dh.mutable_data(), mut(da), mut(db), mut(dx),
                                           x.shape(0), x.shape(1), w.shape(1), a.shape(1), act, alpha, accumulate);
               });
               return or_none(dx);
           });

    // ------------------------------------------------------------ activations
    kernel(Spec("activation_forward(activation, x, alpha=0.0, out=None)",
                "y = f(x) elementwise (softmax: over each row of a 2-D x)")
               .in("x", "...").out("out", "...").in_place("x").param("alpha", kSlope)
               .example("...=3x4", "activation=Activation.gelu")
               .example("...=3x4", "activation=Activation.softmax"),
           [](Call& c) {
               const Activation act = activation(c);
               const float alpha = c.param("alpha");
               FloatArray x = c.in("x");
               const bool softmax = act == Activation::softmax;
               c.check(!softmax || x.ndim() == 2, "softmax needs a 2-D x (batch, classes), got shape ",
                       ShapeOf{x});
               auto y = c.out("out");
               c.run([&] {
                   if (softmax) fz::softmax_forward(x.data(), y.mutable_data(), x.shape(0), x.shape(1));
                   else fz::activation_forward(act, x.data(), y.mutable_data(), x.size(), alpha);
               });
               return y;
           });
    kernel(Spec("activation_backward(activation, x, y, dy, alpha=0.0, out=None)",
                "dx = dy ⊙ f'(x), f' written from y (GELU also reads x; softmax: y ⊙ (dy − Σ dy·y) per row)")
               .in("x", "...").in("y", "...").in("dy", "...").out("out", "...").in_place("x y dy")
               .param("alpha", kSlope)
               .example("...=3x4", "activation=Activation.gelu")
               .example("...=3x4", "activation=Activation.softmax, x=None")
               .example("...=3x4", "activation=Activation.leaky_relu, alpha=0.2, x=None"),
           [](Call& c) {
               const Activation act = activation(c);
               const float alpha = c.param("alpha");
               FloatArray y = c.in("y"), dy = c.in("dy");
               const bool softmax = act == Activation::softmax, needs_x = fz::activation_backward_needs_input(act);
               c.check(!softmax || y.ndim() == 2, "softmax needs a 2-D y (batch, classes), got shape ",
                       ShapeOf{y});
               c.check(!needs_x || c.given("x"), "this activation needs x");
               const auto x = needs_x ? std::optional(c.in("x")) : std::nullopt;
               auto dx = c.out("out");
               c.run([&] {
                   if (softmax) fz::softmax_backward(y.data(), dy.data(), dx.mutable_data(), y.shape(0), y.shape(1));
                   else fz::activation_backward(act, ptr(x), y.data(), dy.data(), dx.mutable_data(), y.size(), alpha);
               });
               return dx;
           });

    // ------------------------------------------------------------ vector math, log-softmax
    // fromzero's own exp, log, log1p and erf (csrc/vecmath.h, within the ulp
    // bounds stated there) on float32 arrays of any shape.
    m.def("vecmath_isa", &fz::vec::isa);
    using VectorMathFn = void (*)(const float*, float*, int64_t);
    const std::pair<const char*, VectorMathFn> vector_math[] = {
        {"exp", fz::vec::exp}, {"log", fz::vec::log}, {"log1p", fz::vec::log1p}, {"erf", fz::vec::erf}};
    for (const auto& [name, f] : vector_math) {
        kernel(Spec(cat(name, "(x, out=None)"), cat("y = ", name, "(x) elementwise, fromzero's vector math"))
                   .in("x", "...").out("out", "...").in_place("x").example("...=3x4"),
               [f = f](Call& c) {
                   FloatArray x = c.in("x");
                   auto y = c.out("out");
                   c.run([&] { fz::parallel_map(f, x.data(), y.mutable_data(), x.size()); });
                   return y;
               });
    }
    kernel(Spec("log_softmax_forward(x, out=None)", "y = x − max − log Σ exp(x − max) over each row")
               .in("x", "batch, classes").out("out", "batch, classes").in_place("x").example("batch=3 classes=4"),
           [](Call& c) {
               FloatArray x = c.in("x");
               auto y = c.out("out");
               c.run([&] { fz::log_softmax_forward(x.data(), y.mutable_data(), x.shape(0), x.shape(1)); });
               return y;
           });
    kernel(Spec("log_softmax_backward(y, dy, out=None)", "dx = dy − exp(y)·Σ dy over each row, y = log_softmax(x)")
               .in("y", "batch, classes").in("dy", "batch, classes").out("out", "batch, classes").in_place("dy")
               .example("batch=3 classes=4"),
           [](Call& c) {
               FloatArray y = c.in("y"), dy = c.in("dy");
               auto dx = c.out("out");
               c.run([&] {
                   fz::log_softmax_backward(y.data(), dy.data(), dx.mutable_data(), y.shape(0), y.shape(1));
               });
               return dx;
           });

    // ------------------------------------------------------------ losses
    const auto sparse = [&](const char* name, LossKernel<int32_t> k) {
        kernel(loss_spec<int32_t>(name), [k](Call& c) { return run_loss<int32_t>(c, k); });
    };
    const auto dense = [&](const char* name, LossKernel<float> k) {
        kernel(loss_spec<float>(name), [k](Call& c) { return run_loss<float>(c, k); });
    };
    sparse("sparse_categorical_crossentropy", fz::sparse_categorical_crossentropy);
    sparse("sparse_categorical_crossentropy_from_logits", fz::sparse_categorical_crossentropy_from_logits);
    dense("categorical_crossentropy", fz::categorical_crossentropy);
    dense("categorical_crossentropy_from_logits", fz::categorical_crossentropy_from_logits);
    dense("mean_squared_error", fz::mean_squared_error);
    dense("binary_crossentropy", fz::binary_crossentropy);
    dense("binary_crossentropy_from_logits", fz::binary_crossentropy_from_logits);
    kernel(Spec("softmax_crossentropy_backward(probs, y_true, sparse, grad_scale=1.0, out=None)",
                "dlogits = grad_scale·(Σt·probs − t), softmax + cross-entropy's gradient; y_true: (batch,) "
                "labels when sparse, else (batch, classes)")
               .in("probs", "batch, classes").in("y_true", "batch, ...").values_below("classes")
               .out("out", "batch, classes").in_place("probs y_true").param("grad_scale", kGradScale)
               .example("batch=4 classes=3 ...=3", "sparse=False"),
           [](Call& c) {
               const float scale = c.param("grad_scale");
               FloatArray probs = c.in("probs");
               const int64_t rows = probs.shape(0), cols = probs.shape(1);
               if (c.get<bool>("sparse")) {
                   const auto labels = c.ints<int32_t>("y_true");
                   c.check(labels.ndim() == 1, "y_true must be (batch,) labels with sparse=True, got shape ",
                           ShapeOf{labels});
                   auto out = c.out("out");
                   c.run([&] { fz::softmax_crossentropy_backward(probs.data(), labels.data(), out.mutable_data(),
                                                                 rows, cols, scale); });
                   return out;
               }
               FloatArray target = c.in("y_true");
               c.check(shape_of(target) == shape_of(probs), "y_true has shape ", ShapeOf{target},
                       " but probs has shape ", ShapeOf{probs});
               auto out = c.out("out");
               c.run([&] { fz::softmax_crossentropy_backward_dense(probs.data(), target.data(), out.mutable_data(),
                                                                   rows, cols, scale); });
               return out;
           });

    // ------------------------------------------------------------ reductions, gather
    kernel(Spec("bias_grad(dy, out=None)", "db = Σ_rows dy, a bias's gradient")
               .in("dy", "rows, cols").out("out", "cols").example("rows=4 cols=3"),
           [](Call& c) {
               FloatArray dy = c.in("dy");
               auto db = c.out("out");
               c.run([&] { fz::bias_grad(dy.data(), db.mutable_data(), dy.shape(0), dy.shape(1)); });
               return db;
           });
    kernel(Spec("argmax(x)", "each row's first largest column (int32)")
               .in("x", "rows, cols").result("indices", "rows").dtype(DType::i32).example("rows=4 cols=3"),
           [](Call& c) {
               FloatArray x = c.in("x");
               c.check(x.shape(1) > 0, "x has no columns");
               auto indices = c.result<int32_t>("indices");
               c.run([&] { fz::argmax_rows(x.data(), indices.mutable_data(), x.shape(0), x.shape(1)); });
               return indices;
           });
    kernel(Spec("count_correct(scores, labels)", "Σ_rows [argmax(scores row) == label]")
               .in("scores", "rows, classes").in("labels", "rows").dtype(DType::i32).values_below("classes")
               .example("rows=4 classes=3"),
           [](Call& c) {
               FloatArray scores = c.in("scores");
               const auto labels = c.ints<int32_t>("labels");
               int64_t correct = 0;
               c.run([&] { correct = fz::count_correct(scores.data(), labels.data(), scores.shape(0), scores.shape(1)); });
               return py::int_(correct);
           });
    kernel(Spec("gather_rows(src, index, out=None)",
                "out[i] = src[index[i]] along the first axis (the minibatch gather); integers are gathered as int32")
               .in("src", "rows, ...").in("index", "n").dtype(DType::i64).values_below("rows").out("out", "n, ...")
               .example("rows=5 n=3 ...=2"),
           [](Call& c) {
               const py::array src = c.as_array(c["src"], Label{"src"});
               const char kind = src.dtype().kind();
               return kind == 'i' || kind == 'u' ? gather(c, c.ints<int32_t>("src", src)) : gather(c, c.in("src"));
           });

    // ------------------------------------------------------------ optimizers
    kernel(Spec(cat("sgd_update(params, grads, momentum_buffers, learning_rate, momentum, nesterov, weight_decay",
                    kClipArgs),
                "θ ← θ − α·g; with momentum v ← μ·v − α·g, θ ← θ + v (Nesterov: θ ← θ + μ·v − α·g)")
               .state("params", "...").list().in("grads", "...").list().state("momentum_buffers", "...").list()
               .param("learning_rate", kLearningRate).param("momentum", kMomentum).param("weight_decay", kWeightDecay)
               .param("clipnorm", kClip).param("global_clipnorm", kClip).param("clipvalue", kClip)
               .example("...=3x2", "learning_rate=0.1, momentum=0.9, nesterov=True, weight_decay=0.01")
               .example("...=3x2", "learning_rate=0.1, momentum=0.0, nesterov=False, weight_decay=0.0, clipnorm=0.5"),
           [](Call& c) {
               const float lr = c.param("learning_rate"), momentum = c.param("momentum"),
                           decay = c.param("weight_decay");
               c.check(momentum == 0 || c.given("momentum_buffers"), "momentum > 0 needs momentum buffers");
               GradientClip clip = clipping(c);
               const Update u = collect_update(c, "momentum_buffers", nullptr);
               const bool nesterov = c.get<bool>("nesterov");
               c.run([&] {
                   fz::ParamList list = u.list();
                   clip.attach(list);
                   fz::sgd_update_many(list, lr, momentum, nesterov, decay);
               });
               return py::none();
           });
    kernel(Spec(cat("adam_update(params, grads, m, v, learning_rate, beta_1, beta_2, epsilon, step, weight_decay",
                    kClipArgs),
                "m ← m + (1 − β1)(g − m), v ← v + (1 − β2)(g² − v), θ ← θ − α·√(1 − β2ᵗ)/(1 − β1ᵗ)·m/(√v + ε)")
               .state("params", "...").list().in("grads", "...").list().state("m", "...").list()
               .state("v", "...").list().param("learning_rate", kLearningRate).param("beta_1", kBeta)
               .param("beta_2", kBeta).param("epsilon", kEpsilon).param("weight_decay", kWeightDecay)
               .param("clipnorm", kClip).param("global_clipnorm", kClip).param("clipvalue", kClip)
               .example("...=3x2", "learning_rate=0.01, beta_1=0.9, beta_2=0.999, epsilon=1e-7, step=3, "
                                   "weight_decay=0.004")
               .example("...=3x2", "learning_rate=0.01, beta_1=0.9, beta_2=0.999, epsilon=1e-7, step=3, "
                                   "weight_decay=0.0, global_clipnorm=1.0"),
           [](Call& c) {
               const float lr = c.param("learning_rate"), beta1 = c.param("beta_1"), beta2 = c.param("beta_2"),
                           epsilon = c.param("epsilon"), decay = c.param("weight_decay");
               const auto step = c.get<int64_t>("step");
               c.check(step >= 1, "step must be >= 1, got ", step);
               c.check_type(c.given("m") && c.given("v"), "m and v must be lists of arrays");
               GradientClip clip = clipping(c);
               const Update u = collect_update(c, "m", "v");
               c.run([&] {
                   fz::ParamList list = u.list();
                   clip.attach(list);
                   fz::adam_update_many(list, lr, beta1, beta2, epsilon, step, decay);
               });
               return py::none();
           });
    kernel(Spec(cat("rmsprop_update(params, grads, v, momentum_buffers, learning_rate, rho, momentum, epsilon, "
                    "weight_decay", kClipArgs),
                "v ← ρ·v + (1 − ρ)·g², θ ← θ − α·g/√(v + ε) (with momentum: a velocity of those steps)")
               .state("params", "...").list().in("grads", "...").list().state("v", "...").list()
               .state("momentum_buffers", "...").list().param("learning_rate", kLearningRate).param("rho", kRho)
               .param("momentum", kMomentum).param("epsilon", kEpsilon).param("weight_decay", kWeightDecay)
               .param("clipnorm", kClip).param("global_clipnorm", kClip).param("clipvalue", kClip)
               .example("...=3x2", "learning_rate=0.01, rho=0.9, momentum=0.5, epsilon=1e-7, weight_decay=0.0")
               .example("...=3x2", "learning_rate=0.01, rho=0.9, momentum=0.0, epsilon=1e-7, weight_decay=0.0, "
                                   "clipvalue=0.1"),
           [](Call& c) {
               const float lr = c.param("learning_rate"), rho = c.param("rho"), momentum = c.param("momentum"),
                           epsilon = c.param("epsilon"), decay = c.param("weight_decay");
               c.check(momentum == 0 || c.given("momentum_buffers"), "momentum > 0 needs momentum buffers");
               c.check_type(c.given("v"), "v must be a list of arrays");
               GradientClip clip = clipping(c);
               const Update u = collect_update(c, "v", "momentum_buffers");
               c.run([&] {
                   fz::ParamList list = u.list();
                   clip.attach(list);
                   fz::rmsprop_update_many(list, lr, rho, momentum, epsilon, decay);
               });
               return py::none();
           });
    kernel(Spec("grad_sum_of_squares(grads)",
                "Σ_i grads[t][i]² for each array t (float64), summed in a fixed order: the squared norms behind "
                "clipnorm and global_clipnorm")
               .in("grads", "...").list().result("sums", "arrays").example("...=3x2"),
           [](Call& c) {
               c.check_type(py::isinstance<py::sequence>(c["grads"]), "grads must be a list of arrays, got ",
                            Repr{c["grads"]});
               const auto grads = *c.list("grads", py::len(c["grads"]));
               std::vector<FloatArray> arrays;
               std::vector<const float*> data;
               std::vector<int64_t> sizes;
               for (int t = 0; t < int(grads.size()); ++t) {
                   const py::handle g = grads[t];
                   arrays.push_back(c.in_at("grads", t, g, shape_of(c.as_array(g, Label{"grads", t})), "grads"));
                   data.push_back(arrays.back().data()), sizes.push_back(arrays.back().size());
               }
               c.let("arrays", int64_t(arrays.size()));
               auto sums = c.result<double>("sums");
               const fz::ParamList list{int64_t(arrays.size()), nullptr, data.data(), nullptr, nullptr, sizes.data()};
               c.run([&] { fz::grad_sum_of_squares(list, sums.mutable_data()); });
               return sums;
           });

    // ------------------------------------------------------------ randomness
    kernel(Spec("dropout_forward(x, rate, seed, out=None, mask=None)",
                "(y, mask): mask = [u ≥ rate]/(1 − rate), u uniform from (seed, index); y = x ⊙ mask")
               .in("x", "...").out("out", "...").in_place("x").out("mask", "...").param("rate", kDropoutRate)
               .example("...=4x5", "rate=0.5, seed=7"),
           [](Call& c) {
               const float rate = c.param("rate");
               const auto seed = c.get<uint64_t>("seed");
               FloatArray x = c.in("x");
               auto y = c.out("out"), mask = c.out("mask");
               c.run([&] { fz::dropout_forward(x.data(), y.mutable_data(), mask.mutable_data(), x.size(), rate, seed); });
               return py::make_tuple(y, mask);
           });
    kernel(Spec("dropout_backward(dy, mask, out=None)", "dx = dy ⊙ mask")
               .in("dy", "...").in("mask", "...").out("out", "...").in_place("dy mask").example("...=4x5"),
           [](Call& c) {
               FloatArray dy = c.in("dy"), mask = c.in("mask");
               auto dx = c.out("out");
               c.run([&] { fz::dropout_backward(dy.data(), mask.data(), dx.mutable_data(), dy.size()); });
               return dx;
           });
    kernel(Spec("random_permutation(n, seed)", "a permutation of 0..n-1 (int64) fixed by seed")
               .result("permutation", "n").example("", "n=6, seed=3"),
           [](Call& c) {
               const auto n = c.get<int64_t>("n");
               const auto seed = c.get<uint64_t>("seed");
               c.check(n >= 0, "n must be >= 0, got ", n);
               c.let("n", n);
               auto out = c.result<int64_t>("permutation");
               c.run([&] { fz::random_permutation(out.mutable_data(), n, seed); });
               return out;
           });

    // ------------------------------------------------------------ transformer layers
    kernel(Spec("embedding_forward(ids, embeddings, out=None)",
                "y[..., :] = embeddings[ids[...], :], a row gather; every id checked to lie in [0, vocab)")
               .in("embeddings", "vocab, dim").in("ids", "...").dtype(DType::i32).values_below("vocab")
               .out("out", "..., dim").example("vocab=5 dim=3 ...=2x4"),
           [](Call& c) {
               FloatArray w = c.in("embeddings");
               const auto ids = c.ints<int32_t>("ids");
               auto y = c.out("out");
               c.run([&] { fz::embedding_forward(ids.data(), w.data(), y.mutable_data(), ids.size(), w.shape(1)); });
               return y;
           });
    kernel(Spec("embedding_backward(ids, dy, input_dim, out=None)",
                "dW (input_dim, dim): dW[v] = Σ of the rows of dy whose id is v, in a fixed order (no atomics)")
               .in("ids", "...").dtype(DType::i32).values_below("vocab").in("dy", "..., dim").out("out", "vocab, dim")
               .example("vocab=5 dim=3 ...=2x4", "input_dim=vocab"),
           [](Call& c) {
               const auto vocab = c.get<int64_t>("input_dim");
               c.check(vocab >= 0, "input_dim must be >= 0, got ", vocab);
               c.let("vocab", vocab, "input_dim");
               const auto ids = c.ints<int32_t>("ids");
               FloatArray dy = c.in("dy");
               auto dw = c.out("out");
               c.numel({vocab, dy.shape(dy.ndim() - 1)}, "out");
               c.run([&] {
                   fz::embedding_backward(ids.data(), dy.data(), dw.mutable_data(), ids.size(), vocab,
                                          dy.shape(dy.ndim() - 1));
               });
               return dw;
           });
    kernel(Spec("layer_norm_forward(x, gamma=None, beta=None, epsilon=0.001, out=None, mean=None, rstd=None)",
                "(y, mean, rstd): y = γ·(x − μ)·r + β over the last axis, r = 1/√(σ² + ε) (γ = 1, β = 0 when None); "
                "mean and rstd per row, for the backward")
               .in("x", "..., features").in("gamma", "features").in("beta", "features")
               .out("out", "..., features").in_place("x").out("mean", "...").out("rstd", "...")
               .param("epsilon", kLayerNormEpsilon).example("...=4x3 features=5"),
           [](Call& c) {
               const float epsilon = c.param("epsilon");
               FloatArray x = c.in("x");
               const int64_t features = c.dim("features");
               c.check(features >= 1, "x must have at least one feature on its last axis, got shape ", ShapeOf{x});
               const auto gamma = c.maybe_in("gamma"), beta = c.maybe_in("beta");
               auto y = c.out("out"), mean = c.out("mean"), rstd = c.out("rstd");
               c.run([&] {
                   fz::layernorm_forward(x.data(), ptr(gamma), ptr(beta), y.mutable_data(), mean.mutable_data(),
                                         rstd.mutable_data(), x.size() / features, features, epsilon);
               });
               return py::make_tuple(y, mean, rstd);
           });
    kernel(Spec("layer_norm_backward(x, gamma, mean, rstd, dy, need_dx=True, need_dgamma=True, need_dbeta=True, "
                "out=None, dgamma=None, dbeta=None)",
                "(dx, dgamma, dbeta) from layer_norm_forward's mean and rstd (gamma None: γ = 1); dgamma and dbeta "
                "summed over rows in a fixed order; a gradient not asked for is None")
               .in("x", "..., features").in("gamma", "features").in("mean", "...").in("rstd", "...")
               .in("dy", "..., features").out("out", "..., features").in_place("dy").out("dgamma", "features")
               .out("dbeta", "features").example("...=4x3 features=5"),
           [](Call& c) {
               FloatArray x = c.in("x");
               const int64_t features = c.dim("features");
               c.check(features >= 1, "x must have at least one feature on its last axis, got shape ", ShapeOf{x});
               const auto gamma = c.maybe_in("gamma");
               FloatArray mean = c.in("mean"), rstd = c.in("rstd"), dy = c.in("dy");
               auto dx = c.out_if("out", c.get<bool>("need_dx"));
               auto dgamma = c.out_if("dgamma", c.get<bool>("need_dgamma"));
               auto dbeta = c.out_if("dbeta", c.get<bool>("need_dbeta"));
               c.run([&] {
                   fz::layernorm_backward(x.data(), ptr(gamma), mean.data(), rstd.data(), dy.data(), mut(dx),
                                          mut(dgamma), mut(dbeta), x.size() / features, features);
               });
               return py::make_tuple(or_none(dx), or_none(dgamma), or_none(dbeta));
           });
    kernel(attention_spec(Spec(cat("attention_forward(q, k, v, ", kAttentionArgs, ", out=None, probs=None)"),
                               "(out, probs): out = softmax(scale·q·kᵀ + mask)·v per (batch, head), probs the "
                               "softmax (B, H, Tq, Tk) the backward needs; causal: query i sees keys j ≤ i + "
                               "causal_offset; dropout_rate > 0 drops probabilities by (seed, position)"))
                   .out("out", "batch, q_len, heads, value_dim").out("probs", "batch, heads, q_len, kv_len")
                   .example(kAttentionSizes, "causal=True, mask=None")
                   .example(kAttentionMaskSizes, "dropout_rate=0.5, seed=3"),
           [](Call& c) {
               FloatArray q = c.in("q"), k = c.in("k"), v = c.in("v");
               AttentionArgs a = attention_args(c, q, v);
               auto out = c.out("out"), probs = c.out("probs");
               c.run([&] {
                   fz::attention_forward(a.shape, a.scale, heads(q), heads(k), heads(v), a.mask, probs.mutable_data(),
                                         heads(out), a.dropout);
               });
               return py::make_tuple(out, probs);
           });
    kernel(attention_spec(Spec(cat("attention_backward(q, k, v, probs, dout, ", kAttentionArgs,
                                   ", dq=None, dk=None, dv=None)"),
                               "(dq, dk, dv) from dout = ∂L/∂out and attention_forward's probs; mask, causal, "
                               "scale, dropout_rate and seed must be the forward's"))
                   .in("probs", "batch, heads, q_len, kv_len").in("dout", "batch, q_len, heads, value_dim")
                   .out("dq", "batch, q_len, heads, key_dim").out("dk", "batch, kv_len, heads, key_dim")
                   .out("dv", "batch, kv_len, heads, value_dim")
                   .example(kAttentionSizes, "causal=True, mask=None")
                   .example(kAttentionMaskSizes, "dropout_rate=0.5, seed=3"),
           [](Call& c) {
               FloatArray q = c.in("q"), k = c.in("k"), v = c.in("v"), probs = c.in("probs"), dout = c.in("dout");
               AttentionArgs a = attention_args(c, q, v);
               auto dq = c.out("dq"), dk = c.out("dk"), dv = c.out("dv");
               c.run([&] {
                   fz::attention_backward(a.shape, a.scale, heads(q), heads(k), heads(v), probs.data(), heads(dout),
                                          a.mask, heads(dq), heads(dk), heads(dv), a.dropout);
               });
               return py::make_tuple(dq, dk, dv);
           });

    kernel(Spec("attention_forward_packed(q, k, v, starts, scale=None, out=None)",
                "out = softmax(scale·q·kᵀ)·v per head within each sequence: the sequences' tokens lie back to "
                "back, sequence s at rows starts[s]:starts[s + 1], and attend to their own keys only (no padding, "
                "no mask, nothing kept for a backward)")
               .in("q", "tokens, heads, key_dim").in("k", "tokens, heads, key_dim")
               .in("v", "tokens, heads, value_dim").in("starts", "bounds").dtype(DType::i64)
               .out("out", "tokens, heads, value_dim").param("scale", kAttentionScale)
               .example("tokens=7 heads=2 key_dim=3 value_dim=2", "starts=[0, 3, 3, 7]"),
           [](Call& c) {
               FloatArray q = c.in("q"), k = c.in("k"), v = c.in("v");
               const auto starts = c.ints<int64_t>("starts");
               const int64_t tokens = c.dim("tokens"), key_dim = c.dim("key_dim");
               c.check(key_dim >= 1, "q and k must have key_dim >= 1, got q of shape ", ShapeOf{q});
               const int64_t n = starts.size();
               const int64_t* at = starts.data();
               c.check(n >= 1 && at[0] == 0 && at[n - 1] == tokens, "starts must run from 0 to the number of "
                       "tokens, ", tokens, " (one offset per sequence, then the end), got ", Repr{c["starts"]});
               for (int64_t i = 1; i < n; ++i)
                   c.check(at[i] >= at[i - 1], "starts must not decrease, got ", at[i - 1], " then ", at[i],
                           " at index ", i);
               const float scale = c.given("scale") ? c.param("scale")
                                                    : 1.0f / std::sqrt(static_cast<float>(key_dim));
               auto out = c.out("out");
               const auto rows = [](auto* data, const auto& x) {
                   return fz::contiguous_heads(data, x.shape(0), x.shape(1), x.shape(2));
               };
               c.run([&] {
                   fz::attention_forward_packed(n - 1, at, c.dim("heads"), key_dim, c.dim("value_dim"), scale,
                                                rows(q.data(), q), rows(k.data(), k), rows(v.data(), v),
                                                rows(out.mutable_data(), out));
               });
               return out;
           });

    // ------------------------------------------------------------ convolution, pooling, batch norm
    kernel(Spec("conv2d_forward(x, kernel, bias=None, strides=(1, 1), padding='valid', "
                "activation=Activation.identity, alpha=0.0, out=None)",
                "y = act(cols·K + bias), cols = im2col(x) (one window of x per row), built a block of rows at a "
                "time in cache")
               .in("x", kImage).hint(kImageHint).in("kernel", "kh, kw, in_channels, filters").in("bias", "filters")
               .out("out", "batch, ho, wo, filters").param("alpha", kSlope)
               .example(kConvSizes, "activation=Activation.relu"),
           [](Call& c) {
               const Activation act = activation(c, true);
               const float alpha = c.param("alpha");
               FloatArray x = c.in("x"), kernel = c.in("kernel");
               const int64_t channels = c.dim("channels"), filters = c.dim("filters");
               c.check(c.dim("in_channels") == channels, "kernel has shape ", ShapeOf{kernel}, " for ",
                       c.dim("in_channels"), " input channels but x has shape ", ShapeOf{x}, " with ",
                       channels);
               c.check(filters >= 1, "kernel has no filters: shape ", ShapeOf{kernel});
               const auto g = window(c, images(c, shape_of(x), "x"), {kernel.shape(0), kernel.shape(1)}, "kernel");
               const auto bias = c.maybe_in("bias");
               auto y = c.out("out");
               c.run([&] { fz::conv2d_forward(g, x.data(), kernel.data(), ptr(bias), filters, act, alpha,
                                              y.mutable_data()); });
               return y;
           });
    kernel(Spec("conv2d_backward(dy, kernel, x, strides=(1, 1), padding='valid', use_bias=True, need_dx=True, "
                "need_dparams=True, dx_out=None, dkernel_out=None, dbias_out=None, activation=Activation.identity, "
                "y=None, alpha=0.0)",
                "(dx, dkernel, dbias) from dy = ∂L/∂y, y = act(z), z = conv(x, K) + b: dz = dy·act'(y), "
                "dkernel = colsᵀ·dz, dbias = Σ dz, dx = col2im(dz·Kᵀ), cols = im2col(x) rebuilt block by block; "
                "None when not asked for")
               .in("dy", "batch, ho, wo, filters").in("kernel", "kh, kw, channels, filters").in("x", kImage)
               .in("y", "batch, ho, wo, filters").out("dx_out", kImage).out("dkernel_out", "kh, kw, channels, filters")
               .out("dbias_out", "filters").param("alpha", kSlope)
               .example(kConvSizes, "activation=Activation.relu")
               .example(kConvSizes, "y=None"),
           [](Call& c) {
               const Activation act = activation(c, true);
               const float alpha = c.param("alpha");
               c.check(!fz::activation_backward_needs_input(act), "the activation's derivative must be written in "
                       "terms of y (not gelu: apply its backward first and pass Activation.identity)");
               c.check(act == Activation::identity || c.given("y"), "y (the forward's output) is needed for the "
                       "activation's derivative");
               FloatArray x = c.in("x"), kernel = c.in("kernel");
               const int64_t filters = c.dim("filters");
               c.check(filters >= 1, "kernel has no filters: shape ", ShapeOf{kernel});
               const auto g = window(c, images(c, shape_of(x), "x"), {kernel.shape(0), kernel.shape(1)}, "kernel");
               FloatArray dy = c.in("dy");
               const auto y = act != Activation::identity ? std::optional(c.in("y")) : std::nullopt;
               const bool need_dx = c.get<bool>("need_dx"), need_dparams = c.get<bool>("need_dparams");
               auto dx = c.out_if("dx_out", need_dx);
               auto dkernel = c.out_if("dkernel_out", need_dparams);
               auto dbias = c.out_if("dbias_out", need_dparams && c.get<bool>("use_bias"));
               c.run([&] { fz::conv2d_backward(g, x.data(), kernel.data(), dy.data(), filters, mut(dkernel),
                                               mut(dbias), mut(dx), act, ptr(y), alpha); });
               return py::make_tuple(or_none(dx), or_none(dkernel), or_none(dbias));
           });
    kernel(Spec("max_pool2d_forward(x, pool_size, strides, padding='valid', out=None, argmax=None)",
                "(y, argmax): each window's maximum, and its offset (ih·W + iw)·C + c in its image (int32; the "
                "first on ties)")
               .in("x", kImage).hint(kImageHint).out("out", kPooled).out("argmax", kPooled).dtype(DType::i32)
               .example(kPoolSizes, "pool_size=(2, 2), strides=(2, 2)"),
           [](Call& c) {
               FloatArray x = c.in("x");
               const auto g = window(c, images(c, shape_of(x), "x"), c.get<Pair>("pool_size"), "pool_size");
               c.check(g.h * g.w * g.c <= INT32_MAX, "images of shape ", ShapeOf{x},
                       " have too many values for int32 argmax offsets");
               auto y = c.out("out");
               auto argmax = c.out<int32_t>("argmax");
               c.run([&] { fz::max_pool2d_forward(g, x.data(), y.mutable_data(), argmax.mutable_data()); });
               return py::make_tuple(y, argmax);
           });
    kernel(Spec("max_pool2d_backward(dy, argmax, input_shape, pool_size, strides, padding='valid', out=None)",
                "dx: each dy value added to the input its window's maximum came from")
               .in("dy", kPooled).in("argmax", kPooled).dtype(DType::i32).values_below("image").out("out", kImage)
               .example(kPoolSizes, kPoolBackArgs),
           [](Call& c) {
               const auto g = window(c, input_shape(c), c.get<Pair>("pool_size"), "pool_size");
               c.let("image", g.h * g.w * g.c);  // an argmax outside its image would write outside dx
               FloatArray dy = c.in("dy");
               const auto argmax = c.ints<int32_t>("argmax");
               auto dx = c.out("out");
               c.run([&] { fz::max_pool2d_backward(g, dy.data(), argmax.data(), dx.mutable_data()); });
               return dx;
           });
    kernel(Spec("avg_pool2d_forward(x, pool_size, strides, padding='valid', out=None)",
                "the mean of each window's real inputs (with 'same' padding, padding is not counted)")
               .in("x", kImage).hint(kImageHint).out("out", kPooled)
               .example(kPoolSizes, "pool_size=(2, 2), strides=(2, 2)"),
           [](Call& c) {
               FloatArray x = c.in("x");
               const auto g = window(c, images(c, shape_of(x), "x"), c.get<Pair>("pool_size"), "pool_size");
               auto y = c.out("out");
               c.run([&] { fz::avg_pool2d_forward(g, x.data(), y.mutable_data()); });
               return y;
           });
    kernel(Spec("avg_pool2d_backward(dy, input_shape, pool_size, strides, padding='valid', out=None)",
                "dx: each dy value shared equally by the inputs its window averaged")
               .in("dy", kPooled).out("out", kImage)
               .example(kPoolSizes, kPoolBackArgs),
           [](Call& c) {
               const auto g = window(c, input_shape(c), c.get<Pair>("pool_size"), "pool_size");
               FloatArray dy = c.in("dy");
               auto dx = c.out("out");
               c.run([&] { fz::avg_pool2d_backward(g, dy.data(), dx.mutable_data()); });
               return dx;
           });
    kernel(Spec("global_avg_pool2d_forward(x, out=None)", "(N, H, W, C) → (N, C), each channel's mean over the image")
               .in("x", kImage).hint(kImageHint).out("out", "batch, channels").example(kPoolSizes),
           [](Call& c) {
               FloatArray x = c.in("x");
               const Shape s = images(c, shape_of(x), "x");
               auto y = c.out("out");
               c.run([&] { fz::global_avg_pool2d_forward(x.data(), y.mutable_data(), s[0], s[1], s[2], s[3]); });
               return y;
           });
    kernel(Spec("global_avg_pool2d_backward(dy, input_shape, out=None)", "dx = dy / (H·W) at every pixel")
               .in("dy", "batch, channels").out("out", kImage)
               .example(kPoolSizes, "input_shape=(batch, height, width, channels)"),
           [](Call& c) {
               const Shape s = input_shape(c);
               FloatArray dy = c.in("dy");
               auto dx = c.out("out");
               c.run([&] { fz::global_avg_pool2d_backward(dy.data(), dx.mutable_data(), s[0], s[1], s[2], s[3]); });
               return dx;
           });
    // momentum and epsilon have no defaults here: Keras's (0.99, 1e-3) are BatchNormalization's.
    kernel(Spec("batch_norm_forward(x, gamma, beta, moving_mean, moving_var, training, momentum, epsilon, "
                "out=None, mean=None, inv_std=None)",
                "(y, mean, inv_std): y = γ·(x − μ)·s + β per channel (the last axis), s = 1/√(σ² + ε); training "
                "uses the batch's μ and σ² and updates moving_mean and moving_var in place")
               .in("x", "..., channels").in("gamma", "channels").in("beta", "channels")
               .state("moving_mean", "channels").state("moving_var", "channels").out("out", "..., channels")
               .out("mean", "channels").out("inv_std", "channels").param("momentum", kBatchNormMomentum)
               .param("epsilon", kBatchNormEpsilon)
               .example("...=4x3 channels=2", "training=True, momentum=0.99, epsilon=0.001"),
           [](Call& c) {
               const float momentum = c.param("momentum"), epsilon = c.param("epsilon");
               FloatArray x = c.in("x"), gamma = c.in("gamma"), beta = c.in("beta");
               c.check(x.ndim() >= 2 && x.size() > 0, "x must have a batch axis and a channel axis and not be empty, "
                       "got shape ", ShapeOf{x});
               auto moving_mean = c.state("moving_mean"), moving_var = c.state("moving_var");
               auto y = c.out("out"), mean = c.out("mean"), inv_std = c.out("inv_std");
               const bool training = c.get<bool>("training");
               const int64_t channels = c.dim("channels");
               c.run([&] {
                   fz::batch_norm_forward(x.data(), gamma.data(), beta.data(), moving_mean.mutable_data(),
                                          moving_var.mutable_data(), training, momentum, epsilon, mean.mutable_data(),
                                          inv_std.mutable_data(), y.mutable_data(), x.size() / channels, channels);
               });
               return py::make_tuple(y, mean, inv_std);
           });
    kernel(Spec("batch_norm_backward(x, gamma, mean, inv_std, dy, training, out=None, dgamma=None, dbeta=None)",
                "(dx, dgamma, dbeta), with mean and inv_std from batch_norm_forward with the same training")
               .in("x", "..., channels").in("gamma", "channels").in("mean", "channels").in("inv_std", "channels")
               .in("dy", "..., channels").out("out", "..., channels").out("dgamma", "channels")
               .out("dbeta", "channels").example("...=4x3 channels=2", "training=True"),
           [](Call& c) {
               FloatArray x = c.in("x"), gamma = c.in("gamma"), mean = c.in("mean"), inv_std = c.in("inv_std"),
                          dy = c.in("dy");
               c.check(x.ndim() >= 2 && x.size() > 0, "x must have a batch axis and a channel axis and not be empty, "
                       "got shape ", ShapeOf{x});
               auto dx = c.out("out"), dgamma = c.out("dgamma"), dbeta = c.out("dbeta");
               const bool training = c.get<bool>("training");
               const int64_t channels = c.dim("channels");
               c.run([&] {
                   fz::batch_norm_backward(x.data(), gamma.data(), mean.data(), inv_std.data(), dy.data(), training,
                                           dx.mutable_data(), dgamma.mutable_data(), dbeta.mutable_data(),
                                           x.size() / channels, channels);
               });
               return py::make_tuple(dx, dgamma, dbeta);
           });
}
