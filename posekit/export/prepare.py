"""The ONNX Runtime exports the modes need, made ahead of time (`posekit weights fetch`) instead of on
the first image of the first `predict`."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from posekit.export import backend
from posekit.zoo.loader import load_model


def prepare_exports(models: tuple[str, ...] = ("topdown-thunder", "topdown-lightning"), say: Callable[[str], None] = print) -> list[str]:
    """Make the ONNX Runtime exports that `predict` and `track` of these pipelines run (the detector at its
    input size, each crop model at its crop size; the trunk `track` pools embeddings from is the same
    file), so that no command pays for an export on its first image. Runs each pipeline once on a
    synthetic image; each export is checked against torch on it as usual. Returns the models prepared."""
    image = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)  # any picture checks an export
    box = np.array([[160.0, 60.0, 480.0, 420.0]], np.float32)
    for name in models:
        start = time.perf_counter()
        pipeline = load_model(name, backend="onnxruntime", auto_fetch=False)
        pipeline.detect(image)
        pipeline.keypoints(*pipeline.crop_inputs(image, box), 1)
        say(f"{name}: ONNX Runtime exports ready ({time.perf_counter() - start:.1f} s; {backend.onnx_cache_dir()})")
    return list(models)
