"""COCO-style keypoint AP/AR on pycocotools (the field's reference implementation), and the variants
other datasets use on top of it: custom sigmas, CrowdPose's easy/medium/hard (xtcocotools semantics),
per-part AP for COCO-WholeBody and Halpe."""

from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

COCO_MAX_DETS = 20  # detections per image COCOeval scores for keypoints (pycocotools' setKpParams; CrowdPose too)
STAT_NAMES = ("AP", "AP50", "AP75", "APM", "APL", "AR", "AR50", "AR75", "ARM", "ARL")
CROWDPOSE_STAT_NAMES = ("AP", "AP50", "AP75", "AR", "AR50", "AR75", "AP(E)", "AP(M)", "AP(H)")

# keypoint index ranges of each part (end exclusive); "wholebody" = all
PARTS = {
    "coco_wholebody133": {"body": (0, 17), "foot": (17, 23), "face": (23, 91), "lefthand": (91, 112), "righthand": (112, 133)},
    "halpe136": {"body": (0, 26), "face": (26, 94), "lefthand": (94, 115), "righthand": (115, 136)},
}


def _load(obj: str | Path | dict | list) -> Any:
    return json.loads(Path(obj).read_text()) if isinstance(obj, (str, Path)) else obj


def _coco(dataset: dict) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = copy.deepcopy(dataset)
        coco.createIndex()
    return coco


class CrowdPoseEval(COCOeval):
    """COCOeval with xtcocotools' 'keypoints_crowd' semantics (use_area=False): OKS scaled by
    0.53 x the GT box area, up to 20 detections per image, one area range."""

    def __init__(self, coco_gt: COCO, coco_dt: COCO, sigmas: np.ndarray) -> None:
        super().__init__(coco_gt, coco_dt, "keypoints")
        self.params.kpt_oks_sigmas = np.asarray(sigmas)
        self.params.maxDets = [COCO_MAX_DETS]
        self.params.areaRng = [[0, 1e10]]
        self.params.areaRngLbl = ["all"]

    def computeOks(self, imgId: int, catId: int) -> np.ndarray | list:  # noqa: N802 (pycocotools' name)
        p = self.params
        gts, dts = self._gts[imgId, catId], self._dts[imgId, catId]
        order = np.argsort([-d["score"] for d in dts], kind="mergesort")
        dts = [dts[i] for i in order[: p.maxDets[-1]]]
        if not gts or not dts:
            return []
        var = (np.asarray(p.kpt_oks_sigmas) * 2) ** 2
        ious = np.zeros((len(dts), len(gts)))
        for j, gt in enumerate(gts):
            g = np.asarray(gt["keypoints"], np.float64)
            xg, yg, vg = g[0::3], g[1::3], g[2::3]
            visible = vg > 0
            bx, by, bw, bh = gt["bbox"]
            x0, x1, y0, y1 = bx - bw, bx + bw * 2, by - bh, by + bh * 2
            for i, dt in enumerate(dts):
                d = np.asarray(dt["keypoints"], np.float64)
                xd, yd = d[0::3], d[1::3]
                if visible.any():
                    dx, dy = xd - xg, yd - yg
                else:  # no labelled joint: distance to the box grown by its size on each side
                    z = np.zeros(len(var))
                    dx = np.maximum(z, x0 - xd) + np.maximum(z, xd - x1)
                    dy = np.maximum(z, y0 - yd) + np.maximum(z, yd - y1)
                e = (dx**2 + dy**2) / var / (bw * bh * 0.53 + np.spacing(1)) / 2
                if visible.any():
                    e = e[visible]
                ious[i, j] = np.sum(np.exp(-e)) / e.shape[0]
        return ious


