"""`posekit eval`: pick the dataset's metric from the ground-truth file and score a results file."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from posekit.data.datasets import DatasetError, Sample, detect_spec, read_coco, read_lsp, read_mpii, read_posetrack, to_coco_dict
from posekit.data.specs import convert_keypoints, get_spec
from posekit.evaluation.checks import (
    check_coco_gt,
    check_result,
    check_results,
    flat_keypoints,
    gt_ids_by_name,
    ids_by_file,
    read_json_file,
)
from posekit.evaluation.coco import COCO_MAX_DETS, evaluate_coco_keypoints, evaluate_crowdpose, evaluate_parts
from posekit.evaluation.pck import head_sizes, lsp_pck, mpii_pckh
from posekit.evaluation.posetrack import FramePoses, drop_ignored, ignore_polygons, posetrack_ap, posetrack_mota
from posekit.evaluation.streaming import NotAnArray, iter_json_array, top_results
from posekit.structures import WHOLEBODY_RESULT_FIELDS

WHOLEBODY_PART_FIELDS = tuple(key for key, _ in WHOLEBODY_RESULT_FIELDS[1:])  # foot_kpts, face_kpts, ... (not "keypoints")


def read_gt_json(gt: Path) -> Any:
    """The ground truth's JSON, read once for detection and checks; None for a PoseTrack folder or LSP .mat."""
    return None if gt.is_dir() or gt.suffix == ".mat" else read_json_file(gt, "--gt")


def detect_dataset(gt: Path, data: Any = None) -> str:
    """'coco', 'crowdpose', 'wholebody', 'halpe', 'posetrack', 'mpii' or 'lsp' from the GT file itself
    (`data`: its JSON when already read)."""
    if gt.is_dir():
        return "posetrack"
    if gt.suffix == ".mat":
        return "lsp"
    data = read_json_file(gt, "--gt") if data is None else data
    if isinstance(data, list):
        return "mpii"
    if not isinstance(data, dict):
        raise DatasetError(f"--gt {gt}: expected a COCO-style annotation object, got {type(data).__name__}")
    images = data.get("images")
    first = images[0] if isinstance(images, list) and images and isinstance(images[0], dict) else {}
    if "crowdIndex" in first:
        return "crowdpose"
    if "vid_id" in first:
        return "posetrack"
    spec = detect_spec(data, gt)  # the JSON is already loaded: no second read through read_coco
    return {"coco_wholebody133": "wholebody", "halpe136": "halpe"}.get(spec, "coco")


def _by_image(results: list[dict], k: int) -> dict[Any, list[tuple[np.ndarray, float, Any]]]:
    out: dict[Any, list] = defaultdict(list)
    for r in results:
        out[r["image_id"]].append((np.asarray(r["keypoints"], np.float32).reshape(k, 3), float(r.get("score", 1.0)), r.get("track_id")))
    return out


def _assign(sample: Sample, preds: list, norm: np.ndarray) -> np.ndarray:
    """Predicted keypoints [N,K,2] for the GT persons of `sample` (Hungarian on normalised distance)."""
    gt = np.stack([i.keypoints for i in sample.instances])
    out = np.full((len(gt), gt.shape[1], 2), np.inf, np.float32)
    if not preds:
        return out
    pk = np.stack([p[0][:, :2] for p in preds])
    vis = gt[:, None, :, 2] > 0
    d = np.linalg.norm(gt[:, None, :, :2] - pk[None], axis=-1) / np.maximum(norm, 1e-9)[:, None, None]
    cost = np.where(vis, d, 0).sum(-1) / np.maximum(vis.sum(-1), 1)
    rows, cols = linear_sum_assignment(cost)
    out[rows] = pk[cols]
    return out


def _pck_inputs(samples: list[Sample], results: list[dict], norm_of) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[np.ndarray]]:
    k = get_spec(samples[0].spec).num_keypoints
    by_image = _by_image(results, k)
    preds, gts, vis, norms = [], [], [], []
    for s in samples:
        if not s.instances:
            continue
        norm = norm_of(s)
        preds.append(_assign(s, by_image.get(s.image_id, []), norm))
        g = np.stack([i.keypoints for i in s.instances])
        gts.append(g[:, :, :2])
        vis.append(g[:, :, 2] > 0)
        norms.append(norm)
    return np.concatenate(preds), np.concatenate(gts), np.concatenate(vis), norms


