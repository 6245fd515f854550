"""Hostile inputs to every command: each answered by one line on stderr that names the input, no
traceback, a non-zero exit, and the good inputs beside it still processed."""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from posekit.cli import main

ROOT = Path(__file__).resolve().parents[1]
PERSON_IMAGE = "000000196141.jpg"  # fixtures/coco: several people


def run(capsys: pytest.CaptureFixture, args: list[str]) -> tuple[int, str, str]:
    try:
        code = main([str(a) for a in args])
    except SystemExit as e:  # argparse's own usage errors
        code = e.code
    out = capsys.readouterr()
    assert "Traceback" not in out.err + out.out, out.err
    return code, out.out, out.err


def one_line_naming(err: str, name: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith("posekit:")]
    hits = [ln for ln in lines if name in ln]
    assert len(hits) == 1, f"expected one line naming {name!r}, got:\n{err}"
    return hits[0]


# --------------------------------------------------------------------------- eval: results files
@pytest.fixture(scope="module")
def gt_file(data_dir: Path) -> Path:
    return data_dir / "fixtures" / "coco" / "test_coco.json"


@pytest.fixture(scope="module")
def good_results(gt_file: Path) -> list[dict]:
    gt = json.loads(gt_file.read_text())
    return [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0} for a in gt["annotations"]]


def _results_cases(good: list[dict], gt: dict) -> dict[str, tuple[bytes, str]]:
    """name -> (file bytes, what the one error line must say)."""
    dump = lambda obj: json.dumps(obj).encode()  # noqa: E731
    nan = [dict(r, keypoints=[float("nan")] * 51) for r in good]
    return {
        "empty": (b"", "empty file"),
        "truncated": (dump(good)[:300], "not valid JSON"),
        "non_utf8": (b"\xff\xfe\x00[" + b"\x00" * 20, "not UTF-8"),
        "gt_as_results": (dump(gt), "missing field 'score'"),
        "image_ids_map": (dump({"1": "a.jpg", "2": "b.jpg"}), "image_ids.json"),
        "unknown_image": (dump([dict(good[0], image_id=999999999)]), "not in the ground truth"),
        "short_keypoints": (dump([dict(good[0], keypoints=good[0]["keypoints"][:50])]), "51 finite numbers"),
        "string_keypoints": (dump([dict(good[0], keypoints="1,2,3")]), "51 finite numbers"),
        "nan_keypoints": (dump(nan).replace(b"NaN", b"NaN"), "51 finite numbers"),
        "text_score": (dump([dict(good[0], score="high")]), "'score' must be a finite number"),
        "not_a_list": (dump(42), "expected a list"),
        "list_of_numbers": (dump([1, 2, 3]), "expected an object"),
    }


@pytest.mark.data
def test_eval_refuses_every_malformed_results_file(tmp_path: Path, gt_file: Path, good_results: list[dict], capsys) -> None:
    gt = json.loads(gt_file.read_text())
    for name, (data, says) in _results_cases(good_results, gt).items():
        path = tmp_path / f"{name}.json"
        path.write_bytes(data)
        code, _, err = run(capsys, ["eval", "--gt", gt_file, "--results", path])
        assert code == 2, (name, err)
        assert says in one_line_naming(err, path.name), (name, err)
    code, _, err = run(capsys, ["eval", "--gt", gt_file, "--results", tmp_path / "missing.json"])
    assert code == 2 and "cannot read" in one_line_naming(err, "missing.json")
    bom = tmp_path / "bom.json"  # a byte-order mark is valid UTF-8 JSON: scored
    bom.write_bytes(b"\xef\xbb\xbf" + json.dumps(good_results).encode())
    code, out, _ = run(capsys, ["eval", "--gt", gt_file, "--results", bom])
    assert code == 0 and out.startswith("coco")


