"""The palm detector and BlazeFace decoded from their raw SSD rows: anchor layout, the decoding convention, and
real detections where a real hand and a real face are."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from posekit.models import part_detectors as pd
from posekit.models.part_models import rotated_crops, rotated_square_matrix
from posekit.pipeline.readers import read_image


def test_ssd_anchors_follow_mediapipes_layout() -> None:
    palm = pd.ssd_anchors(256, (8, 16, 32), (2, 2, 6))
    face = pd.ssd_anchors(256, (16, 32), (2, 6))
    assert palm.shape == (2944, 2) and face.shape == (896, 2)  # the graphs' row counts
    np.testing.assert_allclose(palm[:3], [[1 / 64, 1 / 64], [1 / 64, 1 / 64], [3 / 64, 1 / 64]])  # 2 per cell, row-major
    np.testing.assert_allclose(palm[2048], [1 / 32, 1 / 32])  # stride 16 starts after 32*32*2 rows
    np.testing.assert_allclose(palm[-6:], [[15 / 16, 15 / 16]] * 6)  # the last stride-32 cell, 6 anchors


def test_decode_places_the_best_row_at_its_anchor_plus_offset() -> None:
    anchors = pd.ssd_anchors(256, (16, 32), (2, 6))
    rows = np.zeros((1, len(anchors), 16), np.float32)
    logits = np.full((1, len(anchors)), -5.0, np.float32)
    best = 700  # a stride-32 anchor
    rows[0, best, :4] = [3.0, -2.0, 40.0, 30.0]
    rows[0, best, 4:6] = [-10.0, 5.0]
    logits[0, best] = 2.0
    identity = rotated_square_matrix(np.array([127.5, 127.5]), 256.0, np.array([0.0, -1.0]), 256)[None]
    det = pd._decode(rows, logits, anchors, identity, 256, 6, None)
    centre = anchors[best] * 256 + [3.0, -2.0]
    np.testing.assert_allclose(det.centre[0], centre - 0.5, atol=1e-4)  # graph pixel units -> pixel centres
    np.testing.assert_allclose(det.points[0, 0], anchors[best] * 256 + [-10.0, 5.0] - 0.5, atol=1e-4)
    assert det.side[0] == pytest.approx(40.0) and det.score[0] == pytest.approx(1 / (1 + np.exp(-2.0)))
    det = pd._decode(rows, logits, anchors, identity, 256, 6, np.arange(len(anchors))[None] != best)  # refused -> the next best
    assert det.score[0] == pytest.approx(1 / (1 + np.exp(5.0)))


@pytest.mark.weights
@pytest.mark.data
def test_palm_detector_finds_a_real_palm_at_the_wrist(weights, coco_mini: Path) -> None:  # noqa: ANN001
    from posekit.models.part_models import HandLandmarks
    from posekit.pipeline.wholebody import HAND_REGION, hand_crops, palm_to_hand_crop

    annotations = json.loads((coco_mini / "annotations" / "person_keypoints_train2017.json").read_text())
    image_id = next(i["id"] for i in annotations["images"] if i["file_name"] == "000000535506.jpg")
    person = max((a for a in annotations["annotations"] if a["image_id"] == image_id), key=lambda a: a["area"])
    body = np.array(person["keypoints"], np.float32).reshape(17, 3)[None, :, :2]
    forearm = float(np.linalg.norm(body[0, 10] - body[0, 8]))
    assert forearm > 60  # a large, clearly visible right hand
    centres, sides, _ = hand_crops(body)
    regions, mats = rotated_crops(read_image(coco_mini / "train2017" / "000000535506.jpg"), centres[:, 1], sides[:, 1] * HAND_REGION,
                                  np.array([[0.0, -1.0]]), 256)  # fmt: skip
    palm = pd.PalmDetector()(regions, mats, body[:, 10], np.array([0.5 * forearm]))
    assert palm.score[0] > 0.9
    assert np.linalg.norm(palm.points[0, 0] - body[0, 10]) < 0.2 * forearm  # the palm's wrist point at the body's wrist
    assert 0.1 * forearm < palm.side[0] < forearm
    # the hand crop made from the palm holds a hand the landmark model is sure of, rooted at that wrist
    hands = HandLandmarks()
    crops, crop_mats = rotated_crops(read_image(coco_mini / "train2017" / "000000535506.jpg"), *palm_to_hand_crop(palm), hands.size)
    points, presence = hands(crops, crop_mats)
    assert presence[0] > 0.9 and np.linalg.norm(points[0, 0] - body[0, 10]) < 0.2 * forearm


@pytest.mark.weights
@pytest.mark.data
def test_blazeface_finds_the_labelled_face(weights, data_dir: Path) -> None:  # noqa: ANN001
    from posekit.pipeline.wholebody import FACE_REGION, face_crops

    root = data_dir / "fixtures" / "coco"
    gt = json.loads((root / "test_coco_wholebody.json").read_text())
    ann = next(a for a in gt["annotations"] if a["image_id"] == 785)
    x, y, w, h = ann["face_box"]
    body = np.array(ann["keypoints"], np.float32).reshape(17, 3)[None, :, :2]
    centre, side, up = face_crops(body)
    regions, mats = rotated_crops(read_image(root / "000000000785.jpg"), centre, side * FACE_REGION, up, 256)
    face = pd.FaceDetector()(regions, mats)
    assert face.score[0] > 0.8
    assert np.linalg.norm(face.centre[0] - [x + w / 2, y + h / 2]) < 0.15 * max(w, h)
    assert 0.7 < face.side[0] / max(w, h) < 1.4
    right_eye, left_eye = face.points[0, 0], face.points[0, 1]  # the subject's; a frontal face shows its right eye on the left
    assert right_eye[0] < left_eye[0] and x <= right_eye[0] and left_eye[0] <= x + w
