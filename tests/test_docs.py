"""The documentation runs: every Python sample of the guided tour, in English and Chinese.

For every page in docs/ and docs/zh/, the ```python blocks run in order in one
namespace (a page's later samples use its earlier ones), after a fresh
fz.utils.set_random_seed(0), in a temporary working directory, with one
kernel thread (see fresh_engine). A block whose
fence has the line ``<!-- no-test -->`` right before it is skipped.

The READMEs' python blocks run the same way, with two differences: MNIST is
cut to 1,000 training and 500 test images (so the textbook's 5-epoch program
runs in about a second), and a block that uses a name no earlier block
defines (a fragment such as ``dx = layer.backward(dy)``) is only compiled.
Every README block, run or not, must name only things fromzero has.

Besides running the code, the tests check that the page sets of docs/ and
docs/zh/ are the same and that corresponding pages hold the same code (with
comments removed, so comments may be translated); that every file and every
function or class named in a page's "Where in the code" table exists; that
every repository path written in backticks exists; and that relative links
lead somewhere.
"""

import ast
import builtins
import glob
import io
import re
import textwrap
import tokenize
from pathlib import Path

import pytest

import fromzero as fz

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
ZH = DOCS / "zh"
READMES = [ROOT / "README.md", ROOT / "README.zh-CN.md"]
NO_TEST = "<!-- no-test -->"

# The heading of the table that maps ideas to code, per language.
WHERE_HEADINGS = ("## Where in the code", "## 代码在哪里")


def pages():
    return sorted(DOCS.glob("*.md")) + sorted(ZH.glob("*.md"))


def page_id(path):
    return str(path.relative_to(ROOT))


# ---------------------------------------------------------------- extracting code

def code_blocks(path, language="python"):
    """[(first line number, code, skipped?)] for every ```language block of a page."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        fence = re.match(r"^(\s*)```\s*(\S*)\s*$", lines[i])
        if not fence:
            i += 1
            continue
        indent, lang = fence.group(1), fence.group(2)
        skipped = i > 0 and lines[i - 1].strip() == NO_TEST
        start = i + 1
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            i += 1
        if i == len(lines):
            raise AssertionError(f"{page_id(path)}:{start}: code block is never closed")
        if lang == language:
            code = textwrap.dedent("\n".join(lines[start:i])) if indent else "\n".join(lines[start:i])
            blocks.append((start + 1, code, skipped))
        i += 1
    return blocks


def without_comments(code):
    """The block's tokens minus comments and blank lines: equal for equal code."""
    tokens = tokenize.generate_tokens(io.StringIO(code + "\n").readline)
    return [(t.type, t.string) for t in tokens
            if t.type not in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE)]


def compiled(path, line, code):
    """Compiled so that tracebacks point at the line in the Markdown file."""
    return compile("\n" * (line - 1) + code, str(path), "exec")


# ---------------------------------------------------------------- running pages

@pytest.fixture
def fresh_engine(tmp_path, monkeypatch):
    """A fresh seed, a temporary working directory and one kernel thread.

    One thread, because the samples' problems are tiny: on a busy machine
    OpenMP's spin-waiting threads can make them 10-70 times slower, and no
    sample's result depends on the thread count (page 9 compares 1 and 2
    threads itself). The thread count is restored afterwards.
    """
    monkeypatch.chdir(tmp_path)
    threads = fz.get_num_threads()
    fz.set_num_threads(1)
    fz.utils.set_random_seed(0)
    yield
    fz.set_num_threads(threads)


@pytest.mark.parametrize("path", pages(), ids=page_id)
def test_page_samples_run(path, fresh_engine):
    blocks = code_blocks(path)
    namespace = {"__name__": f"docs_{path.stem.replace('-', '_')}"}
    for line, code, skipped in blocks:
        if not skipped:
            exec(compiled(path, line, code), namespace)


def _mnist_subset(load_data):
    def load_subset(path=None):
        (x_train, y_train), (x_test, y_test) = load_data(path)
        return (x_train[:1000], y_train[:1000]), (x_test[:500], y_test[:500])
    return load_subset


def _stored_and_loaded(tree):
    stored, loaded = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (loaded if isinstance(node.ctx, ast.Load) else stored).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            stored.add(node.name)
            if not isinstance(node, ast.ClassDef):
                stored.update(a.arg for a in ast.walk(node.args) if isinstance(a, ast.arg))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            stored.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            stored.add(node.name)
    return stored, loaded


def _fz_names(tree):
    """Every dotted name fz.a.b... in the code, as a tuple of attribute names."""
    chains = []
    for node in ast.walk(tree):
        parts = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if parts and isinstance(node, ast.Name) and node.id == "fz":
            chains.append(tuple(reversed(parts)))
    return chains


@pytest.mark.parametrize("path", [p for p in READMES if p.exists()], ids=lambda p: p.name)
def test_readme_samples(path, fresh_engine, monkeypatch):
    monkeypatch.setattr(fz.datasets.mnist, "load_data",
                        _mnist_subset(fz.datasets.mnist.load_data))
    namespace = {"__name__": "readme"}
    defined = set(dir(builtins))
    ran = 0
    for line, code, skipped in code_blocks(path):
        tree = ast.parse(code, filename=f"{path.name}:{line}")
        for chain in _fz_names(tree):
            obj = fz
            for i, attr in enumerate(chain):
                assert hasattr(obj, attr), (f"{path.name}:{line}: fz.{'.'.join(chain[:i + 1])} "
                                            f"does not exist")
                obj = getattr(obj, attr)
        stored, loaded = _stored_and_loaded(tree)
        fragment = loaded - stored - defined
        if skipped or fragment:
            continue
        defined |= stored
        exec(compiled(path, line, code), namespace)
        ran += 1
    assert ran or not code_blocks(path), f"{path.name}: no python block could run"


