"""The weights cache: `$POSEKIT_HOME/weights/<name>.safetensors` plus `manifest.json`.

Each converted graph is one safetensors file: its constants as tensors and the graph topology (nodes,
inputs, outputs) as JSON in the file's metadata. The manifest records the source package, version and
tarball integrity, and each file's sha256, checked before every load.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file

from posekit.errors import WeightsError
from posekit.fileio import atomic_path, atomic_write_bytes
from posekit.zoo.registry import graph_entry
from posekit.zoo.tfjs_format import GraphNode, TfjsGraph

FORMAT = "posekit-tfjs-graph/1"


def posekit_home() -> Path:
    return Path(os.environ.get("POSEKIT_HOME", Path.home() / ".cache" / "posekit"))


def weights_dir() -> Path:
    return posekit_home() / "weights"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


_WARNED: set[str] = set()  # corrupt manifests already reported (one line, not one per lookup)


def read_manifest() -> dict[str, Any]:
    path = weights_dir() / "manifest.json"
    if not path.exists():
        return {"models": {}}
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        manifest = None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("models", {}), dict):
        # nothing in the cache can be trusted without its sha256: as if empty, so that fetch rebuilds it
        if str(path) not in _WARNED:
            _WARNED.add(str(path))
            print(f"posekit: {path} is unreadable or corrupt; treating the weights cache as empty (posekit weights fetch rebuilds it)",
                  file=sys.stderr)  # fmt: skip
        return {"models": {}}
    return manifest


def write_manifest(manifest: dict[str, Any]) -> None:
    atomic_write_bytes(weights_dir() / "manifest.json", json.dumps(manifest, indent=2, sort_keys=True).encode())


def save_graph(name: str, graph: TfjsGraph, provenance: dict[str, Any]) -> dict[str, Any]:
    """Store a converted graph and return its manifest record (the caller writes the manifest)."""
    topology = {
        "nodes": [[n.name, n.op, n.inputs, n.attr] for n in graph.nodes],
        "inputs": graph.inputs,
        "outputs": graph.outputs,
    }
    path = weights_dir() / f"{name}.safetensors"
    with atomic_path(path) as tmp:
        tensors = {k: np.ascontiguousarray(v) if v.ndim else v.copy() for k, v in graph.consts.items()}
        save_file(tensors, str(tmp), metadata={"format": FORMAT, "graph": json.dumps(topology)})
    return {"file": path.name, "sha256": sha256_file(path), "bytes": path.stat().st_size, **provenance}


def verify(name: str) -> Path:
    """Path of a cached graph whose sha256 matches the manifest; a clear error otherwise."""
    graph_entry(name)
    record = read_manifest().get("models", {}).get(name)
    path = weights_dir() / f"{name}.safetensors"
    if record is None or not path.exists():
        raise WeightsError(f"weights for {name!r} are not in {weights_dir()}; run: posekit weights fetch {name}")
    actual = sha256_file(path)
    if actual != record["sha256"]:
        raise WeightsError(
            f"{path} is corrupt (sha256 {actual[:12]}… != manifest {record['sha256'][:12]}…); re-fetch it with: posekit weights fetch --force {name}"
        )
    return path


@lru_cache(maxsize=8)
def _load_graph_cached(path: str, sha256: str) -> TfjsGraph:
    from safetensors import safe_open

    with safe_open(path, "np") as f:
        meta = f.metadata() or {}
    if meta.get("format") != FORMAT:
        raise WeightsError(f"{path}: not a posekit graph file (format {meta.get('format')!r}); re-fetch with --force")
    topo = json.loads(meta["graph"])
    nodes = [GraphNode(n, op, list(inputs), dict(attr)) for n, op, inputs, attr in topo["nodes"]]
    return TfjsGraph(nodes, load_file(path), topo["inputs"], topo["outputs"])


def load_graph(name: str) -> TfjsGraph:
    """The verified, cached graph `name` (see `posekit weights fetch`)."""
    path = verify(name)
    return _load_graph_cached(str(path), read_manifest()["models"][name]["sha256"])
