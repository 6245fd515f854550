"""`posekit predict` end to end on real weights: a batch mixing valid and broken inputs never crashes."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from posekit.cli import main
from posekit.pipeline.writers import VIDEO_CODECS, pick_video_codec

RENDER_SUFFIX = VIDEO_CODECS[pick_video_codec()][1]  # .mp4 (H.264) or .webm (VP8), as this OpenCV can encode

pytestmark = [pytest.mark.weights]

PERSON_IMAGE = "000000466137.jpg"


# (file-name suffix, writer of an RGB array): the encodings, colour modes and bit depths users have
VALID_KINDS = [
    (".jpg", lambda rgb, p: Image.fromarray(rgb).save(p, quality=85)),
    (".png", lambda rgb, p: Image.fromarray(rgb).save(p)),
    ("_gray.png", lambda rgb, p: Image.fromarray(rgb).convert("L").save(p)),
    ("_rgba.png", lambda rgb, p: Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 200, np.uint8)])).save(p)),
    ("_16bit.png", lambda rgb, p: cv2.imwrite(str(p), cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.uint16) * 257)),
    (".bmp", lambda rgb, p: Image.fromarray(rgb).save(p)),
    (".webp", lambda rgb, p: Image.fromarray(rgb).save(p)),
    ("_palette.png", lambda rgb, p: Image.fromarray(rgb).convert("P").save(p)),
    ("_16bit_rgb.png", lambda rgb, p: cv2.imwrite(str(p), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR).astype(np.uint16) * 257)),
    ("_1x1.png", lambda rgb, p: Image.fromarray(np.ascontiguousarray(rgb[:1, :1])).save(p)),
    ("_7x5.png", lambda rgb, p: Image.fromarray(np.ascontiguousarray(rgb[:7, :5])).save(p)),
]


def _write_valid(d: Path, base: np.ndarray, i: int) -> Path:
    """One of several valid encodings/sizes of a real photo with a person (RGB `base`)."""
    suffix, write = VALID_KINDS[i % len(VALID_KINDS)]
    rgb = cv2.resize(base, (base.shape[1] * (6 + i % 5) // 10, base.shape[0] * (6 + i % 5) // 10))
    p = d / f"valid_{i:03d}{suffix}"
    write(rgb, p)
    return p


def _write_broken(d: Path, good_jpg: bytes, good_png: bytes, i: int) -> Path:
    kind = i % 7
    names = ["empty.jpg", "truncated.jpg", "truncated.png", "random.jpg", "notes.txt", "badheader.png", "garbage.mp4"]
    p = d / f"broken_{i:03d}_{names[kind]}"
    data = [
        b"",
        good_jpg[: len(good_jpg) // 2],
        good_png[: len(good_png) // 3],
        np.random.default_rng(i).integers(0, 256, 5000, dtype=np.uint8).tobytes(),
        b"this is not an image\n",
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 64,
        b"not a video at all" * 10,
    ][kind]
    p.write_bytes(data)
    return p


@pytest.mark.data
def test_200_mixed_inputs_no_crash_every_bad_one_reported(tmp_path: Path, coco_mini: Path, weights, capsys) -> None:
    src = coco_mini / "train2017" / PERSON_IMAGE
    base = np.array(Image.open(src).convert("RGB"))
    good_jpg = src.read_bytes()
    ok, png = cv2.imencode(".png", base)
    inputs = tmp_path / "in"
    inputs.mkdir()
    valid = [_write_valid(inputs, base, i) for i in range(129)]
    big = inputs / "valid_huge_10000x10000.jpg"
    cv2.imwrite(str(big), cv2.resize(base, (10000, 10000), interpolation=cv2.INTER_NEAREST), [cv2.IMWRITE_JPEG_QUALITY, 50])
    valid.append(big)
    broken = [_write_broken(inputs, good_jpg, png.tobytes(), i) for i in range(70)]
    assert len(valid) + len(broken) == 200
    before = {p: p.read_bytes() for p in inputs.iterdir() if p.stat().st_size < 1_000_000}

    out = tmp_path / "out"
    code = main(["predict", str(inputs), "--model", "movenet-multipose", "--score-thr", "0", "--out", str(out)])
    err = capsys.readouterr().err

    assert code == 1  # something failed, and the exit code says so
    for p in broken:
        lines = [ln for ln in err.splitlines() if p.name in ln]
        assert len(lines) == 1, f"{p.name} reported {len(lines)} times"
    for p in valid:
        assert p.name not in err
    ids = json.loads((out / "image_ids.json").read_text())
    assert sorted(Path(s).name for s in ids.values()) == sorted(p.name for p in valid)
    results = json.loads((out / "results.json").read_text())
    assert {r["image_id"] for r in results} == {int(k) for k in ids}
    assert all(len(r["keypoints"]) == 51 for r in results)
    assert {p: p.read_bytes() for p in before} == before  # inputs untouched
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]  # no temp files left behind


@pytest.mark.data
def test_topdown_with_gt_boxes_render_openpose_and_video(tmp_path: Path, coco_mini: Path, weights, capsys) -> None:
    images = sorted((coco_mini / "train2017").glob("*.jpg"))[:6]
    video = tmp_path / "clip.mp4"
    frame = cv2.imread(str(coco_mini / "train2017" / PERSON_IMAGE))
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (frame.shape[1], frame.shape[0]))
    for k in range(5):
        writer.write(np.roll(frame, 8 * k, axis=1))
    writer.release()
    gt = coco_mini / "annotations" / "person_keypoints_train2017.json"
    out = tmp_path / "out"
    code = main(["predict", *map(str, images), "--boxes", str(gt), "--render", "--openpose", "--out", str(out), "--quiet"])
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    gt_data = json.loads(gt.read_text())
    wanted = {a["image_id"] for a in gt_data["annotations"] if not a["iscrowd"] and a["num_keypoints"] > 0}
    wanted &= {int(p.stem) for p in images}
    assert {r["image_id"] for r in results} == wanted  # GT boxes -> a pose for each annotated image
    assert len(list((out / "render").glob("*.jpg"))) == len(images)
    assert len(list((out / "openpose").glob("*.json"))) == len(images)

    out_v = tmp_path / "out_video"
    assert main(["predict", str(video), "--render", "--out", str(out_v), "--quiet"]) == 0
    ids = json.loads((out_v / "image_ids.json").read_text())
    assert len(ids) == 5
    cap = cv2.VideoCapture(str(out_v / "render" / f"clip{RENDER_SUFFIX}"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
    cap.release()
    *_, summary, renders = capsys.readouterr().out.strip().splitlines()
    assert summary.startswith("5 images,") and "img/s" in summary
    assert renders.startswith("renders -> ") and VIDEO_CODECS[pick_video_codec()][2] in renders  # the codec chosen, reported


@pytest.mark.slow
@pytest.mark.data
def test_topdown_on_detection_results_file_scores_like_measured(tmp_path: Path, data_dir: Path, weights) -> None:
    """The standard top-down protocol: person boxes from a COCO detection-results file (AP_H 56 boxes)."""
    fx = data_dir / "fixtures" / "coco"
    out = tmp_path / "out"
    code = main(
        ["predict", *map(str, sorted(fx.glob("*.jpg"))), "--boxes", str(fx / "test_coco_det_AP_H_56.json"), "--out", str(out), "--quiet"]
    )
    assert code == 0
    from posekit.evaluation.coco import evaluate_coco_keypoints

    stats = evaluate_coco_keypoints(fx / "test_coco.json", out / "results.json")
    assert stats["AP"] >= 0.65  # measured 0.744 (README); a regression in crops/decoding drops it far below


def test_demo_photo_shows_its_people(weights, coco_mini: Path) -> None:
    """`make demo` runs the default mode on assets/demo.jpg (COCO train2017 000000000790, CC BY 2.0): four
    people around a table. Every person returned is one of them and each of them is found (their labelled
    boxes from coco-mini's annotations, IoU >= 0.5); checked by eye too (README)."""
    from posekit.api import PoseEstimator
    from posekit.postprocess.nms import box_iou

    gt = json.loads((coco_mini / "annotations" / "person_keypoints_train2017.json").read_text())
    people = np.array([[x, y, x + w, y + h] for a in gt["annotations"] if a["image_id"] == 790 and a["num_keypoints"] >= 8
                       for x, y, w, h in [a["bbox"]]], np.float32)  # fmt: skip
    assert len(people) == 4
    poses = PoseEstimator()(Path(__file__).resolve().parents[1] / "assets" / "demo.jpg")
    iou = box_iou(poses.boxes, people)
    assert len(poses) == 4 and (iou.max(1) >= 0.5).all() and (iou.max(0) >= 0.5).all()
    assert (poses.scores >= 0.5).all()  # the default mode's output threshold
