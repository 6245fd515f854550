"""Outputs that are never half-written: atomic files (temp file + rename), append-only JSON Lines, and
fresh output folders."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yields a temp path beside `path`; on success it is renamed to `path`, on error removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_json(path: str | Path, obj: Any, indent: int | None = None) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=indent).encode())


class JsonLines:
    """Records appended to a JSON Lines file as they are produced, each line in one write() call on an
    O_APPEND descriptor: a process killed at any moment (kill -9 included) leaves only whole lines."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)

    def write(self, record: Any) -> None:
        os.write(self._fd, (json.dumps(record, allow_nan=False) + "\n").encode())

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def read_json_lines(path: str | Path) -> Iterator[Any]:
    """The records of a JSON Lines file, one at a time (flat memory on long runs)."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def fresh_out_dir(out: str | Path, exist_ok: bool = False) -> Path:
    """`out`, or when it already holds files the first free `out2`, `out3`, ... (Ultralytics' exist_ok=False):
    a second run never mixes with or replaces the first one's outputs. A file at `out` is refused."""
    from posekit.errors import InputError

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: is a file; give a folder for the outputs")
    if exist_ok or not out.exists() or not any(out.iterdir()):
        return out
    n = 2
    while (c := out.parent / f"{out.name}{n}").exists() and not (c.is_dir() and not any(c.iterdir())):
        n += 1
    return c


class _Stop:
    depth = 0  # nested `whole_item()` blocks running in the main thread
    pending = False  # a stop signal arrived inside one


def stop_signal(signum: int, frame: object) -> None:
    """SIGINT / SIGTERM handler: stop as Ctrl-C does (KeyboardInterrupt), but never between the outputs of
    one item (its JSON line and its render frame): inside `whole_item()` the stop waits for the block's end."""
    if _Stop.depth:
        _Stop.pending = True
        return
    raise KeyboardInterrupt


@contextmanager
def whole_item() -> Iterator[None]:
    """Writes that must land together or not at all when the user stops the run (see `stop_signal`)."""
    _Stop.depth += 1
    try:
        yield
    finally:
        _Stop.depth -= 1
        if not _Stop.depth and _Stop.pending:
            _Stop.pending = False
            raise KeyboardInterrupt
