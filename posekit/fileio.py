"""Outputs that are never half-written: atomic files (temp file + rename), append-only JSON Lines, and
fresh output folders."""

from __future__ import annotations

import errno
import itertools
import json
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from posekit.errors import OutputError


def check_writable_target(path: str | Path) -> None:
    """Refuse (one `OutputError` line) to replace anything but a regular file: a rename onto a link replaces
    the link, onto a device node (`/dev/null`, `/dev/full`) turns it into a file. A missing path is fine."""
    path = Path(path)
    try:
        info = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):  # nothing there (making the folder then fails on its own)
        return
    except OSError as e:
        raise OutputError(f"{path}: cannot be checked for writing ({e.strerror})") from e
    if stat.S_ISLNK(info.st_mode):
        raise OutputError(f"{path}: is a symbolic link; posekit writes its outputs only to regular files (give the link's target)")
    if not stat.S_ISREG(info.st_mode):
        kind = ("a folder" if stat.S_ISDIR(info.st_mode) else "a device" if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode)
                else "a pipe" if stat.S_ISFIFO(info.st_mode) else "a socket" if stat.S_ISSOCK(info.st_mode) else "not a regular file")  # fmt: skip
        raise OutputError(f"{path}: is {kind}; posekit writes its outputs only to regular files")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yields a temp path beside `path`; on success it is renamed to `path`, on error removed. A `path` that
    exists as anything but a regular file (a link, a device, a pipe) is refused before anything is written."""
    path = Path(path)
    check_writable_target(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # a short temp name (not derived from the name: a legal 255-byte name plus a prefix is too long for the
    # file system); the suffix kept, as writers such as cv2.VideoWriter pick the container by it
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".pk-", suffix=f".tmp{path.suffix[-16:]}")
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
    O_APPEND descriptor: a process killed at any moment (kill -9 included) leaves only whole lines. Opened
    with O_NOFOLLOW and only onto a regular file: a link placed at the path is never followed."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        check_writable_target(self.path)
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except OSError as e:  # ELOOP: a link appeared between the check and the open
            why = "is a symbolic link" if e.errno == errno.ELOOP else e.strerror
            raise OutputError(f"{self.path}: {why}; not written") from e
        if not stat.S_ISREG(os.fstat(self._fd).st_mode):
            os.close(self._fd)
            raise OutputError(f"{self.path}: is not a regular file; not written")
        os.ftruncate(self._fd, 0)  # truncated only once it is known to be our regular file

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


LOCK_NAME = ".posekit.lock"  # held (flock) by the run writing into a folder; removed when it ends


def _holds_files(folder: Path) -> bool:
    return any(p.name != LOCK_NAME for p in folder.iterdir())


def _lock(folder: Path) -> int | None:
    """An exclusive lock on `folder` (flock on its lock file, released by the OS if the process dies); the
    descriptor, or None when another process holds it."""
    try:
        import fcntl
    except ImportError:  # no flock (Windows): folders are still made exclusively, existing ones not locked
        return os.open(os.devnull, os.O_RDONLY)
    try:
        fd = os.open(folder / LOCK_NAME, os.O_CREAT | os.O_RDWR | getattr(os, "O_NOFOLLOW", 0), 0o644)
    except OSError as e:
        raise OutputError(f"{folder}: cannot write there ({e.strerror})") from e
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


@contextmanager
def claimed_out_dir(out: str | Path, exist_ok: bool = False) -> Iterator[Path]:
    """The output folder of one run, held until it ends: `out` itself when it is new, empty or (`exist_ok`)
    reused, else the first `out2`, `out3`, ... that this run can make or lock. Two runs never share a folder:
    new folders are made with mkdir (one of two racing runs gets each), and every folder is locked; a
    reused folder another run holds is refused in one line. A folder this run made and left empty (every
    input failed) is removed at the end."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out}: is a file; give a folder for the outputs")
    first = exist_ok or not out.exists() or not _holds_files(out)
    numbered = (out.parent / f"{out.name}{n}" for n in itertools.count(2))
    for folder in itertools.chain([out] if first else [], numbered):
        try:
            folder.mkdir(parents=True)
            created = True
        except FileExistsError:
            created = False
            if not folder.is_dir() or (folder != out and _holds_files(folder)):
                continue  # a numbered folder with a finished run's outputs: the next number
        except OSError as e:
            raise OutputError(f"--out {folder}: cannot make the folder ({e.strerror})") from e
        fd = _lock(folder)
        if fd is not None:
            break
        if folder == out and exist_ok:
            raise OutputError(f"--out {out}: another posekit run is writing there; wait for it or give another folder")
    try:
        yield folder
    finally:
        (folder / LOCK_NAME).unlink(missing_ok=True)
        os.close(fd)
        if created and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


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
