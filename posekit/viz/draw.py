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


def draw_poses(image_rgb: np.ndarray, poses: Poses, min_score: float = 0.1, draw_boxes: bool = True) -> np.ndarray:
    """A BGR copy of the image (ready for cv2.imwrite) with the poses drawn on it."""
    canvas = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR)
    spec = get_spec(poses.spec)
    scale = max(1, round(max(canvas.shape[:2]) / 640))
    for i in range(len(poses)):
        xy, s = poses.keypoints[i], poses.keypoint_scores[i]
        tracked = track_color(int(poses.track_ids[i])) if poses.track_ids is not None else None
        if draw_boxes:
            color = track_color(int(poses.track_ids[i])) if poses.track_ids is not None else (200, 200, 200)
            x1, y1, x2, y2 = (int(round(v)) for v in poses.boxes[i])
            cv2.rectangle(canvas, (x1, y1), (x2, y2), color, scale)
            label = f"{poses.scores[i]:.2f}" if poses.track_ids is None else f"id {poses.track_ids[i]}"
            cv2.putText(canvas, label, (x1, max(0, y1 - 3)), cv2.FONT_HERSHEY_SIMPLEX, 0.4 * scale, color, scale)
        for a, b in spec.skeleton:
            if s[a] >= min_score and s[b] >= min_score:
                pa, pb = tuple(int(round(v)) for v in xy[a]), tuple(int(round(v)) for v in xy[b])
                # a tracked person keeps its id's colour; otherwise limbs show their confidence
                cv2.line(canvas, pa, pb, tracked or score_color(min(s[a], s[b])), 2 * scale, cv2.LINE_AA)
        for k in range(len(s)):
            if s[k] >= min_score:
                cv2.circle(canvas, tuple(int(round(v)) for v in xy[k]), 2 * scale + 1, score_color(s[k]), -1, cv2.LINE_AA)
    return canvas
