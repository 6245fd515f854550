"""PoseTrack evaluation with poseval's semantics: per-joint AP of multi-person pose, and MOTA per joint
(then averaged) of pose tracking. Distances are normalised by the GT head size (0.6 x head-box diagonal),
a joint matches within 0.5 of it. A frame's ignore regions (polygons) remove the GT and predicted joints
strictly inside them, and the persons left with no joint, before either metric (poseval's load_data)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

from posekit.evaluation.pck import head_sizes

MATCH_THRESHOLD = 0.5


@dataclass
class FramePoses:
    """One frame's persons: keypoints [N,K,2]; scores [N,K] (GT: >0 = labelled); track_ids [N]; for GT, head_boxes [N,4]."""

    keypoints: np.ndarray
    scores: np.ndarray
    track_ids: np.ndarray
    head_boxes: np.ndarray | None = None


def ignore_polygons(image_extras: dict) -> list[np.ndarray]:
    """A PoseTrack frame's ignore regions (`ignore_regions_x` / `_y`: one list of coordinates per region) as
    float32 polygons [V,2]; regions with fewer than 3 vertices enclose nothing and are left out."""
    from posekit.data.datasets import DatasetError

    xs, ys = image_extras.get("ignore_regions_x") or [], image_extras.get("ignore_regions_y") or []
    try:
        regions = [(np.asarray(x, np.float64).reshape(-1), np.asarray(y, np.float64).reshape(-1)) for x, y in zip(xs, ys)]
    except (TypeError, ValueError) as e:  # a malformed GT is refused in one line, not half-applied
        raise DatasetError(f"ignore_regions_x / ignore_regions_y: expected one list of numbers per region ({e})") from e
    return [np.stack([x, y], 1).astype(np.float32) for x, y in regions if len(x) == len(y) >= 3 and np.isfinite(x).all() and np.isfinite(y).all()]


def drop_ignored(frame: FramePoses, polygons: list[np.ndarray], present: np.ndarray) -> FramePoses:
    """`frame` without its joints strictly inside any polygon (their scores set to 0) and without the persons
    whose `present` joints [N,K] (GT: labelled; predictions: all) all were."""
    if not polygons or len(frame.track_ids) == 0:
        return frame
    inside = np.zeros(frame.scores.shape, bool)
    for poly in polygons:
        contour = poly.reshape(-1, 1, 2)
        for n, k in zip(*np.nonzero(~inside)):
            x, y = (float(v) for v in frame.keypoints[n, k])
            inside[n, k] = cv2.pointPolygonTest(contour, (x, y), False) > 0  # > 0: strictly inside (shapely's contains)
    keep = (present & ~inside).any(1)
    scores = np.where(inside, 0.0, frame.scores).astype(frame.scores.dtype)
    heads = None if frame.head_boxes is None else frame.head_boxes[keep]
    return FramePoses(frame.keypoints[keep], scores[keep], frame.track_ids[keep], heads)


def joint_matches(gt: FramePoses, pred: FramePoses) -> tuple[np.ndarray, np.ndarray]:
    """Normalised distances [G,P,K] (inf where GT joint unlabelled or prediction absent) and hits dist <= 0.5."""
    g, p = len(gt.track_ids), len(pred.track_ids)
    k = gt.keypoints.shape[1] if g else (pred.keypoints.shape[1] if p else 0)
    if g == 0 or p == 0:
        return np.full((g, p, k), np.inf), np.zeros((g, p, k), bool)
    size = head_sizes(gt.head_boxes)
    dist = np.linalg.norm(gt.keypoints[:, None] - pred.keypoints[None], axis=-1) / np.maximum(size, 1e-9)[:, None, None]
    valid = (gt.scores[:, None] > 0) & (pred.scores[None] > 0)
    dist = np.where(valid, dist, np.inf)
    return dist, dist <= MATCH_THRESHOLD


