// binding_checks.h — declared argument checks for the bindings (bindings.cpp).
//
// In the spirit of ATen's TensorArg / TensorIterator, a kernel's binding
// DECLARES its arguments once, in a Spec: the Python signature (names and
// defaults), every array's role (input, output, state), dtype and dims — a dim
// is a symbol shared between arrays: "batch, in" and "in, units" must agree on
// `in` — and every ranged scalar with its Limit. A Call then, for one call:
//   * converts each input to float32 (or int32/int64) C-contiguous, copying only
//     when it is not one already, and checks its dims, binding their symbols;
//   * checks each caller's output / state array (dtype, C-contiguous, writable,
//     declared shape) or allocates a fresh output;
//   * checks each scalar against its Limit;
//   * checks every array the kernel writes against every other array of the
//     call for overlapping memory — allowed only where the Spec says an output
//     may be exactly one of the inputs (in place) — then releases the GIL and
//     runs the kernel (Call::run).
// A failure is a ValueError or TypeError naming the function and the argument,
// with what was expected and what was received.
#pragma once

#include <pybind11/eval.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <deque>
#include <functional>
#include <limits>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace fz::bind {

namespace py = pybind11;
using Shape = std::vector<py::ssize_t>;
template <class T>
using Array = py::array_t<T, py::array::c_style | py::array::forcecast>;
using FloatArray = Array<float>;

// ---------------------------------------------------------------- messages

struct ShapeText { const Shape& s; };  // prints as Python prints a tuple: (2, 3), (4,)
inline std::ostream& operator<<(std::ostream& o, const ShapeText& t) {
    o << "(";
    for (size_t i = 0; i < t.s.size(); ++i) o << (i ? ", " : "") << t.s[i];
    return o << (t.s.size() == 1 ? ",)" : ")");
}
inline Shape shape_of(const py::array& a) { return Shape(a.shape(), a.shape() + a.ndim()); }
// Message parts are evaluated even when a check passes, so anything costly is
// wrapped to be formatted only when a message is built:
struct ShapeOf { const py::array& a; };  // an array's shape
struct TypeOf { py::handle h; };         // type(h).__name__
struct Repr { py::handle h; };           // repr(h)
inline std::ostream& operator<<(std::ostream& o, const ShapeOf& s) { return o << ShapeText{shape_of(s.a)}; }
inline std::ostream& operator<<(std::ostream& o, const TypeOf& t) {
    return o << std::string(py::str(py::type::handle_of(t.h).attr("__name__")));
}
inline std::ostream& operator<<(std::ostream& o, const Repr& r) { return o << std::string(py::repr(r.h)); }

template <class... Parts>
std::string cat(const Parts&... parts) {
    std::ostringstream o;
    o.precision(9);
    (o << ... << parts);
    return o.str();
}

// ---------------------------------------------------------------- declarations

// Whether two names are equal. Names are a few characters long and every call
// looks several up, so they are compared inline: with ==, a call to memcmp per
// candidate name took a tenth of a small kernel's call.
inline bool same_name(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i)
        if (a[i] != b[i]) return false;
    return true;
}

// The range of a scalar hyperparameter; values must also be finite.
struct Limit {
    const char* name;
    double low, high;
    bool low_open, high_open;
    const char* why;

    bool contains(double v) const {
        return std::isfinite(v) && (low_open ? v > low : v >= low) && (high_open ? v < high : v <= high);
    }
    std::string interval() const {
        const auto end = [](double v) { return std::isinf(v) ? std::string(v < 0 ? "-inf" : "inf") : cat(v); };
        return cat(low_open ? "(" : "[", end(low), ", ", end(high), high_open ? ")" : "]");
    }
};

enum class Role { input, output, state, result };  // result: returned, not a parameter
enum class DType { f32, i32, i64, u8 };
inline const char* role_name(Role r) {
    static const char* names[] = {"input", "output", "state", "result"};
    return names[int(r)];
}
inline const char* dtype_name(DType d) {
    static const char* names[] = {"float32", "int32", "int64", "uint8"};
    return names[int(d)];
}

