"""How long fromzero's OpenMP workers spin after a parallel region.

libgomp (GCC's OpenMP) spins about 9 ms by default before a waiting worker
sleeps, taking that time from whatever shares its core; `import fromzero`
makes it ~0.6 ms (GOMP_SPINCOUNT, read once as libgomp loads; see
fromzero/__init__.py), unless the user set GOMP_SPINCOUNT or OMP_WAIT_POLICY,
and leaves the environment as it found it. Each check runs in a fresh
interpreter, where fromzero loads libgomp.
"""

import os
import subprocess
import sys

import pytest

import fromzero as fz


def run(code, **env):
    clean = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    return subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True,
                          text=True, check=True, timeout=120).stdout.strip()


def test_the_environment_is_left_as_it_was():
    code = "import os, fromzero; print(os.environ.get('GOMP_SPINCOUNT'), os.environ.get('OMP_WAIT_POLICY'))"
    assert run(code) == "None None"
    assert run(code, GOMP_SPINCOUNT="123") == "123 None"
    assert run(code, OMP_WAIT_POLICY="active") == "None active"


# The CPU time OpenMP's workers use in the 0.1 s after a parallel region (the
# busiest worker; the median of five tries), in ns. The calling thread is not
# a worker and is left out. Each thread's time is read from its own CPU-time
# clock (Linux's MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED)), which, unlike
# /proc's schedstat, includes the slice a thread is running at that moment.
SPIN_AFTER_A_REGION = """
import os, statistics, threading, time, numpy as np, fromzero as fz
fz.set_num_threads(2)
a = np.ones((256, 256), np.float32)
caller = threading.get_native_id()
def cpu_ns():
    return {t: time.clock_gettime_ns((~t << 3) | 6)
            for t in map(int, os.listdir("/proc/self/task")) if t != caller}
spins = []
for _ in range(5):
    fz.ops.matmul(a, a)
    before = cpu_ns(); time.sleep(0.1); after = cpu_ns()
    spins.append(max(after[t] - before[t] for t in after if t in before))
print(statistics.median(spins))
"""

SKIP_WITHOUT_THREAD_CLOCKS = pytest.mark.skipif(
    not fz.ops.has_openmp() or not sys.platform.startswith("linux"),
    reason="needs OpenMP and Linux's per-thread CPU-time clocks")


@SKIP_WITHOUT_THREAD_CLOCKS
def test_workers_spin_far_less_than_libgomps_default():
    # A ratio, not a time: how long a spin lasts depends on the CPU (a pause
    # instruction takes ~10 cycles on some, ~140 on others) and on how much
    # CPU the machine's other programs leave, and both runs share that.
    # 300,000 spins (libgomp's default) against fromzero's 20,000: ~15x here.
    ours = int(run(SPIN_AFTER_A_REGION))
    libgomps = int(run(SPIN_AFTER_A_REGION, GOMP_SPINCOUNT="300000"))
    assert libgomps > 3 * ours, (ours, libgomps)
