"""Training configs: plain YAML mapped onto dataclasses."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml

from posekit.data.topdown import AugmentConfig


@dataclass
class DataConfig:
    format: str = "coco"  # coco | lsp
    ann: str = ""  # '{data}' is replaced by POSEKIT_TEST_DATA (default ../shared/data)
    images: str = ""
    train_range: tuple[int, int] | None = None  # slice of samples for training (e.g. LSP-Extended: [0, 9000])
    val_range: tuple[int, int] | None = None
    val_ann: str = ""  # separate validation annotations (COCO); else val_range of `ann`
    val_images: str = ""
    # Person boxes from a detector (COCO detection-results JSON) instead of the annotated ones. For
    # validation (as top-down papers report AP) the ground truth stays the annotations; for training
    # each box takes the keypoints of the annotated person it overlaps with IoU >= 0.5.
    val_det_file: str = ""
    train_det_file: str = ""
    det_score_threshold: float = 0.0  # detections below this score are dropped (MMPose: det_bbox_thr)
    input_size: tuple[int, int] = (192, 256)  # (w, h)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    num_workers: int = 0


@dataclass
class ModelConfig:
    backbone: str = "resnet50"
    head: str = "deconv"  # deconv | duc | conv
    integral: bool = False
    head_channels: int = 256  # deconv head filters (SimpleBaseline: 256)


@dataclass
class TrainConfig:
    batch_size: int = 32
    steps: int = 1000
    optimizer: str = "adam"  # adam | adamw | sgd
    lr: float = 1e-3
    weight_decay: float = 0.0
    scheduler: str = "cosine"  # cosine | step | constant
    milestones: tuple[int, ...] = ()  # for step: steps where lr *= gamma
    gamma: float = 0.1
    warmup_steps: int = 0
    grad_clip: float = 0.0  # 0 = off
    checkpoint_every: int = 500
    eval_every: int = 0  # 0 = only at the end
    log_every: int = 20
    seed: int = 0
    flip_test: bool = True


@dataclass
class Config:
    name: str = "run"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    output: str = "outputs/train/{name}"


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    known = {f.name: f for f in fields(cls)}
    unknown = set(values) - set(known)
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}; known: {sorted(known)}")
    kwargs = {}
    for k, v in values.items():
        default = getattr(cls(), k)
        if is_dataclass(default) and isinstance(v, dict):
            kwargs[k] = _build(type(default), v, f"{where}.{k}")
        elif isinstance(v, list):
            kwargs[k] = tuple(v)
        else:
            kwargs[k] = v
    return cls(**kwargs)


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> Config:
    raw = yaml.safe_load(Path(path).read_text()) or {}
    for dotted, value in (overrides or {}).items():
        node = raw
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    cfg = _build(Config, raw, str(path))
    return cfg


def resolve(path: str) -> Path:
    data = os.environ.get("POSEKIT_TEST_DATA", str(Path(__file__).resolve().parents[2].parent / "shared" / "data"))
    return Path(path.replace("{data}", data))