// One declared dim, parsed once (a call matches shapes against it many times).
struct Dim {
    enum Kind { symbol, any, rest, number } kind;  // a name, "_", "...", a literal size
    int64_t size = 0;                              // number: the size
};

struct Arg {
    std::string name;
    Role role;
    std::vector<std::string> dims;      // symbols; "_" any size; "..." any number of axes (once)
    std::vector<Dim> parsed;            // dims, parsed
    size_t keyword = 0;                 // its position in the signature (set by def)
    DType dtype = DType::f32;
    bool list = false;                  // one array per parameter, each shaped like it (optimizers)
    std::vector<std::string> in_place;  // inputs this output may be exactly (never a shifted view)
    std::string values_below;           // integer inputs: the dim bounding their values
    std::string hint;                   // added to a wrong-rank message
    size_t fixed = 0;                   // how many dims are not "..."
    bool rest = false, named = false;   // a "..." among them; a dim other than "_"
};

// "a, b=(1, 2), c='x'" → {"a", "b=(1, 2)", "c='x'"}: separators inside brackets
// or quotes belong to a default value; spaces outside them are dropped.
inline std::vector<std::string> split(const std::string& s, char sep) {
    std::vector<std::string> parts{""};
    int depth = 0;
    bool quoted = false;
    for (char ch : s) {
        quoted ^= ch == '\'';
        depth += !quoted * ((ch == '(' || ch == '[') - (ch == ')' || ch == ']'));
        if (ch == sep && !depth && !quoted) parts.emplace_back();
        else if (ch != ' ' || depth || quoted) parts.back() += ch;
    }
    parts.erase(std::remove(parts.begin(), parts.end(), ""), parts.end());
    return parts;
}

// A kernel's declaration, written as a chain:
//   Spec("bias_grad(dy, out=None)", "db = Σ_rows dy").in("dy", "rows, cols").out("out", "cols")
struct Spec {
    std::string name, signature, doc;
    std::vector<std::string> keywords, defaults;  // defaults[i] is Python source, "" when required
    std::vector<PyObject*> default_values;        // evaluated by def(), kept for the process
    std::vector<Arg> args;                        // the arrays
    std::vector<std::pair<std::string, const Limit*>> params;
    std::vector<std::pair<std::string, std::string>> examples;

    Spec(const std::string& sig, std::string doc_) : signature(sig), doc(std::move(doc_)) {
        name = sig.substr(0, sig.find('('));
        for (const std::string& p : split(sig.substr(name.size() + 1, sig.size() - name.size() - 2), ',')) {
            keywords.push_back(p.substr(0, p.find('=')));
            defaults.push_back(p.find('=') == std::string::npos ? "" : p.substr(p.find('=') + 1));
        }
    }
    Spec& in(const char* n, const char* dims) { return add(n, Role::input, dims); }
    Spec& out(const char* n, const char* dims) { return add(n, Role::output, dims); }
    Spec& state(const char* n, const char* dims) { return add(n, Role::state, dims); }
    Spec& result(const char* n, const char* dims) { return add(n, Role::result, dims); }
    // Modifiers of the array declared last.
    Spec& dtype(DType d) { return args.back().dtype = d, *this; }
    Spec& list() { return args.back().list = true, *this; }
    Spec& in_place(const char* inputs) { return args.back().in_place = split(inputs, ' '), *this; }
    Spec& values_below(const char* dim) { return args.back().values_below = dim, *this; }
    Spec& hint(const char* text) { return args.back().hint = text, *this; }
    Spec& param(const char* n, const Limit& limit) { return params.emplace_back(n, &limit), *this; }
    // A valid call, for the tests generated from the declarations: the dims'
    // sizes ("batch=3 in=4 ho=in-1", "a=5x3" an array's whole shape, "...=2x3"
    // the axes "..." stands for), then the other arguments as Python keywords
    // ("activation=Activation.relu, input_shape=(batch, 5)").
    Spec& example(const char* sizes, const char* kwargs = "") { return examples.emplace_back(sizes, kwargs), *this; }

