"""Evaluation equals the reference tools, and matches hand-computed answers on synthetic cases."""

from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from posekit.cli import main
from posekit.data.specs import get_spec
from posekit.evaluation.coco import evaluate_crowdpose
from posekit.evaluation.pck import lsp_pck, mpii_pckh
from posekit.evaluation.posetrack import FramePoses, posetrack_ap, posetrack_mota
from posekit.evaluation.run import evaluate_files


def reference_cocoeval(gt: dict, results: list) -> np.ndarray:
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = copy.deepcopy(gt)
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(copy.deepcopy(results)), "keypoints")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


def gt_as_results(gt: dict) -> list[dict]:
    """GT persons as predictions; unlabelled joints placed at the box centre, where a model would put them
    (COCOeval scores a GT person without labelled joints of a part by distance to its grown box)."""
    out = []
    for a in gt["annotations"]:
        if a.get("iscrowd") or a.get("num_keypoints", 1) == 0:
            continue
        k = np.array(a["keypoints"], float).reshape(-1, 3)
        x, y, w, h = a["bbox"]
        k[k[:, 2] == 0, :2] = [x + w / 2, y + h / 2]
        out.append({"image_id": a["image_id"], "category_id": 1, "keypoints": k.reshape(-1).tolist(), "score": 1.0})
    return out


def perturbations(gt: dict) -> dict[str, list[dict]]:
    rng = np.random.default_rng(0)
    base = gt_as_results(gt)
    out = {}
    jit = copy.deepcopy(base)
    for r in jit:
        k = np.array(r["keypoints"], float).reshape(-1, 3)
        k[:, :2] += rng.normal(0, 4, (len(k), 2))
        r["keypoints"] = k.reshape(-1).tolist()
        r["score"] = float(rng.uniform(0.2, 1))
    out["jittered"] = jit
    out["dropped"] = [r for i, r in enumerate(jit) if i % 3]
    out["duplicated"] = jit + [dict(r, score=r["score"] * 0.5) for r in jit[::2]]
    extra = copy.deepcopy(jit[:10])
    for r in extra:
        k = np.array(r["keypoints"], float).reshape(-1, 3)
        k[:, :2] += 150
        r["keypoints"] = k.reshape(-1).tolist()
    out["extra"] = jit + extra
    shuffled = copy.deepcopy(jit)
    for r in shuffled:
        r["score"] = float(rng.uniform())
    out["shuffled_scores"] = shuffled
    return out


@pytest.mark.data
def test_posekit_eval_equals_pycocotools_on_coco_mini(coco_mini: Path, tmp_path: Path) -> None:
    gt_path = coco_mini / "annotations" / "person_keypoints_train2017.json"
    gt = json.loads(gt_path.read_text())
    for name, results in perturbations(gt).items():
        res_path = tmp_path / f"{name}.json"
        res_path.write_text(json.dumps(results))
        out = tmp_path / f"{name}_stats.json"
        assert main(["eval", "--gt", str(gt_path), "--results", str(res_path), "--out", str(out)]) == 0
        ours = np.array(list(json.loads(out.read_text())["stats"].values()))
        np.testing.assert_allclose(ours, reference_cocoeval(gt, results), atol=1e-9, rtol=0, err_msg=name)
    _, stats = evaluate_files(gt_path, gt_as_results(gt))
    assert stats["AP"] == pytest.approx(1.0)


def crowd_case() -> tuple[dict, list]:
    """Three images (easy, medium, hard crowd index), one person each; the hard one is missed."""
    images, anns, results = [], [], []
    for i, ci in enumerate([0.05, 0.5, 0.9]):
        images.append({"id": i + 1, "file_name": f"{i}.jpg", "width": 200, "height": 200, "crowdIndex": ci})
        kp = np.zeros((14, 3))
        kp[:, 0], kp[:, 1], kp[:, 2] = np.linspace(20, 80, 14), np.linspace(20, 180, 14), 2
        anns.append({"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": [10, 10, 80, 180], "iscrowd": 0,
                     "num_keypoints": 14, "keypoints": kp.reshape(-1).tolist()})  # fmt: skip
        pred = kp.copy()
        if ci > 0.8:
            pred[:, :2] += 500
        results.append({"image_id": i + 1, "category_id": 1, "keypoints": pred.reshape(-1).tolist(), "score": 0.9 - 0.1 * i})
    return {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "person"}]}, results


