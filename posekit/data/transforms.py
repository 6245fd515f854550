"""Geometric transforms between image pixels and network inputs.

Convention: continuous pixel coordinates with pixel *centres* at integers (as OpenCV and the COCO
keypoint annotations use); box coordinates are edges (x1, y1, x2, y2), so a box covering the whole
W x H image is (0, 0, W, H).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# Network inputs are float images normalised with the ImageNet mean / std (RGB, 0..255 scale).
MEAN = np.array([0.485, 0.456, 0.406], np.float32) * 255
STD = np.array([0.229, 0.224, 0.225], np.float32) * 255


def normalise(image: np.ndarray) -> np.ndarray:
    """uint8 / float HxWx3 RGB -> float32 3xHxW network input."""
    return ((np.asarray(image, np.float32) - MEAN) / STD).transpose(2, 0, 1).copy()


def _resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    shrinking = width < image.shape[1] or height < image.shape[0]
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


@dataclass(frozen=True)
class Letterbox:
    """An image scaled by `scale_xy` (aspect kept up to rounding) and padded bottom/right to `padded_hw`."""

    scale_xy: tuple[float, float]
    padded_hw: tuple[int, int]


def letterbox(image: np.ndarray, longest_side: int, multiple: int = 32) -> tuple[np.ndarray, Letterbox]:
    """Scale so the longer side is `longest_side`, then zero-pad bottom/right to multiples of `multiple`."""
    h, w = image.shape[:2]
    scale = longest_side / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    ph, pw = -(-nh // multiple) * multiple, -(-nw // multiple) * multiple
    out = np.zeros((ph, pw, 3), np.uint8)
    out[:nh, :nw] = _resize(image, nw, nh)
    return out, Letterbox(scale_xy=(nw / w, nh / h), padded_hw=(ph, pw))


def stretch(image: np.ndarray, height: int, width: int) -> tuple[np.ndarray, tuple[float, float]]:
    """Resize to exactly height x width (aspect not kept); returns (sx, sy) input-per-image-pixel scales."""
    h, w = image.shape[:2]
    return _resize(image, width, height), (width / w, height / h)


def expand_box(box: np.ndarray, aspect: float, margin: float = 1.25) -> np.ndarray:
    """Grow xyxy boxes [N,4] to width/height = `aspect` around their centres, then by `margin`."""
    box = np.asarray(box, np.float32).reshape(-1, 4)
    cx, cy = (box[:, 0] + box[:, 2]) / 2, (box[:, 1] + box[:, 3]) / 2
    w, h = box[:, 2] - box[:, 0], box[:, 3] - box[:, 1]
    w, h = np.maximum(w, 1.0), np.maximum(h, 1.0)
    wider = w > aspect * h
    h = np.where(wider, w / aspect, h)
    w = np.where(wider, w, h * aspect)
    w, h = w * margin, h * margin
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)


def crop_matrix(box: np.ndarray, out_w: int, out_h: int) -> np.ndarray:
    """2x3 affine mapping image pixel centres to crop pixel centres, so that the box edges fill the crop."""
    x1, y1, x2, y2 = (float(v) for v in box)
    sx, sy = out_w / (x2 - x1), out_h / (y2 - y1)
    # edge coordinates: u_edge = s (x_edge - x1); centres are edges - 0.5 on both sides
    return np.array([[sx, 0.0, sx * (0.5 - x1) - 0.5], [0.0, sy, sy * (0.5 - y1) - 0.5]], np.float64)


def crop_boxes(image: np.ndarray, boxes: np.ndarray, out_w: int, out_h: int) -> tuple[np.ndarray, np.ndarray]:
    """Affine crops [N,out_h,out_w,3] uint8 of `boxes` (already expanded) and their 2x3 matrices [N,2,3]."""
    mats = np.array([crop_matrix(box, out_w, out_h) for box in boxes], np.float64).reshape(-1, 2, 3)
    return warp_crops(image, mats, out_w, out_h), mats


def warp_crops(image: np.ndarray, mats: np.ndarray, out_w: int, out_h: int) -> np.ndarray:
    """Crops [N,out_h,out_w,3] uint8 of `image` through 2x3 matrices [N,2,3] (image -> crop pixels), zeros outside."""
    crops = np.zeros((len(mats), out_h, out_w, 3), np.uint8)
    for i, mat in enumerate(mats):
        crops[i] = cv2.warpAffine(image, mat, (out_w, out_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    return crops


def apply_inverse(mats: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map crop-pixel points [N,K,2] back to image pixels through the inverse of each matrix [N,2,3]
    (image pixels -> input pixels; any array-like, e.g. a batch's tensor)."""
    out = np.empty_like(points, dtype=np.float32)
    for i, m in enumerate(np.asarray(mats, np.float64)):
        inv = cv2.invertAffineTransform(m)
        out[i] = points[i] @ inv[:, :2].T + inv[:, 2]
    return out