    size_t keyword(std::string_view n) const {
        return std::find_if(keywords.begin(), keywords.end(), [n](const std::string& k) { return same_name(k, n); }) -
               keywords.begin();
    }
    const Arg& arg(std::string_view n) const {
        for (const Arg& a : args)
            if (same_name(a.name, n)) return a;
        throw std::logic_error(name + ": no array '" + std::string(n) + "' is declared");
    }
    const Limit& limit(std::string_view n) const {
        for (const auto& [p, limit] : params)
            if (same_name(p, n)) return *limit;
        throw std::logic_error(name + ": no parameter '" + std::string(n) + "' is declared");
    }

  private:
    Spec& add(const char* n, Role role, const char* dims) {
        Arg& a = args.emplace_back();
        a.name = n, a.role = role, a.dims = split(dims, ',');
        for (const std::string& d : a.dims)
            a.parsed.push_back(d == "..." ? Dim{Dim::rest}
                               : d == "_" ? Dim{Dim::any}
                               : std::isdigit(static_cast<unsigned char>(d[0])) ? Dim{Dim::number, std::stoll(d)}
                                                                                : Dim{Dim::symbol});
        a.rest = std::count(a.dims.begin(), a.dims.end(), "...") > 0;
        a.fixed = a.dims.size() - a.rest;
        a.named = std::count(a.dims.begin(), a.dims.end(), "_") < std::ptrdiff_t(a.dims.size());
        return *this;
    }
};

// ---------------------------------------------------------------- one call

// An argument's name in messages: "x", or "params[3]" for an element of a list.
struct Label {
    std::string_view name;
    int index = -1;
};
inline std::ostream& operator<<(std::ostream& o, const Label& l) {
    o << l.name;
    return l.index < 0 ? o : o << "[" << l.index << "]";
}

class Call {
  public:
    Call(const Spec& spec, const py::args& args, const py::kwargs& kwargs)
        : spec_(spec), values_(spec.keywords.size()) {
        check_type(args.size() <= values_.size(), "takes ", values_.size(), " arguments but ", args.size(),
                   " were given");
        for (size_t i = 0; i < args.size(); ++i) values_[i] = args[i];
        for (const auto& [key, value] : kwargs) {
            const size_t i = spec.keyword(key.cast<std::string_view>());
            check_type(i < values_.size(), "got an unexpected keyword argument '", key, "'");
            check_type(!values_[i], "got multiple values for argument '", key, "'");
            values_[i] = value;
        }
        for (size_t i = 0; i < values_.size(); ++i) {
            check_type(values_[i] || spec.default_values[i], "missing argument '", spec.keywords[i], "'");
            if (!values_[i]) values_[i] = spec.default_values[i];
        }
        symbols_.reserve(8), tracked_.reserve(8);
    }

    const std::string& fn() const { return spec_.name; }

    // ValueError "fn: parts..." unless ok (TypeError for check_type). The parts
    // are evaluated even when the check passes: wrap anything costly to format
    // (ShapeOf, TypeOf, Repr) or test it with if (...) fail(...).
    template <class... Parts>
    void check(bool ok, const Parts&... parts) const { if (!ok) fail(parts...); }
    template <class... Parts>
    [[noreturn]] void fail(const Parts&... parts) const { throw py::value_error(cat(fn(), ": ", parts...)); }
    template <class... Parts>
    void check_type(bool ok, const Parts&... parts) const {
        if (!ok) throw py::type_error(cat(fn(), ": ", parts...));
    }

    // An argument as passed (or its default), and converted to T.
    py::handle operator[](std::string_view name) const {
        const size_t i = spec_.keyword(name);
        if (i >= values_.size()) throw std::logic_error(fn() + ": no argument '" + std::string(name) + "' is declared");
        return values_[i];
    }
    bool given(std::string_view name) const { return !(*this)[name].is_none(); }
    template <class T>
    T get(std::string_view name) const {
        try {
            return (*this)[name].cast<T>();
        } catch (py::cast_error&) {
            throw py::type_error(cat(fn(), ": ", name, " has the wrong type: got ", Repr{(*this)[name]}));
        }
    }
    // A scalar hyperparameter, checked against its declared Limit.
    float param(std::string_view name) const {
        const float v = get<float>(name);
        const Limit& limit = spec_.limit(name);
        if (!limit.contains(v)) fail(name, " must be in ", limit.interval(), ", got ", v);
        return v;
    }

