"""Heatmap codec: Gaussian targets (sigma 2, target weights, unbiased coordinate transform) and decoding
by argmax + quarter offset or DARK; flip test with the spec's flip pairs; integral decoding.

Unbiased transform (UDP): input pixel centres 0..W_in-1 map to heatmap pixel centres 0..W_hm-1 by the
factor (W_hm - 1) / (W_in - 1), so encoding and decoding are exact inverses with no half-pixel shift.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass
class HeatmapCodec:
    input_size: tuple[int, int]  # (w, h)
    heatmap_size: tuple[int, int]  # (w, h)
    sigma: float = 2.0

    @property
    def scale(self) -> np.ndarray:
        """Heatmap pixels per input pixel, (x, y)."""
        (wi, hi), (wh, hh) = self.input_size, self.heatmap_size
        return np.array([(wh - 1) / (wi - 1), (hh - 1) / (hi - 1)], np.float32)

    def encode(self, keypoints: np.ndarray, visible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Keypoints [K,2] (input pixels), visible [K] -> heatmaps [K,h,w] float32 and target weights [K]."""
        w, h = self.heatmap_size
        mu = keypoints * self.scale
        xs = np.arange(w, dtype=np.float32)[None, None, :]
        ys = np.arange(h, dtype=np.float32)[None, :, None]
        inside = (
            (mu[:, 0] >= -3 * self.sigma)
            & (mu[:, 0] <= w - 1 + 3 * self.sigma)
            & (mu[:, 1] >= -3 * self.sigma)
            & (mu[:, 1] <= h - 1 + 3 * self.sigma)
        )
        weights = (visible > 0) & inside
        d2 = (xs - mu[:, 0, None, None]) ** 2 + (ys - mu[:, 1, None, None]) ** 2
        heatmaps = np.exp(-d2 / (2 * self.sigma**2)).astype(np.float32) * weights[:, None, None]
        return heatmaps, weights.astype(np.float32)

    def decode(self, heatmaps: np.ndarray, refine: str = "dark") -> tuple[np.ndarray, np.ndarray]:
        """Heatmaps [N,K,h,w] -> keypoints [N,K,2] (input pixels) and scores [N,K] (the maxima).
        refine: 'quarter' (argmax + 0.25 px toward the higher neighbour) or 'dark' (Taylor expansion)."""
        n, k, h, w = heatmaps.shape
        flat = heatmaps.reshape(n, k, -1)
        idx = flat.argmax(-1)
        scores = flat.max(-1)
        coords = np.stack([idx % w, idx // w], -1).astype(np.float32)
        if refine == "quarter":
            coords += quarter_offsets(heatmaps, coords)
        elif refine == "dark":
            coords = dark_refine(heatmaps, coords)
        return coords / self.scale, scores.astype(np.float32)

    def decode_integral(self, coords: np.ndarray) -> np.ndarray:
        """Integral-regression coordinates [N,K,2] (heatmap pixels) -> input pixels."""
        return coords / self.scale


def quarter_offsets(heatmaps: np.ndarray, coords: np.ndarray) -> np.ndarray:
    n, k, h, w = heatmaps.shape
    off = np.zeros_like(coords)
    for i in range(n):
        for j in range(k):
            x, y = int(coords[i, j, 0]), int(coords[i, j, 1])
            hm = heatmaps[i, j]
            if 0 < x < w - 1:
                off[i, j, 0] = 0.25 * np.sign(hm[y, x + 1] - hm[y, x - 1])
            if 0 < y < h - 1:
                off[i, j, 1] = 0.25 * np.sign(hm[y + 1, x] - hm[y - 1, x])
    return off


def dark_refine(heatmaps: np.ndarray, coords: np.ndarray, kernel: int = 11) -> np.ndarray:
    """DARK (Zhang et al., CVPR 2020): blur each heatmap with a Gaussian (keeping its maximum), take the
    log, and move the argmax by -H^-1 grad of a second-order Taylor expansion."""
    n, k, h, w = heatmaps.shape
    t = torch.from_numpy(heatmaps.reshape(n * k, 1, h, w).astype(np.float64))
    g = torch.arange(kernel, dtype=torch.float64) - kernel // 2
    g = torch.exp(-(g**2) / (2 * ((kernel - 1) / 6) ** 2))
    g = g / g.sum()
    peak = t.amax((2, 3), keepdim=True)
    blurred = F.conv2d(F.pad(t, [kernel // 2] * 4, mode="replicate"), (g[:, None] * g[None, :])[None, None])
    blurred = blurred * peak / blurred.amax((2, 3), keepdim=True).clamp_min(1e-12)
    logh = torch.log(blurred.clamp_min(1e-10)).reshape(n, k, h, w).numpy()
    out = coords.copy()
    for i in range(n):
        for j in range(k):
            x, y = int(coords[i, j, 0]), int(coords[i, j, 1])
            if not (1 < x < w - 2 and 1 < y < h - 2):
                continue
            m = logh[i, j]
            dx = 0.5 * (m[y, x + 1] - m[y, x - 1])
            dy = 0.5 * (m[y + 1, x] - m[y - 1, x])
            dxx = m[y, x + 1] - 2 * m[y, x] + m[y, x - 1]
            dyy = m[y + 1, x] - 2 * m[y, x] + m[y - 1, x]
            dxy = 0.25 * (m[y + 1, x + 1] - m[y + 1, x - 1] - m[y - 1, x + 1] + m[y - 1, x - 1])
            hess = np.array([[dxx, dxy], [dxy, dyy]])
            if abs(np.linalg.det(hess)) > 1e-12:
                out[i, j] -= np.linalg.solve(hess, np.array([dx, dy]))
    return out


def flip_permutation(flip_pairs: tuple[tuple[int, int], ...], num_keypoints: int) -> np.ndarray:
    """Keypoint order after a horizontal flip: index i takes keypoint perm[i] (left and right swapped)."""
    perm = np.arange(num_keypoints)
    for a, b in flip_pairs:
        perm[a], perm[b] = b, a
    return perm


def flip_heatmaps(heatmaps: torch.Tensor, flip_pairs: tuple[tuple[int, int], ...]) -> torch.Tensor:
    """Heatmaps predicted on a horizontally flipped image, mapped back: flip x, swap left/right channels.
    (With the unbiased transform the flip needs no pixel shift.)"""
    return heatmaps.flip(-1)[:, flip_permutation(flip_pairs, heatmaps.shape[1])]
