"""Skeleton rendering: keypoints coloured by confidence (red = low, green = high); limbs too, or by track id."""

from __future__ import annotations

import cv2
import numpy as np

from posekit.data.specs import get_spec
from posekit.structures import Poses


def score_color(score: float) -> tuple[int, int, int]:
    """BGR colour from red (0) through yellow (0.5) to green (1)."""
    s = float(np.clip(score, 0.0, 1.0))
    return (0, int(255 * min(1.0, 2 * s)), int(255 * min(1.0, 2 * (1 - s))))


def track_color(track_id: int) -> tuple[int, int, int]:
    """A stable, distinct BGR colour per track id."""
    hue = (track_id * 47) % 180
    bgr = cv2.cvtColor(np.array([[[hue, 220, 255]]], np.uint8), cv2.COLOR_HSV2BGR)[0, 0]
    return int(bgr[0]), int(bgr[1]), int(bgr[2])


def _label(canvas: np.ndarray, text: str, x: int, y: int, color: tuple[int, int, int], scale: int) -> None:
    """Text on a filled box of the person's colour (readable on any background)."""
    font, size = cv2.FONT_HERSHEY_SIMPLEX, 0.45 * scale
    (w, h), base = cv2.getTextSize(text, font, size, scale)
    y = max(y, h + base + 2)
    cv2.rectangle(canvas, (x, y - h - base - 2), (x + w + 4, y), color, -1)
    dark = sum(color) < 380  # black text on light colours, white on dark ones
    cv2.putText(canvas, text, (x + 2, y - base), font, size, (255, 255, 255) if dark else (0, 0, 0), scale, cv2.LINE_AA)


def draw_poses(image_rgb: np.ndarray, poses: Poses, keypoint_threshold: float = 0.3, draw_boxes: bool = True,
               person_threshold: float = 0.0) -> np.ndarray:  # fmt: skip
    """A BGR copy of the image (ready for cv2.imwrite) with the poses drawn on it: keypoints and limbs scoring
    at least `keypoint_threshold` (MMPose's kpt_thr, 0.3), persons scoring at least `person_threshold`."""
    canvas = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR)
    spec = get_spec(poses.spec)
    scale = max(1, round(max(canvas.shape[:2]) / 640))
    for i in range(len(poses)):
        if poses.scores[i] < person_threshold:
            continue
        xy, s = poses.keypoints[i], poses.keypoint_scores[i]
        tracked = track_color(int(poses.track_ids[i])) if poses.track_ids is not None else None
        if draw_boxes:
            color = tracked or (200, 200, 200)
            x1, y1, x2, y2 = (int(round(v)) for v in poses.boxes[i])
            cv2.rectangle(canvas, (x1, y1), (x2, y2), color, scale)
            label = f"{poses.scores[i]:.2f}" if poses.track_ids is None else f"id {poses.track_ids[i]} {poses.scores[i]:.2f}"
            _label(canvas, label, x1, y1, color, scale)
        for a, b in spec.skeleton:
            if s[a] >= keypoint_threshold and s[b] >= keypoint_threshold:
                pa, pb = tuple(int(round(v)) for v in xy[a]), tuple(int(round(v)) for v in xy[b])
                # a tracked person keeps its id's colour; otherwise limbs show their confidence
                cv2.line(canvas, pa, pb, tracked or score_color(min(s[a], s[b])), 2 * scale, cv2.LINE_AA)
        for k in range(len(s)):
            if s[k] >= keypoint_threshold:
                cv2.circle(canvas, tuple(int(round(v)) for v in xy[k]), 2 * scale + 1, score_color(s[k]), -1, cv2.LINE_AA)
    return canvas
