"""Outputs never clobber (#34 findings 1-3): no write replaces a link, a device or a pipe; results.jsonl is
never opened through a link; two runs never share an output folder."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from posekit.cli import main
from posekit.errors import OutputError
from posekit.fileio import JsonLines, atomic_write_json, claimed_out_dir

RESULTS = [{"image_id": 1, "category_id": 1, "keypoints": [0.0] * 51, "score": 0.5}]


def _gt(tmp_path: Path) -> Path:
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 100}], "categories": [{"id": 1, "name": "person"}],
                              "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 50, 80], "area": 4000,
                                               "iscrowd": 0, "num_keypoints": 1, "keypoints": [30, 20, 2] + [0] * 48}]}))  # fmt: skip
    return gt


def test_atomic_writes_refuse_links_pipes_and_devices(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    link = tmp_path / "link.json"
    link.symlink_to(victim)
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    for target, word in ((link, "symbolic link"), (fifo, "a pipe"), (tmp_path, "a folder")):
        with pytest.raises(OutputError, match=word):
            atomic_write_json(target, {"x": 1})
    assert victim.read_text() == "keep me" and link.is_symlink() and stat.S_ISFIFO(os.lstat(fifo).st_mode)
    try:  # a device node like /dev/null, made here (root only) so that a regression cannot break the machine's
        device = tmp_path / "null"
        os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except (PermissionError, OSError):
        return
    with pytest.raises(OutputError, match="a device"):
        atomic_write_json(device, {"x": 1})
    assert stat.S_ISCHR(os.lstat(device).st_mode)


def test_eval_and_tune_nms_refuse_a_special_out_before_any_work(tmp_path: Path, capsys) -> None:
    gt, results = _gt(tmp_path), tmp_path / "r.json"
    results.write_text(json.dumps(RESULTS))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    link = tmp_path / "link.json"
    link.symlink_to(tmp_path / "victim.json")
    for out in (fifo, link):
        assert main(["eval", "--gt", str(gt), "--results", str(results), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and str(out) in err
    assert not (tmp_path / "victim.json").exists() and link.is_symlink()
    assert main(["tune-nms", "--gt", str(gt), "--images", str(tmp_path), "--out", str(fifo)]) == 2
    assert "a pipe" in capsys.readouterr().err


def test_results_jsonl_never_follows_a_link(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (tmp_path / "results.jsonl").symlink_to(victim)
    with pytest.raises(OutputError, match="symbolic link"):
        JsonLines(tmp_path / "results.jsonl")
    assert victim.read_text() == "keep me"


def test_predict_into_a_folder_whose_results_jsonl_is_a_link(weights, data_dir: Path, tmp_path: Path, capsys) -> None:
    out, victim = tmp_path / "out", tmp_path / "victim.txt"
    out.mkdir()
    victim.write_text("keep me")
    (out / "results.jsonl").symlink_to(victim)
    photo = data_dir / "fixtures" / "coco" / "000000196141.jpg"
    assert main(["predict", str(photo), "--out", str(out), "--exist-ok", "--quiet"]) == 2
    assert "symbolic link" in capsys.readouterr().err and victim.read_text() == "keep me"


def test_two_runs_never_share_an_output_folder(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with claimed_out_dir(out) as first, claimed_out_dir(out) as second, claimed_out_dir(out) as third:
        assert first == out and second == tmp_path / "out2" and third == tmp_path / "out3"  # racing runs: one folder each
        with pytest.raises(OutputError, match="another posekit run"):
            with claimed_out_dir(out, exist_ok=True):  # reusing a folder in use is refused
                pass
        (first / "results.json").write_text("[]")
    assert not (tmp_path / "out2").exists() and not (tmp_path / "out3").exists()  # made and left empty: removed
    assert (out / "results.json").exists() and not (out / ".posekit.lock").exists()
    with claimed_out_dir(out) as again:  # a finished run's folder holds files: the next number
        assert again == tmp_path / "out2"
    with claimed_out_dir(out, exist_ok=True) as reused:
        assert reused == out


def test_predict_refuses_an_out_another_run_holds(weights, data_dir: Path, tmp_path: Path, capsys) -> None:
    photo = data_dir / "fixtures" / "coco" / "000000196141.jpg"
    out = tmp_path / "out"
    with claimed_out_dir(out):  # another run writing there
        assert main(["predict", str(photo), "--out", str(out), "--exist-ok", "--quiet"]) == 2
        assert "another posekit run is writing there" in capsys.readouterr().err
        assert main(["predict", str(photo), "--out", str(out), "--quiet"]) == 0  # without --exist-ok: a folder of its own
        assert json.loads((tmp_path / "out2" / "results.json").read_text())
