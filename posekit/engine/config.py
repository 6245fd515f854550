"""Training configs: plain YAML mapped onto dataclasses. `model.family` picks the model's dataclass
(`posekit.models.FAMILIES`); an unknown key, a value of the wrong type or an impossible value is a
one-line `ConfigError` naming the key."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml

from posekit.data.topdown import AugmentConfig
from posekit.errors import PosekitError


class ConfigError(PosekitError):
    """A config file that cannot be used as written."""


@dataclass
class MosaicConfig:
    """Multi-person training images tiled from single-person LSP / LSP-Extended images (whole-image models)."""

    ann: str = ""  # LSP joints.mat; empty = no mosaics
    images: str = ""
    range: tuple[int, int] | None = None  # slice of its samples to use (keep the held-out part out)
    count: int = 1000  # mosaics per epoch, beside the real images
    grids: tuple[int, ...] = (2, 3)  # 2x2 and 3x3 tiles
    scale: tuple[float, float] = (0.55, 1.0)  # person height as a fraction of the tile


@dataclass
class ExtraSource:
    ann: str = ""
    images: str = ""


@dataclass
class DataConfig:
    format: str = "coco"  # coco | lsp
    ann: str = ""  # '{data}' is replaced by POSEKIT_TEST_DATA (default ../shared/data)
    images: str = ""
    train_range: tuple[int, int] | None = None  # slice of samples for training (e.g. LSP-Extended: [0, 9000])
    val_range: tuple[int, int] | None = None
    val_ann: str = ""  # separate validation annotations (COCO); else val_range of `ann`
    val_images: str = ""
    extra_train: tuple[ExtraSource, ...] = ()  # more COCO-format annotation files to train on (all their images)
    # Person boxes from a detector (COCO detection-results JSON) instead of the annotated ones. For
    # validation (as top-down papers report AP) the ground truth stays the annotations; for training
    # each box takes the keypoints of the annotated person it overlaps with IoU >= 0.5.
    val_det_file: str = ""
    train_det_file: str = ""
    det_score_threshold: float = 0.0  # detections below this score are dropped (MMPose: det_bbox_thr)
    input_size: tuple[int, int] = (192, 256)  # (w, h)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    mosaic: MosaicConfig = field(default_factory=MosaicConfig)
    num_workers: int = 0


@dataclass
class TrainConfig:
    batch_size: int = 32
    steps: int = 1000
    optimizer: str = "adam"  # adam | adamw | sgd
    lr: float = 1e-3
    # pretrained trunks: fine-tune them slower than the new heads (e.g. 0.1); 0 freezes the trunk (and heads trained at
    # its rate). PoseDet's warm heads need it: at 0.1 its losses wreck MultiPose's features in 100 steps (docs/warm_start.md)
    backbone_lr_mult: float = 1.0
    # heads warm-started from a graph (model.init_heads): "full" (the new heads' rate) | "trunk" (backbone_lr_mult x);
    # HigherHRNet, 1000 steps: full 0.259 held-out AP, trunk 0.194 (docs/warm_start.md)
    warm_heads_lr: str = "full"
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
    device: str = "cpu"  # cpu | cuda | auto (cuda when available); tests and CI use the CPU


@dataclass
class Config:
    name: str = "run"
    data: DataConfig = field(default_factory=DataConfig)
    model: Any = None  # the family's dataclass, e.g. TopDownConfig
    train: TrainConfig = field(default_factory=TrainConfig)
    output: str = "outputs/train/{name}"


def _check_type(value: Any, default: Any, where: str) -> Any:
    """`value` as the type of the field's default (int -> float allowed), else a ConfigError."""
    if default is None or isinstance(default, tuple):
        if value is None or isinstance(value, (list, tuple)):
            return tuple(value) if value is not None else None
        raise ConfigError(f"{where}: expected a list, got {value!r}")
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if isinstance(default, str) and not isinstance(value, str):
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    return value


def _build(cls: type, values: Any, where: str) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping of keys to values, got {values!r}")
    known = {f.name: f for f in fields(cls)}
    unknown = set(values) - set(known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}; known: {', '.join(sorted(known))}")
    kwargs = {}
    defaults = cls()
    for k, v in values.items():
        default = getattr(defaults, k)
        if is_dataclass(default):
            kwargs[k] = _build(type(default), v, f"{where}.{k}")
        elif k == "extra_train":
            kwargs[k] = tuple(_build(ExtraSource, s, f"{where}.{k}[{i}]") for i, s in enumerate(v or []))
        else:
            kwargs[k] = _check_type(v, default, f"{where}.{k}")
    return cls(**kwargs)


