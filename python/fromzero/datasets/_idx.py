"""Read IDX files, the array format of MNIST and Fashion-MNIST.

An IDX file is a big-endian header followed by the array's bytes, row-major:

    magic    4 bytes 0x00 0x00 <type> <ndim>; type 0x08 means unsigned bytes
    sizes    ndim 32-bit unsigned integers, the first one the number of items
    data     prod(sizes) bytes

So 0x00000803 starts an image file (N, rows, cols) and 0x00000801 a label
file (N,). A name ending in ".gz" means the whole file is gzip-compressed.

The header is not trusted: it is checked against the expected geometry, and
data is read in chunks up to the size it claims, so a damaged or hostile file
raises ValueError instead of making a buffer as large as its header says.
"""

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np

UNSIGNED_BYTE_TYPE = 0x08
# Deflate expands data at most 1032:1, so a gzip file can decompress to at
# most 1032 times its own size: a header claiming more is lying.
MAX_DEFLATE_RATIO = 1032
READ_CHUNK_BYTES = 1 << 20


def read_idx(path, item_shape):
    """Read an IDX file of unsigned bytes as a uint8 array of shape (N, *item_shape).

    `item_shape` is the shape of one item, e.g. (28, 28) for images or ()
    for labels. The data must be exactly as long as the header says.
    Raises ValueError naming the file and what was expected and found.
    """
    path = Path(path)
    is_gzip = path.suffix == ".gz"
    opener = gzip.open if is_gzip else open
    try:
        with opener(path, "rb") as stream:
            shape = _read_header(stream, path, tuple(item_shape))
            data_bytes = math.prod(shape)
            if is_gzip:
                _check_fits_in_gzip(path, shape, data_bytes)
            # One byte more than expected tells an over-long file from an exact one.
            data = _read_at_most(stream, data_bytes + 1)
    except (EOFError, zlib.error, gzip.BadGzipFile) as error:
        raise ValueError(f"{path}: damaged gzip data: {error}") from error
    needs = f"header shape {shape} needs {data_bytes} data bytes"
    if len(data) < data_bytes:
        raise ValueError(f"{path}: data truncated: {needs}, found {len(data)}")
    if len(data) > data_bytes:
        raise ValueError(f"{path}: data too long: {needs}, found extra bytes after them")
    return np.frombuffer(data, dtype=np.uint8).reshape(shape)


def _read_header(stream, path, item_shape):
    """Check the magic number and sizes; return the array shape they declare."""
    ndim = 1 + len(item_shape)
    expected_magic = (UNSIGNED_BYTE_TYPE << 8) | ndim
    (magic,) = struct.unpack(">I", _read_exactly(stream, 4, path, "magic number"))
    if magic != expected_magic:
        raise ValueError(f"{path}: bad magic number: expected 0x{expected_magic:08x} "
                         f"(unsigned bytes, {ndim} dimensions), found 0x{magic:08x}")
    shape = struct.unpack(f">{ndim}I", _read_exactly(stream, 4 * ndim, path, "sizes"))
    if shape[1:] != item_shape:
        raise ValueError(f"{path}: wrong item shape: expected {_format(item_shape)}, "
                         f"found {_format(shape[1:])}")
    return shape


def _check_fits_in_gzip(path, shape, data_bytes):
    """Reject a header claiming more data than the compressed file can expand to."""
    compressed_bytes = path.stat().st_size
    if data_bytes > MAX_DEFLATE_RATIO * compressed_bytes:
        raise ValueError(f"{path}: header shape {shape} needs {data_bytes} data bytes, "
                         f"more than a {compressed_bytes}-byte gzip file can hold")


def _read_exactly(stream, size, path, what):
    """Read `size` header bytes; a shorter read means the header is cut off."""
    chunk = stream.read(size)
    if len(chunk) != size:
        raise ValueError(f"{path}: truncated header: {what} needs {size} bytes, "
                         f"found {len(chunk)}")
    return chunk


def _read_at_most(stream, limit):
    """Read up to `limit` bytes, growing the buffer only as data arrives.

    stream.read(limit) would allocate `limit` bytes up front, which is what
    a bogus header must not be able to make us do.
    """
    data = bytearray()
    while len(data) < limit:
        chunk = stream.read(min(READ_CHUNK_BYTES, limit - len(data)))
        if not chunk:
            break
        data += chunk
    return data


def _format(shape):
    return "x".join(map(str, shape))
