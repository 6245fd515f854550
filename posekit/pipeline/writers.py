"""Outputs of `posekit predict`: COCO results, OpenPose JSON, rendered images and videos — all atomic."""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
from functools import cache
from pathlib import Path

import cv2
import numpy as np

from posekit.errors import PosekitError
from posekit.fileio import JsonLines, atomic_path, atomic_write_bytes, atomic_write_json, read_json_lines, whole_item
from posekit.pipeline.readers import quiet_stderr
from posekit.structures import Poses
from posekit.viz.draw import draw_poses

# 000000123456.jpg (COCO 2017) and COCO_val2014_000000123456.jpg (COCO 2014)
COCO_NAME = re.compile(r"^(?:COCO_[a-z]+\d{4}_)?(\d{12})\.(jpg|jpeg|png)$", re.IGNORECASE)


class ImageIds:
    """COCO image ids: parsed from COCO file names (000000123456.jpg or COCO_val2014_000000123456.jpg -> 123456),
    else sequential."""

    def __init__(self) -> None:
        self.by_source: dict[str, int] = {}
        self._used: set[int] = set()
        self._next = 1

    def assign(self, source: str, image_id: int | None = None) -> int:
        """The id of `source`: `image_id` if given (e.g. from a GT file), else parsed or sequential."""
        if source in self.by_source:
            return self.by_source[source]
        if image_id is None:
            m = COCO_NAME.match(Path(source).name) if "#" not in source else None
            image_id = int(m.group(1)) if m else None
        if image_id is None or image_id in self._used:
            while self._next in self._used:
                self._next += 1
            image_id = self._next
        self._used.add(image_id)
        self.by_source[source] = image_id
        return image_id


MAX_STEM_BYTES = 200  # file names are at most 255 bytes; room for "_k", a suffix and a frame number


def _short_stem(stem: str) -> str:
    """`stem`, or when over MAX_STEM_BYTES its start and a hash of the whole (distinct long names stay distinct)."""
    raw = stem.encode("utf-8", "surrogateescape")
    if len(raw) <= MAX_STEM_BYTES:
        return stem
    head = raw[: MAX_STEM_BYTES - 13].decode("utf-8", "ignore")
    return f"{head}-{hashlib.sha256(raw).hexdigest()[:12]}"


def _unique_name(directory: Path, stem: str, suffix: str, taken: set[str]) -> Path:
    stem = _short_stem(stem)
    name, k = f"{stem}{suffix}", 1
    while name in taken:
        name, k = f"{stem}_{k}{suffix}", k + 1
    taken.add(name)
    return directory / name


def fit_to_frame(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`image` scaled to fit `size` (w, h) with its aspect ratio kept, centred on black."""
    w, h = size
    scale = min(w / image.shape[1], h / image.shape[0])
    nw, nh = max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale))
    out = np.zeros((h, w, 3), np.uint8)
    x, y = (w - nw) // 2, (h - nh) // 2
    out[y : y + nh, x : x + nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
    return out


# Renders browsers play: H.264 in MP4 where the installed OpenCV has an encoder for it, else VP8 in WebM
# (pip's opencv-python ships no H.264 encoder; VP8 costs ~20 ms per 640x480 frame here, mp4v ~2 ms).
VIDEO_CODECS = {"h264": ("avc1", ".mp4", "H.264/MP4"), "vp8": ("VP80", ".webm", "VP8/WebM"), "mp4v": ("mp4v", ".mp4", "MPEG-4 part 2/MP4")}


@cache
def can_encode(name: str) -> bool:
    """Whether this OpenCV build can write video with codec `name` (a key of VIDEO_CODECS)."""
    fourcc, suffix, _ = VIDEO_CODECS[name]
    with tempfile.TemporaryDirectory() as tmp:
        with quiet_stderr():  # FFmpeg prints its own lines for the encoders it lacks
            writer = cv2.VideoWriter(str(Path(tmp) / f"probe{suffix}"), cv2.VideoWriter_fourcc(*fourcc), 25, (64, 64))
        ok = writer.isOpened()
        writer.release()
    return ok


@cache
def pick_video_codec(choice: str = "auto") -> str:
    """The codec a render uses: `choice` (refused in one line when this OpenCV cannot encode it: it would
    write an empty file), or for "auto" the first of h264, vp8, mp4v this OpenCV can encode."""
    if choice != "auto":
        if not can_encode(choice):
            raise PosekitError(f"--video-codec {choice}: this OpenCV cannot encode {VIDEO_CODECS[choice][2]} (use auto, vp8 or mp4v)")
        return choice
    return next((name for name in ("h264", "vp8") if can_encode(name)), "mp4v")


class VideoRender:
    """A video written to a temp file and renamed into place on close (valid up to the last frame). `path`'s
    suffix is replaced by the codec's container (.mp4 or .webm); `self.path` is the final name."""

    def __init__(self, path: Path, fps: float, codec: str = "auto") -> None:
        self.fourcc, suffix, _ = VIDEO_CODECS[pick_video_codec(codec)]
        self.path = Path(path).with_suffix(suffix)
        self._ctx = atomic_path(self.path)
        self._tmp = self._ctx.__enter__()
        self.fps = fps if fps and fps > 0 else 25.0
        self.writer: cv2.VideoWriter | None = None

    def write(self, frame_bgr: np.ndarray) -> None:
        if self.writer is None:
            self.size = frame_bgr.shape[1], frame_bgr.shape[0]
            with quiet_stderr():
                self.writer = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter_fourcc(*self.fourcc), self.fps, self.size)
        if (frame_bgr.shape[1], frame_bgr.shape[0]) != self.size:  # frames of mixed sizes: letterboxed to the first's
            frame_bgr = fit_to_frame(frame_bgr, self.size)
        self.writer.write(frame_bgr)

    def close(self, ok: bool = True) -> None:
        if self.writer is not None:
            self.writer.release()
        if ok and self.writer is not None:
            self._ctx.__exit__(None, None, None)
        else:
            self._ctx.__exit__(RuntimeError, RuntimeError("aborted"), None)


