"""Data-driven choice of the top-down pipeline's post-processing (AlphaPose §3.4: "the parameters are
optimized to achieve the maximal mAP for the validation set ... two parameters at a time").

The pose model runs once per person candidate, on its crops at each candidate crop scale and their
mirrors; every setting is then scored from those cached outputs: the detector threshold, the instance
scoring rule and its keypoint threshold, flip test on/off, crop-scale jitter on/off, and the pose NMS (none, greedy OKS-NMS and its threshold, or
parametric pose NMS with {sigma1, sigma2, lambda, eta} searched two at a time until nothing changes).
"""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from posekit.errors import InputError
from posekit.evaluation.coco import evaluate_coco_keypoints
from posekit.pipeline.readers import read_image
from posekit.pipeline.stages import TopDownOptions, TopDownPipeline, rank_and_suppress
from posekit.postprocess.pose_nms import SCORING_RULES, PoseNMSParams
from posekit.structures import Poses

# grids of the two-at-a-time search; eta is searched as a fraction of its range [0, 1 + lam]
PNMS_GRID = {
    "sigma1": (0.1, 0.25, 0.5, 1.0, 2.0),
    "sigma2": (0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05),
    "lam": (0.0, 0.5, 1.0, 1.7, 3.0, 5.0, 8.0),
    "eta_fraction": (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),  # >= 0.2: people who touch share a joint or two
}
OKS_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
KEYPOINT_THRESHOLDS = (0.1, 0.2, 0.3, 0.4)
DET_THRESHOLDS = (0.05, 0.1, 0.2, 0.3)
# crop-scale jitter: every candidate is cropped at each of CANDIDATE_SCALES; the search tries these subsets
CANDIDATE_SCALES = (1.0, 0.9, 1.1)
CROP_SCALE_SETS = ((1.0,), tuple(sorted(CANDIDATE_SCALES)))


@dataclass
class Candidates:
    """One image's persons before post-processing: keypoints [2S,N,K,2] and scores [2S,N,K] from the crops
    at each of the S `scales` (`CANDIDATE_SCALES` for tune-nms), then the same crops mirrored (left/right already swapped back)."""

    image_id: Any
    boxes: np.ndarray
    box_scores: np.ndarray
    keypoints: np.ndarray
    keypoint_scores: np.ndarray
    given_boxes: bool = False  # GT boxes: every person is posed and returned, as `predict --boxes` does
    scales: tuple[float, ...] = CANDIDATE_SCALES  # the crop scales of the rows
    detect_seconds: float = 0.0  # the detector on this image (0 with GT boxes)
    pose_seconds: float = 0.0  # the pose model on all its crop variants


def gt_person_boxes(gt: dict) -> dict[Any, np.ndarray]:
    """xyxy boxes of the annotated persons (not crowd, with keypoints) per image id: the 'GT boxes' protocol."""
    boxes: dict[Any, list] = {img["id"]: [] for img in gt["images"]}
    for a in gt["annotations"]:
        if not a.get("iscrowd", 0) and a.get("num_keypoints", 1) > 0 and a["image_id"] in boxes:
            x, y, w, h = a["bbox"]
            boxes[a["image_id"]].append([x, y, x + w, y + h])
    return {k: np.asarray(v, np.float32).reshape(-1, 4) for k, v in boxes.items()}


def collect_candidates(pipeline: TopDownPipeline, gt: dict, images: Path, use_gt_boxes: bool, det_threshold: float = 0.05,
                       quiet: bool = False, scales: tuple[float, ...] = CANDIDATE_SCALES) -> tuple[list[Candidates], list[str]]:  # fmt: skip
    """Run the detector (at `det_threshold`, then box NMS) or take the GT boxes, and the pose model on the
    plain and mirrored crops (at each of `scales`) of every image of `gt`; the images that could not be read."""
    gt_boxes = gt_person_boxes(gt) if use_gt_boxes else {}
    out, failed = [], []
    for img in tqdm(gt["images"], unit="img", disable=quiet or None, dynamic_ncols=True, desc="pose model on candidates"):
        try:
            image = read_image(images / img["file_name"])
        except InputError as e:
            failed.append(str(e))
            tqdm.write(f"posekit: skipped {e}", file=sys.stderr)
            continue
        start = time.perf_counter()
        if use_gt_boxes:
            boxes = gt_boxes[img["id"]]
            scores = np.ones(len(boxes), np.float32)
        else:
            boxes, scores = pipeline.detect(image, det_threshold)
        posed = time.perf_counter()
        k = len(pipeline.sigmas)
        v = 2 * len(scales)
        kp, sc = np.zeros((v, len(boxes), k, 2), np.float32), np.zeros((v, len(boxes), k), np.float32)
        if len(boxes):
            kp, sc, _ = pipeline.variant_keypoints(*pipeline.crop_inputs(image, boxes, scales), len(boxes), flip=True)
        out.append(Candidates(img["id"], boxes, scores, kp, sc, use_gt_boxes, tuple(scales), posed - start, time.perf_counter() - posed))
    return out, failed


