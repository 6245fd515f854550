"""Every mode on the shared COCO samples: AP with CenterNet boxes and with GT boxes, precision / recall
(OKS >= 0.5, COCO's matching) of the persons the mode returns, persons per image, and ms per image (the
API on decoded images, one at a time, 2 threads, after a warm-up image).

coco-extra is the split the post-processing and the calibration were fitted on; coco-mini is held out.

usage: python benchmarks/bench_modes.py [--modes fast balanced accurate] [--splits coco-mini coco-extra]
Prints a markdown table and one JSON line per row.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from posekit.api import PoseEstimator  # noqa: E402
from posekit.evaluation.coco import evaluate_coco_keypoints  # noqa: E402
from posekit.evaluation.matching import match_results  # noqa: E402
from posekit.pipeline.readers import read_image  # noqa: E402
from posekit.postprocess.presets import MODES  # noqa: E402
from posekit.postprocess.tune import gt_person_boxes  # noqa: E402

DATA = Path(os.environ.get("POSEKIT_TEST_DATA", ROOT.parent / "shared" / "data"))


def run(mode: str, split: str, backend: str) -> dict:
    gt = json.loads((DATA / split / "annotations" / "person_keypoints_train2017.json").read_text())
    images = {img["id"]: read_image(DATA / split / "train2017" / img["file_name"]) for img in gt["images"]}
    est = PoseEstimator(mode=mode, backend=backend)
    est(next(iter(images.values())))  # warm-up
    detected, seconds = [], 0.0
    for image_id, image in images.items():
        start = time.perf_counter()
        poses = est.estimate(image)
        seconds += time.perf_counter() - start
        detected += poses.to_coco_results(image_id)
    boxes = gt_person_boxes(gt)
    given = []
    for image_id, image in images.items():
        if len(boxes[image_id]):
            given += est.estimate(image, boxes[image_id], np.ones(len(boxes[image_id]), np.float32)).to_coco_results(image_id)
    sigmas = est.pipeline.sigmas
    precision, recall, returned = match_results(gt, detected, sigmas).precision_recall()
    return {"mode": mode, "model": est.name, "split": split, "AP CenterNet": evaluate_coco_keypoints(gt, detected, sigmas)["AP"],
            "AP GT boxes": evaluate_coco_keypoints(gt, given, sigmas)["AP"], "precision": precision, "recall": recall,
            "persons/img": len(detected) / len(images), "ms/img": 1000 * seconds / len(images), "backend": est.backend}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modes", nargs="+", default=list(MODES))
    ap.add_argument("--splits", nargs="+", default=["coco-mini", "coco-extra"])
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = [run(mode, split, args.backend) for split in args.splits for mode in args.modes]
    print("| mode (model) | split | AP, CenterNet boxes | AP, GT boxes | precision | recall | persons/img | ms/img |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['mode']} ({r['model']}) | {r['split']} | {r['AP CenterNet']:.3f} | {r['AP GT boxes']:.3f} | {r['precision']:.3f} | "
              f"{r['recall']:.3f} | {r['persons/img']:.1f} | {r['ms/img']:.0f} |")
    for r in rows:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
