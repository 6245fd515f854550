"""Top-down training data: one person crop per item, with augmentation and heatmap targets.

Augmentation (train): PGPG-style proposal jitter of the box (alphapose.txt §3.3, uniform approximation),
random scale and rotation, horizontal flip with the spec's flip pairs, half-body crops, colour jitter.
Every random draw comes from a generator seeded by (seed, epoch, index), so an item is the same whatever
the worker count and a resumed run sees exactly the data it would have seen.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from posekit.codecs.heatmap import HeatmapCodec, flip_permutation
from posekit.data.datasets import Sample
from posekit.data.specs import get_spec
from posekit.data.transforms import normalise
from posekit.pipeline.readers import read_image

UPPER_BODY = {"nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder", "left_elbow",
              "right_elbow", "left_wrist", "right_wrist", "neck", "head_top", "top_head", "upper_neck", "thorax", "head_bottom"}  # fmt: skip


@dataclass
class AugmentConfig:
    scale: float = 0.3  # scale factor drawn in [1 - s, 1 + s]
    rotation: float = 30.0  # degrees, drawn in [-r, r] with probability rotation_prob
    rotation_prob: float = 0.6
    flip: bool = True
    half_body_prob: float = 0.3
    jitter: float = 0.1  # PGPG: box centre and size jittered by up to this fraction of the box
    colour: float = 0.2  # brightness / contrast / saturation jitter


def affine_for_box(center: np.ndarray, size: np.ndarray, rotation: float, out_w: int, out_h: int) -> np.ndarray:
    """2x3 matrix mapping the box (centre, (w, h)) rotated by `rotation` degrees onto the output, with
    the unbiased convention: input pixel centres map to output pixel centres."""
    sx, sy = (out_w - 1) / max(size[0], 1e-3), (out_h - 1) / max(size[1], 1e-3)
    a = np.deg2rad(rotation)
    rot = np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])
    m = np.diag([sx, sy]) @ rot
    t = np.array([(out_w - 1) / 2, (out_h - 1) / 2]) - m @ center
    return np.concatenate([m, t[:, None]], 1)


def person_box(box: np.ndarray, input_size: tuple[int, int], margin: float = 1.25) -> tuple[np.ndarray, np.ndarray]:
    """Centre and (w, h) of the crop for a person box: grown to the input's aspect ratio, then by `margin`."""
    center = (box[:2] + box[2:]) / 2
    size = np.maximum(box[2:] - box[:2], 1.0)
    aspect = input_size[0] / input_size[1]
    return center, np.array([max(size[0], size[1] * aspect), max(size[1], size[0] / aspect)]) * margin


def crop_persons(image: np.ndarray, boxes: np.ndarray, input_size: tuple[int, int], margin: float = 1.25) -> tuple[np.ndarray, np.ndarray]:
    """Network inputs [N,3,h,w] (normalised) and matrices [N,2,3] for person boxes: the crops of validation."""
    w, h = input_size
    crops = np.zeros((len(boxes), 3, h, w), np.float32)
    mats = np.zeros((len(boxes), 2, 3), np.float64)
    for i, box in enumerate(np.asarray(boxes, np.float32).reshape(-1, 4)):
        mats[i] = affine_for_box(*person_box(box, input_size, margin), 0.0, w, h)
        crops[i] = normalise(cv2.warpAffine(image, mats[i], (w, h), flags=cv2.INTER_LINEAR))
    return crops, mats