    // Dims shared between arrays; let() binds one the binding computes (an
    // output height, say) before the arrays that use it.
    void let(std::string_view symbol, int64_t value, std::string_view from = "", const Shape& from_shape = {}) {
        symbols_.push_back({symbol, value, {}, from, {}, from_shape});
    }
    int64_t dim(std::string_view symbol) const {
        if (const Symbol* s = lookup(symbol)) return s->value;
        throw std::logic_error(fn() + ": dim '" + std::string(symbol) + "' is used before it is known");
    }
    // The product of `shape`; a ValueError naming `what` when it overflows int64.
    template <class What>
    int64_t numel(const Shape& shape, const What& what) const {
        int64_t n = 1;
        for (py::ssize_t d : shape)
            check(d >= 0 && !__builtin_mul_overflow(n, static_cast<int64_t>(d), &n), what, " of shape ",
                  ShapeText{shape}, " has more elements than an array can hold");
        return n;
    }

    // An input as float32 C-contiguous; maybe_in: None → nullopt.
    FloatArray in(std::string_view name) {
        const Arg& a = declared(name, Role::input);
        FloatArray arr = as_float(values_[a.keyword], Label{a.name});
        match(a, arr);
        return track(a, -1, arr), arr;
    }
    std::optional<FloatArray> maybe_in(std::string_view name) {
        return given(name) ? std::optional<FloatArray>(in(name)) : std::nullopt;
    }
    // An integer input as int32 or int64 (T), each value checked before any
    // narrowing: to lie in [0, values_below) when declared, else to fit in T.
    template <class T>
    Array<T> ints(std::string_view name) { return ints<T>(name, integers((*this)[name], Label{name})); }
    template <class T>
    Array<T> ints(std::string_view name, const py::array& raw) {
        const Arg& a = declared(name, Role::input);
        match(a, raw);
        const bool bounded = !a.values_below.empty(), unsigned_ = raw.dtype().kind() == 'u';
        const bool narrowing = raw.itemsize() > py::ssize_t(sizeof(T)) || (unsigned_ && raw.itemsize() == sizeof(T));
        const int64_t lo = bounded || unsigned_ ? 0 : std::numeric_limits<T>::min();
        const int64_t hi = bounded ? dim(a.values_below) - 1 : std::numeric_limits<T>::max();
        const auto check_values = [&](const auto& values) {
            const auto* data = values.data();
            for (py::ssize_t i = 0, n = values.size(); i < n; ++i) {
                const int64_t v = data[i];
                if (v >= lo && v <= hi) continue;
                if (bounded) fail(name, " value ", v, " at flat index ", i, " is outside [0, ", hi + 1, ")");
                fail(name, " (dtype ", raw.dtype(), ") holds ", py::object(raw.attr("flat")[py::int_(i)]),
                     " at flat index ", i, ", outside ", py::dtype::of<T>(), ", the type it is read as");
            }
        };
        if (narrowing) check_values(convert<Array<int64_t>>(raw, Label{name}));  // uint64 ≥ 2⁶³ wraps below lo
        auto arr = convert<Array<T>>(raw, Label{name});
        if (bounded && !narrowing) check_values(arr);
        return track(a, -1, arr), arr;
    }

