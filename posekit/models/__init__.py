"""Trainable pose models: one module per family, all implementing `posekit.models.base.PoseModel`."""

from __future__ import annotations

from typing import Any

from posekit.models.backbones import build_backbone
from posekit.models.base import PoseModel
from posekit.models.centerpose import CenterPoseModel
from posekit.models.higherhrnet import HigherHRNetModel
from posekit.models.posedet import PoseDetModel
from posekit.models.topdown import TopDownModel
from posekit.structures import KeypointSpec

# family name (model.family in configs) -> model class; each class has `config_class`.
FAMILIES: dict[str, type[PoseModel]] = {
    "topdown": TopDownModel,
    "centerpose": CenterPoseModel,
    "higherhrnet": HigherHRNetModel,
    "posedet": PoseDetModel,
}


def build_model(model_cfg: Any, spec: KeypointSpec, input_size: tuple[int, int]) -> PoseModel:
    """The model a config's `model` section describes, for keypoints `spec` and inputs (w, h)."""
    return FAMILIES[model_cfg.family](spec, tuple(input_size), model_cfg)


__all__ = ["FAMILIES", "PoseModel", "build_backbone", "build_model"]
