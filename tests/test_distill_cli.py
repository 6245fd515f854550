"""`posekit distill`: pseudo-labels from a teacher's poses (known answers), a teacher pass that resumes
after a kill without computing anything twice, and a student whose training resumes to the same weights."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from posekit.cli import main
from posekit.data.datasets import read_coco
from posekit.distill.pseudo_labels import LabelFilter, TeacherPass, coco_pseudo_labels, collect_images, held_out_files, teacher_id

ROOT = Path(__file__).resolve().parents[1]
STUDENT = ROOT / "configs" / "lspet_lightning_fpn_128.yaml"


def _poses(kp_scores: list[list[float]], scores: list[float]) -> dict[str, np.ndarray]:
    n, k = len(kp_scores), len(kp_scores[0])
    kps = np.arange(n * k * 2, dtype=np.float32).reshape(n, k, 2) + 1
    boxes = np.array([[10, 20, 60, 120]] * n, np.float32)
    return {"keypoints": kps, "keypoint_scores": np.array(kp_scores, np.float32), "boxes": boxes,
            "scores": np.array(scores, np.float32), "image_hw": np.array([240, 320])}  # fmt: skip


def test_pseudo_labels_filter_by_keypoint_and_person_confidence(tmp_path: Path) -> None:
    """Known answer on hand-made teacher output: low keypoints unlabelled, unsure persons keep only their
    box (an ignore region), images without a labelled person dropped, held-out images last; the file
    reads back as COCO samples of the teacher's spec."""
    sure = [0.9] * 10 + [0.1] * 7  # 10 labelled keypoints
    few = [0.9] * 3 + [0.1] * 14  # 3: fewer than min_keypoints
    per_image = {
        tmp_path / "a.jpg": _poses([sure, few], [0.5, 0.5]),
        tmp_path / "b.jpg": _poses([sure], [0.1]),  # person score below person_threshold: nothing labelled
        tmp_path / "c.jpg": _poses([sure], [0.6]),
        tmp_path / "d.jpg": _poses([sure], [0.6]),
    }
    rule = LabelFilter(keypoint_threshold=0.3, person_threshold=0.2, min_keypoints=6)
    coco, held, counts = coco_pseudo_labels(per_image, "coco17", rule, holdout=0.3)
    assert counts == {"persons": 3, "unsure_persons": 2, "keypoints": 30}
    names = [Path(img["file_name"]).name for img in coco["images"]]
    assert sorted(names) == ["a.jpg", "c.jpg", "d.jpg"] and held == 1  # round(0.3 * 3) = 1 held out
    assert held_out_files([Path(img["file_name"]) for img in coco["images"]], 0.3) == {Path(coco["images"][-1]["file_name"])}
    a = [ann for ann in coco["annotations"] if ann["image_id"] == names.index("a.jpg") + 1]
    assert [ann["num_keypoints"] for ann in a] == [10, 0]
    kps = np.array(a[0]["keypoints"]).reshape(17, 3)
    np.testing.assert_allclose(kps[:10, :2], per_image[tmp_path / "a.jpg"]["keypoints"][0, :10])
    assert (kps[:10, 2] == 2).all() and (kps[10:] == 0).all()
    assert a[0]["bbox"] == [10.0, 20.0, 50.0, 100.0]
    path = tmp_path / "labels.json"
    path.write_text(json.dumps(coco))
    samples = read_coco(path)
    assert [s.spec for s in samples] == ["coco17"] * 3
    assert str(samples[0].image_path) == coco["images"][0]["file_name"]  # absolute file names, whatever the root
    with pytest.raises(Exception, match="min_keypoints"):
        LabelFilter(min_keypoints=0)


