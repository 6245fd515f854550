"""Centre + offset codec for single-stage multi-person pose (CenterNet's "objects as points", the
decoding MoveNet MultiPose uses): each person is a peak in a centre heatmap; from that peak, regressed
offsets give every joint; each joint is then snapped to the nearby peak of its keypoint heatmap.

Coordinates: input pixel centres at integers; heatmap pixel i covers input pixels [i*s, (i+1)*s), so
input x <-> heatmap (x + 0.5) / s - 0.5.

Targets (`encode`, one image): "center_heatmap" [1,h,w] and "keypoint_heatmaps" [K,h,w] (Gaussians,
sigma 2 heatmap pixels, max over persons, each peaking at 1 on the nearest pixel), "heatmap_weights" [K+1,h,w] (0 inside crowd / unlabelled
regions, and inside a person's box for the joints its source dataset does not annotate), and per person
(padded to `max_persons`): "center_index" (y*w + x), "offsets" [K,2] (heatmap pixels), "offset_weights" [K].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from posekit.codecs.heatmap import quarter_offsets

SNAP_DISTANCE_BIAS = 1.8  # MoveNet's: keypoint heatmap / (distance to the regressed joint + 1.8)
SUBPIXEL_AGREEMENT = 1.0  # heatmap pixels between the regressed joint and its snapped peak to trust the former


@dataclass
class CenterOffsetCodec:
    input_size: tuple[int, int]  # (w, h)
    stride: int
    num_keypoints: int
    sigma: float = 2.0
    max_persons: int = 32

    @property
    def heatmap_size(self) -> tuple[int, int]:
        return self.input_size[0] // self.stride, self.input_size[1] // self.stride

    def to_heatmap(self, xy: np.ndarray) -> np.ndarray:
        return (np.asarray(xy, np.float32) + 0.5) / self.stride - 0.5

    def to_input(self, xy: np.ndarray) -> np.ndarray:
        return (np.asarray(xy, np.float32) + 0.5) * self.stride - 0.5

    def _gaussian(self, mu: np.ndarray) -> np.ndarray:
        w, h = self.heatmap_size
        xs = np.arange(w, dtype=np.float32)[None, :]
        ys = np.arange(h, dtype=np.float32)[:, None]
        return np.exp(-((xs - mu[0]) ** 2 + (ys - mu[1]) ** 2) / (2 * self.sigma**2))

    def encode(self, keypoints: np.ndarray, missing: np.ndarray, ignore: np.ndarray) -> dict[str, np.ndarray]:
        """keypoints [N,K,3] in input pixels (v > 0 labelled), missing [N,K] (joints the source does not
        annotate), ignore [h,w] bool at heatmap resolution -> targets (see the module doc)."""
        w, h = self.heatmap_size
        k, m = self.num_keypoints, self.max_persons
        center = np.zeros((1, h, w), np.float32)
        heat = np.zeros((k, h, w), np.float32)
        weights = np.ones((k + 1, h, w), np.float32)
        weights[:, ignore] = 0.0
        index = np.zeros(m, np.int64)
        offsets = np.zeros((m, k, 2), np.float32)
        off_w = np.zeros((m, k), np.float32)
        n = 0
        for person, miss in zip(keypoints, missing):
            labelled = person[:, 2] > 0
            if not labelled.any():
                continue
            xy = self.to_heatmap(person[:, :2])
            lo, hi = xy[labelled].min(0), xy[labelled].max(0)
            c = (lo + hi) / 2
            ci = np.round(c).astype(int)
            if not (0 <= ci[0] < w and 0 <= ci[1] < h):
                continue
            # Peaks sit on integer pixels (CenterNet): the focal loss's positives are the pixels equal to 1;
            # the sub-pixel part of a joint is in its offset from the centre pixel.
            center[0] = np.maximum(center[0], self._gaussian(ci))
            for j in np.flatnonzero(labelled):
                heat[j] = np.maximum(heat[j], self._gaussian(np.round(xy[j])))
            if miss.any():  # unknown joints of this person: neither positive nor negative near it
                pad = 2 * self.sigma
                x0, y0 = np.clip(np.floor(lo - pad).astype(int), 0, [w, h])
                x1, y1 = np.clip(np.ceil(hi + pad).astype(int) + 1, 0, [w, h])
                weights[1 + np.flatnonzero(miss), y0:y1, x0:x1] = 0.0  # channel 0 is the centre map
            if n < m:
                index[n] = ci[1] * w + ci[0]
                offsets[n] = xy - ci
                off_w[n] = labelled
                n += 1
        return {"center_heatmap": center, "keypoint_heatmaps": heat, "heatmap_weights": weights,
                "center_index": index, "offsets": offsets, "offset_weights": off_w}  # fmt: skip

    def decode(self, center: np.ndarray, heatmaps: np.ndarray, offsets: np.ndarray, max_persons: int = 20,
               min_center: float = 0.05) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
        """One image: centre [h,w] and keypoint heatmaps [K,h,w] (probabilities), offsets [K,2,h,w] ->
        keypoints [P,K,2] (input pixels), keypoint scores [P,K], centre scores [P]."""
        k = self.num_keypoints
        c = torch.from_numpy(center)[None, None]
        peaks = (c == F.max_pool2d(c, 3, 1, 1)) & (c >= min_center)
        scores, flat = torch.topk((c * peaks).flatten(), min(max_persons, c.numel()))
        keep = scores > 0
        scores, flat = scores[keep].numpy(), flat[keep].numpy()
        if len(flat) == 0:
            return np.zeros((0, k, 2), np.float32), np.zeros((0, k), np.float32), np.zeros(0, np.float32)
        h, w = center.shape
        cy, cx = flat // w, flat % w
        regressed = np.stack([cx, cy], -1)[:, None, :].astype(np.float32) + offsets[:, :, cy, cx].transpose(2, 0, 1)  # [P,K,2]
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        dist = np.sqrt((xs - regressed[..., 0, None, None]) ** 2 + (ys - regressed[..., 1, None, None]) ** 2)  # [P,K,h,w]
        best = (heatmaps[None] / (dist + SNAP_DISTANCE_BIAS)).reshape(len(flat), k, -1).argmax(-1)
        snapped = np.stack([best % w, best // w], -1).astype(np.float32)
        kp_scores = np.take_along_axis(heatmaps.reshape(1, k, -1).repeat(len(flat), 0), best[..., None], -1)[..., 0]
        snapped += quarter_offsets(np.broadcast_to(heatmaps, (len(flat), *heatmaps.shape)), snapped)
        # Heatmap peaks are whole pixels; where the regressed joint agrees with the peak it keeps its sub-pixel part.
        agree = np.linalg.norm(regressed - snapped, axis=-1) <= SUBPIXEL_AGREEMENT
        joints = np.where(agree[..., None], regressed, snapped)
        return self.to_input(joints), kp_scores.astype(np.float32), scores.astype(np.float32)

    def oracle_decode(self, targets: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Decode the targets as if a perfect network had predicted them (offsets written at each centre)."""
        w, h = self.heatmap_size
        offsets = np.zeros((self.num_keypoints, 2, h, w), np.float32)
        for idx, off, ow in zip(targets["center_index"], targets["offsets"], targets["offset_weights"]):
            if ow.any():
                offsets[:, :, idx // w, idx % w] = off
        return self.decode(targets["center_heatmap"][0], targets["keypoint_heatmaps"], offsets)

