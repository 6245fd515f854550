"""`posekit export`: the networks of any loadable model as ONNX or TorchScript files, checked on real images.

What is exported is each model's batched network with a dynamic batch axis:
- an imported TF.js graph: its batch-safe convolutional trunk (`TfjsGraphModule.trunk_*`); the per-sample
  input cast and the ArgMax / TopK / GatherNd decoding stay in Python. A top-down pipeline has two graphs
  (CenterNet and MoveNet), so two files.
- a trained model (checkpoint or shipped): its `forward` (normalised NCHW image or crop -> raw outputs).

Every file records its source and the source's sha256 in its metadata, and is checked at export time: the
exported network runs on real images beside the torch model, and the largest difference of the model's
outputs is reported (and must be within `PARITY_LIMIT`).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from posekit.errors import PosekitError
from posekit.export.backend import PARITY_LIMIT, forward_outputs

FORMATS = ("onnx", "torchscript")
SUFFIX = {"onnx": ".onnx", "torchscript": ".pt"}


@dataclass
class ExportReport:
    part: str  # a graph name, or the trained family
    path: Path
    format: str
    source_sha256: str
    max_abs_diff: float  # model outputs, exported vs torch, over the check images
    max_rel_diff: float  # the same relative to each output's largest magnitude (at least 1)
    images: int
    seconds: float

    def line(self) -> str:
        return (f"{self.part}: {self.path} ({self.format}, source sha256 {self.source_sha256[:12]}…): max abs diff "
                f"{self.max_abs_diff:.2e} vs torch on {self.images} real images")  # fmt: skip


def _graph_input(graph: str, image: np.ndarray) -> np.ndarray:
    """One real image as graph `graph`'s input [1,H,W,3]: CenterNet's stretch, a MoveNet crop of the
    whole image, a whole-body part model's input size and value range, or MultiPose's input at 256x256
    (every exported file has one fixed spatial size)."""
    from posekit.data.transforms import stretch
    from posekit.models import part_detectors, part_models
    from posekit.models.tfjs_models import MOVENET_INPUT_SIZE, movenet_crops

    h, w = image.shape[:2]
    if graph == "centernet":
        return stretch(image, 512, 512)[0][None].astype(np.float32)
    if graph in MOVENET_INPUT_SIZE:
        return movenet_crops(image, np.array([[0, 0, w, h]], np.float32), MOVENET_INPUT_SIZE[graph])[0].astype(np.int32)
    part_classes = (part_models.BlazePoseFeet, part_models.HandLandmarks, part_models.FaceMesh, part_detectors.PalmDetector,
                    part_detectors.FaceDetector)  # fmt: skip
    part = {c.graph: c for c in part_classes}.get(graph)
    if part is not None:  # its own input size and value range
        return part.prepare(stretch(image, part.size, part.size)[0][None]).numpy()
    return stretch(image, 256, 256)[0][None].astype(np.int32)


def _graph_modules(name: str) -> dict[str, Any]:
    """The TF.js graphs of a pipeline (or one graph by name), as the pipeline builds them."""
    from posekit.models.tfjs_models import MOVENET_FEATURES, MOVENET_HEATMAPS, MOVENET_INPUT_SIZE, load_module
    from posekit.zoo.fetch import fetch
    from posekit.zoo.loader import PIPELINES

    graphs = list(PIPELINES[name][1]) if name in PIPELINES else [name]
    fetch(graphs)
    extras = {g: (MOVENET_FEATURES, MOVENET_HEATMAPS) for g in MOVENET_INPUT_SIZE}
    return {g: load_module(g, extras.get(g, ())) for g in graphs}


def _export(network: torch.nn.Module, example: list[torch.Tensor], path: Path, fmt: str, inputs: list[str], outputs: list[str],
            meta: dict[str, str]) -> Any:  # fmt: skip
    """Write the file; returns a callable running it on a list of tensors (for the parity check)."""
    from posekit.export.onnx import export_onnx, export_torchscript, onnx_session

    if fmt == "onnx":
        export_onnx(network, example, path, inputs, outputs, meta)
        session = onnx_session(path)
        return lambda values: [torch.from_numpy(o) for o in session.run(None, {n: v.numpy() for n, v in zip(inputs, values)})]
    export_torchscript(network, example, path, meta)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        loaded = torch.jit.load(str(path))

    def run(values: list[torch.Tensor]) -> list[torch.Tensor]:
        with torch.inference_mode():
            return forward_outputs(loaded(*values))

    return run


def _diffs(got: list[torch.Tensor], want: list[torch.Tensor]) -> tuple[float, float]:
    from posekit.export.backend import relative_diff
    from posekit.export.onnx import max_abs_diff

    return max_abs_diff(got, want), relative_diff(got, want)


def _check(part: str, abs_diff: float, rel_diff: float, path: Path) -> None:
    if not rel_diff <= PARITY_LIMIT:
        path.unlink(missing_ok=True)
        raise PosekitError(f"{part}: the export differs from torch by {abs_diff:.2e} (relative {rel_diff:.2e} > {PARITY_LIMIT}); not written")


def export_graph(graph: str, module: Any, fmt: str, path: Path, images: list[np.ndarray]) -> ExportReport:
    """A TF.js graph's trunk; the check runs the whole graph (head, trunk, decoding tail) with the exported
    trunk in place of torch's, on each real image alone and on all of them as one batch."""
    from posekit.export.backend import trunk_metadata
    from posekit.zoo.graph_module import GraphTrunk
    from posekit.zoo.store import read_manifest

    start = time.perf_counter()
    sha = read_manifest()["models"][graph]["sha256"]
    batch = torch.from_numpy(np.concatenate([_graph_input(graph, im) for im in images]))
    meta = {**trunk_metadata(graph, sha, module), "posekit.input_shape": str(list(batch.shape[1:]))}
    run = _export(GraphTrunk(module), module.trunk_feed(batch), path, fmt, module.trunk_inputs, module.trunk_outputs, meta)
    worst = (0.0, 0.0)
    try:
        for x in [batch, *batch.split(1)]:
            module.trunk_runner = None
            want = forward_outputs(module(x))
            module.trunk_runner = run
            worst = max(worst, _diffs(forward_outputs(module(x)), want))
    finally:
        module.trunk_runner = None
    _check(graph, *worst, path)
    return ExportReport(graph, path, fmt, sha, worst[0], worst[1], len(images), time.perf_counter() - start)


