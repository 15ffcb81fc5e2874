"""The notebooks as files: their class cells equal vitlib, twins share headings, outputs are clean.

nbval executes the notebooks themselves (`pytest` collects notebooks/ with --nbval-lax); these
tests read the stored .ipynb files. Each check is also run on a deliberately broken copy in
tmp_path, to prove it can fail.
"""

import json
import re
from pathlib import Path

import pytest
from nbval.plugin import get_sanitize_patterns

from vitlib import nbsync

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
TORCH = sorted((ROOT / "notebooks").glob("*_torch.ipynb"))
PAIRS = [(t, t.with_name(t.name.replace("_torch.ipynb", "_jax.ipynb"))) for t in TORCH]
# Notebooks that import both frameworks, and so have no twin.
SINGLES = ("6_frameworks_side_by_side.ipynb",)
CHECK = "# NBVAL_CHECK_OUTPUT"
# Absolute paths of the machine that ran the notebook must not reach the stored outputs.
MACHINE_PATH = re.compile(r"(/root/|/home/[^/\s]+/|/tmp/|/work/|/Users/[^/\s]+/|[A-Z]:\\Users\\)")


def ids(paths):
    return [p.name for p in paths]


def load(path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def text(cell):
    s = cell.get("source", "")
    return "".join(s) if isinstance(s, list) else s


def code_cells(path):
    return [c for c in load(path)["cells"] if c["cell_type"] == "code"]


def output_texts(cell):
    """Every piece of text in a code cell's stored outputs (images excluded)."""
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            yield "".join(out["text"]) if isinstance(out["text"], list) else out["text"]
        elif out.get("output_type") == "error":
            yield "\n".join([out.get("ename", ""), out.get("evalue", "")] + out.get("traceback", []))
        for mime, value in out.get("data", {}).items():
            if mime.startswith("text/") or mime.endswith("json"):
                yield "".join(value) if isinstance(value, list) else str(value)


def write_copy(path, tmp_path, edit):
    """Copy a notebook into tmp_path, apply `edit` to its JSON, return the copy's path."""
    nb = load(path)
    edit(nb)
    copy = tmp_path / path.name
    copy.write_text(json.dumps(nb, indent=1), encoding="utf-8")
    return copy


# The notebook set itself.

def test_the_notebooks_come_in_pairs():
    assert len(PAIRS) >= 2, f"expected at least the patch embedding and encoder block pairs, got {ids(TORCH)}"
    names = {p.name for p in NOTEBOOKS}
    for single in SINGLES:
        assert single in names, f"{single} is listed in SINGLES but missing"
    for p in NOTEBOOKS:
        if p.name in SINGLES:
            assert not p.name.endswith(("_torch.ipynb", "_jax.ipynb")), \
                f"{p.name} is listed as a single notebook but named as a twin"
            continue
        assert p.name.endswith(("_torch.ipynb", "_jax.ipynb")), f"{p.name} is not part of a pair"
        stem = p.name.rsplit("_", 1)[0]
        for twin in (f"{stem}_torch.ipynb", f"{stem}_jax.ipynb"):
            assert twin in names, f"{p.name} has no twin {twin}"


# (a) Every "# vitlib source:" cell is exactly the vitlib code.

@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids(NOTEBOOKS))
def test_source_cells_equal_vitlib(path):
    assert nbsync.check(path) == []


def test_each_pair_shows_its_classes_from_both_frameworks():
    for torch_nb, jax_nb in PAIRS:
        def shown(path, framework):
            firsts = [text(c).split("\n", 1)[0] for c in code_cells(path)]
            return [f.split()[-1] for f in firsts
                    if f.startswith(f"{nbsync.MARKER} vitlib/{framework}/")]
        assert shown(torch_nb, "torch") == shown(jax_nb, "jax"), (torch_nb.name, jax_nb.name)