class TopDownDataset(Dataset):
    """One person crop per item; targets from the model's heatmap `codec`."""

    def __init__(self, samples: list[Sample], input_size: tuple[int, int], codec: HeatmapCodec, train: bool,
                 augment: AugmentConfig | None = None, seed: int = 0, margin: float = 1.25, require_keypoints: bool = True) -> None:  # fmt: skip
        # Annotated persons without a labelled keypoint teach nothing (and COCO eval ignores them);
        # detection boxes carry no keypoints at all, so evaluating on them needs require_keypoints=False.
        self.items = [(s, inst) for s in samples for inst in s.instances
                      if not inst.iscrowd and (not require_keypoints or (inst.keypoints[:, 2] > 0).any())]  # fmt: skip
        self.spec = get_spec(samples[0].spec)
        self.input_size, self.train, self.seed, self.margin = input_size, train, seed, margin
        self.augment = augment or AugmentConfig()
        self.codec = codec
        self.epoch = 0
        self.upper = np.array([n in UPPER_BODY for n in self.spec.keypoints])
        self.flip_perm = flip_permutation(self.spec.flip_pairs, self.spec.num_keypoints)

    def __len__(self) -> int:
        return len(self.items)

    def _box(self, box: np.ndarray, kps: np.ndarray, rng: np.random.Generator | None) -> tuple[np.ndarray, np.ndarray]:
        vis = kps[:, 2] > 0
        if rng is not None and rng.random() < self.augment.half_body_prob and vis.sum() >= 8:
            part = vis & (self.upper if rng.random() < 0.5 else ~self.upper)
            if part.sum() >= 2:
                pts = kps[part, :2]
                box = np.concatenate([pts.min(0), pts.max(0)])
        center, size = person_box(box, self.input_size, self.margin)
        if rng is not None:
            a = self.augment
            center = center + rng.uniform(-a.jitter, a.jitter, 2) * size
            size = size * rng.uniform(1 - a.scale, 1 + a.scale)
        return center, size

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        sample, inst = self.items[index]
        rng = np.random.default_rng([self.seed, self.epoch, index]) if self.train else None
        image = read_image(sample.image_path)
        kps = inst.keypoints.copy()
        center, size = self._box(inst.box, kps, rng)
        rotation = 0.0
        flip = False
        if rng is not None:
            if rng.random() < self.augment.rotation_prob:
                rotation = rng.uniform(-self.augment.rotation, self.augment.rotation)
            flip = self.augment.flip and rng.random() < 0.5
        w, h = self.input_size
        mat = affine_for_box(center, size, rotation, w, h)
        crop = cv2.warpAffine(image, mat, (w, h), flags=cv2.INTER_LINEAR)
        xy = kps[:, :2] @ mat[:, :2].T + mat[:, 2]
        vis = kps[:, 2].copy()
        if flip:
            crop = crop[:, ::-1]
            xy[:, 0] = w - 1 - xy[:, 0]
            xy, vis = xy[self.flip_perm], vis[self.flip_perm]
        crop = crop.astype(np.float32)
        if rng is not None and self.augment.colour > 0:
            c = self.augment.colour
            crop = crop * rng.uniform(1 - c, 1 + c) + (crop.mean() * (1 - rng.uniform(1 - c, 1 + c)))
            gray = crop.mean(2, keepdims=True)
            crop = np.clip(gray + (crop - gray) * rng.uniform(1 - c, 1 + c), 0, 255)
        inside = (xy[:, 0] >= 0) & (xy[:, 0] <= w - 1) & (xy[:, 1] >= 0) & (xy[:, 1] <= h - 1)
        vis = np.where(inside, vis, 0)
        heatmaps, weights = self.codec.encode(xy, vis)
        tensor = torch.from_numpy(normalise(crop))
        return {
            "image": tensor,
            "heatmaps": torch.from_numpy(heatmaps),
            "weights": torch.from_numpy(weights),
            "keypoints": torch.from_numpy(xy.astype(np.float32)),
            "visible": torch.from_numpy((vis > 0).astype(np.float32)),
            "matrix": torch.from_numpy(mat.astype(np.float32)),
            "box": torch.from_numpy(np.asarray(inst.box, np.float32)),
            "box_score": torch.tensor(float(inst.extras.get("score", 1.0))),
            "index": torch.tensor(index),
        }

    def image_id(self, index: int) -> int | str:
        return self.items[index][0].image_id
