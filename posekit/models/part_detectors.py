"""The MediaPipe part detectors of the npm package: the palm detector and BlazeFace, decoded from their raw
SSD outputs. Both run on square region crops (made by `part_models.rotated_crops`) and return, per crop, the
best detection in image pixels; the whole-body pipeline uses them to place the hand and face crops.

Anchors follow MediaPipe's SSD anchor generator with fixed anchor size: one centre per grid cell, repeated
once per anchor of that stride; a box row is (dx, dy, w, h, then k points as dx, dy) in input pixels,
relative to its anchor's centre.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from posekit.data.transforms import apply_inverse
from posekit.models.tfjs_models import load_module, to_batch

PALM_INPUT = FACE_DETECT_INPUT = 256


def ssd_anchors(size: int, strides: tuple[int, ...], per_cell: tuple[int, ...]) -> np.ndarray:
    """Anchor centres [A,2] in units of the input side, in the order of the graph's rows (stride by stride,
    row-major, each cell's anchors together)."""
    centres = []
    for stride, n in zip(strides, per_cell):
        g = size // stride
        xs, ys = np.meshgrid((np.arange(g) + 0.5) / g, (np.arange(g) + 0.5) / g)
        centres.append(np.repeat(np.stack([xs.ravel(), ys.ravel()], 1), n, axis=0))
    return np.concatenate(centres).astype(np.float32)


@dataclass
class Detections:
    """The best detection of each region crop, in image pixels; `score` 0 where a crop had none."""

    score: np.ndarray  # [N]
    centre: np.ndarray  # [N,2]
    side: np.ndarray  # [N] the (square) box side
    points: np.ndarray  # [N,k,2] the detector's landmarks

    @staticmethod
    def empty(k: int) -> Detections:
        return Detections(np.zeros(0, np.float32), np.zeros((0, 2), np.float32), np.zeros(0, np.float32), np.zeros((0, k, 2), np.float32))


def _decode(rows: np.ndarray, logits: np.ndarray, anchors: np.ndarray, mats: np.ndarray, size: int, k: int,
            accept: np.ndarray | None) -> Detections:  # fmt: skip
    """rows [N,A,4+2k], logits [N,A] -> the best accepted anchor of each crop (`accept` [N,A] bool, or all)."""
    n = len(rows)
    scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -60.0, 60.0)))
    anchor_px = anchors * size
    centres = anchor_px[None] + rows[:, :, 0:2]
    points = anchor_px[None, :, None] + rows[:, :, 4 : 4 + 2 * k].reshape(n, -1, k, 2)
    if accept is not None:
        scores = np.where(accept, scores, 0.0)
    best = scores.argmax(1) if n else np.zeros(0, np.int64)
    pick = np.arange(n)
    side_crop = np.maximum(rows[pick, best, 2], rows[pick, best, 3])
    scale = np.sqrt(np.abs(np.linalg.det(mats[:, :, :2]))) if n else np.ones(0)  # crop pixels per image pixel
    return Detections(
        score=scores[pick, best].astype(np.float32),
        centre=apply_inverse(mats, centres[pick, best][:, None] - 0.5)[:, 0],
        side=(side_crop / scale).astype(np.float32),
        points=apply_inverse(mats, points[pick, best] - 0.5),
    )


def signed_input(crops: np.ndarray) -> torch.Tensor:
    """uint8 NHWC -> float32 in [-1, 1]: what the palm detector and BlazeFace take."""
    return to_batch(crops, torch.float32).div_(127.5).sub_(1.0)


class PalmDetector:
    """MediaPipe's palm detector (256², strides 8/16/32 with 2/2/6 anchors = 2944 rows of 19: score logit,
    box, 7 palm points: wrist, index/middle/ring/pinky MCP, two thumb joints)."""

    graph, size, k = "handdetect", PALM_INPUT, 7
    prepare = staticmethod(signed_input)  # uint8 crops -> the graph's input
    anchors = ssd_anchors(PALM_INPUT, (8, 16, 32), (2, 2, 6))

    def __init__(self, backend: str = "torch") -> None:
        self.module = load_module(self.graph, backend=backend)

    def raw(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Box rows [N,2944,18] and score logits [N,2944]."""
        out = self.module(self.prepare(crops))
        out = (out[0] if isinstance(out, (list, tuple)) else out).numpy().reshape(len(crops), -1, 19)
        return out[:, :, 1:], out[:, :, 0]

    def __call__(self, crops: np.ndarray, mats: np.ndarray, wrists: np.ndarray, max_wrist_distance: np.ndarray) -> Detections:
        """The best palm of each crop whose wrist point lies within `max_wrist_distance` [N] image pixels of the
        expected wrist [N,2] (a region often holds the other hand or another person's too)."""
        if len(crops) == 0:
            return Detections.empty(self.k)
        rows, logits = self.raw(crops)
        wrist_px = apply_inverse(mats, self.anchors[None] * self.size + rows[:, :, 4:6] - 0.5)
        near = np.linalg.norm(wrist_px - wrists[:, None], axis=-1) <= max_wrist_distance[:, None]
        return _decode(rows, logits, self.anchors, mats, self.size, self.k, near)


class FaceDetector:
    """BlazeFace, back-camera model (256², strides 16/32 with 2/6 anchors = 896 rows of 16: box, 6 points:
    right eye, left eye, nose, mouth, right ear, left ear — the subject's sides)."""

    graph, size, k = "blazeface", FACE_DETECT_INPUT, 6
    prepare = staticmethod(signed_input)
    anchors = ssd_anchors(FACE_DETECT_INPUT, (16, 32), (2, 6))

    def __init__(self, backend: str = "torch") -> None:
        self.module = load_module(self.graph, backend=backend)

    def raw(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Box rows [N,896,16] and score logits [N,896]."""
        s16, r16, s32, r32 = (t.numpy() for t in self.module(self.prepare(crops)))
        n = len(crops)
        rows = np.concatenate([r16.reshape(n, -1, 16), r32.reshape(n, -1, 16)], axis=1)
        return rows, np.concatenate([s16.reshape(n, -1), s32.reshape(n, -1)], axis=1)

    def __call__(self, crops: np.ndarray, mats: np.ndarray) -> Detections:
        """The best face of each crop."""
        if len(crops) == 0:
            return Detections.empty(self.k)
        rows, logits = self.raw(crops)
        return _decode(rows, logits, self.anchors, mats, self.size, self.k, None)
