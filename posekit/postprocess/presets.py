"""Named post-processing presets of the top-down pipelines, chosen on labelled data by `posekit tune-nms`
(README "Post-processing: scoring, flip test, pose NMS" has the table and the held-out check).

thunder-coco-extra: topdown-thunder tuned on coco-extra (90 images, 234 persons) with both GT boxes and
CenterNet boxes (mean AP), reproduced by

    posekit tune-nms --gt $DATA/coco-extra/annotations/person_keypoints_train2017.json \\
        --images $DATA/coco-extra/train2017 --boxes both --backend torch \\
        --val-gt $DATA/coco-mini/annotations/person_keypoints_train2017.json --val-images $DATA/coco-mini/train2017
"""

from __future__ import annotations

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

# the preset each named pipeline starts from (options given by the caller override it)
PIPELINE_PRESETS = {"topdown-thunder": "thunder-coco-extra", "topdown-wholebody": "thunder-coco-extra"}  # the body is topdown-thunder
