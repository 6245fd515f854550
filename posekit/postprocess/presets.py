"""Named post-processing presets of the top-down pipelines, chosen on labelled data by `posekit tune-nms`
(README "Post-processing: scoring, flip test, pose NMS" has the table and the held-out check).

thunder-coco-extra: topdown-thunder tuned on coco-extra (90 images, 234 persons) with both GT boxes and
CenterNet boxes (mean AP), reproduced by

    posekit tune-nms --gt $DATA/coco-extra/annotations/person_keypoints_train2017.json \\
        --images $DATA/coco-extra/train2017 --boxes both --backend torch \\
        --val-gt $DATA/coco-mini/annotations/person_keypoints_train2017.json --val-images $DATA/coco-mini/train2017
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from posekit.postprocess.pose_nms import PoseNMSParams

TOPDOWN_PRESETS: dict[str, dict[str, Any]] = {
    "thunder-coco-extra": {
        "det_threshold": 0.05,
        "scoring": "box_mean_above",
        "keypoint_threshold": 0.1,
        "pose_nms": "parametric",
        "pnms": PoseNMSParams(sigma1=0.25, sigma2=0.02, lam=0.0, eta=0.2),
        "flip_test": True,
    },
}


@dataclass(frozen=True)
class Mode:
    """What `--mode` / `PoseEstimator(mode=...)` sets; every option given beside it overrides it."""

    model: str  # the model it runs when none is named
    flip_test: bool  # top-down pipelines: also run the mirrored crops
    det_threshold: float  # top-down pipelines: the detector score a box needs to get a pose pass
    score_threshold: float  # persons scoring below are not returned (calibrated probability, top-down pipelines)
    whole_image_threshold: float  # the same for whole-image models and checkpoints (their own, uncalibrated scores)
    description: str


MODES: dict[str, Mode] = {
    "fast": Mode("topdown-lightning", False, 0.2, 0.5, 0.1,
                 "MoveNet Lightning crops, no flip test; persons with a calibrated score >= 0.5"),
    "balanced": Mode("topdown-thunder", False, 0.15, 0.5, 0.1,
                     "MoveNet Thunder crops, no flip test; persons with a calibrated score >= 0.5 (default: what a person would accept)"),
    "accurate": Mode("topdown-thunder", True, 0.05, 0.0, 0.0,
                     "the AP protocol: flip test, every person scored (eval --model and tune-nms use it)"),
}
DEFAULT_MODE = "balanced"

# Person-score calibration (postprocess/calibration.py: bias, box logit, keypoint mean, keypoints seen) per crop
# model and flip test, fitted on coco-extra's CenterNet persons with the tuned post-processing above by
# `python tools/fit_modes.py` (held-out reliability on coco-mini in README). The detector thresholds of
# balanced and fast come from the same run: on coco-extra, 0.15 loses no person at p >= 0.5 against 0.05
# with 2.4x fewer crops; fast takes 0.2 (2 persons of 234 fewer, 3.2x fewer crops).
CALIBRATIONS: dict[tuple[str, bool], tuple[float, ...]] = {
    ("movenet-thunder", True): (-1.61617, 1.3517, 4.25821, 2.43224),
    ("movenet-thunder", False): (-1.69622, 1.33375, 6.58108, 1.25164),
    ("movenet-lightning", False): (-0.69179, 1.51676, -2.86547, 5.50371),
    ("movenet-lightning", True): (-1.17609, 1.38332, 1.46357, 3.42465),
}


def mode_options(mode: str, pipeline: str, flip_test: bool | None = None) -> dict[str, Any]:
    """The top-down options of a named pipeline ("topdown-thunder", "topdown-lightning", "topdown-wholebody")
    in `mode`: the tuned post-processing, the mode's flip test (or `flip_test`, when the caller sets it: the
    calibration follows it) and detector threshold, the calibration of its crop model, and the mode's output
    threshold (0 where no calibration was fitted: raw scores are no probabilities)."""
    m = MODES[mode]
    flip = m.flip_test if flip_test is None else bool(flip_test)
    graph = "movenet-lightning" if pipeline == "topdown-lightning" else "movenet-thunder"
    calibration = CALIBRATIONS.get((graph, flip))
    return {**TOPDOWN_PRESETS["thunder-coco-extra"], "flip_test": flip, "det_threshold": m.det_threshold,
            "calibration": calibration, "score_threshold": m.score_threshold if calibration else 0.0}  # fmt: skip


# `posekit track` with a named top-down pipeline: every pose of a box scoring >= 0.1 goes to the tracker (poses
# under the start bar only continue tracks, ByteTrack's second pass), and a track starts from a pose whose
# calibrated score is >= 0.4. Measured 2026-12-07 with `tools/reid_tracklets.py --scores calibrated` (Thunder, no
# flip; docs/modes.md): det 0.1 + start 0.4 gave crossing MOTA 0.597 / IDF1 0.736 against 0.584 / 0.725 with the
# raw scores, no switch while visible, one after a gap (raw: none); the mode's det 0.15 lost MOTA (0.562), a
# start bar of 0.5 missed a labelled person, 0.3 switched ids on the real clips.
TRACK_DET_THRESHOLD = 0.1
TRACK_START_SCORE = 0.4


def track_options(mode: str, pipeline: str, flip_test: bool | None = None) -> tuple[dict[str, Any], float]:
    """(the pipeline options `track` runs a named top-down pipeline with in `mode`, the score a pose needs to
    start a track): the mode's calibrated scores, every scored pose kept for the tracker."""
    options = mode_options(mode, pipeline, flip_test)
    start = TRACK_START_SCORE if options["calibration"] else 0.1  # raw scores: the bar measured before calibration
    return options | {"det_threshold": min(options["det_threshold"], TRACK_DET_THRESHOLD), "score_threshold": 0.0}, start