def _voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area under the precision envelope over recall steps (VOC all-points AP, as poseval)."""
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[0.0], precision, [0.0]])
    for i in range(len(p) - 2, -1, -1):
        p[i] = max(p[i], p[i + 1])
    idx = np.flatnonzero(r[1:] != r[:-1]) + 1
    return float(np.sum((r[idx] - r[idx - 1]) * p[idx]))


def posetrack_ap(gt_frames: list[FramePoses], pred_frames: list[FramePoses], joint_names: tuple[str, ...]) -> dict[str, float]:
    """Per-joint AP: in each frame predicted persons are assigned to GT persons (Hungarian, maximising
    the fraction of matched GT joints); a predicted joint is a true positive when its person's GT joint
    matches. 'Total' = mean over joints that have GT."""
    k = len(joint_names)
    scores: list[list[float]] = [[] for _ in range(k)]
    labels: list[list[bool]] = [[] for _ in range(k)]
    positives = np.zeros(k)
    for gt, pred in zip(gt_frames, pred_frames):
        positives += (gt.scores > 0).sum(0) if len(gt.track_ids) else 0
        dist, hit = joint_matches(gt, pred)
        assigned = np.full(len(pred.track_ids), -1)
        if hit.size:
            pck = hit.sum(2) / np.maximum((gt.scores > 0).sum(1), 1)[:, None]
            rows, cols = linear_sum_assignment(-pck)
            for r, c in zip(rows, cols):
                if pck[r, c] > 0:
                    assigned[c] = r
        for i in range(len(pred.track_ids)):
            for j in range(k):
                if pred.scores[i, j] > 0:
                    scores[j].append(float(pred.scores[i, j]))
                    labels[j].append(bool(assigned[i] >= 0 and hit[assigned[i], i, j]))
    out = {}
    for j, name in enumerate(joint_names):
        if positives[j] == 0:
            continue
        order = np.argsort(-np.asarray(scores[j]), kind="stable")
        tp = np.asarray(labels[j], bool)[order]
        recall = np.cumsum(tp) / positives[j]
        precision = np.cumsum(tp) / np.arange(1, len(tp) + 1)
        out[name] = _voc_ap(recall, precision) if len(tp) else 0.0
    out["Total"] = float(np.mean(list(out.values()))) if out else 0.0
    return out


def posetrack_mota(
    gt_frames: list[FramePoses], pred_frames: list[FramePoses], joint_names: tuple[str, ...], score_threshold: float = 0.0
) -> dict[str, float]:
    """MOTA per joint with motmetrics (a joint of a track is one object; matches within 0.5 head size),
    then 'Total' = mean over joints that have GT."""
    import motmetrics as mm

    k = len(joint_names)
    accs = [mm.MOTAccumulator(auto_id=True) for _ in range(k)]
    for gt, pred in zip(gt_frames, pred_frames):
        dist, _ = joint_matches(gt, pred)
        for j in range(k):
            gi = np.flatnonzero(gt.scores[:, j] > 0) if len(gt.track_ids) else np.zeros(0, int)
            pi = np.flatnonzero(pred.scores[:, j] > score_threshold) if len(pred.track_ids) else np.zeros(0, int)
            d = dist[np.ix_(gi, pi, [j])][..., 0] if len(gi) and len(pi) else np.zeros((len(gi), len(pi)))
            d = np.where(d <= MATCH_THRESHOLD, d, np.nan)
            accs[j].update(gt.track_ids[gi].tolist(), pred.track_ids[pi].tolist(), d)
    mh = mm.metrics.create()
    out = {}
    for j, name in enumerate(joint_names):
        summary = mh.compute(accs[j], metrics=["num_objects", "mota"], name=name)
        if int(summary["num_objects"].iloc[0]) > 0:
            out[name] = float(summary["mota"].iloc[0])
    out["Total"] = float(np.mean(list(out.values()))) if out else 0.0
    return out
