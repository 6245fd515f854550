"""One way to load any model: `load_model(name_or_checkpoint)` -> a pipeline (`pipeline/stages.py`).

Names are the pipelines built on the imported TF.js graphs (`PIPELINES`); anything else is taken as a
checkpoint trained here (`checkpoint.pt` or its training folder). A top-down checkpoint runs on the
CenterNet person detector's boxes; a whole-image checkpoint runs alone.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from posekit.errors import PosekitError, UnknownModelError
from posekit.postprocess.presets import DEFAULT_MODE, MODES, mode_options
from posekit.zoo.registry import DEFAULT_MODEL, PIPELINES


class CheckpointCropModel:
    """A trained top-down `PoseModel` as a `CropPoseModel`: crops exactly as validation crops them."""

    crop_width_axis = 3  # crops are NCHW

    def __init__(self, model: Any, margin: float = 1.25) -> None:
        self.model, self.margin, self.spec = model, margin, model.spec.name

    def crop_inputs(self, image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from posekit.data.topdown import crop_persons

        return crop_persons(image, boxes, self.model.input_size, self.margin)

    def forward_crops(self, crops: np.ndarray, mats: np.ndarray, with_embeddings: bool = False) -> tuple[np.ndarray, np.ndarray, None]:
        from posekit.data.transforms import apply_inverse

        k = self.model.spec.num_keypoints
        if len(crops) == 0:
            return np.zeros((0, k, 2), np.float32), np.zeros((0, k), np.float32), None
        xy, scores = self.model.predict_crops(torch.from_numpy(crops).to(_device_of(self.model)))
        return apply_inverse(mats, xy), scores.astype(np.float32), None


class CheckpointImageModel:
    """A trained whole-image `PoseModel` as an `ImagePoseModel`: the image fitted into its square input."""

    def __init__(self, model: Any) -> None:
        self.model, self.spec = model, model.spec.name

    def __call__(self, image: np.ndarray):  # noqa: ANN204
        import cv2

        from posekit.data.transforms import normalise
        from posekit.data.wholeimage import fit_matrix

        size = self.model.input_size[0]
        mat = fit_matrix(image.shape[:2], size)
        canvas = cv2.warpAffine(image, mat, (size, size), flags=cv2.INTER_LINEAR)
        device = _device_of(self.model)
        batch = {"image": torch.from_numpy(normalise(canvas))[None].to(device), "matrix": torch.from_numpy(mat.astype(np.float32))[None],
                 "index": torch.zeros(1, dtype=torch.long)}  # fmt: skip
        return self.model.predict(batch)[0]


def _device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def resolve_device(device: str | torch.device | None, backend: str) -> torch.device:
    """A torch device the user named ("cpu", "cuda", "cuda:1", "mps"), checked before any model is built."""
    if device is None:
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise PosekitError(f"device={device!r}: not a torch device (e.g. 'cpu', 'cuda', 'cuda:0', 'mps')") from e
    if dev.type == "cpu":
        return dev
    if backend == "onnxruntime":
        raise PosekitError(f"device={device!r} runs torch models; the onnxruntime backend here runs on the CPU (use backend='torch')")
    available = {"cuda": torch.cuda.is_available, "mps": lambda: torch.backends.mps.is_available()}.get(dev.type, lambda: False)
    if not available():
        raise PosekitError(f"device={device!r}: not available on this machine (torch sees no {dev.type} device)")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise PosekitError(f"device={device!r}: only {torch.cuda.device_count()} CUDA device(s) here")
    return dev


def place_on_device(pipeline: Any, device: torch.device) -> Any:
    """Every network of a loaded pipeline on `device`: trained models moved whole (their predict returns
    CPU arrays), TF.js graphs by running their trunk there (`DeviceTrunk`)."""
    from posekit.zoo.graph_module import DeviceTrunk, TfjsGraphModule

    if device.type == "cpu":
        return pipeline
    seen: set[int] = set()

    def visit(obj: Any, depth: int) -> None:
        if id(obj) in seen or depth > 3:
            return
        seen.add(id(obj))
        if isinstance(obj, TfjsGraphModule):
            obj.trunk_runner = DeviceTrunk(obj, device)
        elif isinstance(obj, torch.nn.Module):
            obj.to(device)
        elif hasattr(obj, "__dict__"):
            for value in vars(obj).values():
                visit(value, depth + 1)

    visit(pipeline, 0)
    return pipeline


def model_names() -> list[str]:
    """Every model loadable by name: the TF.js pipelines and the trained models shipped in the package."""
    from posekit.zoo.packaged import PACKAGED

    return [*PIPELINES, *PACKAGED]


def _unknown_model(name: str) -> UnknownModelError:
    return UnknownModelError(f"unknown model {name!r}: neither a model name ({', '.join(model_names())}) nor a checkpoint path")


def read_model_state(name: str) -> dict[str, Any] | None:
    """A shipped model's or a checkpoint's dict (verified); None for a TF.js pipeline name."""
    from posekit.zoo.checkpoints import read_checkpoint
    from posekit.zoo.packaged import PACKAGED, packaged_state

    if name in PIPELINES:
        return None
    if name in PACKAGED:
        return packaged_state(name)
    if not Path(name).exists():
        raise _unknown_model(name)
    return read_checkpoint(name)


def is_top_down(name: str | Path) -> bool:
    """Whether a model name or checkpoint runs on person boxes (detector -> crops) rather than whole images."""
    from posekit.zoo.checkpoints import family_class, read_checkpoint
    from posekit.zoo.packaged import PACKAGED, packaged_family

    if str(name) in PIPELINES:
        return str(name) != "movenet-multipose"
    if str(name) in PACKAGED:
        return family_class({"family": packaged_family(str(name))}, name).input_kind == "crops"
    if not Path(name).exists():
        raise _unknown_model(str(name))
    return family_class(read_checkpoint(name, verify_weights=False), name).input_kind == "crops"


def _check_options(options: dict[str, Any], known: set[str], what: str) -> None:
    if set(options) - known:
        raise TypeError(f"unexpected options for {what}: {sorted(set(options) - known)}; known: {sorted(known)}")


def resolve_backend(backend: str = "auto", name: str | Path = DEFAULT_MODEL) -> str:
    """"auto": ONNX Runtime for the TF.js pipelines when it is installed (measured faster on CPU: README),
    torch for trained models (each new checkpoint would first be exported, and torch is their reference)."""
    from posekit.export.backend import check_backend

    if backend == "auto":
        if str(name) not in PIPELINES:
            return "torch"
        try:
            return check_backend("onnxruntime")
        except PosekitError:  # onnx / onnxruntime not installed
            return "torch"
    return check_backend(backend)


def load_model(name: str | Path = DEFAULT_MODEL, score_threshold: float | None = None, auto_fetch: bool = True,
               backend: str = "auto", mode: str = DEFAULT_MODE, **options: Any) -> Any:  # fmt: skip
    """A ready pipeline for a model name (`PIPELINES`) or a checkpoint path. `mode` ("fast", "balanced",
    "accurate": `postprocess.presets.MODES`) sets the named top-down pipelines' options and every model's
    output threshold; `score_threshold` and options override it. Options: `TopDownOptions` fields for
    top-down models (`det_threshold`, ...), `longest_side` for movenet-multipose. Unknown options are
    refused before any weights are fetched or built. `backend`: "torch", "onnxruntime" (the networks run in
    ONNX Runtime; decoding stays in torch) or "auto"."""
    if mode not in MODES:
        raise PosekitError(f"mode={mode!r}: one of {', '.join(MODES)}")
    from posekit.pipeline.stages import ImagePipeline, MultiPoseModel, TopDownOptions, TopDownPipeline
    from posekit.zoo.fetch import fetch

    backend = resolve_backend(backend, name)
    given = {} if score_threshold is None else {"score_threshold": score_threshold}  # top-down: the options' own threshold

    topdown_opts = {f.name for f in fields(TopDownOptions)}
    name_str = str(name)
    if name_str in PIPELINES:
        multipose = name_str == "movenet-multipose"
        wholebody = name_str == "topdown-wholebody"
        _check_options(options, {"longest_side"} if multipose else topdown_opts | ({"spec", "part_detectors"} if wholebody else set()), name_str)
        output_spec = options.pop("spec", "coco_wholebody133")
        part_detectors_on = bool(options.pop("part_detectors", False))
        if auto_fetch:
            fetch(PIPELINES[name_str][1])  # a no-op when cached and verified
        if multipose:
            model = MultiPoseModel(options.get("longest_side", 256), backend)
            return ImagePipeline(model, MODES[mode].whole_image_threshold if score_threshold is None else score_threshold)
        from posekit.models.tfjs_models import CenterNetDetector, SinglePoseMoveNet

        opts = TopDownOptions(**{**mode_options(mode, name_str, options.get("flip_test")), **given, **options})
        pose = SinglePoseMoveNet("movenet-" + ("thunder" if wholebody else name_str.split("-")[1]), margin=opts.margin, backend=backend)
        if wholebody:
            from posekit.pipeline.wholebody import WholeBodyPipeline

            return WholeBodyPipeline(pose, CenterNetDetector(backend), opts, output_spec, backend, part_detectors_on)
        return TopDownPipeline(pose, CenterNetDetector(backend), opts)
    from posekit.models.graph_trunks import TRUNKS
    from posekit.zoo.checkpoints import family_class, model_from_checkpoint

    path = Path(name_str)
    state = read_model_state(name_str)
    crops = family_class(state, path).input_kind == "crops"
    _check_options(options, topdown_opts if crops else set(), f"checkpoint {path}")
    backbone = (state["config"].get("model") or {}).get("backbone")
    needed = ([TRUNKS[backbone].graph] if backbone in TRUNKS else []) + (["centernet"] if crops else [])
    if auto_fetch and needed:
        fetch(needed)
    model = model_from_checkpoint(path, state)
    if backend == "onnxruntime":
        from posekit.export.backend import model_onnxruntime, network_sha256

        model_onnxruntime(model, name_str, network_sha256(state))
    if crops:
        from posekit.models.tfjs_models import CenterNetDetector

        # the mode's detector threshold decides which boxes get a pose; no output threshold: a trained model's person
        # score (box x mean keypoint confidence) has no calibration, and a student's low confidences would hide people
        opts = TopDownOptions(**{"det_threshold": MODES[mode].det_threshold, **given, **options})
        return TopDownPipeline(CheckpointCropModel(model, opts.margin), CenterNetDetector(backend), opts)
    return ImagePipeline(CheckpointImageModel(model), whole_image_threshold(name_str, mode) if score_threshold is None else score_threshold)


def whole_image_threshold(name: str, mode: str) -> float:
    """The person score a whole-image model's results need in `mode`: the shipped model's own measured bar where it
    has one, except in `accurate` (the AP protocol scores every person), else the mode's."""
    from posekit.zoo.packaged import PACKAGED

    threshold = MODES[mode].whole_image_threshold
    own = PACKAGED[name].output_threshold if name in PACKAGED else 0.0
    return own if threshold > 0 and own > 0 else threshold
