"""The project's promises about itself: the dependency lists agree, the README's two commands
exist, and CI runs the README's test command."""

import re
import subprocess
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEST_COMMAND = "bash setup.sh test"
LAB_COMMAND = "bash setup.sh lab"


def name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def pyproject_names():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {name(r) for r in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        names |= {name(r) for r in extra}
    return names


def environment_names(text):
    """The packages environment.yml installs with pip, plus conda packages other than python/pip."""
    names = set()
    for line in text.splitlines():
        m = re.match(r"^\s*-\s+([A-Za-z0-9_.\-]+[^:#]*)\s*(#.*)?$", line)
        if m and not line.strip().endswith(":"):
            names.add(name(m.group(1)))
    return names - {"python", "pip", "conda-forge"}


def test_environment_yml_and_pyproject_name_the_same_packages():
    env = environment_names((ROOT / "environment.yml").read_text())
    assert env == pyproject_names(), (
        f"only in environment.yml: {sorted(env - pyproject_names())}; "
        f"only in pyproject.toml: {sorted(pyproject_names() - env)}")
    for needed in ("torch", "torchvision", "jax", "flax", "optax", "matplotlib", "ipywidgets",
                   "jupyterlab", "nbval", "pytest"):
        assert needed in env


def test_the_dependency_check_notices_a_difference():
    text = (ROOT / "environment.yml").read_text().replace("      - optax", "      - optaxx")
    assert environment_names(text) != pyproject_names()


def test_readme_gives_the_two_commands_and_the_conda_path():
    readme = (ROOT / "README.md").read_text()
    assert TEST_COMMAND in readme and LAB_COMMAND in readme
    assert "conda env create -f environment.yml" in readme


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    commands = [l.strip() for l in ci.splitlines() if l.strip() and not l.strip().startswith("#")]
    assert TEST_COMMAND in commands


def test_setup_script_is_valid_bash_and_handles_empty_selections():
    script = (ROOT / "setup.sh").read_text()
    subprocess.run(["bash", "-n", str(ROOT / "setup.sh")], check=True)
    assert '"$rc" = 5' in script  # pytest's "no tests collected" is not a failure
    usage = subprocess.run(["bash", str(ROOT / "setup.sh"), "nonsense"], capture_output=True, text=True)
    assert usage.returncode == 2 and "usage: bash setup.sh lab|test" in usage.stderr
