"""Whole-image pose pipelines: top-down (detector -> crops -> single-person model) and single-stage."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from posekit.codecs.nms import box_nms, instance_scores, oks_nms
from posekit.data.specs import COCO17
from posekit.models.tfjs_models import CenterNetDetector, MultiPoseMoveNet, SinglePoseMoveNet
from posekit.structures import Poses


@dataclass
class TopDownOptions:
    det_threshold: float = 0.2  # person box score threshold
    box_nms_iou: float = 0.6
    keypoint_threshold: float = 0.2  # keypoints counted in the instance score
    oks_nms_threshold: float = 0.9
    max_persons: int = 30
    margin: float = 1.25  # box expansion before cropping (AlphaPose / SimpleBaseline)


class TopDownPipeline:
    """AlphaPose-shaped top-down: CenterNet persons -> box NMS -> 1.25x square crops -> MoveNet on all
    crops of the image in one batch -> keypoints in image pixels -> instance score -> OKS-NMS."""

    def __init__(self, pose_model: str = "movenet-thunder", options: TopDownOptions | None = None) -> None:
        self.options = options or TopDownOptions()
        self.detector = CenterNetDetector()
        self.pose = SinglePoseMoveNet(pose_model, margin=self.options.margin)

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
        person's identity embedding is in `meta['embeddings']`."""
        if len(boxes) == 0:
            return Poses.empty()
        keypoints, kp_scores, emb = self.pose.forward_crops(crops, mats, with_embeddings)
        scores = instance_scores(box_scores, kp_scores, self.options.keypoint_threshold)
        keep = oks_nms(keypoints, scores, boxes, np.array(COCO17.sigmas), self.options.oks_nms_threshold)
        meta = {"embeddings": emb} if emb is not None else {}
        return Poses(keypoints, kp_scores, boxes, scores, meta=meta).select(keep)


class MultiPosePipeline:
    """MoveNet MultiPose on the letterboxed image; persons below `score_threshold` are dropped."""

    def __init__(self, longest_side: int = 256, score_threshold: float = 0.1) -> None:
        self.model = MultiPoseMoveNet(longest_side)
        self.score_threshold = score_threshold

    def __call__(self, image: np.ndarray, boxes: np.ndarray | None = None, box_scores: np.ndarray | None = None) -> Poses:
        if boxes is not None:
            raise ValueError("movenet-multipose is single-stage: it does not take person boxes")
        out = self.model(image)
        keep = np.flatnonzero(out["scores"] >= self.score_threshold)
        keep = keep[np.argsort(-out["scores"][keep], kind="stable")]
        return Poses(out["keypoints"], out["keypoint_scores"], out["boxes"], out["scores"]).select(keep)