def results_of(pipeline: TopDownPipeline, candidates: Iterable[Candidates], options: TopDownOptions,
               with_box_scores: bool = False) -> list[dict]:  # fmt: skip
    """COCO keypoint results of the candidates post-processed with `options` (the pipeline's own code:
    detector boxes from the options' `box_threshold()`, persons from its `score_threshold`); with
    `with_box_scores` each record also has its detector score as "box_score"."""
    results = []
    for c in candidates:
        rows = variant_rows(options, c.scales)
        keep = np.arange(len(c.boxes)) if c.given_boxes else np.flatnonzero(c.box_scores >= options.box_threshold())
        if len(keep) == 0:
            continue
        kp = c.keypoints[rows][:, keep].mean(0)  # the pipeline's average over its crop variants
        sc = c.keypoint_scores[rows][:, keep].mean(0)
        scores, order = rank_and_suppress(options, pipeline.sigmas, kp, sc, c.boxes[keep], c.box_scores[keep])
        if not c.given_boxes:
            order = order[scores[order] >= options.score_threshold]
        poses = Poses(kp, sc, c.boxes[keep], scores, pipeline.spec).select(order)
        records = poses.to_coco_results(c.image_id)
        if with_box_scores:
            for record, box_score in zip(records, c.box_scores[keep][order]):
                record["box_score"] = float(box_score)
        results += records
    return results


def variant_rows(options: TopDownOptions, scales: tuple[float, ...] = CANDIDATE_SCALES) -> list[int]:
    """The candidates' rows that `options` average: its crop scales, and their mirrors with flip test."""
    missing = set(options.crop_scales) - set(scales)
    if missing:
        raise ValueError(f"crop scales {sorted(missing)} were not run for the candidates ({scales})")
    rows = [scales.index(s) for s in options.crop_scales]
    return rows + [len(scales) + r for r in rows] if options.flip_test else rows


class Scorer:
    """COCO keypoint AP of option sets on cached candidates, memoised (the search revisits settings). With
    several sets (e.g. the same images with GT boxes and with detector boxes) the score is their mean AP."""

    def __init__(self, pipeline: TopDownPipeline, sets: list[tuple[list[Candidates], dict]]) -> None:
        self.pipeline, self.sets = pipeline, sets
        self.seen: dict[str, list[float]] = {}
        self.options: dict[str, TopDownOptions] = {}  # every setting scored, by the same key

    def aps(self, options: TopDownOptions) -> list[float]:
        """AP of each set."""
        key = repr(options)
        self.options[key] = options
        if key not in self.seen:
            self.seen[key] = [evaluate_coco_keypoints(gt, results_of(self.pipeline, c, options), self.pipeline.sigmas)["AP"]
                              for c, gt in self.sets]  # fmt: skip
        return self.seen[key]

    def __call__(self, options: TopDownOptions) -> float:
        return float(np.mean(self.aps(options)))


