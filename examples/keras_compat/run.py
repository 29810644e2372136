"""Run the Keras programs of this folder on fromzero — or on Keras itself.

Each program is an ordinary Keras 3 program whose import lines say
`fromzero` where Keras's say `keras` (``import fromzero as keras``,
``from fromzero import layers``); nothing else differs. This runner checks
that, runs each program in its own process and working directory, and reads
the "test accuracy: ..." line each one prints last:

    python examples/keras_compat/run.py                      # every program on fromzero, all the data
    python examples/keras_compat/run.py --subset 300         # on the first 300 training images (CI)
    python examples/keras_compat/run.py --engine keras       # the same programs on Keras (KERAS_BACKEND=torch)
    python examples/keras_compat/run.py --compare mlp_mnist  # both engines, side by side

Keras's own dataset loaders download; here both engines get fromzero's
bundled MNIST and the system's Fashion-MNIST (the same arrays), so the run
is offline and the comparison fair. Keras is not a dependency of fromzero:
install it separately (`pip install keras torch`) for --engine keras.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
IMPORT_LINES = re.compile(r"^(import fromzero as keras|from fromzero import .*)$", re.M)

# What runs in the child: the data loaders (sliced with --subset), then the
# program itself, its import lines switched to keras for --engine keras.
BOOTSTRAP = r"""
import os, re, sys
path, engine, subset = sys.argv[1], sys.argv[2], int(sys.argv[3])
import fromzero as fz

def sliced(load):
    def load_data(*args, **kwargs):
        (x_train, y_train), (x_test, y_test) = load()
        if subset:
            test = max(subset // 3, 100)
            return (x_train[:subset], y_train[:subset]), (x_test[:test], y_test[:test])
        return (x_train, y_train), (x_test, y_test)
    return load_data

source = open(path, encoding="utf-8").read()
if engine == "keras":
    import keras
    target = keras.datasets
    source = re.sub(r"^import fromzero as keras$", "import keras", source, flags=re.M)
    source = re.sub(r"^from fromzero import ", "from keras import ", source, flags=re.M)
else:
    target = fz.datasets
target.mnist.load_data = sliced(fz.datasets.mnist.load_data)
target.fashion_mnist.load_data = sliced(fz.datasets.fashion_mnist.load_data)
exec(compile(source, path, "exec"), {"__name__": "__main__", "__file__": path})
"""


def programs():
    return sorted(p.stem for p in HERE.glob("*.py") if p.name != "run.py")


def check_imports(path):
    """The program names fromzero only in its import lines."""
    text = path.read_text(encoding="utf-8")
    if "import fromzero as keras" not in text:
        raise ValueError(f"{path.name}: no 'import fromzero as keras' line")
    rest = IMPORT_LINES.sub("", text)
    if "fromzero" in rest:
        line = next(l for l in rest.splitlines() if "fromzero" in l)
        raise ValueError(f"{path.name}: 'fromzero' outside the import lines: {line.strip()!r}")


def run(name, engine, subset, timeout):
    """(test accuracy, seconds, output) of one program on one engine."""
    path = HERE / f"{name}.py"
    check_imports(path)
    env = dict(os.environ, KERAS_BACKEND="torch", PYTHONWARNINGS="ignore")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"keras-compat-{name}-") as folder:
        result = subprocess.run([sys.executable, "-c", BOOTSTRAP, str(path), engine, str(subset)],
                                cwd=folder, env=env, capture_output=True, text=True,
                                timeout=timeout)
    seconds = time.perf_counter() - start
    output = result.stdout + result.stderr
    if result.returncode != 0:
        raise RuntimeError(f"{name} failed on {engine}:\n{output[-3000:]}")
    found = re.findall(r"test accuracy: ([0-9.]+)", result.stdout)
    if not found:
        raise RuntimeError(f"{name} printed no 'test accuracy' on {engine}:\n{output[-3000:]}")
    return float(found[-1]), seconds, output


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("programs", nargs="*", help=f"default: all ({', '.join(programs())})")
    parser.add_argument("--engine", choices=["fromzero", "keras"], default="fromzero")
    parser.add_argument("--compare", action="store_true", help="run on both engines")
    parser.add_argument("--subset", type=int, default=0,
                        help="use the first N training images (and N/3 test images)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per program")
    args = parser.parse_args(argv)
    names = args.programs or programs()
    engines = ["fromzero", "keras"] if args.compare else [args.engine]
    rows, failed = [], 0
    for name in names:
        row = [name]
        for engine in engines:
            try:
                accuracy, seconds, _ = run(name, engine, args.subset, args.timeout)
            except (RuntimeError, subprocess.TimeoutExpired) as e:
                print(f"{name} on {engine}: FAILED\n{str(e)[-2000:]}", flush=True)
                row += [None, None]
                failed += 1
                continue
            print(f"{name} on {engine}: test accuracy {accuracy:.4f} ({seconds:.0f} s)", flush=True)
            row += [accuracy, seconds]
        rows.append(row)
    print()
    header = "| program | " + " | ".join(f"{e} accuracy | {e} s" for e in engines)
    print(header + (" | difference |" if args.compare else " |"))
    print("|" + " --- |" * (1 + 2 * len(engines) + args.compare))
    for row in rows:
        cells = [row[0]] + ["failed" if v is None else f"{v:.4f}" if i % 2 == 0 else f"{v:.0f}"
                            for i, v in enumerate(row[1:])]
        if args.compare:
            both = row[1] is not None and row[3] is not None
            cells.append(f"{row[1] - row[3]:+.4f}" if both else "—")
        print("| " + " | ".join(cells) + " |")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
