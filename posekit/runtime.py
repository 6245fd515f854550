"""Process-level CPU tuning for inference."""

from __future__ import annotations

import ctypes
import os
import sys

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
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
