"""CLEAR-MOT / IDF1 of box tracks against ground-truth boxes (motmetrics), for the synthetic crossing videos
and the tracker measurements: a track matches a ground-truth person when their box IoU is >= 0.5."""

from __future__ import annotations

import numpy as np

from posekit.postprocess.nms import box_iou


def mot_metrics(gts: list[list], results: list[dict], min_iou: float = 0.5) -> dict[str, float]:
    """MOTA, IDF1 and ID switches. `gts`: per frame, (person id, xyxy box) pairs; `results`: COCO results with
    `image_id` (1-based frame index), `bbox` (xywh) and `track_id`."""
    import motmetrics as mm

    acc = mm.MOTAccumulator(auto_id=True)
    by_frame: dict[int, list] = {}
    for r in results:
        by_frame.setdefault(r["image_id"] - 1, []).append(r)
    for t, gt in enumerate(gts):
        pr = by_frame.get(t, [])
        g = np.array([b for _, b in gt], float).reshape(-1, 4)
        p = np.array([[r["bbox"][0], r["bbox"][1], r["bbox"][0] + r["bbox"][2], r["bbox"][1] + r["bbox"][3]] for r in pr], float)
        p = p.reshape(-1, 4)
        iou = box_iou(g, p) if len(g) and len(p) else np.zeros((len(g), len(p)))
        acc.update([i for i, _ in gt], [r["track_id"] for r in pr], np.where(iou >= min_iou, 1 - iou, np.nan))
    m = mm.metrics.create().compute(acc, metrics=["mota", "idf1", "num_switches"])
    return {k: float(m[k].iloc[0]) for k in m.columns}
