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

    def centre_distance(self, boxes: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distance [N] of the boxes' centres to the predicted centre, under the state's
        position covariance plus the measurement noise (DeepSORT's gate, on the position only): it widens
        the longer a track goes unseen."""
        h = max(self.x[3], 1.0)
        s = self.P[:2, :2] + np.eye(2) * (self.std_position * h) ** 2
        d = (boxes[:, :2] + boxes[:, 2:]) / 2 - self.x[:2]
        return np.einsum("ni,ij,nj->n", d, np.linalg.inv(s), d)

    def warp(self, affine: np.ndarray) -> None:
        """Move the state by a camera motion: `affine` [2,3] maps the previous frame's pixels to this frame's
        (a partial affine: rotation, uniform scale, translation). Centre and velocity follow it, the size
        scales with it (BoT-SORT's camera-motion compensation)."""
        m, shift = affine[:, :2], affine[:, 2]
        scale = float(np.sqrt(abs(np.linalg.det(m))))
        self.x[:2] = m @ self.x[:2] + shift
        self.x[4:6] = m @ self.x[4:6]
        self.x[2:4] *= scale
        self.x[6:8] *= scale
        t = np.eye(8)
        t[:2, :2] = t[4:6, 4:6] = m
        t[2:4, 2:4] = t[6:8, 6:8] = scale * np.eye(2)
        self.P = t @ self.P @ t.T
