"""Tests for fromzero.datasets.text: the packaged corpora against their README,
the Austen joining, the train/validation split, and damaged copies refused."""

import hashlib
import lzma
import re
import shutil

import numpy as np
import pytest

from fromzero.datasets import text

README = text.PACKAGED_FOLDER / "README.md"


def readme_table():
    """{file: (characters, distinct characters, bytes)} from the README's first table."""
    rows = {}
    for line in README.read_text(encoding="utf-8").splitlines():
        match = re.match(r"\| `([^`]+\.txt)` \|[^|]+\| ([\d,]+) \| ([\d,]+) \| ([\d,]+) \|", line)
        if match:
            rows[match.group(1)] = tuple(int(g.replace(",", "")) for g in match.groups()[1:])
    return rows


def readme_digests():
    """{file: SHA-256} from the README's checksum table."""
    return dict(re.findall(r"\| `([^`]+\.txt)` \| `([0-9a-f]{64})` \|",
                           README.read_text(encoding="utf-8")))


def load_file(relative_name):
    """One packaged file through load_data."""
    if relative_name.startswith("austen/"):
        return text.load_data("austen", novel=relative_name[len("austen/"):-len(".txt")])
    return text.load_data(relative_name[:-len(".txt")])


def test_readme_tables_list_every_packaged_file():
    table, digests = readme_table(), readme_digests()
    sums = dict(reversed(line.split()) for line in
                (text.PACKAGED_FOLDER / "SHA256SUMS").read_text().splitlines() if line.strip())
    assert len(table) == 8
    assert set(table) == set(digests) == set(sums)
    assert digests == sums, "the README's SHA-256 table and SHA256SUMS disagree"
    for name in table:
        assert (text.PACKAGED_FOLDER / (name + ".xz")).is_file()


@pytest.mark.parametrize("relative_name", sorted(readme_table()))
def test_lengths_and_distinct_characters_match_the_readme(relative_name):
    characters, distinct, size = readme_table()[relative_name]
    loaded = load_file(relative_name)
    assert isinstance(loaded, str)
    assert len(loaded) == characters
    assert len(set(loaded)) == distinct
    assert len(loaded.encode("utf-8")) == size
    assert hashlib.sha256(loaded.encode("utf-8")).hexdigest() == readme_digests()[relative_name]


def test_known_content():
    shakespeare = text.load_data("tinyshakespeare")
    assert shakespeare.startswith("First Citizen:\n")
    assert shakespeare.endswith("Whiles thou art waking.\n")
    lines = text.load_data("austen", novel="pride_and_prejudice").split("\n")
    assert lines[0] == "PRIDE AND PREJUDICE"
    assert lines[9].startswith("It is a truth universally acknowledged, that a")
    poems = text.load_data("tang300")
    assert poems.startswith("《") and poems.count("\n作者：") == 313


def test_austen_joins_the_six_novels_in_publication_order():
    joined = text.load_data("austen")
    novels = [text.load_data("austen", novel=name) for name in text.AUSTEN_NOVELS]
    assert joined.split(text.NOVEL_SEPARATOR) == novels
    assert joined == text.NOVEL_SEPARATOR.join(novels)
    assert novels[0].startswith("SENSE AND SENSIBILITY") and novels[-1].startswith("Persuasion")
    assert set(text.NOVEL_SEPARATOR) <= set(novels[0])  # no new character


def test_bad_names_are_refused():
    with pytest.raises(ValueError, match="unknown corpus 'shakespeare'.*tinyshakespeare"):
        text.load_data("shakespeare")
    with pytest.raises(ValueError, match="unknown Austen novel 'Emma'.*emma"):
        text.load_data("austen", novel="Emma")
    with pytest.raises(ValueError, match="novel= applies only to 'austen'"):
        text.load_data("tang300", novel="emma")


def test_train_val_split_is_nanogpts():
    train, val = text.train_val_split(text.load_data("tinyshakespeare"))
    assert (len(train), len(val)) == (1_003_854, 111_540)  # nanoGPT's prepare.py
    ids = np.arange(10)
    train, val = text.train_val_split(ids, train_fraction=0.75)
    assert train.tolist() == [0, 1, 2, 3, 4, 5, 6] and val.tolist() == [7, 8, 9]
    for bad in (0, 1, 1.5, True, "0.9"):
        with pytest.raises(ValueError, match="train_fraction"):
            text.train_val_split(ids, train_fraction=bad)


# --- damaged copies -----------------------------------------------------------

@pytest.fixture
def packaged_copy(tmp_path, monkeypatch):
    """A copy of the packaged folder that load_data reads instead of the real one."""
    folder = tmp_path / "text"
    shutil.copytree(text.PACKAGED_FOLDER, folder)
    monkeypatch.setattr(text, "PACKAGED_FOLDER", folder)
    return folder


def test_flipped_byte_is_refused(packaged_copy):
    path = packaged_copy / "tang300.txt.xz"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"tang300\.txt\.xz is damaged.*reinstall fromzero"):
        text.load_data("tang300")


def test_truncated_file_is_refused(packaged_copy):
    path = packaged_copy / "austen" / "emma.txt.xz"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match=r"emma\.txt\.xz is damaged"):
        text.load_data("austen", novel="emma")
    with pytest.raises(ValueError, match=r"emma\.txt\.xz is damaged"):
        text.load_data("austen")


def test_altered_text_fails_the_checksum(packaged_copy):
    altered = text.load_data("tang300").replace("张九龄", "张九齡", 1)
    (packaged_copy / "tang300.txt.xz").write_bytes(lzma.compress(altered.encode()))
    with pytest.raises(ValueError, match=r"tang300\.txt\.xz is corrupted: SHA-256 of its "
                                         r"text expected a78f4e39.*, found "):
        text.load_data("tang300")


def test_decompression_bomb_is_refused(packaged_copy, monkeypatch):
    monkeypatch.setattr(text, "MAX_TEXT_BYTES", 200_000)  # above tang300's 83,605 bytes
    bomb = lzma.compress(bytes(200_010))
    assert len(bomb) < 1_000
    (packaged_copy / "tang300.txt.xz").write_bytes(bomb)
    with pytest.raises(ValueError, match="does not decompress to a complete text of at most"):
        text.load_data("tang300")


def test_missing_checksum_is_refused(packaged_copy):
    sums = packaged_copy / "SHA256SUMS"
    sums.write_text("".join(line + "\n" for line in sums.read_text().splitlines()
                            if "tang300" not in line))
    with pytest.raises(ValueError, match="lists no checksum for tang300.txt"):
        text.load_data("tang300")
