"""A disk cache of teacher outputs: one .npz per (image content, boxes, teacher id), written atomically,
so a teacher pass killed half-way resumes where it stopped. Every entry carries the sha256 of its arrays;
an entry that fails the check (truncated, edited, from another teacher) is recomputed, never used."""

from __future__ import annotations

import hashlib
import re
import zipfile
from pathlib import Path

import numpy as np

from posekit.distill.teachers import Teacher, TeacherOutput
from posekit.fileio import atomic_path

FIELDS = ("keypoints", "keypoints_crop", "scores", "heatmaps", "crop_matrices", "heatmap_matrix")


def _digest(arrays: dict[str, np.ndarray], salt: str, names: tuple[str, ...]) -> str:
    h = hashlib.sha256(salt.encode())
    for name in names:
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def save_checked(path: Path, arrays: dict[str, np.ndarray], salt: str, **text: str) -> None:
    """`arrays` (and short `text` fields) as one .npz with the sha256 of the arrays and `salt`, atomically."""
    extra = {k: np.array(v) for k, v in text.items()}
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays, **extra, digest=np.array(_digest(arrays, salt, tuple(arrays))))


def load_checked(path: Path, names: tuple[str, ...], salt: str, text: tuple[str, ...] = ()) -> tuple[dict[str, np.ndarray] | None, int]:
    """(the arrays `names` and text fields of a `save_checked` entry, 0), or (None, 1) when the entry is
    unreadable or fails its check, (None, 0) when there is none."""
    if not path.exists():
        return None, 0
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {name: f[name] for name in names}
            strings = {name: str(f[name]) for name in text}
            stored = str(f["digest"])
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
        return None, 1
    if stored != _digest(arrays, salt, names):
        return None, 1
    return {**arrays, **strings}, 0


class TeacherCache:
    def __init__(self, root: str | Path, teacher: Teacher) -> None:
        self.teacher = teacher
        self.root = Path(root) / re.sub(r"[^A-Za-z0-9._-]", "_", teacher.teacher_id)
        self.hits = self.misses = self.rejected = 0

    def key(self, image: np.ndarray, boxes: np.ndarray) -> str:
        h = hashlib.sha256(self.teacher.teacher_id.encode())
        h.update(str(image.shape).encode())
        h.update(np.ascontiguousarray(image).tobytes())
        h.update(np.ascontiguousarray(np.asarray(boxes, np.float32).reshape(-1, 4)).tobytes())
        return h.hexdigest()

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npz"

    def load(self, key: str) -> TeacherOutput | None:
        entry, rejected = load_checked(self.path(key), FIELDS, self.teacher.teacher_id, ("spec",))
        self.rejected += rejected
        return None if entry is None else TeacherOutput(**entry)

    def save(self, key: str, out: TeacherOutput) -> None:
        save_checked(self.path(key), {name: getattr(out, name) for name in FIELDS}, self.teacher.teacher_id, spec=out.spec)

    def __call__(self, image: np.ndarray, boxes: np.ndarray) -> TeacherOutput:
        """The teacher's output for (image, boxes), from the cache when a checked entry exists."""
        key = self.key(image, boxes)
        cached = self.load(key)
        if cached is not None:
            self.hits += 1
            return cached
        self.misses += 1
        out = self.teacher(image, boxes)
        self.save(key, out)
        return out
