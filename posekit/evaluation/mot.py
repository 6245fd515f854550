"""CLEAR-MOT / IDF1 of box tracks against ground-truth boxes (motmetrics), for the synthetic crossing videos
and the tracker measurements: a track matches a ground-truth person when their box IoU is >= 0.5."""

from __future__ import annotations

import numpy as np

from posekit.postprocess.nms import box_iou


def _tracks_by_frame(results: list[dict]) -> dict[int, list]:
    """0-based frame -> [(track id, xyxy box), ...] of COCO results (1-based `image_id`, xywh `bbox`)."""
    out: dict[int, list] = {}
    for r in results:
        x, y, w, h = r["bbox"]
        out.setdefault(r["image_id"] - 1, []).append((r["track_id"], [x, y, x + w, y + h]))
    return out


def mot_metrics(gts: list[list], results: list[dict], min_iou: float = 0.5) -> dict[str, float]:
    """MOTA, IDF1 and ID switches. `gts`: per frame, (person id, xyxy box) pairs; `results`: COCO results with
    `image_id` (1-based frame index), `bbox` (xywh) and `track_id`."""
    import motmetrics as mm

    acc = mm.MOTAccumulator(auto_id=True)
    by_frame = _tracks_by_frame(results)
    for t, gt in enumerate(gts):
        pr = by_frame.get(t, [])
        g = np.array([b for _, b in gt], float).reshape(-1, 4)
        p = np.array([b for _, b in pr], float).reshape(-1, 4)
        iou = box_iou(g, p) if len(g) and len(p) else np.zeros((len(g), len(p)))
        acc.update([i for i, _ in gt], [tid for tid, _ in pr], np.where(iou >= min_iou, 1 - iou, np.nan))
    m = mm.metrics.create().compute(acc, metrics=["mota", "idf1", "num_switches"])
    return {k: float(m[k].iloc[0]) for k in m.columns}


def identity_switches(persons: dict[str, list], results: list[dict], min_iou: float = 0.5) -> dict[str, list]:
    """ID switches against hand-labelled identities, split by whether the person was visible throughout.

    `persons`: person -> rows [frame, x0, y0, x1, y1] (0-based frames where the person is labelled, i.e.
    visible); `results`: COCO results with `image_id` (1-based frame), `bbox` (xywh) and `track_id`. Per frame,
    a person keeps last frame's track when their boxes still overlap by `min_iou` (as CLEAR-MOT), the others
    are matched by Hungarian assignment on IoU >= `min_iou`. A switch is a person's matched track id changing;
    it happened "while visible" when the person is labelled in every frame since the last match, "after a
    gap" otherwise. Returns {"visible": [(person, frame, old id, new id), ...], "after_gap": [...]}."""
    from scipy.optimize import linear_sum_assignment

    hyp = _tracks_by_frame(results)
    gt: dict[int, list] = {}
    for p, rows in persons.items():
        for t, *box in rows:
            gt.setdefault(int(t), []).append((p, box))
    labelled = {p: {int(r[0]) for r in rows} for p, rows in persons.items()}
    current: dict[str, int] = {}  # person -> last matched track id
    last_frame: dict[str, int] = {}
    out: dict[str, list] = {"visible": [], "after_gap": []}
    for t in sorted(gt):
        people, tracks = gt[t], hyp.get(t, [])
        if not tracks:
            continue
        iou = box_iou(np.array([b for _, b in people], float), np.array([b for _, b in tracks], float))
        pairs = {}
        for i, (p, _) in enumerate(people):  # continuity first
            j = next((j for j, (tid, _) in enumerate(tracks) if tid == current.get(p)), None)
            if j is not None and iou[i, j] >= min_iou:
                pairs[i] = j
        rows = [i for i in range(len(people)) if i not in pairs]
        cols = [j for j in range(len(tracks)) if j not in pairs.values()]
        if rows and cols:
            sub = iou[np.ix_(rows, cols)]
            for r, c in zip(*linear_sum_assignment(-sub)):
                if sub[r, c] >= min_iou:
                    pairs[rows[r]] = cols[c]
        for i, j in pairs.items():
            p, tid = people[i][0], tracks[j][0]
            if p in current and current[p] != tid:
                kind = "visible" if all(f in labelled[p] for f in range(last_frame[p], t + 1)) else "after_gap"
                out[kind].append((p, t, current[p], tid))
            current[p], last_frame[p] = tid, t
    return out
