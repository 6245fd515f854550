"""Outputs are never lost (kill -9, SIGTERM, a reused --out) and the API follows the field's conventions
(BGR arrays, lists, streams, tracking, `device=`, hostile arrays)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from posekit.pipeline.writers import VIDEO_CODECS, pick_video_codec

RENDER_SUFFIX = VIDEO_CODECS[pick_video_codec()][1]  # .mp4 (H.264) or .webm (VP8), as this OpenCV can encode

pytestmark = [pytest.mark.weights, pytest.mark.data]

PHOTO = "000000196141.jpg"  # fixtures/coco: several people


def _start(args: list[str], tmp_path: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "posekit.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            cwd=tmp_path)  # fmt: skip


def _wait_for_lines(path: Path, n: int, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists() and path.read_bytes().count(b"\n") >= n:
            return
        if proc.poll() is not None:
            pytest.fail(f"finished before {n} lines: {proc.stderr.read().decode()}")
        time.sleep(0.05)
    pytest.fail(f"{path} did not reach {n} lines")


def _jsonl(path: Path) -> list[dict]:
    data = path.read_bytes()
    assert data.endswith(b"\n"), "a partial last line"
    return [json.loads(line) for line in data.splitlines()]


@pytest.fixture(scope="module")
def many_images(coco_mini: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("images")
    for p in sorted((coco_mini / "train2017").glob("*.jpg"))[:40]:
        (d / p.name).symlink_to(p.resolve())  # POSEKIT_TEST_DATA may be relative (make test: ../shared/data)
    return d


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_predict_killed_leaves_valid_consistent_outputs(many_images: Path, tmp_path: Path, sig: int, weights) -> None:
    out = tmp_path / "out"
    proc = _start(["predict", str(many_images), "--model", "movenet-multipose", "--out", str(out), "--quiet"], tmp_path)
    _wait_for_lines(out / "results.jsonl", 3, proc)
    proc.send_signal(sig)
    code = proc.wait(60)
    records = _jsonl(out / "results.jsonl")
    assert 3 <= len(records) < 40 and len({r["image_id"] for r in records}) == len(records)
    assert all(r["image_id"] == res["image_id"] for r in records for res in r["results"])
    if sig == signal.SIGKILL:
        assert code == -signal.SIGKILL and not (out / "results.json").exists()  # nothing claims to be complete
        return
    assert code == 130, proc.stderr.read().decode()
    ids = json.loads((out / "image_ids.json").read_text())
    results = json.loads((out / "results.json").read_text())
    assert ids == {str(r["image_id"]): r["source"] for r in records}  # the same images in both files
    assert results == [res for r in records for res in r["results"]]
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]


def test_track_sigterm_finishes_the_files_of_the_frames_done(data_dir: Path, tmp_path: Path, weights) -> None:
    out = tmp_path / "out"
    video = (data_dir / "videos" / "demo.mp4").resolve()  # the subprocess runs in tmp_path
    proc = _start(["track", str(video), "--model", "movenet-multipose", "--out", str(out), "--quiet"], tmp_path)
    _wait_for_lines(out / "frames.jsonl", 5, proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 130
    frames = _jsonl(out / "frames.jsonl")
    pt = json.loads((out / "posetrack.json").read_text())
    assert [f["image"] for f in frames] == pt["images"] and 5 <= len(frames) < 280
    assert json.loads((out / "results.json").read_text()) == [r for f in frames for r in f["results"]]
    cap = cv2.VideoCapture(str(out / "render" / f"demo{RENDER_SUFFIX}"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == len(frames)  # the render is finished too
    cap.release()


def test_reused_out_gets_a_numbered_folder_unless_exist_ok(data_dir: Path, tmp_path: Path, weights, capsys) -> None:
    from posekit.cli import main

    photo = data_dir / "fixtures" / "coco" / PHOTO
    out = tmp_path / "out"
    assert main(["predict", str(photo), "--out", str(out), "--quiet"]) == 0
    first = (out / "results.json").read_bytes()
    assert main(["predict", str(tmp_path / "typo.jpg"), "--out", str(out), "--quiet"]) == 1
    assert (out / "results.json").read_bytes() == first  # the good run's results survive a typo'd re-run
    assert not (tmp_path / "out2").exists()  # a run whose every input failed leaves no folder behind
    assert "typo.jpg" in capsys.readouterr().err
    assert main(["predict", str(photo), "--out", str(out), "--exist-ok", "--quiet"]) == 0
    assert not (tmp_path / "out3").exists() and (out / "results.json").read_bytes() == first


def test_track_renders_every_frame_of_a_folder_of_mixed_sizes(data_dir: Path, tmp_path: Path, weights) -> None:
    from posekit.cli import main

    frames = tmp_path / "frames"
    frames.mkdir()
    photo = cv2.imread(str(data_dir / "fixtures" / "coco" / PHOTO))
    for k, scale in enumerate([1.0, 0.5, 0.8, 1.0, 0.6]):
        cv2.imwrite(str(frames / f"{k:03d}.jpg"), cv2.resize(photo, None, fx=scale, fy=scale * (1 + 0.1 * k)))
    out = tmp_path / "out"
    assert main(["track", str(frames), "--model", "movenet-multipose", "--out", str(out), "--quiet"]) == 0
    cap = cv2.VideoCapture(str(out / "render" / f"frames{RENDER_SUFFIX}"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
    cap.release()


# --------------------------------------------------------------------------- API
@pytest.fixture(scope="module")
def estimator(weights):  # noqa: ANN001, ANN201
    from posekit import PoseEstimator

    return PoseEstimator("movenet-multipose")


def test_bgr_rgb_pil_and_path_give_the_same_poses(estimator, data_dir: Path) -> None:  # noqa: ANN001
    path = data_dir / "fixtures" / "coco" / PHOTO
    reference = estimator(path)
    assert len(reference) >= 2
    for poses in (estimator(cv2.imread(str(path))), estimator(np.array(Image.open(path)), rgb=True), estimator(Image.open(path))):
        np.testing.assert_array_equal(poses.keypoints, reference.keypoints)
    swapped = estimator(np.array(Image.open(path)))  # an RGB array read as BGR: the colours are wrong, so are the poses
    assert len(swapped) != len(reference) or np.abs(swapped.keypoints - reference.keypoints).max() > 1.0


def test_lists_streams_and_tracks(estimator, data_dir: Path, tmp_path: Path) -> None:  # noqa: ANN001
    path = data_dir / "fixtures" / "coco" / PHOTO
    bgr = cv2.imread(str(path))
    out = estimator([path, bgr])
    assert isinstance(out, list) and len(out) == 2 and np.array_equal(out[0].keypoints, out[1].keypoints)
    frames = list(estimator.stream(data_dir / "fixtures" / "coco"))  # a folder
    assert len(frames) == 4 and frames[0].meta["source"].endswith("000000000785.jpg")
    items = [bgr, None, np.zeros(5), bgr]  # bad items are reported and skipped, the rest go on
    assert len(list(estimator.stream(items))) == 2
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (bgr.shape[1], bgr.shape[0]))
    for k in range(6):
        writer.write(np.roll(bgr, 6 * k, axis=1))
    writer.release()
    tracked = list(estimator.track(str(video)))
    assert len(tracked) == 6 and all(p.track_ids is not None for p in tracked)
    assert set(tracked[0].track_ids) == set(tracked[-1].track_ids)  # the same people keep their ids
    image = tracked[0].plot(np.roll(bgr, 0, axis=1))
    assert image.shape == bgr.shape and not np.array_equal(image, bgr)
    saved = tracked[0].save(tmp_path / "poses.json")
    assert [p["track_id"] for p in json.loads(saved.read_text())] == tracked[0].track_ids.tolist()
    assert cv2.imread(str(tracked[0].save(tmp_path / "render.png", bgr))).shape == bgr.shape


def test_hostile_arrays_and_devices_are_one_clear_error(estimator) -> None:  # noqa: ANN001
    from posekit import PoseEstimator
    from posekit.errors import PosekitError

    hostile = {
        "empty": np.zeros((0, 4, 3), np.uint8), "1-D": np.zeros(5), "4-D": np.zeros((2, 4, 4, 3)), "5-channel": np.zeros((4, 4, 5)),
        "None": None, "bytes": b"\xff\xd8\xff", "object": np.array([None] * 12).reshape(2, 2, 3), "NaN": np.full((8, 8, 3), np.nan),
    }  # fmt: skip
    for name, value in hostile.items():
        with pytest.raises(PosekitError) as e:
            estimator(value)
        assert "image" in str(e.value) and "\n" not in str(e.value), name
    with pytest.raises(PosekitError, match="non-finite"):
        estimator(np.zeros((64, 64, 3), np.uint8), boxes=[[0, 0, np.nan, 10]])
    assert len(estimator(np.zeros((64, 64), np.uint8))) == 0  # gray: valid, nobody there
    cpu = PoseEstimator("movenet-multipose", device="cpu", backend="torch")
    assert cpu.device.type == "cpu"
    for device, says in [("nonsense", "not a torch device"), ("cuda:7", "cuda")]:
        if device.startswith("cuda") and __import__("torch").cuda.device_count() > 7:
            continue
        with pytest.raises(PosekitError, match=says):
            PoseEstimator("movenet-multipose", device=device)
