"""Coverage-guided fuzzing of the IDX reader (fromzero/datasets/_idx.py) with atheris.

Every input is written to a file, raw and gzipped (the reader chooses by the
".gz" suffix), and read as images (N, 28, 28), labels (N,) and a small
(N, 2, 3) shape. The property: read_idx returns a uint8 array of the declared
item shape or raises ValueError; any other exception is a finding (atheris
stops and saves the input as crash-<hash>). Memory is bounded by libFuzzer's
-rss_limit_mb (2 GB by default): a header that made the reader allocate what
it claims would trip it.

    pip install atheris
    python fuzz/fuzz_idx.py -atheris_runs=1000000             # a million inputs
    python fuzz/fuzz_idx.py fuzz/corpus/idx -max_total_time=600  # keep a corpus, 10 minutes
"""

import gzip
import os
import struct
import tempfile

import atheris
from harness import fuzz_main

from fromzero.datasets import _idx  # noqa: E402

# Coverage feedback from the reader's own functions and gzip's header parsing
# and reading (fromzero and NumPy are not instrumented: it would slow every run).
for _name in ("read_idx", "_read_header", "_check_fits_in_gzip", "_read_exactly", "_read_at_most"):
    setattr(_idx, _name, atheris.instrument_func(getattr(_idx, _name)))
gzip._read_gzip_header = atheris.instrument_func(gzip._read_gzip_header)
gzip._GzipReader.read = atheris.instrument_func(gzip._GzipReader.read)
read_idx = _idx.read_idx

FOLDER = tempfile.mkdtemp(prefix="fz-atheris-idx-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
RAW, GZ = os.path.join(FOLDER, "input-idx-ubyte"), os.path.join(FOLDER, "input-idx-ubyte.gz")
ITEM_SHAPES = [(28, 28), (), (2, 3)]


def check(path, item_shape):
    try:
        array = read_idx(path, item_shape)
    except ValueError:
        return
    assert array.dtype.name == "uint8" and array.shape[1:] == item_shape, (array.dtype, array.shape)


def test_one_input(data):
    if not data:
        return
    item_shape = ITEM_SHAPES[data[0] % len(ITEM_SHAPES)]
    content = data[1:]
    with open(RAW, "wb") as f:
        f.write(content)
    check(RAW, item_shape)
    # The same bytes gzipped (a valid stream around them), and as a .gz file as is.
    with open(GZ, "wb") as f:
        f.write(gzip.compress(content, compresslevel=1))
    check(GZ, item_shape)
    with open(GZ, "wb") as f:
        f.write(content)
    check(GZ, item_shape)


def seeds():
    """Valid files for a starting corpus: labels, small items, one image."""
    out = []
    for tag, dims in ((1, (4,)), (2, (3, 2, 3)), (0, (1, 28, 28))):
        count = 1
        for d in dims:
            count *= d
        header = struct.pack(f">I{len(dims)}I", 0x800 | len(dims), *dims)
        out.append(bytes([tag]) + header + bytes(i % 256 for i in range(count)))
    return out


if __name__ == "__main__":
    fuzz_main(test_one_input, seeds(), "idx")
