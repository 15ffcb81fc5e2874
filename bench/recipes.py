"""Train a named recipe on the real Fashion-MNIST in one framework and record the result.

One command per row of the README's results table:

    python bench/recipes.py --framework torch --recipe cpu
    python bench/recipes.py --framework jax --recipe cpu --checkpoint checkpoints/vit_cpu_jax.msgpack
    python bench/recipes.py --framework torch --recipe cpu --set epochs=2 --set patch_size=4
    python bench/recipes.py --framework jax --recipe cpu15 --budget 15   # epochs to fit 15 min

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


def train(framework, recipe, seed, checkpoint, train_set, test_set):
    model, fit, save, n_params = build(framework, recipe.cfg, seed)
    t = time.perf_counter()
    history = fit(model, train_set, test_set, seed=seed, **recipe.fit_kwargs())
    seconds = time.perf_counter() - t
    if checkpoint:
        save(model, checkpoint)
    return history, seconds, n_params


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
    args = ap.parse_args()
    recipe = parse_overrides(args.set, getattr(Recipe, args.recipe)())
    peak = matmul_peak()  # the machine's speed at the start: 2-core machines of one kind differ
    print(f"fp32 matmul peak: {peak:.0f} GFLOP/s")
    train_set, test_set = load(recipe, args.seed)
    budget = {}
    if args.budget:
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
    history, seconds, n_params = train(args.framework, recipe, args.seed, args.checkpoint,
                                       train_set, test_set)
    print(history)
    row = dict(date=str(datetime.date.today()), framework=args.framework, recipe=recipe.name,
               overrides=args.set, hardware=hardware(args.framework), seed=args.seed,
               threads=threads(args.framework), matmul_gflops=round(peak),
               epochs=history.epochs, params=n_params,
               wall_s=round(seconds, 1),
               train_s=round(sum(history.seconds), 1), test_acc=history.test_acc[-1],
               **budget,
               command="python bench/recipes.py " + " ".join(
                   [f"--framework {args.framework}", f"--recipe {args.recipe}"]
                   + (["--seed", str(args.seed)] if args.seed else [])
                   + [f"--set {s}" for s in args.set]
                   + ([f"--budget {args.budget:g}"] if args.budget else [])
                   + ([f"--max-epochs {args.max_epochs}"] if args.budget and args.max_epochs != 25
                      else [])))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with open(RESULTS, "a") as f:
        f.write(json.dumps(row) + "\n")
    print(f"| {row['framework']} | {recipe.describe()} | {row['hardware']} | {row['wall_s']:.0f} s "
          f"| {row['epochs']} | {row['seed']} | {n_params:,} | {row['test_acc']:.2%} | "
          f"`{row['command']}` |")


if __name__ == "__main__":
    main()
