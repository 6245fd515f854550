"""Whole-body pose from the MediaPipe part models on real images: parts where the body says they are, the
COCO-WholeBody and Halpe layouts, and the results format."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from posekit.evaluation.checks import check_results
from posekit.pipeline.readers import read_image
from posekit.structures import Poses

pytestmark = [pytest.mark.weights, pytest.mark.data]
CONF = 0.1  # the renders' default: a part drawn at all must be in place


@pytest.fixture(scope="module")
def wholebody(weights):  # noqa: ANN001, ANN201
    from posekit.zoo.loader import load_model

    return load_model("topdown-wholebody", backend="torch", mode="accurate")  # the protocol the README's whole-body AP uses


@pytest.fixture(scope="module", params=[False, True], ids=["geometry", "part-detectors"])
def fixture_runs(request, wholebody, data_dir: Path) -> list[tuple[dict, Poses]]:  # noqa: ANN001
    """(GT annotation, predicted whole-body pose) for every labelled person of the COCO-WholeBody fixture, from GT
    boxes; with the hand and face crops from the body alone, and also placed by the palm detector and BlazeFace."""
    from posekit.zoo.loader import load_model

    if request.param:
        wholebody = load_model("topdown-wholebody", backend="torch", part_detectors=True, mode="accurate")
    root = data_dir / "fixtures" / "coco"
    gt = json.loads((root / "test_coco_wholebody.json").read_text())
    out = []
    for img in gt["images"]:
        anns = [a for a in gt["annotations"] if a["image_id"] == img["id"] and a["num_keypoints"] > 0]
        boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)], np.float32)
        poses = wholebody(read_image(root / img["file_name"]), boxes)
        for i in range(len(poses)):  # pose NMS may drop and reorder persons: match each pose to its box
            a = anns[int(np.argmin(np.abs(boxes - poses.boxes[i]).sum(1)))]
            out.append((a, poses.select(np.array([i]))))
    assert len(out) >= 10
    return out


def test_every_drawn_hand_starts_at_its_wrist(fixture_runs) -> None:  # noqa: ANN001
    drawn = 0
    for ann, pose in fixture_runs:
        height = ann["bbox"][3]
        for root, wrist in ((91, 9), (112, 10)):
            if pose.keypoint_scores[0, root] < CONF:
                continue
            drawn += 1
            gap = float(np.linalg.norm(pose.keypoints[0, root] - pose.keypoints[0, wrist]))
            assert gap <= 0.1 * height, f"annotation {ann['id']}: hand root {gap:.1f} px from the wrist (person {height:.0f} px tall)"
    assert drawn >= 3  # the check must have hands to check


def test_every_drawn_face_lies_on_the_head(fixture_runs) -> None:  # noqa: ANN001
    drawn = 0
    for ann, pose in fixture_runs:
        if not ann["face_valid"] or pose.keypoint_scores[0, 23] < CONF:
            continue
        drawn += 1
        x, y, w, h = ann["face_box"]  # the annotated face grown to the head around it
        cx, cy, half = x + w / 2, y + h / 2, 0.75 * max(w, h)
        face = pose.keypoints[0, 23:91]
        inside = (np.abs(face[:, 0] - cx) <= half) & (np.abs(face[:, 1] - cy) <= half)
        assert inside.all(), f"annotation {ann['id']}: {int((~inside).sum())} of 68 face points off the head"
    assert drawn >= 3


def test_parts_get_low_scores_where_the_model_sees_nothing(wholebody) -> None:  # noqa: ANN001
    """A person box on a blank wall: the body model invents little, the part models must not add confidence."""
    image = np.full((480, 640, 3), 128, np.uint8)
    poses = wholebody(image, np.array([[200, 40, 440, 460]], np.float32))
    assert poses.keypoint_scores[0, 17:].max() < CONF


def test_tiny_persons_skip_their_part_crops_with_a_reason(wholebody) -> None:  # noqa: ANN001
    image = np.full((200, 200, 3), 90, np.uint8)
    poses = wholebody(image, np.array([[100, 100, 104, 112]], np.float32))
    assert poses.keypoints.shape == (1, 133, 2) and np.isfinite(poses.keypoints).all()
    assert any("hand" in s and "px" in s for s in poses.meta["skipped"])
    assert (poses.keypoint_scores[0, 91:] == 0).all()


def test_results_use_coco_wholebody_fields_and_read_back(fixture_runs) -> None:  # noqa: ANN001
    pose = fixture_runs[0][1]
    entry = pose.to_coco_results(1)[0]
    assert [len(entry[k]) for k in ("keypoints", "foot_kpts", "face_kpts", "lefthand_kpts", "righthand_kpts")] == [51, 18, 204, 63, 63]
    flat = check_results([entry], "(test)", 133, {1})[0]["keypoints"]
    xy = np.array(flat).reshape(133, 3)[:, :2]
    np.testing.assert_allclose(xy, pose.keypoints[0], atol=1e-3)


def test_halpe136_layout_takes_the_same_parts(weights, data_dir: Path) -> None:  # noqa: ANN001
    from posekit.zoo.loader import load_model

    halpe = load_model("topdown-wholebody", backend="torch", spec="halpe136")
    image = read_image(data_dir / "fixtures" / "coco" / "000000197388.jpg")
    box = np.array([[139.41, 102.25, 361.8, 343.82]], np.float32)
    poses = halpe(image, box)
    assert poses.spec == "halpe136" and poses.keypoints.shape == (1, 136, 2)
    # Halpe: 26 body+feet (neck = shoulder midpoint), then the same 68 face and 2x21 hand points
    np.testing.assert_allclose(poses.keypoints[0, 18], poses.keypoints[0, 5:7].mean(0), atol=1e-4)
    assert len(poses.to_coco_results(1)[0]["keypoints"]) == 136 * 3


def test_predict_refuses_a_layout_the_model_cannot_write(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    from posekit.cli import main

    assert main(["predict", str(tmp_path / "x.jpg"), "--model", "topdown-thunder", "--spec", "halpe136", "--out", str(tmp_path / "o")]) != 0
    assert "only topdown-wholebody" in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "x.jpg"), "--model", "topdown-thunder", "--part-detectors", "--out", str(tmp_path / "o")]) != 0
    assert "only topdown-wholebody" in capsys.readouterr().err


def test_track_writes_whole_body_results_with_track_ids(data_dir: Path, tmp_path: Path, weights) -> None:  # noqa: ANN001
    from posekit.cli import main

    out = tmp_path / "track"
    video = data_dir / "videos" / "demo.mp4"
    assert main(["track", str(video), "--model", "topdown-wholebody", "--part-detectors", "--max-frames", "4", "--out", str(out), "--quiet"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results and {r["image_id"] for r in results} == {1, 2, 3, 4}
    for r in results:  # COCO-WholeBody's fields, each person on a track
        assert [len(r[k]) for k in ("keypoints", "foot_kpts", "face_kpts", "lefthand_kpts", "righthand_kpts")] == [51, 18, 204, 63, 63]
        assert isinstance(r["track_id"], int)
    assert len({r["track_id"] for r in results}) < len(results)  # the same persons keep their ids over the frames
    pt = json.loads((out / "posetrack.json").read_text())  # PoseTrack's 17-point layout: the body part
    assert pt["annotations"] and all(len(a["keypoints"]) == 51 for a in pt["annotations"])
    assert len(list((out / "render").iterdir())) == 1


@pytest.mark.parametrize(("model", "gt"), [("topdown-wholebody", "coco/test_coco_wholebody.json"), ("topdown-wholebody", "halpe/test_halpe.json"),
                                           ("topdown-thunder", "coco/test_coco_wholebody.json")])  # fmt: skip
def test_eval_model_scores_whole_body_ground_truth(model: str, gt: str, data_dir: Path, tmp_path: Path, weights) -> None:  # noqa: ANN001
    """`eval --model` on COCO-WholeBody and Halpe GT: the whole-body model in the GT's layout, a body-only
    model converted to it (its parts score 0, its body as usual)."""
    from posekit.cli import main

    fixtures = data_dir / "fixtures"
    stats = tmp_path / "stats.json"
    assert main(["eval", "--model", model, "--gt", str(fixtures / gt), "--images", str(fixtures / "coco"), "--out-dir", str(tmp_path / "run"),
                 "--out", str(stats), "--quiet"]) == 0  # fmt: skip
    ap = {part: v["AP"] for part, v in json.loads(stats.read_text())["stats"].items()}
    assert {"body", "face", "lefthand", "righthand", "wholebody"} <= set(ap)
    if model == "topdown-wholebody":  # measured 0.796 / 0.863 (COCO-WholeBody), 0.654 / 0.543 (Halpe), CenterNet boxes
        assert ap["body"] > 0.6 and ap["face"] > 0.45
    else:
        assert ap["body"] > 0.7 and ap["foot"] == 0.0