def _mpii_head_size(s: Sample) -> np.ndarray:
    boxes = []
    for inst in s.instances:
        if "head_box" in inst.extras:
            boxes.append(inst.extras["head_box"])
        else:  # no head box in the file: a square of side |head_top - upper_neck| centred between them
            top, neck = inst.keypoints[9, :2], inst.keypoints[8, :2]
            side = float(np.linalg.norm(top - neck))
            c = (top + neck) / 2
            boxes.append(np.array([c[0] - side / 2, c[1] - side / 2, c[0] + side / 2, c[1] + side / 2]))
    return head_sizes(np.stack(boxes).astype(np.float64))


def _torso(s: Sample) -> np.ndarray:
    names = get_spec(s.spec).keypoints
    ls, rh = names.index("left_shoulder"), names.index("right_hip")
    return np.array([np.linalg.norm(i.keypoints[ls, :2] - i.keypoints[rh, :2]) for i in s.instances])


def _frames(samples: list[Sample], results: list[dict] | None) -> list[FramePoses]:
    k = get_spec("posetrack17").num_keypoints
    by_image = _by_image(results, k) if results is not None else None
    frames = []
    for s in samples:
        polygons = ignore_polygons(s.extras)
        if by_image is None:
            kp = np.stack([i.keypoints for i in s.instances]) if s.instances else np.zeros((0, k, 3), np.float32)
            heads = np.stack([i.extras.get("head_box", i.box) for i in s.instances]) if s.instances else np.zeros((0, 4))
            ids = np.array([i.track_id if i.track_id is not None else n for n, i in enumerate(s.instances)], np.int64)
            frame = FramePoses(kp[:, :, :2], (kp[:, :, 2] > 0).astype(np.float32), ids, heads)
            frames.append(drop_ignored(frame, polygons, frame.scores > 0))
        else:
            preds = by_image.get(s.image_id, [])
            kp = np.stack([p[0] for p in preds]) if preds else np.zeros((0, k, 3), np.float32)
            ids = np.array([p[2] if p[2] is not None else n for n, p in enumerate(preds)], np.int64)
            frames.append(drop_ignored(FramePoses(kp[:, :, :2], kp[:, :, 2], ids), polygons, np.ones(kp.shape[:2], bool)))
    return frames


SPEC_OF_DATASET = {
    "coco": "coco17", "crowdpose": "crowdpose14", "wholebody": "coco_wholebody133", "halpe": "halpe136",
    "mpii": "mpii16", "lsp": "lsp14", "posetrack": "posetrack17",
}  # fmt: skip
DATASET_OF_SPEC = {
    "coco17": "coco", "crowdpose14": "crowdpose", "coco_wholebody133": "wholebody", "halpe136": "halpe",
    "mpii16": "mpii", "lsp14": "lsp", "posetrack17": "posetrack",
}  # fmt: skip


def evaluate_files(gt: str | Path, results: str | Path | list, spec: str | None = None, gt_data: Any = None) -> tuple[str, dict[str, Any]]:
    """Score `results` against `gt` with the dataset's own metric; returns (dataset, stats).

    `spec` forces the keypoint spec (else detected from the GT file); a COCO-format spec without a
    dataset metric of its own (e.g. halpe26) is scored by COCO AP with that spec's sigmas."""
    gt = Path(gt)
    gt_data = read_gt_json(gt) if gt_data is None else gt_data  # `gt_data`: the GT's JSON when the caller has read it
    dataset = DATASET_OF_SPEC.get(spec, "coco") if spec else detect_dataset(gt, gt_data)
    spec = spec or SPEC_OF_DATASET[dataset]
    k = get_spec(spec).num_keypoints
    where = results if isinstance(results, (str, Path)) else "(results)"
    if dataset in ("coco", "crowdpose") and isinstance(results, (str, Path)):
        raw = _coco_results(Path(results), k)
    else:
        raw = read_json_file(results, "--results") if isinstance(results, (str, Path)) else results
    if dataset in ("coco", "crowdpose"):
        gt_data = check_coco_gt(gt_data, gt, k)
        if not any(not a.get("iscrowd", 0) and a.get("num_keypoints", 1) > 0 for a in gt_data["annotations"]):
            raise DatasetError(f"--gt {gt}: no person with labelled keypoints (only crowd regions, or none): nothing to score")
        res = check_results(raw, where, k, {img["id"] for img in gt_data["images"]}, gt_ids_by_name(gt_data["images"]))
        if dataset == "crowdpose":
            return dataset, evaluate_crowdpose(gt_data, res, np.array(get_spec("crowdpose14").sigmas))
        return dataset, evaluate_coco_keypoints(gt_data, res, np.array(get_spec(spec).sigmas))
    if dataset in ("wholebody", "halpe"):
        samples = read_coco(gt, spec=spec)
    elif dataset == "posetrack":
        samples = [s for s in read_posetrack(gt) if s.extras.get("is_labeled", True)]
    else:
        samples = read_mpii(gt) if dataset == "mpii" else read_lsp(gt)
    if not samples:
        raise DatasetError(f"--gt {gt}: no images to score")
    res = check_results(raw, where, k, {s.image_id for s in samples}, ids_by_file((str(s.image_path), s.image_id) for s in samples),
                        need_score=dataset not in ("mpii", "lsp"))
    if dataset in ("wholebody", "halpe"):
        return dataset, evaluate_parts(to_coco_dict(samples), res, spec, np.array(get_spec(spec).sigmas))
    if dataset == "mpii":
        pred, g, vis, norms = _pck_inputs(samples, res, _mpii_head_size)
        return dataset, mpii_pckh(pred, g, vis, np.concatenate(norms))
    if dataset == "lsp":
        pred, g, vis, _ = _pck_inputs(samples, res, _torso)
        return dataset, lsp_pck(pred, g, vis, get_spec("lsp14").keypoints)
    if dataset == "posetrack":
        names = get_spec("posetrack17").keypoints
        gt_frames, pred_frames = _frames(samples, None), _frames(samples, res)
        return dataset, {"AP": posetrack_ap(gt_frames, pred_frames, names), "MOTA": posetrack_mota(gt_frames, pred_frames, names)}
    raise DatasetError(f"unknown dataset kind {dataset!r}")


