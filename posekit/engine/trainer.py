"""`posekit train`: one training engine for every model family.

The trainer knows the model interface (`posekit.models.base.PoseModel`) and nothing else: the model
builds its own targets' codec, computes its named loss terms (summed here, each logged) and decodes its
own predictions; evaluation goes `predict` -> `Poses` -> OKS-NMS per image -> COCO results ->
`posekit.evaluation`.

Determinism: the order of the data is a function of (seed, epoch) and every augmentation draw of
(seed, epoch, index); a checkpoint stores model, optimizer, scheduler, the RNG states and the position
(epoch, batch) in the data, so a run killed and resumed continues bit-identically (a test checks it).
Distributed: launched by `torchrun`, it uses DDP with the gloo backend (CPU); each rank takes its share
of every global batch, rank 0 writes checkpoints, logs and evaluates.
"""

from __future__ import annotations

import gc
import math
import os
import random
import time
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from posekit.data.build import build_datasets, read_splits
from posekit.data.specs import get_spec
from posekit.engine.config import Config, ConfigError
from posekit.evaluation.run import evaluate_samples
from posekit.fileio import atomic_path, atomic_write_json, whole_item
from posekit.models import build_model
from posekit.models.base import LossModule
from posekit.postprocess.nms import oks_nms
from posekit.structures import Poses
from posekit.zoo.checkpoints import CHECKPOINT_FORMAT, state_sha256

OKS_NMS_THRESHOLD = 0.9  # per image, over all predicted persons (SimpleBaseline / MMPose evaluation)


def build_optimizer(model: nn.Module, t) -> torch.optim.Optimizer:  # noqa: ANN001
    pretrained = getattr(model, "pretrained_prefixes", ("backbone.",))  # the trunk, and heads warm-started from a graph
    if getattr(t, "warm_heads_lr", "full") == "full":
        pretrained = ("backbone.",)
    trunk = [p for n, p in model.named_parameters() if p.requires_grad and n.startswith(pretrained)]
    rest = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith(pretrained)]
    if t.backbone_lr_mult == 0:  # a frozen trunk: no gradient computed through it at all, not only a zero step
        for p in trunk:
            p.requires_grad_(False)
        trunk = []
    params = [{"params": rest}, {"params": trunk, "lr": t.lr * t.backbone_lr_mult}] if trunk and t.backbone_lr_mult != 1.0 else rest + trunk
    if t.optimizer == "adam":
        return torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay)
    if t.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay)
    return torch.optim.SGD(params, lr=t.lr, momentum=0.9, weight_decay=t.weight_decay)


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


def rng_state() -> dict[str, Any]:
    """RNG states as tensors and plain values, so checkpoints load with `torch.load(weights_only=True)`."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"torch": torch.get_rng_state(), "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
            "python": random.getstate()}  # fmt: skip


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, np.int64).astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def results_from_poses(per_image: dict[Any, list[Poses]], sigmas: np.ndarray, nms_threshold: float | None = OKS_NMS_THRESHOLD) -> list[dict]:
    """COCO results: each image's persons merged, OKS-NMS (None: none), written with their scores."""
    results = []
    for image_id, items in per_image.items():
        poses = Poses.concat(items)
        if nms_threshold is not None:
            poses = poses.select(oks_nms(poses.keypoints, poses.scores, poses.boxes, sigmas, nms_threshold))
        results += poses.to_coco_results(image_id)
    return results


def release_process_group() -> None:
    """End distributed work cleanly: drop the caller's DDP wrappers first. A process group still referenced by a
    DDP reducer is only freed at interpreter exit, where gloo's threads sometimes abort the process ('terminate
    called without an active exception', ~3% of 2-rank runs here, 0 of 160 after this)."""
    if not dist.is_initialized():
        return
    gc.collect()  # the reducer sits in reference cycles
    dist.barrier()
    dist.destroy_process_group()


