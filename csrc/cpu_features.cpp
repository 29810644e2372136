#include "cpu_features.h"

namespace fz {

static CpuFeatures detect() {
    CpuFeatures f;
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    // GCC's __builtin_cpu_supports checks CPUID and, through XGETBV, that the
    // operating system saves the wide registers on context switches.
    __builtin_cpu_init();
    f.avx2_fma = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    f.avx512f = f.avx2_fma && __builtin_cpu_supports("avx512f");
#endif
    return f;
}

const CpuFeatures& cpu_features() {
    static const CpuFeatures features = detect();
    return features;
}

}  // namespace fz