    // An output: the caller's array (float32 or T, C-contiguous, writable, of
    // the declared shape) or, when None, a fresh one. out_if: only when wanted.
    template <class T = float>
    py::array_t<T> out(std::string_view name) {
        const Arg& a = declared(name, Role::output);
        const py::handle value = values_[a.keyword];
        return value.is_none() ? allocate<T>(a) : caller_array<T>(a, -1, value, expected(a));
    }
    template <class T = float>
    std::optional<py::array_t<T>> out_if(std::string_view name, bool wanted) {
        return wanted ? std::optional<py::array_t<T>>(out<T>(name)) : std::nullopt;
    }
    template <class T = float>
    py::array_t<T> result(std::string_view name) { return allocate<T>(declared(name, Role::result)); }
    // A state array: the caller's float32 array, read and updated in place.
    py::array_t<float> state(std::string_view name) {
        const Arg& a = declared(name, Role::state);
        return caller_array<float>(a, -1, values_[a.keyword], expected(a));
    }
    // A list argument (optimizers): a sequence of `count` arrays, or None.
    std::optional<py::sequence> list(std::string_view name, size_t count) const {
        if (!given(name)) return std::nullopt;
        const py::handle l = (*this)[name];
        check_type(py::isinstance<py::sequence>(l), name, " must be a list of arrays (one per parameter), got ",
                   Repr{l});
        check(py::len(l) == count, name, " must hold one array per parameter (", count, "), got ", py::len(l));
        return l.cast<py::sequence>();
    }
    // Element t of a state list, shaped like `like` (any shape when null).
    py::array_t<float> state_at(std::string_view name, int t, py::handle given, const Shape* like) {
        const Arg& a = declared(name, Role::state);
        check_type(py::isinstance<py::array>(given), Label{a.name, t}, " must be a numpy array, got ", TypeOf{given});
        const Shape shape = like ? *like : shape_of(py::reinterpret_borrow<py::array>(given));
        return caller_array<float>(a, t, given, shape);
    }
    // Element t of an input list, of the shape `like` of element t of `like_name`.
    FloatArray in_at(std::string_view name, int t, py::handle obj, const Shape& like, std::string_view like_name) {
        const Arg& a = declared(name, Role::input);
        FloatArray arr = as_float(obj, Label{a.name, t});
        if (shape_of(arr) != like)
            fail(Label{a.name, t}, " has shape ", ShapeOf{arr}, " but ", Label{like_name, t}, " has shape ",
                 ShapeText{like});
        return track(a, t, arr), arr;
    }

    // Checks that no array the kernel writes overlaps another array of the
    // call, then runs the kernel with the GIL released.
    template <class F>
    void run(F&& kernel) {
        check_overlaps();
        py::gil_scoped_release nogil;
        kernel();
    }

    // Any object → a NumPy array (no copy when it already is one). A ragged
    // list or an object NumPy cannot read is a TypeError naming the argument.
    py::array as_array(py::handle obj, const Label& name) const {
        if (py::isinstance<py::array>(obj)) return py::reinterpret_borrow<py::array>(obj);
        try {
            return py::array(py::reinterpret_borrow<py::object>(obj));
        } catch (py::error_already_set& e) {
            throw py::type_error(cat(fn(), ": ", name, " must be array-like, got ", TypeOf{obj}, " (", e.value(), ")"));
        }
    }
    py::array integers(py::handle obj, const Label& name) const {  // an empty float array too
        py::array raw = as_array(obj, name);
        const char kind = raw.dtype().kind();
        if (!(kind == 'i' || kind == 'u' || (raw.size() == 0 && (kind == 'f' || kind == 'b'))))
            check_type(false, name, " must be an integer array, got dtype ", raw.dtype());
        return raw;
    }
    FloatArray as_float(py::handle obj, const Label& name) const {
        py::array arr = as_array(obj, name);
        const char kind = arr.dtype().kind();
        if (!(kind == 'f' || kind == 'i' || kind == 'u' || kind == 'b'))
            check_type(false, name, " must hold numbers, got dtype ", arr.dtype());
        return convert<FloatArray>(arr, name);
    }
    // `arr` as the array type A: itself when it already is one, else a
    // converted copy. Never A::ensure(arr): when NumPy cannot make the copy
    // (a np.broadcast_to view of 4 TB) ensure() returns a null array, which
    // crashed the first kernel to read it; the constructor keeps NumPy's error,
    // raised again naming the argument (a MemoryError stays a MemoryError).
    template <class A>
    A convert(const py::array& arr, const Label& name) const {
        try {
            if (!aligned(arr)) return A(arr.attr("copy")());  // A(arr) would keep a misaligned view
            return py::isinstance<A>(arr) ? py::reinterpret_borrow<A>(arr) : A(arr);
        } catch (py::error_already_set& e) {
            rethrow(e, cat("cannot convert ", name, " of shape ", ShapeOf{arr}, " and dtype ", arr.dtype(),
                           " to a C-contiguous ", py::dtype::of<typename A::value_type>(), " array"));
        }
    }

