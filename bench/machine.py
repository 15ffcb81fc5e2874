"""What CPU a benchmark ran on, in one line for its table or its results row.

The project's 2-core machines are not all alike: on 2026-11-22 the CPU had AVX-512 (with
bfloat16 instructions), on 2026-12-01 only AVX2, and the same training step took 1.4-2x as
long on the second. A result without this line cannot be compared with another.

Importing it applies vitlib.memory.keep_freed_memory(), as vitlib.torch and vitlib.jax do, but
before `matmul_peak` starts PyTorch's threads: applied after them, glibc may hand XLA's threads
an arena of their own, and a JAX run of Recipe.cpu15() then took 60 s per epoch with 24,000 page
faults per step instead of 45 s (vitlib/memory.py says why).
"""

import os
import platform

from vitlib.memory import keep_freed_memory

keep_freed_memory()


def _cpuinfo(key: str) -> str | None:
    """The first value of `key` in /proc/cpuinfo, or None where there is none (e.g. macOS)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_flags() -> set[str]:
    """The CPU's feature flags (empty where /proc/cpuinfo has none)."""
    return set((_cpuinfo("flags") or "").split())


def cpu_model() -> str:
    """The CPU's model name, e.g. 'AMD EPYC', or the platform's processor string."""
    return _cpuinfo("model name") or platform.processor() or "unknown CPU"


def vector_isa(flags=None) -> str:
    """The widest vector instructions the CPU has: 'AVX-512 + BF16', 'AVX-512', 'AVX2' or ''."""
    flags = cpu_flags() if flags is None else flags
    if "avx512f" in flags:
        return "AVX-512 + BF16" if "avx512_bf16" in flags else "AVX-512"
    return "AVX2" if "avx2" in flags else ""


def matmul_peak(n=1024, reps=20) -> float:
    """fp32 GFLOP/s of torch.mm on square matrices with torch's threads: the machine's practical
    peak. Machines of one kind differ: the AVX2 one gave 145 GFLOP/s on 2026-12-01, 63-127 over
    2026-12-02 (bench/results/recipes.jsonl records it with every run)."""
    import time

    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e9


def describe_cpu() -> str:
    """e.g. 'CPU, 2 cores (x86_64, AMD EPYC, AVX2)'."""
    parts = [platform.machine(), cpu_model(), vector_isa()]
    return f"CPU, {os.cpu_count()} cores ({', '.join(p for p in parts if p)})"


if __name__ == "__main__":
    print(describe_cpu())
