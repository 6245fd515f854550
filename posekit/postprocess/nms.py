"""Non-maximum suppression of person boxes (IoU) and of poses (OKS)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import cache
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np


@cache
def _nms() -> Callable[..., Any]:
    """torchvision's NMS kernel (torch is imported here, on the first NMS, not with this module: the CLI's
    parser reads the presets, which use this module, and `posekit --version` must not wait for torch). Importing the torchvision package imports torch._dynamo (1.3-1.7 s of every
    command's start, measured with -X importtime), so when nothing has imported it yet, only its compiled
    library is loaded: `torchvision.ops.nms` calls that same `torch.ops.torchvision.nms`."""
    import torch

    if "torchvision" not in sys.modules:
        spec = find_spec("torchvision")
        # _C.so, or _C_stable.so since torchvision 0.29
        libraries = sorted(Path(next(iter(spec.submodule_search_locations))).glob("_C*")) if spec and spec.submodule_search_locations else []
        try:
            if libraries and not hasattr(torch.ops.torchvision, "nms"):
                torch.ops.load_library(str(libraries[0]))
            return torch.ops.torchvision.nms
        except (OSError, RuntimeError, AttributeError):
            pass
    from torchvision.ops import nms

    return nms


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU [Na,Nb] of xyxy boxes."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None] - inter, 1e-9)


def box_nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices of the boxes kept, best score first."""
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    nms = _nms()
    from torch import from_numpy  # imported by _nms already

    keep = nms(from_numpy(np.asarray(boxes, np.float32)), from_numpy(np.asarray(scores, np.float32)), iou_threshold)
    return keep.numpy()


def mean_above(keypoint_scores: np.ndarray, threshold: float) -> np.ndarray:
    """Per person [N]: the mean of the keypoint scores [N,K] above `threshold` (0 when none is)."""
    confident = keypoint_scores > threshold
    return np.where(confident, keypoint_scores, 0).sum(1) / np.maximum(confident.sum(1), 1)


def instance_scores(box_scores: np.ndarray, keypoint_scores: np.ndarray, threshold: float) -> np.ndarray:
    """Box score x mean of the keypoint scores above `threshold` (0 when none is)."""
    return (box_scores * mean_above(keypoint_scores, threshold)).astype(np.float32)


def oks_matrix(kpts_a: np.ndarray, kpts_b: np.ndarray, areas: np.ndarray, sigmas: np.ndarray) -> np.ndarray:
    """OKS [Na,Nb] of poses a [Na,K,2] against poses b [Nb,K,2]; `areas` (broadcast to [Na,Nb]) sets the scale."""
    var = (2.0 * np.asarray(sigmas, np.float64)) ** 2
    d2 = ((kpts_a[:, None].astype(np.float64) - kpts_b[None].astype(np.float64)) ** 2).sum(-1)  # [Na,Nb,K]
    e = d2 / var / (np.broadcast_to(np.asarray(areas, np.float64), d2.shape[:2])[..., None] + np.spacing(1)) / 2.0
    return np.exp(-e).mean(-1)


NMS_BLOCK = 16  # reference poses whose similarity rows are computed at once: memory O(block x N x K), any N


def greedy_suppression(order: np.ndarray, redundant: Callable[[np.ndarray], np.ndarray], block: int = NMS_BLOCK) -> np.ndarray:
    """Greedy NMS over `order` (best first): each pose not yet suppressed is kept and suppresses the poses
    `redundant(refs)[r]` marks for reference `refs[r]` ([len(refs), N] bool). The rows are computed a block
    of still-live references at a time, never as an N x N x K array."""
    n = len(order)
    suppressed = np.zeros(n, bool)
    keep: list[int] = []
    for start in range(0, n, block):
        refs = order[start : start + block]
        refs = refs[~suppressed[refs]]
        if len(refs) == 0:
            continue
        rows = redundant(refs)
        for r, i in enumerate(refs):
            if suppressed[i]:
                continue
            keep.append(int(i))
            suppressed |= rows[r]
    return np.array(keep, np.int64)


def oks_nms(keypoints: np.ndarray, scores: np.ndarray, boxes: np.ndarray, sigmas: np.ndarray, threshold: float = 0.9) -> np.ndarray:
    """Greedy pose NMS: drop a pose whose OKS with a better-scored kept pose exceeds `threshold`."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    if len(order) == 0:
        return order.astype(np.int64)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])

    def redundant(refs: np.ndarray) -> np.ndarray:
        return oks_matrix(keypoints[refs], keypoints, (areas[refs, None] + areas[None, :]) / 2, sigmas) > threshold

    return greedy_suppression(order, redundant)