  private:
    struct Symbol {
        std::string_view name;
        int64_t value;
        Shape group;           // the axes "..." stands for
        std::string_view from;  // the array (or argument) that set it, for messages
        py::handle from_array;
        Shape from_shape;
    };
    struct Tracked {
        const Arg* arg;
        int index;  // in its list, or -1
        const char *lo, *hi;
        size_t order;
        bool written() const { return arg->role != Role::input; }
        Label label() const { return {arg->name, index}; }
    };

    static bool aligned(const py::array& a) { return a.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_; }
    const Symbol* lookup(std::string_view symbol) const {
        for (const Symbol& s : symbols_)
            if (same_name(s.name, symbol)) return &s;
        return nullptr;
    }
    const Arg& declared(std::string_view name, Role role) const {
        const Arg& a = spec_.arg(name);
        if (a.role != role) throw std::logic_error(fn() + ": " + a.name + " is not declared as " + role_name(role));
        return a;
    }
    [[noreturn]] void rethrow(py::error_already_set& e, const std::string& what) const {
        const std::string msg = cat(fn(), ": ", what, ": ", e.value());
        if (!e.matches(PyExc_MemoryError)) throw py::value_error(msg);
        PyErr_SetString(PyExc_MemoryError, msg.c_str());
        throw py::error_already_set();
    }

    // The declared dims, with the values known so far when `values` ("(2, 5, units)").
    std::string dims_text(const Arg& a, bool values) const {
        std::vector<std::string> parts;
        for (const std::string& d : a.dims) {
            const Symbol* s = values ? lookup(d) : nullptr;
            if (s && d == "...")
                for (py::ssize_t v : s->group) parts.push_back(cat(v));
            else
                parts.push_back(s ? cat(s->value) : d);
        }
        std::string text = "(";
        for (size_t i = 0; i < parts.size(); ++i) text += (i ? ", " : "") + parts[i];
        return text + (parts.size() == 1 ? ",)" : ")");
    }
    // The shape of an output, every dim already known.
    Shape expected(const Arg& a) const {
        Shape s;
        for (size_t i = 0; i < a.dims.size(); ++i) {
            const Dim& d = a.parsed[i];
            if (d.kind == Dim::rest) {
                const Symbol* group = lookup("...");
                if (!group) throw std::logic_error(fn() + ": '...' is used before it is known");
                s.insert(s.end(), group->group.begin(), group->group.end());
            } else {
                s.push_back(d.kind == Dim::number ? d.size : dim(a.dims[i]));
            }
        }
        return s;
    }

    // Checks an input's shape against its declared dims, binding new symbols.
    void match(const Arg& a, const py::array& arr) {
        const py::ssize_t* s = arr.shape();
        const size_t ndim = arr.ndim();
        const size_t fixed = a.fixed;
        if (a.rest ? ndim < fixed : ndim != fixed)
            fail(a.name, " must be ", a.rest ? "at least " : "", fixed, "-D, got shape ", ShapeOf{arr},
                 a.named ? cat(" (expected ", dims_text(a, false), ")") : "", a.hint.empty() ? "" : "; ", a.hint);
        const auto mismatch = [&](const Symbol* sym) {
            std::string source;
            if (sym && sym->from_array) source = cat(", to match ", sym->from, " of shape ",
                                                     ShapeOf{py::reinterpret_borrow<py::array>(sym->from_array)});
            else if (sym && !sym->from.empty()) source = cat(", to match ", sym->from, " of shape ", ShapeText{sym->from_shape});
            fail(a.name, " must have shape ", dims_text(a, true), ", got ", ShapeOf{arr}, source);
        };
        size_t axis = 0;
        for (size_t i = 0; i < a.dims.size(); ++i) {
            const std::string& d = a.dims[i];
            const Dim::Kind kind = a.parsed[i].kind;
            if (kind == Dim::rest) {
                const Shape group(s + axis, s + axis + (ndim - fixed));
                axis += group.size();
                if (const Symbol* g = lookup(d); g && g->group != group) mismatch(g);
                if (!lookup(d)) symbols_.push_back({d, 0, group, a.name, arr, {}});
                continue;
            }
            const int64_t v = s[axis++];
            if (kind == Dim::any) continue;
            if (kind == Dim::number) {
                if (a.parsed[i].size != v) mismatch(nullptr);
            } else if (const Symbol* sym = lookup(d)) {
                if (sym->value != v) mismatch(sym);
            } else {
                symbols_.push_back({d, v, {}, a.name, arr, {}});
            }
        }
    }

