"""Keypoint specs and the dataset readers: fixtures of every format load, round-trip, and bad files say where."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from posekit.data.datasets import (
    DatasetError,
    Instance,
    Sample,
    match_detected_boxes,
    read_coco,
    read_detections,
    read_lsp,
    read_mpii,
    read_posetrack,
    to_coco_dict,
    with_detected_boxes,
)
from posekit.data.specs import SPECS, convert_keypoints, get_spec, keypoint_mapping
from posekit.postprocess.nms import box_iou


@pytest.mark.parametrize("name", sorted(SPECS))
def test_spec_is_consistent(name: str) -> None:
    s = get_spec(name)
    k = s.num_keypoints
    assert len(s.sigmas) == k and len(set(s.keypoints)) == k
    assert all(0 <= a < k and 0 <= b < k for a, b in s.skeleton)
    for a, b in s.flip_pairs:  # a flip pair is a left/right (or mirrored face) pair
        na, nb = s.keypoints[a], s.keypoints[b]
        assert nb in (na.replace("left", "right"), na.replace("right", "left")) or na.startswith("face-")
    assert len(s.colors) == len(s.skeleton)


def test_spec_sizes_and_known_values() -> None:
    sizes = {n: s.num_keypoints for n, s in SPECS.items()}
    assert sizes == {"coco17": 17, "crowdpose14": 14, "mpii16": 16, "lsp14": 14, "posetrack17": 17, "halpe26": 26,
                     "halpe136": 136, "coco_wholebody133": 133, "blazepose33": 33}  # fmt: skip
    coco = get_spec("coco17")
    assert coco.flip_pairs == ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))
    wb = get_spec("coco_wholebody133")
    assert wb.sigmas[17:23] == (0.068, 0.066, 0.066, 0.092, 0.094, 0.094)  # feet
    assert wb.sigmas[91:112] == wb.sigmas[112:133]  # both hands share sigmas
    assert get_spec("posetrack17").keypoints[1:3] == ("head_bottom", "head_top")


def test_mappings_between_specs() -> None:
    # coco17 -> crowdpose14: 12 limb joints by name, neck = shoulder midpoint, no top_head
    mapping = dict(keypoint_mapping("coco17", "crowdpose14"))
    assert mapping[0] == (5,) and mapping[13] == (5, 6) and 12 not in mapping
    assert keypoint_mapping("halpe26", "coco17") == [(i, (i,)) for i in range(17)]
    assert len(keypoint_mapping("blazepose33", "coco17")) == 17
    kp = np.arange(34, dtype=np.float32).reshape(1, 17, 2)
    xy, s = convert_keypoints(kp, np.full((1, 17), 0.9, np.float32), "coco17", "crowdpose14")
    np.testing.assert_allclose(xy[0, 13], (kp[0, 5] + kp[0, 6]) / 2)
    assert s[0, 12] == 0 and s[0, 0] == pytest.approx(0.9)


COCO_FIXTURES = [
    ("coco/test_coco.json", "coco17", 4, 14),
    ("coco/test_coco_wholebody.json", "coco_wholebody133", 4, 14),
    ("halpe/test_halpe.json", "halpe136", 4, 14),
    ("crowdpose/test_crowdpose.json", "crowdpose14", 2, 5),
    ("ochuman/test_ochuman.json", "coco17", 3, 5),
    ("posetrack18/annotations/test_posetrack18_val.json", "posetrack17", 3, 14),
]


@pytest.mark.data
@pytest.mark.parametrize(("rel", "spec", "images", "persons"), COCO_FIXTURES)
def test_coco_style_fixtures_load_and_round_trip(data_dir: Path, tmp_path: Path, rel: str, spec: str, images: int, persons: int) -> None:
    samples = read_coco(data_dir / "fixtures" / rel)
    assert samples[0].spec == spec and len(samples) == images
    assert sum(len(s.instances) for s in samples) == persons
    again_path = tmp_path / "again.json"
    again_path.write_text(json.dumps(to_coco_dict(samples)))
    again = read_coco(again_path, data_dir / "fixtures", spec)
    for a, b in zip(samples, again):
        assert a.image_id == b.image_id and len(a.instances) == len(b.instances)
        for ia, ib in zip(a.instances, b.instances):
            np.testing.assert_allclose(ia.keypoints, ib.keypoints)
            np.testing.assert_allclose(ia.box, ib.box, atol=1e-4)
            assert ia.track_id == ib.track_id and ia.iscrowd == ib.iscrowd


@pytest.mark.data
def test_wholebody_parts_are_concatenated_in_order(data_dir: Path) -> None:
    raw = json.loads((data_dir / "fixtures/coco/test_coco_wholebody.json").read_text())["annotations"][0]
    inst = read_coco(data_dir / "fixtures/coco/test_coco_wholebody.json")[0].instances[0]
    np.testing.assert_allclose(inst.keypoints[23:91].reshape(-1), raw["face_kpts"])
    np.testing.assert_allclose(inst.keypoints[112:].reshape(-1), raw["righthand_kpts"])


@pytest.mark.data
def test_posetrack_mpii_and_lsp_readers(data_dir: Path) -> None:
    fx = data_dir / "fixtures"
    frames = read_posetrack(fx / "posetrack18/annotations/val", fx / "posetrack18")
    assert len(frames) == 3 and all(s.image_path.exists() for s in frames)
    inst = frames[0].instances[0]
    assert inst.track_id is not None and inst.extras["head_box"].shape == (4,)
    mpii = read_mpii(fx / "mpii/test_mpii.json", fx / "mpii")
    assert sum(len(s.instances) for s in mpii) == 5 and all(s.image_path.exists() for s in mpii)
    rec = json.loads((fx / "mpii/test_mpii.json").read_text())[0]
    first = next(s for s in mpii if s.image_id == rec["image"]).instances[0]
    np.testing.assert_allclose(first.keypoints[:, :2], rec["joints"])
    lsp = read_lsp(data_dir / "lspet/joints.mat")
    assert len(lsp) == 10000 and lsp[0].image_path.name == "im00001.jpg" and lsp[0].image_path.exists()
    vis = np.stack([s.instances[0].keypoints[:, 2] for s in lsp])
    assert set(np.unique(vis)) == {0.0, 2.0} and (vis > 0).mean() > 0.85


def test_malformed_files_name_file_record_and_field(tmp_path: Path) -> None:
    good = {"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [
        {"id": 7, "image_id": 1, "bbox": [0, 0, 10, 10], "keypoints": [0] * 51},
        {"id": 8, "image_id": 1, "keypoints": [0] * 51},
    ]}  # fmt: skip
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(good))
    with pytest.raises(DatasetError, match=r"bad\.json: annotations\[1\] \(id 8\): missing field 'bbox'"):
        read_coco(p)
    good["annotations"][1]["bbox"] = [0, 0, 1, 1]
    good["annotations"][1]["keypoints"] = [0] * 50
    p.write_text(json.dumps(good))
    with pytest.raises(DatasetError, match=r"annotations\[1\].*'keypoints'"):
        read_coco(p, spec="coco17")
    p.write_text("{not json")
    with pytest.raises(DatasetError, match="not valid JSON"):
        read_coco(p)
    p.write_text(json.dumps([{"image": "x.jpg", "joints": [[0, 0]] * 16, "center": [1, 1], "scale": 1}]))
    with pytest.raises(DatasetError, match=r"record 0 \(x\.jpg\): missing field 'joints_vis'"):
        read_mpii(p)


def test_detection_results_become_boxes_best_first(tmp_path: Path) -> None:
    dets = [
        {"image_id": 1, "category_id": 1, "bbox": [10, 20, 30, 40], "score": 0.5},
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.9},
        {"image_id": 1, "category_id": 3, "bbox": [0, 0, 9, 9], "score": 0.99},  # a car: skipped
        {"image_id": 2, "category_id": 1, "bbox": [1, 1, 2, 2], "score": 0.1},
    ]
    p = tmp_path / "dets.json"
    p.write_text(json.dumps(dets))
    boxes = read_detections(p)
    np.testing.assert_array_equal(boxes[1][0], [[0, 0, 5, 5], [10, 20, 40, 60]])
    np.testing.assert_allclose(boxes[1][1], [0.9, 0.5])
    assert set(read_detections(p, min_score=0.2)) == {1}
    image = Sample(tmp_path / "a.jpg", 1, [], "coco17", 100, 80)
    (with_dets,) = with_detected_boxes([image, Sample(tmp_path / "b.jpg", 3, [], "coco17")], boxes)
    assert [i.extras["score"] for i in with_dets.instances] == pytest.approx([0.9, 0.5])
    assert with_dets.instances[1].keypoints.shape == (17, 3) and not with_dets.instances[1].keypoints.any()
    assert with_dets.instances[1].area == 30 * 40 and (with_dets.width, with_dets.height) == (100, 80)
    p.write_text(json.dumps([{"image_id": 1, "category_id": 1, "bbox": [0, 0, 5]}]))
    with pytest.raises(DatasetError, match=r"dets\.json: detection 0: field 'bbox' must be \[x, y, w, h\]"):
        read_detections(p)
    p.write_text(json.dumps({"annotations": []}))
    with pytest.raises(DatasetError, match="expected a list of detection results"):
        read_detections(p)


def test_training_on_detected_boxes_takes_the_overlapping_persons_keypoints(tmp_path: Path) -> None:
    kps = [np.full((17, 3), v, np.float32) for v in (1.0, 2.0)]
    people = [Instance(np.array([0, 0, 10, 10], np.float32), kps[0], 100.0, id=1),
              Instance(np.array([20, 0, 30, 10], np.float32), kps[1], 100.0, id=2),
              Instance(np.array([40, 0, 50, 10], np.float32), kps[1], 100.0, iscrowd=True, id=3)]  # fmt: skip
    dets = {5: (np.array([[1, 1, 11, 11], [21, 0, 30, 10], [40, 0, 50, 10], [0, 0, 30, 10]], np.float32), np.array([0.9, 0.8, 0.7, 0.6]))}
    (sample,) = match_detected_boxes(
        [Sample(tmp_path / "a.jpg", 5, people, "coco17"), Sample(tmp_path / "b.jpg", 6, people, "coco17")], dets
    )
    # box 0 -> person 1 (IoU 0.68), box 1 -> person 2 (0.9); the crowd region and the box spanning both (IoU 1/3) are dropped
    assert [i.id for i in sample.instances] == [1, 2]
    np.testing.assert_array_equal(sample.instances[0].box, [1, 1, 11, 11])
    assert sample.instances[1].keypoints is kps[1] and sample.instances[1].extras["score"] == pytest.approx(0.8)


@pytest.mark.data
def test_real_detection_file_matches_its_images(data_dir: Path) -> None:
    """The AP_H_56 person boxes of the COCO fixture (the detector top-down papers evaluate with)."""
    boxes = read_detections(data_dir / "fixtures/coco/test_coco_det_AP_H_56.json")
    gt = read_coco(data_dir / "fixtures/coco/test_coco.json")
    assert set(boxes) == {s.image_id for s in gt} and sum(len(b) for b, _ in boxes.values()) == 118
    for s in gt:  # every annotated person is found by some box with IoU > 0.5
        b, _ = boxes[s.image_id]
        for inst in s.instances:
            if inst.iscrowd:
                continue
            assert box_iou(b, inst.box[None]).max() > 0.5, (s.image_id, inst.id)
