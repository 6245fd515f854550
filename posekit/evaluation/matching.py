"""Which returned persons are right: COCO's own matching at one OKS threshold (pycocotools' `evaluateImg`,
crowd regions and unlabelled persons ignored as COCO AP ignores them), for precision / recall of what a
pipeline returns and for the labels a person-score calibration is fitted on."""

from __future__ import annotations

import contextlib
import copy
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pycocotools.cocoeval import COCOeval

from posekit.evaluation.coco import _coco, _load


@dataclass
class Matches:
    """Per result (in the order given): 1 matched a labelled person at the OKS threshold, 0 did not,
    -1 ignored (matched a crowd region or an unlabelled person, as COCO AP ignores it). `labelled`: the
    persons that count for recall."""

    labels: np.ndarray
    labelled: int

    def precision_recall(self, keep: np.ndarray | None = None) -> tuple[float, float, int]:
        """Precision and recall of the results `keep` (a mask; default all), and how many count."""
        labels = self.labels if keep is None else self.labels[keep]
        counted = labels[labels >= 0]
        right = int((counted == 1).sum())
        precision = right / len(counted) if len(counted) else 1.0
        return precision, (right / self.labelled if self.labelled else 1.0), len(counted)


def match_results(gt: str | Path | dict, results: list[dict], sigmas: np.ndarray | None = None, oks: float = 0.5) -> Matches:
    """COCO's greedy matching (results by score, best first, each labelled person taken once) at `oks`."""
    gt_data = _load(gt)
    labels = np.full(len(results), 0, np.int8)
    coco = _coco(gt_data)
    labelled = sum(1 for a in gt_data["annotations"] if not a.get("iscrowd", 0) and a.get("num_keypoints", 1) > 0)
    if not results:
        return Matches(labels, labelled)
    dets = [{**r, "posekit_index": i} for i, r in enumerate(results)]
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(coco, coco.loadRes(copy.deepcopy(dets)), "keypoints")
        if sigmas is not None:
            ev.params.kpt_oks_sigmas = np.asarray(sigmas)
        ev.params.iouThrs = np.array([oks])
        ev.params.areaRng, ev.params.areaRngLbl = [[0, 1e10]], ["all"]
        ev.params.maxDets = [max(len(results), 1)]
        ev.params.imgIds = sorted(coco.getImgIds())
        ev.evaluate()
    for record in ev.evalImgs:
        if record is None:
            continue
        for det_id, matched, ignored in zip(record["dtIds"], record["dtMatches"][0], record["dtIgnore"][0]):
            index = ev.cocoDt.anns[det_id]["posekit_index"]
            labels[index] = -1 if ignored else int(matched > 0)
    return Matches(labels, labelled)


def reliability_table(probabilities: np.ndarray, labels: np.ndarray, edges: tuple[float, ...] = (0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0)
                      ) -> list[dict]:  # fmt: skip
    """Predicted vs observed per score bin: the mean predicted probability and the fraction right of the
    counted results (labels >= 0) whose probability falls in each bin [lo, hi)."""
    p, y = np.asarray(probabilities, np.float64), np.asarray(labels)
    counted = y >= 0
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = counted & (p >= lo) & ((p < hi) if hi < 1.0 else (p <= hi))
        n = int(inside.sum())
        rows.append({"bin": f"{lo:.1f}-{hi:.1f}", "n": n, "predicted": float(p[inside].mean()) if n else float("nan"),
                     "observed": float((y[inside] == 1).mean()) if n else float("nan")})  # fmt: skip
    return rows