def test_video_frames_sampled_once(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clip = (data_dir / "videos" / "demo_spatiotemporal_det.mp4").resolve()  # 57 frames
    bad = tmp_path / "notes.txt"
    bad.write_text("not an image")
    monkeypatch.chdir(tmp_path)
    images, errors = collect_images([str(clip), str(bad), str(tmp_path / "missing.jpg")], Path("frames"), 10)  # a relative --out
    assert [p.name for p in images] == [f"{k:06d}.jpg" for k in range(0, 57, 10)]
    assert all(p.is_absolute() and p.is_file() for p in images)
    assert len(errors) == 2 and {"notes.txt: not an image or video file", "missing.jpg: no such file"} == {
        next(part for part in ("notes.txt: not an image or video file", "missing.jpg: no such file") if part in e) for e in errors}
    stamps = [p.stat().st_mtime_ns for p in images]
    again, _ = collect_images([str(clip)], Path("frames"), 10)
    assert again == images and [p.stat().st_mtime_ns for p in again] == stamps  # not rewritten


def test_teacher_pass_killed_resumes_without_recomputing(data_dir: Path, tmp_path: Path, weights: None) -> None:
    """A pass killed after 2 images computes only the rest when rerun, and its poses equal an uninterrupted
    pass; a corrupted cache entry is recomputed, not used."""
    from posekit.api import PoseEstimator

    images = sorted((data_dir / "lspet" / "images").glob("im0000[1-5].jpg"))
    est = PoseEstimator("topdown-lightning", det_threshold=0.3)
    tid = teacher_id("topdown-lightning", est)
    calls = {"n": 0}
    real_estimate = est.estimate

    def dies_on_the_third(image: np.ndarray) -> object:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_estimate(image)

    est.estimate = dies_on_the_third
    with pytest.raises(KeyboardInterrupt):
        TeacherPass(est, tid, tmp_path / "cache").run(images, quiet=True)
    est.estimate = real_estimate
    resumed = TeacherPass(est, tid, tmp_path / "cache")
    got = resumed.run(images, quiet=True)
    assert (resumed.summary.cached, resumed.summary.computed) == (2, 3)
    fresh = TeacherPass(est, tid, tmp_path / "fresh").run(images, quiet=True)
    for f in images:
        for name, value in fresh[f].items():
            np.testing.assert_array_equal(got[f][name], value)
    entry = resumed.entry_path(images[0].read_bytes())
    entry.write_bytes(entry.read_bytes()[:-40])  # truncated
    again = TeacherPass(est, tid, tmp_path / "cache")
    again.run(images, quiet=True)
    assert (again.summary.rejected, again.summary.computed, again.summary.cached) == (1, 1, 4)
    assert teacher_id("topdown-lightning", PoseEstimator("topdown-lightning", det_threshold=0.4)) != tid  # settings are in the key


def _distill(out: Path, inputs: list[str], *extra: str) -> int:
    return main(["distill", "--teacher", "topdown-lightning", "--det-thr", "0.3", "--student", str(STUDENT), "--images", *inputs,
                 "--out", str(out), "--min-keypoints", "4", "--holdout", "0.25", "--quiet",
                 "--set", "train.steps=4", "train.batch_size=4", "train.checkpoint_every=1", "data.num_workers=0", *extra])  # fmt: skip


def test_distill_cli_kill_and_rerun_gives_the_same_student(data_dir: Path, tmp_path: Path, weights: None, capsys: pytest.CaptureFixture) -> None:
    """The whole command on real unlabelled images and a real clip: a broken input is one line and exit
    code 1 while the rest goes on; a run stopped after 2 of 4 steps and rerun ends with the weights of an
    uninterrupted run, and the rerun's teacher pass computes nothing."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    for f in sorted((data_dir / "lspet" / "images").glob("im0000[1-8].jpg")):
        shutil.copy(f, folder / f.name)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    inputs = [str(folder), str(data_dir / "videos" / "demo_spatiotemporal_det.mp4")]

    assert _distill(tmp_path / "killed", inputs, "--video-stride", "20", "--max-steps", "2") == 1
    err = capsys.readouterr().err
    assert err.count("broken.jpg") == 1
    assert torch.load(tmp_path / "killed" / "student" / "checkpoint.pt", weights_only=True)["step"] == 2
    assert _distill(tmp_path / "killed", inputs, "--video-stride", "20") == 1
    out = capsys.readouterr().out
    assert "(0 computed" in out and "resumed the student from step 2" in out
    lsp = data_dir / "lspet"
    val = ["--val", str(lsp / "joints.mat"), "--val-images", str(lsp / "images"), "--val-range", "9000", "9004"]
    assert _distill(tmp_path / "whole", inputs, "--video-stride", "20", *val) == 1
    stats = json.loads((tmp_path / "whole" / "val.json").read_text())["stats"]  # COCO-17 student scored on LSP joints by name
    assert 0.0 <= stats["Mean"] <= 1.0 and "right_ankle" in stats
    a = torch.load(tmp_path / "killed" / "student" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "whole" / "student" / "checkpoint.pt", weights_only=True)
    assert a["step"] == b["step"] == 4 and a["weights_sha256"] == b["weights_sha256"]
    ckpt = str(tmp_path / "whole" / "student" / "checkpoint.pt")  # the Lightning trunk's resizes trace to ONNX (they did not)
    assert main(["export", "--model", ckpt, "--images", str(folder / "im00001.jpg"), "--out", str(tmp_path / "student.onnx")]) == 0
    summary = json.loads((tmp_path / "whole" / "summary.json").read_text())
    assert summary["computed"] == summary["images"] > 8 and len(summary["failed"]) == 1
    # another filter makes other labels: the old student run is refused, not silently continued, and the
    # student.yaml beside its checkpoint still describes it
    written = (tmp_path / "whole" / "student" / "student.yaml").read_text()
    assert _distill(tmp_path / "whole", inputs, "--video-stride", "20", "--kpt-thr", "0.5") == 2
    assert "another config" in capsys.readouterr().err
    assert (tmp_path / "whole" / "student" / "student.yaml").read_text() == written


def test_student_config_mixes_pseudo_labels_with_labelled_data(coco_mini: Path, tmp_path: Path) -> None:
    """--labelled adds a COCO file beside the pseudo-labels: the student trains on both, validates on the
    held-out pseudo-labelled images, and keeps its config's model, input size and schedule."""
    from posekit.data.build import read_splits
    from posekit.distill.student import student_config
    from posekit.engine.config import load_config

    coco_mini = coco_mini.resolve()  # pseudo-labels name files by absolute path; CI's data path is relative
    gt = coco_mini / "annotations" / "person_keypoints_train2017.json"
    data = json.loads(gt.read_text())
    pseudo = {**data, "images": [{**img, "file_name": str(coco_mini / "train2017" / img["file_name"])} for img in data["images"]]}
    labels = tmp_path / "pseudo.json"
    labels.write_text(json.dumps(pseudo))
    n = len(pseudo["images"])
    cfg, text = student_config(STUDENT, labels, n, 5, tmp_path / "student", [(str(gt), str(coco_mini / "train2017"))], {"train.steps": 7})
    path = tmp_path / "student.yaml"
    path.write_text(text)
    assert load_config(path, {"train.steps": 7}) == cfg  # the YAML written beside the run reproduces it with posekit train
    train, val, _ = read_splits(cfg)
    assert len(train) == (n - 5) + n and len(val) == 5
    assert {s.spec for s in train + val} == {"coco17"} and all(s.image_path.is_file() for s in train + val)
    assert cfg.train.steps == 7 and cfg.model.backbone == "movenet_lightning_fpn" and tuple(cfg.data.input_size) == (128, 128)
    assert cfg.data.format == "coco" and cfg.output == str((tmp_path / "student").resolve())
