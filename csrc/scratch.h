// scratch.h — grow-only work buffers, so a training loop allocates once.
#pragma once
#include <cstdint>
#include <vector>

namespace fz {

// buffer.data() with room for at least n values. The buffer only grows, so a
// thread_local one is allocated on the first step and reused on every later one.
template <class T>
T* scratch(std::vector<T>& buffer, int64_t n) {
    if (buffer.size() < static_cast<size_t>(n)) buffer.resize(static_cast<size_t>(n));
    return buffer.data();
}

}  // namespace fz
