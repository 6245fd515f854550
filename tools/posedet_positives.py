"""PoseDet's classification positives at a given checkpoint (or the warm-started step 0) on real training
batches: per image, how many candidates count as positives (coarse OKS > model.positive_oks with some person),
how many of them sit beyond half their person's scale from its keypoint centroid, how many are negatives, and
how many score above 0.1 (docs/warm_start.md: the PoseDet collapse).

usage: .venv/bin/python tools/posedet_positives.py [--checkpoint CKPT] [--images 8]   (default: the warm step 0 of
       configs/posedet_small_mosaic.yaml with the separable heads from MoveNet MultiPose, on its validation images)
"""

from __future__ import annotations

import argparse

import torch

from posekit.data.build import build_datasets, read_splits
from posekit.data.specs import get_spec
from posekit.engine.config import build_config, load_config, parse_overrides
from posekit.models import build_model
from posekit.models.posedet import pose_oks
from posekit.zoo.checkpoints import model_from_checkpoint, read_checkpoint

WARM = ["model.head_shape=separable", "model.init_heads=movenet_multipose", "model.strides=[4]", "model.channels=16"]
KEYS = ("image", "gt_keypoints", "gt_area")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", help="a PoseDet training checkpoint (default: the warm-started model at step 0)")
    ap.add_argument("--images", type=int, default=8)
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.checkpoint:
        model = model_from_checkpoint(args.checkpoint)
        cfg = build_config(read_checkpoint(args.checkpoint)["config"])
    else:
        cfg = load_config("configs/posedet_small_mosaic.yaml", parse_overrides(WARM))
        model = build_model(cfg.model, get_spec("coco17"), cfg.data.input_size).eval()
    train, val, _ = read_splits(cfg)
    _, dataset = build_datasets(cfg, model, train, val)
    items = [dataset[i] for i in range(min(args.images, len(dataset)))]
    batch = {k: torch.stack([torch.as_tensor(item[k]) for item in items]) for k in KEYS}
    with torch.no_grad():
        logits, coarse, _ = model(batch["image"])
        pos, stride = model._candidates(batch["image"])
        gt, area = batch["gt_keypoints"], batch["gt_area"]
        best, who = pose_oks(pos + coarse * stride, gt, area, model.sigmas).max(-1)
    for n in range(len(items)):
        labelled = gt[n, :, :, 2:]
        centroid = (gt[n, :, :, :2] * labelled).sum(1) / labelled.sum(1).clamp_min(1)
        distance = (pos[0, :, 0] - centroid[who[n]]).norm(dim=-1)
        positive = best[n] > model.cfg.positive_oks
        far = positive & (distance > 0.5 * area[n][who[n]].sqrt())
        print(f"image {n}: {int((labelled.squeeze(-1) > 0).any(-1).sum())} persons, {int(positive.sum())} positives "
              f"({int(far.sum())} beyond half their person's scale), {int((best[n] < model.cfg.negative_oks).sum())} negatives "
              f"of {best.shape[1]} candidates, {int((logits[n].sigmoid() > 0.1).sum())} scoring > 0.1")  # fmt: skip


if __name__ == "__main__":
    main()