def test_crowdpose_easy_medium_hard_hand_computed() -> None:
    gt, results = crowd_case()
    stats = evaluate_crowdpose(gt, results, np.array(get_spec("crowdpose14").sigmas))
    assert stats["AP(E)"] == 1.0 and stats["AP(M)"] == 1.0 and stats["AP(H)"] == 0.0
    # overall: 2 of 3 persons found by the two best-scored detections -> precision 1 up to recall 2/3:
    # 67 of pycocotools' 101 recall thresholds (0, 0.01, ..., 0.66)
    assert stats["AP"] == pytest.approx(67 / 101)
    assert stats["AR"] == pytest.approx(2 / 3)


def test_crowdpose_oks_uses_053_box_area() -> None:
    gt, results = crowd_case()
    # shift every joint of the easy person by d: OKS = exp(-d^2 / (2 * 0.53 * area * (2 sigma)^2)) per joint
    kp = np.array(results[0]["keypoints"]).reshape(14, 3)
    kp[:, 0] += 6.0
    results[0]["keypoints"] = kp.reshape(-1).tolist()
    sig = np.array(get_spec("crowdpose14").sigmas)
    oks = np.exp(-36.0 / (2 * 0.53 * 80 * 180 * (2 * sig) ** 2)).mean()
    stats = evaluate_crowdpose(gt, results[:1], sig)
    thresholds = np.linspace(0.5, 0.95, 10)
    expected_easy = round(float(np.mean(thresholds <= oks + 1e-12) * 1.0), 4)  # matched iff OKS >= threshold
    assert stats["AP(E)"] == pytest.approx(expected_easy, abs=1e-4)


def pt_frame(people: list, ids: list) -> FramePoses:
    xy = np.array(people, float).reshape(len(ids), -1, 2)
    return FramePoses(xy, np.ones(xy.shape[:2]), np.array(ids), np.tile([[0.0, 0.0, 10.0, 10.0]], (len(ids), 1)))


def test_posetrack_mota_and_ap_hand_computed() -> None:
    a, b = [[0, 0], [5, 5]], [[100, 100], [105, 105]]
    gt = [pt_frame([a, b], [1, 2]), pt_frame([a, b], [1, 2]), pt_frame([a], [1])]
    empty = FramePoses(np.zeros((0, 2, 2)), np.zeros((0, 2)), np.zeros(0, int))
    pred = [pt_frame([a, b], [7, 8]), pt_frame([b, a], [7, 8]), empty]
    names = ("j0", "j1")
    # per joint: 5 GT objects, 2 identity switches (frame 2), 1 miss (frame 3): MOTA = 1 - 3/5
    assert posetrack_mota(gt, pred, names) == {"j0": pytest.approx(0.4), "j1": pytest.approx(0.4), "Total": pytest.approx(0.4)}
    # per joint: 4 true positives of 5 GT joints, all at precision 1: AP = 0.8
    assert posetrack_ap(gt, pred, names)["Total"] == pytest.approx(0.8)
    # a prediction 0.6 head sizes away (head size = 0.6 * diag(10, 10)) is not a match
    far = pt_frame([[[0.6 * 0.6 * np.hypot(10, 10), 0], [5, 5]], b], [7, 8])
    far.scores[0] = 0.5  # ranked below the exact prediction of b: precision 1 at recall 0.5, then a false positive
    assert posetrack_ap([gt[0]], [far], names)["j0"] == pytest.approx(0.5)