@pytest.mark.data
def test_eval_refuses_malformed_ground_truth(tmp_path: Path, gt_file: Path, good_results: list[dict], capsys) -> None:
    gt = json.loads(gt_file.read_text())
    res = tmp_path / "res.json"
    res.write_text(json.dumps(good_results))
    no_bbox = [{k: v for k, v in a.items() if k != "bbox"} for a in gt["annotations"]]
    cases = {
        "no_images": ({k: v for k, v in gt.items() if k != "images"}, "'images'"),
        "zero_images": ({**gt, "images": [], "annotations": []}, "'images' is empty"),
        "no_categories": ({k: v for k, v in gt.items() if k != "categories"}, "'categories'"),
        "no_bbox": ({**gt, "annotations": no_bbox}, "missing field 'bbox'"),
        "nan_bbox": ({**gt, "annotations": [dict(gt["annotations"][0], bbox=[1, 2, float("nan"), 4])]}, "'bbox'"),
        "a_list": ([1, 2], "list"),
    }
    for name, (data, says) in cases.items():
        path = tmp_path / f"gt_{name}.json"
        path.write_text(json.dumps(data))
        code, _, err = run(capsys, ["eval", "--gt", path, "--results", res])
        assert code == 2, (name, err)
        assert says in one_line_naming(err, path.name) or "mpii" in err.lower(), (name, err)
    no_area = tmp_path / "gt_no_area.json"  # area is derived from the box, as CrowdPose files need
    no_area.write_text(json.dumps({**gt, "annotations": [{k: v for k, v in a.items() if k != "area"} for a in gt["annotations"]]}))
    assert run(capsys, ["eval", "--gt", no_area, "--results", res])[0] == 0


@pytest.mark.data
def test_eval_maps_results_to_the_gt_through_image_ids_json(tmp_path: Path, gt_file: Path, good_results: list[dict], capsys) -> None:
    """posekit predict on renamed copies numbers them 1, 2, ...; its image_ids.json names the files."""
    gt = json.loads(gt_file.read_text())
    names = {img["id"]: img["file_name"] for img in gt["images"]}
    seq = {image_id: n + 1 for n, image_id in enumerate(sorted(names))}
    (tmp_path / "image_ids.json").write_text(json.dumps({str(seq[i]): f"/somewhere/{names[i]}" for i in names}))
    res = tmp_path / "results.json"
    res.write_text(json.dumps([dict(r, image_id=seq[r["image_id"]]) for r in good_results]))
    code, out, _ = run(capsys, ["eval", "--gt", gt_file, "--results", res])
    direct = tmp_path / "direct" / "results.json"
    direct.parent.mkdir()
    direct.write_text(json.dumps(good_results))
    assert code == 0 and run(capsys, ["eval", "--gt", gt_file, "--results", direct])[1] == out  # the same scores


# --------------------------------------------------------------------------- arguments, weights, train
def test_bad_arguments_are_one_line_each(tmp_path: Path, capsys) -> None:
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    cases = [
        (["predict", "x.jpg", "--input-size", "300"], "--input-size 300"),
        (["predict", "x.jpg", "--det-thr", "5"], "--det-thr 5"),
        (["predict", "x.jpg", "--kpt-thr", "-1"], "--kpt-thr -1"),
        (["predict", "x.jpg", "--out", a_file], "file.txt"),
        (["track", "x.mp4", "--max-frames", "0"], "--max-frames 0"),
        (["predict", "x.jpg", "--model", "hrnet-w99"], "hrnet-w99"),
        (["weights", "list", "bogus"], "bogus"),
        (["weights", "verify", "bogus"], "bogus"),
    ]
    for args, name in cases:
        code, _, err = run(capsys, args)
        assert code == 2, (args, err)
        one_line_naming(err, name)


