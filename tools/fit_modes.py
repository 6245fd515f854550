"""Fit and check the modes' person-score calibration (posekit/postprocess/calibration.py) on real labels.

For each top-down model a mode uses, the pose model runs once on every candidate (CenterNet boxes >= 0.05,
plain and mirrored crops; and the GT boxes) of the fitting split (coco-extra) and the held-out split
(coco-mini); the outputs are cached in OUT. Then, for each mode's settings:
- the persons the settings keep (before any output threshold) on the fitting split are matched to the
  labels (COCO matching, OKS >= 0.5) and a logistic calibration is fitted on them;
- on the held-out split: AP with GT boxes and with CenterNet boxes (raw rule vs calibrated score), the
  reliability table, and precision / recall of what the mode returns at its output threshold;
- the output threshold is the lowest of a grid whose precision on the fitting split is >= --precision.

usage: python tools/fit_modes.py [--out outputs/fit_modes] [--precision 0.9] [--backend onnxruntime]
Prints the presets' calibration weights and thresholds as JSON (pasted into posekit/postprocess/presets.py).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from posekit.evaluation.coco import evaluate_coco_keypoints  # noqa: E402
from posekit.evaluation.matching import match_results, reliability_table  # noqa: E402
from posekit.fileio import atomic_path  # noqa: E402
from posekit.pipeline.stages import TopDownOptions  # noqa: E402
from posekit.postprocess.calibration import fit_calibration, log_loss, person_features  # noqa: E402
from posekit.postprocess.presets import TOPDOWN_PRESETS  # noqa: E402
from posekit.postprocess.tune import collect_candidates, results_of  # noqa: E402
from posekit.zoo.loader import load_model  # noqa: E402

DATA = Path(os.environ.get("POSEKIT_TEST_DATA", ROOT.parent / "shared" / "data"))
SPLITS = {"fit": DATA / "coco-extra", "held-out": DATA / "coco-mini"}


def candidates(model: str, split: str, out: Path, backend: str) -> tuple[object, dict, dict]:
    """(pipeline, gt, {"gt": candidates, "detector": candidates}) for `split`, cached in OUT."""
    gt = json.loads((SPLITS[split] / "annotations" / "person_keypoints_train2017.json").read_text())
    pipeline = load_model(model, backend=backend)
    cache = out / f"{model}-{split}.pkl"
    if cache.exists():
        return pipeline, gt, pickle.loads(cache.read_bytes())
    sets = {}
    for source in ("gt", "detector"):
        sets[source], failed = collect_candidates(pipeline, gt, SPLITS[split] / "train2017", source == "gt", 0.05, scales=(1.0,))
        assert not failed, failed
    with atomic_path(cache) as tmp:
        tmp.write_bytes(pickle.dumps(sets))
    return pipeline, gt, sets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "outputs" / "fit_modes")
    ap.add_argument("--threshold", type=float, default=0.5, help="the output threshold of balanced / fast (calibrated probability)")
    ap.add_argument("--backend", default="onnxruntime")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    report = {}
    for model, flip in (("topdown-thunder", True), ("topdown-thunder", False), ("topdown-lightning", False), ("topdown-lightning", True)):
        key = f"{model}, flip {'on' if flip else 'off'}"
        pipeline, gt_fit, fit = candidates(model, "fit", args.out, args.backend)
        _, gt_val, val = candidates(model, "held-out", args.out, args.backend)
        base = TopDownOptions(**{**TOPDOWN_PRESETS["thunder-coco-extra"], "flip_test": flip})
        res, box, kp = persons(pipeline, fit["detector"], base)
        labels = match_results(gt_fit, res, pipeline.sigmas).labels
        counted = labels >= 0
        calib = fit_calibration(person_features(box, kp)[counted], labels[counted])
        calibrated = replace(base, calibration=calib.weights)
        row = {"weights": calib.weights, "fit persons": int(counted.sum()), "fit right": int((labels == 1).sum())}
        for name, opts in (("raw", base), ("calibrated", calibrated)):
            for source in ("gt", "detector"):
                row[f"AP {name} {source}"] = evaluate_coco_keypoints(gt_val, results_of(pipeline, val[source], opts), pipeline.sigmas)["AP"]
        # the calibrated persons of each split, matched in calibrated order (COCO's matching goes by score)
        split_matches = {}
        for split, cands, gt in (("fit", fit, gt_fit), ("held-out", val, gt_val)):
            res, box, kp = persons(pipeline, cands["detector"], calibrated)
            posed = np.concatenate([c.box_scores for c in cands["detector"]]) if cands["detector"] else np.zeros(0)
            split_matches[split] = (match_results(gt, res, pipeline.sigmas), calib(box, kp), box, posed, len(cands["detector"]))
        vm, vp = split_matches["held-out"][:2]
        counted = vm.labels >= 0
        row["held-out log loss"] = log_loss(vp[counted], vm.labels[counted])
        row["reliability (held-out)"] = reliability_table(vp, vm.labels)
        row["reliability (fit)"] = reliability_table(split_matches["fit"][1], split_matches["fit"][0].labels)
        row["precision/recall"] = {}
        for det in (0.05, 0.1, 0.15, 0.2, 0.3):
            for t in (0.3, 0.4, 0.5, 0.6):
                cell = {}
                for split, (m, p, box, posed, n_images) in split_matches.items():
                    prec, rec, n = m.precision_recall((p >= t) & (box >= det))
                    cell[split] = {"precision": round(prec, 3), "recall": round(rec, 3), "returned": n,
                                   "posed/img": round(float((posed >= det).sum()) / max(n_images, 1), 1)}  # fmt: skip
                row["precision/recall"][f"det {det}, p >= {t}"] = cell
        report[key] = row
        print(key, json.dumps({k: v for k, v in row.items() if not k.startswith(("reliability", "precision"))}, default=float))
        for k, cell in row["precision/recall"].items():
            print(f"  {k:18s} " + "  ".join(f"{s}: P {c['precision']:.3f} R {c['recall']:.3f} n {c['returned']} posed/img {c['posed/img']}" for s, c in cell.items()))
        for r in row["reliability (held-out)"]:
            print(f"  held-out {r['bin']}: n {r['n']:4d} predicted {r['predicted']:.3f} observed {r['observed']:.3f}")
    with atomic_path(args.out / "report.json") as tmp:
        tmp.write_text(json.dumps(report, indent=1, default=float))


def persons(pipeline, cands, options: TopDownOptions) -> tuple[list[dict], np.ndarray, np.ndarray]:  # noqa: ANN001
    """The persons `options` return (COCO records), their box scores and keypoint scores [N, K]."""
    out = results_of(pipeline, cands, options, with_box_scores=True)
    box = np.array([r["box_score"] for r in out], np.float32)
    kp = np.array([r["keypoints"][2::3] for r in out], np.float32).reshape(len(out), -1)
    return out, box, kp


if __name__ == "__main__":
    main()
