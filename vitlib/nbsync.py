"""Notebook cells that are vitlib code, kept equal to it.

A notebook teaches a class by showing it, and the class it shows must be the real one, or
learners read code that no longer runs in the library. So a code cell whose first line is

    # vitlib source: vitlib/torch/model.py PatchEmbedding

holds, after that line, exactly the source of that top-level class (or function) as
`inspect.getsource` gives it. `check` lists the cells that drifted, `sync` rewrites them from
vitlib (keeping their outputs), and `headings` lists a notebook's markdown headings so a test
can compare the PyTorch and JAX twins of a pair. The source is read with `ast` from the module
file, so no framework is imported. From the repository root:

    python -m vitlib.nbsync --check notebooks/*.ipynb   # exit status 1 if a cell drifted
    python -m vitlib.nbsync notebooks/*.ipynb           # rewrite the drifted cells
"""

import argparse
import ast
import json
import re
import sys
from pathlib import Path

MARKER = "# vitlib source:"
ROOT = Path(__file__).resolve().parent.parent  # the repository root: module paths start here


def definition_source(module_path, name, root=ROOT) -> str:
    """The source of the top-level class or function `name` in `module_path`, decorators
    included, as `inspect.getsource` returns it (without importing the module).

    Args:
        module_path: a path relative to `root`, e.g. "vitlib/torch/model.py".
        name: the name of a class or function defined at the module's top level.
        root: the directory module paths are relative to; the repository root by default.
    """
    path = Path(root) / module_path
    if Path(module_path).is_absolute() or not path.is_file():
        raise ValueError(f"Expected a module path relative to the repository root, e.g. "
                         f"'vitlib/torch/model.py', got {module_path!r}, which is not a file "
                         f"there. Fix the '{MARKER}' line.")
    text = path.read_text(encoding="utf-8")
    kinds = (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    for node in ast.parse(text).body:
        if isinstance(node, kinds) and node.name == name:
            # inspect.getsource starts at the first decorator and takes whole lines.
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            return "".join(text.splitlines(keepends=True)[first - 1:node.end_lineno])
    names = [n.name for n in ast.parse(text).body if isinstance(n, kinds)]
    raise ValueError(f"Expected a top-level class or function named {name!r} in {module_path}, "
                     f"but it defines {names}. Fix the '{MARKER}' line.")


def source_cell(module_path, name, root=ROOT) -> str:
    """The full text of a marked cell showing `name` from `module_path`.

    Args:
        module_path: a path relative to `root`, e.g. "vitlib/jax/model.py".
        name: the class or function to show.
        root: the directory module paths are relative to.
    """
    return f"{MARKER} {module_path} {name}\n" + definition_source(module_path, name, root).rstrip("\n")


def _read(notebook_path):
    with open(notebook_path, encoding="utf-8") as f:
        nb = json.load(f)
    if not isinstance(nb, dict) or "cells" not in nb:
        raise ValueError(f"Expected a Jupyter notebook (JSON with 'cells') at {notebook_path}, "
                         f"got something else. Pass .ipynb files.")
    return nb


def _text(cell) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def _marked_cells(nb, root):
    """Yield (cell index, cell, wanted text or None, problem or None) for every marked cell."""
    for i, cell in enumerate(nb["cells"]):
        text = _text(cell)
        if cell.get("cell_type") != "code" or not text.startswith(MARKER):
            continue
        first = text.split("\n", 1)[0]
        parts = first[len(MARKER):].split()
        if first[len(MARKER):len(MARKER) + 1] != " " or len(parts) != 2:
            yield i, cell, None, (f"first line {first!r} is not of the form "
                                  f"'{MARKER} <module path> <ClassName>'")
            continue
        try:
            yield i, cell, source_cell(parts[0], parts[1], root), None
        except ValueError as e:
            yield i, cell, None, str(e)


def check(notebook_path, root=ROOT) -> list:
    """Describe every marked cell of the notebook that differs from vitlib; [] if none.

    Args:
        notebook_path: an .ipynb file.
        root: the directory the module paths in the markers are relative to.
    """
    problems = []
    for i, cell, wanted, problem in _marked_cells(_read(notebook_path), root):
        if problem is None and _text(cell) != wanted:
            got, want = _text(cell).splitlines(), wanted.splitlines()
            line = next((n for n, (a, b) in enumerate(zip(got, want)) if a != b),
                        min(len(got), len(want)))
            problem = (f"differs from vitlib at line {line + 1} of the cell: "
                       f"{(got[line] if line < len(got) else '<end of cell>')!r} vs "
                       f"{(want[line] if line < len(want) else '<end of source>')!r}; "
                       f"run `python -m vitlib.nbsync {notebook_path}` to update it")
        if problem is not None:
            problems.append(f"{notebook_path}: code cell {i} ({_text(cell).splitlines()[0]}): "
                            f"{problem}")
    return problems


def sync(notebook_path, root=ROOT) -> int:
    """Rewrite the marked cells of the notebook from vitlib, keeping their outputs. Write the
    file only if a cell changed. Return the number of cells rewritten.

    Args:
        notebook_path: an .ipynb file.
        root: the directory the module paths in the markers are relative to.
    """
    nb = _read(notebook_path)
    changed = 0
    for i, cell, wanted, problem in _marked_cells(nb, root):
        if problem is not None:
            raise ValueError(f"{notebook_path}: code cell {i}: {problem}")
        if _text(cell) != wanted:
            cell["source"] = wanted.splitlines(keepends=True)  # nbformat's on-disk form
            changed += 1
    if changed:
        with open(notebook_path, "w", encoding="utf-8") as f:
            json.dump(nb, f, indent=1, sort_keys=True, ensure_ascii=False)  # as Jupyter writes
            f.write("\n")
    return changed


def headings(notebook_path) -> list:
    """The markdown headings of the notebook, in order, e.g. ["# Patch embedding", "## 1. ..."].
    Lines inside fenced code blocks are not headings.

    Args:
        notebook_path: an .ipynb file.
    """
    found = []
    for cell in _read(notebook_path)["cells"]:
        if cell.get("cell_type") != "markdown":
            continue
        fenced = False
        for line in _text(cell).splitlines():
            if line.lstrip().startswith(("```", "~~~")):
                fenced = not fenced
            elif not fenced and re.match(r"#{1,6}\s", line):
                found.append(line.strip())
    return found


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m vitlib.nbsync", description=__doc__.split("\n")[0])
    parser.add_argument("notebooks", nargs="+", help=".ipynb files")
    parser.add_argument("--check", action="store_true",
                        help="only report drifted cells; exit status 1 if there are any")
    args = parser.parse_args(argv)
    if args.check:
        problems = [p for path in args.notebooks for p in check(path)]
        print("\n".join(problems) if problems else f"{len(args.notebooks)} notebook(s) match vitlib.")
        return 1 if problems else 0
    for path in args.notebooks:
        n = sync(path)
        print(f"{path}: {n} cell(s) rewritten" if n else f"{path}: up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
