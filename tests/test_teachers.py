"""Teachers: MoveNet's exposed heatmaps reproduce its own keypoints; image-frame heatmaps; the cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from posekit.distill.cache import TeacherCache
from posekit.distill.teachers import MoveNetTeacher, movenet_keypoints
from posekit.pipeline.readers import read_image

pytestmark = [pytest.mark.weights, pytest.mark.data]


def _persons(coco_mini: Path, n_images: int = 6) -> list[tuple[np.ndarray, np.ndarray]]:
    gt = json.loads((coco_mini / "annotations" / "person_keypoints_train2017.json").read_text())
    boxes: dict[int, list] = {}
    for a in gt["annotations"]:
        if a["num_keypoints"] >= 8 and not a["iscrowd"]:
            x, y, w, h = a["bbox"]
            boxes.setdefault(a["image_id"], []).append([x, y, x + w, y + h])
    names = {img["id"]: img["file_name"] for img in gt["images"]}
    return [(read_image(coco_mini / "train2017" / names[i]), np.array(b, np.float32)) for i, b in list(boxes.items())[:n_images]]


@pytest.fixture(scope="module")
def thunder(weights) -> MoveNetTeacher:
    return MoveNetTeacher("movenet-thunder")


def test_heatmap_argmax_and_offsets_reproduce_the_graph_keypoints(thunder: MoveNetTeacher, coco_mini: Path) -> None:
    checked = agree = 0
    for image, boxes in _persons(coco_mini):
        crops, _ = thunder.crop_inputs(image, boxes)
        raw = thunder.raw(crops)
        side = raw["heatmaps"].shape[1]
        for i in range(len(crops)):
            yx, scores = movenet_keypoints(raw["heatmaps"][i], raw["centre"][i], raw["regress"][i], raw["offsets"][i], thunder.centre_weight)
            np.testing.assert_allclose(yx / side, raw["keypoints"][i, :, :2], atol=1e-5)
            np.testing.assert_allclose(scores, raw["keypoints"][i, :, 2], atol=1e-6)
            # The plain argmax of a confident heatmap is the same peak (the distance weighting only
            # arbitrates between people in the crop).
            hm = raw["heatmaps"][i]
            plain = np.stack(np.unravel_index(hm.reshape(-1, 17).argmax(0), hm.shape[:2]), -1)
            confident = scores > 0.5
            checked += confident.sum()
            agree += (np.abs(plain - np.floor(yx + 1e-6)).max(-1)[confident] <= 1).sum()
    assert checked > 50 and agree / checked > 0.95, (agree, checked)


def test_teacher_output_in_crop_and_image_frames(thunder: MoveNetTeacher, coco_mini: Path) -> None:
    image, boxes = _persons(coco_mini, 1)[0]
    out = thunder(image, boxes)
    n = len(boxes)
    assert out.keypoints.shape == (n, 17, 2) and out.heatmaps.shape == (n, 17, 64, 64) and out.spec == "coco17"
    # crop -> image through the crop matrices
    back = out.keypoints_crop @ np.linalg.inv(np.vstack([out.crop_matrices[0], [0, 0, 1]]))[:2, :2].T
    assert back.shape == (n, 17, 2)
    for i in range(n):
        img_hm = out.heatmaps_in_image(i, image.shape[:2], stride=4)
        assert img_hm.shape == (17, -(-image.shape[0] // 4), -(-image.shape[1] // 4))
        for j in np.flatnonzero(out.scores[i] > 0.5):
            y, x = np.unravel_index(img_hm[j].argmax(), img_hm[j].shape)
            peak = np.array([x * 4 + 1.5, y * 4 + 1.5])  # grid pixel centre in image pixels
            scale = out.crop_matrices[i][0, 0]  # crop pixels per image pixel
            assert np.linalg.norm(peak - out.keypoints[i, j]) < 4 * 4 / scale + 4, (i, j)


def test_teacher_cache_reuses_checks_and_recomputes(thunder: MoveNetTeacher, coco_mini: Path, tmp_path: Path) -> None:
    image, boxes = _persons(coco_mini, 1)[0]
    cache = TeacherCache(tmp_path, thunder)
    first = cache(image, boxes)
    again = TeacherCache(tmp_path, thunder)(image, boxes)  # a new process would see the same files
    np.testing.assert_array_equal(first.heatmaps, again.heatmaps)
    entry = cache.path(cache.key(image, boxes))
    assert entry.exists() and cache.misses == 1
    second = TeacherCache(tmp_path, thunder)
    second(image, boxes)
    assert second.hits == 1 and second.misses == 0
    entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])  # truncated, as by a kill -9 of a copy
    third = TeacherCache(tmp_path, thunder)
    out = third(image, boxes)
    assert third.rejected == 1 and third.misses == 1
    np.testing.assert_array_equal(out.keypoints, first.keypoints)
    other_boxes = boxes + 3.0
    assert cache.key(image, other_boxes) != cache.key(image, boxes)


def test_checkpoint_teacher_heatmaps_and_keypoints_agree(coco_mini: Path, tmp_path: Path) -> None:
    from posekit.distill.teachers import load_teacher
    from posekit.engine.config import load_config
    from posekit.engine.trainer import Trainer

    root = Path(__file__).resolve().parents[1]
    cfg = load_config(root / "configs" / "overfit_coco_mini.yaml", {"data.input_size": [64, 96], "model.head_channels": 16,
                                                                   "model.flip_test": True, "train.batch_size": 4, "train.steps": 30})  # fmt: skip
    Trainer(cfg, tmp_path, quiet=True).train()
    teacher = load_teacher(tmp_path / "checkpoint.pt")
    image, boxes = _persons(coco_mini, 1)[0]
    out = teacher(image, boxes)
    n = len(boxes)
    assert out.heatmaps.shape == (n, 17, 24, 16) and out.keypoints.shape == (n, 17, 2) and teacher.teacher_id.startswith("ckpt-")
    # The keypoints are exactly the decoding of the heatmaps handed out (flip-averaged, DARK).
    codec = teacher.model.codec
    xy, scores = codec.decode(out.heatmaps, "dark")
    np.testing.assert_allclose(xy, out.keypoints_crop, atol=1e-4)
    np.testing.assert_allclose(np.clip(scores, 0, 1), out.scores, atol=1e-6)  # scores kept in [0, 1]
    # heatmap_matrix is the codec's heatmap -> crop mapping: argmax peaks land where quarter decoding puts them.
    flat = out.heatmaps.reshape(n, 17, -1).argmax(-1)
    peaks = np.stack([flat % 16, flat // 16], -1).astype(np.float64)
    in_crop = peaks @ out.heatmap_matrix[:, :2].T + out.heatmap_matrix[:, 2]
    quarter, _ = codec.decode(out.heatmaps, "quarter")
    assert np.abs(in_crop - quarter).max() <= 0.25 * out.heatmap_matrix[0, 0] + 1e-3