def test_an_edited_source_cell_is_detected_and_synced_back(tmp_path):
    path = next(p for p in NOTEBOOKS if any(text(c).startswith(nbsync.MARKER) for c in code_cells(p)))

    def edit(nb):
        cell = next(c for c in nb["cells"] if text(c).startswith(nbsync.MARKER))
        cell["source"] = text(cell).replace("    def ", "    def  ", 1)  # a one-character drift
        cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "kept\n"}]

    copy = write_copy(path, tmp_path, edit)
    problems = nbsync.check(copy)
    assert len(problems) == 1 and "differs from vitlib" in problems[0]
    assert nbsync.main(["--check", str(copy)]) == 1
    assert nbsync.sync(copy) == 1
    assert nbsync.check(copy) == []
    assert nbsync.sync(copy) == 0  # nothing left to rewrite
    synced = next(c for c in load(copy)["cells"] if text(c).startswith(nbsync.MARKER))
    assert synced["outputs"][0]["text"] == "kept\n"


def test_source_cells_are_read_with_ast_like_inspect(tmp_path):
    module = tmp_path / "mod.py"
    module.write_text("import os\n\n\n@staticmethod\n@property\nclass A:\n    x = 1\n\n    def f(self):\n"
                      "        return 2\n\n\ndef g():\n    pass\n")
    assert nbsync.definition_source("mod.py", "A", root=tmp_path) == (
        "@staticmethod\n@property\nclass A:\n    x = 1\n\n    def f(self):\n        return 2\n")
    assert nbsync.source_cell("mod.py", "g", root=tmp_path) == "# vitlib source: mod.py g\ndef g():\n    pass"
    with pytest.raises(ValueError, match="named 'B'"):
        nbsync.definition_source("mod.py", "B", root=tmp_path)
    with pytest.raises(ValueError, match="relative to the repository root"):
        nbsync.definition_source("missing.py", "A", root=tmp_path)


