"""What vitlib.memory.keep_freed_memory() buys: training step time and page faults, with and without.

glibc's malloc settings hold for a whole process, so the two cases cannot share one: each case
runs in its own Python process, the two alternate (on, off, on, off, ...) so that a noisy machine
slows both alike, and each process reports the median of its rounds. The model is the CPU
recipe's ViT (Recipe.cpu15() with plain patches: patch 7, D 128, 4 blocks, batch 128) and the
throughput benchmark's patch-4 one, in both frameworks.

    python bench/malloc.py                  # writes bench/results/malloc.md
    python bench/malloc.py --processes 2
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

from report import publish

RESULTS = Path(__file__).parent / "results" / "malloc.md"

# One process: import the framework side of vitlib (which applies, or with
# VITLIB_KEEP_FREED_MEMORY=0 skips, the malloc settings), then time rounds of training steps.
CHILD = """
import json, resource, statistics, sys, time
sys.path.insert(0, {bench!r})
framework, patch, rounds, steps = {framework!r}, {patch}, {rounds}, {steps}
import dataclasses
from vitlib.recipes import Recipe
cfg = dataclasses.replace(Recipe.cpu15().cfg, patch_size=patch, shifted_patches=False)
if framework == "jax":
    from throughput import jax_step_fn
    step = jax_step_fn(cfg)
else:
    import torch
    import vitlib.torch as vt
    from throughput import torch_step_fn
    torch.manual_seed(0)
    step = torch_step_fn(vt.ViT(cfg), cfg=cfg)
for _ in range(3):
    step()  # compile, warm up
ms, faults = [], []
for _ in range(rounds):
    f0, t = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
    for _ in range(steps):
        step()
    ms.append((time.perf_counter() - t) / steps * 1e3)
    faults.append((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / steps)
print(json.dumps(dict(ms=statistics.median(ms), faults=statistics.median(faults))))
"""


def run(framework, patch, keep, rounds, steps):
    code = CHILD.format(bench=str(Path(__file__).parent), framework=framework, patch=patch,
                        rounds=rounds, steps=steps)
    env = {**os.environ, "VITLIB_KEEP_FREED_MEMORY": "1" if keep else "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--processes", type=int, default=3, help="processes per case")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=10)
    args = ap.parse_args()
    lines = [f"Training step of vitlib's ViT (28x28, D 128, 4 blocks, batch 128, fp32), with "
             f"glibc's default malloc (off) and with vitlib.memory.keep_freed_memory() (on); "
             f"measured {datetime.date.today()} on {os.cpu_count()} CPU cores "
             f"({platform.machine()}), {args.processes} alternating processes per case, each "
             f"the median of {args.rounds} rounds of {args.steps} steps "
             f"(`python bench/malloc.py`).", "",
             "| framework | patch | malloc | ms per step (median, min-max) | page faults per step "
             "| speed-up |", "| --- | --- | --- | --- | --- | --- |"]
    for framework in ("jax", "torch"):
        for patch in (7, 4):
            results = {True: [], False: []}
            for _ in range(args.processes):
                for keep in (True, False):
                    results[keep].append(run(framework, patch, keep, args.rounds, args.steps))
            median = {k: statistics.median(r["ms"] for r in v) for k, v in results.items()}
            for keep in (False, True):
                ms = [r["ms"] for r in results[keep]]
                faults = statistics.median(r["faults"] for r in results[keep])
                speedup = f"{median[False] / median[True]:.2f}x" if keep else ""
                lines.append(f"| {framework} | {patch} | {'on' if keep else 'off'} | "
                             f"{median[keep]:.1f} ({min(ms):.1f}-{max(ms):.1f}) | "
                             f"{faults:,.0f} | {speedup} |")
            print(lines[-2], lines[-1], sep="\n", flush=True)
    publish(RESULTS, lines)


if __name__ == "__main__":
    main()