def test_pckh_and_pck_hand_computed() -> None:
    gt = np.zeros((2, 16, 2))
    pred = gt.copy()
    pred[0, :, 0] = 3.0  # person 0: every joint 3 px off, head size 10 -> 0.3 <= 0.5: hits
    pred[1, :8, 0] = 6.0  # person 1: first 8 joints 6 px off -> 0.6: misses
    out = mpii_pckh(pred, gt, np.ones((2, 16), bool), np.array([10.0, 10.0]))
    assert out["right_ankle"] == 0.5 and out["head_top"] == 1.0
    # Mean over the 14 joints without pelvis (6) and thorax (7): 6 at 0.5, 8 at 1.0
    assert out["Mean"] == pytest.approx((6 * 0.5 + 8 * 1.0) / 14)
    names = get_spec("lsp14").keypoints
    g = np.zeros((1, 14, 2))
    g[0, names.index("left_shoulder")] = [0, 0]
    g[0, names.index("right_hip")] = [30, 40]  # torso 50 -> PCK@0.2 radius 10
    p = g.copy()
    p[0, :7, 1] += 9.0
    p[0, 7:, 1] += 11.0
    res = lsp_pck(p, g, np.ones((1, 14), bool), names)
    assert res["Mean"] == pytest.approx(0.5) and res[names[0]] == 1.0 and res[names[13]] == 0.0


@pytest.mark.data
@pytest.mark.parametrize(("rel", "dataset"), [
    ("coco/test_coco.json", "coco"), ("crowdpose/test_crowdpose.json", "crowdpose"),
    ("coco/test_coco_wholebody.json", "wholebody"), ("halpe/test_halpe.json", "halpe"), ("ochuman/test_ochuman.json", "coco"),
])  # fmt: skip
def test_gt_as_results_scores_one_on_every_coco_style_fixture(data_dir: Path, tmp_path: Path, rel: str, dataset: str) -> None:
    from posekit.data.datasets import read_coco, to_coco_dict
    from posekit.evaluation.coco import PARTS

    samples = read_coco(data_dir / "fixtures" / rel)
    gt = to_coco_dict(samples)  # whole-body parts as one keypoint list
    if dataset in ("wholebody", "halpe"):
        # keep persons with labelled joints in every part: a person without any labelled joint of a part
        # is scored by distance to its grown box, where neighbours' guesses can match it too
        parts = PARTS["coco_wholebody133" if dataset == "wholebody" else "halpe136"].values()
        gt["annotations"] = [a for a in gt["annotations"]
                             if all(np.array(a["keypoints"][3 * lo : 3 * hi])[2::3].max() > 0 for lo, hi in parts)]  # fmt: skip
        assert gt["annotations"]
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    kind, stats = evaluate_files(path, gt_as_results(gt), samples[0].spec)
    assert kind == dataset
    groups = stats.values() if isinstance(next(iter(stats.values())), dict) else [stats]
    for group in groups:
        assert group["AP"] == pytest.approx(1.0) and group["AP50"] == pytest.approx(1.0), stats


@pytest.mark.data
def test_posetrack_and_mpii_fixtures_gt_as_results(data_dir: Path) -> None:
    fx = data_dir / "fixtures"
    gt = json.loads((fx / "posetrack18/annotations/test_posetrack18_val.json").read_text())
    res = [dict(a, score=1.0) for a in gt["annotations"]]
    kind, stats = evaluate_files(fx / "posetrack18/annotations/test_posetrack18_val.json", res)
    assert kind == "posetrack" and stats["AP"]["Total"] == pytest.approx(1.0) and stats["MOTA"]["Total"] == pytest.approx(1.0)
    recs = json.loads((fx / "mpii/test_mpii.json").read_text())
    res = [
        {"image_id": r["image"], "keypoints": np.concatenate([np.array(r["joints"]), np.ones((16, 1))], 1).reshape(-1).tolist()}
        for r in recs
    ]
    kind, stats = evaluate_files(fx / "mpii/test_mpii.json", res)
    assert kind == "mpii" and stats["Mean"] == pytest.approx(1.0)


@pytest.mark.data
@pytest.mark.weights
def test_eval_runs_a_model_end_to_end(data_dir: Path, tmp_path: Path, weights, capsys) -> None:
    fx = data_dir / "fixtures" / "coco"
    out = tmp_path / "stats.json"
    code = main(["eval", "--model", "topdown-thunder", "--images", str(fx), "--gt", str(fx / "test_coco.json"),
                 "--out-dir", str(tmp_path / "pred"), "--out", str(out), "--quiet"])  # fmt: skip
    assert code == 0
    stats = json.loads(out.read_text())["stats"]
    assert stats["AP"] >= 0.6  # measured 0.7245 with CenterNet boxes (README)
    assert "failed" not in capsys.readouterr().out  # only the annotated images were run