def build_config(raw: dict[str, Any], where: str = "config") -> Config:
    from posekit.models import FAMILIES

    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping at the top level")
    raw = dict(raw)
    model = raw.pop("model", None) or {}
    if not isinstance(model, dict):
        raise ConfigError(f"{where}: model: expected a mapping")
    family = model.get("family", "topdown")
    if family not in FAMILIES:
        raise ConfigError(f"{where}: model.family {family!r} is not a model family; known: {', '.join(FAMILIES)}")
    cfg = _build(Config, raw, where)
    cfg.model = _build(FAMILIES[family].config_class, model, f"{where}.model")
    validate(cfg, where)
    return cfg


def validate(cfg: Config, where: str) -> None:
    t, d = cfg.train, cfg.data
    checks = [
        (t.batch_size > 0, "train.batch_size must be > 0"),
        (t.steps >= 0, "train.steps must be >= 0"),
        (t.lr > 0, "train.lr must be > 0"),
        (t.log_every > 0, "train.log_every must be > 0"),  # a step count is divided by it
        (t.checkpoint_every >= 0, "train.checkpoint_every must be >= 0 (0: only at the end)"),
        (t.eval_every >= 0, "train.eval_every must be >= 0 (0: only at the end)"),
        (t.warmup_steps >= 0, "train.warmup_steps must be >= 0"),
        (t.backbone_lr_mult >= 0, "train.backbone_lr_mult must be >= 0 (0: the trunk frozen)"),
        (t.optimizer in ("adam", "adamw", "sgd"), f"train.optimizer {t.optimizer!r}: use adam, adamw or sgd"),
        (t.scheduler in ("cosine", "step", "constant"), f"train.scheduler {t.scheduler!r}: use cosine, step or constant"),
        (t.warm_heads_lr in ("trunk", "full"), f"train.warm_heads_lr {t.warm_heads_lr!r}: use trunk or full"),
        (t.device in ("cpu", "cuda", "auto"), f"train.device {t.device!r}: use cpu, cuda or auto"),
        (d.format in ("coco", "lsp"), f"data.format {d.format!r}: use coco or lsp"),
        (len(d.input_size) == 2 and all(isinstance(v, int) and v > 0 for v in d.input_size), f"data.input_size {d.input_size}: two positive integers (w, h)"),
        (d.num_workers >= 0, "data.num_workers must be >= 0"),
    ]  # fmt: skip
    for rng_name in ("train_range", "val_range"):
        r = getattr(d, rng_name)
        checks.append((r is None or (len(r) == 2 and r[0] < r[1]), f"data.{rng_name} {r}: [start, stop) with start < stop"))
    for ok, message in checks:
        if not ok:
            raise ConfigError(f"{where}: {message}")


class _YamlLoader(yaml.SafeLoader):
    """YAML 1.1 as PyYAML reads it, plus floats written without a dot (1e-3, 5E-4): PyYAML reads those as
    strings, so `--set train.lr=1e-4` was refused as "not a number"."""


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789")
)


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_YamlLoader)  # noqa: S506 (a SafeLoader subclass)


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """`--set KEY=VALUE` items (values are YAML: 100, 1e-3, [0, 9000], true) as {dotted key: value}."""
    overrides = {}
    for item in items or []:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. train.steps=100")
        try:
            overrides[key] = load_yaml(value)
        except yaml.YAMLError as e:
            raise ConfigError(f"--set {item!r}: the value is not valid YAML ({str(e).splitlines()[0]})") from e
    return overrides


def read_config_yaml(path: str | Path) -> dict[str, Any]:
    """A config file's YAML mapping, or a one-line ConfigError naming the file."""
    path = Path(path)
    try:
        raw = load_yaml(path.read_text(encoding="utf-8")) or {}
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the config ({e.strerror})") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}); expected a YAML config") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return raw


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> Config:
    return config_from_raw(read_config_yaml(path), overrides, str(path))


def config_from_raw(raw: dict[str, Any], overrides: dict[str, Any] | None = None, where: str = "config") -> Config:
    """A config from its YAML mapping (not modified) with `--set` overrides applied; `where` names it in errors."""
    raw = copy.deepcopy(raw)
    for dotted, value in (overrides or {}).items():
        node = raw
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {dotted}: {p} is not a section")
        node[leaf] = value
    return build_config(raw, where)


