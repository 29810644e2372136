"""Print the speed ladder: each kernel's time on every rung, and the speedup
over the rung before it and over pure Python.

    python bench/ladder/run.py                 # about a minute, most of it pure Python
    python bench/ladder/run.py --markdown      # the tables as Markdown (docs/speed-ladder.md)
    python bench/ladder/run.py --kernel matmul --min-time 0.5

Rungs and kernels are described in rungs.py. Each result is checked against
NumPy before it is timed; each time is the best of 5 rounds.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

import fromzero as fz  # noqa: E402
from rungs import (KERNEL_LABELS, KERNELS, RUNGS, Unavailable, cpu_name, make_inputs,  # noqa: E402
                   measure, reference_outputs, threads)


def format_time(seconds):
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds * 1e6:.3g} µs"


def format_ratio(ratio):
    """4,780x, 44.9x, 2.06x, 0.76x, 0.0034x: three significant digits, whole numbers from 100."""
    return f"{ratio:,.0f}x" if ratio >= 100 else f"{ratio:.3g}x" if ratio >= 1 else f"{ratio:.2g}x"


def check(kernel, result, expected):
    result = np.asarray(result, dtype=np.float32)
    if kernel == "matmul":
        ok = np.allclose(result, expected[:len(result)], rtol=1e-4, atol=1e-3)
    else:
        ok = np.array_equal(result, expected[:len(result)])
    if not ok:
        raise AssertionError(f"{kernel}: a rung computed a wrong result")


def ladder(kernel, data, expected, min_time, rungs=RUNGS, log=None):
    """[(rung, seconds or None, note)] for one kernel."""
    rows = []
    for rung in rungs:
        if log:
            log(f"  {KERNEL_LABELS[kernel]}: {rung.label} ...")
        try:
            call, scale, note = rung.prepare(kernel, data)
        except Unavailable as e:
            rows.append((rung, None, f"skipped: {e}"))
            continue
        with threads(rung.threads):
            check(kernel, call(), expected[kernel])
            # Pure Python is slow enough that 3 single calls are plenty.
            seconds = measure(call, min_time=min_time, repeat=3 if rung.key == "python" else 5)
        rows.append((rung, seconds * scale, note))
    return rows


def table(kernel, rows, markdown=False):
    base = next((s for _, s, _ in rows if s is not None), None)
    header = ["rung", "time", "vs previous rung", "vs pure Python", "note"]
    lines = []
    previous = None
    body = []
    for rung, seconds, note in rows:
        if seconds is None:
            body.append([rung.label, "—", "—", "—", note])
            continue
        vs_prev = "" if previous is None else format_ratio(previous / seconds)
        vs_base = "" if base is None or rung is rows[0][0] else format_ratio(base / seconds)
        body.append([rung.label, format_time(seconds), vs_prev, vs_base, note])
        previous = seconds
    if markdown:
        lines.append(f"**{KERNEL_LABELS[kernel]}**\n")
        lines.append("| " + " | ".join(header) + " |")
        lines.append("| --- | ---: | ---: | ---: | --- |")
        lines += ["| " + " | ".join(row) + " |" for row in body]
    else:
        widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]
        lines.append(KERNEL_LABELS[kernel])
        lines.append("  ".join(h.ljust(w) if i in (0, 4) else h.rjust(w)
                               for i, (h, w) in enumerate(zip(header, widths))).rstrip())
        for row in body:
            lines.append("  ".join(c.ljust(w) if i in (0, 4) else c.rjust(w)
                                   for i, (c, w) in enumerate(zip(row, widths))).rstrip())
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kernel", choices=KERNELS, action="append",
                        help="only this kernel (repeatable; default: all)")
    parser.add_argument("--min-time", type=float, default=0.3,
                        help="seconds of timing per rung (default 0.3)")
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables")
    args = parser.parse_args(argv)

    info = fz.info()
    print(f"fromzero {info['version']} ({info['simd']} GEMM, OpenMP {info['openmp']}), "
          f"NumPy {np.__version__}, Python {sys.version.split()[0]}, {cpu_name()}")
    data = make_inputs()
    expected = reference_outputs(data)

    def log(message):
        print(message, file=sys.stderr, flush=True)

    for kernel in args.kernel or KERNELS:
        rows = ladder(kernel, data, expected, args.min_time, log=log)
        print()
        print(table(kernel, rows, markdown=args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
