"""Whole-image pose pipelines. Each declares its stages, so `predict` and `track` run any of them:

- `TopDownPipeline`: detector -> person crops -> a crop pose model (MoveNet, or a top-down checkpoint;
  optionally also on mirrored and rescaled crops, averaged) -> instance scores -> pose NMS. Stages:
  detect, crop, pose.
- `ImagePipeline`: one whole-image model (MoveNet MultiPose, or a whole-image checkpoint). Stage: pose.

A stage is a function of a `FrameState` (the image and what earlier stages added to it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from posekit.codecs.heatmap import flip_permutation
from posekit.data.specs import get_spec
from posekit.errors import OptionError
from posekit.postprocess.calibration import PersonCalibration
from posekit.postprocess.nms import box_nms, oks_nms
from posekit.postprocess.pose_nms import SCORING_RULES, PoseNMSParams, parametric_pose_nms, score_instances
from posekit.structures import Poses

POSE_NMS = ("oks", "parametric", "none")
# crops (mirror images included) per pose-network call: memory stays flat whatever the number of boxes
POSE_CHUNK = 8


@dataclass
class TopDownOptions:
    det_threshold: float = 0.2  # person box score threshold
    box_nms_iou: float = 0.6
    scoring: str = "box_mean_above"  # instance score rule (postprocess.pose_nms.SCORING_RULES)
    keypoint_threshold: float = 0.2  # keypoints counted in the "*_above" scoring rules
    pose_nms: str = "oks"  # "oks" (greedy OKS-NMS), "parametric" (AlphaPose's P-NMS) or "none"
    oks_nms_threshold: float = 0.9
    pnms: PoseNMSParams = field(default_factory=PoseNMSParams)
    flip_test: bool = False  # also run the mirrored crops, swap left/right, average (top-down checkpoints flip inside already)
    crop_scales: tuple[float, ...] = (1.0,)  # crop-scale jitter: boxes scaled by each, the results averaged
    max_persons: int = 30
    margin: float = 1.25  # box expansion before cropping (AlphaPose / SimpleBaseline)
    # calibrated person scores (postprocess/calibration.py): logistic weights; None keeps the `scoring` rule
    calibration: tuple[float, ...] | None = None
    # persons scoring below this are not returned, and boxes whose person cannot reach it get no pose pass
    score_threshold: float = 0.0

    def __post_init__(self) -> None:
        if self.calibration is not None:
            self.calibration = tuple(float(w) for w in self.calibration)
            PersonCalibration(self.calibration)  # refuses a malformed preset here, not on the first image
        if not 0.0 <= self.score_threshold <= 1.0:
            raise OptionError(f"score_threshold={self.score_threshold}: a score between 0 and 1")
        if self.pose_nms not in POSE_NMS:
            raise OptionError(f"pose_nms={self.pose_nms!r}: one of {', '.join(POSE_NMS)}")
        if isinstance(self.pnms, dict):
            self.pnms = PoseNMSParams(**self.pnms)
        self.crop_scales = tuple(float(s) for s in self.crop_scales)
        if not self.crop_scales or min(self.crop_scales) <= 0:
            raise OptionError(f"crop_scales={self.crop_scales}: positive scale factors")
        if self.scoring not in SCORING_RULES:  # fail here, not on the first image
            raise OptionError(f"unknown scoring rule {self.scoring!r}; one of {', '.join(SCORING_RULES)}")

    def box_threshold(self) -> float:
        """The detector score a box needs: `det_threshold`, or higher where no pose of a lower box can reach
        `score_threshold` (the calibration's bound; box x keypoint-mean rules never exceed the box score)."""
        bound = 0.0
        if self.score_threshold > 0:
            if self.calibration is not None:
                bound = PersonCalibration(self.calibration).min_box_score(self.score_threshold)
            elif self.scoring in ("box", "box_mean", "box_mean_above"):
                bound = self.score_threshold
        return max(self.det_threshold, bound)


def scale_boxes(boxes: np.ndarray, scale: float) -> np.ndarray:
    """xyxy boxes [N,4] scaled by `scale` about their centres (1.0: the boxes themselves, bit for bit)."""
    if scale == 1.0:
        return np.asarray(boxes, np.float32)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]) * scale / 2
    return np.concatenate([centre - half, centre + half], axis=1).astype(np.float32)