class Trainer:
    def __init__(self, cfg: Config, out_dir: Path | None = None, quiet: bool = False) -> None:
        self.cfg = cfg
        self.out = Path(out_dir or cfg.output.format(name=cfg.name))
        self.quiet = quiet
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        want = cfg.train.device
        if want == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"{cfg.name}: train.device cuda, but torch sees no CUDA device")
        cuda = want == "cuda" or (want == "auto" and torch.cuda.is_available())
        self.device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}" if cuda else "cpu")
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if cuda else "gloo")
        torch.manual_seed(cfg.train.seed)
        np.random.seed(cfg.train.seed)
        random.seed(cfg.train.seed)
        train, val, self.val_gt = read_splits(cfg)
        if not train or not val:
            raise ConfigError(f"{cfg.name}: {len(train)} training and {len(val)} validation images; both must be > 0 (check the"
                              " data ranges, and that the detection files name these images)")  # fmt: skip
        self.spec = get_spec(train[0].spec)
        try:
            self.model = build_model(cfg.model, self.spec, cfg.data.input_size)
        except (KeyError, ValueError) as e:  # unknown backbone / head, an option the family refuses
            raise ConfigError(f"{cfg.name}: {e.args[0]}") from e
        if any(side % self.model.size_divisor for side in cfg.data.input_size):
            raise ConfigError(
                f"data.input_size {list(cfg.data.input_size)}: both sides must be multiples of {self.model.size_divisor} for {cfg.model.backbone}"
            )
        self.train_set, self.val_set = build_datasets(cfg, self.model, train, val)
        if len(self.train_set) == 0 or len(self.val_set) == 0:
            raise ConfigError(f"{cfg.name}: {len(self.train_set)} training and {len(self.val_set)} validation items; both must be > 0")
        self.model.to(self.device)
        self.loss_module: nn.Module = LossModule(self.model)
        self.net: nn.Module = nn.parallel.DistributedDataParallel(self.loss_module) if self.world > 1 else self.loss_module
        self.optimizer = build_optimizer(self.model, cfg.train)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: lr_factor(s, cfg.train))
        self.step, self.epoch, self.batch_in_epoch = 0, 0, 0
        self.tb = None

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_path(self) -> Path:
        return self.out / "checkpoint.pt"

    def save_checkpoint(self) -> None:
        """checkpoint.pt: everything to resume, and everything `posekit.zoo.load_model` needs (format,
        family, spec, config, weights and their sha256). Loads with torch.load(weights_only=True)."""
        if self.rank != 0:
            return
        weights = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
        state = {
            "format": CHECKPOINT_FORMAT, "family": self.model.family, "spec": self.spec.name, "config": asdict(self.cfg),
            "model": weights, "weights_sha256": state_sha256(weights),
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch, "rng": rng_state(),
        }  # fmt: skip
        with atomic_path(self.checkpoint_path()) as tmp:
            torch.save(state, tmp)

    def load_checkpoint(self, path: Path | None = None) -> None:
        from posekit.zoo.checkpoints import read_checkpoint

        path = path or self.checkpoint_path()
        state = read_checkpoint(path)
        theirs = state["config"].get("name", "?") if isinstance(state.get("config"), dict) else "?"
        own = self.model.state_dict()
        if state["family"] != self.model.family or set(state["model"]) != set(own) or any(
                v.shape != own[k].shape for k, v in state["model"].items()):  # fmt: skip
            raise ConfigError(f"{path}: a checkpoint of config {theirs!r} ({state['family']}), not of {self.cfg.name!r} "
                              f"({self.model.family}); resume it with its own config, or train into another --out")  # fmt: skip
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
        if not self.epoch_batches(0):
            raise ConfigError(f"{self.cfg.name}: {len(self.train_set)} training items make no full batch of {self.cfg.train.batch_size} x {self.world}")
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
        if self.rank == 0:  # temp files of checkpoints a killed run was writing (atomic_path's names): never resumable
            for orphan in self.out.glob(".checkpoint.*.tmp.pt"):
                orphan.unlink(missing_ok=True)
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
        batches = iter(self.batches()) if self.step < stop_at else iter(())
        in_step = False
        try:
            while True:
                # a stop (Ctrl-C, SIGTERM) lands between steps, never inside one: the checkpoint below resumes
                # exactly where it stopped (fileio.whole_item)
                with whole_item():
                    in_step = True
                    batch = next(batches, None)
                    if batch is None or self.step >= stop_at:
                        if batch is not None:
                            self.batch_in_epoch -= 1  # this batch was not used
                        in_step = False
                        break
                    # the step goes with the batch: a model whose loss changes with it (SIMPLE's stage 2) reads it there
                    batch["step"] = torch.tensor(self.step)
                    terms = self.net({k: v.to(self.device, non_blocking=True) for k, v in batch.items()})
                    loss = sum(terms.values())
                    if not torch.isfinite(loss):
                        raise FloatingPointError(f"step {self.step}: the loss is {loss.item()} ({', '.join(f'{k} {v.item():.4g}' for k, v in terms.items())});"
                                                 f" the last checkpoint is {self.checkpoint_path()}")  # fmt: skip
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
                        if bar.disable and not self.quiet and self.rank == 0:  # no bar when stdout is no terminal (a log file): a line
                            print(f"step {self.step}/{stop_at}  loss {loss.item():.5g}  " + "  ".join(f"{k} {v.item():.4g}" for k, v in terms.items())
                                  + f"  lr {self.scheduler.get_last_lr()[0]:.2e}", flush=True)  # fmt: skip
                        if self.tb is not None:
                            self.tb.add_scalar("train/loss", loss.item(), self.step)
                            for k, v in terms.items():
                                self.tb.add_scalar(f"train/{k}", v.item(), self.step)
                            self.tb.add_scalar("train/lr", self.scheduler.get_last_lr()[0], self.step)
                    if t.checkpoint_every and self.step % t.checkpoint_every == 0:
                        self.save_checkpoint()
                    if t.eval_every and self.step % t.eval_every == 0 and self.step < t.steps:
                        metrics = self.evaluate()
                        self.net.train()
                    in_step = False
        except KeyboardInterrupt:
            bar.close()
            if not in_step:  # stopped between two steps (the CLI defers a stop there): the state is whole
                self.save_checkpoint()
            raise
        bar.close()
        self.save_checkpoint()
        elapsed = time.perf_counter() - start
        if self.step >= t.steps:
            metrics = self.evaluate()
        summary = {"step": self.step, "seconds": round(elapsed, 1), "samples_per_s": round(seen / max(elapsed, 1e-9), 2), **metrics}
        if self.rank == 0:
            atomic_write_json(self.out / "summary.json", summary, indent=1)
        return summary

    def close(self) -> None:
        """Release the DDP wrapper and the process group (a no-op in one process)."""
        if self.world > 1:
            self.net = self.loss_module
            release_process_group()

    # ------------------------------------------------------------------ evaluation
    def predict(self, dataset) -> dict[Any, list[Poses]]:  # noqa: ANN001
        """The model's `Poses` for every item of `dataset`, grouped by image id."""
        self.model.eval()
        loader = DataLoader(dataset, batch_size=64 if self.model.input_kind == "crops" else 8, num_workers=self.cfg.data.num_workers)
        per_image: dict[Any, list[Poses]] = defaultdict(list)
        for batch in tqdm(loader, desc="eval", unit="batch", disable=self.quiet or None, leave=False, dynamic_ncols=True):
            on_device = {k: v.to(self.device) for k, v in batch.items()}
            for index, poses in zip(batch["index"].tolist(), self.model.predict(on_device)):
                per_image[dataset.image_id(index)].append(poses)
        return per_image

    def evaluate(self) -> dict[str, Any]:
        if self.rank != 0:
            return {}
        results = results_from_poses(self.predict(self.val_set), np.array(self.spec.sigmas), self.model.oks_nms)
        metrics = evaluate_samples(self.val_gt, results)
        if self.tb is not None:
            for k, v in metrics.items():
                self.tb.add_scalar(f"val/{k}", v, self.step)
        return metrics
