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
                    backends: tuple[str, ...] | list[str] = ("auto",), mode: str = "balanced") -> Iterator[dict[str, Any]]:  # fmt: skip
    """img/s of each pipeline and backend in `mode` over `images` (decoded up front; one warm-up image not counted)."""
    torch.set_num_threads(threads)
    frames = [read_image(p) for p in images]
    for model, backend in ((m, b) for m in models for b in backends):
        est = PoseEstimator(model, backend=backend, mode=mode)
        est.estimate(frames[0])
        persons = 0
        start = time.perf_counter()
        for _ in range(repeat):
            for frame in frames:
                persons += len(est.estimate(frame))
        seconds = time.perf_counter() - start
        n = len(frames) * repeat
        yield {
            "name": "predict_throughput",
            "config": {"model": model, "mode": mode, "backend": est.backend, "images": len(frames), "repeat": repeat,
                       "persons_per_image": round(persons / n, 2)},  # fmt: skip
            "value": round(n / seconds, 3),
            "unit": "img/s",
            "n": n,
            "machine": machine(),
        }


def matmul_peak_gflops(threads: int, size: int = 2048, repeat: int = 10) -> float:
    """The machine's measured fp32 matmul rate (GFLOP/s) at `threads`: the yardstick for achieved GFLOP/s."""
    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(3):
        a @ b
    start = time.perf_counter()
    for _ in range(repeat):
        a @ b
    return 2 * size**3 * repeat / (time.perf_counter() - start) / 1e9