def mirror_crops(crops: np.ndarray, mats: np.ndarray, width_axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Crops mirrored left-right and the matrices that map image pixels into the mirrored crops (crop
    x -> W - 1 - x with pixel centres at integers), so the model's output maps back through them as usual."""
    width = crops.shape[width_axis]
    flipped = np.ascontiguousarray(np.flip(crops, axis=width_axis))
    m = np.array(mats, np.float64, copy=True)
    m[:, 0, :] = -m[:, 0, :]
    m[:, 0, 2] += width - 1
    return flipped, m


def rank_and_suppress(options: TopDownOptions, sigmas: np.ndarray, keypoints: np.ndarray, kp_scores: np.ndarray, boxes: np.ndarray,
                      box_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Instance scores [N] (the options' scoring rule) and the indices kept by their pose NMS, best first."""
    o = options
    if o.calibration is not None:
        scores = PersonCalibration(o.calibration)(box_scores, kp_scores)
    else:
        scores = score_instances(o.scoring, box_scores, kp_scores, o.keypoint_threshold)
    if o.pose_nms == "oks":
        keep = oks_nms(keypoints, scores, boxes, sigmas, o.oks_nms_threshold)
    elif o.pose_nms == "parametric":
        keep = parametric_pose_nms(keypoints, kp_scores, boxes, scores, o.pnms)
    else:
        keep = np.argsort(-scores, kind="stable")
    return scores, keep


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
        spec = get_spec(pose.spec)
        self.sigmas = np.array(spec.sigmas)
        self.flip_perm = flip_permutation(spec.flip_pairs, spec.num_keypoints)

    def detect(self, image: np.ndarray, det_threshold: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Person boxes and scores: the detector at `det_threshold` (default: the options' `box_threshold()`),
        box NMS, the `max_persons` best."""
        o = self.options
        boxes, scores = self.detector(image, o.box_threshold() if det_threshold is None else det_threshold)
        keep = box_nms(boxes, scores, o.box_nms_iou)[: o.max_persons]
        return boxes[keep], scores[keep]

    def __call__(self, image: np.ndarray, boxes: np.ndarray | None = None, box_scores: np.ndarray | None = None) -> Poses:
        """Poses in `image`; person `boxes` [N,4] xyxy (e.g. ground truth) skip the detector."""
        if boxes is None:
            boxes, box_scores = self.detect(image)
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        box_scores = np.ones(len(boxes), np.float32) if box_scores is None else np.asarray(box_scores, np.float32)
        if len(boxes) == 0:
            return Poses.empty(len(self.sigmas), self.pose.spec)
        keypoints, kp_scores = self.pose_boxes(image, boxes)
        scores, keep = rank_and_suppress(self.options, self.sigmas, keypoints, kp_scores, boxes, box_scores)
        return Poses(keypoints, kp_scores, boxes, scores, self.pose.spec).select(keep)

    def pose_boxes(self, image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Keypoints [N,K,2] and scores [N,K] of `boxes`, cropped and run a chunk of boxes at a time (at most
        `POSE_CHUNK` crops per network call, crop variants included), so that a photo with thousands of
        given boxes needs no more memory than one with thirty."""
        variants = len(self.options.crop_scales) * (2 if self.options.flip_test else 1)
        step = max(1, POSE_CHUNK // variants)
        parts = [self.keypoints(*self.crop_inputs(image, boxes[i : i + step]), len(boxes[i : i + step])) for i in range(0, len(boxes), step)]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def crop_inputs(self, image: np.ndarray, boxes: np.ndarray, scales: tuple[float, ...] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The pose model's crops of `boxes`, one set per crop scale (default: the options'), concatenated
        scale-major."""
        scales = self.options.crop_scales if scales is None else scales
        if scales == (1.0,):
            return self.pose.crop_inputs(image, boxes)
        parts = [self.pose.crop_inputs(image, scale_boxes(boxes, s)) for s in scales]
        return np.concatenate([c for c, _ in parts]), np.concatenate([m for _, m in parts])

    def variant_keypoints(self, crops: np.ndarray, mats: np.ndarray, n: int, flip: bool, with_embeddings: bool = False
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:  # fmt: skip
        """Keypoints [V,n,K,2] and scores [V,n,K] of `n` persons, one row per crop variant: every set of
        crops given (one per crop scale), then with `flip` their mirror images, left/right swapped back.
        One batch for all; embeddings of the first set."""
        if flip:
            flipped, flipped_mats = mirror_crops(crops, mats, getattr(self.pose, "crop_width_axis", 2))
            crops, mats = np.concatenate([crops, flipped]), np.concatenate([mats, flipped_mats])
        kp, sc, emb = self.pose.forward_crops(crops, mats, with_embeddings)
        kp, sc = kp.reshape(-1, n, *kp.shape[1:]), sc.reshape(-1, n, sc.shape[-1])
        if flip:
            half = len(kp) // 2
            kp[half:], sc[half:] = kp[half:][:, :, self.flip_perm], sc[half:][:, :, self.flip_perm]
        return kp, sc, None if emb is None else emb[:n]

    def keypoints(self, crops: np.ndarray, mats: np.ndarray, n: int, with_embeddings: bool = False
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:  # fmt: skip
        """Keypoints [n,K,2] and scores [n,K]: the crop variants of `variant_keypoints` averaged."""
        kp, sc, emb = self.variant_keypoints(crops, mats, n, self.options.flip_test, with_embeddings)
        return kp.mean(0), sc.mean(0), emb

    def estimate(
        self, crops: np.ndarray, mats: np.ndarray, boxes: np.ndarray, box_scores: np.ndarray, with_embeddings: bool = False
    ) -> Poses:
        """Poses from person crops (`crop_inputs`): pose model, instance scores, pose NMS. With
        `with_embeddings`, each person's identity embedding (when the pose model has them) is in
        `meta['embeddings']`."""
        if len(boxes) == 0:
            return Poses.empty(len(self.sigmas), self.pose.spec)
        keypoints, kp_scores, emb = self.keypoints(crops, mats, len(boxes), with_embeddings)
        scores, keep = rank_and_suppress(self.options, self.sigmas, keypoints, kp_scores, boxes, box_scores)
        meta = {"embeddings": emb} if emb is not None else {}
        return Poses(keypoints, kp_scores, boxes, scores, self.pose.spec, meta=meta).select(keep)

    def steps(self, with_embeddings: bool = False) -> list[Step]:
        def detect(s: FrameState) -> None:
            s.boxes, s.box_scores = self.detect(s.image)

        def crop(s: FrameState) -> None:
            s.crops, s.mats = self.crop_inputs(s.image, s.boxes)

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