def test_posetrack_ignore_regions_remove_joints_and_emptied_persons() -> None:
    """poseval's load_data: joints strictly inside an ignore polygon are removed from GT and predictions,
    and so are the persons left with none; a false positive there no longer costs MOTA."""
    from posekit.data.datasets import DatasetError
    from posekit.evaluation.posetrack import FramePoses, drop_ignored, ignore_polygons, posetrack_mota

    square = ignore_polygons({"ignore_regions_x": [[100, 200, 200, 100]], "ignore_regions_y": [[100, 100, 200, 200]]})
    assert len(square) == 1 and ignore_polygons({}) == [] and ignore_polygons({"ignore_regions_x": [[1, 2]], "ignore_regions_y": [[1, 2]]}) == []
    with pytest.raises(DatasetError, match="ignore_regions"):
        ignore_polygons({"ignore_regions_x": [["a", 2, 3]], "ignore_regions_y": [[1, 2, 3]]})
    k = 3
    gt = FramePoses(np.array([[[10, 10], [20, 10], [150, 150]]], np.float32), np.ones((1, k), np.float32), np.array([1]),
                    np.array([[0, 0, 40, 40]], np.float32))  # fmt: skip
    pred = FramePoses(np.array([[[11, 10], [20, 11], [60, 60]], [[120, 120], [150, 150], [180, 130]]], np.float32),
                      np.full((2, k), 0.9, np.float32), np.array([7, 8]))  # fmt: skip
    g, p = drop_ignored(gt, square, gt.scores > 0), drop_ignored(pred, square, np.ones((2, k), bool))
    assert g.scores.tolist() == [[1, 1, 0]]  # the GT joint in the region is no longer labelled
    assert p.track_ids.tolist() == [7]  # the prediction wholly inside the region is gone
    edge = FramePoses(np.array([[[100, 150]] * k], np.float32), np.ones((1, k), np.float32), np.array([9]))
    assert drop_ignored(edge, square, np.ones((1, k), bool)).track_ids.tolist() == [9]  # on the boundary: kept, as shapely's contains
    names = ("a", "b", "c")
    # before: a, b matched with one false positive each (MOTA 0), c missed with two false positives (-2)
    assert posetrack_mota([gt], [pred], names)["Total"] == pytest.approx(-2 / 3)
    assert posetrack_mota([g], [p], names)["Total"] == 1.0  # after: a, b matched, c has no GT left


def test_results_map_to_gt_frames_by_folder_when_file_names_repeat(tmp_path: Path) -> None:
    """PoseTrack's videos each have a 000000.jpg: a result of one video must map to that video's GT frame,
    never to another's; with neither the folder nor the bare name telling, it is refused."""
    from posekit.data.datasets import DatasetError
    from posekit.evaluation.checks import check_results, gt_ids_by_name

    images = [{"id": 10 + n, "file_name": f"images/val/{video}/000000.jpg"} for n, video in enumerate(("003418_mpii_test", "012834_mpii_test"))]
    images.append({"id": 99, "file_name": "images/val/other/000001.jpg"})
    results = [{"image_id": 1, "keypoints": [1.0, 2.0, 0.9] * 17, "score": 0.5}]
    (tmp_path / "image_ids.json").write_text(json.dumps({"1": "/data/posetrack/images/val/003418_mpii_test/000000.jpg"}))
    ids = {img["id"] for img in images}
    assert check_results(results, tmp_path / "results.json", 17, ids, gt_ids_by_name(images))[0]["image_id"] == 10
    (tmp_path / "image_ids.json").write_text(json.dumps({"1": "/elsewhere/000001.jpg"}))  # a unique bare name still maps
    assert check_results(results, tmp_path / "results.json", 17, ids, gt_ids_by_name(images))[0]["image_id"] == 99
    (tmp_path / "image_ids.json").write_text(json.dumps({"1": "/elsewhere/000000.jpg"}))  # ambiguous: refused, not guessed
    with pytest.raises(DatasetError, match="not mapped|neither"):
        check_results(results, tmp_path / "results.json", 17, ids, gt_ids_by_name(images))
