// cpu_features.cpp — instruction sets and cache sizes, from CPUID.
#include "cpu_features.h"

#include <unistd.h>

#include <algorithm>

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#include <cpuid.h>
#define FZ_HAVE_CPUID 1
#endif

namespace fz {

namespace {

#ifdef FZ_HAVE_CPUID
// Walks a "deterministic cache parameters" leaf — 4 on Intel, 0x8000001D on
// AMD, both with the same layout — one sub-leaf per cache until type 0:
//   EAX[4:0] type (1 data, 2 instruction, 3 unified), EAX[7:5] level,
//   EAX[25:14] + 1 logical CPUs sharing it,
//   EBX: line size, partitions and ways (each minus 1), ECX + 1 sets.
// size = ways · partitions · line size · sets.
bool read_cache_leaf(unsigned leaf, CacheSizes& out) {
    bool found = false;
    for (unsigned sub = 0; sub < 16; ++sub) {
        unsigned a, b, c, d;
        __cpuid_count(leaf, sub, a, b, c, d);
        const unsigned type = a & 0x1f, level = (a >> 5) & 0x7;
        if (type == 0) break;
        if (type == 2) continue;  // instruction cache
        const int64_t ways = ((b >> 22) & 0x3ff) + 1, partitions = ((b >> 12) & 0x3ff) + 1;
        const int64_t line = (b & 0xfff) + 1, sets = int64_t{c} + 1;
        const int64_t size = ways * partitions * line * sets;
        const int64_t sharing = ((a >> 14) & 0xfff) + 1;
        if (level == 1) out.l1d = size;
        if (level == 2) out.l2 = size;
        if (level == 3) out.l3 = size / sharing;
        found = true;
    }
    return found && out.l1d > 0 && out.l2 > 0;
}

bool cpuid_cache_sizes(CacheSizes& out) {
    unsigned a, b, c, d;
    if (__get_cpuid_max(0, nullptr) >= 4 && read_cache_leaf(4, out)) return true;
    // AMD: leaf 0x8000001D exists when CPUID 0x80000001 ECX bit 22 (TopologyExtensions) is set.
    if (__get_cpuid_max(0x80000000, nullptr) >= 0x8000001D && __get_cpuid(0x80000001, &a, &b, &c, &d) &&
        (c & (1u << 22)) && read_cache_leaf(0x8000001D, out))
        return true;
    return false;
}
#endif

bool sysconf_cache_sizes(CacheSizes& out) {
#if defined(_SC_LEVEL1_DCACHE_SIZE) && defined(_SC_LEVEL2_CACHE_SIZE) && defined(_SC_LEVEL3_CACHE_SIZE)
    out.l1d = std::max<long>(0, sysconf(_SC_LEVEL1_DCACHE_SIZE));
    out.l2 = std::max<long>(0, sysconf(_SC_LEVEL2_CACHE_SIZE));
    out.l3 = std::max<long>(0, sysconf(_SC_LEVEL3_CACHE_SIZE));  // the whole L3: no sharing count
    return out.l1d > 0 && out.l2 > 0;
#else
    (void)out;
    return false;
#endif
}

CpuFeatures detect() {
    CpuFeatures f;
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    // GCC's __builtin_cpu_supports checks CPUID and, through XGETBV, that the
    // operating system saves the wide registers on context switches.
    __builtin_cpu_init();
    f.avx2_fma = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    f.avx512f = f.avx2_fma && __builtin_cpu_supports("avx512f");
#endif
    f.caches = detect_cache_sizes();
    return f;
}

}  // namespace

CacheSizes detect_cache_sizes() {
    CacheSizes s;
#ifdef FZ_HAVE_CPUID
    if (cpuid_cache_sizes(s)) {
        s.source = "cpuid";
        return s;
    }
    s = CacheSizes{};
#endif
    if (sysconf_cache_sizes(s)) {
        s.source = "sysconf";
        return s;
    }
    return CacheSizes{32 << 10, 1 << 20, 2 << 20, "default"};
}

const CpuFeatures& cpu_features() {
    static const CpuFeatures features = detect();
    return features;
}

}  // namespace fz
