"""ONNX Runtime as an inference backend for the imported TF.js graphs.

The per-sample head and tail of a graph (input casts, ArgMax / TopK / GatherNd decoding) stay in torch;
the batch-safe convolutional trunk (`TfjsGraphModule.trunk_*`) runs in ONNX Runtime. It is exported on
first use of an input shape (the trace fixes the spatial sizes; the batch axis is dynamic), checked against
torch on that first real input, and cached beside the weights, keyed by their sha256:
`$POSEKIT_HOME/weights/onnx/NAME-SHA16-HxW.onnx`.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import torch

from posekit.errors import PosekitError

log = logging.getLogger("posekit")
BACKENDS = ("torch", "onnxruntime")
# fp32 limit of an export against torch. Raw outputs (offsets in grid pixels, box corners in input pixels,
# logits) are compared relative to their magnitude where it exceeds 1; the pipeline's outputs are compared
# in absolute terms by the parity tests.
PARITY_LIMIT = 1e-4


def check_backend(backend: str) -> str:
    """`backend` if it is known and its packages are installed; one clear error otherwise."""
    if backend not in BACKENDS:
        raise PosekitError(f"unknown backend {backend!r}: use one of {', '.join(BACKENDS)}")
    if backend == "onnxruntime":
        # looked up, not imported: importing onnx takes ~0.6 s, and only an export needs it
        missing = [name for name in ("onnx", "onnxruntime") if find_spec(name) is None]
        if missing:
            raise PosekitError(f"backend onnxruntime needs the onnx and onnxruntime packages ({', '.join(missing)} missing); pip install onnx onnxruntime")
    return backend


def onnx_cache_dir() -> Path:
    from posekit.zoo.store import weights_dir

    return weights_dir() / "onnx"


def trunk_metadata(name: str, sha256: str, module: Any) -> dict[str, str]:
    import posekit

    return {"posekit.version": posekit.__version__, "posekit.source": name, "posekit.source_sha256": sha256,
            "posekit.part": "trunk", "posekit.inputs": ",".join(module.trunk_inputs),
            "posekit.outputs": ",".join(module.trunk_outputs)}  # fmt: skip


def export_checked(network: torch.nn.Module, example: list[torch.Tensor], path: Path, inputs: list[str], outputs: list[str],
                   meta: dict[str, str], what: str) -> float:  # fmt: skip
    """Export `network` to ONNX at `path`; returns the largest difference from torch on `example`, relative
    to each output's largest magnitude. Refuses (and removes) an export over `PARITY_LIMIT`."""
    from posekit.export.onnx import export_onnx, onnx_session

    with torch.inference_mode():
        want = forward_outputs(network(*example))
    export_onnx(network, example, path, inputs, outputs, meta)
    got = onnx_session(path).run(None, {n: v.numpy() for n, v in zip(inputs, example)})
    worst = relative_diff([torch.from_numpy(g) for g in got], want)
    if not worst <= PARITY_LIMIT:
        path.unlink(missing_ok=True)
        raise PosekitError(f"{what}: the ONNX export differs from torch by {worst:.2e} (relative; limit {PARITY_LIMIT})")
    return worst


def export_trunk(module: Any, name: str, sha256: str, example: list[torch.Tensor], path: Path) -> float:
    """Export `module`'s trunk to ONNX at `path`, checked against torch on `example`."""
    from posekit.zoo.graph_module import GraphTrunk

    meta = trunk_metadata(name, sha256, module)
    return export_checked(GraphTrunk(module), example, path, module.trunk_inputs, module.trunk_outputs, meta, f"{name} trunk")


class SessionCache:
    """ONNX Runtime sessions of one exported module, one per input shape and intra-op thread count
    (`torch.get_num_threads()` when called, so the video pipeline's single-threaded workers get
    single-threaded sessions). `export(values, path)` writes the file for a shape on first use; sessions are
    safe to share between threads."""

    def __init__(self, stem: str, export: Callable[[list[torch.Tensor], Path], Any]) -> None:
        self.stem, self.export = stem, export
        self._sessions: dict[tuple, Any] = {}
        self._lock = threading.Lock()

    def path_for(self, shape: tuple[int, ...]) -> Path:
        return onnx_cache_dir() / f"{self.stem}-{'x'.join(map(str, shape))}.onnx"

    def session(self, values: list[torch.Tensor], input_names: list[str] | None = None) -> Any:
        """The session for these inputs' shape; a cache entry that ONNX Runtime cannot load, or whose inputs
        are not `input_names` (a file from another model), is exported again once, with one line naming it.
        A cache that cannot be written raises `OSError` (the caller falls back to torch)."""
        from posekit.export.onnx import onnx_session

        shape = tuple(values[0].shape[1:])
        key = (shape, torch.get_num_threads())
        with self._lock:
            if key not in self._sessions:
                path = self.path_for(shape)
                if not path.exists():
                    self.export(values, path)
                try:
                    session = onnx_session(path, key[1])
                    if input_names is not None and [i.name for i in session.get_inputs()] != list(input_names):
                        raise ValueError(f"its inputs are {[i.name for i in session.get_inputs()]}, not {list(input_names)}")
                except Exception as e:  # noqa: BLE001 - ONNX Runtime raises its own types for a corrupt file
                    log.warning("posekit: %s: unusable ONNX cache entry (%s); exporting it again", path, str(e).splitlines()[0][:160])
                    path.unlink(missing_ok=True)
                    self.export(values, path)
                    session = onnx_session(path, key[1])
                self._sessions[key] = session
            return self._sessions[key]


