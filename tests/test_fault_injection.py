"""Writes that fail mid-run (#34 item 5): a full disk (ENOSPC) or a name too long (ENAMETOOLONG) during
track, eval, train and export ends in one line naming the path and the OS's reason, exit 1, never an
"internal error"; what was written before the fault stays whole. (predict's case: test_audit_findings.)"""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest

import posekit.fileio as fileio
from posekit.cli import main

PHOTO = "000000196141.jpg"


def failing_after(calls: int, code: int = errno.ENOSPC):  # noqa: ANN201
    """A stand-in for a write function that works `calls` times, then fails as the OS would."""
    seen = []

    def install(original):  # noqa: ANN001, ANN202
        def write(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            seen.append(1)
            if len(seen) > calls:
                target = next((str(a) for a in args if isinstance(a, (str, Path))), "?")
                raise OSError(code, "No space left on device" if code == errno.ENOSPC else "File name too long", target)
            return original(*args, **kwargs)

        return write

    return install


def _one_line(capsys, words: str) -> None:  # noqa: ANN001
    err = capsys.readouterr().err
    assert words in err and "internal error" not in err and "Traceback" not in err, err


def test_track_with_a_full_disk_mid_run(weights, data_dir: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    photo = (data_dir / "fixtures" / "coco" / PHOTO).read_bytes()
    for i in range(6):
        (frames / f"f{i}.jpg").write_bytes(photo)
    monkeypatch.setattr(fileio.JsonLines, "write", failing_after(3)(fileio.JsonLines.write))
    assert main(["track", str(frames), "--out", str(tmp_path / "out"), "--no-render", "--quiet", "--sequential"]) == 1
    _one_line(capsys, "No space left on device")
    lines = (tmp_path / "out" / "frames.jsonl").read_text().splitlines()
    assert len(lines) == 3 and all(json.loads(line)["results"] is not None for line in lines)  # the frames before: whole


def test_eval_out_on_a_full_disk(data_dir: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    gt = data_dir / "fixtures" / "coco" / "test_coco.json"
    results = [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0}
               for a in json.loads(gt.read_text())["annotations"]]  # fmt: skip
    (tmp_path / "r.json").write_text(json.dumps(results))
    monkeypatch.setattr(Path, "write_bytes", failing_after(0)(Path.write_bytes))
    assert main(["eval", "--gt", str(gt), "--results", str(tmp_path / "r.json"), "--out", str(tmp_path / "stats.json")]) == 1
    _one_line(capsys, "No space left on device")
    assert not (tmp_path / "stats.json").exists() and not list(tmp_path.glob(".pk-*"))  # no half-written file, no temp file


@pytest.mark.data
def test_train_checkpoint_on_a_full_disk(tmp_path: Path, monkeypatch, capsys) -> None:
    import torch

    config = Path(__file__).resolve().parents[1] / "configs" / "overfit_coco_mini.yaml"
    monkeypatch.setattr(torch, "save", failing_after(0)(torch.save))
    sets = ["data.input_size=[64, 64]", "data.val_range=[6, 8]", "model.head_channels=16", "train.batch_size=4", "train.steps=2"]
    assert main(["train", str(config), "--out", str(tmp_path / "run"), "--quiet", "--set", *sets]) == 1
    _one_line(capsys, "No space left on device")
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_export_with_a_name_too_long(weights, data_dir: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    import posekit.export.onnx as onnx_module

    monkeypatch.setattr(onnx_module, "atomic_path", failing_after(0, errno.ENAMETOOLONG)(onnx_module.atomic_path))
    code = main(["export", "--model", "topdown-lightning", "--images", str(data_dir / "fixtures" / "coco" / PHOTO),
                 "--out", str(tmp_path / "x.onnx")])  # fmt: skip
    assert code == 1
    _one_line(capsys, "File name too long")