    template <class T>
    py::array_t<T> allocate(const Arg& a) {
        const Shape shape = expected(a);
        numel(shape, a.name);
        try {
            py::array_t<T> arr(shape);
            return track(a, -1, arr), arr;
        } catch (py::error_already_set& e) {
            rethrow(e, cat(a.name, " of shape ", ShapeText{shape}, " cannot be allocated"));
        }
    }
    // A caller's output or state array: used as is, so it must be exactly right.
    template <class T>
    py::array_t<T> caller_array(const Arg& a, int index, py::handle given, const Shape& shape) {
        const Label name{a.name, index};
        check_type(py::isinstance<py::array>(given), name, " must be a numpy array, got ", TypeOf{given});
        const auto arr = py::reinterpret_borrow<py::array>(given);
        if (!py::isinstance<py::array_t<T>>(arr) || arr.dtype().kind() != py::dtype::of<T>().kind() ||
            arr.itemsize() != sizeof(T))
            check_type(false, name, std::is_integral_v<T> ? " must be an " : " must be a ", py::dtype::of<T>(),
                       " array, got ", arr.dtype());
        if (!(arr.flags() & py::array::c_style))
            fail(name, " must be C-contiguous, got an array of shape ", ShapeOf{arr}, " with byte strides ",
                 ShapeText{Shape(arr.strides(), arr.strides() + arr.ndim())}, " (np.ascontiguousarray makes one)");
        check(aligned(arr), name, " is not aligned to its dtype (np.require(a, requirements='A') makes one)");
        check(arr.writeable(), name, " is read-only");
        if (arr.ndim() != py::ssize_t(shape.size()) || !std::equal(shape.begin(), shape.end(), arr.shape()))
            fail(name, " must have shape ", ShapeText{shape}, ", got ", ShapeOf{arr});
        return track(a, index, arr), py::reinterpret_borrow<py::array_t<T>>(arr);
    }

    void track(const Arg& a, int index, const py::array& arr) {
        const char* lo = static_cast<const char*>(arr.data());
        tracked_.push_back({&a, index, lo, lo + arr.nbytes(), tracked_.size()});
    }
    // Every written array against every other: pair by pair for a few arrays,
    // else a sweep over the arrays sorted by address, so that a step over
    // hundreds of parameters costs n·log n, not n².
    void check_overlaps() const {
        if (tracked_.size() <= 16) {
            for (const Tracked& t : tracked_)
                for (const Tracked* o = tracked_.data(); o != &t; ++o)
                    if ((t.written() || o->written()) && t.lo < o->hi && o->lo < t.hi && t.lo < t.hi && o->lo < o->hi)
                        refuse_overlap(*o, t);
            return;
        }
        std::vector<const Tracked*> order, open;
        order.reserve(tracked_.size());
        for (const Tracked& t : tracked_)
            if (t.lo < t.hi) order.push_back(&t);
        std::sort(order.begin(), order.end(), [](const Tracked* x, const Tracked* y) {
            return x->lo != y->lo ? x->lo < y->lo : x->order < y->order;
        });
        for (const Tracked* t : order) {
            open.erase(std::remove_if(open.begin(), open.end(), [&](const Tracked* o) { return o->hi <= t->lo; }),
                       open.end());
            for (const Tracked* o : open)
                if (t->written() || o->written()) refuse_overlap(*o, *t);
            open.push_back(t);
        }
    }
    void refuse_overlap(const Tracked& x, const Tracked& y) const {
        // Name the written one first; of two written arrays, the later-declared.
        const bool x_first = x.written() && (!y.written() || x.order > y.order);
        const Tracked &w = x_first ? x : y, &r = x_first ? y : x;
        const auto allows = [](const Tracked& p, const Tracked& q) {
            return std::count(p.arg->in_place.begin(), p.arg->in_place.end(), q.arg->name) > 0;
        };
        const bool same = w.lo == r.lo && w.hi == r.hi;
        if (!allows(w, r) && !allows(r, w))
            fail(w.label(), " must not overlap ", r.label(), same ? " (they are the same array)" : "");
        check(same, w.label(), " overlaps ", r.label(),
              " without being the same array (in place is fine, a shifted view is not)");
    }

