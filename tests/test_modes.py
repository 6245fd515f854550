"""Modes (fast / balanced / accurate), calibrated person scores, the output threshold applied everywhere,
and the exports `weights fetch` prepares."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from posekit.cli import main
from posekit.evaluation.matching import match_results, reliability_table
from posekit.pipeline.stages import TopDownOptions
from posekit.postprocess.calibration import PersonCalibration, fit_calibration, person_features
from posekit.postprocess.presets import CALIBRATIONS, MODES, TRACK_START_SCORE, mode_options, track_options

DEMO = Path(__file__).resolve().parents[1] / "assets" / "demo.jpg"


def test_fit_calibration_recovers_a_known_logistic_model() -> None:
    rng = np.random.default_rng(0)
    box = rng.uniform(0.02, 0.98, 20000)
    kp = rng.uniform(0, 1, (20000, 17))
    truth = np.array([-1.0, 1.5, 3.0, -2.0])
    p = 1 / (1 + np.exp(-person_features(box, kp) @ truth))
    fitted = fit_calibration(person_features(box, kp), rng.uniform(size=len(p)) < p, l2=0.0)
    assert np.allclose(fitted.weights, truth, atol=0.25)


def test_min_box_score_is_the_exact_bound() -> None:
    calib = PersonCalibration(CALIBRATIONS[("movenet-thunder", False)])
    bound = calib.min_box_score(0.9)
    assert 0 < bound < 1
    assert calib.max_probability(np.array([bound]))[0] == pytest.approx(0.9, abs=1e-4)
    assert calib.max_probability(np.array([bound * 0.9]))[0] < 0.9  # a lower box can never pass
    full = np.ones((1, 17))  # the best pose a box can have reaches exactly the bound
    assert calib(np.array([bound]), full)[0] == pytest.approx(0.9, abs=1e-4)
    options = TopDownOptions(calibration=calib.weights, score_threshold=0.9, det_threshold=0.05)
    assert options.box_threshold() == pytest.approx(max(0.05, bound))  # boxes below get no pose pass
    assert TopDownOptions(scoring="box_mean_above", score_threshold=0.4, det_threshold=0.1).box_threshold() == 0.4


def test_modes_resolve_to_their_presets() -> None:
    for mode, m in MODES.items():
        for pipeline in ("topdown-thunder", "topdown-lightning"):
            o = mode_options(mode, pipeline)
            assert o["flip_test"] == m.flip_test and o["det_threshold"] == m.det_threshold
            graph = "movenet-lightning" if pipeline == "topdown-lightning" else "movenet-thunder"
            assert o["calibration"] == CALIBRATIONS[(graph, m.flip_test)] and o["score_threshold"] == m.score_threshold
    assert MODES["accurate"].score_threshold == 0 and MODES["accurate"].flip_test  # the AP protocol
    assert MODES["fast"].model == "topdown-lightning" and MODES["balanced"].model == "topdown-thunder"


def test_estimator_modes_and_overrides(weights) -> None:
    from posekit.api import PoseEstimator
    from posekit.errors import InputError

    est = PoseEstimator()  # balanced
    o = est.pipeline.options
    assert est.name == "topdown-thunder" and est.mode == "balanced" and est.score_threshold == 0.5
    assert not o.flip_test and o.calibration == CALIBRATIONS[("movenet-thunder", False)] and o.det_threshold == 0.15
    fast = PoseEstimator(mode="fast")
    assert fast.name == "topdown-lightning" and fast.pipeline.options.det_threshold == 0.2
    accurate = PoseEstimator(mode="accurate", flip_test=False, det_threshold=0.3, score_threshold=0.2)  # options override the mode
    o = accurate.pipeline.options
    assert not o.flip_test and o.det_threshold == 0.3 and accurate.score_threshold == 0.2
    assert o.calibration == CALIBRATIONS[("movenet-thunder", False)]  # the calibration follows the flip test in use
    assert PoseEstimator("movenet-multipose", mode="accurate").score_threshold == 0.0
    assert PoseEstimator("movenet-multipose").score_threshold == 0.1
    # a trained top-down checkpoint takes the mode's detector threshold; its raw person scores are not thresholded
    for mode, det, out in (("accurate", 0.05, 0.0), ("balanced", 0.15, 0.0), ("fast", 0.2, 0.0)):
        o = PoseEstimator("distilpose-small", mode=mode).pipeline.options
        assert (o.det_threshold, o.score_threshold, o.calibration) == (det, out, None), mode
    assert PoseEstimator("distilpose-small", mode="accurate", det_threshold=0.3).pipeline.options.det_threshold == 0.3
    with pytest.raises(InputError, match="mode"):
        PoseEstimator(mode="precise")
    poses = est(DEMO)
    assert len(poses) and (poses.scores >= 0.5).all() and (poses.scores <= 1).all()


def test_shipped_whole_image_models_take_their_own_measured_threshold(weights) -> None:
    """A shipped whole-image model's own output threshold (measured: its raw scores are not calibrated) replaces
    the mode's outside `accurate`; a threshold given overrides it; the AP protocol still scores every person."""
    from posekit.api import PoseEstimator
    from posekit.zoo.packaged import PACKAGED

    own = PACKAGED["posedet-small"].output_threshold
    assert own > MODES["balanced"].whole_image_threshold
    assert PoseEstimator("posedet-small").score_threshold == own
    assert PoseEstimator("posedet-small", mode="fast").score_threshold == own
    assert PoseEstimator("posedet-small", mode="accurate").score_threshold == 0.0
    assert PoseEstimator("posedet-small", score_threshold=0.2).score_threshold == 0.2
    poses = PoseEstimator("posedet-small")(DEMO)
    assert (poses.scores >= own).all()


