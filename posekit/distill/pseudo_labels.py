"""Label-free training data for `posekit distill`: a teacher pipeline's poses on unlabelled images and video
frames, cached per image on disk, filtered by the teacher's confidence into a COCO keypoint file.

The teacher pass is resumable: each image's poses are one checked .npz keyed by (teacher id, the image
file's bytes), written atomically; a killed pass reruns only the images it had not finished, and an entry
that fails its check is recomputed. Video frames are sampled to JPEG files first (skipped when already
there), so the student trains on exactly the pixels the teacher saw.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from posekit.distill.cache import load_checked, save_checked
from posekit.errors import InputError
from posekit.fileio import atomic_path
from posekit.pipeline.readers import IMAGE_EXTS, VIDEO_EXTS, expand_inputs, iter_video, read_image
from posekit.structures import Poses

POSE_FIELDS = ("keypoints", "keypoint_scores", "boxes", "scores", "image_hw")


@dataclass
class LabelFilter:
    """Which teacher outputs become labels. A keypoint scoring below `keypoint_threshold` is unlabelled
    (v = 0); a person scoring below `person_threshold`, or with fewer than `min_keypoints` labelled, keeps
    only its box, which whole-image students treat as an ignore region (it is someone the teacher was
    unsure of, not background) and top-down students skip."""

    keypoint_threshold: float = 0.3
    person_threshold: float = 0.2
    min_keypoints: int = 6

    def __post_init__(self) -> None:
        for name in ("keypoint_threshold", "person_threshold"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise InputError(f"{name}={getattr(self, name)}: a score between 0 and 1")
        if self.min_keypoints < 1:
            raise InputError(f"min_keypoints={self.min_keypoints}: at least 1")


@dataclass
class TeacherPassSummary:
    images: int = 0
    computed: int = 0  # teacher runs this time
    cached: int = 0  # images whose checked entry was already on disk
    rejected: int = 0  # entries on disk that failed their check (recomputed)
    failed: list[str] = field(default_factory=list)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)[:60]


def sample_video_frames(video: Path, frames_dir: Path, stride: int) -> tuple[list[Path], list[str]]:
    """Every `stride`-th frame of `video` as frames_dir/<video>-<hash>/<frame>.jpg (quality 95, written
    atomically; frames already there are kept), and one line per problem the reader reported."""
    tag = hashlib.sha256(str(video.resolve()).encode()).hexdigest()[:8]
    folder = frames_dir / f"{_slug(video.stem)}-{tag}"
    files, errors = [], []
    for frame in iter_video(video):
        if frame.image is None:
            errors.append(frame.error or f"{video}: unreadable")
            continue
        k = int(frame.source.rsplit("=", 1)[1])
        if k % stride:
            continue
        path = folder / f"{k:06d}.jpg"
        if not path.exists():
            ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
            if not ok:
                errors.append(f"{frame.source}: cannot encode as JPEG")
                continue
            with atomic_path(path) as tmp:
                tmp.write_bytes(jpg.tobytes())
        files.append(path)
    return files, errors


def collect_images(inputs: list[str], frames_dir: Path, video_stride: int) -> tuple[list[Path], list[str]]:
    """Image files from files, folders and globs, video frames sampled every `video_stride`; each in input
    order, once. Plus one line per input that is not usable."""
    if video_stride < 1:
        raise InputError(f"video_stride={video_stride}: at least 1")
    files, errors = expand_inputs(inputs)
    images: list[Path] = []
    for f in files:
        suffix = f.suffix.lower()
        if suffix in VIDEO_EXTS:
            frames, why = sample_video_frames(f, frames_dir, video_stride)
            images += [p.resolve() for p in frames]  # the labels name files by absolute path
            errors += why
        elif suffix in IMAGE_EXTS:
            images.append(f.resolve())
        else:
            errors.append(f"{f}: not an image or video file (extension {suffix or 'none'})")
    unique = list(dict.fromkeys(images))
    return unique, errors


def teacher_id(name: str, estimator: Any) -> str:
    """Names the teacher's weights and every setting its poses depend on: the cache key's prefix."""
    from posekit.zoo.store import read_manifest, sha256_file

    path = Path(name)
    is_checkpoint = path.is_file()
    # a checkpoint is its bytes, however its path is spelled; a named pipeline is its name and every cached weight
    h = hashlib.sha256(sha256_file(path).encode() if is_checkpoint else name.encode() + json.dumps(read_manifest(), sort_keys=True).encode())
    h.update(repr(getattr(estimator.pipeline, "options", None)).encode())
    h.update(f"{estimator.score_threshold}|{estimator.spec}".encode())
    return f"{_slug(path.stem if is_checkpoint else name)}-{h.hexdigest()[:16]}"


class TeacherPass:
    """A teacher pipeline (a `PoseEstimator`) over image files, each image's poses cached under `root`."""

    def __init__(self, estimator: Any, tid: str, root: Path) -> None:
        self.estimator, self.teacher_id = estimator, tid
        self.root = Path(root) / tid
        self.summary = TeacherPassSummary()

    def entry_path(self, data: bytes) -> Path:
        key = hashlib.sha256(self.teacher_id.encode() + b"|" + data).hexdigest()
        return self.root / key[:2] / f"{key}.npz"

    def poses(self, image_file: Path) -> dict[str, np.ndarray]:
        """The teacher's poses of one image file: from its checked cache entry, or computed and cached."""
        data = image_file.read_bytes()
        entry = self.entry_path(data)
        cached, rejected = load_checked(entry, POSE_FIELDS, self.teacher_id)
        self.summary.rejected += rejected
        if cached is not None:
            self.summary.cached += 1
            return cached
        image = read_image(image_file)
        p: Poses = self.estimator.estimate(image)
        arrays = {"keypoints": p.keypoints.astype(np.float32), "keypoint_scores": p.keypoint_scores.astype(np.float32),
                  "boxes": p.boxes.astype(np.float32), "scores": p.scores.astype(np.float32),
                  "image_hw": np.array(image.shape[:2], np.int64)}  # fmt: skip
        save_checked(entry, arrays, self.teacher_id)
        self.summary.computed += 1
        return arrays

    def run(self, images: list[Path], quiet: bool = False) -> dict[Path, dict[str, np.ndarray]]:
        """Poses of every readable image; an unreadable one is one line on stderr and in `summary.failed`."""
        out: dict[Path, dict[str, np.ndarray]] = {}
        for f in tqdm(images, desc="teacher", unit="img", disable=quiet or None, dynamic_ncols=True):
            try:
                out[f] = self.poses(f)
            except (InputError, OSError) as e:
                line = str(e) if str(f) in str(e) else f"{f}: {e}"
                self.summary.failed.append(line)
                tqdm.write(f"posekit: skipped {line}", file=sys.stderr)
        self.summary.images = len(out)
        return out