def trunk_gflops(module: Any, feed: list[torch.Tensor]) -> float:
    """GFLOPs of one trunk forward (torch's FLOP counter: convolutions and matmuls, 2 per multiply-add)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        module.run_trunk(*feed)
    return counter.get_total_flops() / 1e9


def network_inputs(graph: str, images: list, batch: int) -> torch.Tensor:
    """`batch` real inputs of TF.js graph `graph` (images reused round-robin), as `posekit export` makes them."""
    import numpy as np

    from posekit.export.models import _graph_input

    return torch.from_numpy(np.concatenate([_graph_input(graph, images[i % len(images)]) for i in range(batch)]))


def crop_model_inputs(model: Any, images: list, batch: int) -> torch.Tensor:
    """`batch` real inputs of a trained crop model (images reused round-robin), as `posekit export` makes them."""
    from posekit.export.models import _model_input

    return torch.cat([_model_input(model, images[i % len(images)]) for i in range(batch)])


def bench_crop_model(name: str, frames: list, batches: list[int], backends: list[str], threads: int, repeat: int,
                     peak: float) -> Iterator[dict[str, Any]]:  # fmt: skip
    """ms per crop of a trained top-down model (a shipped name or a checkpoint): its network alone, as
    `bench_networks` times a graph (real images cropped to its input; the flip test off: one pass)."""
    from torch.utils.flop_counter import FlopCounterMode

    from posekit.errors import InputError
    from posekit.export.backend import model_onnxruntime, network_sha256
    from posekit.zoo.checkpoints import model_from_checkpoint
    from posekit.zoo.loader import read_model_state

    state = read_model_state(name)
    for backend in backends:
        model = model_from_checkpoint(name, state)
        if model.input_kind != "crops":
            raise InputError(f"--networks {name}: a {model.family} model runs on whole images, not crops; time it with --models")
        with FlopCounterMode(display=False) as counter, torch.inference_mode():
            model(crop_model_inputs(model, frames, 1))
        gflops = counter.get_total_flops() / 1e9  # per crop
        if backend == "onnxruntime":
            model_onnxruntime(model, name, network_sha256(state))
        for batch in batches:
            x = crop_model_inputs(model, frames, batch)
            torch.set_num_threads(threads)
            with torch.inference_mode():
                model(x)
                start = time.perf_counter()
                for _ in range(repeat):
                    model(x)
            ms = (time.perf_counter() - start) / repeat * 1000
            yield {"name": "network_latency", "config": {"graph": name, "backend": backend, "batch": batch, "threads": threads},
                   "value": round(ms / batch, 2), "unit": "ms/crop", "n": repeat * batch, "gflops_per_forward": round(gflops * batch, 2),
                   "achieved_gflops_per_s": round(gflops * batch / (ms / 1000), 1), "matmul_peak_gflops_per_s": round(peak, 1),
                   "machine": machine()}  # fmt: skip


def bench_networks(graphs: list[str], images: list[Path], batches: list[int], backends: list[str], threads: int = 2,
                   repeat: int = 5) -> Iterator[dict[str, Any]]:  # fmt: skip
    """ms per forward of each TF.js graph (head, trunk and decoding; real images) per backend and batch,
    with the trunk's achieved GFLOP/s against the measured matmul peak; a trained top-down model (shipped
    name or checkpoint) is timed the same way on crops of its input size."""
    from posekit.models.tfjs_models import MOVENET_FEATURES, MOVENET_HEATMAPS, MOVENET_INPUT_SIZE, load_module
    from posekit.runtime import tune_malloc
    from posekit.zoo.registry import GRAPHS

    tune_malloc()
    peak = matmul_peak_gflops(threads)
    frames = [read_image(p) for p in images]
    for graph in graphs:
        if graph not in GRAPHS:
            yield from bench_crop_model(graph, frames, batches, backends, threads, repeat, peak)
            continue
        extras = (MOVENET_FEATURES, MOVENET_HEATMAPS) if graph in MOVENET_INPUT_SIZE else ()
        for backend in backends:
            module = load_module(graph, extras, backend)
            for batch in batches:
                x = network_inputs(graph, frames, batch)
                torch.set_num_threads(threads)
                module(x)
                start = time.perf_counter()
                for _ in range(repeat):
                    module(x)
                ms = (time.perf_counter() - start) / repeat * 1000
                gflops = trunk_gflops(module, module.trunk_feed(x))
                per = "crop" if graph in MOVENET_INPUT_SIZE else "image"
                yield {"name": "network_latency", "config": {"graph": graph, "backend": backend, "batch": batch, "threads": threads},
                       "value": round(ms / batch, 2), "unit": f"ms/{per}", "n": repeat * batch,
                       "gflops_per_forward": round(gflops, 2), "achieved_gflops_per_s": round(gflops / (ms / 1000), 1),
                       "matmul_peak_gflops_per_s": round(peak, 1), "machine": machine()}  # fmt: skip



def bench_stages(images: list[Path], mode: str = "balanced", model: str | None = None, threads: int = 2,
                 backend: str = "auto") -> dict[str, Any]:  # fmt: skip
    """ms per image of each stage of a pipeline (detect, crop, pose: the pose stage includes scoring and
    NMS), and how much of it is the networks themselves (ONNX Runtime's `run`, timed inside the trunk
    runners) against everything around them (pre-processing, decoding tails, crops, NMS: Python and torch)."""
    from posekit.export.backend import OnnxTrunk
    from posekit.pipeline.stages import FrameState

    torch.set_num_threads(threads)
    frames = [read_image(p) for p in images]
    est = PoseEstimator(model, backend=backend, mode=mode)
    network = [0.0]
    original = OnnxTrunk.__call__

    def timed(self: OnnxTrunk, values: list[torch.Tensor]) -> list[torch.Tensor]:
        start = time.perf_counter()
        try:
            return original(self, values)
        finally:
            network[0] += time.perf_counter() - start

    steps = est.pipeline.steps()
    warm_up = FrameState(frames[0])  # sessions made, first-call costs paid
    for _, fn in steps:
        fn(warm_up)
    stage_ms = dict.fromkeys((name for name, _ in steps), 0.0)
    persons = 0
    OnnxTrunk.__call__ = timed
    try:
        for frame in frames:
            state = FrameState(frame)
            for name, fn in steps:
                start = time.perf_counter()
                fn(state)
                stage_ms[name] += (time.perf_counter() - start) * 1000
            persons += int((state.poses.scores >= est.score_threshold).sum())
    finally:
        OnnxTrunk.__call__ = original
    n = len(frames)
    total = sum(stage_ms.values()) / n
    net = network[0] * 1000 / n
    return {"name": "stage_times", "config": {"model": est.name, "mode": mode, "backend": est.backend, "images": n,
                                              "persons_per_image": round(persons / n, 2)},
            "stages_ms": {k: round(v / n, 1) for k, v in stage_ms.items()}, "total_ms": round(total, 1),
            "networks_ms": round(net, 1) if est.backend == "onnxruntime" else None,
            "outside_networks_share": round(1 - net / total, 3) if est.backend == "onnxruntime" and total else None,
            "unit": "ms/img", "machine": machine()}  # fmt: skip
