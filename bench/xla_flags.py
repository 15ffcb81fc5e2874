"""Does another XLA:CPU matmul library make JAX's training step faster? Step time per XLA_FLAGS.

On the AVX2 machine, JAX's step spends 70 % of its time in YNNPACK's matrix multiplications
(bench/results/jax_profile.md) and runs at 0.84x timm. XLA:CPU can hand its dots to YNNPACK (the
default), XNNPACK or oneDNN, or compile them itself with Eigen; XLA_FLAGS chooses, once per
process. So each variant runs in its own Python process, the variants alternate, round after
round, so that a noisy machine slows them alike, and each process reports the median of its
rounds. The model is the throughput benchmark's (28x28, D 128, 4 blocks, batch 128) at patch 4
and the CPU recipe's patch 7.

    python bench/xla_flags.py                 # writes bench/results/xla_flags.md
    python bench/xla_flags.py --patches 4 --processes 3
"""

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from machine import describe_cpu
from malloc import CHILD
from report import publish

RESULTS = Path(__file__).parent / "results" / "xla_flags.md"

VARIANTS = {
    "default (YNNPACK dots)": "",
    "YNNPACK off (Eigen dots)": "--xla_cpu_experimental_ynn_fusion_type=",
    "YNNPACK without its dots": "--xla_cpu_experimental_ynn_fusion_type=-individual_dot",
    "XNNPACK off": "--xla_cpu_use_xnnpack=false",
    "oneDNN on": "--xla_cpu_use_onednn=true --xla_cpu_experimental_onednn_custom_call=true",
    "YNNPACK off, XNNPACK dots": "--xla_cpu_experimental_ynn_fusion_type= "
                                 "--xla_cpu_experimental_xnn_fusion_type=individual_dot",
}


def step_ms(flags, patch, rounds, steps):
    """Median ms per JAX training step in a fresh process with XLA_FLAGS=flags."""
    code = CHILD.format(bench=str(Path(__file__).parent), framework="jax", patch=patch,
                        rounds=rounds, steps=steps)
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "XLA_FLAGS": flags},
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.splitlines()[-1])["ms"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patches", default="4,7", help="patch sizes, comma-separated")
    ap.add_argument("--processes", type=int, default=2, help="processes per variant")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--steps", type=int, default=8)
    args = ap.parse_args()
    lines = [f"JAX training step (28x28, D 128, 4 blocks, batch 128, fp32) under XLA_FLAGS "
             f"variants; measured {datetime.date.today()} on {describe_cpu()}, "
             f"{args.processes} alternating processes per variant, each the median of "
             f"{args.rounds} rounds of {args.steps} steps (`python bench/xla_flags.py`).", "",
             "| patch | XLA_FLAGS | ms per step (median, min-max) | speed vs default |",
             "| --- | --- | --- | --- |"]
    for patch in (int(p) for p in args.patches.split(",")):
        ms = {name: [] for name in VARIANTS}
        for _ in range(args.processes):
            for name, flags in VARIANTS.items():
                ms[name].append(step_ms(flags, patch, args.rounds, args.steps))
                print(f"patch {patch}, {name}: {ms[name][-1]:.1f} ms", flush=True)
        base = statistics.median(next(iter(ms.values())))
        for name, flags in VARIANTS.items():
            med = statistics.median(ms[name])
            lines.append(f"| {patch} | {name}{f': `{flags}`' if flags else ''} | {med:.1f} "
                         f"({min(ms[name]):.1f}-{max(ms[name]):.1f}) | {base / med:.2f}x |")
    publish(RESULTS, lines)


if __name__ == "__main__":
    main()
