"""Train a named recipe on the real Fashion-MNIST in one framework and record the result.

One command per row of the README's results table:

    python bench/recipes.py --framework torch --recipe cpu
    python bench/recipes.py --framework jax --recipe cpu --checkpoint checkpoints/vit_cpu_jax.msgpack
    python bench/recipes.py --framework torch --recipe cpu --set epochs=2 --set patch_size=4
    python bench/recipes.py --framework jax --recipe cpu15 --budget 15   # epochs to fit 15 min
    python bench/recipes.py --framework torch --recipe cpu15 --set epochs=100 --state runs/long.pt

`--state PATH` keeps the training state (model, optimizer, history) in PATH after every epoch and,
run again with the same arguments, continues from it: an hours-long run survives an interrupt or a
closed laptop, and ends exactly as an uninterrupted one would.

`--set` overrides a Recipe field (epochs, lr, ...) or a ViTConfig field (patch_size, ...).
Each run appends a JSON line to bench/results/recipes.jsonl and prints a Markdown row.
"""

import argparse
import dataclasses
import datetime
import json
import os
import time
from pathlib import Path

from machine import describe_cpu, matmul_peak
from vitlib import ViTConfig
from vitlib.checkpoint import atomic_write
from vitlib.data import load_fashion_mnist, subset
from vitlib.recipes import Recipe, epochs_for_budget

RESULTS = Path(__file__).parent / "results" / "recipes.jsonl"


def parse_overrides(pairs, recipe):
    """--set name=value pairs -> a recipe with those Recipe or ViTConfig fields replaced."""
    cfg_fields = {f.name: f.type for f in dataclasses.fields(ViTConfig)}
    rec, cfg = {}, {}
    for pair in pairs:
        name, _, text = pair.partition("=")
        try:
            value = json.loads(text)  # numbers, true / false
        except json.JSONDecodeError:
            value = text  # a word: mean, sgd, xavier, ...
        (cfg if name in cfg_fields else rec)[name] = value
    return dataclasses.replace(recipe, cfg=dataclasses.replace(recipe.cfg, **cfg), **rec)


def hardware(framework):
    if framework == "torch":
        import torch
        if torch.cuda.is_available():
            return torch.cuda.get_device_name()
    else:
        import jax
        if jax.default_backend() != "cpu":
            return str(jax.devices()[0].device_kind)
    return describe_cpu()


def threads(framework):
    """CPU threads the run computes with: torch's intra-op pool, or every core for XLA."""
    if framework == "torch":
        import torch
        return torch.get_num_threads()
    return os.cpu_count()


def load(recipe, seed):
    train_set, test_set = load_fashion_mnist("train"), load_fashion_mnist("test")
    if recipe.n_train:
        train_set = subset(*train_set, recipe.n_train, seed=seed)
    if recipe.n_test:
        test_set = subset(*test_set, recipe.n_test, seed=seed)
    return train_set, test_set


def build(framework, cfg, seed):
    """A new ViT(cfg) seeded as every run here seeds it, with its framework's fit and save."""
    if framework == "torch":
        import torch
        import vitlib.torch as vt
        torch.manual_seed(seed)
        model = vt.ViT(cfg).to(vt.pick_device())
        return model, vt.fit, vt.save_checkpoint, sum(p.numel() for p in model.parameters())
    import jax
    from flax import nnx
    import vitlib.jax as vj
    vj.pick_device()
    model = vj.ViT(cfg, rngs=nnx.Rngs(seed))
    n_params = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
    return model, vj.fit, vj.save_checkpoint, n_params


def seconds_per_epoch(framework, recipe, train_set, test_set, steps=30):
    """One epoch's wall time, training and evaluation, on this machine now: a throwaway model
    trains two epochs of `steps` batches, each followed by the same share of the test set, and
    the second epoch (the first compiles and warms up) is scaled to the whole epoch. Timing a
    second `fit` instead would count JAX's compilation again, 15.6 times over: each `fit` makes
    a new optimizer, which nnx.jit compiles anew (it planned 11 JAX epochs of 63 s that took
    44-49 s)."""
    full = len(train_set[0]) // recipe.batch_size
    steps = min(steps, full)
    n, m = steps * recipe.batch_size, max(1, round(len(test_set[0]) * steps / full))
    part, test_part = (train_set[0][:n], train_set[1][:n]), (test_set[0][:m], test_set[1][:m])
    kwargs = {**recipe.fit_kwargs(), "epochs": 2, "warmup_epochs": 0}
    model, fit, _, _ = build(framework, recipe.cfg, seed=0)
    history = fit(model, part, test_part, progress=False, **kwargs)
    return history.seconds[-1] * full / steps


def run_plan(state):
    """The plan that the training state at `state` was started with, from its side file, or None
    for a new run."""
    plan = Path(str(state) + ".json")
    return json.loads(plan.read_text()) if Path(state).exists() and plan.exists() else None


def check_plan(state, plan, framework, recipe, seed, budget):
    """Start a new --state run (write its plan beside it) or check that this command continues
    the run that `state` holds: resuming with another model or schedule would mix two runs."""
    want = dict(framework=framework, recipe=recipe.describe(), seed=seed)
    if Path(state).exists() and plan is None:
        raise SystemExit(f"{state} exists but has no {state}.json beside it, so --state did not "
                         f"start it; pass a new path, or delete the file to start over.")
    if plan is None:
        plan = {**want, **({"budget": {**budget, "epochs": recipe.epochs}} if budget else {})}
        Path(state).parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(plan, indent=1) + "\n"
        atomic_write(str(state) + ".json", lambda f: f.write(text.encode()))
        return
    got = {k: plan.get(k) for k in want}
    if got != want:
        diff = "; ".join(f"{k} {got[k]!r} there, {want[k]!r} here" for k in want
                         if got[k] != want[k])
        raise SystemExit(f"{state} holds another run ({diff}). Continue it with the command "
                         f"that started it, or pass a new --state path to start this one.")


