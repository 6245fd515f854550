"""The MediaPipe part models of the npm package, on rotated square crops: BlazePose (feet), hand landmarks, FaceMesh.

Each takes uint8 crops [N,S,S,3] made by `rotated_crops` and returns points in image pixels (through the
crops' matrices) with scores in [0, 1]; all crops of an image run as one batch.
"""

from __future__ import annotations

import numpy as np
import torch

from posekit.data.transforms import apply_inverse, warp_crops
from posekit.models.tfjs_models import load_module, to_batch

BLAZEPOSE_INPUT, HAND_INPUT, FACE_INPUT = 256, 224, 192
# BlazePose landmark indices (MediaPipe's 33-point order)
BLAZE_LEFT_HEEL, BLAZE_RIGHT_HEEL, BLAZE_LEFT_FOOT_INDEX, BLAZE_RIGHT_FOOT_INDEX = 29, 30, 31, 32


def rotated_square_matrix(center: np.ndarray, side: float, up: np.ndarray, size: int) -> np.ndarray:
    """2x3 affine from image pixel centres to the pixel centres of a `size`² crop of the square of `side` pixels
    at `center`, rotated so that the image direction `up` points up in the crop (MediaPipe's ROI convention)."""
    ux, uy = (float(v) for v in up / max(float(np.hypot(*up)), 1e-6))
    # rows of the rotation: crop x along (-uy, ux) (to the right of `up`), crop y along -up
    rot = np.array([[-uy, ux], [-ux, -uy]], np.float64) * (size / max(side, 1e-6))
    return np.concatenate([rot, (size / 2 - 0.5 - rot @ np.asarray(center, np.float64))[:, None]], axis=1)


def rotated_crops(image: np.ndarray, centers: np.ndarray, sides: np.ndarray, ups: np.ndarray, size: int
                  ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Crops [N,size,size,3] uint8 of rotated squares and their matrices [N,2,3] (see `rotated_square_matrix`)."""
    mats = np.array([rotated_square_matrix(c, float(s), u, size) for c, s, u in zip(centers, sides, ups)], np.float64).reshape(-1, 2, 3)
    return warp_crops(image, mats, size, size), mats


def unit_input(crops: np.ndarray) -> torch.Tensor:
    """uint8 NHWC -> float32 in [0, 1]: what BlazePose, the hand model and FaceMesh take."""
    return to_batch(crops, torch.float32).div_(255.0)


class _PartModel:
    graph = ""
    prepare = staticmethod(unit_input)  # uint8 crops -> the graph's input

    def __init__(self, backend: str = "torch") -> None:
        self.module = load_module(self.graph, backend=backend)

    def points_and_flag(self, crops: np.ndarray, mats: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """For graphs whose outputs start with k (x, y, z) points in crop pixels and a [N,1] flag: the points
        [N,k,2] in image pixels and the flag [N]."""
        if len(crops) == 0:
            return np.zeros((0, k, 2), np.float32), np.zeros((0,), np.float32)
        points, flag, *_ = self.module(self.prepare(crops))
        xy = apply_inverse(mats, points.numpy().reshape(len(crops), k, 3)[:, :, :2] - 0.5)
        return xy, flag.numpy().reshape(-1).astype(np.float32)


class BlazePoseFeet(_PartModel):
    """BlazePose Full on the person crop; returns heels and foot tips (the 'foot index' landmark)."""

    graph = "blazepose-full"
    size = BLAZEPOSE_INPUT

    def __call__(self, crops: np.ndarray, mats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Landmarks [N,33,2] in image pixels and scores [N,33] = sigmoid(visibility) x pose flag."""
        if len(crops) == 0:
            return np.zeros((0, 33, 2), np.float32), np.zeros((0, 33), np.float32)
        flag, landmarks = self.module(self.prepare(crops))
        lm = landmarks.numpy().reshape(len(crops), 39, 5)[:, :33]
        xy = apply_inverse(mats, lm[:, :, :2] - 0.5)
        scores = torch.sigmoid(torch.from_numpy(lm[:, :, 3])).numpy() * flag.numpy().reshape(-1, 1)
        return xy, scores.astype(np.float32)


class HandLandmarks(_PartModel):
    """MediaPipe hand landmarks (21 points, COCO-WholeBody's hand order) on a rotated hand crop."""

    graph = "handlandmark-full"
    size = HAND_INPUT

    def __call__(self, crops: np.ndarray, mats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Points [N,21,2] in image pixels and the hand-presence score [N] (the same for all 21 points); the
        graph's third output, handedness, is not used: the body's wrists say which hand it is."""
        return self.points_and_flag(crops, mats, 21)


class FaceMesh(_PartModel):
    """MediaPipe FaceMesh (468 points) on a rotated face crop."""

    graph = "facemesh"
    size = FACE_INPUT

    def __call__(self, crops: np.ndarray, mats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mesh [N,468,2] in image pixels and the face score [N]."""
        return self.points_and_flag(crops, mats, 468)
