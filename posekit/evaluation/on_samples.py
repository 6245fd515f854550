"""Run a model on annotated single-person samples with their ground-truth person boxes (the protocol of
LSP / MPII evaluations: the person is given, the joints are found) and score it."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
from tqdm import tqdm

from posekit.data.datasets import Sample
from posekit.errors import InputError
from posekit.evaluation.run import convert_results, evaluate_samples
from posekit.pipeline.readers import read_image


def evaluate_on_gt_boxes(estimator: Any, samples: list[Sample], quiet: bool = False) -> tuple[dict[str, float], list[str]]:
    """Metrics of `estimator` on `samples` (top-down models get each sample's annotated person boxes;
    whole-image models see the image) and the inputs that failed."""
    results, failed = [], []
    for s in tqdm(samples, unit="img", disable=quiet or None, dynamic_ncols=True):
        try:
            image = read_image(s.image_path)
        except InputError as e:
            failed.append(str(e))
            tqdm.write(f"posekit: skipped {e}", file=sys.stderr)
            continue
        boxes = np.stack([inst.box for inst in s.instances]) if s.instances else np.zeros((0, 4), np.float32)
        poses = estimator.estimate(image, boxes=boxes) if estimator.takes_boxes else estimator.estimate(image)
        results += convert_results(poses.to_coco_results(s.image_id), poses.spec, s.spec)
    return evaluate_samples(samples, results), failed
