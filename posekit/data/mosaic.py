"""Multi-person training images tiled from single-person images (LSP / LSP-Extended).

A mosaic is a g x g grid (g drawn from `grids`) on the square network input; each tile holds one person of
a random source image, scaled so the person is `scale` of the tile high and placed at a random position
inside it. Keypoints are converted to the target spec by joint name (`convert_keypoints`): joints the
source does not annotate (COCO's eyes, ears and nose from LSP) are reported as `missing`, so the codec can
leave them out of the loss near that person instead of teaching "no keypoint here".

Caveat: LSP-Extended images sometimes show other, unannotated people; inside a tile they count as
background.
"""

from __future__ import annotations

import cv2
import numpy as np

from posekit.data.datasets import Sample
from posekit.data.specs import convert_keypoints, get_spec, keypoint_mapping
from posekit.pipeline.readers import read_image


class MosaicSource:
    def __init__(self, samples: list[Sample], spec: str, grids: tuple[int, ...] = (2, 3), scale: tuple[float, float] = (0.55, 1.0)) -> None:
        self.samples = [s for s in samples if s.instances and (s.instances[0].keypoints[:, 2] > 0).sum() >= 4]
        if not self.samples:
            raise ValueError("mosaic: no source image has a person with at least 4 labelled joints")
        self.src, self.dst = samples[0].spec, spec
        self.grids, self.scale = tuple(grids), tuple(scale)
        k = get_spec(spec).num_keypoints
        mapped = {j for j, _ in keypoint_mapping(self.src, spec)}
        self.missing = np.array([j not in mapped for j in range(k)])

    def make(self, rng: np.random.Generator, size: int, grid: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(canvas [size,size,3] uint8, keypoints [P,K,3] in canvas pixels of the target spec, missing [P,K]).
        `grid` (rows, cols) fixes the tiling; by default it is g x g with g drawn from `grids`."""
        if grid is None:
            g = int(rng.choice(self.grids))
            grid = (g, g)
        canvas = np.zeros((size, size, 3), np.uint8)
        people = []
        y_edges = np.linspace(0, size, grid[0] + 1).round().astype(int)
        x_edges = np.linspace(0, size, grid[1] + 1).round().astype(int)
        for row in range(grid[0]):
            for col in range(grid[1]):
                x0, x1, y0, y1 = x_edges[col], x_edges[col + 1], y_edges[row], y_edges[row + 1]
                sample = self.samples[int(rng.integers(len(self.samples)))]
                kps = sample.instances[0].keypoints
                lab = kps[:, 2] > 0
                lo, hi = kps[lab, :2].min(0), kps[lab, :2].max(0)
                extent = np.maximum(hi - lo, 1.0) * 1.15  # a little room for hands and head top
                cell = min(x1 - x0, y1 - y0)
                s = cell * rng.uniform(*self.scale) / extent.max()
                half = extent * s / 2
                cx = rng.uniform(x0 + half[0], max(x1 - half[0], x0 + half[0]))
                cy = rng.uniform(y0 + half[1], max(y1 - half[1], y0 + half[1]))
                centre = (lo + hi) / 2
                mat = np.array([[s, 0, cx - s * centre[0]], [0, s, cy - s * centre[1]]])
                local = mat - np.array([[0, 0, x0], [0, 0, y0]])
                image = read_image(sample.image_path)
                canvas[y0:y1, x0:x1] = cv2.warpAffine(image, local, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR)
                xy = kps[:, :2] @ mat[:, :2].T + mat[:, 2]
                cxy, cv = convert_keypoints(xy[None], kps[None, :, 2], self.src, self.dst)
                people.append(np.concatenate([cxy[0], cv[0][:, None]], 1))
        keypoints = np.stack(people).astype(np.float32)
        return canvas, keypoints, np.broadcast_to(self.missing, keypoints.shape[:2]).copy()
