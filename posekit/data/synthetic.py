"""Synthetic videos of real people crossing paths, with ground-truth boxes and identities.

Person patches are cut from real COCO images (their annotated boxes) and moved across a background
along straight lines that cross, so trackers meet occlusion and swaps. Used by tests and benchmarks.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from posekit.pipeline.readers import Frame, read_image


@dataclass
class SyntheticPerson:
    patch: np.ndarray  # RGB
    start: tuple[float, float]  # top-left at frame 0
    velocity: tuple[float, float]  # pixels per frame


def person_patches(coco_dir: Path, count: int, height: int, seed: int = 0) -> list[np.ndarray]:
    """`count` RGB patches of large, well-annotated COCO persons, resized to `height` pixels tall."""
    ann = json.loads((coco_dir / "annotations" / "person_keypoints_train2017.json").read_text())
    files = {i["id"]: i["file_name"] for i in ann["images"]}
    good = [
        a
        for a in ann["annotations"]
        if not a["iscrowd"] and a["num_keypoints"] >= 12 and a["bbox"][3] > 150 and a["bbox"][3] > a["bbox"][2]
    ]
    rng = np.random.default_rng(seed)
    chosen = [good[i] for i in rng.permutation(len(good))[:count]]
    patches = []
    for a in chosen:
        img = read_image(coco_dir / "train2017" / files[a["image_id"]])
        x, y, w, h = (int(round(v)) for v in a["bbox"])
        crop = img[max(y, 0) : y + h, max(x, 0) : x + w]
        patches.append(cv2.resize(crop, (max(1, round(crop.shape[1] * height / crop.shape[0])), height), interpolation=cv2.INTER_AREA))
    return patches


def crossing_people(patches: list[np.ndarray], width: int, height: int, frames: int) -> list[SyntheticPerson]:
    """People walking alternately left->right and right->left in two lanes, so every pair crosses."""
    people = []
    for i, patch in enumerate(patches):
        ph, pw = patch.shape[:2]
        leftward = i % 2 == 1
        lane_y = (height - ph) * (0.15 + 0.7 * (i % 3) / 2)
        x0 = width - pw - 10 - 25 * i if leftward else 10 + 25 * i
        x1 = 10 + 20 * i if leftward else width - pw - 10 - 20 * i
        people.append(SyntheticPerson(patch, (x0, lane_y), ((x1 - x0) / max(frames - 1, 1), 0.0)))
    return people


def render_frame(people: list[SyntheticPerson], t: int, background: np.ndarray) -> tuple[np.ndarray, list[tuple[int, np.ndarray]]]:
    """Frame t and the visible ground truth [(id, xyxy box)] (later people are drawn in front)."""
    frame = background.copy()
    h, w = frame.shape[:2]
    gt = []
    for pid, p in enumerate(people, start=1):
        x, y = p.start[0] + p.velocity[0] * t, p.start[1] + p.velocity[1] * t
        x, y = int(round(x)), int(round(y))
        ph, pw = p.patch.shape[:2]
        x1, y1, x2, y2 = max(x, 0), max(y, 0), min(x + pw, w), min(y + ph, h)
        if x2 <= x1 or y2 <= y1:
            continue
        frame[y1:y2, x1:x2] = p.patch[y1 - y : y2 - y, x1 - x : x2 - x]
        gt.append((pid, np.array([x1, y1, x2, y2], np.float32)))
    return frame, gt


def synthetic_frames(people: list[SyntheticPerson], frames: int, background: np.ndarray, fps: float = 25.0) -> Iterator[tuple[Frame, list]]:
    """(Frame, ground truth) for frames 0..frames-1; loops over the crossing when frames exceed its length."""
    for t in range(frames):
        image, gt = render_frame(people, t, background)
        yield Frame(f"synthetic#frame={t}", t, image=image, timestamp_ms=1000.0 * t / fps), gt


def make_background(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A smooth textured background (no people)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(60, 200, (height // 40 + 1, width // 40 + 1, 3), dtype=np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


def write_video(path: Path, frames: Iterator[tuple[Frame, list]], fps: float = 25.0, fourcc: str = "mp4v") -> list[list]:
    """Write the frames to a video file; returns the ground truth of every frame."""
    writer, gts = None, []
    for frame, gt in frames:
        if writer is None:
            h, w = frame.image.shape[:2]
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
        writer.write(cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR))
        gts.append(gt)
    if writer is not None:
        writer.release()
    return gts
