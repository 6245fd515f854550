"""Trainable pose models: one module per family, all implementing `posekit.models.base.PoseModel`.

The families are imported on first use (`FAMILIES`, `build_model`): the TF.js pipelines import
`posekit.models.tfjs_models` only, and the families' torchvision import costs every command ~1.5 s.
"""

from __future__ import annotations

from functools import cache
from typing import Any

__all__ = ["FAMILIES", "PoseModel", "build_backbone", "build_model"]


@cache
def families() -> dict[str, type]:
    """family name (model.family in configs) -> model class; each class has `config_class`."""
    from posekit.models.centerpose import CenterPoseModel
    from posekit.models.distilpose import DistilPoseModel
    from posekit.models.higherhrnet import HigherHRNetModel
    from posekit.models.posedet import PoseDetModel
    from posekit.models.simple import SimpleModel
    from posekit.models.topdown import TopDownModel

    return {"topdown": TopDownModel, "centerpose": CenterPoseModel, "higherhrnet": HigherHRNetModel, "posedet": PoseDetModel,
            "distilpose": DistilPoseModel, "simple": SimpleModel}


def build_model(model_cfg: Any, spec: Any, input_size: tuple[int, int]) -> Any:
    """The model a config's `model` section describes, for keypoints `spec` (a `KeypointSpec`) and inputs (w, h)."""
    return families()[model_cfg.family](spec, tuple(input_size), model_cfg)


def __getattr__(name: str) -> Any:
    if name == "FAMILIES":
        return families()
    if name == "PoseModel":
        from posekit.models.base import PoseModel

        return PoseModel
    if name == "build_backbone":
        from posekit.models.backbones import build_backbone

        return build_backbone
    raise AttributeError(f"module 'posekit.models' has no attribute {name!r}")
