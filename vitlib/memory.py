"""Keep freed memory for reuse instead of giving it back to the OS at every training step.

On Linux, glibc's malloc serves a large block (or any block a worker thread asks for that does
not fit its arena) with a fresh `mmap` and returns it with `munmap` when it is freed. XLA on the
CPU allocates all the intermediate arrays of a jitted step in one such block (94 MB for the CPU
recipe's ViT at batch 128) and frees it when the step ends, so every step maps the block again
and the kernel zero-fills it page by page: about 23,500 page faults per step, a quarter of the
step's time on a 2-core machine (bench/malloc.py). PyTorch's eager steps fault less (about
1,500 per step) but pay the same way.

`keep_freed_memory()` tells glibc to serve every thread from the main heap, never to use `mmap`
for a block, and to keep up to 2 GiB of freed memory at the top of the heap (a patch-2 step's
buffer is 1.1 GB): a step then reuses the pages the previous step freed. `vitlib.torch` and
`vitlib.jax` call it when imported; glibc arenas are picked per thread when a thread first allocates, so it works fully when vitlib
is imported before the framework starts its threads (the notebooks import vitlib first).
Set VITLIB_KEEP_FREED_MEMORY=0 to leave malloc alone. Other C libraries (macOS, Windows, musl)
are left alone.
"""

import ctypes
import os
import platform

M_TRIM_THRESHOLD, M_MMAP_MAX, M_ARENA_MAX = -1, -4, -8  # mallopt parameters, from <malloc.h>
KEEP_BYTES = 2**31 - 1  # freed memory kept at the top of the heap: 2 GiB, the most a C int holds


def keep_freed_memory() -> bool:
    """Make glibc's malloc reuse freed memory (see the module docstring); returns True when it
    applied the settings, False on another C library or with VITLIB_KEEP_FREED_MEMORY=0."""
    if os.environ.get("VITLIB_KEEP_FREED_MEMORY", "1") == "0":
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)  # the C library this process runs on
    # mallopt returns 1 on success: one arena (so no thread falls back to mmap for a block its
    # own arena cannot hold), no mmap at all, and a trim threshold that keeps a step's buffer
    # (an int: 2 GiB is the most it takes; more would wrap around to 0, trimming at every free).
    return all(libc.mallopt(param, value) == 1
               for param, value in ((M_ARENA_MAX, 1), (M_MMAP_MAX, 0),
                                    (M_TRIM_THRESHOLD, KEEP_BYTES)))
