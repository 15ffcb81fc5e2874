"""Time per epoch against patch size and against img_size: the chapter's exercise 1, measured.

For each shape, vitlib.torch (eager) and vitlib.jax (jit) train a few steps on random data,
interleaved; the table gives the median seconds per 60,000-image epoch next to the model's FLOPs
split into the part linear in the token count N and the attention part quadratic in N, so the
quadratic term is visible once N grows.

    python bench/scaling.py        # writes bench/results/scaling.md
"""

import argparse
import dataclasses
import datetime
import os
import statistics
from pathlib import Path

import torch

from vitlib.cost import flops

from machine import matmul_peak
from throughput import CFG, interleaved, jax_step_fn, torch_step_fn  # the same steps

EPOCH = 60_000


def seconds_per_epoch(cfg, batch, rounds, steps):
    import vitlib.torch as vt

    fns = {"torch": torch_step_fn(vt.ViT(cfg), batch=batch, cfg=cfg),
           "jax": jax_step_fn(cfg, batch=batch)}
    rates = interleaved(fns, rounds, steps, batch)  # images/s
    return {k: EPOCH / statistics.median(v) for k, v in rates.items()}


def sweep(shapes, batch, rounds, steps):
    rows = ["| img_size | patch | tokens N | GFLOPs/img (linear in N) | GFLOPs/img (attention N^2) "
            "| torch s/epoch | jax s/epoch |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for img_size, patch in shapes:
        cfg = dataclasses.replace(CFG, img_size=img_size, patch_size=patch)
        f = flops(cfg)
        quad = f["attention_scores"]
        s = seconds_per_epoch(cfg, batch, rounds, steps)
        rows.append(f"| {img_size} | {patch} | {cfg.seq_len} | {(f['total'] - quad) / 1e9:.3f} | "
                    f"{quad / 1e9:.3f} | {s['torch']:.0f} | {s['jax']:.0f} |")
        print(rows[-1], flush=True)
    return "\n".join(rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "scaling.md"))
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count())
    by_patch = sweep([(28, p) for p in (14, 7, 4, 2)], args.batch, args.rounds, args.steps)
    by_size = sweep([(s, 4) for s in (28, 56, 84)], args.batch, args.rounds, args.steps)
    md = (f"Seconds per 60,000-image training epoch (median of {args.rounds} rounds, batch "
          f"{args.batch}, fp32), {datetime.date.today()}, {os.cpu_count()} CPU threads, matmul "
          f"peak {matmul_peak():.0f} GFLOP/s. D 128, 4 blocks, 4 heads, MLP 256.\n\n"
          f"Against patch size (img_size 28):\n\n{by_patch}\n\n"
          f"Against img_size (patch 4; the chapter's exercise 1):\n\n{by_size}\n")
    print(md)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(md)


if __name__ == "__main__":
    main()
