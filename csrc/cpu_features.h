// cpu_features.h — what the CPU we run on can do, asked once at run time.
//
// One build of fromzero runs on any x86-64: the instruction set is chosen from
// CPUID when the library loads, not when it is compiled.
#pragma once

namespace fz {

struct CpuFeatures {
    bool avx2_fma = false;  // AVX2 and FMA3 (and the OS saves YMM registers)
    bool avx512f = false;   // AVX-512 Foundation (and the OS saves ZMM registers)
};

const CpuFeatures& cpu_features();

}  // namespace fz
