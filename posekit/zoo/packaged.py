"""Small trained models shipped inside the package (`posekit/zoo/models/NAME.safetensors`, at most 10 MB):
fp16 weights with the family, spec and training config in the safetensors header, checked against the
sha256 recorded here, each with the command that reproduces it. They load by name through `load_model`
like the TF.js pipelines. A shipped model is replaced only by one that measures better."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from posekit.errors import CheckpointError
from posekit.fileio import atomic_path

PACKAGED_FORMAT = "posekit-packaged/1"
MODELS_DIR = Path(__file__).parent / "models"


@dataclass(frozen=True)
class PackagedModel:
    description: str
    sha256: str  # of the .safetensors file
    command: str  # reproduces it (see README)
    # whole-image models: the person score their results need outside `accurate` (0: the mode's). Their scores are not
    # calibrated and differ per model, so one bar for all returned 26 poses an image, 95 % wrong, from one and would hide
    # people in another at a higher bar; chosen on coco-mini as the lowest of 0.1, 0.2, ... whose precision at OKS 0.5 is >= 0.5 ("more right
    # than wrong", as the top-down modes' calibrated 0.5), checked on coco-extra 70-89 (docs/warm_start.md)
    output_threshold: float = 0.0


PACKAGED: dict[str, PackagedModel] = {
    "higherhrnet-small": PackagedModel(
        "HigherHRNet heads on the MoveNet MultiPose trunk, 256x256 whole image, bottom-up; its 1/4 heatmap head warm-started "
        "from MultiPose's, trained 1000 steps on this CPU (docs/warm_start.md)",
        "f7aedcb176385e5b2e13a228caeb18474dcdbf90245911c0214ce654d573bcad",
        "posekit train configs/higherhrnet_small_mosaic.yaml --set model.head_shape=separable model.init_heads=movenet_multipose "
        "train.warm_heads_lr=full --out outputs/warm_start/hh_warmfull, then "
        "posekit.zoo.packaged.write_packaged('outputs/warm_start/hh_warmfull/checkpoint.pt', 'posekit/zoo/models/higherhrnet-small.safetensors')",
        output_threshold=0.1,
    ),
    "posedet-small": PackagedModel(
        "PoseDet heads (pose embedding by deformable sampling) at stride 4 on the frozen MoveNet MultiPose trunk, 256x256 whole "
        "image, single-stage; coarse poses and candidate score warm-started from MultiPose's heads, trained 300 steps on this CPU "
        "on labels + MoveNet Thunder's pseudo-labels (docs/warm_start.md)",
        "c756d65ffe74150226e4e1aaddca270bdbf761120f3e54f78374c94614c4fadc",
        "STEPS=300 EXTRA='train.backbone_lr_mult=0 train.eval_every=100' tools/warm_start_runs.sh outputs/pd_frozen pd_warm_pseudo "
        "(configs/posedet_small_mosaic.yaml; the pseudo-labels from tools/distilpose_coco17.sh), then "
        "posekit.zoo.packaged.write_packaged('outputs/pd_frozen/pd_warm_pseudo/checkpoint.pt', 'posekit/zoo/models/posedet-small.safetensors')",
        output_threshold=0.5,
    ),
    "simple-small": PackagedModel(
        "SIMPLE (pose heatmaps + centre / corner-pooling person boxes + grouping module) on the frozen MoveNet MultiPose trunk, "
        "256x256 whole image; pose heatmaps and centre map warm-started from MultiPose's heads, 1200 CPU steps on labels + "
        "MoveNet Thunder's pseudo-labels, then 800 more mimicking Thunder (GT + predicted heatmaps) (docs/warm_start.md)",
        "db0047589088585bd4716fcd6c397525dc5bb8678bed7c27cf97ded3cfe88e7c",
        "STEPS=2000 EXTRA='train.backbone_lr_mult=0 model.mimic_start=1200 train.eval_every=500' tools/warm_start_runs.sh "
        "outputs/simple_long simple_warm_pseudo (configs/simple_small_mosaic.yaml; the pseudo-labels from tools/distilpose_coco17.sh), then "
        "posekit.zoo.packaged.write_packaged('outputs/simple_long/simple_warm_pseudo/checkpoint.pt', 'posekit/zoo/models/simple-small.safetensors')",
        output_threshold=0.1,
    ),
    "distilpose-small": PackagedModel(
        "DistilPose regression student (MoveNet Lightning trunk + token encoder), COCO-17, 160x160 crops on CenterNet boxes; "
        "2000 steps on this CPU distilled from MoveNet Thunder (labels + Thunder's pseudo-labels, Simulated Heatmaps): "
        "below Lightning (docs/distilpose_coco17.md)",
        "b7fe4bac4ba42cef2c1efa0ac0a23f53089d1ac9eab2e8ca1e5b37ec4cac21f9",
        "tools/distilpose_coco17.sh outputs/distilpose_coco17 sh, then "
        "posekit.zoo.packaged.write_packaged('outputs/distilpose_coco17/sh/checkpoint.pt', 'posekit/zoo/models/distilpose-small.safetensors')",
    ),
}


def write_packaged(checkpoint: str | Path, out: str | Path) -> str:
    """A checkpoint's weights as fp16 safetensors with its family, spec and config; returns the file's sha256."""
    from safetensors.torch import save_file

    from posekit.zoo.checkpoints import read_checkpoint  # torch: only when a model is written, not for `posekit --help`

    state = read_checkpoint(checkpoint)
    weights = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state["model"].items()}
    meta = {"format": PACKAGED_FORMAT, "family": state["family"], "spec": state["spec"], "config": json.dumps(state["config"])}
    with atomic_path(Path(out)) as tmp:
        save_file(weights, str(tmp), metadata=meta)
    return hashlib.sha256(Path(out).read_bytes()).hexdigest()


def read_packaged(path: str | Path, expected_sha256: str | None = None) -> dict[str, Any]:
    """A packaged model as a checkpoint-like dict (float32 weights) that `model_from_checkpoint` takes."""
    from safetensors import safe_open

    from posekit.zoo.checkpoints import state_sha256  # torch: only when a model is read, not for `posekit --help`

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such packaged model")
    data = path.read_bytes()
    if expected_sha256 and hashlib.sha256(data).hexdigest() != expected_sha256:
        raise CheckpointError(f"{path}: sha256 does not match the one recorded for it (corrupt or replaced file)")
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
            weights = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
        raise CheckpointError(f"{path}: not a readable safetensors file ({str(e)[:200]})") from e
    if meta.get("format") != PACKAGED_FORMAT:
        raise CheckpointError(f"{path}: not a posekit packaged model (format {meta.get('format')!r})")
    weights = {k: v.float() if v.is_floating_point() else v for k, v in weights.items()}
    return {"format": meta["format"], "family": meta["family"], "spec": meta["spec"], "config": json.loads(meta["config"]),
            "model": weights, "weights_sha256": state_sha256(weights)}  # fmt: skip


def packaged_state(name: str) -> dict[str, Any]:
    entry = PACKAGED[name]
    return read_packaged(MODELS_DIR / f"{name}.safetensors", entry.sha256)


def packaged_family(name: str) -> str:
    """A shipped model's family, from the safetensors header alone (no weights read, no hash: a cheap look
    before the load that verifies them)."""
    from safetensors import safe_open

    path = MODELS_DIR / f"{name}.safetensors"
    try:
        with safe_open(str(path), "pt") as f:
            return (f.metadata() or {})["family"]
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
        raise CheckpointError(f"{path}: not a readable posekit packaged model ({str(e)[:200]})") from e


__all__ = ["PACKAGED", "PackagedModel", "packaged_family", "packaged_state", "read_packaged", "write_packaged"]
