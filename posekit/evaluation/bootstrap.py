"""Bootstrap over images for COCO keypoint AP: how much an AP, or the difference between two settings'
APs on the same images, moves when the images are redrawn (with replacement). A choice between settings
whose difference's interval holds 0 is not resolved by the data."""

from __future__ import annotations

from typing import Any

import numpy as np

from posekit.evaluation.coco import evaluate_coco_keypoints


def resample(gt: dict, results: dict[str, list[dict]], draw: np.ndarray) -> tuple[dict, dict[str, list[dict]]]:
    """GT and each setting's results on the images `draw` (indices into gt["images"], repeats allowed): the
    k-th drawn image gets id k, so pycocotools scores a repeated image as often as it was drawn."""
    images = gt["images"]
    anns_of: dict[Any, list[dict]] = {}
    for a in gt["annotations"]:
        anns_of.setdefault(a["image_id"], []).append(a)
    new_images, new_anns, remap = [], [], {}
    for k, i in enumerate(draw):
        old = images[int(i)]["id"]
        remap.setdefault(old, []).append(k)
        new_images.append({**images[int(i)], "id": k})
        new_anns += [{**a, "image_id": k, "id": len(new_anns) + j + 1} for j, a in enumerate(anns_of.get(old, []))]
    new_gt = {**gt, "images": new_images, "annotations": new_anns}
    new_results = {name: [{**r, "image_id": k} for r in rs for k in remap.get(r["image_id"], [])] for name, rs in results.items()}
    return new_gt, new_results


def bootstrap_aps(gt: dict, results: dict[str, list[dict]], sigmas: np.ndarray | None = None, draws: int = 100,
                  seed: int = 0) -> dict[str, np.ndarray]:  # fmt: skip
    """AP of each setting on `draws` resamples of the images (the same resamples for every setting)."""
    rng = np.random.default_rng(seed)
    n = len(gt["images"])
    out = {name: np.zeros(draws) for name in results}
    for d in range(draws):
        new_gt, new_results = resample(gt, results, rng.integers(0, n, n))
        for name, rs in new_results.items():
            out[name][d] = evaluate_coco_keypoints(new_gt, rs, sigmas)["AP"]
    return out


def interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The central `level` percentile interval."""
    lo, hi = np.percentile(values, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)
