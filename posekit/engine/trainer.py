"""`posekit train`: the training engine for top-down models.

Determinism: the order of the data is a function of (seed, epoch) and every augmentation draw of
(seed, epoch, index); a checkpoint stores model, optimizer, scheduler, the RNG states and the position
(epoch, batch) in the data, so a run killed and resumed continues bit-identically (a test checks it).
Distributed: launched by `torchrun`, it uses DDP with the gloo backend (CPU); each rank takes its share
of every global batch, rank 0 writes checkpoints, logs and evaluates.
"""

from __future__ import annotations

import math
import os
import random
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from posekit.codecs.heatmap import HeatmapCodec, flip_heatmaps, flip_permutation
from posekit.codecs.nms import instance_scores, oks_nms
from posekit.data.datasets import (
    Instance,
    Sample,
    match_detected_boxes,
    read_coco,
    read_detections,
    read_lsp,
    to_coco_dict,
    with_detected_boxes,
)
from posekit.data.specs import get_spec
from posekit.data.topdown import TopDownDataset
from posekit.engine.config import Config, resolve
from posekit.evaluation.coco import evaluate_coco_keypoints
from posekit.evaluation.pck import lsp_pck
from posekit.fileio import atomic_path, atomic_write_json
from posekit.models.topdown import TopDownModel


def read_splits(cfg: Config) -> tuple[list[Sample], list[Sample], list[Sample]]:
    """(train samples, validation samples to crop, validation ground truth). With `val_det_file` the
    samples to crop hold the detector's boxes; the ground truth stays the annotations."""
    d = cfg.data
    read = read_lsp if d.format == "lsp" else read_coco
    samples = read(resolve(d.ann), resolve(d.images) if d.images else None)
    train = samples[slice(*d.train_range)] if d.train_range else samples
    if d.val_ann:
        val = read(resolve(d.val_ann), resolve(d.val_images) if d.val_images else None)
    else:
        val = samples[slice(*d.val_range)] if d.val_range else samples
    if (d.val_det_file or d.train_det_file) and d.format == "lsp":
        raise ValueError("data.*_det_file: LSP has one person per image and no image ids a detector file could name")
    if d.train_det_file:
        train = match_detected_boxes(train, read_detections(resolve(d.train_det_file), d.det_score_threshold))
    if d.val_det_file:
        return train, with_detected_boxes(val, read_detections(resolve(d.val_det_file), d.det_score_threshold)), val
    return train, val, val


def build_datasets(cfg: Config, train: list[Sample], val: list[Sample], stride: int) -> tuple[TopDownDataset, TopDownDataset]:
    w, h = cfg.data.input_size
    hm = (w // stride, h // stride)
    return (TopDownDataset(train, (w, h), hm, True, cfg.data.augment, cfg.train.seed),
            TopDownDataset(val, (w, h), hm, False, seed=cfg.train.seed, require_keypoints=not cfg.data.val_det_file))  # fmt: skip


def build_optimizer(model: nn.Module, t) -> torch.optim.Optimizer:  # noqa: ANN001
    params = [p for p in model.parameters() if p.requires_grad]
    if t.optimizer == "adam":
        return torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay)
    if t.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay)
    if t.optimizer == "sgd":
        return torch.optim.SGD(params, lr=t.lr, momentum=0.9, weight_decay=t.weight_decay)
    raise ValueError(f"unknown optimizer {t.optimizer!r}")


def lr_factor(step: int, t) -> float:  # noqa: ANN001
    """Learning-rate multiplier at `step`: linear warm-up, then cosine / step decay / constant."""
    if t.warmup_steps and step < t.warmup_steps:
        return (step + 1) / t.warmup_steps
    if t.scheduler == "cosine":
        progress = (step - t.warmup_steps) / max(t.steps - t.warmup_steps, 1)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    if t.scheduler == "step":
        return t.gamma ** sum(step >= m for m in t.milestones)
    return 1.0


def pose_loss(output: Any, batch: dict[str, torch.Tensor], codec: HeatmapCodec) -> torch.Tensor:
    """Heatmap head: target-weighted MSE. Integral head: target-weighted L1 on coordinates (heatmap
    pixels), whose gradient reaches the heatmap through the amplitude-symmetric backward."""
    w = batch["weights"]
    if isinstance(output, tuple):
        coords, _, _ = output
        target = batch["keypoints"] * torch.from_numpy(codec.scale)
        return ((coords - target).abs().sum(-1) * w).sum() / w.sum().clamp_min(1.0)
    return (((output - batch["heatmaps"]) ** 2).mean((2, 3)) * w).mean()


