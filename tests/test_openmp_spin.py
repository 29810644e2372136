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


# The most CPU time any OpenMP worker uses in the 50 ms after a parallel
# region (the most of five tries), in ns. The calling thread is left out: it
# is not a worker, and Linux updates the running thread's own schedstat only
# at scheduler ticks, so its figure carries up to a tick (~4 ms) of time it
# used before the window opened.
SPIN_AFTER_A_REGION = """
import os, threading, time, numpy as np, fromzero as fz
fz.set_num_threads(2)
a = np.ones((256, 256), np.float32)
caller = str(threading.get_native_id())
def cpu_ns():
    return {t: int(open(f"/proc/self/task/{t}/schedstat").read().split()[0])
            for t in os.listdir("/proc/self/task") if t != caller}
spins = []
for _ in range(5):
    fz.ops.matmul(a, a)
    before = cpu_ns(); time.sleep(0.05); after = cpu_ns()
    spins.append(max(after[t] - before[t] for t in after if t in before))
print(max(spins))
"""

SKIP_WITHOUT_SCHEDSTAT = pytest.mark.skipif(
    not fz.ops.has_openmp() or not os.path.exists(f"/proc/{os.getpid()}/schedstat"),
    reason="needs OpenMP and Linux's per-thread schedstat")


@SKIP_WITHOUT_SCHEDSTAT
def test_workers_sleep_soon_after_a_region():
    # libgomp's default: ~9 ms of spinning; fromzero's: ~0.6 ms. (A loaded
    # machine only shortens the spin a worker gets to run.)
    assert int(run(SPIN_AFTER_A_REGION)) < 3_000_000


@SKIP_WITHOUT_SCHEDSTAT
def test_the_measurement_sees_a_worker_that_keeps_spinning():
    # The user's GOMP_SPINCOUNT wins over fromzero's: with 10^10 spins a worker
    # spins through the whole 50 ms window, which the check above must catch.
    assert int(run(SPIN_AFTER_A_REGION, GOMP_SPINCOUNT="10000000000")) > 20_000_000
