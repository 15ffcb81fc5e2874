"""vitlib.memory.keep_freed_memory: a step reuses the memory the previous step freed.

Each case runs in a fresh Python process, since the malloc settings hold for a whole process and
this one has already imported vitlib. Page faults are counted with getrusage: a block that is
mapped afresh faults once per 4 KiB page, a reused one does not fault at all.
"""

import os
import platform
import subprocess
import sys

import pytest

import vitlib.memory

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
needs_glibc = pytest.mark.skipif(not GLIBC, reason="the settings are glibc's; elsewhere a no-op")

# A worker thread mallocs, fills and frees a 100 MB block, as XLA's threads do with a step's
# buffer (through libc itself: NumPy asks for huge pages, which would hide the faults).
MALLOC_LOOP = """
import ctypes, resource, threading
{setup}
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
faults = []
def work():
    for _ in range(5):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        block = libc.malloc(100_000_000)
        ctypes.memset(block, 1, 100_000_000)  # touch every page
        libc.free(block)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
t = threading.Thread(target=work)
t.start(); t.join()
print(max(faults[1:]))  # the first block faults in any case
"""

# Training steps of the CPU recipe's ViT in JAX (a 94 MB buffer of intermediates per step).
JAX_STEPS = """
import resource
import numpy as np
import optax
from flax import nnx
import vitlib.jax as vj
from vitlib import ViTConfig
model = vj.ViT(ViTConfig.fashion_cpu(), rngs=nnx.Rngs(0))
opt = nnx.Optimizer(model, optax.adamw(1e-3), wrt=nnx.Param)
x = np.random.default_rng(0).random((128, 28, 28, 1), np.float32)
y = np.arange(128) % 10
for _ in range(3):
    float(vj.train_step(model, opt, x, y))  # compile, warm up
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(4):
    float(vj.train_step(model, opt, x, y))
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // 4)
"""


def page_faults(code, keep):
    env = {**os.environ, "VITLIB_KEEP_FREED_MEMORY": "1" if keep else "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return int(out.stdout.split()[-1])


@needs_glibc
def test_a_freed_block_is_reused_without_page_faults():
    code = MALLOC_LOOP.format(
        setup="from vitlib.memory import keep_freed_memory; keep_freed_memory()")
    kept, unmapped = page_faults(code, keep=True), page_faults(code, keep=False)
    assert kept < 100, kept  # the 100 MB come back from the heap, already mapped
    assert unmapped > 20_000, unmapped  # glibc's default: 24,400 fresh pages every time


@needs_glibc
def test_importing_vitlib_jax_stops_the_page_faults_of_every_step():
    kept, unmapped = page_faults(JAX_STEPS, keep=True), page_faults(JAX_STEPS, keep=False)
    assert kept < 1_000, kept
    assert unmapped > 10_000, unmapped


def test_it_can_be_turned_off(monkeypatch):
    monkeypatch.setenv("VITLIB_KEEP_FREED_MEMORY", "0")
    assert vitlib.memory.keep_freed_memory() is False


def test_other_c_libraries_are_left_alone(monkeypatch):
    monkeypatch.setattr(platform, "system", lambda: "Darwin")
    assert vitlib.memory.keep_freed_memory() is False


@needs_glibc
def test_on_glibc_the_settings_apply():
    assert vitlib.memory.keep_freed_memory() is True
