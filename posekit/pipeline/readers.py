"""Inputs: image files, directories, globs and video files, as uint8 RGB frames.

Every problem with one input becomes an `InputError` naming the file and the reason; callers report it
and go on with the rest.
"""

from __future__ import annotations

import glob
import os
import stat
import time
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


def pil_array(im: Image.Image) -> np.ndarray:
    """A PIL image's pixels at their own depth: 16- and 32-bit gray kept as such (to_rgb_uint8 scales them;
    PIL's convert("RGB") would saturate them to white), palettes and other modes converted to RGB(A)."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "RGB", "L", "RGBA", "LA"):
        return np.array(im)
    return np.array(im.convert("RGBA" if "A" in im.mode or "transparency" in im.info else "RGB"))


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


def as_rgb(image: object, rgb: bool = False, name: str = "image") -> np.ndarray:
    """What the API accepts, as HxWx3 uint8 RGB: a path, a PIL image, or a decoded array in OpenCV's channel
    order (BGR / BGRA, as cv2.imread, Ultralytics and MMPose take it) unless `rgb=True`. Gray arrays need no
    order. Anything else is one clear InputError."""
    if isinstance(image, (str, Path)):
        return read_image(image)
    if isinstance(image, Image.Image):
        return to_rgb_uint8(pil_array(image))
    if image is None:
        raise InputError(f"{name} is None (cv2.imread returns None for a file it cannot read: check the path)")
    if isinstance(image, (bytes, bytearray, memoryview)):
        raise InputError(f"{name} is encoded bytes; pass a path, a PIL image or a decoded array (cv2.imdecode)")
    if not isinstance(image, np.ndarray):
        raise InputError(f"{name}: expected a path, a PIL image or an HxWx3 array, got {type(image).__name__}")
    if image.dtype.kind not in "uif" and image.dtype != np.bool_:
        raise InputError(f"{name}: array of dtype {image.dtype}; expected uint8 (or another numeric type)")
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 2, 3, 4)):
        raise InputError(f"{name}: array of shape {image.shape}; expected HxW (gray) or HxWxC with C = 1, 3 (BGR) or 4 (BGRA)")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise InputError(f"{name}: array of shape {image.shape} has no pixels")
    if image.shape[0] * image.shape[1] > MAX_PIXELS:
        raise InputError(f"{name}: {image.shape[1]}x{image.shape[0]} image is over {MAX_PIXELS / 1e6:.0f} Mpx; refused")
    if image.dtype.kind == "f" and not np.isfinite(image).all():
        raise InputError(f"{name}: array has non-finite values (NaN or Inf)")
    if not rgb and image.ndim == 3 and image.shape[2] >= 3:
        image = image[:, :, [2, 1, 0, 3][: image.shape[2]]]  # BGR(A) -> RGB(A)
    return to_rgb_uint8(image)


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
            if im.width * im.height > MAX_PIXELS:  # PIL itself refuses only above twice its limit
                raise InputError(f"{p}: image too large ({im.width}x{im.height} = {im.width * im.height / 1e6:.0f} Mpx; "
                                 f"over {MAX_PIXELS / 1e6:.0f} Mpx is refused to protect the machine's memory)")
            array = pil_array(ImageOps.exif_transpose(im))
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


def _not_a_file(p: Path) -> str | None:
    """Why `p` cannot be read as an input file, or None when it is a regular file (links followed)."""
    try:
        st = p.stat()
    except OSError as e:
        if p.is_symlink():
            return "symbolic link loop" if e.errno == 40 else "broken symbolic link (its target does not exist)"
        return f"cannot read ({e.strerror})"
    if stat.S_ISDIR(st.st_mode):
        return "is a folder, not an image or video file"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file (a pipe, socket or device); not read"
    return None


def expand_inputs(inputs: list[str]) -> tuple[list[Path], list[str]]:
    """Files from paths, directories (non-recursive, sorted) and globs; plus one error line for each input
    that cannot be read: missing paths, empty patterns, and in folders the entries that look like inputs
    but are not regular files (a folder named x.jpg, pipes, broken or looping links)."""
    files: list[Path] = []
    errors: list[str] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            for c in sorted(p.iterdir()):
                if c.name.startswith("."):
                    continue
                why = _not_a_file(c)
                if why is None:
                    files.append(c)
                elif not (why.startswith("is a folder") and c.suffix.lower() not in IMAGE_EXTS | VIDEO_EXTS):
                    errors.append(f"{c}: {why}")  # plain sub-folders are not inputs (not recursive)
        elif p.exists() or p.is_symlink():
            why = _not_a_file(p)
            (errors.append(f"{p}: {why}") if why else files.append(p))
        elif any(ch in item for ch in "*?["):
            matches = sorted(Path(m) for m in glob.glob(item, recursive=True) if os.path.isfile(m))
            if not matches:
                errors.append(f"{item}: the pattern matches no files")
            files.extend(matches)
        else:
            errors.append(f"{item}: no such file or directory")
    return files, errors


@contextmanager
def quiet_stderr() -> Iterator[None]:
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
    with quiet_stderr():
        return cv2.VideoCapture(str(path))


MAX_BAD_FRAMES_IN_A_ROW = 25  # then the rest of the file is taken as missing (truncated), not as corrupt frames


def iter_video(path: Path, start_index: int = 0) -> Iterator[Frame]:
    """Frames of a video file. A frame that fails to decode inside the length the container declares is
    skipped and decoding goes on (one corrupt packet must not end the video); the skipped frames and an early
    end (a truncated file) are reported as one error Frame each, after the frames."""
    cap = open_video(path)
    if not cap.isOpened():
        yield Frame(str(path), start_index, error=f"{path}: cannot open as a video")
        return
    declared = max(int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), 0)
    bad: list[int] = []
    k = decoded = in_a_row = 0
    try:
        while True:
            ok, bgr = cap.read()
            if not ok:
                if k >= declared or in_a_row >= MAX_BAD_FRAMES_IN_A_ROW:
                    break
                bad.append(k)
                k, in_a_row = k + 1, in_a_row + 1
                continue
            ts = cap.get(cv2.CAP_PROP_POS_MSEC)
            yield Frame(f"{path}#frame={k}", start_index + k, image=cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), timestamp_ms=ts)
            k, decoded, in_a_row = k + 1, decoded + 1, 0
    finally:
        cap.release()
    if decoded == 0:
        yield Frame(str(path), start_index, error=f"{path}: video has no readable frames")
        return
    trailing = in_a_row  # failures the file ended on: missing frames (truncation), not corrupt ones
    skipped = bad[: len(bad) - trailing]
    if skipped:
        yield Frame(str(path), start_index + k, error=f"{path}: {len(skipped)} corrupt frame(s) skipped "
                    f"(frames {skipped[0]}-{skipped[-1]}); the frames around them were processed")  # fmt: skip
    if trailing or decoded + len(skipped) < declared:
        yield Frame(str(path), start_index + k, error=f"{path}: ended after frame {decoded + len(skipped) - 1} of the {declared} "
                    "its header declares (truncated file?); the frames before were processed")  # fmt: skip


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


def is_live_source(source: str) -> bool:
    """A webcam index ("0") or a stream URL ("rtsp://...") rather than a path (an existing file wins)."""
    return (source.isdigit() or "://" in source) and not Path(source).exists()


def iter_capture(source: str) -> Iterator[Frame]:
    """Frames of a webcam index or a stream URL as they arrive ("SOURCE#frame=K"), timestamped from the start."""
    spec: int | str = int(source) if source.isdigit() else source
    cap = cv2.VideoCapture(spec)
    if not cap.isOpened():
        yield Frame(str(spec), 0, error=f"{spec}: cannot open the camera or stream")
        return
    start, k = time.perf_counter(), 0
    try:
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            yield Frame(
                f"{spec}#frame={k}", k, image=cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), timestamp_ms=1000 * (time.perf_counter() - start)
            )
            k += 1
    finally:
        cap.release()
