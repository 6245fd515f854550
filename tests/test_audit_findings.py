"""The audit's medium findings (#34): right answers or a refusal, one line each, and one bad item never
ends a run. Each test failed before its fix."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from posekit.cli import main

PHOTO = "000000196141.jpg"


def test_eval_refuses_duplicate_annotation_ids(data_dir: Path, tmp_path: Path, capsys) -> None:
    gt = json.loads((data_dir / "fixtures" / "coco" / "test_coco.json").read_text())
    gt["annotations"][1]["id"] = gt["annotations"][0]["id"]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    results = [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0} for a in gt["annotations"]]
    (tmp_path / "r.json").write_text(json.dumps(results))
    assert main(["eval", "--gt", str(tmp_path / "gt.json"), "--results", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err
    assert "annotations[1]" in err and "used twice" in err and err.count("\n") == 1


def test_eval_model_with_no_readable_image_is_refused(weights, data_dir: Path, tmp_path: Path, capsys) -> None:
    gt = data_dir / "fixtures" / "coco" / "test_coco.json"
    code = main(["eval", "--gt", str(gt), "--model", "topdown-lightning", "--images", str(tmp_path / "nonexistent"),
                 "--out-dir", str(tmp_path / "e"), "--quiet"])  # fmt: skip
    assert code == 2 and "nothing to score" in capsys.readouterr().err


def test_a_legal_255_byte_name_is_rendered_and_the_run_goes_on(weights, data_dir: Path, tmp_path: Path) -> None:
    long_name = "p" * 251 + ".jpg"  # 255 bytes: legal, but a temp name derived from it is not
    images = tmp_path / "in"
    images.mkdir()
    shutil.copy(data_dir / "fixtures" / "coco" / PHOTO, images / long_name)
    shutil.copy(data_dir / "fixtures" / "coco" / PHOTO, images / "zz_after.jpg")
    out = tmp_path / "out"
    assert main(["predict", str(images), "--render", "--openpose", "--out", str(out), "--quiet"]) == 0
    assert len(list((out / "render").glob("*.jpg"))) == 2 and len(list((out / "openpose").glob("*.json"))) == 2
    assert all(len(p.name.encode()) <= 255 for p in (out / "render").iterdir())


def test_an_explicit_codec_this_opencv_lacks_is_refused_before_any_work(weights, data_dir: Path, tmp_path: Path, capsys) -> None:
    from posekit.pipeline.writers import can_encode

    if can_encode("h264"):
        pytest.skip("this OpenCV has an H.264 encoder: nothing to refuse")
    out = tmp_path / "out"
    code = main(["predict", str(data_dir / "fixtures" / "coco" / PHOTO), "--render", "--video-codec", "h264", "--out", str(out)])
    assert code == 2 and "cannot encode H.264" in capsys.readouterr().err and not out.exists()


def test_a_16_bit_pil_image_finds_the_people_its_8_bit_version_does(weights, data_dir: Path) -> None:
    from posekit.api import PoseEstimator

    gray = Image.open(data_dir / "fixtures" / "coco" / PHOTO).convert("L")
    deep = Image.fromarray(np.asarray(gray, np.uint16) * 257)  # the same picture at 16 bits (mode I;16)
    assert deep.mode == "I;16"
    est = PoseEstimator(mode="accurate")
    eight, sixteen = est(gray), est(deep)
    assert len(eight) >= 2 and len(sixteen) == len(eight)
    assert np.allclose(np.sort(sixteen.scores), np.sort(eight.scores), atol=1e-3)


def test_track_over_a_folder_with_a_truncated_frame_keeps_every_other_frame(weights, data_dir: Path, tmp_path: Path) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    photo = (data_dir / "fixtures" / "coco" / PHOTO).read_bytes()
    for i in range(6):
        (frames / f"f{i}.jpg").write_bytes(photo[:5000] if i == 2 else photo)  # f2 truncated
    assert main(["track", str(frames), "--out", str(tmp_path / "out"), "--no-render", "--quiet"]) == 1  # one frame failed
    counts = {json.loads(line)["image"]["file_name"][-6:]: len(json.loads(line)["results"])
              for line in (tmp_path / "out" / "frames.jsonl").read_text().splitlines()}  # fmt: skip
    assert "f2.jpg" not in counts and len(counts) == 5
    assert len(set(counts.values())) == 1 and counts["f0.jpg"] >= 2  # the same people in every readable frame, f0 included


def _thunder_poses(photo: Path):  # noqa: ANN202
    from posekit.api import PoseEstimator

    return PoseEstimator("topdown-thunder", backend="onnxruntime", mode="accurate")(photo)


def test_a_bad_onnx_cache_entry_is_exported_again_and_an_unwritable_cache_falls_back_to_torch(weights, data_dir: Path, tmp_path: Path,
                                                                                               monkeypatch, caplog) -> None:  # fmt: skip
    import posekit.export.backend as backend

    photo = data_dir / "fixtures" / "coco" / PHOTO
    monkeypatch.setattr(backend, "onnx_cache_dir", lambda: tmp_path / "onnx")
    want = _thunder_poses(photo)
    entries = {p.name.split("-")[0]: p for p in (tmp_path / "onnx").glob("*.onnx")}
    thunder, centernet = next(p for n, p in entries.items() if n == "movenet"), entries["centernet"]
    for bad in (b"not an onnx file", centernet.read_bytes()):  # corrupt, then another model's export
        thunder.write_bytes(bad)
        caplog.clear()
        got = _thunder_poses(photo)
        assert np.allclose(got.keypoints, want.keypoints, atol=1e-3) and len(got) == len(want)
        assert any(str(thunder) in r.getMessage() and "exporting it again" in r.getMessage() for r in caplog.records)
        assert thunder.read_bytes() != bad
    blocked = tmp_path / "a_file"
    blocked.write_text("x")
    monkeypatch.setattr(backend, "onnx_cache_dir", lambda: blocked / "onnx")  # cannot be made: falls back to torch
    caplog.clear()
    got = _thunder_poses(photo)
    assert len(got) == len(want) and np.allclose(np.sort(got.scores), np.sort(want.scores), atol=1e-2)  # torch vs ONNX Runtime
    assert any("running" in r.getMessage() and "in torch" in r.getMessage() for r in caplog.records)


class _NotAllowed:  # an object a safe (weights_only) load refuses
    pass


@pytest.mark.parametrize("args", [["--repeat", "0"], ["--threads", "0"], ["--batch-sizes", "8", "0", "--networks", "centernet"]])
def test_bench_refuses_counts_below_one(args: list[str], tmp_path: Path, capsys) -> None:
    assert main(["bench", str(tmp_path / "x.jpg"), *args]) == 2
    assert "at least 1" in capsys.readouterr().err


def test_train_refuses_a_zero_log_interval(tmp_path: Path, capsys) -> None:
    config = Path(__file__).resolve().parents[1] / "configs" / "lspet_r18_128x96_heatmap.yaml"
    assert main(["train", str(config), "--set", "train.log_every=0", "--out", str(tmp_path / "t")]) == 2
    assert "train.log_every must be > 0" in capsys.readouterr().err


def test_api_boxes_of_the_wrong_shape_are_refused_not_reshaped() -> None:
    from posekit.api import _checked_boxes
    from posekit.errors import InputError

    with pytest.raises(InputError, match=r"shape \(4, 3\)"):
        _checked_boxes(np.zeros((4, 3)), None)
    assert _checked_boxes([1, 2, 3, 4], None)[0].shape == (1, 4)


def test_a_refused_checkpoint_never_repeats_the_unsafe_advice(tmp_path: Path) -> None:
    import torch

    from posekit.errors import CheckpointError
    from posekit.zoo.checkpoints import read_checkpoint

    path = tmp_path / "checkpoint.pt"
    torch.save({"format": "x", "payload": _NotAllowed()}, path)
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(path)
    assert "refused" in str(info.value) and "weights_only=False" not in str(info.value)


def test_eval_refuses_gt_without_people_and_results_of_another_category(data_dir: Path, tmp_path: Path, capsys) -> None:
    gt = json.loads((data_dir / "fixtures" / "coco" / "test_coco.json").read_text())
    results = [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0} for a in gt["annotations"]]
    (tmp_path / "r.json").write_text(json.dumps(results))
    crowd = {**gt, "annotations": [{**a, "iscrowd": 1} for a in gt["annotations"]]}
    (tmp_path / "crowd.json").write_text(json.dumps(crowd))
    assert main(["eval", "--gt", str(tmp_path / "crowd.json"), "--results", str(tmp_path / "r.json")]) == 2
    assert "no person with labelled keypoints" in capsys.readouterr().err
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    for category in (2, "person"):
        (tmp_path / "c.json").write_text(json.dumps([{**r, "category_id": category} for r in results]))
        assert main(["eval", "--gt", str(tmp_path / "gt.json"), "--results", str(tmp_path / "c.json")]) == 2
        assert f"category_id {category!r}" in capsys.readouterr().err


def test_a_refused_top_down_option_is_one_line(weights, tmp_path: Path) -> None:
    from posekit.api import PoseEstimator
    from posekit.errors import PosekitError

    with pytest.raises(PosekitError, match="crop_scales"):
        PoseEstimator(crop_scales=(0.0,))


class _ClosedPipe:
    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self) -> None:
        raise BrokenPipeError(32, "Broken pipe")


def test_a_closed_output_pipe_is_one_line_not_an_internal_error(data_dir: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    import sys

    gt = data_dir / "fixtures" / "coco" / "test_coco.json"
    results = [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0}
               for a in json.loads(gt.read_text())["annotations"]]  # fmt: skip
    (tmp_path / "r.json").write_text(json.dumps(results))
    monkeypatch.setattr(sys, "stdout", _ClosedPipe())  # `posekit eval ... | head -1` once head has gone
    assert main(["eval", "--gt", str(gt), "--results", str(tmp_path / "r.json")]) == 1
    err = capsys.readouterr().err
    assert "output pipe was closed" in err and "internal error" not in err


def test_environment_faults_and_bad_files_are_one_line(data_dir: Path, tmp_path: Path, capsys) -> None:
    fx = data_dir / "fixtures" / "coco"
    a_file = tmp_path / "afile"
    a_file.write_text("x")
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_bytes(b"name: \xff\xfe\n")
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 200_000 + "]" * 200_000)
    config = Path(__file__).resolve().parents[1] / "configs" / "lspet_r18_128x96_heatmap.yaml"
    cases = [
        (["show", "--gt", str(fx / "test_coco.json"), "--images", str(fx), "--out", str(a_file)], "afile"),
        (["train", str(config), "--out", str(a_file), "--max-steps", "1"], "afile"),
        (["train", str(bad_yaml)], "not UTF-8"),
        (["eval", "--gt", str(deep), "--results", str(deep)], "nested too deeply"),
    ]
    for args, words in cases:
        assert main(args) in (1, 2), args
        err = capsys.readouterr().err
        assert words in err and "internal error" not in err and err.count("\n") == 1, (args, err)


def test_distill_refuses_a_bad_student_before_the_teacher_pass(data_dir: Path, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {family: nonesuch}\n")
    out = tmp_path / "d"
    code = main(["distill", "--student", str(bad), "--images", str(data_dir / "fixtures" / "coco"), "--out", str(out), "--quiet"])
    assert code == 2 and "nonesuch" in capsys.readouterr().err
    assert not (out / "teacher_cache").exists()  # no teacher ran


def test_a_full_disk_mid_run_is_one_line_and_keeps_what_was_written(weights, data_dir: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    import errno

    from posekit.fileio import JsonLines

    images = tmp_path / "in"
    images.mkdir()
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        shutil.copy(data_dir / "fixtures" / "coco" / PHOTO, images / name)
    write, calls = JsonLines.write, []

    def full_after_one(self, record):  # noqa: ANN001, ANN202 - the disk fills after the first image's line
        calls.append(1)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device", str(self.path))
        return write(self, record)

    monkeypatch.setattr(JsonLines, "write", full_after_one)
    out = tmp_path / "out"
    assert main(["predict", str(images), "--out", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and "results.jsonl" in err and "internal error" not in err
    saved = json.loads((out / "image_ids.json").read_text())
    assert list(saved.values()) == [str(images / "a.jpg")]  # the image finished before the fault is kept whole


@pytest.mark.data
def test_sigterm_during_train_keeps_the_steps_done(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    import torch

    config = Path(__file__).resolve().parents[1] / "configs" / "overfit_coco_mini.yaml"
    out = tmp_path / "run"
    sets = ["data.input_size=[64, 64]", "data.val_range=[6, 8]", "model.head_channels=16", "train.batch_size=4", "train.steps=100000",
            "train.log_every=1", "train.checkpoint_every=0", "model.flip_test=false"]  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "posekit.cli", "train", str(config), "--out", str(out), "--set", *sets],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    for line in proc.stdout:  # one line per step when stdout is no terminal
        if line.startswith("step 3/"):
            break
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(120) == 130, proc.stderr.read()
    state = torch.load(out / "checkpoint.pt", weights_only=True)  # checkpoint_every 0 kept nothing before: all steps were lost
    assert state["step"] >= 3


def test_resume_from_another_config_names_it_in_one_line(data_dir: Path, tmp_path: Path, capsys) -> None:
    root = Path(__file__).resolve().parents[1] / "configs"
    sets = ["data.input_size=[64, 64]", "data.val_range=[6, 8]", "train.batch_size=4", "train.steps=1", "model.flip_test=false"]
    out = tmp_path / "run"
    assert main(["train", str(root / "overfit_coco_mini.yaml"), "--out", str(out), "--quiet", "--set", *sets, "model.head_channels=16"]) == 0
    capsys.readouterr()
    code = main(["train", str(root / "overfit_coco_mini.yaml"), "--out", str(out), "--resume", "--quiet", "--set", *sets, "model.head_channels=32"])
    err = capsys.readouterr().err
    assert code == 2 and "a checkpoint of config" in err and err.count("\n") == 1


def test_an_unwritable_weights_cache_is_refused_before_the_download(tmp_path: Path, monkeypatch, capsys) -> None:
    (tmp_path / "home").write_text("a file, not a folder")
    monkeypatch.setenv("POSEKIT_HOME", str(tmp_path / "home"))
    assert main(["weights", "fetch", "movenet-thunder"]) == 2
    assert "cannot be written" in capsys.readouterr().err
