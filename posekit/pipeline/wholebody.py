"""Whole-body pose with no training: the top-down body pipeline, then each part on its own crop (AlphaPose's
regional idea, with MediaPipe's part models): feet from BlazePose on the person crop, hands from the forearm,
the face from the head keypoints. Output in COCO-WholeBody 133 (or Halpe 136 through the spec mapping).

Crop geometry (measured on the COCO-WholeBody fixture, README): a hand crop is centred `HAND_OFFSET` forearm
lengths beyond the wrist along the forearm, `HAND_SIDE` forearm lengths wide, the forearm pointing up; a face
crop is centred `FACE_OFFSET` head sizes below the eyes, one head size wide, upright along the eye line.
"""

from __future__ import annotations

import numpy as np

from posekit.data.specs import COCO17_NAMES, convert_keypoints, get_spec
from posekit.data.transforms import crop_boxes, expand_box
from posekit.errors import PosekitError
from posekit.models import part_models as parts
from posekit.pipeline.stages import FrameState, Step, TopDownPipeline
from posekit.structures import Poses

HAND_OFFSET, HAND_SIDE = 0.35, 1.1
FACE_EYE_SCALE, FACE_EAR_SCALE, FACE_OFFSET = 2.5, 1.4, 0.15
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


class WholeBodyPipeline(TopDownPipeline):
    """Persons and COCO-17 bodies as `TopDownPipeline`, then feet, hands and face per person; each part's score
    is kept (a hand or face the part model does not see gets a low score, never invented confidence)."""

    def __init__(self, pose, detector, options=None, spec: str = "coco_wholebody133", backend: str = "torch") -> None:  # noqa: ANN001
        super().__init__(pose, detector, options)
        if spec not in ("coco_wholebody133", "halpe136"):
            raise PosekitError(f"spec {spec!r}: the whole-body pipeline writes coco_wholebody133 or halpe136")
        self.spec = spec
        self.feet, self.hands, self.face = parts.BlazePoseFeet(backend), parts.HandLandmarks(backend), parts.FaceMesh(backend)

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
        lt, rt, lh, rh = (
            lm[:, i] for i in (parts.BLAZE_LEFT_FOOT_INDEX, parts.BLAZE_RIGHT_FOOT_INDEX, parts.BLAZE_LEFT_HEEL, parts.BLAZE_RIGHT_HEEL)
        )
        # COCO-WholeBody feet: left big toe, left small toe, left heel, right big toe, right small toe, right heel
        xy[:, 17:23] = np.stack([lt, lt, lh, rt, rt, rh], axis=1)
        idx = [parts.BLAZE_LEFT_FOOT_INDEX] * 2 + [parts.BLAZE_LEFT_HEEL] + [parts.BLAZE_RIGHT_FOOT_INDEX] * 2 + [parts.BLAZE_RIGHT_HEEL]
        sc[:, 17:23] = lm_sc[:, idx]

    def _hands(self, image: np.ndarray, body: Poses, xy: np.ndarray, sc: np.ndarray, skipped: list[str]) -> None:
        centres, sides, ups = hand_crops(body.keypoints)
        wrist_scores = body.keypoint_scores[:, [J["left_wrist"], J["right_wrist"]]]
        starts = (91, 112)  # left hand, right hand in COCO-WholeBody
        run = [
            (p, h) for p in range(len(body)) for h in range(2) if self._big_enough(sides[p, h], p, ("left hand", "right hand")[h], skipped)
        ]
        for p in range(len(body)):  # every hand starts at its wrist with score 0: skipped or unseen
            for h in range(2):
                xy[p, starts[h] : starts[h] + 21] = body.keypoints[p, J[("left_wrist", "right_wrist")[h]]]
        if not run:
            return
        crops, mats = parts.rotated_crops(image, np.array([centres[p, h] for p, h in run]), np.array([sides[p, h] for p, h in run]),
                                    np.array([ups[p, h] for p, h in run]), self.hands.size)  # fmt: skip
        points, presence = self.hands(crops, mats)
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
        crops, mats = parts.rotated_crops(image, centres[run], sides[run], ups[run], self.face.size)
        mesh, flags = self.face(crops, mats)
        xy[run, 23:91] = mesh[:, list(FACE68_FROM_MESH)]
        sc[run, 23:91] = (flags * head_scores[run])[:, None]

    @staticmethod
    def _big_enough(side: float, person: int, part: str, skipped: list[str]) -> bool:
        if np.isfinite(side) and side >= MIN_CROP_SIDE:
            return True
        skipped.append(f"person {person} {part}: crop {side:.1f} px < {MIN_CROP_SIDE:g} px")
        return False