def test_a_bad_marker_is_reported(tmp_path):
    nb = {"cells": [{"cell_type": "code", "source": "# vitlib source: vitlib/torch/model.py\nx = 1",
                     "outputs": [], "metadata": {}},
                    {"cell_type": "code", "source": "# vitlib source: vitlib/torch/model.py Nope\n",
                     "outputs": [], "metadata": {}}],
            "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "bad.ipynb"
    path.write_text(json.dumps(nb))
    problems = nbsync.check(path)
    assert len(problems) == 2
    assert "not of the form" in problems[0] and "'Nope'" in problems[1]
    with pytest.raises(ValueError, match="code cell 0"):
        nbsync.sync(path)


# (b) The twins of a pair have the same headings in the same order.

@pytest.mark.parametrize("torch_nb, jax_nb", PAIRS, ids=ids(TORCH))
def test_twins_have_the_same_headings(torch_nb, jax_nb):
    torch_headings = nbsync.headings(torch_nb)
    assert len(torch_headings) >= 4 and torch_headings[0].startswith("# ")
    assert torch_headings == nbsync.headings(jax_nb)


def test_a_changed_heading_is_detected(tmp_path):
    torch_nb, jax_nb = PAIRS[0]

    def edit(nb):
        cell = [c for c in nb["cells"] if c["cell_type"] == "markdown" and "\n## " in "\n" + text(c)][1]
        cell["source"] = text(cell).replace("## ", "## Changed: ", 1)

    copy = write_copy(jax_nb, tmp_path, edit)
    assert nbsync.headings(copy) != nbsync.headings(torch_nb)
    assert len(nbsync.headings(copy)) == len(nbsync.headings(torch_nb))


def test_headings_skip_fenced_code(tmp_path):
    nb = {"cells": [{"cell_type": "markdown", "metadata": {},
                     "source": "# Title\ntext\n```python\n# a comment\n```\n## Part\n#not a heading"},
                    {"cell_type": "code", "source": "# code comment", "outputs": [], "metadata": {}}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "h.ipynb"
    path.write_text(json.dumps(nb))
    assert nbsync.headings(path) == ["# Title", "## Part"]


# (c) Stored outputs: no errors, no absolute paths of the machine; stored from a real run.

def output_problems(path):
    problems = []
    for i, cell in enumerate(code_cells(path)):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                problems.append(f"code cell {i}: stored error {out.get('ename')}")
            if out.get("output_type") == "stream" and out.get("name") == "stderr":
                problems.append(f"code cell {i}: stored stderr output (a warning?)")
        for t in output_texts(cell):
            m = MACHINE_PATH.search(t)
            if m:
                problems.append(f"code cell {i}: machine path {t[max(0, m.start() - 30):m.end() + 30]!r}")
    return problems


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids(NOTEBOOKS))
def test_stored_outputs_are_clean(path):
    assert output_problems(path) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids(NOTEBOOKS))
def test_notebooks_are_stored_executed(path):
    cells = code_cells(path)
    assert all(c.get("execution_count") for c in cells), "every code cell was run"
    counts = [c["execution_count"] for c in cells]
    assert counts == list(range(1, len(cells) + 1)), "run top to bottom in one fresh kernel"
    assert load(path)["metadata"]["kernelspec"]["name"] == "python3"


def test_dirty_outputs_are_detected(tmp_path):
    path = NOTEBOOKS[0]

    def edit(nb):
        cells = [c for c in nb["cells"] if c["cell_type"] == "code"]
        cells[0]["outputs"].append({"output_type": "stream", "name": "stdout",
                                    "text": "saved to /home/alice/vitlib/ckpt.pt\n"})
        cells[1]["outputs"].append({"output_type": "error", "ename": "ValueError",
                                    "evalue": "boom", "traceback": []})

    problems = output_problems(write_copy(path, tmp_path, edit))
    assert any("machine path" in p and "/home/alice/" in p for p in problems)
    assert any("stored error ValueError" in p for p in problems)


# (d) nbval compares something in every notebook, and the sanitizer works.

@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids(NOTEBOOKS))
def test_every_notebook_checks_some_output(path):
    checked = [c for c in code_cells(path) if text(c).startswith(CHECK)]
    assert checked, f"{path.name} has no '{CHECK}' cell: nbval would compare nothing"
    for c in checked:
        assert c["outputs"], "a checked cell must have a stored output to compare"
        kinds = {m for o in c["outputs"] for m in o.get("data", {})}
        assert not kinds & {"image/png", "application/vnd.jupyter.widget-view+json"}, \
            "plots and widgets are not compared; keep them out of checked cells"


def test_sanitizer_blanks_volatile_text():
    cfg = (ROOT / "notebooks" / "nbval_sanitize.cfg").read_text()
    patterns = get_sanitize_patterns(cfg)
    assert len(patterns) >= 4

    def sanitize(s):
        for regex, replace in patterns:
            s = re.sub(regex, replace, s)
        return s

    assert sanitize("epoch 1 took 1.23 s") == sanitize("epoch 1 took 48.5 s")
    assert sanitize("<object at 0x7f3a2c1d9e50>") == sanitize("<object at 0x55d0c0ffee00>")
    assert sanitize("/root/.venv/lib/python3.11/site-packages/jax/a.py:3: UserWarning") == \
        sanitize("/opt/conda/lib/python3.12/site-packages/jax/a.py:3: UserWarning")
    assert sanitize(" 45%|####5     | 45/100 [00:02<00:03, 18.2it/s]") == \
        sanitize(" 46%|####6     | 46/100 [00:03<00:02, 17.9it/s]")
    # What the checked cells print must survive.
    for keep in ("torch.Size([1, 196, 768])", "(1, 196, 768)", "True", "196 tokens", "590,592"):
        assert sanitize(keep) == keep


def test_pytest_runs_the_notebooks_with_nbval_lax():
    import tomllib
    opts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert "notebooks" in opts["testpaths"] and "tests" in opts["testpaths"]
    assert "--nbval-lax" in opts["addopts"]
    assert "--nbval-sanitize-with notebooks/nbval_sanitize.cfg" in opts["addopts"]
