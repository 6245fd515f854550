"""Geometry round trips, NMS known answers, Poses conversions and the COCO AP = 1 round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from posekit.data.specs import COCO17
from posekit.data.transforms import apply_inverse, crop_boxes, expand_box, letterbox
from posekit.evaluation.coco import evaluate_coco_keypoints
from posekit.postprocess.nms import box_nms, oks_nms
from posekit.structures import OPENPOSE18_FROM_COCO17, Poses


def test_expand_box_reaches_aspect_and_margin() -> None:
    out = expand_box(np.array([[10, 20, 30, 100]]), aspect=1.0, margin=1.25)[0]
    assert out[2] - out[0] == pytest.approx(100.0)  # height 80 * 1.25, width grown to match
    assert out[3] - out[1] == pytest.approx(100.0)
    assert (out[0] + out[2]) / 2 == pytest.approx(20.0) and (out[1] + out[3]) / 2 == pytest.approx(60.0)


def test_crop_then_inverse_returns_image_points() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (120, 200, 3), dtype=np.uint8)
    box = np.array([[40.0, 10.0, 140.0, 110.0]])
    crops, mats = crop_boxes(image, box, 50, 50)
    # a pixel centre of the crop maps back to the image point the crop sampled
    pts = np.array([[[10.0, 20.0], [49.0, 0.0]]])
    back = apply_inverse(mats, pts)[0]
    np.testing.assert_allclose(back[0], [40 + (10 + 0.5) * 2 - 0.5, 10 + (20 + 0.5) * 2 - 0.5], atol=1e-4)
    # scale 0.5: crop pixel (10, 20) is the average of image pixels around (60.5, 50.5)
    expected = image[50:52, 60:62, :].astype(float).mean((0, 1))
    np.testing.assert_allclose(crops[0, 20, 10], expected, atol=1.0)


def test_letterbox_pads_to_multiple_and_scales_longest_side() -> None:
    img = np.full((300, 500, 3), 255, np.uint8)
    out, lb = letterbox(img, 256)
    assert out.shape == (160, 256, 3)  # 500 -> 256, 300 -> 154 padded to 160
    assert lb.scale_xy[0] == pytest.approx(256 / 500)
    assert out[154:].max() == 0 and out[:153].min() == 255


def test_box_nms_and_oks_nms_known_answers() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]], np.float32)
    assert box_nms(boxes, np.array([0.9, 0.8, 0.7]), 0.5).tolist() == [0, 2]
    kp = np.zeros((3, 17, 2), np.float32)
    kp[1] += 0.5  # near-duplicate of pose 0
    kp[2] += 50.0
    keep = oks_nms(kp, np.array([0.5, 0.9, 0.7]), np.array([[0, 0, 40, 40]] * 3, np.float32), np.array(COCO17.sigmas), 0.9)
    assert keep.tolist() == [1, 2]


def test_poses_empty_has_right_shapes() -> None:
    p = Poses.empty()
    assert p.keypoints.shape == (0, 17, 2) and p.keypoint_scores.shape == (0, 17)
    assert p.boxes.shape == (0, 4) and p.scores.shape == (0,) and len(p) == 0
    assert p.to_coco_results(1) == [] and p.to_openpose()["people"] == []


def test_openpose_layout_has_neck_between_shoulders() -> None:
    kp = np.arange(34, dtype=np.float32).reshape(1, 17, 2)
    p = Poses(kp, np.full((1, 17), 0.5), np.array([[0, 0, 1, 1]]), np.array([0.9]))
    flat = np.array(p.to_openpose()["people"][0]["pose_keypoints_2d"]).reshape(18, 3)
    np.testing.assert_allclose(flat[1, :2], (kp[0, 5] + kp[0, 6]) / 2)
    np.testing.assert_allclose(flat[2, :2], kp[0, 6])  # OpenPose index 2 = right shoulder
    assert len(OPENPOSE18_FROM_COCO17) == 18


def test_openpose_from_another_spec_converts_by_joint_name() -> None:
    from posekit.data.specs import get_spec

    names = get_spec("lsp14").keypoints
    kp = np.arange(28, dtype=np.float32).reshape(1, 14, 2)
    p = Poses(kp, np.full((1, 14), 0.7), np.array([[0, 0, 1, 1]]), np.array([0.9]), "lsp14")
    flat = np.array(p.to_openpose()["people"][0]["pose_keypoints_2d"]).reshape(18, 3)
    np.testing.assert_allclose(flat[2, :2], kp[0, names.index("right_shoulder")])
    np.testing.assert_allclose(flat[13, :2], kp[0, names.index("left_ankle")])
    assert flat[0, 2] == 0 and flat[14:, 2].max() == 0  # LSP has no nose, eyes or ears


@pytest.mark.data
def test_ground_truth_written_as_results_scores_ap_one(coco_mini: Path) -> None:
    gt = json.loads((coco_mini / "annotations" / "person_keypoints_train2017.json").read_text())
    results = []
    for img in gt["images"]:
        anns = [a for a in gt["annotations"] if a["image_id"] == img["id"] and not a["iscrowd"] and a["num_keypoints"] > 0]
        poses = Poses.from_coco(anns)
        results += poses.to_coco_results(img["id"])
    stats = evaluate_coco_keypoints(gt, results)
    assert stats["AP"] == pytest.approx(1.0) and stats["AR"] == pytest.approx(1.0)


def test_pose_estimator_rejects_unknown_names_and_options_before_any_download() -> None:
    from posekit.api import PoseEstimator
    from posekit.errors import UnknownModelError

    with pytest.raises(UnknownModelError, match="neither a model name .* nor a checkpoint path"):
        PoseEstimator("hrnet-w99")
    with pytest.raises(TypeError, match=r"unexpected options for movenet-multipose: \['det_threshold'\]"):
        PoseEstimator("movenet-multipose", det_threshold=0.3)  # a top-down option
    with pytest.raises(TypeError, match=r"\['longest_side'\]; known: .*det_threshold"):
        PoseEstimator("topdown-thunder", longest_side=320)
