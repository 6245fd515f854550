"""Parametric pose NMS, instance scoring rules, flip test and the post-processing search."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from posekit.codecs.heatmap import flip_permutation
from posekit.data.specs import get_spec
from posekit.pipeline.stages import TopDownOptions, mirror_crops, scale_boxes
from posekit.postprocess.pose_nms import PoseNMSParams, parametric_pose_nms, pose_similarity, score_instances
from posekit.postprocess.tune import search_pnms

RNG = np.random.default_rng(0)


def _pose(offset: tuple[float, float] = (0.0, 0.0), k: int = 17) -> np.ndarray:
    base = np.stack([np.linspace(10, 90, k), np.linspace(20, 180, k)], axis=1)
    return (base + np.asarray(offset)).astype(np.float32)


def test_identical_poses_are_suppressed_and_distant_ones_kept() -> None:
    kp = np.stack([_pose(), _pose(), _pose((300, 0)), _pose((0.5, -0.5))])
    sc = np.full((4, 17), 0.9, np.float32)
    boxes = np.array([[0, 0, 100, 200]] * 2 + [[300, 0, 400, 200], [0, 0, 100, 200]], np.float32)
    keep = parametric_pose_nms(kp, sc, boxes, np.array([0.5, 0.9, 0.7, 0.6]), PoseNMSParams())
    assert keep.tolist() == [1, 2]  # the best of the three near-identical poses, and the distant one
    assert parametric_pose_nms(kp[:0], sc[:0], boxes[:0], np.zeros(0)).tolist() == []


def test_similarity_known_values_and_the_ksim_window() -> None:
    """d = KSim + lam * HSim with both terms means over joints: identical confident poses give
    tanh(c/s1)^2 + lam; a joint outside the 1/10-box window no longer counts in KSim."""
    p = PoseNMSParams(sigma1=1.0, sigma2=0.01, lam=2.0)
    kp = np.stack([_pose(), _pose()])
    sc = np.full((2, 17), 0.8, np.float32)
    boxes = np.array([[0, 0, 100, 200]] * 2, np.float32)
    assert pose_similarity(kp, sc, boxes, p)[0, 1] == pytest.approx(np.tanh(0.8) ** 2 + 2.0, rel=1e-6)
    # the window is 10 x 20 px around each reference joint (1/10 of the 100 x 200 box): 4.9 px in x is inside, 5.1 outside
    for dx, inside in ((4.9, True), (5.1, False)):
        moved = kp.copy()
        moved[1, 3, 0] += dx
        sim = pose_similarity(moved, sc, boxes, replace(p, lam=0.0))[0, 1]
        assert sim == pytest.approx(np.tanh(0.8) ** 2 * (17 if inside else 16) / 17, rel=1e-6)
    moved = kp.copy()
    moved[1, :, 1] += 9.0  # inside the 20 px tall window: KSim unchanged, HSim = exp(-(9/200)^2 / 0.01)
    sim = pose_similarity(moved, sc, boxes, p)[0, 1]
    assert sim == pytest.approx(np.tanh(0.8) ** 2 + 2.0 * np.exp(-((9 / 200) ** 2) / 0.01), rel=1e-6)


def test_low_confidence_duplicates_survive_by_ksim_only_when_eta_demands_it() -> None:
    """tanh(c / sigma1) filters unconfident joints: with lam = 0 a duplicate of scores 0.05 stays under an
    eta that a confident duplicate exceeds."""
    kp = np.stack([_pose(), _pose()])
    boxes = np.array([[0, 0, 100, 200]] * 2, np.float32)
    p = PoseNMSParams(sigma1=0.5, lam=0.0, eta=0.3)
    confident = np.full((2, 17), 0.9, np.float32)
    unsure = np.stack([confident[0], np.full(17, 0.05, np.float32)])
    assert parametric_pose_nms(kp, confident, boxes, np.array([0.9, 0.8]), p).tolist() == [0]
    assert parametric_pose_nms(kp, unsure, boxes, np.array([0.9, 0.8]), p).tolist() == [0, 1]


def test_scoring_rules_known_answers() -> None:
    kp = np.array([[0.9, 0.1, 0.5, 0.3]], np.float32)
    box = np.array([0.8], np.float32)
    expect = {"mean": 0.45, "box": 0.8, "box_mean": 0.36, "mean_above": (0.9 + 0.5 + 0.3) / 3, "box_mean_above": 0.8 * (0.9 + 0.5 + 0.3) / 3,
              "alphapose": (0.45 + 0.8 + 1.25 * 0.9) / 3.25}  # fmt: skip
    for rule, value in expect.items():
        assert score_instances(rule, box, kp, 0.2)[0] == pytest.approx(value, rel=1e-6), rule
    assert score_instances("mean_above", box, kp, 0.95)[0] == 0.0
    with pytest.raises(ValueError, match="unknown scoring rule"):
        score_instances("best", box, kp)
    with pytest.raises(ValueError, match="pose_nms"):
        TopDownOptions(pose_nms="greedy")
    with pytest.raises(ValueError, match="unknown scoring rule"):
        TopDownOptions(scoring="best")


def test_mirror_crops_matrix_maps_points_to_the_mirrored_pixel() -> None:
    crops = RNG.integers(0, 255, (2, 8, 6, 3), dtype=np.uint8)  # NHWC, width 6
    mats = np.array([[[2.0, 0.0, -3.0], [0.0, 2.0, 1.0]], [[0.5, 0.1, 4.0], [0.0, 0.5, 2.0]]])
    flipped, fm = mirror_crops(crops, mats, width_axis=2)
    assert (flipped[:, :, ::-1] == crops).all()
    point = np.array([3.0, 4.0, 1.0])
    for m, f in zip(mats, fm):
        x, y = m @ point
        assert f @ point == pytest.approx([5 - x, y])  # pixel centres 0..5: x -> W - 1 - x
    perm = flip_permutation(get_spec("coco17").flip_pairs, 17)
    assert perm[1] == 2 and perm[2] == 1 and perm[0] == 0 and (perm[perm] == np.arange(17)).all()
    assert scale_boxes(np.array([[0, 0, 10, 20]], np.float32), 1.5).tolist() == [[-2.5, -5.0, 12.5, 25.0]]


def test_search_pnms_finds_the_known_optimum_two_at_a_time() -> None:
    """A score peaked at one grid point of each pair is found by the alternating search, and the search
    stops once a round changes nothing."""
    target = {"sigma1": 0.25, "sigma2": 0.02, "lam": 1.0, "eta": 1.2}

    def score(o: TopDownOptions) -> float:
        p = o.pnms
        return -sum(abs(getattr(p, k) - v) for k, v in target.items())

    best, history = search_pnms(score, TopDownOptions())
    assert best.pose_nms == "parametric"
    assert {k: getattr(best.pnms, k) for k in target} == pytest.approx(target)
    assert len(history) == 2 and history[-1]["AP"] == pytest.approx(0.0, abs=1e-9)


@pytest.mark.weights
def test_flip_test_is_mirror_equivariant_on_a_real_image(weights: None, coco_mini: Path) -> None:
    """With flip test, the pose of the mirrored image is the mirror of the pose of the image (left/right
    swapped): the average of a crop and its mirror does not depend on which of the two came first."""
    from posekit.pipeline.readers import read_image
    from posekit.zoo.loader import load_model

    gt = json.loads((coco_mini / "annotations/person_keypoints_train2017.json").read_text())
    ann = max((a for a in gt["annotations"] if a["num_keypoints"] > 10), key=lambda a: a["area"])
    image = read_image(coco_mini / "train2017" / next(i["file_name"] for i in gt["images"] if i["id"] == ann["image_id"]))
    x, y, w, h = ann["bbox"]
    box = np.array([[x, y, x + w, y + h]], np.float32)
    width = image.shape[1]
    mirrored_box = np.array([[width - (x + w), y, width - x, y + h]], np.float32)
    pipe = load_model("topdown-thunder", backend="torch", flip_test=True, pose_nms="none")
    a = pipe(image, box)
    b = pipe(np.ascontiguousarray(image[:, ::-1]), mirrored_box)
    perm = flip_permutation(get_spec("coco17").flip_pairs, 17)
    mirrored_back = np.stack([width - 1 - b.keypoints[0, perm, 0], b.keypoints[0, perm, 1]], axis=-1)
    assert np.abs(mirrored_back - a.keypoints[0]).max() < 0.5  # pixels, after two crops' interpolation
    assert np.abs(b.keypoint_scores[0, perm] - a.keypoint_scores[0]).max() < 0.01
    plain = load_model("topdown-thunder", backend="torch", flip_test=False)(image, box)
    assert np.abs(plain.keypoints - a.keypoints).max() > 0.01  # flip test changed the answer


def test_variant_rows_pick_the_crop_scales_and_their_mirrors() -> None:
    from posekit.postprocess.tune import CANDIDATE_SCALES, variant_rows

    assert CANDIDATE_SCALES == (1.0, 0.9, 1.1)
    assert variant_rows(TopDownOptions(flip_test=False)) == [0]
    assert variant_rows(TopDownOptions(flip_test=True)) == [0, 3]
    assert variant_rows(TopDownOptions(flip_test=True, crop_scales=(0.9, 1.0, 1.1))) == [1, 0, 2, 4, 3, 5]
    with pytest.raises(ValueError, match="not run"):
        variant_rows(TopDownOptions(crop_scales=(0.8, 1.0)))


@pytest.mark.data
@pytest.mark.weights
@pytest.mark.parametrize("options", [dict(flip_test=False), dict(flip_test=True, crop_scales=(0.9, 1.0, 1.1))], ids=["plain", "flip+scales"])
def test_tuning_cache_scores_exactly_what_the_pipeline_predicts(options: dict, weights: None, data_dir: Path) -> None:
    """The search scores settings from cached crop variants: the results it scores for a setting must be
    the pipeline's own output with that setting."""
    from posekit.pipeline.readers import read_image
    from posekit.postprocess.tune import collect_candidates, results_of
    from posekit.zoo.loader import load_model

    root = data_dir / "fixtures" / "coco"
    gt = json.loads((root / "test_coco.json").read_text())
    gt = {**gt, "images": [i for i in gt["images"] if i["file_name"] == "000000197388.jpg"]}  # 5 persons
    pipe = load_model("topdown-thunder", backend="torch", **options)
    candidates, failed = collect_candidates(pipe, gt, root, use_gt_boxes=True, quiet=True)
    assert not failed and len(candidates[0].boxes) >= 5
    cached = results_of(pipe, candidates, pipe.options)
    direct = pipe(read_image(root / "000000197388.jpg"), candidates[0].boxes).to_coco_results(gt["images"][0]["id"])
    assert len(cached) == len(direct)
    for c, d in zip(cached, direct):
        np.testing.assert_allclose(c["keypoints"], d["keypoints"], atol=1e-4)
        assert c["score"] == pytest.approx(d["score"], abs=1e-6)


