"""Do a HigherHRNet checkpoint's associative-embedding tags separate people? (docs/warm_start.md)

On the held-out coco-extra images 70-89, the tag map (1/4, no flip) is read at every labelled joint (COCO v > 0).
Per image with two or more labelled persons: the spread of each person's tags around its mean (what the pull
loss shrinks) and the distance between the means of two persons (what the push loss grows). Tags that
group people have a between-person distance well above the within-person spread and above the decoder's
`tag_threshold` (1). With `--ap`, held-out COCO AP (`posekit eval --model`, the accurate mode) with the tags as
they are and with every tag set to zero (grouping by heat and position alone): equal AP means unused tags.

usage: .venv/bin/python tools/hh_tags.py [--ap] CHECKPOINT ...
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path
from unittest import mock

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from posekit import cli  # noqa: E402
from posekit.data.transforms import normalise  # noqa: E402
from posekit.data.wholeimage import fit_matrix  # noqa: E402
from posekit.models.higherhrnet import HigherHRNetModel  # noqa: E402
from posekit.pipeline.readers import read_image  # noqa: E402
from posekit.zoo.checkpoints import model_from_checkpoint  # noqa: E402
from tools.eval_families import heldout_gt  # noqa: E402

DATA = Path(os.environ.get("POSEKIT_TEST_DATA", ROOT.parent / "shared" / "data"))


@torch.inference_mode()
def tag_stats(model: HigherHRNetModel, gt: dict) -> tuple[float, float, int]:
    """(mean within-person tag std, median distance between two persons' mean tags, person pairs)."""
    size, stride = model.input_size[0], model.stride
    spreads, gaps = [], []
    for img in gt["images"]:
        people = [a for a in gt["annotations"] if a["image_id"] == img["id"] and not a.get("iscrowd") and a["num_keypoints"] >= 2]
        if len(people) < 2:
            continue
        image = read_image(DATA / "coco-extra" / "train2017" / img["file_name"])
        mat = fit_matrix(image.shape[:2], size)
        canvas = cv2.warpAffine(image, mat, (size, size), flags=cv2.INTER_LINEAR)
        tags = model(torch.from_numpy(normalise(canvas))[None])[1][0]  # [K,h,w] at 1/4
        means = []
        for person in people:
            kp = np.asarray(person["keypoints"], np.float32).reshape(-1, 3)
            xy = kp[:, :2] @ mat[:, :2].T + mat[:, 2]
            cells = np.clip(np.round(xy / stride).astype(int), 0, tags.shape[-1] - 1)
            values = np.array([float(tags[k, cells[k, 1], cells[k, 0]]) for k in np.flatnonzero(kp[:, 2] > 0)])
            spreads.append(values.std())
            means.append(values.mean())
        gaps += [abs(a - b) for i, a in enumerate(means) for b in means[i + 1 :]]
    return float(np.mean(spreads)), float(np.median(gaps)), len(gaps)


def heldout_ap(checkpoint: str, gt_file: Path, zero_tags: bool) -> float:
    original = HigherHRNetModel.outputs

    def zeroed(self: HigherHRNetModel, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        heat, tags = original(self, images)
        return heat, torch.zeros_like(tags)

    with (
        tempfile.TemporaryDirectory() as tmp,
        mock.patch.object(HigherHRNetModel, "outputs", zeroed) if zero_tags else contextlib.nullcontext(),
    ):
        out = Path(tmp) / "stats.json"
        args = ["eval", "--model", checkpoint, "--gt", str(gt_file), "--images", str(DATA / "coco-extra" / "train2017")]
        cli.main([*args, "--out", str(out), "--out-dir", str(Path(tmp) / "pred"), "--quiet"])
        return json.loads(out.read_text())["stats"]["AP"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--ap", action="store_true", help="also held-out AP with the tags as they are and zeroed")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        gt_file = heldout_gt(Path(tmp))  # coco-extra images 70-89, as tools/eval_families.py scores them
        gt = json.loads(gt_file.read_text())
        print(
            "| checkpoint | within-person tag std | median distance between persons | pairs |"
            + (" AP | AP, tags zeroed |" if args.ap else "")
        )
        print("|---|---|---|---|" + ("---|---|" if args.ap else ""))
        for path in args.checkpoints:
            model = model_from_checkpoint(path).eval()
            spread, gap, pairs = tag_stats(model, gt)
            cells = f" {heldout_ap(path, gt_file, False):.3f} | {heldout_ap(path, gt_file, True):.3f} |" if args.ap else ""
            print(f"| {path} | {spread:.3f} | {gap:.3f} | {pairs} |{cells}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