def saved_epoch(framework, path):
    """The epochs completed by the run whose training state is at `path`."""
    if framework == "torch":
        from vitlib.torch import load_checkpoint
    else:
        from vitlib.jax import load_checkpoint
    return load_checkpoint(path).epoch


def train(framework, recipe, seed, checkpoint, train_set, test_set, state=None):
    model, fit, save, n_params = build(framework, recipe.cfg, seed)
    t = time.perf_counter()
    resume = state if state and Path(state).exists() else None
    start = saved_epoch(framework, resume) if resume else 0
    history = fit(model, train_set, test_set, seed=seed, checkpoint=state, resume=resume,
                  **recipe.fit_kwargs())
    seconds = time.perf_counter() - t
    if checkpoint:
        save(model, checkpoint)
    return history, seconds, n_params, start


def result_row(args, recipe, history, seconds, n_params, start, peak, budget):
    """The JSON line a finished run appends to recipes.jsonl: what ran, where, how long and how
    well, with the test accuracy and wall time of every epoch, so that a curve the README
    describes can be checked after the run's training state is gone."""
    return dict(date=str(datetime.date.today()), framework=args.framework, recipe=recipe.name,
                overrides=args.set, hardware=hardware(args.framework), seed=args.seed,
                threads=threads(args.framework), matmul_gflops=round(peak),
                epochs=history.epochs, params=n_params,
                wall_s=round(seconds, 1),
                **({"resumed_at_epoch": start} if start else {}),
                train_s=round(sum(history.seconds), 1), test_acc=history.test_acc[-1],
                **budget,
                test_acc_per_epoch=[round(a, 4) for a in history.test_acc],
                epoch_s=[round(t, 1) for t in history.seconds],
                command="python bench/recipes.py " + " ".join(
                    [f"--framework {args.framework}", f"--recipe {args.recipe}"]
                    + (["--seed", str(args.seed)] if args.seed else [])
                    + [f"--set {s}" for s in args.set]
                    + ([f"--budget {args.budget:g}"] if args.budget else [])
                    + ([f"--max-epochs {args.max_epochs}"]
                       if args.budget and args.max_epochs != 25 else [])
                    + ([f"--state {args.state}"] if args.state else [])))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--framework", choices=("torch", "jax"), required=True)
    ap.add_argument("--recipe", choices=("cpu", "cpu15", "d2l", "quick"), default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    ap.add_argument("--checkpoint", help="save the trained model (weights + config) here")
    ap.add_argument("--budget", type=float, metavar="MINUTES",
                    help="train as many epochs as fit in this many minutes here (measured first, "
                         "the measurement included), at most --max-epochs")
    ap.add_argument("--max-epochs", type=int, default=25)
    ap.add_argument("--state", metavar="PATH",
                    help="keep the training state here after every epoch; run the same command "
                         "again to continue from it")
    args = ap.parse_args()
    recipe = parse_overrides(args.set, getattr(Recipe, args.recipe)())
    plan = run_plan(args.state) if args.state else None
    peak = matmul_peak()  # the machine's speed at the start: 2-core machines of one kind differ
    print(f"fp32 matmul peak: {peak:.0f} GFLOP/s")
    train_set, test_set = load(recipe, args.seed)
    budget = {}
    if args.budget and plan and "budget" in plan:
        # Continuing a budgeted run: keep the epochs it planned, or its schedule would change.
        budget = dict(plan["budget"])
        recipe = dataclasses.replace(recipe, epochs=budget.pop("epochs"))
        print(f"Continuing {args.state}: {recipe.epochs} epochs, as planned at its start.")
    elif args.budget:
        t = time.perf_counter()
        epoch_s = seconds_per_epoch(args.framework, recipe, train_set, test_set)
        calibration_s = time.perf_counter() - t
        epochs = epochs_for_budget(args.budget * 60 - calibration_s, epoch_s, args.max_epochs)
        recipe = dataclasses.replace(recipe, epochs=epochs)
        budget = dict(budget_min=args.budget, calibration_s=round(calibration_s, 1),
                      epoch_s_estimate=round(epoch_s, 1))
        print(f"Budget {args.budget:g} min: an epoch takes about {epoch_s:.0f} s here now "
              f"(measured in {calibration_s:.0f} s), so {epochs} epochs; the same run again: "
              f"--set epochs={epochs}")
    print(recipe.describe())
    if args.state:
        check_plan(args.state, plan, args.framework, recipe, args.seed, budget)
    history, seconds, n_params, start = train(args.framework, recipe, args.seed, args.checkpoint,
                                              train_set, test_set, args.state)
    if history.interrupted:
        again = f"; run the same command to continue from {args.state}" if args.state else ""
        print(f"Interrupted after {history.epochs} of {recipe.epochs} epochs: no result "
              f"recorded{again}.")
        return
    print(history)
    if start == history.epochs:
        print(f"{args.state} holds a finished run: nothing trained, no result recorded again.")
        return
    row = result_row(args, recipe, history, seconds, n_params, start, peak, budget)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with open(RESULTS, "a") as f:
        f.write(json.dumps(row) + "\n")
    print(f"| {row['framework']} | {recipe.describe()} | {row['hardware']} | {row['wall_s']:.0f} s "
          f"| {row['epochs']} | {row['seed']} | {n_params:,} | {row['test_acc']:.2%} | "
          f"`{row['command']}` |")


if __name__ == "__main__":
    main()
