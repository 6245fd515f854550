"""Inputs: image files, directories, globs and video files, as uint8 RGB frames.

Every problem with one input becomes an `InputError` naming the file and the reason; callers report it
and go on with the rest.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from posekit.errors import InputError

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm"}
VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}
MAX_PIXELS = 200_000_000  # ~600 MB as RGB; larger is refused rather than risking the machine's memory

Image.MAX_IMAGE_PIXELS = MAX_PIXELS


def to_rgb_uint8(array: np.ndarray) -> np.ndarray:
    """Any decoded image array (gray, gray+alpha, RGB, RGBA; 8/16-bit or float) -> HxWx3 uint8 RGB."""
    a = np.asarray(array)
    if a.dtype == np.uint16 or a.dtype == np.int32 or a.dtype == np.uint32:
        a = (a.astype(np.float64) / max(float(a.max()), 1.0) * 255.0) if a.max() > 65535 else a / 257.0
    elif a.dtype.kind == "f":
        a = a * 255.0 if a.max() <= 1.0 else a
    elif a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    a = np.clip(np.rint(a), 0, 255).astype(np.uint8) if a.dtype != np.uint8 else a
    if a.ndim == 2:
        a = a[:, :, None]
    if a.shape[2] in (2, 4):  # drop alpha: composite on black would hide people, so keep colour as is
        a = a[:, :, : a.shape[2] - 1]
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    return np.ascontiguousarray(a)


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image file into HxWx3 uint8 RGB (EXIF orientation applied), or raise InputError."""
    p = Path(path)
    try:
        size = p.stat().st_size
    except OSError as e:
        raise InputError(f"{p}: cannot read ({e.strerror})") from e
    if size == 0:
        raise InputError(f"{p}: empty file (0 bytes)")
    try:
        with Image.open(p) as im:
            im = ImageOps.exif_transpose(im)
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                array = np.array(im)
            elif im.mode in ("RGB", "L", "RGBA", "LA"):
                array = np.array(im)
            else:
                array = np.array(im.convert("RGBA" if "A" in im.mode or "transparency" in im.info else "RGB"))
    except Image.DecompressionBombError as e:
        raise InputError(f"{p}: image too large (over {MAX_PIXELS:,} pixels)") from e
    except UnidentifiedImageError as e:
        raise InputError(f"{p}: not an image (unrecognised format)") from e
    except (OSError, SyntaxError, ValueError) as e:  # PIL reports truncation and corrupt data as these
        raise InputError(f"{p}: corrupt or truncated image ({e})") from e
    if array.ndim < 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise InputError(f"{p}: image has no pixels")
    return to_rgb_uint8(array)


@dataclass
class Frame:
    """One image to process: where it came from, and its pixels or the reason it has none."""

    source: str  # file path, or "video.mp4#frame=12"
    index: int  # position in the whole input stream
    image: np.ndarray | None = None
    error: str | None = None
    timestamp_ms: float | None = None


def expand_inputs(inputs: list[str]) -> tuple[list[Path], list[str]]:
    """Files from paths, directories (non-recursive, sorted) and globs; plus errors for missing inputs."""
    files: list[Path] = []
    errors: list[str] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files.extend(sorted(c for c in p.iterdir() if c.is_file() and not c.name.startswith(".")))
        elif p.exists():
            files.append(p)
        elif any(ch in item for ch in "*?["):
            matches = sorted(Path(m) for m in glob.glob(item, recursive=True) if os.path.isfile(m))
            if not matches:
                errors.append(f"{item}: the pattern matches no files")
            files.extend(matches)
        else:
            errors.append(f"{item}: no such file or directory")
    return files, errors


@contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence native stderr (FFmpeg prints its own lines for broken files; we print one clear line)."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def open_video(path: Path | str) -> cv2.VideoCapture:
    with _quiet_stderr():
        return cv2.VideoCapture(str(path))


def iter_video(path: Path, start_index: int = 0) -> Iterator[Frame]:
    cap = open_video(path)
    if not cap.isOpened():
        yield Frame(str(path), start_index, error=f"{path}: cannot open as a video")
        return
    try:
        k = 0
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            ts = cap.get(cv2.CAP_PROP_POS_MSEC)
            yield Frame(f"{path}#frame={k}", start_index + k, image=cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), timestamp_ms=ts)
            k += 1
        if k == 0:
            yield Frame(str(path), start_index, error=f"{path}: video has no readable frames")
    finally:
        cap.release()


def iter_frames(files: list[Path]) -> Iterator[Frame]:
    """Frames of image and video files, in order; unreadable ones carry an error instead of pixels."""
    index = 0
    for f in files:
        if f.suffix.lower() in VIDEO_EXTS:
            for frame in iter_video(f, index):
                index = frame.index + 1
                yield frame
            continue
        try:
            yield Frame(str(f), index, image=read_image(f))
        except InputError as e:
            yield Frame(str(f), index, error=str(e))
        index += 1
