"""Camera motion between consecutive frames, for the tracker's Kalman prediction (camera-motion
compensation as in BoT-SORT: sparse optical flow on corners, a RANSAC-fitted partial affine). A handheld or
panning camera moves every box at once; without it, a lost track's prediction stays where the person was in
the image, and geometry hands the next person who walks into that spot the lost track's id."""

from __future__ import annotations

import cv2
import numpy as np


class CameraMotion:
    """Call with each frame (RGB or grey, any size) in order, and the boxes of the people found in it; returns
    the [2,3] affine mapping the previous frame's pixel coordinates to this frame's (identity for the first
    frame, a size change or too few tracked corners). Corners are taken outside the people's boxes: on a
    still camera over a plain background, the people's own motion is otherwise what the fit finds."""

    def __init__(self, width: int = 320, max_corners: int = 300, min_agreement: float = 0.5) -> None:
        self.width = width  # flow runs on a copy this wide: enough for a global motion, cheap on a CPU
        self.max_corners = max_corners
        self.min_agreement = min_agreement
        self.previous: np.ndarray | None = None
        self.corners: np.ndarray | None = None

    def __call__(self, image: np.ndarray, boxes: np.ndarray | None = None) -> np.ndarray:
        grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        scale = min(1.0, self.width / grey.shape[1])
        small = cv2.resize(grey, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else grey
        affine = np.eye(2, 3)
        if self.previous is not None and self.previous.shape == small.shape and self.corners is not None and len(self.corners) >= 8:
            moved, status, _ = cv2.calcOpticalFlowPyrLK(self.previous, small, self.corners, None)
            ok = status.ravel() == 1
            if ok.sum() >= 8:
                fitted, inliers = cv2.estimateAffinePartial2D(self.corners[ok], moved[ok], method=cv2.RANSAC)
                # most tracked corners must agree: a motion only a few of them share is something moving in
                # front of a still camera (on the synthetic crossing video: the pasted people's edges)
                if fitted is not None and inliers is not None and inliers.sum() >= max(8, self.min_agreement * ok.sum()) and np.isfinite(fitted).all():
                    affine = fitted.astype(np.float64)
                    affine[:, 2] /= scale  # back to full-size pixels (the linear part is scale-free)
        self.previous = small
        mask = np.full(small.shape, 255, np.uint8)
        for x0, y0, x1, y1 in (np.zeros((0, 4)) if boxes is None else np.asarray(boxes, np.float64) * scale):
            if np.isfinite([x0, y0, x1, y1]).all():
                mask[max(int(y0), 0) : max(int(np.ceil(y1)), 0), max(int(x0), 0) : max(int(np.ceil(x1)), 0)] = 0
        self.corners = cv2.goodFeaturesToTrack(small, self.max_corners, 0.01, 3, mask=mask, blockSize=3)
        return affine
