"""Whole-image pose pipelines. Each declares its stages, so `predict` and `track` run any of them:

- `TopDownPipeline`: detector -> person crops -> a crop pose model (MoveNet, or a top-down checkpoint)
  -> instance scores -> OKS-NMS. Stages: detect, crop, pose.
- `ImagePipeline`: one whole-image model (MoveNet MultiPose, or a whole-image checkpoint). Stage: pose.

A stage is a function of a `FrameState` (the image and what earlier stages added to it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from posekit.data.specs import get_spec
from posekit.postprocess.nms import box_nms, instance_scores, oks_nms
from posekit.structures import Poses


@dataclass
class TopDownOptions:
    det_threshold: float = 0.2  # person box score threshold
    box_nms_iou: float = 0.6
    keypoint_threshold: float = 0.2  # keypoints counted in the instance score
    oks_nms_threshold: float = 0.9
    max_persons: int = 30
    margin: float = 1.25  # box expansion before cropping (AlphaPose / SimpleBaseline)


@dataclass
class FrameState:
    image: np.ndarray
    boxes: np.ndarray | None = None
    box_scores: np.ndarray | None = None
    crops: np.ndarray | None = None
    mats: np.ndarray | None = None
    poses: Poses | None = None
    extras: dict[str, Any] = field(default_factory=dict)


class CropPoseModel(Protocol):
    spec: str  # keypoint spec name

    def crop_inputs(self, image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    def forward_crops(self, crops: np.ndarray, mats: np.ndarray, with_embeddings: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]: ...


class ImagePoseModel(Protocol):
    spec: str  # keypoint spec name

    def __call__(self, image: np.ndarray) -> Poses: ...


Step = tuple[str, Callable[[FrameState], None]]


class TopDownPipeline:
    """AlphaPose-shaped top-down: persons -> box NMS -> crops -> the pose model on all crops of the image in
    one batch -> keypoints in image pixels -> instance score -> OKS-NMS (the spec's sigmas)."""

    takes_boxes = True

    def __init__(self, pose: CropPoseModel, detector: Callable[[np.ndarray, float], tuple[np.ndarray, np.ndarray]],
                 options: TopDownOptions | None = None) -> None:  # fmt: skip
        self.options = options or TopDownOptions()
        self.detector = detector
        self.pose = pose
        self.spec = pose.spec
        self.sigmas = np.array(get_spec(pose.spec).sigmas)

    def detect(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        o = self.options
        boxes, scores = self.detector(image, o.det_threshold)
        keep = box_nms(boxes, scores, o.box_nms_iou)[: o.max_persons]
        return boxes[keep], scores[keep]

    def __call__(self, image: np.ndarray, boxes: np.ndarray | None = None, box_scores: np.ndarray | None = None) -> Poses:
        """Poses in `image`; person `boxes` [N,4] xyxy (e.g. ground truth) skip the detector."""
        if boxes is None:
            boxes, box_scores = self.detect(image)
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        box_scores = np.ones(len(boxes), np.float32) if box_scores is None else np.asarray(box_scores, np.float32)
        crops, mats = self.pose.crop_inputs(image, boxes)
        return self.estimate(crops, mats, boxes, box_scores)

    def estimate(
        self, crops: np.ndarray, mats: np.ndarray, boxes: np.ndarray, box_scores: np.ndarray, with_embeddings: bool = False
    ) -> Poses:
        """Poses from person crops: pose model, instance scores, OKS-NMS. With `with_embeddings`, each
        person's identity embedding (when the pose model has them) is in `meta['embeddings']`."""
        if len(boxes) == 0:
            return Poses.empty(len(self.sigmas), self.spec)
        keypoints, kp_scores, emb = self.pose.forward_crops(crops, mats, with_embeddings)
        scores = instance_scores(box_scores, kp_scores, self.options.keypoint_threshold)
        keep = oks_nms(keypoints, scores, boxes, self.sigmas, self.options.oks_nms_threshold)
        meta = {"embeddings": emb} if emb is not None else {}
        return Poses(keypoints, kp_scores, boxes, scores, self.spec, meta=meta).select(keep)

    def steps(self, with_embeddings: bool = False) -> list[Step]:
        def detect(s: FrameState) -> None:
            s.boxes, s.box_scores = self.detect(s.image)

        def crop(s: FrameState) -> None:
            s.crops, s.mats = self.pose.crop_inputs(s.image, s.boxes)

        def pose(s: FrameState) -> None:
            s.poses = self.estimate(s.crops, s.mats, s.boxes, s.box_scores, with_embeddings)
            s.crops = s.mats = None  # let the crops go before the frame reaches the writer

        return [("detect", detect), ("crop", crop), ("pose", pose)]


class ImagePipeline:
    """One whole-image model; persons below `score_threshold` are dropped, best first."""

    takes_boxes = False

    def __init__(self, model: ImagePoseModel, score_threshold: float = 0.1) -> None:
        self.model = model
        self.spec = model.spec
        self.score_threshold = score_threshold

    def __call__(self, image: np.ndarray, boxes: np.ndarray | None = None, box_scores: np.ndarray | None = None) -> Poses:
        if boxes is not None:
            raise ValueError("this model is single-stage / bottom-up: it does not take person boxes")
        poses = self.model(image)
        keep = np.flatnonzero(poses.scores >= self.score_threshold)
        return poses.select(keep[np.argsort(-poses.scores[keep], kind="stable")])

    def steps(self, with_embeddings: bool = False) -> list[Step]:
        def pose(s: FrameState) -> None:
            s.poses = self(s.image)

        return [("pose", pose)]


class MultiPoseModel:
    """MoveNet MultiPose as an `ImagePoseModel`."""

    spec = "coco17"

    def __init__(self, longest_side: int = 256, backend: str = "torch") -> None:
        from posekit.models.tfjs_models import MultiPoseMoveNet

        self.net = MultiPoseMoveNet(longest_side, backend)

    def __call__(self, image: np.ndarray) -> Poses:
        out = self.net(image)
        return Poses(out["keypoints"], out["keypoint_scores"], out["boxes"], out["scores"])