def rng_state() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def coco_results(items: list[tuple[Sample, Instance]], keypoints: np.ndarray, scores: np.ndarray, sigmas: np.ndarray) -> list[dict]:
    """COCO keypoint results as top-down evaluation makes them (SimpleBaseline / MMPose protocol): person
    score = box score (1 for annotated boxes) x mean of the keypoint scores above 0.2, then OKS-NMS at
    0.9 within each image."""
    box_scores = np.array([inst.extras.get("score", 1.0) for _, inst in items], np.float32)
    person_scores = instance_scores(box_scores, scores, 0.2)
    boxes = np.stack([inst.box for _, inst in items]) if items else np.zeros((0, 4), np.float32)
    by_image: dict[Any, list[int]] = {}
    for i, (sample, _) in enumerate(items):
        by_image.setdefault(sample.image_id, []).append(i)
    results = []
    for image_id, idx in by_image.items():
        idx = np.array(idx)
        for j in idx[oks_nms(keypoints[idx], person_scores[idx], boxes[idx], sigmas, 0.9)]:
            results.append({"image_id": image_id, "category_id": 1, "score": float(person_scores[j]),
                            "keypoints": np.concatenate([keypoints[j], scores[j][:, None]], 1).reshape(-1).tolist()})  # fmt: skip
    return results


