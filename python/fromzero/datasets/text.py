"""Small text corpora, shipped with fromzero so they work offline.

Three corpora, xz-compressed in data/text/ next to this module; its README.md
gives their provenance and licences, SHA256SUMS the SHA-256 of each
decompressed file, verified on every load:

- ``"tinyshakespeare"``: Karpathy's tiny-shakespeare, 1,115,394 characters, 65
  distinct — the corpus of nanoGPT's shakespeare_char.
- ``"austen"``: Jane Austen's six novels (public domain), in publication order.
- ``"tang300"``: 唐诗三百首, 313 Tang poems in simplified Chinese (29,577
  characters, 2,579 distinct; the transcription is GPL-3.0-or-later, see the
  README).

    text = fz.datasets.text.load_data("tinyshakespeare")
    train, val = fz.datasets.text.train_val_split(text)   # first 90% / last 10%
"""

import hashlib
import lzma
import numbers
from pathlib import Path

PACKAGED_FOLDER = Path(__file__).parent / "data" / "text"

NAMES = ("tinyshakespeare", "austen", "tang300")

# Jane Austen's novels in publication order (file names in data/text/austen/).
AUSTEN_NOVELS = ("sense_and_sensibility", "pride_and_prejudice", "mansfield_park", "emma",
                 "northanger_abbey", "persuasion")

# What load_data("austen") puts between two novels: eight newlines. No novel
# has a run of more than six, so text.split(NOVEL_SEPARATOR) gives the six
# novels back, and the separator adds no character to a vocabulary.
NOVEL_SEPARATOR = "\n" * 8

# The largest text is 1.1 MB; decompression stops past this many bytes, so a
# damaged or hostile file cannot make us allocate without bound.
MAX_TEXT_BYTES = 16 << 20


def load_data(name, novel=None):
    """Return the corpus `name` as one str.

    name: "tinyshakespeare", "austen" or "tang300".
    novel: for "austen" only: None for all six novels joined in publication
      order with NOVEL_SEPARATOR between them, or one of AUSTEN_NOVELS
      (e.g. "emma") for that novel alone.

    The packaged file is decompressed and its SHA-256 checked against
    data/text/SHA256SUMS; a damaged copy raises ValueError.
    """
    if not isinstance(name, str) or name not in NAMES:
        raise ValueError(f"load_data: unknown corpus {name!r}; known: {', '.join(NAMES)}")
    if name != "austen":
        if novel is not None:
            raise ValueError(f"load_data: novel= applies only to 'austen', not {name!r}")
        return _read_text(f"{name}.txt")
    if novel is None:
        return NOVEL_SEPARATOR.join(_read_text(f"austen/{title}.txt") for title in AUSTEN_NOVELS)
    if novel not in AUSTEN_NOVELS:
        raise ValueError(f"load_data: unknown Austen novel {novel!r}; known: "
                         f"{', '.join(AUSTEN_NOVELS)}")
    return _read_text(f"austen/{novel}.txt")


def train_val_split(data, train_fraction=0.9):
    """(data[:n], data[n:]) with n = int(len(data) * train_fraction).

    nanoGPT's split: the first 90% of a text (or of its token array) for
    training, the last 10% for validation — contiguous, not shuffled, so the
    validation text is unseen prose rather than windows overlapping training.
    Works on str, lists and NumPy arrays alike.
    """
    if (isinstance(train_fraction, bool) or not isinstance(train_fraction, numbers.Real)
            or not 0.0 < train_fraction < 1.0):
        raise ValueError(f"train_val_split: train_fraction must be a number in (0, 1), "
                         f"got {train_fraction!r}")
    n = int(len(data) * train_fraction)
    return data[:n], data[n:]


def _read_text(relative_name):
    """The packaged file relative_name (without .xz), checked, as str."""
    return _read_checked(PACKAGED_FOLDER / relative_name, _expected_digest(relative_name))


def _expected_digest(relative_name):
    for line in (PACKAGED_FOLDER / "SHA256SUMS").read_text().splitlines():
        if line.strip():
            digest, listed = line.split()
            if listed == relative_name:
                return digest
    raise ValueError(f"{PACKAGED_FOLDER / 'SHA256SUMS'} lists no checksum for {relative_name}; "
                     f"reinstall fromzero")


def _read_checked(path, expected_digest):
    compressed = path.with_name(path.name + ".xz")
    decompressor = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
    try:
        data = decompressor.decompress(compressed.read_bytes(), max_length=MAX_TEXT_BYTES + 1)
    except lzma.LZMAError as error:
        raise ValueError(f"packaged file {compressed} is damaged ({error}); "
                         f"reinstall fromzero") from error
    if len(data) > MAX_TEXT_BYTES or not decompressor.eof:
        raise ValueError(f"packaged file {compressed} is damaged: it does not decompress to "
                         f"a complete text of at most {MAX_TEXT_BYTES} bytes; reinstall fromzero")
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected_digest:
        raise ValueError(f"packaged file {compressed} is corrupted: SHA-256 of its text expected "
                         f"{expected_digest}, found {digest}; reinstall fromzero")
    return data.decode("utf-8")
