"""Throughput measurements of whole pipelines (no assertions; one JSON record per measurement)."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from posekit.api import PoseEstimator
from posekit.pipeline.readers import read_image


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads()}


def bench_pipelines(models: list[str], images: list[Path], repeat: int = 1, threads: int = 2,
                    backends: tuple[str, ...] | list[str] = ("auto",)) -> Iterator[dict[str, Any]]:  # fmt: skip
    """img/s of each pipeline and backend over `images` (decoded up front; one warm-up image not counted)."""
    torch.set_num_threads(threads)
    frames = [read_image(p) for p in images]
    for model, backend in ((m, b) for m in models for b in backends):
        est = PoseEstimator(model, backend=backend)
        est(frames[0])
        persons = 0
        start = time.perf_counter()
        for _ in range(repeat):
            for frame in frames:
                persons += len(est(frame))
        seconds = time.perf_counter() - start
        n = len(frames) * repeat
        yield {
            "name": "predict_throughput",
            "config": {"model": model, "backend": est.backend, "images": len(frames), "repeat": repeat, "persons_per_image": round(persons / n, 2)},
            "value": round(n / seconds, 3),
            "unit": "img/s",
            "n": n,
            "machine": machine(),
        }
