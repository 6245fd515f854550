"""PCK metrics: MPII PCKh (head-size normalised) and LSP PCK (torso normalised)."""

from __future__ import annotations

import numpy as np

from posekit.data.specs import MPII16

PCKH_HEAD_FACTOR = 0.6  # MPII: head size = 0.6 x the diagonal of the annotated head box


def pck(pred: np.ndarray, gt: np.ndarray, visible: np.ndarray, norm: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-joint hit rate and joint counts: a visible joint is hit when |pred - gt| <= threshold x norm.

    pred, gt [N,K,2]; visible [N,K] bool; norm [N] (a person's normalising length)."""
    dist = np.linalg.norm(pred - gt, axis=-1) / np.maximum(norm, np.finfo(np.float64).eps)[:, None]
    hits = (dist <= threshold) & visible
    count = visible.sum(0)
    return np.where(count > 0, hits.sum(0) / np.maximum(count, 1), np.nan), count


def head_sizes(head_boxes: np.ndarray) -> np.ndarray:
    """MPII head size from head boxes [N,4] xyxy."""
    wh = head_boxes[:, 2:] - head_boxes[:, :2]
    return PCKH_HEAD_FACTOR * np.linalg.norm(wh, axis=1)


def mpii_pckh(pred: np.ndarray, gt: np.ndarray, visible: np.ndarray, head_size: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """PCKh per MPII joint and 'Mean' as MPII reports it: over all joints except pelvis and thorax,
    each joint weighted by its number of visible instances."""
    rate, count = pck(pred, gt, visible, head_size, threshold)
    out = {name: float(r) for name, r in zip(MPII16.keypoints, rate)}
    keep = np.ones(16, bool)
    keep[[MPII16.keypoints.index("pelvis"), MPII16.keypoints.index("thorax")]] = False
    weights = count[keep] / max(count[keep].sum(), 1)
    out["Mean"] = float(np.nansum(rate[keep] * weights))
    return out


def lsp_pck(pred: np.ndarray, gt: np.ndarray, visible: np.ndarray, names: tuple[str, ...], threshold: float = 0.2) -> dict[str, float]:
    """PCK@threshold normalised by the torso (left shoulder to right hip) per joint, and the mean over
    all visible joints; persons without both torso joints are not scored."""
    ls, rh = names.index("left_shoulder"), names.index("right_hip")
    torso = np.linalg.norm(gt[:, ls] - gt[:, rh], axis=-1)
    visible = visible & (visible[:, ls] & visible[:, rh])[:, None]  # no torso, no normaliser: person skipped
    rate, count = pck(pred, gt, visible, torso, threshold)
    out = {name: float(r) for name, r in zip(names, rate)}
    out["Mean"] = float(np.nansum(rate * count) / max(count.sum(), 1))
    return out
