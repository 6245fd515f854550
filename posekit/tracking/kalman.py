"""Constant-velocity Kalman filter on person boxes (centre x, centre y, width, height)."""

from __future__ import annotations

import numpy as np


def box_to_z(box: np.ndarray) -> np.ndarray:
    x1, y1, x2, y2 = box
    return np.array([(x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, 1.0), max(y2 - y1, 1.0)])


def z_to_box(z: np.ndarray) -> np.ndarray:
    cx, cy, w, h = z[:4]
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], np.float32)


class BoxKalman:
    """State [cx, cy, w, h, vcx, vcy, vw, vh]; noise scaled by the box height, as in SORT-style trackers."""

    std_position = 1.0 / 20
    std_velocity = 1.0 / 160

    def __init__(self, box: np.ndarray) -> None:
        z = box_to_z(box)
        self.x = np.concatenate([z, np.zeros(4)])
        h = z[3]
        self.P = np.diag(np.square([2 * self.std_position * h] * 4 + [10 * self.std_velocity * h] * 4))
        self.F = np.eye(8)
        self.F[:4, 4:] = np.eye(4)
        self.H = np.eye(4, 8)

    def predict(self) -> np.ndarray:
        h = max(self.x[3], 1.0)
        q = np.diag(np.square([self.std_position * h] * 4 + [self.std_velocity * h] * 4))
        self.x = self.F @ self.x
        self.x[2:4] = np.maximum(self.x[2:4], 1.0)
        self.P = self.F @ self.P @ self.F.T + q
        return z_to_box(self.x)

    def update(self, box: np.ndarray) -> np.ndarray:
        z = box_to_z(box)
        r = np.diag(np.square([self.std_position * z[3]] * 4))
        s = self.H @ self.P @ self.H.T + r
        k = self.P @ self.H.T @ np.linalg.inv(s)
        self.x = self.x + k @ (z - self.H @ self.x)
        self.P = (np.eye(8) - k @ self.H) @ self.P
        return z_to_box(self.x)
