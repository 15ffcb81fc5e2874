"""Where the time of one jitted JAX training step goes on this machine: matmuls or the rest.

Traces a few steps of vitlib.jax's ViT (the throughput benchmark's shape by default) with
jax.profiler, sums the duration of every XLA kernel by kind, and writes a Markdown table. On the
CPU, XLA runs each fused kernel as one "thunk"; the matrix multiplications are the `dot` and
`ynn_fusion` kernels (XLA's own and YNNPACK's), everything else is elementwise work (GELU,
softmax, LayerNorm, AdamW) and layout copies.

    python bench/profile_jax.py                  # patch 4, writes bench/results/jax_profile.md
    python bench/profile_jax.py --patch-size 2
"""

import argparse
import collections
import dataclasses
import datetime
import glob
import gzip
import json
import re
import tempfile
from pathlib import Path

import numpy as np

from throughput import BATCH, CFG, jax_step_fn
from report import publish

RESULTS = Path(__file__).parent / "results" / "jax_profile.md"
HOST_EVENTS = ("Thunk", "Pjit", "np.asarray", "Slinky", "Execute", "Allocate", "Handle",
               "CreateOutputs", "DevicePut", "H2D")


def kernel_times(step, steps):
    """{kernel kind: milliseconds per step} from a jax.profiler trace of `steps` calls."""
    import jax
    with tempfile.TemporaryDirectory() as tmp:
        jax.profiler.start_trace(tmp, create_perfetto_trace=True)
        for _ in range(steps):
            step()
        jax.profiler.stop_trace()
        trace = sorted(glob.glob(f"{tmp}/**/*.trace.json.gz", recursive=True))[-1]
        with gzip.open(trace) as f:
            events = json.load(f)
    events = events["traceEvents"] if isinstance(events, dict) else events
    totals = collections.Counter()
    for e in events:
        name = e.get("name", "")
        if e.get("ph") != "X" or name.startswith("$") or any(h in name for h in HOST_EVENTS):
            continue  # Python frames and host-side bookkeeping, not XLA kernels
        totals[re.sub(r"[.\d]+$", "", name)] += e.get("dur", 0) / 1e3 / steps
    return totals


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patch-size", type=int, default=CFG.patch_size)
    ap.add_argument("--steps", type=int, default=10)
    args = ap.parse_args()
    cfg = dataclasses.replace(CFG, patch_size=args.patch_size)
    step = jax_step_fn(cfg)
    for _ in range(3):
        step()  # compile and warm up
    totals = kernel_times(step, args.steps)
    total = sum(totals.values())
    matmul = sum(v for k, v in totals.items() if k in ("dot", "ynn_fusion", "xnn_fusion"))
    lines = [f"JAX training step, {cfg.img_size}x{cfg.img_size} patch {cfg.patch_size} "
             f"(N {cfg.seq_len}), D {cfg.num_hiddens}, batch {BATCH}, measured "
             f"{datetime.date.today()} (`python bench/profile_jax.py --patch-size "
             f"{cfg.patch_size}`): XLA kernels take {total:.1f} ms per step, matrix "
             f"multiplications {matmul:.1f} ms ({matmul / total:.0%}).", "",
             "| XLA kernel kind | ms per step | share |", "| --- | --- | --- |"]
    for name, ms in totals.most_common(12):
        lines.append(f"| `{name}` | {ms:.2f} | {ms / total:.0%} |")
    publish(RESULTS, lines)


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
