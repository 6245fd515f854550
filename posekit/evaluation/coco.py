"""COCO keypoint AP/AR with pycocotools (the field's reference implementation)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

STAT_NAMES = ("AP", "AP50", "AP75", "APM", "APL", "AR", "AR50", "AR75", "ARM", "ARL")


def evaluate_coco_keypoints(
    gt: str | Path | dict[str, Any], results: str | Path | list[dict[str, Any]], sigmas: np.ndarray | None = None
) -> dict[str, float]:
    """The 10 COCOeval keypoint stats over the images of `gt` (images without results count too)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = json.loads(Path(gt).read_text()) if isinstance(gt, (str, Path)) else gt
        coco.createIndex()
        dets = json.loads(Path(results).read_text()) if isinstance(results, (str, Path)) else results
        if not dets:
            return dict.fromkeys(STAT_NAMES, 0.0)
        coco_dt = coco.loadRes(dets)
        ev = COCOeval(coco, coco_dt, "keypoints")
        if sigmas is not None:
            ev.params.kpt_oks_sigmas = np.asarray(sigmas)
        ev.params.imgIds = sorted(coco.getImgIds())
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {name: float(v) for name, v in zip(STAT_NAMES, ev.stats)}