@pytest.mark.data
def test_train_config_errors_are_one_line_each(tmp_path: Path, data_dir: Path, capsys) -> None:
    config = ROOT / "configs" / "overfit_coco_mini.yaml"
    bad_yaml, unknown = tmp_path / "bad.yaml", tmp_path / "unknown.yaml"
    bad_yaml.write_text("model: [unclosed\n")
    unknown.write_text("bogus_key: 1\n")
    cases = [
        ([tmp_path / "missing.yaml"], "missing.yaml"),
        ([bad_yaml], "bad.yaml"),
        ([unknown], "bogus_key"),
        ([config, "--set", "train.steps=abc"], "train.steps"),
        ([config, "--set", "train.batch_size=0"], "batch_size"),
        ([config, "--set", "model.backbone=nope"], "nope"),
        ([config, "--set", "key"], "key"),
        ([config, "--set", "data.input_size=[100,128]"], "input"),
    ]
    for args, name in cases:
        code, _, err = run(capsys, ["train", *args, "--out", tmp_path / "run", "--quiet"])
        assert code == 2, (args, err)
        one_line_naming(err, name)


def _noise(n: int, seed: int) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


@pytest.mark.data
def test_resume_from_broken_checkpoints_and_orphaned_temp_files(tmp_path: Path, data_dir: Path, capsys) -> None:
    config = ROOT / "configs" / "overfit_coco_mini.yaml"
    out = tmp_path / "run"
    out.mkdir()
    for name, data in {"empty": b"", "garbage": _noise(4000, 1), "truncated": b"PK\x03\x04" + _noise(100, 2)}.items():
        (out / "checkpoint.pt").write_bytes(data)
        code, _, err = run(capsys, ["train", config, "--out", out, "--resume", "--quiet"])
        assert code == 2, (name, err)
        one_line_naming(err, "checkpoint.pt")
    (out / "checkpoint.pt").unlink()
    orphan = out / ".checkpoint.abc123.tmp.pt"  # what a kill -9 during torch.save leaves
    orphan.write_bytes(b"x" * 1000)
    code, _, _ = run(capsys, ["train", config, "--out", out, "--max-steps", "1", "--set", "train.eval_every=0", "--quiet"])
    assert code == 0 and not orphan.exists() and (out / "checkpoint.pt").exists()


def test_corrupt_weights_manifest_is_rebuilt_not_a_crash(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("POSEKIT_HOME", str(tmp_path))
    from posekit.zoo import store
    from posekit.zoo.registry import GRAPHS

    monkeypatch.setattr(store, "_WARNED", set())
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "manifest.json").write_text('{"models": {"centernet": ')
    code, out, err = run(capsys, ["weights", "list"])
    assert code == 0 and "not fetched" in out
    one_line_naming(err, "manifest.json")
    code, _, err = run(capsys, ["weights", "verify"])
    assert code == 1 and sum("weights fetch" in ln for ln in err.splitlines()) == len(GRAPHS), err  # every file checked


# --------------------------------------------------------------------------- predict on hostile files
def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG that declares width x height (its pixels never needed: the size alone is refused)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


@pytest.mark.data
@pytest.mark.weights
def test_predict_names_every_odd_entry_and_processes_the_rest(tmp_path: Path, data_dir: Path, weights, capsys) -> None:
    src = data_dir / "fixtures" / "coco" / PERSON_IMAGE
    d = tmp_path / "in"
    d.mkdir()
    (d / "good.jpg").write_bytes(src.read_bytes())
    (d / "folder.jpg").mkdir()
    os.mkfifo(d / "pipe.jpg")
    (d / "dangling.jpg").symlink_to(d / "nowhere.jpg")
    (d / "loop.jpg").symlink_to(d / "loop.jpg")
    _png_header_only(d / "huge.png", 15000, 15000)  # 225 Mpx
    out = tmp_path / "out"
    code, _, err = run(capsys, ["predict", d, "--model", "movenet-multipose", "--out", out, "--quiet"])
    assert code == 1
    for name, says in [("folder.jpg", "folder"), ("pipe.jpg", "not a regular file"), ("dangling.jpg", "broken symbolic link"),
                       ("loop.jpg", "loop"), ("huge.png", "too large")]:  # fmt: skip
        assert says in one_line_naming(err, name), err
    ids = json.loads((out / "image_ids.json").read_text())
    assert [Path(v).name for v in ids.values()] == ["good.jpg"]
    only_bad = tmp_path / "only_bad"
    only_bad.mkdir()
    (only_bad / "x.jpg").mkdir()
    code, _, err = run(capsys, ["predict", only_bad, "--model", "movenet-multipose", "--out", tmp_path / "out_bad", "--quiet"])
    assert code == 1 and "x.jpg" in err