def held_out_files(files: list[Path], fraction: float) -> set[Path]:
    """max(1, round(fraction * n)) of `files`, a fixed pseudo-random choice by folder and file name (not by
    position: inputs come grouped by source), the same wherever the inputs live."""
    if not files or fraction <= 0:
        return set()

    def rank(f: Path) -> bytes:
        return hashlib.sha256(f"{f.parent.name}/{f.name}".encode()).digest()

    return set(sorted(files, key=rank)[: max(1, round(fraction * len(files)))])


def coco_pseudo_labels(per_image: dict[Path, dict[str, np.ndarray]], spec_name: str, rule: LabelFilter,
                       holdout: float = 0.0) -> tuple[dict[str, Any], int, dict[str, int]]:  # fmt: skip
    """A COCO keypoint file of the teacher's poses (file names absolute), images without a labelled person
    left out, the held-out images last. Returns (the file's dict, how many images are held out, counts)."""
    from posekit.data.specs import get_spec

    spec = get_spec(spec_name)
    kept: list[tuple[Path, list[dict[str, Any]], tuple[int, int]]] = []
    counts = {"persons": 0, "unsure_persons": 0, "keypoints": 0}
    for f, p in per_image.items():
        anns = []
        for kps, kp_scores, box, score in zip(p["keypoints"], p["keypoint_scores"], p["boxes"], p["scores"]):
            labelled = kp_scores >= rule.keypoint_threshold
            sure = score >= rule.person_threshold and labelled.sum() >= rule.min_keypoints
            if not sure:
                labelled = np.zeros_like(labelled)
            flat = np.concatenate([np.where(labelled[:, None], kps, 0.0), 2.0 * labelled[:, None]], 1).reshape(-1)
            x1, y1, x2, y2 = (float(v) for v in box)
            anns.append({"keypoints": [round(float(v), 2) for v in flat], "num_keypoints": int(labelled.sum()),
                         "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)], "area": round((x2 - x1) * (y2 - y1), 2),
                         "iscrowd": 0, "category_id": 1, "score": round(float(score), 4),
                         "keypoint_scores": [round(float(v), 4) for v in kp_scores]})  # fmt: skip
            counts["persons" if sure else "unsure_persons"] += 1
            counts["keypoints"] += int(labelled.sum())
        if any(a["num_keypoints"] for a in anns):
            kept.append((f, anns, tuple(int(v) for v in p["image_hw"])))
    held = held_out_files([f for f, _, _ in kept], holdout)
    kept.sort(key=lambda item: item[0] in held)  # stable: input order within each part
    images, annotations = [], []
    for image_id, (f, anns, (h, w)) in enumerate(kept, start=1):
        images.append({"id": image_id, "file_name": str(f), "width": w, "height": h})
        for a in anns:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, **a})
    coco = {"info": {"description": "posekit distill: teacher pseudo-labels"}, "images": images, "annotations": annotations,
            "categories": [{"id": 1, "name": "person", "keypoints": list(spec.keypoints),
                                             "skeleton": [[a + 1, b + 1] for a, b in spec.skeleton]}]}  # fmt: skip
    return coco, len(held), counts