def _coco_results(path: Path, k: int) -> Any:
    """A COCO results file in bounded memory (`evaluation.streaming`): every result checked, the 20 per image
    COCOeval scores kept. Other JSON (PoseTrack-style {"annotations": ...}) is read whole."""
    try:
        items = iter_json_array(path, "--results")
        return top_results(items, lambda r, i: check_result(r, f"--results {path}: result {i}", k), COCO_MAX_DETS)
    except NotAnArray:
        return read_json_file(path, "--results")


METRIC_PREFIX = {"coco": "coco/", "crowdpose": "crowdpose/", "lsp": "pck@0.2/", "mpii": "pckh@0.5/"}


def evaluate_samples(samples: list[Sample], results: list[dict]) -> dict[str, float]:
    """Score COCO-style `results` against already-read ground-truth samples with their dataset's metric
    (what the trainer's validation uses): COCO AP (the spec's sigmas), LSP PCK@0.2, MPII PCKh@0.5.
    Keys carry the metric as a prefix, e.g. 'coco/AP', 'pck@0.2/Mean'."""
    spec = samples[0].spec if samples else "coco17"
    dataset = DATASET_OF_SPEC.get(spec, "coco")
    if dataset == "lsp":
        pred, g, vis, _ = _pck_inputs(samples, results, _torso)
        stats = lsp_pck(pred, g, vis, get_spec(spec).keypoints)
    elif dataset == "mpii":
        pred, g, vis, norms = _pck_inputs(samples, results, _mpii_head_size)
        stats = mpii_pckh(pred, g, vis, np.concatenate(norms))
    elif dataset == "crowdpose":
        stats = evaluate_crowdpose(to_coco_dict(samples), results, np.array(get_spec(spec).sigmas))
    else:
        dataset = "coco"
        stats = evaluate_coco_keypoints(to_coco_dict(samples), results, np.array(get_spec(spec).sigmas))
    return {METRIC_PREFIX[dataset] + k: v for k, v in stats.items()}


def convert_results(results: list[dict], src: str, dst: str) -> list[dict]:
    """COCO results of spec `src` rewritten as spec `dst` (joints `src` lacks get score 0)."""
    if src == dst:
        return results
    k = get_spec(src).num_keypoints
    out = []
    for r in results:
        r = {key: v for key, v in flat_keypoints(r).items() if key not in WHOLEBODY_PART_FIELDS}  # one flat list, then `dst`'s
        kp = np.asarray(r["keypoints"], np.float32).reshape(1, k, 3)
        xy, s = convert_keypoints(kp[:, :, :2], kp[:, :, 2], src, dst)
        out.append({**r, "keypoints": np.concatenate([xy[0], s[0][:, None]], 1).reshape(-1).round(3).tolist()})
    return out


def format_table(dataset: str, stats: dict[str, Any]) -> str:
    """A plain-text table: one row per metric group."""
    lines = []
    flat = stats if all(not isinstance(v, dict) for v in stats.values()) else None
    if flat is not None:
        lines.append("  ".join(f"{k:>8}" for k in flat))
        lines.append("  ".join(f"{v:8.4f}" for v in flat.values()))
    else:
        for group, values in stats.items():
            lines.append(f"[{group}]")
            lines.append("  ".join(f"{k[:10]:>10}" for k in values))
            lines.append("  ".join(f"{v:10.4f}" for v in values.values()))
    return f"{dataset}\n" + "\n".join(lines)