def _run(ev: COCOeval, img_ids: list) -> COCOeval:
    ev.params.imgIds = img_ids
    with contextlib.redirect_stdout(io.StringIO()):
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def evaluate_coco_keypoints(
    gt: str | Path | dict, results: str | Path | list, sigmas: np.ndarray | None = None, img_ids: list | None = None
) -> dict[str, float]:
    """The 10 COCOeval keypoint stats over the images of `gt` (images without results count too)."""
    gt_data, dets = _load(gt), _load(results)
    if not dets:
        return dict.fromkeys(STAT_NAMES, 0.0)
    coco = _coco(gt_data)
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(coco, coco.loadRes(copy.deepcopy(dets)), "keypoints")
    if sigmas is not None:
        ev.params.kpt_oks_sigmas = np.asarray(sigmas)
    _run(ev, img_ids if img_ids is not None else sorted(coco.getImgIds()))
    return {name: float(v) for name, v in zip(STAT_NAMES, ev.stats)}


def evaluate_crowdpose(gt: str | Path | dict, results: str | Path | list, sigmas: np.ndarray) -> dict[str, float]:
    """CrowdPose AP/AR and AP on easy (crowd index < 0.2), medium (< 0.8) and hard images, as xtcocotools:
    each split re-evaluated on its images, its AP the plain mean of the precision array (rounded to 4 places)."""
    gt_data, dets = _load(gt), _load(results)
    if not dets:
        return dict.fromkeys(CROWDPOSE_STAT_NAMES, 0.0)
    # CrowdPose has no 'area'; pycocotools reads it for the (single, unbounded) area range
    gt_data = {**gt_data, "annotations": [{"area": a["bbox"][2] * a["bbox"][3], **a} for a in gt_data["annotations"]]}
    coco = _coco(gt_data)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco.loadRes(copy.deepcopy(dets))
    ev = _run(CrowdPoseEval(coco, coco_dt, sigmas), sorted(coco.getImgIds()))
    s = _summary(ev)
    stats = {"AP": s(1), "AP50": s(1, 0.5), "AP75": s(1, 0.75), "AR": s(0), "AR50": s(0, 0.5), "AR75": s(0, 0.75)}
    crowd = {img["id"]: float(img["crowdIndex"]) for img in gt_data["images"]}
    splits = {"AP(E)": [], "AP(M)": [], "AP(H)": []}
    for image_id, ci in crowd.items():
        splits["AP(E)" if ci < 0.2 else "AP(M)" if ci < 0.8 else "AP(H)"].append(image_id)
    for name, ids in splits.items():
        sub = _run(CrowdPoseEval(coco, coco_dt, sigmas), ids)
        stats[name] = round(float(np.mean(sub.eval["precision"][:, :, :, 0, :])), 4)
    return stats


def _summary(ev: COCOeval):
    """pycocotools' _summarize for the single area range and max-detections setting of `ev`."""

    def summarize(ap: int, iou: float | None = None) -> float:
        key = "precision" if ap else "recall"
        arr = ev.eval[key]
        if iou is not None:
            arr = arr[np.where(np.isclose(ev.params.iouThrs, iou))[0]]
        arr = arr[..., 0, -1]  # the one area range, the largest max-detections
        valid = arr[arr > -1]
        return float(valid.mean()) if valid.size else -1.0

    return summarize


def _part_dataset(data: dict | list, lo: int, hi: int) -> dict | list:
    """GT dict or results list with every keypoints list cut to the joints [lo, hi)."""

    def cut(item: dict) -> dict:
        out = dict(item)
        out["keypoints"] = item["keypoints"][3 * lo : 3 * hi]
        return out

    if isinstance(data, dict):
        return {**data, "annotations": [cut(a) for a in data["annotations"]]}
    return [cut(d) for d in data]


def evaluate_parts(gt: str | Path | dict, results: str | Path | list, spec: str, sigmas: np.ndarray) -> dict[str, dict[str, float]]:
    """Per-part AP for COCO-WholeBody / Halpe: each part scored with its own keypoints and sigmas (the GT
    area and num_keypoints as in the file), plus 'wholebody' over all keypoints, as xtcocotools does.
    GT and results carry the concatenated keypoints (posekit's 133 / 136 layout)."""
    gt_data, dets = _load(gt), _load(results)
    out = {}
    for part, (lo, hi) in PARTS[spec].items():
        out[part] = evaluate_coco_keypoints(_part_dataset(gt_data, lo, hi), _part_dataset(dets, lo, hi), np.asarray(sigmas)[lo:hi])
    out["wholebody"] = evaluate_coco_keypoints(gt_data, dets, sigmas)
    return out
