// cpu_features.h — what the CPU we run on can do, asked once at run time.
//
// One build of fromzero runs on any x86-64: the instruction set is chosen from
// CPUID when the library loads, not when it is compiled, and so are the GEMM's
// cache blocks, from the cache sizes read here.
#pragma once
#include <cstdint>

namespace fz {

// Data cache sizes in bytes, as one core sees them. l3 is the share of one
// core (the L3 divided by the logical CPUs that share it), since every core
// runs its own GEMM block at once. 0 when unknown.
struct CacheSizes {
    int64_t l1d = 0;
    int64_t l2 = 0;
    int64_t l3 = 0;
    const char* source = "none";  // where the sizes came from: "cpuid", "sysconf", "default"
};

struct CpuFeatures {
    bool avx2_fma = false;  // AVX2 and FMA3 (and the OS saves YMM registers)
    bool avx512f = false;   // AVX-512 Foundation (and the OS saves ZMM registers)
    CacheSizes caches;
};

const CpuFeatures& cpu_features();

// The caches as CPUID describes them (leaf 4 on Intel, 0x8000001D on AMD),
// else as glibc's sysconf reports them, else typical sizes (32 KiB, 1 MiB,
// 2 MiB per core) so that callers always get usable numbers.
CacheSizes detect_cache_sizes();

}  // namespace fz
