"""COCO results scored in bounded memory (`evaluation.streaming`): the same numbers as scoring the whole
list, any chunk boundary, every result still checked, malformed files refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from posekit.data.datasets import DatasetError
from posekit.evaluation import streaming
from posekit.evaluation.coco import evaluate_coco_keypoints
from posekit.evaluation.run import evaluate_files
from posekit.evaluation.streaming import iter_json_array, top_results

pytestmark = pytest.mark.data


def _noisy_results(gt: dict, per_person: int, seed: int = 0) -> list[dict]:
    """`per_person` jittered copies of every labelled person, random scores (many ties: 2 decimals)."""
    rng = np.random.default_rng(seed)
    out = []
    for a in gt["annotations"]:
        if not a.get("num_keypoints"):
            continue
        kp = np.array(a["keypoints"], np.float64).reshape(-1, 3)
        for _ in range(per_person):
            xy = kp[:, :2] + rng.normal(0, 4 + 20 * rng.uniform(), kp[:, :2].shape)
            out.append({"image_id": a["image_id"], "category_id": 1, "score": round(float(rng.uniform()), 2),
                        "keypoints": np.c_[xy, np.ones(len(kp))].reshape(-1).round(2).tolist()})  # fmt: skip
    return out


def test_streamed_file_scores_exactly_as_the_whole_list(data_dir: Path, tmp_path: Path, monkeypatch) -> None:
    gt_path = data_dir / "fixtures" / "coco" / "test_coco.json"
    gt = json.loads(gt_path.read_text())
    results = _noisy_results(gt, 12)  # > 20 per image on the images with several persons
    assert max(np.unique([r["image_id"] for r in results], return_counts=True)[1]) > 20
    whole = evaluate_coco_keypoints(gt, results)
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    monkeypatch.setattr(streaming, "CHUNK", 97)  # items split across many chunk boundaries
    _, streamed = evaluate_files(gt_path, path)
    assert streamed == whole and 0.1 < whole["AP"] < 0.99


def test_top_results_keeps_cocoevals_detections_in_bounded_memory() -> None:
    items = ({"image_id": i % 3, "score": (i * 7919 % 1000) / 1000, "n": i} for i in range(300_000))
    kept = top_results(items, lambda r, i: r, per_image=20)
    assert len(kept) == 60
    for image in range(3):
        mine = [r for r in kept if r["image_id"] == image]
        every = sorted((r for r in ({"image_id": i % 3, "score": (i * 7919 % 1000) / 1000, "n": i} for i in range(300_000))
                        if r["image_id"] == image), key=lambda r: -r["score"])[:20]  # fmt: skip  (stable: ties by file order)
        assert sorted(r["n"] for r in mine) == sorted(r["n"] for r in every)
    assert [r["n"] for r in kept] == sorted(r["n"] for r in kept)  # file order


def test_streaming_reader_parses_as_json_does_and_refuses_bad_files(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(streaming, "CHUNK", 5)
    data = [{"a": 1.25e3, "b": [1, 2, {"c": "x]"}]}, 12345678, "s,t", [], {}]
    path = tmp_path / "r.json"
    path.write_text("\ufeff " + json.dumps(data, indent=1) + "\n", encoding="utf-8")
    assert list(iter_json_array(path, "--results")) == data
    for text, reason in (("[{\"a\": 1}, {\"b\"", "truncated"), ("[1, 2", "never closes"), ("[1 2]", "expected ','"),
                         ("[1] x", "extra data"), ("", "empty"), ("[1, 2,]", "not valid JSON")):  # fmt: skip
        path.write_text(text)
        with pytest.raises(DatasetError, match=reason):
            list(iter_json_array(path, "--results"))
    path.write_bytes(b'[{"a": "\xff"}]')
    with pytest.raises(DatasetError, match="UTF-8"):
        list(iter_json_array(path, "--results"))


def test_a_bad_result_past_the_kept_ones_is_still_refused(data_dir: Path, tmp_path: Path) -> None:
    gt_path = data_dir / "fixtures" / "coco" / "test_coco.json"
    results = _noisy_results(json.loads(gt_path.read_text()), 30)
    results[-1] = {**results[-1], "score": 0.0, "keypoints": [float("nan")] * 51}  # lowest score: would be pruned
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))  # Python writes NaN, which JSON readers accept
    with pytest.raises(DatasetError, match=f"result {len(results) - 1}: 'keypoints' must be 51 finite numbers"):
        evaluate_files(gt_path, path)