def search_pnms(score: Callable[[TopDownOptions], float], base: TopDownOptions, max_rounds: int = 5,
                grid: dict[str, tuple[float, ...]] = PNMS_GRID) -> tuple[TopDownOptions, list[dict]]:  # fmt: skip
    """{sigma1, sigma2} then {lam, eta} on their grids with the others fixed, repeated until a round
    changes nothing (or `max_rounds`); returns the best options and one record per round."""
    best = replace(base, pose_nms="parametric")
    best_ap, history = score(best), []  # the search starts from the options' current P-NMS parameters
    for round_ in range(max_rounds):
        before = best.pnms
        for s1, s2 in itertools.product(grid["sigma1"], grid["sigma2"]):
            trial = replace(best, pnms=replace(best.pnms, sigma1=s1, sigma2=s2))
            if (ap := score(trial)) > best_ap:
                best, best_ap = trial, ap
        for lam, fraction in itertools.product(grid["lam"], grid["eta_fraction"]):
            trial = replace(best, pnms=replace(best.pnms, lam=lam, eta=round(fraction * (1 + lam), 4)))
            if (ap := score(trial)) > best_ap:
                best, best_ap = trial, ap
        history.append({"round": round_ + 1, "AP": best_ap, **best.pnms.to_dict()})
        if best.pnms == before:
            break
    return best, history


def tune(score: Callable[[TopDownOptions], float], base: TopDownOptions, det_thresholds: tuple[float, ...] = DET_THRESHOLDS,
         max_rounds: int = 3, log: Callable[[str], None] = print) -> tuple[TopDownOptions, list[dict]]:  # fmt: skip
    """The whole search, one group of settings at a time with the others fixed (detector threshold;
    scoring rule, its keypoint threshold and flip test; greedy OKS-NMS threshold; P-NMS parameters), repeated
    until a round changes nothing. Returns the best options and a table (one row per setting scored)."""
    rows: list[dict] = []
    best, best_ap = base, score(base)
    rows.append({"setting": "baseline", "AP": best_ap, "options": _describe(base)})
    log(f"  AP {best_ap:.4f}  baseline: {_describe(base)}")

    def consider(what: str, trial: TopDownOptions) -> None:
        nonlocal best, best_ap
        ap = score(trial)
        rows.append({"setting": what, "AP": ap, "options": _describe(trial)})
        log(f"  AP {ap:.4f}  {what}")
        if ap > best_ap:
            best, best_ap = trial, ap

    rules = [(r, t) for r in SCORING_RULES for t in (KEYPOINT_THRESHOLDS if r.endswith("_above") else (base.keypoint_threshold,))]
    for round_ in range(max_rounds):
        log(f"round {round_ + 1}")
        before = best
        for thr in det_thresholds:
            consider(f"detector threshold {thr}", replace(best, det_threshold=thr))
        start = best
        for flip, (rule, thr) in itertools.product((False, True), rules):
            above = f" (> {thr})" if rule.endswith("_above") else ""
            consider(f"scoring {rule}{above}, flip {'on' if flip else 'off'}", replace(start, flip_test=flip, scoring=rule, keypoint_threshold=thr))
        for scales in CROP_SCALE_SETS:
            consider(f"crop scales {', '.join(map(str, scales))}", replace(best, crop_scales=scales))
        consider("no pose NMS", replace(best, pose_nms="none"))
        for thr in OKS_THRESHOLDS:
            consider(f"OKS-NMS {thr}", replace(best, pose_nms="oks", oks_nms_threshold=thr))
        pnms, history = search_pnms(score, best)
        for h in history:
            log(f"  P-NMS search {h['round']}: AP {h['AP']:.4f}  " + ", ".join(f"{k}={h[k]}" for k in PoseNMSParams().to_dict()))
        consider("parametric pose NMS (searched two at a time)", pnms)
        if best == before:
            break
    return best, rows


def _describe(o: TopDownOptions) -> str:
    nms = {"oks": f"OKS-NMS {o.oks_nms_threshold}", "none": "no NMS",
           "parametric": "P-NMS " + ", ".join(f"{k}={v:g}" for k, v in o.pnms.to_dict().items())}[o.pose_nms]  # fmt: skip
    thr = f" (> {o.keypoint_threshold})" if o.scoring.endswith("_above") else ""
    scales = "" if o.crop_scales == (1.0,) else f", crop scales {', '.join(map(str, o.crop_scales))}"
    return f"det >= {o.det_threshold}, {o.scoring}{thr}, {nms}, flip {'on' if o.flip_test else 'off'}{scales}"


