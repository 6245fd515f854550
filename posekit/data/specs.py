"""Keypoint specs, each defined once here and looked up by name."""

from __future__ import annotations

from posekit.structures import KeypointSpec

_COCO17_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip

COCO17 = KeypointSpec(
    name="coco17",
    keypoints=_COCO17_NAMES,
    flip_pairs=((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)),
    # the COCO skeleton (person_keypoints category), converted to 0-based
    skeleton=((15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8),
              (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6)),
    # official COCO OKS sigmas (cocoapi, COCOeval.Params.kpt_oks_sigmas)
    sigmas=(0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062,
            0.107, 0.107, 0.087, 0.087, 0.089, 0.089),
    colors=((0, 255, 0), (0, 255, 0), (255, 128, 0), (255, 128, 0), (51, 153, 255), (51, 153, 255), (51, 153, 255),
            (51, 153, 255), (0, 255, 0), (255, 128, 0), (0, 255, 0), (255, 128, 0), (51, 153, 255), (51, 153, 255),
            (51, 153, 255), (51, 153, 255), (51, 153, 255), (51, 153, 255), (51, 153, 255)),
)  # fmt: skip

SPECS: dict[str, KeypointSpec] = {s.name: s for s in [COCO17]}


def get_spec(name: str) -> KeypointSpec:
    if name not in SPECS:
        raise KeyError(f"unknown keypoint spec {name!r}; known: {', '.join(SPECS)}")
    return SPECS[name]
