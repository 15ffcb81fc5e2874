"""bfloat16 autocast against float32 for vitlib.torch training steps on this CPU.

CPUs with native bfloat16 (AVX512-BF16, AMX) multiply bf16 matrices several times faster than
fp32 ones, but autocast also pays for casting weights and activations at every step. Which side
wins depends on the model's width: this benchmark times both, interleaved round after round in
one process, for three shapes, and writes a Markdown table.

    python bench/amp.py          # writes bench/results/amp.md
"""

import datetime
import statistics
from pathlib import Path

import torch

import vitlib.torch as vt
from vitlib import ViTConfig
from vitlib.torch.train import amp_supported

from throughput import CFG, interleaved, torch_step_fn

RESULTS = Path(__file__).parent / "results" / "amp.md"
SHAPES = {  # name: (config, batch)
    "CPU recipe (28x28, patch 7, D 128)": (ViTConfig.fashion_cpu(pool="mean", blk_dropout=0.0), 128),
    "throughput benchmark (28x28, patch 4, D 128)": (CFG, 128),
    "the chapter's ViTConfig.d2l() (96x96, patch 16, D 512)": (ViTConfig.d2l(), 32),
}


def main(rounds=4, steps=5):
    if not amp_supported("cpu"):
        print("This CPU has no native bfloat16: autocast would only add casts. Nothing to time.")
        return
    lines = [f"Training images/s, fp32 against bf16 autocast, {torch.get_num_threads()} threads, "
             f"median of {rounds} interleaved rounds of {steps} steps, measured "
             f"{datetime.date.today()} (`python bench/amp.py`):", "",
             "| model | batch | fp32 img/s | bf16 amp img/s | amp / fp32 |", "| --- | --- | --- | --- | --- |"]
    for name, (cfg, batch) in SHAPES.items():
        torch.manual_seed(0)
        steps_of = {amp: torch_step_fn(vt.ViT(cfg), batch=batch, cfg=cfg, amp=amp)
                    for amp in (False, True)}
        rates = interleaved(steps_of, rounds, steps, batch)
        fp32, bf16 = statistics.median(rates[False]), statistics.median(rates[True])
        lines.append(f"| {name} | {batch} | {fp32:.0f} | {bf16:.0f} | {bf16 / fp32:.2f}x |")
        print(lines[-1])
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)


if __name__ == "__main__":
    main()