class Trainer:
    def __init__(self, cfg: Config, out_dir: Path | None = None, quiet: bool = False) -> None:
        self.cfg = cfg
        self.out = Path(out_dir or cfg.output.format(name=cfg.name))
        self.quiet = quiet
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("gloo")
        torch.manual_seed(cfg.train.seed)
        np.random.seed(cfg.train.seed)
        random.seed(cfg.train.seed)
        train, val, self.val_gt = read_splits(cfg)
        if not train or not val:
            raise ValueError(f"{cfg.name}: {len(train)} training and {len(val)} validation images; both must be > 0 (check the"
                             " data ranges, and that the detection files name these images)")  # fmt: skip
        self.spec = get_spec(train[0].spec)
        self.model = TopDownModel(cfg.model.backbone, cfg.model.head, self.spec.num_keypoints, cfg.model.integral, cfg.model.head_channels)
        if any(side % self.model.size_divisor for side in cfg.data.input_size):
            raise ValueError(
                f"data.input_size {list(cfg.data.input_size)}: both sides must be multiples of {self.model.size_divisor} for {cfg.model.backbone}"
            )
        self.train_set, self.val_set = build_datasets(cfg, train, val, self.model.stride)
        if len(self.train_set) == 0 or len(self.val_set) == 0:
            raise ValueError(f"{cfg.name}: {len(self.train_set)} training and {len(self.val_set)} validation persons; both must be > 0")
        self.net: nn.Module = nn.parallel.DistributedDataParallel(self.model) if self.world > 1 else self.model
        self.optimizer = build_optimizer(self.model, cfg.train)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: lr_factor(s, cfg.train))
        self.step, self.epoch, self.batch_in_epoch = 0, 0, 0
        self.codec = self.train_set.codec
        self.tb = None

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_path(self) -> Path:
        return self.out / "checkpoint.pt"

    def save_checkpoint(self) -> None:
        if self.rank != 0:
            return
        state = {
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch, "rng": rng_state(), "config": asdict(self.cfg),
        }  # fmt: skip
        with atomic_path(self.checkpoint_path()) as tmp:
            torch.save(state, tmp)

    def load_checkpoint(self, path: Path | None = None) -> None:
        state = torch.load(path or self.checkpoint_path(), weights_only=False)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step, self.epoch, self.batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        set_rng_state(state["rng"])

    # ------------------------------------------------------------------ data order
    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """This rank's index lists for every batch of `epoch` (the global order depends on seed and epoch only)."""
        g = torch.Generator().manual_seed(self.cfg.train.seed * 100_003 + epoch)
        order = torch.randperm(len(self.train_set), generator=g).tolist()
        per_rank = self.cfg.train.batch_size
        global_batch = per_rank * self.world
        batches = [order[i : i + global_batch] for i in range(0, len(order) - global_batch + 1, global_batch)]
        return [b[self.rank * per_rank : (self.rank + 1) * per_rank] for b in batches]

    def batches(self):
        while True:
            self.train_set.epoch = self.epoch
            plan = self.epoch_batches(self.epoch)[self.batch_in_epoch :]
            loader = DataLoader(self.train_set, batch_sampler=plan, num_workers=self.cfg.data.num_workers)
            for batch in loader:
                self.batch_in_epoch += 1
                yield batch
            self.epoch, self.batch_in_epoch = self.epoch + 1, 0

    # ------------------------------------------------------------------ training
    def train(self, max_steps: int | None = None) -> dict[str, Any]:
        """Train up to cfg.train.steps (or stop after `max_steps` more steps, as if killed)."""
        t = self.cfg.train
        self.out.mkdir(parents=True, exist_ok=True)
        if self.rank == 0 and self.tb is None:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(self.out / "tb"))
            except ImportError:
                self.tb = None
        stop_at = t.steps if max_steps is None else min(t.steps, self.step + max_steps)
        bar = tqdm(total=stop_at, initial=self.step, unit="step", disable=self.quiet or self.rank != 0 or None, dynamic_ncols=True)
        metrics: dict[str, Any] = {}
        start, seen = time.perf_counter(), 0
        self.net.train()
        for batch in self.batches():
            if self.step >= stop_at:
                self.batch_in_epoch -= 1  # this batch was not used
                break
            loss = pose_loss(self.net(batch["image"]), batch, self.codec)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if t.grad_clip > 0:
                nn.utils.clip_grad_norm_(self.model.parameters(), t.grad_clip)
            self.optimizer.step()
            self.scheduler.step()
            self.step += 1
            seen += len(batch["image"]) * self.world
            bar.update(1)
            if self.step % t.log_every == 0 or self.step == stop_at:
                bar.set_postfix(loss=f"{loss.item():.5f}", lr=f"{self.scheduler.get_last_lr()[0]:.2e}")
                if self.tb is not None:
                    self.tb.add_scalar("train/loss", loss.item(), self.step)
                    self.tb.add_scalar("train/lr", self.scheduler.get_last_lr()[0], self.step)
            if t.checkpoint_every and self.step % t.checkpoint_every == 0:
                self.save_checkpoint()
            if t.eval_every and self.step % t.eval_every == 0 and self.step < t.steps:
                metrics = self.evaluate()
                self.net.train()
        bar.close()
        self.save_checkpoint()
        elapsed = time.perf_counter() - start
        if self.step >= t.steps:
            metrics = self.evaluate()
        summary = {"step": self.step, "seconds": round(elapsed, 1), "samples_per_s": round(seen / max(elapsed, 1e-9), 2), **metrics}
        if self.rank == 0:
            atomic_write_json(self.out / "summary.json", summary, indent=1)
        return summary

    # ------------------------------------------------------------------ evaluation
    @torch.inference_mode()
    def predict(self, dataset: TopDownDataset) -> tuple[np.ndarray, np.ndarray]:
        """Keypoints [N,K,2] in image pixels and scores [N,K] for every item of `dataset`."""
        self.model.eval()
        loader = DataLoader(dataset, batch_size=64, num_workers=self.cfg.data.num_workers)
        kps, scores = [], []
        for batch in loader:
            out = self.model(batch["image"])
            if self.model.integral:
                coords, conf, _ = out
                if self.cfg.train.flip_test:
                    fc, fconf, _ = self.model(batch["image"].flip(-1))
                    perm = flip_permutation(self.spec.flip_pairs, self.spec.num_keypoints)
                    fc, fconf = fc[:, perm], fconf[:, perm]  # indexing copies
                    fc[..., 0] = self.codec.heatmap_size[0] - 1 - fc[..., 0]
                    coords, conf = (coords + fc) / 2, (conf + fconf) / 2
                xy, s = self.codec.decode_integral(coords.numpy()), conf.numpy()
            else:
                hm = out
                if self.cfg.train.flip_test:
                    hm = (hm + flip_heatmaps(self.model(batch["image"].flip(-1)), self.spec.flip_pairs)) / 2
                xy, s = self.codec.decode(hm.numpy(), "dark")
            mats = batch["matrix"].numpy().astype(np.float64)
            for m, p in zip(mats, xy):  # crop pixels -> image pixels
                inv = np.linalg.inv(np.vstack([m, [0, 0, 1]]))[:2]
                kps.append(p @ inv[:, :2].T + inv[:, 2])
            scores.append(s)
        return np.stack(kps).astype(np.float32), np.concatenate(scores)

    def evaluate(self) -> dict[str, Any]:
        if self.rank != 0:
            return {}
        kps, scores = self.predict(self.val_set)
        items = self.val_set.items
        if self.spec.name == "lsp14":
            gt = np.stack([inst.keypoints for _, inst in items])
            metrics = {f"pck@0.2/{k}": v for k, v in lsp_pck(kps, gt[:, :, :2], gt[:, :, 2] > 0, self.spec.keypoints).items()}
        else:
            results = coco_results(items, kps, scores, np.array(self.spec.sigmas))
            metrics = {
                f"coco/{k}": v for k, v in evaluate_coco_keypoints(to_coco_dict(self.val_gt), results, np.array(self.spec.sigmas)).items()
            }
        if self.tb is not None:
            for k, v in metrics.items():
                self.tb.add_scalar(f"val/{k}", v, self.step)
        return metrics