def candidate_sets(pipeline: TopDownPipeline, gt_path: Path, images: Path, boxes: str, quiet: bool = False
                   ) -> tuple[list[tuple[list[Candidates], dict]], list[str], list[str]]:  # fmt: skip
    """(candidates, gt) per box source ("gt", "detector" or "both"), the names of the sources, failed inputs."""
    from posekit.evaluation.run import read_gt_json

    gt = read_gt_json(gt_path)
    if not isinstance(gt, dict) or not gt.get("images") or "annotations" not in gt:
        raise InputError(f"--gt {gt_path}: COCO keypoint ground truth with images and annotations is needed")
    sources = ["gt", "detector"] if boxes == "both" else [boxes]
    sets, failed = [], []
    for source in sources:
        candidates, bad = collect_candidates(pipeline, gt, images, source == "gt", min(DET_THRESHOLDS), quiet)
        sets.append((candidates, gt))
        failed += bad
    return sets, sources, failed


def run_tune_nms(model: str, gt: Path, images: Path, boxes: str = "both", val_gt: Path | None = None, val_images: Path | None = None,
                 backend: str = "auto", quiet: bool = False, max_ms: float | None = None, draws: int = 100) -> dict[str, Any]:  # fmt: skip
    """`posekit tune-nms`: search on (gt, images); the AP-vs-ms/image frontier of every setting scored; the
    best setting (within `max_ms` per image when given) and the recommended one: the cheapest whose AP
    deficit to the best is within a `draws`-resample bootstrap interval over images; both scored on the
    held-out (val_gt, val_images) when given, each AP with its bootstrap interval."""
    from dataclasses import asdict

    from posekit.zoo.loader import load_model

    pipeline = load_model(model, backend=backend, mode="accurate")  # the AP protocol, as eval --model
    if not isinstance(pipeline, TopDownPipeline):
        raise InputError(f"--model {model}: tune-nms tunes the post-processing of top-down models (detector + crops)")
    sets, sources, failed = candidate_sets(pipeline, gt, images, boxes, quiet)
    score = Scorer(pipeline, sets)
    base = TopDownOptions()
    best, rows = tune(score, base, log=(lambda _: None) if quiet else print)

    def cost(options: TopDownOptions) -> float:
        return estimated_ms(options, sets)

    points = frontier(score, cost)
    if not any(ap > 0 for _, ap, _ in points):
        raise InputError(f"--gt {gt}: every setting scores AP 0 on these images; nothing to tune (wrong images or keypoint layout?)")
    print("AP-vs-ms/image frontier on the tuning split (ms estimated from the measured detector and per-crop times):")
    for ms, ap, options in points:
        print(f"  {ms:7.1f} ms/img  AP {ap:.4f}  {_describe(options)}")
    if max_ms is not None:
        within = [p for p in points if p[0] <= max_ms]
        if not within:
            raise InputError(f"--max-ms {max_ms}: no setting scored runs that fast (the cheapest: {points[0][0]:.1f} ms/img)")
        best = max(within, key=lambda p: p[1])[2]
    cheaper = [o for ms, _, o in points if ms < cost(best)]
    recommended, intervals = bootstrap_choice(score, best, cheaper, draws) if draws and cheaper else (best, {})
    report: dict[str, Any] = {"model": model, "gt": str(gt), "boxes": sources, "best": asdict(best), "recommended": asdict(recommended),
                              "max_ms": max_ms, "bootstrap_draws": draws, "bootstrap": intervals, "search": rows,
                              "frontier": [{"ms_per_image": ms, "AP": ap, "options": _describe(o)} for ms, ap, o in points]}  # fmt: skip
    compare = {"plain mean, no NMS": replace(base, scoring="mean", pose_nms="none"), "previous defaults": base, "tuned": best,
               "recommended": recommended}  # fmt: skip
    jitter = CROP_SCALE_SETS[1] if best.crop_scales == CROP_SCALE_SETS[0] else CROP_SCALE_SETS[0]  # the other crop-scale setting
    compare[f"tuned, crop scales {'/'.join(map(str, jitter))}"] = replace(best, crop_scales=jitter)
    splits = [("tuning", score)]
    if val_gt is not None:
        val_sets, _, bad = candidate_sets(pipeline, val_gt, val_images or images, boxes, quiet)
        splits.append(("held-out", Scorer(pipeline, val_sets)))
        failed += bad
    report["compare"] = {}
    for split, scorer in splits:
        spread = _ap_intervals(scorer, {"tuned": best, "recommended": recommended}, draws)
        for name, options in compare.items():
            aps = dict(zip(sources, scorer.aps(options)))
            report["compare"][f"{split}: {name}"] = {**aps, "ms_per_image": cost(options), **spread.get(name, {})}
            iv = spread.get(name, {}).get("mean AP, 95% interval")
            shown = f"  mean AP {np.mean(list(aps.values())):.4f} [{iv[0]:.4f}, {iv[1]:.4f}]" if iv else ""
            print(f"{split:8s} {name:34s} " + "  ".join(f"AP ({s} boxes) {ap:.4f}" for s, ap in aps.items()) + f"{shown}  {cost(options):.0f} ms/img")
    report["failed"] = failed
    return report


