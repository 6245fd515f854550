"""PCK of a model on multi-person mosaics tiled from held-out single-person LSP images: each mosaic's
persons are known, so a whole-image model's grouping and a top-down model's detection are both scored.
Each annotated person is matched one-to-one (Hungarian, on the mean torso-normalised distance of its
labelled joints) to a predicted pose; an unmatched person misses every joint. PCK@0.2 (torso) over the
joints the target spec shares with LSP."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment
from tqdm import tqdm

from posekit.data.datasets import Sample
from posekit.data.mosaic import MosaicSource
from posekit.data.specs import get_spec
from posekit.evaluation.pck import lsp_pck

UNMATCHED = 1e6  # an unmatched person's joints are this far away: every one a miss


def mosaic_pck(estimator: Any, samples: list[Sample], count: int, size: int = 256, seed: int = 0, quiet: bool = False) -> dict[str, float]:
    """PCK@0.2 of `estimator` (a `PoseEstimator`) on `count` mosaics of `samples` (LSP), drawn with `seed`."""
    spec = get_spec(estimator.spec)
    source = MosaicSource(samples, spec.name)
    rng = np.random.default_rng(seed)
    ls, rh = spec.keypoints.index("left_shoulder"), spec.keypoints.index("right_hip")
    preds, gts, visible = [], [], []
    for _ in tqdm(range(count), desc="mosaics", unit="img", disable=quiet or None, dynamic_ncols=True):
        canvas, kps, _missing = source.make(rng, size)
        poses = estimator.estimate(canvas)
        lab = kps[:, :, 2] > 0
        torso = np.maximum(np.linalg.norm(kps[:, ls, :2] - kps[:, rh, :2], axis=-1), 1.0)
        out = np.full((len(kps), spec.num_keypoints, 2), UNMATCHED, np.float32)
        if len(poses):
            d = np.linalg.norm(kps[:, None, :, :2] - poses.keypoints[None], axis=-1) / torso[:, None, None]  # [G,P,K]
            cost = (d * lab[:, None]).sum(-1) / np.maximum(lab.sum(-1), 1)[:, None]
            for g, p in zip(*linear_sum_assignment(cost)):
                out[g] = poses.keypoints[p]
        preds.append(out)
        gts.append(kps[:, :, :2])
        visible.append(lab)
    return lsp_pck(np.concatenate(preds), np.concatenate(gts), np.concatenate(visible), spec.keypoints)
