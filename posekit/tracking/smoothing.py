"""One-Euro filter for keypoint jitter (Casiez et al., CHI 2012): a low-pass filter whose cutoff rises
with speed, so still joints stop shaking while fast moves keep little lag."""

from __future__ import annotations

import math

import numpy as np

from posekit.structures import Poses


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    tau = 1.0 / (2 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """Filters an array signal (any shape) sampled at times t."""

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.05, d_cutoff: float = 1.0) -> None:
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.x: np.ndarray | None = None
        self.dx: np.ndarray | None = None
        self.t: float | None = None

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        if self.x is None or self.t is None or t <= self.t:
            self.x, self.dx, self.t = x.astype(np.float64), np.zeros_like(x, np.float64), t
            return x
        dt = t - self.t
        dx = (x - self.x) / dt
        self.dx = self.dx + _alpha(self.d_cutoff, dt) * (dx - self.dx)
        cutoff = self.min_cutoff + self.beta * np.abs(self.dx)
        self.x = self.x + _alpha(cutoff, dt) * (x - self.x)
        self.t = t
        return self.x.astype(x.dtype)


class PoseSmoother:
    """One filter per track id over its keypoints; filters of vanished tracks are dropped."""

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.05) -> None:
        self.min_cutoff, self.beta = min_cutoff, beta
        self.filters: dict[int, OneEuroFilter] = {}

    def __call__(self, poses: Poses, t: float) -> Poses:
        if poses.track_ids is None:
            raise ValueError("smoothing needs tracked poses (track_ids)")
        out = poses.select(np.arange(len(poses)))
        for i, tid in enumerate(poses.track_ids.tolist()):
            f = self.filters.setdefault(tid, OneEuroFilter(self.min_cutoff, self.beta))
            out.keypoints[i] = f(poses.keypoints[i], t)
        self.filters = {k: v for k, v in self.filters.items() if k in set(poses.track_ids.tolist()) or v.t is not None and t - v.t < 2.0}
        return out
