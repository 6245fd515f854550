"""The whole-image models side by side on the same images with the same protocol (`posekit eval --model`,
the accurate mode: every person scored): COCO AP on coco-mini (the
`*_small_mosaic.yaml` configs train on it: held out only for models that did not) and on coco-extra images
70-89 (held out by every config), and PCK@0.2 on 200 mosaics of the held-out LSP-Extended images 9000-9999.
With --gt-boxes (top-down models), COCO AP on both COCO sets once more with the ground-truth person boxes
(`posekit predict --boxes GT --mode accurate`, then `posekit eval --results`), beside the detector's boxes.
Each cell is cached as OUT/<model>/<set>.json, so a rerun scores only what is new.

usage: .venv/bin/python tools/eval_families.py [--out DIR] [--gt-boxes] [MODEL ...]   (names or checkpoints;
       default: movenet-multipose and the shipped whole-image models)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("POSEKIT_TEST_DATA", ROOT.parent / "shared" / "data"))
DEFAULT = ("movenet-multipose", "higherhrnet-small", "posedet-small", "simple-small")
HELDOUT = (70, 90)  # coco-extra images no config trains on


def heldout_gt(out: Path) -> Path:
    """coco-extra's annotations of images 70-89 (in file order) as their own GT file."""
    path = out / "coco_extra_70_90.json"
    if not path.exists():
        gt = json.loads((DATA / "coco-extra" / "annotations" / "person_keypoints_train2017.json").read_text())
        images = gt["images"][HELDOUT[0] : HELDOUT[1]]
        ids = {img["id"] for img in images}
        gt = {**gt, "images": images, "annotations": [a for a in gt["annotations"] if a["image_id"] in ids]}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(gt))
    return path


def score(model: str, name: str, args: list[str], out: Path) -> dict:
    stats = out / f"{name}.json"
    if not stats.exists():
        cmd = [sys.executable, "-m", "posekit.cli", "eval", "--model", model, *args, "--out", str(stats), "--quiet"]
        subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return json.loads(stats.read_text())["stats"]


def score_gt_boxes(model: str, name: str, gt: Path, images: Path, out: Path) -> dict:
    """COCO AP of a top-down model on the GT file's own person boxes (every image the GT lists)."""
    stats = out / f"{name}_gt_boxes.json"
    if not stats.exists():
        listed = [str(images / img["file_name"]) for img in json.loads(gt.read_text())["images"]]
        pred = out / f"pred_{name}_gt_boxes"
        cli = [sys.executable, "-m", "posekit.cli"]
        subprocess.run([*cli, "predict", *listed, "--model", model, "--boxes", str(gt), "--mode", "accurate", "--out", str(pred),
                        "--exist-ok", "--quiet"], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)  # fmt: skip
        subprocess.run([*cli, "eval", "--gt", str(gt), "--results", str(pred / "results.json"), "--out", str(stats), "--quiet"],
                       check=True, cwd=ROOT, stdout=subprocess.DEVNULL)  # fmt: skip
    return json.loads(stats.read_text())["stats"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", default=list(DEFAULT))
    ap.add_argument("--out", type=Path, default=Path("outputs/eval_families"))
    ap.add_argument("--gt-boxes", action="store_true", help="top-down models: also AP on the ground-truth person boxes")
    ap.add_argument("--no-mosaics", action="store_true", help="leave out the mosaic PCK column (slow for top-down models)")
    args = ap.parse_args()
    mini = DATA / "coco-mini"
    sets = {
        "coco_mini": ["--gt", str(mini / "annotations" / "person_keypoints_train2017.json"), "--images", str(mini / "train2017")],
        "heldout": ["--gt", str(heldout_gt(args.out)), "--images", str(DATA / "coco-extra" / "train2017")],
        "mosaics": ["--gt", str(DATA / "lspet" / "joints.mat"), "--images", str(DATA / "lspet" / "images"), "--range", "9000", "10000",
                    "--mosaics", "200"],
    }  # fmt: skip
    gts = {"coco_mini": (mini / "annotations" / "person_keypoints_train2017.json", mini / "train2017"),
           "heldout": (heldout_gt(args.out), DATA / "coco-extra" / "train2017")}
    boxes_head = " | AP coco-mini, GT boxes | AP coco-extra 70-89, GT boxes" if args.gt_boxes else ""
    print(f"| model | AP coco-mini | AP50 | AP coco-extra 70-89 | AP50 | mosaic PCK@0.2{boxes_head} |")
    print("|---|---|---|---|---|---|" + ("---|---|" if args.gt_boxes else ""))
    for model in args.models:
        out = args.out / model.replace("/", "_")
        cells = {}
        for name, extra in sets.items():
            if name == "mosaics" and args.no_mosaics:
                continue
            cells[name] = score(model, name, [*extra, "--out-dir", str(out / f"pred_{name}")], out)
        m, h = cells["coco_mini"], cells["heldout"]
        pck = "–" if args.no_mosaics else f"{cells['mosaics']['Mean']:.3f}"  # PCK@0.2 over the joints LSP labels
        boxes = "".join(f" | {score_gt_boxes(model, name, *gts[name], out)['AP']:.3f}" for name in gts) if args.gt_boxes else ""
        print(f"| {model} | {m['AP']:.3f} | {m['AP50']:.3f} | {h['AP']:.3f} | {h['AP50']:.3f} | {pck}{boxes} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
