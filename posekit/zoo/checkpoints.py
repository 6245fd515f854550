"""Checkpoints trained here: what they hold, how they are checked, how they become models.

A checkpoint (`OUT/checkpoint.pt`, written by `posekit train`) is a dict loadable with
`torch.load(weights_only=True)`: "format", "family", "spec", "config" (the whole training config), "model"
(the state dict), "weights_sha256" (of the state dict's tensors, checked on every load), and the optimizer
/ scheduler / RNG state / data position that `--resume` needs. Corrupt, truncated and foreign files are
refused with one line saying which file and why.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from posekit.errors import CheckpointError

CHECKPOINT_FORMAT = "posekit-checkpoint/1"


def state_sha256(state: dict[str, torch.Tensor]) -> str:
    """sha256 over the names, dtypes, shapes and bytes of a state dict's tensors, in name order."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().contiguous().cpu()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def checkpoint_file(path: str | Path) -> Path:
    """A checkpoint path, or a training output folder holding checkpoint.pt."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint (give a checkpoint.pt or the training output folder holding one)")
    return path


def read_checkpoint(path: str | Path, verify_weights: bool = True) -> dict[str, Any]:
    """The checkpoint's dict, after checking that it is a posekit checkpoint whose weights match their sha256.
    `verify_weights=False` maps the file instead of reading it and skips the hash: a cheap look at its
    family or config (the load that uses the weights verifies them)."""
    path = checkpoint_file(path)
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: the file is empty")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=not verify_weights)
    except Exception as e:  # garbage bytes reach the unpickler as any of a dozen exception types
        if isinstance(e, MemoryError):
            raise
        if "weights_only" in str(e):  # torch's advice here is to load it unsafely: never repeat it
            raise CheckpointError(f"{path}: refused: it holds Python objects a safe load does not run, so it is no posekit "
                                  "checkpoint (posekit never loads a file unsafely)") from e  # fmt: skip
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise CheckpointError(f"{path}: not a readable checkpoint, truncated or corrupt ({first})") from e
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{path}: not a posekit checkpoint (format {found!r}, expected {CHECKPOINT_FORMAT!r})")
    for key in ("family", "spec", "config", "model", "weights_sha256"):
        if key not in state:
            raise CheckpointError(f"{path}: posekit checkpoint without '{key}'")
    if verify_weights and state_sha256(state["model"]) != state["weights_sha256"]:
        raise CheckpointError(f"{path}: the weights do not match their sha256 (corrupt file); retrain or copy it again")
    return state


def family_class(state: dict[str, Any], path: str | Path) -> type:
    """The model class of a checkpoint's family (`posekit.models.FAMILIES`)."""
    from posekit.models import FAMILIES

    if state["family"] not in FAMILIES:
        raise CheckpointError(f"{path}: model family {state['family']!r} is not known to this posekit ({', '.join(FAMILIES)})")
    return FAMILIES[state["family"]]


def model_from_checkpoint(path: str | Path, state: dict[str, Any] | None = None):  # noqa: ANN201
    """The trained `PoseModel` of a checkpoint, in eval mode (`state`: the checkpoint already read)."""
    from posekit.data.specs import get_spec
    from posekit.engine.config import ConfigError, build_config
    from posekit.models import build_model

    state = read_checkpoint(path) if state is None else state
    family_class(state, path)
    try:
        cfg = build_config(state["config"], f"{path} (its config)")
        model = build_model(cfg.model, get_spec(state["spec"]), cfg.data.input_size)
        model.load_state_dict(state["model"])
    except (ConfigError, KeyError, RuntimeError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise CheckpointError(f"{path}: cannot rebuild the model from this checkpoint ({first})") from e
    model.checkpoint_path = str(checkpoint_file(path)) if Path(path).exists() else str(path)  # a shipped model's name
    model.weights_sha256 = state["weights_sha256"]
    return model.eval()