@pytest.mark.data
@pytest.mark.weights
def test_predict_refuses_malformed_boxes_files(tmp_path: Path, data_dir: Path, weights, capsys) -> None:
    fx = data_dir / "fixtures" / "coco"
    gt = json.loads((fx / "test_coco.json").read_text())
    dets = json.loads((fx / "test_coco_det_AP_H_56.json").read_text())[:5]
    cases = {
        "text_scores": [dict(d, score="high") for d in dets],
        "two_number_boxes": [dict(d, bbox=d["bbox"][:2]) for d in dets],
        "nan_boxes": [dict(d, bbox=[float("nan")] * 4) for d in dets],
        "gt_no_bbox": {**gt, "annotations": [{k: v for k, v in a.items() if k != "bbox"} for a in gt["annotations"]]},
        "gt_no_file_name": {**gt, "images": [{k: v for k, v in i.items() if k != "file_name"} for i in gt["images"]]},
    }
    for name, data in cases.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(data))
        code, _, err = run(capsys, ["predict", fx / PERSON_IMAGE, "--boxes", path, "--out", tmp_path / name, "--quiet"])
        assert code == 2, (name, err)
        one_line_naming(err, path.name)


@pytest.mark.data
def test_corrupt_and_truncated_videos_are_reported_and_decoded_around(tmp_path: Path, capsys) -> None:
    """A corrupt packet mid-file skips its frames, not the rest; a truncated file says where it ended."""
    from posekit.pipeline.readers import iter_video

    path = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (160, 120))
    for k in range(120):
        frame = np.full((120, 160, 3), (k * 2) % 255, np.uint8)
        cv2.circle(frame, (k % 160, 60), 10, (0, 0, 255), -1)
        writer.write(frame)
    writer.release()
    data = bytearray(path.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 1500] = np.random.default_rng(0).integers(0, 256, 1500, dtype=np.uint8).tobytes()
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(bytes(data))
    frames = list(iter_video(bad))
    decoded = [f for f in frames if f.image is not None]
    errors = [f.error for f in frames if f.error]
    assert 100 <= len(decoded) < 120 and len(errors) == 1 and "corrupt frame" in errors[0], (len(decoded), errors)
    avi = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(avi), cv2.VideoWriter_fourcc(*"MJPG"), 25, (160, 120))
    for k in range(60):
        writer.write(np.full((120, 160, 3), k * 4, np.uint8))
    writer.release()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(avi.read_bytes()[: avi.stat().st_size // 2])
    frames = list(iter_video(cut))
    errors = [f.error for f in frames if f.error]
    assert 10 < sum(f.image is not None for f in frames) < 60 and len(errors) == 1 and "truncated" in errors[0]


def test_non_finite_training_annotations_are_refused_at_read(tmp_path: Path) -> None:
    """NaN in a training file used to train to non-finite weights; the reader names the record instead."""
    from posekit.data.datasets import DatasetError, read_coco

    base = {"images": [{"id": 1, "file_name": "a.jpg"}], "categories": [{"id": 1, "name": "person"}]}
    good = {"id": 7, "image_id": 1, "bbox": [10, 10, 50, 80], "keypoints": [20, 20, 2] * 17, "num_keypoints": 17}
    for field, value in [("keypoints", [float("nan"), 20, 2] + [20, 20, 2] * 16), ("bbox", [10, 10, float("inf"), 80])]:
        path = tmp_path / f"nan_{field}.json"
        path.write_text(json.dumps({**base, "annotations": [{**good, field: value}]}))
        with pytest.raises(DatasetError, match=rf"annotations\[0\] \(id 7\): field '{field}'"):
            read_coco(path)
    path = tmp_path / "ok.json"
    path.write_text(json.dumps({**base, "annotations": [good]}))
    assert len(read_coco(path)[0].instances) == 1