class PredictionWriter:
    """Outputs of `predict` in `out_dir`: results.jsonl (one line per image as it is processed: image_id,
    source, its COCO keypoint results), then at close results.json (COCO keypoint results) and
    image_ids.json (id -> source), both built from results.jsonl so they always agree; optionally
    openpose/<name>.json per image and render/<name>.jpg (or .mp4 per video)."""

    STREAM = "results.jsonl"

    def __init__(self, out_dir: Path, openpose: bool = False, render: bool = False, render_options: dict | None = None,
                 video_codec: str = "auto") -> None:  # fmt: skip
        self.out_dir = Path(out_dir)
        self.render_options, self.video_codec = render_options or {}, video_codec
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for stale in ("results.json", "image_ids.json"):  # a reused --out (--exist-ok): nothing from the last run stays
            (self.out_dir / stale).unlink(missing_ok=True)
        self.openpose, self.render = openpose, render
        self.ids = ImageIds()
        self.stream = JsonLines(self.out_dir / self.STREAM)
        self._names: dict[str, set[str]] = {"openpose": set(), "render": set()}
        self._videos: dict[str, VideoRender] = {}

    def add(self, source: str, image: np.ndarray, poses: Poses, fps: float | None = None) -> None:
        with whole_item():  # a stop lands before or after this image's line and files, never between
            image_id = self.ids.assign(source)
            self.stream.write({"image_id": image_id, "source": source, "results": poses.to_coco_results(image_id)})
            video, _, frame = source.partition("#frame=")
            stem = Path(video).stem + (f"_{int(frame):06d}" if frame else "")
            if self.openpose:
                path = _unique_name(self.out_dir / "openpose", stem, ".json", self._names["openpose"])
                atomic_write_json(path, {"source": source, "image_id": image_id, **poses.to_openpose()})
            if self.render:
                canvas = draw_poses(image, poses, **self.render_options)
                if frame:
                    if video not in self._videos:
                        suffix = VIDEO_CODECS[pick_video_codec(self.video_codec)][1]
                        path = _unique_name(self.out_dir / "render", Path(video).stem, suffix, self._names["render"])
                        self._videos[video] = VideoRender(path, fps or 25.0, self.video_codec)
                    self._videos[video].write(canvas)
                else:
                    ok, buf = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, 92])
                    if ok:
                        atomic_write_bytes(_unique_name(self.out_dir / "render", stem, ".jpg", self._names["render"]), buf.tobytes())

    def remove(self, remove_folder: bool = False) -> None:
        """Delete this writer's (closed, empty) outputs, and with `remove_folder` the folder when nothing
        else is in it: a run whose every input failed leaves nothing behind."""
        for name in (self.STREAM, "results.json", "image_ids.json"):
            (self.out_dir / name).unlink(missing_ok=True)
        for sub in ("openpose", "render"):
            if (self.out_dir / sub).is_dir() and not any((self.out_dir / sub).iterdir()):
                (self.out_dir / sub).rmdir()
        if remove_folder and not any(self.out_dir.iterdir()):
            self.out_dir.rmdir()

    def close(self) -> None:
        for v in self._videos.values():
            v.close()
        self._videos.clear()
        self.stream.close()
        ids: dict[str, str] = {}
        with atomic_path(self.out_dir / "results.json") as tmp, open(tmp, "w") as f:
            f.write("[")
            first = True
            for record in read_json_lines(self.stream.path):
                ids[str(record["image_id"])] = record["source"]
                for r in record["results"]:
                    f.write(("" if first else ",\n") + json.dumps(r))
                    first = False
            f.write("]")
            atomic_write_json(self.out_dir / "image_ids.json", ids, indent=1)