def _model_input(model: Any, image: np.ndarray) -> torch.Tensor:
    """One real image as a trained model's input [1,3,H,W]: a crop of the whole image (top-down) or the
    image fitted into its square input (whole-image), normalised as in training."""
    import cv2

    from posekit.data.topdown import crop_persons
    from posekit.data.transforms import normalise
    from posekit.data.wholeimage import fit_matrix

    h, w = image.shape[:2]
    if model.input_kind == "crops":
        return torch.from_numpy(crop_persons(image, np.array([[0, 0, w, h]], np.float32), model.input_size)[0])
    size = model.input_size[0]
    canvas = cv2.warpAffine(image, fit_matrix(image.shape[:2], size), (size, size), flags=cv2.INTER_LINEAR)
    return torch.from_numpy(normalise(canvas))[None]


def export_trained(name: str, fmt: str, path: Path, images: list[np.ndarray]) -> ExportReport:
    """A checkpoint's or shipped model's `forward`, checked on the real images (each alone and batched)."""
    from posekit.export.backend import ClassForward, forward_metadata, forward_output_names, network_sha256
    from posekit.zoo.checkpoints import model_from_checkpoint
    from posekit.zoo.loader import read_model_state

    start = time.perf_counter()
    state = read_model_state(name)
    model = model_from_checkpoint(Path(name), state).eval()
    sha = network_sha256(state)
    network = ClassForward(model)
    batch = torch.cat([_model_input(model, im) for im in images])
    outputs = forward_output_names(model)
    meta = {**forward_metadata(model, name, sha, outputs), "posekit.input_shape": str(list(batch.shape[1:])),
            "posekit.normalise": "RGB/255, ImageNet mean and std"}  # fmt: skip
    run = _export(network, [batch], path, fmt, ["image"], outputs, meta)
    worst = (0.0, 0.0)
    for x in [batch, *batch.split(1)]:
        with torch.inference_mode():
            want = forward_outputs(network(x))
        worst = max(worst, _diffs(run([x]), want))
    _check(name, *worst, path)
    return ExportReport(model.family, path, fmt, sha, worst[0], worst[1], len(images), time.perf_counter() - start)


def part_path(out: Path, part: str, n_parts: int, fmt: str) -> Path:
    """`out` itself for a one-network model; `out` with the part's name before the suffix otherwise."""
    out = out if out.suffix else out.with_suffix(SUFFIX[fmt])
    return out if n_parts == 1 else out.with_name(f"{out.stem}.{part}{out.suffix}")


def export_model(name: str, fmt: str, out: Path, images: list[np.ndarray]) -> list[ExportReport]:
    """Export every network of model `name` (a pipeline, a TF.js graph, a shipped model or a checkpoint)."""
    from posekit.zoo.loader import PIPELINES, read_model_state
    from posekit.zoo.registry import GRAPHS

    if fmt not in FORMATS:
        raise PosekitError(f"--format {fmt}: use one of {', '.join(FORMATS)}")
    graphs = name in PIPELINES or name in GRAPHS
    if not graphs:
        read_model_state(name)  # an unknown name or a bad checkpoint is reported before anything else
    if not images:
        raise PosekitError("no real images to check the export on: give --images")
    if out.exists() and out.is_dir():
        raise PosekitError(f"--out {out} is a directory; give a file name (e.g. {out / ('model' + SUFFIX[fmt])})")
    if graphs:
        modules = _graph_modules(name)
        return [export_graph(g, m, fmt, part_path(out, g, len(modules), fmt), images) for g, m in modules.items()]
    return [export_trained(name, fmt, part_path(out, "", 1, fmt), images)]
