// conv_window.h — where a sliding window lands in the image (internal to the
// convolution and pooling kernels, conv.cpp and conv2d.cpp).
#pragma once
#include <algorithm>
#include <cstdint>

#include "conv.h"

namespace fz {

// The part of the window at output (oh, ow) that lies inside the image: window
// rows [i_lo, i_hi) and columns [j_lo, j_hi). Window cell (i, j) reads input
// (ih0 + i, iw0 + j); the cells outside those ranges are padding.
struct Clip {
    int64_t ih0, iw0, i_lo, i_hi, j_lo, j_hi;
    int64_t count() const { return (i_hi - i_lo) * (j_hi - j_lo); }  // real inputs covered
};

inline Clip clip_window(const Window2d& g, int64_t oh, int64_t ow) {
    Clip c;
    c.ih0 = oh * g.sh - g.pad_top;
    c.iw0 = ow * g.sw - g.pad_left;
    c.i_lo = std::max<int64_t>(0, -c.ih0);
    c.i_hi = std::min<int64_t>(g.kh, g.h - c.ih0);
    c.j_lo = std::max<int64_t>(0, -c.iw0);
    c.j_hi = std::min<int64_t>(g.kw, g.w - c.iw0);
    return c;
}

// Offset inside one image of input pixel (ih, iw), channel 0.
inline int64_t pixel(const Window2d& g, int64_t ih, int64_t iw) { return (ih * g.w + iw) * g.c; }

}  // namespace fz