def test_default_threshold_is_applied_in_results_and_renders_alike(weights, tmp_path: Path, capsys) -> None:
    from posekit.api import PoseEstimator
    from posekit.structures import Poses

    out = tmp_path / "out"
    assert main(["predict", str(DEMO), "--render", "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert f"1 images, {len(results)} persons" in printed
    assert results and min(r["score"] for r in results) >= MODES["balanced"].score_threshold
    poses = PoseEstimator()(DEMO)
    assert len(poses) == len(results)
    render = cv2.imread(str(out / "render" / "demo.jpg"))
    plotted = poses.plot(DEMO)  # the API's drawing of what it returns
    ok, buf = cv2.imencode(".jpg", plotted, [cv2.IMWRITE_JPEG_QUALITY, 92])
    assert np.array_equal(render, cv2.imdecode(buf, cv2.IMREAD_COLOR))  # the render draws exactly the returned persons
    everyone = PoseEstimator(mode="accurate")(DEMO)
    assert len(everyone) > len(poses)  # the AP protocol returns more, and the default draws none of them
    assert isinstance(everyone, Poses)


def test_accurate_mode_through_the_cli_is_the_ap_protocol(weights, tmp_path: Path, capsys) -> None:
    out = tmp_path / "acc"
    assert main(["predict", str(DEMO), "--mode", "accurate", "--out", str(out), "--quiet"]) == 0
    accurate = json.loads((out / "results.json").read_text())
    assert main(["predict", str(DEMO), "--mode", "accurate", "--score-thr", "0.5", "--out", str(tmp_path / "b"), "--quiet"]) == 0
    thresholded = json.loads((tmp_path / "b" / "results.json").read_text())
    assert len(thresholded) == sum(r["score"] >= 0.5 for r in accurate) < len(accurate)


def test_weights_fetch_prepares_the_default_exports(weights, tmp_path: Path, monkeypatch, capsys) -> None:
    import posekit.export.backend as backend

    monkeypatch.setattr(backend, "onnx_cache_dir", lambda: tmp_path / "onnx")
    assert main(["weights", "fetch", "centernet", "movenet-thunder", "movenet-lightning"]) == 0
    made = sorted(p.name for p in (tmp_path / "onnx").glob("*.onnx"))
    assert any(n.startswith("centernet-") and n.endswith("-512x512x3.onnx") for n in made), made
    assert any(n.startswith("movenet-thunder-") and n.endswith("-256x256x3.onnx") for n in made), made
    assert any(n.startswith("movenet-lightning-") and n.endswith("-192x192x3.onnx") for n in made), made
    assert "ONNX Runtime exports ready" in capsys.readouterr().out


def test_matching_and_reliability_on_ground_truth(coco_mini: Path) -> None:
    gt = json.loads((coco_mini / "annotations" / "person_keypoints_train2017.json").read_text())
    people = [a for a in gt["annotations"] if not a["iscrowd"] and a["num_keypoints"] > 0]
    results = [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 0.9} for a in people]
    shifted = [{**r, "keypoints": [v + 80 if i % 3 < 2 else v for i, v in enumerate(r["keypoints"])], "score": 0.1} for r in results[:5]]
    m = match_results(gt, results + shifted)
    # each labelled person is matched by its own pose; a shifted copy matches none (0), or is ignored (-1)
    # where it lands on a crowd region or an unlabelled person, as COCO AP ignores it
    assert (m.labels[: len(results)] == 1).all() and (m.labels[len(results) :] <= 0).all() and (m.labels[len(results) :] == 0).any()
    assert m.precision_recall(np.arange(len(m.labels)) < len(results)) == (1.0, 1.0, len(results))
    table = reliability_table(np.r_[np.full(len(results), 0.95), np.full(5, 0.05)], m.labels)
    assert table[0]["observed"] == 0.0 and table[0]["n"] == (m.labels[len(results) :] == 0).sum()
    assert table[-1]["observed"] == 1.0 and table[-1]["n"] == len(results)


def test_failed_inputs_leave_no_output_folder(weights, tmp_path: Path, capsys) -> None:
    out = tmp_path / "never"
    assert main(["predict", str(tmp_path / "missing.jpg"), "--out", str(out), "--quiet"]) == 1
    assert not out.exists()
    assert "missing.jpg" in capsys.readouterr().err


def test_predict_takes_a_webcam_index_or_url_like_track(weights, tmp_path: Path, capsys) -> None:
    out = tmp_path / "cam"
    code = main(["predict", "97", "--out", str(out), "--quiet"])  # no camera 97 here: one line, exit 1, nothing left behind
    err = capsys.readouterr().err
    assert code == 1 and "97: cannot open the camera or stream" in err and not out.exists()


def test_bootstrap_resample_repeats_images_and_identical_settings_never_differ(coco_mini: Path) -> None:
    from posekit.evaluation.bootstrap import bootstrap_aps, interval, resample
    from posekit.evaluation.coco import evaluate_coco_keypoints

    gt = json.loads((coco_mini / "annotations" / "person_keypoints_train2017.json").read_text())
    people = [a for a in gt["annotations"] if not a["iscrowd"] and a["num_keypoints"] > 0]
    # distinct scores: with ties, COCO's accumulation order (by image id) would decide the precision curve
    noisy = [{"image_id": a["image_id"], "category_id": 1, "score": 0.3 + 0.6 * (a["id"] * 7919 % 1000) / 1000,
              "keypoints": [v + (6 if i % 3 < 2 else 0) * ((a["id"] + i) % 3 - 1) for i, v in enumerate(a["keypoints"])]} for a in people]  # fmt: skip
    everything = np.arange(len(gt["images"]))
    same_gt, same = resample(gt, {"x": noisy}, everything)  # every image once: the AP itself
    assert evaluate_coco_keypoints(same_gt, same["x"])["AP"] == pytest.approx(evaluate_coco_keypoints(gt, noisy)["AP"])
    twice_gt, twice = resample(gt, {"x": noisy}, np.r_[everything, everything])  # each image twice: the same AP
    assert len(twice_gt["annotations"]) == 2 * len(gt["annotations"]) and len(twice["x"]) == 2 * len(noisy)
    assert evaluate_coco_keypoints(twice_gt, twice["x"])["AP"] == pytest.approx(evaluate_coco_keypoints(gt, noisy)["AP"], abs=0.01)
    aps = bootstrap_aps(gt, {"a": noisy, "b": list(noisy)}, draws=5)
    assert interval(aps["a"] - aps["b"]) == (0.0, 0.0) and aps["a"].std() > 0


def test_track_runs_calibrated_scores_and_keeps_low_poses_for_the_tracker() -> None:
    """`track`'s options: the mode's calibration (probabilities, so a track starts at TRACK_START_SCORE),
    boxes down to 0.1 and no output threshold: poses under the start bar only continue tracks."""
    options, start = track_options("balanced", "topdown-thunder")
    assert options["calibration"] == CALIBRATIONS[("movenet-thunder", False)] and start == TRACK_START_SCORE
    assert options["det_threshold"] == 0.1 and options["score_threshold"] == 0.0
    fast, _ = track_options("fast", "topdown-lightning")
    assert fast["calibration"] == CALIBRATIONS[("movenet-lightning", False)]
    accurate, _ = track_options("accurate", "topdown-thunder")
    assert accurate["det_threshold"] == MODES["accurate"].det_threshold and accurate["flip_test"]  # never raised to 0.1
