"""bench/recipes.py --state: a long run continues only as the run it started, never as another.

The training itself (fit(checkpoint=..., resume=...)) is tested in test_train.py; here, the plan
that --state keeps beside the training state, which stops a second command from mixing another
model or schedule into a half-finished run.
"""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from vitlib.recipes import Recipe

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.fixture(scope="module")
def recipes():
    sys.path.insert(0, str(BENCH))  # recipes.py imports its neighbour machine.py
    try:
        spec = importlib.util.spec_from_file_location("bench_recipes", BENCH / "recipes.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(BENCH))


def test_a_new_run_writes_its_plan_and_the_same_command_continues_it(recipes, tmp_path):
    state, recipe = tmp_path / "runs" / "long.pt", Recipe.cpu15(epochs=100)
    assert recipes.run_plan(state) is None
    recipes.check_plan(state, None, "torch", recipe, 0, {})
    plan = json.loads((tmp_path / "runs" / "long.pt.json").read_text())
    assert plan == {"framework": "torch", "recipe": recipe.describe(), "seed": 0}
    assert recipes.run_plan(state) is None  # no training state yet: nothing to continue
    state.write_bytes(b"training state")
    assert recipes.run_plan(state) == plan
    recipes.check_plan(state, plan, "torch", recipe, 0, {})  # the same run: no error


def test_a_budgeted_run_keeps_the_epochs_it_planned(recipes, tmp_path):
    state, recipe = tmp_path / "long.pt", Recipe.cpu15(epochs=86)
    budget = {"budget_min": 60.0, "calibration_s": 6.1, "epoch_s_estimate": 33.0}
    recipes.check_plan(state, None, "jax", recipe, 1, budget)
    state.write_bytes(b"training state")
    assert recipes.run_plan(state)["budget"] == {**budget, "epochs": 86}


@pytest.mark.parametrize("framework, change, seed, named", [
    ("jax", {}, 0, "framework 'torch' there, 'jax' here"),
    ("torch", {"lr": 1e-3}, 0, "lr 0.001"),
    ("torch", {"epochs": 50}, 0, "50 epochs"),
    ("torch", {}, 3, "seed 0 there, 3 here"),
])
def test_another_run_on_the_same_state_is_refused_with_what_differs(recipes, tmp_path, framework,
                                                                   change, seed, named):
    state, recipe = tmp_path / "long.pt", Recipe.cpu15(epochs=100)
    recipes.check_plan(state, None, "torch", recipe, 0, {})
    state.write_bytes(b"training state")
    with pytest.raises(SystemExit, match="holds another run") as err:
        recipes.check_plan(state, recipes.run_plan(state), framework,
                           Recipe.cpu15(**{"epochs": 100, **change}), seed, {})
    assert named in str(err.value)
    assert "pass a new --state path" in str(err.value)


def test_a_file_that_state_did_not_start_is_not_overwritten(recipes, tmp_path):
    state = tmp_path / "vit.pt"
    state.write_bytes(b"someone's checkpoint")
    with pytest.raises(SystemExit, match="did not start it"):
        recipes.check_plan(state, recipes.run_plan(state), "torch", Recipe.cpu15(), 0, {})
    assert state.read_bytes() == b"someone's checkpoint"
    assert not (tmp_path / "vit.pt.json").exists()


def test_a_result_row_keeps_every_epochs_accuracy_and_time_and_the_command_that_continues_it(
        recipes):
    from argparse import Namespace
    from vitlib.history import History
    history = History(train_loss=[1.0, 0.5, 0.4], test_loss=[0.8, 0.4, 0.3],
                      test_acc=[0.71234, 0.85, 0.9012], lr=[1e-3, 5e-4, 0.0],
                      seconds=[101.23, 99.0, 98.56])
    args = Namespace(framework="torch", recipe="cpu15", seed=1, set=["epochs=3", "crop=2"],
                     budget=None, max_epochs=25, state="runs/long.pt")
    row = recipes.result_row(args, Recipe.cpu15(epochs=3, crop=2), history, seconds=300.0,
                             n_params=1234, start=1, peak=130.4, budget={})
    assert row["test_acc"] == 0.9012 and row["epochs"] == 3 and row["resumed_at_epoch"] == 1
    assert row["test_acc_per_epoch"] == [0.7123, 0.85, 0.9012]
    assert row["epoch_s"] == [101.2, 99.0, 98.6]
    assert row["train_s"] == 298.8  # every epoch's time, over all the sessions
    assert row["command"] == ("python bench/recipes.py --framework torch --recipe cpu15 --seed 1 "
                              "--set epochs=3 --set crop=2 --state runs/long.pt")
    json.dumps(row)  # one JSON line
