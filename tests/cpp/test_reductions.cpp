// test_reductions.cpp — bias_grad, argmax_rows, count_correct and gather_rows
// against the reference loops, hand-worked examples and manual copies.
#include "reductions.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "test_util.h"

namespace fz {
namespace {

using testing::expect_close;
using testing::kAwkwardSizes;
using testing::kThreadCounts;
using testing::random_vector;
using testing::ThreadCountGuard;

// (rows, cols) shapes: 1×1, 1×N, N×1, prime×prime, and some above 16K values
// with few rows, many rows, or both.
std::vector<std::pair<int64_t, int64_t>> matrix_shapes() {
    std::vector<std::pair<int64_t, int64_t>> shapes;
    for (int64_t r : {1, 2, 7, 17, 97})
        for (int64_t c : {1, 3, 16, 31, 257, 1031}) shapes.emplace_back(r, c);
    shapes.emplace_back(1031, 1);
    shapes.emplace_back(131, 257);
    shapes.emplace_back(3, 20011);
    shapes.emplace_back(20011, 3);
    shapes.emplace_back(40000, 1);
    return shapes;
}

std::string shape_name(int64_t rows, int64_t cols) {
    return std::to_string(rows) + "x" + std::to_string(cols);
}

// Small integers as floats, so rows often hold several equal maxima.
std::vector<float> tie_heavy_vector(int64_t n, uint32_t seed) {
    std::mt19937 gen(seed);
    std::uniform_int_distribution<int> dist(0, 3);
    std::vector<float> v(static_cast<size_t>(n));
    for (auto& x : v) x = static_cast<float>(dist(gen));
    return v;
}

std::vector<int32_t> random_labels(int64_t n, int64_t cols, uint32_t seed) {
    std::mt19937 gen(seed);
    std::uniform_int_distribution<int32_t> dist(0, static_cast<int32_t>(cols - 1));
    std::vector<int32_t> v(static_cast<size_t>(n));
    for (auto& x : v) x = dist(gen);
    return v;
}

std::vector<int64_t> random_indices(int64_t n, int64_t src_rows, uint32_t seed) {
    std::mt19937 gen(seed);
    std::uniform_int_distribution<int64_t> dist(0, src_rows - 1);
    std::vector<int64_t> v(static_cast<size_t>(n));
    for (auto& x : v) x = dist(gen);
    return v;
}

// ---- bias_grad ----

// Both sum the rows of each column in order, so they agree bitwise.
TEST(BiasGrad, MatchesReference) {
    for (auto [rows, cols] : matrix_shapes()) {
        SCOPED_TRACE(shape_name(rows, cols));
        const auto dy = random_vector(rows * cols, 20);
        std::vector<float> expected(static_cast<size_t>(cols));
        reference::bias_grad(dy.data(), expected.data(), rows, cols);
        for (int threads : kThreadCounts) {
            ThreadCountGuard guard(threads);
            std::vector<float> db(static_cast<size_t>(cols), NAN);  // must be overwritten
            bias_grad(dy.data(), db.data(), rows, cols);
            EXPECT_EQ(db, expected) << threads << " threads";
        }
    }
}

TEST(BiasGrad, SumsColumns) {
    const std::vector<float> dy = {1, 2, 3,  //
                                   10, 20, 30};
    std::vector<float> db(3);
    bias_grad(dy.data(), db.data(), 2, 3);
    EXPECT_EQ(db, (std::vector<float>{11, 22, 33}));
    bias_grad(dy.data(), db.data(), 0, 3);
    EXPECT_EQ(db, (std::vector<float>{0, 0, 0}));
}

// Against a double-precision sum, independent of the summation order.
TEST(BiasGrad, MatchesDoublePrecisionSum) {
    const int64_t rows = 1031, cols = 97;
    const auto dy = random_vector(rows * cols, 21);
    std::vector<float> db(cols), expected(cols);
    bias_grad(dy.data(), db.data(), rows, cols);
    for (int64_t j = 0; j < cols; ++j) {
        double sum = 0;
        for (int64_t i = 0; i < rows; ++i) sum += dy[i * cols + j];
        expected[j] = static_cast<float>(sum);
    }
    expect_close(db, expected, 1e-4f, 1e-4f);
}

// ---- argmax_rows and count_correct ----

TEST(ArgmaxRows, MatchesReference) {
    for (auto [rows, cols] : matrix_shapes()) {
        SCOPED_TRACE(shape_name(rows, cols));
        for (const auto& x : {random_vector(rows * cols, 22), tie_heavy_vector(rows * cols, 23)}) {
            std::vector<int32_t> expected(static_cast<size_t>(rows));
            reference::argmax_rows(x.data(), expected.data(), rows, cols);
            for (int threads : kThreadCounts) {
                ThreadCountGuard guard(threads);
                std::vector<int32_t> out(static_cast<size_t>(rows), -1);
                argmax_rows(x.data(), out.data(), rows, cols);
                EXPECT_EQ(out, expected) << threads << " threads";
            }
        }
    }
}

TEST(ArgmaxRows, TiesPickTheFirst) {
    const std::vector<float> x = {1, 3, 3, 2,     // tie in the middle
                                  5, 5, 5, 5,     // all equal
                                  0, 1, 2, 2,     // tie at the end
                                  -1, -2, -1, -3,  // tie at the start, negative
                                  0, 0, 0, 7};    // unique at the end
    std::vector<int32_t> out(5, -1);
    argmax_rows(x.data(), out.data(), 5, 4);
    EXPECT_EQ(out, (std::vector<int32_t>{1, 0, 2, 0, 3}));
}

TEST(ArgmaxRows, FirstNanWinsAsInNumPy) {
    const float nan = std::numeric_limits<float>::quiet_NaN();
    const std::vector<float> x = {1, nan, 3, nan,  // NumPy: 1 (was 2: the NaN was skipped)
                                  nan, 5, 6, 7,    // NaN first
                                  1, 2, 3, nan,    // NaN last
                                  1, 4, 4, 2};     // no NaN
    std::vector<int32_t> out(4, -1), expected(4, -1);
    argmax_rows(x.data(), out.data(), 4, 4);
    reference::argmax_rows(x.data(), expected.data(), 4, 4);
    EXPECT_EQ(out, (std::vector<int32_t>{1, 0, 3, 1}));
    EXPECT_EQ(expected, out);
}

TEST(CountCorrect, MatchesReferenceAndArgmax) {
    for (auto [rows, cols] : matrix_shapes()) {
        SCOPED_TRACE(shape_name(rows, cols));
        const auto scores = tie_heavy_vector(rows * cols, 24);
        const auto labels = random_labels(rows, cols, 25);
        std::vector<int32_t> argmax(static_cast<size_t>(rows));
        reference::argmax_rows(scores.data(), argmax.data(), rows, cols);
        int64_t manual = 0;
        for (int64_t i = 0; i < rows; ++i) manual += argmax[i] == labels[i];
        EXPECT_EQ(reference::count_correct(scores.data(), labels.data(), rows, cols), manual);
        for (int threads : kThreadCounts) {
            ThreadCountGuard guard(threads);
            EXPECT_EQ(count_correct(scores.data(), labels.data(), rows, cols), manual)
                << threads << " threads";
        }
    }
}

TEST(CountCorrect, CountsMatchingRows) {
    const std::vector<float> scores = {0.1f, 0.9f,  //
                                       0.8f, 0.2f,  //
                                       0.5f, 0.5f};  // tie: argmax 0
    EXPECT_EQ(count_correct(scores.data(), std::vector<int32_t>{1, 0, 0}.data(), 3, 2), 3);
    EXPECT_EQ(count_correct(scores.data(), std::vector<int32_t>{1, 1, 1}.data(), 3, 2), 1);
    EXPECT_EQ(count_correct(scores.data(), std::vector<int32_t>{0, 1, 1}.data(), 3, 2), 0);
}

// ---- gather_rows ----

// Rows of src picked by random indices (with repeats), checked against the
// reference and against a copy made with std::copy.
template <class T>
void check_gather(const std::vector<T>& src, int64_t src_rows, int64_t row_len, int64_t n) {
    const auto index = random_indices(n, src_rows, 26);
    std::vector<T> manual(static_cast<size_t>(n * row_len));
    for (int64_t i = 0; i < n; ++i)
        std::copy(src.begin() + index[i] * row_len, src.begin() + (index[i] + 1) * row_len,
                  manual.begin() + i * row_len);
    std::vector<T> expected(manual.size());
    reference::gather_rows(src.data(), row_len, index.data(), n, expected.data());
    EXPECT_EQ(expected, manual);
    for (int threads : kThreadCounts) {
        ThreadCountGuard guard(threads);
        std::vector<T> dst(manual.size(), T(-7));
        gather_rows(src.data(), row_len, index.data(), n, dst.data());
        EXPECT_EQ(dst, manual) << threads << " threads";
    }
}

TEST(GatherRows, MatchesManualCopy) {
    const int64_t src_rows = 53;
    std::vector<int64_t> row_lens = kAwkwardSizes;
    row_lens.push_back(20011);
    for (int64_t row_len : row_lens) {
        for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{97}, int64_t{1031}}) {
            if (n * row_len > 4'000'000) continue;  // keep the test fast
            SCOPED_TRACE("n = " + std::to_string(n) + ", row_len = " + std::to_string(row_len));
            const auto src = random_vector(src_rows * row_len, 27);
            check_gather(src, src_rows, row_len, n);
            std::vector<int32_t> labels(src.size());
            for (size_t i = 0; i < src.size(); ++i) labels[i] = static_cast<int32_t>(i);
            check_gather(labels, src_rows, row_len, n);
        }
    }
}

}  // namespace
}  // namespace fz
