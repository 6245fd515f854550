"""Whole-body pose with no training: the top-down body pipeline, then each part on its own crop (AlphaPose's
regional idea, with MediaPipe's part models): feet from BlazePose on the person crop, hands from the forearm,
the face from the head keypoints. Output in COCO-WholeBody 133 (or Halpe 136 through the spec mapping).

Crop geometry (measured on the COCO-WholeBody fixture, README): a hand crop is centred `HAND_OFFSET` forearm
lengths beyond the wrist along the forearm, `HAND_SIDE` forearm lengths wide, the forearm pointing up; a face
crop is centred `FACE_OFFSET` head sizes below the eyes, one head size wide, upright along the eye line.
With `part_detectors_on`, the palm detector and BlazeFace propose second crops (see HAND_REGION's comment).
"""

from __future__ import annotations

import numpy as np

from posekit.data.specs import COCO17_NAMES, convert_keypoints, get_spec
from posekit.data.transforms import crop_boxes, expand_box
from posekit.errors import PosekitError
from posekit.models import part_detectors
from posekit.models import part_models as parts
from posekit.pipeline.stages import FrameState, Step, TopDownPipeline
from posekit.structures import Poses

HAND_OFFSET, HAND_SIDE = 0.35, 1.1
FACE_EYE_SCALE, FACE_EAR_SCALE, FACE_OFFSET = 2.5, 1.4, 0.15
# Part detectors (optional): each runs on a region REGION x the geometric crop around it; where it finds the part
# (score >= DETECT_MIN_SCORE) the landmark model also runs on the crop it places, and the more confident of the
# two results is kept. From a palm: MediaPipe's palm-to-hand rectangle
# (2.6 palm boxes wide, shifted half a palm box towards the fingers, wrist -> middle-finger MCP pointing up);
# a palm counts only when its wrist point lies within PALM_WRIST_DISTANCE hand crops of the body's wrist. From a
# face: MediaPipe's face-to-mesh rectangle (1.5 face boxes wide, upright along the eye line); a face counts only
# when its centre lies within FACE_CENTRE_DISTANCE face crops of the geometric crop's centre.
HAND_REGION, PALM_SCALE, PALM_SHIFT, PALM_WRIST_DISTANCE = 2.0, 2.6, 0.5, 0.4
FACE_REGION, FACE_DETECT_SCALE, FACE_CENTRE_DISTANCE = 2.0, 1.5, 0.5
DETECT_MIN_SCORE = 0.5
MIN_CROP_SIDE = 8.0  # pixels: a part crop smaller than this is skipped (upsampled 24-28x it is noise)
J = {name: i for i, name in enumerate(COCO17_NAMES)}

# MediaPipe parts.FaceMesh vertex for each of the 68 iBUG / COCO-WholeBody face points, chosen by anatomy (jaw
# symmetric about the chin 152; brows, nose, eye corners and lids, outer and inner lips), in iBUG order:
# the subject's right side (image left when facing the camera) first.
FACE68_FROM_MESH = (
    127, 234, 93, 132, 58, 172, 136, 150, 152, 379, 365, 397, 288, 361, 323, 454, 356,  # jaw 0-16
    70, 63, 105, 66, 107, 336, 296, 334, 293, 300,  # brows 17-26
    168, 197, 5, 4, 98, 97, 2, 326, 327,  # nose bridge 27-30, nostrils 31-35
    33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,  # eyes 36-47
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,  # outer lips 48-59
    78, 82, 13, 312, 308, 317, 14, 87,  # inner lips 60-67
)  # fmt: skip
# BlazePose has heels and one toe tip per foot ("foot index", between the big and second toes); COCO-WholeBody's
# big and small toes both take that tip. Shifting the small toe sideways by 0.25 heel-to-toe lengths, away from
# the other foot, scored lower on the COCO-WholeBody fixture (foot AP 0.585 vs 0.598), so it is not done.
# The BlazePose landmark of each COCO-WholeBody foot point: left big toe, left small toe, left heel, right big toe,
# right small toe, right heel.
FEET_FROM_BLAZEPOSE = [parts.BLAZE_LEFT_FOOT_INDEX] * 2 + [parts.BLAZE_LEFT_HEEL] + [parts.BLAZE_RIGHT_FOOT_INDEX] * 2 + [parts.BLAZE_RIGHT_HEEL]


