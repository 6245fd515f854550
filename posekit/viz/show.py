"""`posekit show`: ground-truth skeletons drawn on their images."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from posekit.data.datasets import Sample, read_coco, read_lsp, read_mpii, read_posetrack
from posekit.data.specs import get_spec
from posekit.errors import InputError
from posekit.fileio import atomic_write_bytes
from posekit.pipeline.readers import read_image
from posekit.structures import Poses
from posekit.viz.draw import draw_poses


def read_any(gt: Path, images: Path) -> list[Sample]:
    """Samples of any supported annotation file, image paths under `images`."""
    if gt.is_dir():
        return read_posetrack(gt, images)
    if gt.suffix == ".mat":
        return read_lsp(gt, images)
    is_list = gt.read_text().lstrip().startswith("[")  # MPII (MMPose) is a list of person records
    return read_mpii(gt, images) if is_list else read_coco(gt, images)


def sample_poses(sample: Sample) -> Poses:
    """GT instances as Poses (visibility > 0 -> score 1; track ids kept)."""
    if not sample.instances:
        return Poses.empty(get_spec(sample.spec).num_keypoints, sample.spec)
    kp = np.stack([i.keypoints for i in sample.instances])
    ids = [i.track_id for i in sample.instances]
    track_ids = np.array(ids) if all(t is not None for t in ids) else None
    return Poses(kp[:, :, :2], (kp[:, :, 2] > 0).astype(np.float32), np.stack([i.box for i in sample.instances]),
                 np.ones(len(kp)), sample.spec, track_ids)  # fmt: skip


def render_ground_truth(gt: Path, images: Path, out: Path, limit: int | None = None) -> tuple[int, list[str]]:
    samples = read_any(Path(gt), Path(images))[:limit]
    missing, n = [], 0
    for s in samples:
        try:
            image = read_image(s.image_path)
        except InputError as e:
            missing.append(str(e))
            continue
        canvas = draw_poses(image, sample_poses(s))
        ok, buf = cv2.imencode(".jpg", canvas)
        path = Path(s.image_path)
        rel = path.relative_to(images) if path.is_relative_to(images) else Path(path.name)
        atomic_write_bytes(Path(out) / "_".join(rel.with_suffix(".jpg").parts), buf.tobytes())
        n += 1
    return n, missing
