"""Print a benchmark's Markdown table and append it to its results file (no side effects on import,
unlike machine.py, so the malloc and profile benchmarks can use it)."""

from pathlib import Path


def publish(path: Path, lines: list[str]) -> None:
    """Print the table `lines` and append it, with a blank line after, to `path`."""
    text = "\n".join(lines) + "\n"
    print(text)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(text + "\n")
