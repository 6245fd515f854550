"""The interface every trainable pose family implements (torchvision's detection models are the model:
the model owns its losses and its post-processing, the trainer knows nothing about either).

- `forward(images)` -> raw tensors: what `export` traces.
- `loss(batch)` -> named loss terms; the trainer sums them and logs each.
- `predict(batch)` -> one `Poses` per batch item, in image pixels: decoding, flip test and scoring inside.
  For `input_kind == "crops"` an item is one person crop (a `Poses` of one person); for "image" it is one
  whole image (all its persons).
- `input_kind`, `codec` (encodes the dataset's targets, decodes outputs), `spec` (a `KeypointSpec`),
  `stride` (input pixels per output pixel) and `size_divisor` (input sides must be multiples of it).

Batches are dicts of tensors made by the dataset of the model's `input_kind` (`posekit.data.build`):
"image" [N,3,H,W] (normalised, `transforms.normalise`), "matrix" [N,2,3] (image pixels -> input pixels),
"index" [N] (the dataset item), plus the targets the model's codec encoded, and for crops "box" [N,4] /
"box_score" [N] (the person box the crop came from).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from posekit.data.transforms import apply_inverse
from posekit.postprocess.nms import oks_nms
from posekit.structures import KeypointSpec, Poses

BOX_KEYPOINT_THRESHOLD = 0.2  # keypoints that make a whole-image pose's box
OKS_NMS_THRESHOLD = 0.9


class PoseModel(nn.Module):
    family: ClassVar[str]
    input_kind: ClassVar[str]  # "crops" | "image"
    spec: KeypointSpec
    codec: Any
    stride: int
    size_divisor: int
    input_size: tuple[int, int]  # (w, h) the model was trained at
    oks_nms: ClassVar[float | None] = 0.9  # OKS-NMS threshold over an image's poses at evaluation (None: none)
    oracle_variants: ClassVar[dict[str, dict]] = {"1/4": {}}  # whole-image families: config options the codec oracle scores

    @property
    def pretrained_prefixes(self) -> tuple[str, ...]:
        """Parameter name prefixes that start pretrained: the trunk and the heads warm-started from a graph
        (`graph_heads.graph_head` marks them). The trainer gives them `train.backbone_lr_mult` x the rate (the
        warm heads only with `train.warm_heads_lr: trunk`)."""
        return ("backbone.", *(f"{name}." for name, m in self.named_modules() if getattr(m, "warm_started", False)))

    def loss(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def predict(self, batch: dict[str, torch.Tensor]) -> list[Poses]:
        raise NotImplementedError


class LossModule(nn.Module):
    """`forward(batch) = model.loss(batch)`: what the trainer wraps in DDP, so that gradient
    synchronisation sees the model's forward pass however `loss` calls it."""

    def __init__(self, model: PoseModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.model.loss(batch)


def crop_heatmap_mse(heatmaps: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Top-down heatmap loss: per-keypoint MSE over the map [N,K], weighted by the target weights [N,K], mean."""
    return (((heatmaps - target) ** 2).mean((2, 3)) * weights).mean()


def crop_poses(batch: dict[str, torch.Tensor], xy: np.ndarray, scores: np.ndarray, person: np.ndarray, spec: str) -> list[Poses]:
    """One `Poses` of one person per crop of a crops batch: keypoints `xy` [N,K,2] (crop pixels) taken back to
    the image through the batch's matrices, with the crop's box and the person scores `person` [N]."""
    keypoints = apply_inverse(batch["matrix"].cpu(), xy)
    boxes = batch["box"].cpu().numpy()
    return [Poses(keypoints[i : i + 1], scores[i : i + 1], boxes[i : i + 1], person[i : i + 1], spec) for i in range(len(xy))]


def poses_from_keypoints(keypoints: np.ndarray, kp_scores: np.ndarray, scores: np.ndarray, spec: str, sigmas: np.ndarray,
                         nms_threshold: float | None = OKS_NMS_THRESHOLD) -> Poses:  # fmt: skip
    """Poses with boxes around their confident keypoints (around all keypoints when none is, or when the
    confident ones span no area: one joint, or joints on one row or column), after OKS-NMS (`nms_threshold`
    None: none)."""
    if len(keypoints) == 0:
        return Poses.empty(kp_scores.shape[1] if kp_scores.ndim == 2 else len(sigmas), spec)

    def extent(use: np.ndarray) -> np.ndarray:
        lo = np.where(use[..., None], keypoints, np.inf).min(1)
        hi = np.where(use[..., None], keypoints, -np.inf).max(1)
        return np.concatenate([lo, hi], 1)

    confident = kp_scores > BOX_KEYPOINT_THRESHOLD
    confident[~confident.any(1)] = True
    boxes = extent(confident)
    # a zero-area box has no IoU with anything and no scale for OKS, so the tracker could never link that person
    flat = (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
    boxes[flat] = extent(np.ones_like(confident))[flat]
    poses = Poses(keypoints, kp_scores, boxes, scores, spec)
    return poses if nms_threshold is None else poses.select(oks_nms(keypoints, scores, boxes, sigmas, nms_threshold))


def image_poses(keypoints: np.ndarray, kp_scores: np.ndarray, scores: np.ndarray, matrix: np.ndarray, spec: KeypointSpec,
                nms_threshold: float | None = OKS_NMS_THRESHOLD) -> Poses:  # fmt: skip
    """One whole image's decoded poses, keypoints [P,K,2] in input pixels, back in image pixels through the
    inverse of `matrix` [2,3] (image -> input), as `poses_from_keypoints` makes them."""
    keypoints = apply_inverse(np.repeat(np.asarray(matrix)[None], len(keypoints), 0), keypoints)
    return poses_from_keypoints(keypoints, kp_scores, scores, spec.name, np.array(spec.sigmas), nms_threshold)