class OnnxTrunk:
    """A `TfjsGraphModule.trunk_runner` that runs the trunk in ONNX Runtime."""

    def __init__(self, module: Any, name: str, sha256: str) -> None:
        self.module, self.name = module, name
        # the same graph cut for other outputs (e.g. MoveNet with its features for embeddings) is another trunk
        cut = hashlib.sha256("|".join(module.trunk_inputs + ["->"] + module.trunk_outputs).encode()).hexdigest()[:8]
        self.cache = SessionCache(f"{name}-{sha256[:16]}-{cut}", lambda values, path: export_trunk(module, name, sha256, values, path))

    def __call__(self, values: list[torch.Tensor]) -> list[torch.Tensor]:
        try:
            session = self.cache.session(values, self.module.trunk_inputs)
        except OSError as e:  # a read-only or full cache: this graph runs in torch from now on
            log.warning("posekit: cannot write the ONNX export to %s (%s); running %s in torch", onnx_cache_dir(), e.strerror or e, self.name)
            self.module.trunk_runner = None
            return list(self.module.run_trunk(*values))
        feeds = {n: v.contiguous().numpy() for n, v in zip(self.module.trunk_inputs, values)}
        return [torch.from_numpy(o) for o in session.run(None, feeds)]


def use_onnxruntime(module: Any, name: str) -> Any:
    """Run `module`'s (the TF.js graph `name`'s) trunk in ONNX Runtime from now on; returns the module."""
    from posekit.zoo.store import read_manifest

    sha256 = read_manifest()["models"][name]["sha256"]
    module.trunk_runner = OnnxTrunk(module, name, sha256)
    return module


def relative_diff(got: list[torch.Tensor], want: list[torch.Tensor]) -> float:
    """Largest |got - want| over paired outputs, each relative to its largest magnitude (at least 1)."""
    return max(float((g.float() - w.float()).abs().max() / w.float().abs().max().clamp(min=1.0)) if w.numel() else 0.0
               for g, w in zip(got, want))  # fmt: skip


class ClassForward(torch.nn.Module):
    """A model's own class `forward` (not an instance override such as `OnnxForward`), for tracing."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> Any:
        return type(self.model).forward(self.model, x)


def forward_outputs(out: Any) -> list[torch.Tensor]:
    return list(out) if isinstance(out, (tuple, list)) else [out]


def forward_output_names(model: Any) -> list[str]:
    """ONNX output names of a trained model's forward: output_0, output_1, ..."""
    return [f"output_{i}" for i in range(len(forward_outputs(OnnxForward.probe(model))))]


def export_forward(model: Any, name: str, sha256: str, example: list[torch.Tensor], path: Path) -> float:
    """Export a trained `PoseModel`'s `forward` to ONNX at `path`, checked against torch on `example`."""
    outputs = forward_output_names(model)
    return export_checked(ClassForward(model), example, path, ["image"], outputs, forward_metadata(model, name, sha256, outputs), name)


def forward_metadata(model: Any, name: str, sha256: str, outputs: list[str]) -> dict[str, str]:
    import posekit

    return {"posekit.version": posekit.__version__, "posekit.source": name, "posekit.source_sha256": sha256,
            "posekit.part": "forward", "posekit.family": model.family, "posekit.spec": model.spec.name,
            "posekit.inputs": "image", "posekit.outputs": ",".join(outputs)}  # fmt: skip


def network_sha256(state: dict[str, Any]) -> str:
    """Identity of a checkpoint's network: its weights and the model section of its config (architecture
    options); the key of its cached exports and the source sha256 its exported files record."""
    import json

    from posekit.zoo.checkpoints import state_sha256

    identity = state_sha256(state["model"]) + json.dumps(state["config"].get("model"), sort_keys=True, default=str)
    return hashlib.sha256(identity.encode()).hexdigest()


class OnnxForward:
    """A trained `PoseModel`'s forward in ONNX Runtime, set as the instance's `forward`: its `predict`
    (decoding, flip test, scoring) stays in torch and calls this for the network."""

    def __init__(self, model: Any, name: str, sha256: str) -> None:
        self.cache = SessionCache(f"{model.family}-{sha256[:16]}", lambda values, path: export_forward(model, name, sha256, values, path))
        self.single = not isinstance(self.probe(model), (tuple, list))

    @staticmethod
    def probe(model: Any) -> Any:
        """The torch forward on one blank input at the model's size: what its outputs look like."""
        size = model.input_size
        with torch.inference_mode():
            return ClassForward(model)(torch.zeros(1, 3, size[1], size[0]))

    def __call__(self, x: torch.Tensor) -> Any:
        outs = [torch.from_numpy(o) for o in self.cache.session([x]).run(None, {"image": x.contiguous().numpy()})]
        return outs[0] if self.single else tuple(outs)


def model_onnxruntime(model: Any, name: str, sha256: str) -> Any:
    """Run a trained `PoseModel`'s forward in ONNX Runtime from now on; returns the model."""
    model.forward = OnnxForward(model, name, sha256)
    return model