# ---------------------------------------------------------------- English and Chinese agree

def test_every_page_has_a_chinese_translation():
    english = {p.name for p in DOCS.glob("*.md")}
    chinese = {p.name for p in ZH.glob("*.md")}
    assert english == chinese, (f"only in docs/: {sorted(english - chinese)}; "
                                f"only in docs/zh/: {sorted(chinese - english)}")


@pytest.mark.parametrize("path", sorted(DOCS.glob("*.md")), ids=page_id)
def test_translation_has_the_same_code(path):
    translation = ZH / path.name
    if not translation.exists():
        pytest.skip(f"no docs/zh/{path.name} (reported by the test above)")
    english = [without_comments(code) for _, code, _ in code_blocks(path)]
    chinese = [without_comments(code) for _, code, _ in code_blocks(translation)]
    assert len(english) == len(chinese), (f"{path.name}: {len(english)} python blocks in English, "
                                          f"{len(chinese)} in Chinese")
    for n, (en, zh) in enumerate(zip(english, chinese), start=1):
        assert en == zh, f"{path.name}: python block {n} differs between docs/ and docs/zh/"
    skipped_en = [s for _, _, s in code_blocks(path)]
    skipped_zh = [s for _, _, s in code_blocks(translation)]
    assert skipped_en == skipped_zh, f"{path.name}: the {NO_TEST} markers differ"


def test_chinese_readme_has_the_same_code():
    english, chinese = READMES
    en = [without_comments(code) for _, code, _ in code_blocks(english)]
    zh = [without_comments(code) for _, code, _ in code_blocks(chinese)]
    assert en == zh, "README.zh-CN.md's python blocks differ from README.md's"


# ---------------------------------------------------------------- the code the pages name

def _python_defines(path, dotted):
    """True when `dotted` ("f", "Class", "Class.method") is defined or imported in the module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            top.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            top.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.Assign):
            top.update(t.id for t in node.targets if isinstance(t, ast.Name))
    parts = dotted.split(".")
    if len(parts) == 1:
        return parts[0] in top
    classes = [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == parts[0]]
    return any(isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef)) and m.name == parts[1]
               for c in classes for m in c.body)


def _cpp_defines(path, name):
    text = path.read_text(encoding="utf-8")
    if "::" in name:
        return re.search(rf"\b{re.escape(name)}\b", text) is not None
    n = re.escape(name)
    patterns = [rf"\b{n}\s*\(", rf"\b(struct|class|enum class|enum|namespace)\s+{n}\b",
                rf"#define\s+{n}\b", rf"\b{n}\s*=", rf"\b{n}\s*\{{"]
    return any(re.search(p, text) for p in patterns)


def where_rows(path):
    """(line, file, [names]) for every row of the page's "Where in the code" table."""
    rows, inside = [], False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.startswith("## "):
            inside = line.strip() in WHERE_HEADINGS
            continue
        if not inside or not line.startswith("|"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or set(cells[1]) <= set("- :"):
            continue
        file_cell = re.fullmatch(r"`([^`]+)`", cells[1])
        if not file_cell:
            continue  # the header row
        rows.append((number, file_cell.group(1), re.findall(r"`([^`]+)`", cells[2])))
    return rows


@pytest.mark.parametrize("path", pages(), ids=page_id)
def test_where_in_the_code_names_real_code(path):
    rows = where_rows(path)
    assert rows, f"{page_id(path)} has no '{WHERE_HEADINGS[0]}' table"
    for line, file, names in rows:
        source = ROOT / file
        assert source.is_file(), f"{page_id(path)}:{line}: {file} does not exist"
        assert names, f"{page_id(path)}:{line}: no function or class named for {file}"
        defines = _python_defines if source.suffix == ".py" else _cpp_defines
        missing = [n for n in names if not defines(source, n)]
        assert not missing, f"{page_id(path)}:{line}: {file} does not define {missing}"


@pytest.mark.parametrize("path", pages() + [p for p in READMES if p.exists()], ids=page_id)
def test_paths_and_links_exist(path):
    text = path.read_text(encoding="utf-8")
    for quoted in re.findall(r"`((?:csrc|python|tests|docs|bench|examples)/[^`\s:]+)", text):
        assert glob.glob(str(ROOT / quoted)), f"{page_id(path)}: `{quoted}` does not exist"
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        resolved = (path.parent / target.split("#")[0]).resolve()
        assert resolved.exists(), f"{page_id(path)}: the link to {target} leads nowhere"


def test_samples_are_numpy_only():
    """Plots live elsewhere (fz.plot); the tour's samples need nothing but numpy and fromzero."""
    for path in pages():
        for line, code, _ in code_blocks(path):
            assert "matplotlib" not in code, f"{page_id(path)}:{line}: the sample imports matplotlib"