    const Spec& spec_;
    std::vector<py::handle> values_;  // borrowed from the call's args and kwargs
    std::vector<Symbol> symbols_;
    std::vector<Tracked> tracked_;
};

template <class A>
auto ptr(const std::optional<A>& a) -> decltype(a->data()) { return a ? a->data() : nullptr; }
template <class A>
auto mut(std::optional<A>& a) -> decltype(a->mutable_data()) { return a ? a->mutable_data() : nullptr; }

// ---------------------------------------------------------------- registration

inline std::deque<Spec>& registry() {  // every bound kernel's Spec, for _core.kernel_specs()
    static std::deque<Spec> specs;
    return specs;
}

// Binds `body` as the Python function spec.name(...), after checking that each
// declared array and parameter is in the signature; `scope` evaluates the
// defaults. The docstring is the signature (so inspect.signature reads it) and the doc.
inline void def(py::module_& m, const py::dict& scope, Spec spec, std::function<py::object(Call&)> body) {
    Spec& s = registry().emplace_back(std::move(spec));
    for (Arg& a : s.args) {
        a.keyword = s.keyword(a.name);
        if (a.role != Role::result && a.keyword == s.keywords.size())
            throw std::logic_error(s.name + ": declared array '" + a.name + "' is not in the signature");
    }
    for (const auto& [p, limit] : s.params)
        if (s.keyword(p) == s.keywords.size())
            throw std::logic_error(s.name + ": declared parameter '" + p + "' is not in the signature");
    for (const std::string& d : s.defaults)
        s.default_values.push_back(d.empty() ? nullptr : py::eval(py::str(d), scope).release().ptr());
    s.doc = s.signature + "\n--\n\n" + s.doc;
    m.def(s.name.c_str(), [&s, body](py::args args, py::kwargs kwargs) {
        Call c(s, args, kwargs);
        return body(c);
    }, s.doc.c_str());
}

// A Spec or a Limit as plain Python data (_core.kernel_specs(), _core.limits()).
inline py::dict describe(const Limit& l) {
    return py::dict(py::arg("low") = l.low, py::arg("high") = l.high, py::arg("low_open") = l.low_open,
                    py::arg("high_open") = l.high_open, py::arg("interval") = l.interval(), py::arg("why") = l.why);
}
inline py::dict describe(const Spec& s) {
    py::list args, signature;
    for (const Arg& a : s.args)
        args.append(py::dict(py::arg("name") = a.name, py::arg("role") = role_name(a.role), py::arg("dims") = a.dims,
                             py::arg("dtype") = dtype_name(a.dtype), py::arg("list") = a.list,
                             py::arg("in_place") = a.in_place,
                             py::arg("values_below") = a.values_below.empty() ? py::object(py::none())
                                                                             : py::str(a.values_below)));
    for (size_t i = 0; i < s.keywords.size(); ++i)
        signature.append(py::make_tuple(s.keywords[i], s.defaults[i].empty() ? py::object(py::none())
                                                                             : py::str(s.defaults[i])));
    py::dict params;
    for (const auto& [p, limit] : s.params) params[py::str(p)] = limit->name;
    return py::dict(py::arg("signature") = signature, py::arg("doc") = s.doc, py::arg("args") = args,
                    py::arg("params") = params, py::arg("examples") = s.examples);
}

}  // namespace fz::bind