def _bootstrap_mean_aps(scorer: Scorer, settings: dict[str, TopDownOptions], draws: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Each setting's AP, averaged over the scorer's sets, on `draws` resamples of the images (the same
    resamples for every setting)."""
    from posekit.evaluation.bootstrap import bootstrap_aps

    total = {name: np.zeros(draws) for name in settings}
    for candidates, gt in scorer.sets:
        aps = bootstrap_aps(gt, {n: results_of(scorer.pipeline, candidates, o) for n, o in settings.items()}, scorer.pipeline.sigmas, draws, seed)
        for name in settings:
            total[name] += aps[name] / len(scorer.sets)
    return total


def _ap_intervals(scorer: Scorer, settings: dict[str, TopDownOptions], draws: int) -> dict[str, dict[str, list[float]]]:
    """Each setting's mean AP over the scorer's sets, as a 95 % bootstrap interval over images."""
    from posekit.evaluation.bootstrap import interval

    if not draws:
        return {}
    return {name: {"mean AP, 95% interval": list(interval(v))} for name, v in _bootstrap_mean_aps(scorer, settings, draws).items()}


def estimated_ms(options: TopDownOptions, sets: list[tuple[list[Candidates], dict]]) -> float:
    """ms per image a setting costs, from the times measured while the candidates were made: the detector
    per image, plus the pose model per crop times the crops the setting runs (boxes passing its
    `box_threshold()`, times its crop variants). Taken from the detector-box set when there is one."""
    cands = next((c for c, _ in sets if c and not c[0].given_boxes), sets[0][0])
    crops = sum(len(c.boxes) * c.keypoints.shape[0] for c in cands)
    per_crop = sum(c.pose_seconds for c in cands) / max(crops, 1)
    detect = sum(c.detect_seconds for c in cands)
    posed = sum(len(c.boxes) if c.given_boxes else int((c.box_scores >= options.box_threshold()).sum()) for c in cands)
    return 1000 * (detect + posed * len(variant_rows(options, cands[0].scales if cands else CANDIDATE_SCALES)) * per_crop) / max(len(cands), 1)


def frontier(scorer: Scorer, cost: Callable[[TopDownOptions], float]) -> list[tuple[float, float, TopDownOptions]]:
    """(ms/image, AP, options) of the settings scored that no cheaper setting matches in AP, cheapest first."""
    points = sorted(((cost(o), scorer(o), o) for o in scorer.options.values()), key=lambda p: (p[0], -p[1]))
    out: list[tuple[float, float, TopDownOptions]] = []
    for ms, ap, options in points:
        if not out or ap > out[-1][1]:
            out.append((ms, ap, options))
    return out


def bootstrap_choice(scorer: Scorer, best: TopDownOptions, cheaper: list[TopDownOptions], draws: int = 100,
                     seed: int = 0) -> tuple[TopDownOptions, dict[str, Any]]:  # fmt: skip
    """The cheapest of `cheaper` (cheapest first) whose AP deficit to `best` has a 95 % bootstrap interval
    over images that holds 0 (mean over the scorer's sets; the same resamples for every setting), else
    `best`; and each one's interval of that deficit."""
    from posekit.evaluation.bootstrap import interval

    names = {_describe(o): o for o in [best, *cheaper]}
    aps = _bootstrap_mean_aps(scorer, names, draws, seed)
    intervals = {name: interval(aps[_describe(best)] - aps[name]) for name in names}
    chosen = next((o for o in cheaper if intervals[_describe(o)][0] <= 0.0), best)
    return chosen, {name: {"AP deficit to the best, 95% interval": list(iv)} for name, iv in intervals.items()}