@pytest.mark.data
@pytest.mark.weights
def test_tune_nms_cli_reports_a_search_that_never_loses_on_its_split(weights: None, data_dir: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    from posekit.cli import main

    root = data_dir / "fixtures" / "coco"
    out = tmp_path / "tuned.json"
    assert main(["tune-nms", "--gt", str(root / "test_coco.json"), "--images", str(root), "--boxes", "gt", "--backend", "torch",
                 "--quiet", "--bootstrap", "20", "--out", str(out)]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "best: " in printed and "recommended: " in printed and "frontier" in printed
    report = json.loads(out.read_text())
    front = report["frontier"]  # cheapest first, each point better than every cheaper one
    assert all(a["ms_per_image"] <= b["ms_per_image"] and a["AP"] < b["AP"] for a, b in zip(front, front[1:]))
    assert report["compare"]["tuning: recommended"]["ms_per_image"] <= report["compare"]["tuning: tuned"]["ms_per_image"]
    iv = report["compare"]["tuning: tuned"]["mean AP, 95% interval"]
    assert iv[0] <= report["compare"]["tuning: tuned"]["gt"] <= iv[1]
    # a time budget no setting meets is refused in one line
    assert main(["tune-nms", "--gt", str(root / "test_coco.json"), "--images", str(root), "--boxes", "gt", "--backend", "torch",
                 "--quiet", "--bootstrap", "0", "--max-ms", "0.001"]) == 2  # fmt: skip
    assert "--max-ms 0.001: no setting" in capsys.readouterr().err
    settings = [r["setting"] for r in report["search"]]
    assert "crop scales 0.9, 1.0, 1.1" in settings and any(s.startswith("OKS-NMS") for s in settings)
    tuned, before = report["compare"]["tuning: tuned"]["gt"], report["compare"]["tuning: previous defaults"]["gt"]
    assert tuned >= before and tuned == pytest.approx(max(r["AP"] for r in report["search"]))