def hand_crops(body: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centres [N,2,2], sides [N,2] and up directions [N,2,2] of the left and right hand crops of bodies [N,17,2]."""
    centres, sides, ups = [], [], []
    for elbow, wrist in ((J["left_elbow"], J["left_wrist"]), (J["right_elbow"], J["right_wrist"])):
        forearm = body[:, wrist] - body[:, elbow]
        length = np.linalg.norm(forearm, axis=1)
        centres.append(body[:, wrist] + HAND_OFFSET * forearm)
        sides.append(HAND_SIDE * length)
        ups.append(forearm)
    return np.stack(centres, 1), np.stack(sides, 1), np.stack(ups, 1)


def face_crops(body: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centre [N,2], side [N] and up direction [N,2] of the face crop of bodies [N,17,2]: upright along the eye
    line for a frontal face, along the neck when the eyes are too close for a reliable line (a profile)."""
    le, re, lear, rear, nose = (body[:, J[n]] for n in ("left_eye", "right_eye", "left_ear", "right_ear", "nose"))
    eyes = (le + re) / 2
    neck_up = eyes - (body[:, J["left_shoulder"]] + body[:, J["right_shoulder"]]) / 2
    eye_line = le - re
    eye_up = np.stack([eye_line[:, 1], -eye_line[:, 0]], axis=1)
    frontal = np.linalg.norm(eye_line, axis=1) > 0.25 * np.linalg.norm(neck_up, axis=1)
    up = np.where(frontal[:, None], eye_up, neck_up)
    up = up / np.maximum(np.linalg.norm(up, axis=1, keepdims=True), 1e-6)
    side = np.maximum.reduce([np.linalg.norm(eye_line, axis=1) * FACE_EYE_SCALE, np.linalg.norm(lear - rear, axis=1) * FACE_EAR_SCALE,
                              np.linalg.norm(nose - eyes, axis=1) * FACE_EYE_SCALE * 1.5])  # fmt: skip
    return eyes - FACE_OFFSET * side[:, None] * up, side, up


def palm_to_hand_crop(det: part_detectors.Detections) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hand crops (centres [N,2], sides [N], ups [N,2]) from palm detections (see HAND_REGION's comment)."""
    up = det.points[:, 2] - det.points[:, 0]  # wrist -> middle-finger MCP
    up = up / np.maximum(np.linalg.norm(up, axis=1, keepdims=True), 1e-6)
    return det.centre + PALM_SHIFT * det.side[:, None] * up, PALM_SCALE * det.side, up


def face_detection_to_crop(det: part_detectors.Detections) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Face crops (centres [N,2], sides [N], ups [N,2]) from BlazeFace detections: upright along the eyes."""
    eye_line = det.points[:, 1] - det.points[:, 0]  # the subject's right eye -> left eye
    up = np.stack([eye_line[:, 1], -eye_line[:, 0]], axis=1)
    up = up / np.maximum(np.linalg.norm(up, axis=1, keepdims=True), 1e-6)
    return det.centre, FACE_DETECT_SCALE * det.side, up


Crops = tuple[np.ndarray, np.ndarray, np.ndarray]  # centres [N,2], sides [N], up directions [N,2]


def _upright(n: int) -> np.ndarray:
    return np.tile(np.array([[0.0, -1.0]]), (n, 1))


class WholeBodyPipeline(TopDownPipeline):
    """Persons and COCO-17 bodies as `TopDownPipeline`, then feet, hands and face per person; each part's score
    is kept (a hand or face the part model does not see gets a low score, never invented confidence)."""

    def __init__(self, pose, detector, options=None, spec: str = "coco_wholebody133", backend: str = "torch",  # noqa: ANN001
                 part_detectors_on: bool = False) -> None:  # fmt: skip
        super().__init__(pose, detector, options)
        if spec not in ("coco_wholebody133", "halpe136"):
            raise PosekitError(f"spec {spec!r}: the whole-body pipeline writes coco_wholebody133 or halpe136")
        self.spec = spec
        self.feet, self.hands, self.face = parts.BlazePoseFeet(backend), parts.HandLandmarks(backend), parts.FaceMesh(backend)
        # on: the palm detector and BlazeFace also place hand and face crops (the part model runs on both crops
        # and keeps the more confident). Off by default: it did not raise per-part AP on the fixtures (README)
        self.palm = part_detectors.PalmDetector(backend) if part_detectors_on else None
        self.face_detector = part_detectors.FaceDetector(backend) if part_detectors_on else None

    def __call__(self, image: np.ndarray, boxes: np.ndarray | None = None, box_scores: np.ndarray | None = None) -> Poses:
        return self.add_parts(image, super().__call__(image, boxes, box_scores))

    def steps(self, with_embeddings: bool = False) -> list[Step]:
        def parts(s: FrameState) -> None:
            s.poses = self.add_parts(s.image, s.poses)

        return [*super().steps(with_embeddings), ("parts", parts)]

    def add_parts(self, image: np.ndarray, body: Poses) -> Poses:
        """COCO-17 poses -> whole-body poses of `self.spec`; `meta['skipped']` names the part crops too small to run."""
        n = len(body)
        wb = get_spec("coco_wholebody133")
        xy = np.zeros((n, wb.num_keypoints, 2), np.float32)
        sc = np.zeros((n, wb.num_keypoints), np.float32)
        xy[:, :17], sc[:, :17] = body.keypoints, body.keypoint_scores
        skipped: list[str] = []
        if n:
            self._feet(image, body, xy, sc)
            self._hands(image, body, xy, sc, skipped)
            self._faces(image, body, xy, sc, skipped)
        bad = ~(np.isfinite(xy).all(-1) & np.isfinite(sc))  # a part model's non-finite output is refused, not passed on
        xy[bad], sc[bad] = 0.0, 0.0
        if self.spec != "coco_wholebody133":
            xy, sc = convert_keypoints(xy, sc, "coco_wholebody133", self.spec)
        meta = {k: v for k, v in body.meta.items()}
        if skipped:
            meta["skipped"] = skipped
        return Poses(xy, sc, body.boxes, body.scores, self.spec, track_ids=body.track_ids, meta=meta)

    def _feet(self, image: np.ndarray, body: Poses, xy: np.ndarray, sc: np.ndarray) -> None:
        crops, mats = crop_boxes(image, expand_box(body.boxes, 1.0, 1.25), self.feet.size, self.feet.size)
        lm, lm_sc = self.feet(crops, mats)
        xy[:, 17:23], sc[:, 17:23] = lm[:, FEET_FROM_BLAZEPOSE], lm_sc[:, FEET_FROM_BLAZEPOSE]

    def _hands(self, image: np.ndarray, body: Poses, xy: np.ndarray, sc: np.ndarray, skipped: list[str]) -> None:
        centres, sides, ups = hand_crops(body.keypoints)
        wrist_index = [J["left_wrist"], J["right_wrist"]]
        wrists, wrist_scores = body.keypoints[:, wrist_index], body.keypoint_scores[:, wrist_index]  # [N,2,2], [N,2]
        starts = (91, 112)  # left hand, right hand in COCO-WholeBody
        run = [
            (p, h) for p in range(len(body)) for h in range(2) if self._big_enough(sides[p, h], p, ("left hand", "right hand")[h], skipped)
        ]
        for h in range(2):  # every hand starts at its wrist with score 0: skipped or unseen
            xy[:, starts[h] : starts[h] + 21] = wrists[:, h, None]
        if not run:
            return
        c, s, u = (np.array([a[p, h] for p, h in run]) for a in (centres, sides, ups))
        placed = None
        if self.palm is not None:
            regions, region_mats = parts.rotated_crops(image, c, s * HAND_REGION, _upright(len(run)), self.palm.size)
            det = self.palm(regions, region_mats, np.array([wrists[p, h] for p, h in run]), PALM_WRIST_DISTANCE * s)
            placed = (det.score, palm_to_hand_crop(det))
        points, presence = self._run_part(self.hands, image, (c, s, u), placed)
        for (p, h), pts, pr in zip(run, points, presence):
            xy[p, starts[h] : starts[h] + 21] = pts
            sc[p, starts[h] : starts[h] + 21] = pr * wrist_scores[p, h]

    def _faces(self, image: np.ndarray, body: Poses, xy: np.ndarray, sc: np.ndarray, skipped: list[str]) -> None:
        centres, sides, ups = face_crops(body.keypoints)
        head_scores = body.keypoint_scores[:, [J["nose"], J["left_eye"], J["right_eye"]]].mean(1)
        xy[:, 23:91] = body.keypoints[:, J["nose"]][:, None]
        run = [p for p in range(len(body)) if self._big_enough(sides[p], p, "face", skipped)]
        if not run:
            return
        c, s, u = centres[run], sides[run], ups[run]
        placed = None
        if self.face_detector is not None:
            regions, region_mats = parts.rotated_crops(image, c, s * FACE_REGION, u, self.face_detector.size)
            det = self.face_detector(regions, region_mats)
            det.score[np.linalg.norm(det.centre - c, axis=1) > FACE_CENTRE_DISTANCE * s] = 0.0  # another person's face
            placed = (det.score, face_detection_to_crop(det))
        mesh, flags = self._run_part(self.face, image, (c, s, u), placed)
        xy[run, 23:91] = mesh[:, list(FACE68_FROM_MESH)]
        sc[run, 23:91] = (flags * head_scores[run])[:, None]

    @staticmethod
    def _run_part(model: parts.HandLandmarks | parts.FaceMesh, image: np.ndarray, geometric: Crops,
                  placed: tuple[np.ndarray, Crops] | None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        """The part model's points and scores on the geometric crops; where a detector `placed` a crop (score,
        crops) it runs there too, in the same batch, and the more confident of the two is kept."""
        n = len(geometric[0])
        use = np.zeros(n, bool)
        if placed is not None:
            score, (pc, ps, pu) = placed
            use = (score >= DETECT_MIN_SCORE) & np.isfinite(ps) & (ps >= MIN_CROP_SIDE) & np.isfinite(pc).all(1) & np.isfinite(pu).all(1)
            geometric = tuple(np.concatenate([g, p[use]]) for g, p in zip(geometric, (pc, ps, pu)))
        crops, mats = parts.rotated_crops(image, *geometric, model.size)
        points, scores = model(crops, mats)
        second = np.flatnonzero(use)
        better = scores[n:] > scores[second]
        points[second[better]], scores[second[better]] = points[n:][better], scores[n:][better]
        return points[:n], scores[:n]

    @staticmethod
    def _big_enough(side: float, person: int, part: str, skipped: list[str]) -> bool:
        if np.isfinite(side) and side >= MIN_CROP_SIDE:
            return True
        skipped.append(f"person {person} {part}: crop {side:.1f} px < {MIN_CROP_SIDE:g} px")
        return False
