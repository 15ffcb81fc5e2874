"""The checkpoints shipped in checkpoints/: each exists, is at most 5 MB, holds the CPU recipe's
model, and reaches on the real Fashion-MNIST test set (all 10,000 images) the test accuracy that
README.md states, within 0.05 percentage points (the evaluation is deterministic; the margin is
for another CPU rounding a handful of borderline images the other way).

The README states each accuracy in its checkpoint table: one Markdown table row per checkpoint,
whose first cell is the checkpoint's path from the repository root (backticks allowed) and in
which exactly one cell is a percentage (bold allowed), the test accuracy, e.g.

    | `checkpoints/vit_fashion_cpu_torch.pt` | `python bench/recipes.py ...` | 90.12% | 7 min |
"""

import re
from pathlib import Path

import pytest

from vitlib import data
from vitlib.recipes import Recipe

ROOT = Path(__file__).resolve().parent.parent
CHECKPOINTS = {"torch": "checkpoints/vit_fashion_cpu_torch.pt",
               "jax": "checkpoints/vit_fashion_cpu_jax.msgpack"}
MAX_BYTES = 5_000_000  # the "at most 5 MB"
TOLERANCE = 0.05  # percentage points
PERCENT = re.compile(r"^(\*\*)?\s*(\d{1,3}(\.\d+)?)\s*%\s*(\*\*)?$")


def stated_accuracy(readme, path):
    """The test accuracy in percent that the README's checkpoint table states for `path`."""
    example = f"| `{path}` | python bench/recipes.py ... | 90.12% | ... |"
    rows = []
    for line in readme.splitlines():
        if not line.strip().startswith("|"):
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
        if cells[0].strip("`* ") == path:
            rows.append(cells)
    if not rows:
        raise AssertionError(f"README.md has no checkpoint table row for {path}. Add a Markdown "
                             f"table row whose first cell is the path and with one cell holding "
                             f"its test accuracy, e.g. {example!r}.")
    if len(rows) > 1:
        raise AssertionError(f"README.md has {len(rows)} table rows for {path}; keep one.")
    percents = [float(m.group(2)) for m in map(PERCENT.match, rows[0]) if m]
    if len(percents) != 1:
        raise AssertionError(f"README.md's row for {path} has {len(percents)} cells that are a "
                             f"percentage, expected exactly one (the test accuracy): "
                             f"{' | '.join(rows[0])!r}. Write it as e.g. '90.12%'.")
    return percents[0]


def checkpoint_path(framework):
    path = ROOT / CHECKPOINTS[framework]
    assert path.is_file(), (
        f"{CHECKPOINTS[framework]} is missing. Make it with `python bench/recipes.py --framework "
        f"{framework} --recipe cpu --checkpoint {CHECKPOINTS[framework]}` and state its test "
        f"accuracy in README.md's checkpoint table.")
    return path


# The README parser, on made-up tables: it must find the row, and fail clearly without one.

def test_the_readme_row_is_parsed():
    readme = ("| checkpoint | command | test accuracy | time |\n| --- | --- | --- | --- |\n"
              "| `checkpoints/a.pt` | `python bench/recipes.py --set a=1` | 90.12% | 7.5 min |\n"
              "| checkpoints/b.msgpack | python x.py | **89.9 %** | 3 min |\n"
              "| torch | cpu recipe | 12.00% | `--checkpoint checkpoints/c.pt` |\n")
    assert stated_accuracy(readme, "checkpoints/a.pt") == 90.12
    assert stated_accuracy(readme, "checkpoints/b.msgpack") == 89.9
    with pytest.raises(AssertionError, match="no checkpoint table row for checkpoints/c.pt"):
        stated_accuracy(readme, "checkpoints/c.pt")  # named in a command, not a row of its own
    with pytest.raises(AssertionError, match="2 table rows"):
        stated_accuracy(readme + readme, "checkpoints/a.pt")
    with pytest.raises(AssertionError, match="0 cells that are a percentage"):
        stated_accuracy("| checkpoints/a.pt | 90.12 |\n", "checkpoints/a.pt")
    with pytest.raises(AssertionError, match="2 cells that are a percentage"):
        stated_accuracy("| checkpoints/a.pt | 90.12% | 99.00% |\n", "checkpoints/a.pt")


# The shipped checkpoints.

@pytest.mark.parametrize("framework", sorted(CHECKPOINTS))
def test_shipped_checkpoint_is_small(framework):
    size = checkpoint_path(framework).stat().st_size
    assert size <= MAX_BYTES, f"{CHECKPOINTS[framework]} is {size:,} bytes, over {MAX_BYTES:,}"


@pytest.mark.parametrize("framework", sorted(CHECKPOINTS))
def test_shipped_checkpoint_has_the_accuracy_the_readme_states(framework):
    path = checkpoint_path(framework)
    stated = stated_accuracy((ROOT / "README.md").read_text(encoding="utf-8"),
                             CHECKPOINTS[framework])
    if framework == "torch":
        import vitlib.torch as vt
        load, evaluate = vt.load_checkpoint, vt.evaluate
    else:
        import vitlib.jax as vj
        load, evaluate = vj.load_checkpoint, vj.evaluate
    ckpt = load(path)
    recipe = Recipe.cpu()
    assert ckpt.config == recipe.cfg, (f"{CHECKPOINTS[framework]} does not hold the CPU recipe's "
                                       f"model: {ckpt.config.diff(recipe.cfg)}")
    images, labels = data.load_fashion_mnist("test")
    assert len(labels) == 10_000
    _, accuracy = evaluate(ckpt.model, images, labels, batch_size=recipe.batch_size)
    measured = 100 * accuracy
    assert abs(measured - stated) <= TOLERANCE, (
        f"{CHECKPOINTS[framework]} reaches {measured:.2f}% on the 10,000 test images, but "
        f"README.md states {stated:.2f}%. Update the README or the checkpoint.")
