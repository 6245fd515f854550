"""Whole-image multi-person data for bottom-up and single-stage models: every instance of an image,
crowd and unlabelled people as ignore regions, bottom-up augmentation, targets from the model's codec.

Augmentation (train; HigherHRNet's): the image is fitted into the square input, then scaled by a
factor in [0.75, 1.5], rotated by up to +-30 degrees, translated by up to 20 % of the input and flipped
(joints swapped with the spec's flip pairs) — one affine matrix, drawn from a generator seeded by
(seed, epoch, index). Validation fits the image into the input's top-left corner, aspect kept.
Items past the real images are mosaics (`data/mosaic.py`) when a mosaic source is given.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from posekit.codecs.heatmap import flip_permutation
from posekit.data.datasets import Sample
from posekit.data.mosaic import MosaicSource
from posekit.data.specs import get_spec
from posekit.data.transforms import normalise
from posekit.pipeline.readers import read_image


@dataclass
class BottomUpAugment:
    scale: tuple[float, float] = (0.75, 1.5)
    rotation: float = 30.0
    translation: float = 0.2  # fraction of the input side
    flip: bool = True


def fit_matrix(image_hw: tuple[int, int], size: int) -> np.ndarray:
    """Image pixels -> input pixels: the longer side fills `size`, the image in the top-left corner."""
    s = size / max(image_hw)
    return np.array([[s, 0, 0.5 * s - 0.5], [0, s, 0.5 * s - 0.5]])


def random_matrix(image_hw: tuple[int, int], size: int, aug: BottomUpAugment, rng: np.random.Generator) -> tuple[np.ndarray, bool]:
    h, w = image_hw
    s = size / max(h, w) * rng.uniform(*aug.scale)
    a = np.deg2rad(rng.uniform(-aug.rotation, aug.rotation))
    rot = s * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    shift = rng.uniform(-aug.translation, aug.translation, 2) * size
    t = np.array([(size - 1) / 2, (size - 1) / 2]) + shift - rot @ np.array([(w - 1) / 2, (h - 1) / 2])
    mat = np.concatenate([rot, t[:, None]], 1)
    flip = aug.flip and rng.random() < 0.5
    if flip:
        mat = np.array([[-1, 0, size - 1], [0, 1, 0]]) @ np.vstack([mat, [0, 0, 1]])
    return mat, flip


def ignore_mask(sample: Sample, image_hw: tuple[int, int]) -> np.ndarray | None:
    """Image-sized mask of crowd regions and people without a labelled joint (their segmentation when the
    annotation has one, else their box); None when there are none."""
    regions = [inst for inst in sample.instances if inst.iscrowd or not (inst.keypoints[:, 2] > 0).any()]
    if not regions:
        return None
    h, w = image_hw
    mask = np.zeros((h, w), np.uint8)
    for inst in regions:
        seg = inst.extras.get("segmentation")
        if seg is not None:
            from pycocotools import mask as mask_utils

            rle = mask_utils.frPyObjects(seg, h, w) if isinstance(seg, list) or isinstance(seg.get("counts"), list) else seg
            m = mask_utils.decode(rle)
            mask |= (m.max(-1) if m.ndim == 3 else m).astype(np.uint8)
        else:
            x1, y1, x2, y2 = np.round(inst.box).astype(int)
            mask[max(y1, 0) : max(y2, 0), max(x1, 0) : max(x2, 0)] = 1
    return mask


class WholeImageDataset(Dataset):
    """Items 0..len(samples)-1 are the real images; the next `mosaic_count` (training only) are mosaics."""

    def __init__(self, samples: list[Sample], codec, size: int, train: bool, spec: str, augment: BottomUpAugment | None = None,  # noqa: ANN001
                 seed: int = 0, mosaic: MosaicSource | None = None, mosaic_count: int = 0) -> None:  # fmt: skip
        self.samples, self.codec, self.size, self.train, self.seed = samples, codec, size, train, seed
        self.spec = get_spec(spec)
        self.augment = augment or BottomUpAugment()
        self.mosaic = mosaic if train else None
        self.mosaic_count = mosaic_count if self.mosaic is not None else 0
        self.flip_perm = flip_permutation(self.spec.flip_pairs, self.spec.num_keypoints)
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.samples) + self.mosaic_count

    def image_id(self, index: int) -> int | str:
        return self.samples[index].image_id

    def _real(self, index: int, rng: np.random.Generator | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        sample = self.samples[index]
        image = read_image(sample.image_path)
        hw = image.shape[:2]
        mat, flip = random_matrix(hw, self.size, self.augment, rng) if rng is not None else (fit_matrix(hw, self.size), False)
        canvas = cv2.warpAffine(image, mat, (self.size, self.size), flags=cv2.INTER_LINEAR)
        people = [inst.keypoints for inst in sample.instances if not inst.iscrowd and (inst.keypoints[:, 2] > 0).any()]
        k = self.spec.num_keypoints
        kps = np.stack(people).astype(np.float32) if people else np.zeros((0, k, 3), np.float32)
        kps[:, :, :2] = kps[:, :, :2] @ mat[:, :2].T + mat[:, 2]
        if flip:
            kps = kps[:, self.flip_perm]
        mask = ignore_mask(sample, hw)
        ignore = np.zeros((self.size, self.size), bool)
        if mask is not None:
            ignore = cv2.warpAffine(mask, mat, (self.size, self.size), flags=cv2.INTER_NEAREST) > 0
        return canvas, kps, np.zeros(kps.shape[:2], bool), ignore, mat

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.epoch, index]) if self.train else None
        if index < len(self.samples):
            canvas, kps, missing, ignore, mat = self._real(index, rng)
        else:
            canvas, kps, missing = self.mosaic.make(rng, self.size)
            ignore, mat = np.zeros((self.size, self.size), bool), np.eye(2, 3)
        # inside the input: within the extent of its pixels (centres at 0..size-1), as a joint on the image's last row is
        lo, hi = -0.5, self.size - 0.5
        inside = (kps[:, :, 0] >= lo) & (kps[:, :, 0] < hi) & (kps[:, :, 1] >= lo) & (kps[:, :, 1] < hi)
        kps[:, :, 2] = np.where(inside, kps[:, :, 2], 0)
        w, h = self.codec.heatmap_size
        small = cv2.resize(ignore.astype(np.uint8), (w, h), interpolation=cv2.INTER_AREA) > 0 if ignore.any() else np.zeros((h, w), bool)
        targets = self.codec.encode(kps, missing, small)
        out = {key: torch.from_numpy(v) for key, v in targets.items()}
        out.update(image=torch.from_numpy(normalise(canvas)), matrix=torch.from_numpy(mat.astype(np.float32)), index=torch.tensor(index))
        return out
