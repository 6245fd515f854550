"""Process-level CPU tuning for inference."""

from __future__ import annotations

import ctypes
import os
import sys

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -2, -3, -8
MAX_ARENAS = 2
_tuned = False


def tune_malloc() -> bool:
    """Keep freed activation memory in the heap instead of returning it to the OS.

    Large fresh activations are otherwise mmap'ed and page-faulted on every forward pass; on the
    2-core dev machine this halved batched MoveNet Thunder time (74 -> 40 ms/crop, see README).
    glibc only; set POSEKIT_TUNE_MALLOC=0 to leave the allocator alone.
    """
    global _tuned
    if _tuned or os.environ.get("POSEKIT_TUNE_MALLOC", "1") == "0" or not sys.platform.startswith("linux"):
        return _tuned
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    ok = libc.mallopt(_M_MMAP_THRESHOLD, 1 << 30) and libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30) and libc.mallopt(_M_TOP_PAD, 256 << 20)
    _tuned = bool(ok)
    return _tuned


def limit_arenas() -> bool:
    """At most `MAX_ARENAS` glibc malloc arenas for this process. With `tune_malloc`'s thresholds each arena keeps
    what it once held, and glibc gives each busy thread its own (up to 8 per core): a long `track` with its
    concurrent workers grew from 2.0 GB at frame 150 to 2.4 GB at frame 1 800 (docs/memory.md). Only arenas made
    after the call are limited, so the CLI calls it first, before any thread exists. glibc only;
    POSEKIT_TUNE_MALLOC=0 leaves the allocator alone."""
    if os.environ.get("POSEKIT_TUNE_MALLOC", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return bool(libc.mallopt(_M_ARENA_MAX, MAX_ARENAS))

