"""Training throughput of vitlib's ViT against timm's VisionTransformer, and JAX against PyTorch.

Every contender trains the same model shape (28x28x1, patch 4, D 128, 4 blocks, 4 heads, MLP 256,
no qkv bias, no dropout, batch 128, fp32, AdamW) on random data. The contenders run interleaved,
round after round in one process, so a noisy machine slows all of them alike and the ratios hold.
Each reports the median images/s over the rounds and the spread (min-max). The achieved FLOP/s
come from the FLOP count in vitlib.cost, over the fp32 matmul peak measured here.

    python bench/throughput.py                 # all contenders, appends to bench/results/throughput.md
    python bench/throughput.py --rounds 3 --no-compile
"""

import argparse
import datetime
import os
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from machine import describe_cpu, matmul_peak
from report import publish
from vitlib import ViTConfig
from vitlib.cost import train_flops

CFG = ViTConfig(img_size=28, patch_size=4, in_channels=1, num_hiddens=128, mlp_num_hiddens=256,
                num_heads=4, num_blks=4, emb_dropout=0.0, blk_dropout=0.0, use_bias=False)
BATCH = 128


def torch_step_fn(model, compile_=False, batch=BATCH, cfg=CFG, amp=False):
    """A closure running one AdamW training step of `model` on a random (batch, C, H, W) batch
    (with amp, the forward pass under bfloat16 autocast on the CPU)."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(batch, cfg.in_channels, cfg.img_size, cfg.img_size)
    y = torch.randint(0, 10, (batch,))

    def step(model, x, y):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    fn = torch.compile(step) if compile_ else step
    model.train()
    return lambda: fn(model, x, y).item()


def jax_step_fn(cfg, seed=0, batch=BATCH):
    """A closure running one jitted AdamW training step of a vitlib.jax.ViT(cfg)."""
    import jax
    import optax
    from flax import nnx

    import vitlib.jax as vj

    model = vj.ViT(cfg, rngs=nnx.Rngs(seed))
    model.train()
    opt = nnx.Optimizer(model, optax.adamw(1e-3), wrt=nnx.Param)
    x = jax.random.normal(jax.random.key(0), (batch, cfg.img_size, cfg.img_size, cfg.in_channels))
    y = jax.random.randint(jax.random.key(1), (batch,), 0, 10)

    @nnx.jit
    def step(model, opt, x, y):
        def loss_fn(model):
            return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()
        loss, grads = nnx.value_and_grad(loss_fn)(model)
        opt.update(model, grads)
        return loss

    return lambda: float(step(model, opt, x, y))


def interleaved(steps_of, rounds, steps, batch, warmup=2):
    """{name: [images/s per round]} of step closures run in turn, round after round, so that a
    noisy machine slows all of them alike and their ratios hold."""
    for step in steps_of.values():
        for _ in range(warmup):
            step()  # jit compiles / caches warm here
    rates = {name: [] for name in steps_of}
    for _ in range(rounds):
        for name, step in steps_of.items():
            t = time.perf_counter()
            for _ in range(steps):
                step()
            rates[name].append(steps * batch / (time.perf_counter() - t))
    return rates


def timm_model():
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(img_size=28, patch_size=4, in_chans=1, num_classes=10,
                             embed_dim=128, depth=4, num_heads=4, mlp_ratio=2.0, qkv_bias=False)


def contenders(compile_):
    import vitlib.torch as vt

    torch.manual_seed(0)
    found = {"timm VisionTransformer": lambda: torch_step_fn(timm_model()),
             "vitlib.torch eager": lambda: torch_step_fn(vt.ViT(CFG)),
             "vitlib.jax jit": lambda: jax_step_fn(CFG)}
    if compile_:
        found["vitlib.torch compile"] = lambda: torch_step_fn(vt.ViT(CFG), compile_=True)
    return found


def run(rounds, steps, compile_):
    steps_of = {}
    for name, make in contenders(compile_).items():
        t = time.perf_counter()
        try:
            step = make()
            step()  # first call: jit tracing / torch.compile happen here
        except Exception as e:  # torch.compile needs a C++ toolchain; report, do not die
            print(f"{name}: unavailable ({type(e).__name__}: {str(e).splitlines()[0][:100]})")
            continue
        print(f"{name}: first step {time.perf_counter() - t:.1f} s (compile/trace included)")
        for _ in range(2):
            step()
        steps_of[name] = step
    rates = {name: [] for name in steps_of}
    for r in range(rounds):  # interleaved: every contender once per round
        for name, step in steps_of.items():
            t = time.perf_counter()
            for _ in range(steps):
                step()
            rates[name].append(steps * BATCH / (time.perf_counter() - t))
        print(f"round {r + 1}/{rounds}: " + ", ".join(f"{n} {v[-1]:.0f}" for n, v in rates.items()))
    return rates


def table(rates, peak):
    flops = train_flops(CFG)
    timm_rates = rates.get("timm VisionTransformer")
    ref = statistics.median(timm_rates) if timm_rates else None
    lines = ["| contender | images/s (median) | spread (min-max) | vs timm | GFLOP/s | % of matmul peak |",
             "| --- | --- | --- | --- | --- | --- |"]
    for name, r in rates.items():
        med = statistics.median(r)
        gflops = med * flops / 1e9
        vs_timm = f"{med / ref:.2f}x" if ref else "n/a (timm not installed)"
        lines.append(f"| {name} | {med:.0f} | {min(r):.0f}-{max(r):.0f} | {vs_timm} | "
                     f"{gflops:.1f} | {100 * gflops / peak:.0f}% |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=10, help="training steps per contender per round")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "throughput.md"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    peak = matmul_peak()
    print(f"fp32 matmul peak: {peak:.0f} GFLOP/s; train FLOPs per image: {train_flops(CFG) / 1e6:.1f} M")
    rates = run(args.rounds, args.steps, not args.no_compile)
    md = (f"Training throughput, {datetime.date.today()}, {describe_cpu()}, "
          f"{args.threads} threads, torch {torch.__version__}, batch {BATCH}, fp32, matmul peak "
          f"{peak:.0f} GFLOP/s, {args.rounds} rounds x {args.steps} steps.\n\n{table(rates, peak)}\n")
    publish(Path(args.out), md.rstrip("\n").splitlines())  # appended: earlier machines' tables stay


if __name__ == "__main__":
    main()
