"""A shipped whole-image model's output threshold (`PackagedModel.output_threshold`, docs/warm_start.md): the
lowest of 0.1, 0.2, ... whose results are at least half right at OKS 0.5 on coco-mini, then the same bar checked
on coco-extra 70-89. Reads the `eval --model` results that `tools/eval_families.py` left in its output folder,
so run that first for each model.

usage: .venv/bin/python tools/output_thresholds.py [--out outputs/eval_families] MODEL ...   (as given to eval_families)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from posekit.evaluation.matching import match_results  # noqa: E402

DATA = Path(os.environ.get("POSEKIT_TEST_DATA", ROOT.parent / "shared" / "data"))
BARS = tuple(round(0.1 * i, 1) for i in range(1, 10))


def table(gt: Path, results_file: Path) -> list[tuple[float, float, float, int]]:
    """(bar, precision, recall, results kept) at each bar."""
    results = json.loads(results_file.read_text())
    matches = match_results(gt, results)
    scores = np.array([r["score"] for r in results])
    return [(bar, *matches.precision_recall(scores >= bar)) for bar in BARS]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--out", type=Path, default=Path("outputs/eval_families"))
    args = ap.parse_args()
    gts = {
        "coco_mini": DATA / "coco-mini" / "annotations" / "person_keypoints_train2017.json",
        "heldout": args.out / "coco_extra_70_90.json",
    }
    print("| model | bar | coco-mini precision / recall | coco-extra 70-89 precision / recall |")
    print("|---|---|---|---|")
    for model in args.models:
        folder = args.out / model.replace("/", "_")
        rows = {name: table(gt, folder / f"pred_{name}" / "results.json") for name, gt in gts.items()}
        pick = next((i for i, (_, p, _, _) in enumerate(rows["coco_mini"]) if p >= 0.5), len(BARS) - 1)
        (bar, pm, rm, _), (_, ph, rh, _) = rows["coco_mini"][pick], rows["heldout"][pick]
        print(f"| {model} | {bar} | {pm:.2f} / {rm:.2f} | {ph:.2f} / {rh:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
