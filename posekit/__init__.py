"""posekit: multi-person 2D human pose estimation and tracking.

>>> from posekit import PoseEstimator
>>> poses = PoseEstimator("topdown-thunder")("photo.jpg")
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

try:
    __version__ = metadata.version("posekit")
except metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["PoseEstimator", "Poses", "__version__"]


def __getattr__(name: str) -> Any:
    # PoseEstimator pulls in torch and the model zoo: import it on first use, not with the package
    if name == "PoseEstimator":
        from posekit.api import PoseEstimator

        return PoseEstimator
    if name == "Poses":
        from posekit.structures import Poses

        return Poses
    raise AttributeError(f"module 'posekit' has no attribute {name!r}")
