"""Pose-guided appearance for tracking: the colour of each limb, read under the predicted keypoints (the
idea of AlphaPose's pose-guided attention, §4.2, without a trained re-ID head: what a person wears is
pooled where their body is, not over a box that also holds the background and other people).

A descriptor holds, per skeleton link, the mean CIE Lab colour (L, a, b scaled to [0, 1]) at points along
the segment between its two joints, and whether both joints were confident enough to trust it."""

from __future__ import annotations

import cv2
import numpy as np

from posekit.data.specs import get_spec
from posekit.structures import Poses

SAMPLES_PER_LINK = 5
MIN_JOINT_SCORE = 0.3


def limb_colours(image_rgb: np.ndarray, poses: Poses) -> np.ndarray:
    """Descriptors [N, links, 4]: Lab colour of each skeleton link and its validity (1 or 0)."""
    links = np.asarray(get_spec(poses.spec).skeleton, np.int64).reshape(-1, 2)
    out = np.zeros((len(poses), len(links), 4), np.float32)
    if len(poses) == 0 or len(links) == 0:
        return out
    lab = cv2.cvtColor(cv2.blur(image_rgb, (5, 5)), cv2.COLOR_RGB2LAB).astype(np.float32) / 255.0
    h, w = lab.shape[:2]
    t = np.linspace(0.2, 0.8, SAMPLES_PER_LINK, dtype=np.float32)[:, None]  # the middle of the limb, away from the joints
    for i in range(len(poses)):
        a, b = poses.keypoints[i, links[:, 0]], poses.keypoints[i, links[:, 1]]  # [L,2]
        points = a[:, None] + (b - a)[:, None] * t[None]  # [L,S,2]
        x = np.clip(np.round(points[..., 0]), 0, w - 1).astype(np.int64)
        y = np.clip(np.round(points[..., 1]), 0, h - 1).astype(np.int64)
        out[i, :, :3] = lab[y, x].mean(1)
        scores = poses.keypoint_scores[i]
        out[i, :, 3] = (scores[links[:, 0]] >= MIN_JOINT_SCORE) & (scores[links[:, 1]] >= MIN_JOINT_SCORE)
    return out


def appearance_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[Na,Nb] in [0, 1]: the mean Lab distance over links valid in both (0.5, undecided, when none is)."""
    both = a[:, None, :, 3] * b[None, :, :, 3]  # [Na,Nb,L]
    d = np.linalg.norm(a[:, None, :, :3] - b[None, :, :, :3], axis=-1)
    mean = (both * d).sum(-1) / np.maximum(both.sum(-1), 1e-9)
    return np.where(both.sum(-1) > 0, np.clip(mean / 0.25, 0.0, 1.0), 0.5)  # 0.25 in Lab/255 units: clearly different colours


def update_appearance(track: np.ndarray | None, new: np.ndarray, momentum: float = 0.8) -> np.ndarray:
    """Running mean of a track's descriptor, link by link: only links seen in the new pose move."""
    if track is None:
        return new.copy()
    out = track.copy()
    seen = new[:, 3] > 0
    fresh = seen & (track[:, 3] == 0)
    out[seen, :3] = np.where(fresh[seen, None], new[seen, :3], momentum * track[seen, :3] + (1 - momentum) * new[seen, :3])
    out[seen, 3] = 1.0
    return out
