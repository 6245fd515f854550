"""Reading TF.js graph models: `model.json` (GraphDef topology + weights manifest) and the `.bin` shards.

Weights stored quantized (float16, or uint8/uint16 with `min` + `scale`) are dequantized to float32 here,
exactly as tfjs-converter does on load.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from posekit.errors import WeightsError

_NP_DTYPES = {"float32": np.float32, "int32": np.int32, "bool": np.bool_}
_QUANT_DTYPES = {"float16": np.float16, "uint8": np.uint8, "uint16": np.uint16}


@dataclass
class GraphNode:
    name: str
    op: str
    inputs: list[str]  # "node" or "node:k"; control inputs ("^node") are dropped
    attr: dict[str, Any] = field(default_factory=dict)


@dataclass
class TfjsGraph:
    nodes: list[GraphNode]
    consts: dict[str, np.ndarray]
    inputs: list[str]  # placeholder node names, signature order
    outputs: list[str]  # tensor names ("node" or "node:k"), signature order


def _parse_attr(value: dict[str, Any]) -> Any:
    """A GraphDef AttrValue as plain Python (strings are base64 in the JSON)."""
    if "list" in value:
        lst = value["list"]
        if "i" in lst:
            return [int(v) for v in lst["i"]]
        if "s" in lst:
            return [base64.b64decode(v).decode() for v in lst["s"]]
        if "f" in lst:
            return [float(v) for v in lst["f"]]
        return []
    if "i" in value:
        return int(value["i"])
    if "f" in value:
        return float(value["f"])
    if "b" in value:
        return bool(value["b"])
    if "s" in value:
        return base64.b64decode(value["s"]).decode()
    if "type" in value:
        return value["type"]
    if "shape" in value:
        return [int(d.get("size", -1)) for d in value["shape"].get("dim", [])]
    return value


def parse_topology(topology: dict[str, Any]) -> list[GraphNode]:
    nodes = []
    for raw in topology["node"]:
        inputs = [i for i in raw.get("input", []) if not i.startswith("^")]
        attr = {k: _parse_attr(v) for k, v in raw.get("attr", {}).items()}
        nodes.append(GraphNode(raw["name"], raw["op"], inputs, attr))
    return nodes


def read_weights(manifest: list[dict[str, Any]], root: Path) -> dict[str, np.ndarray]:
    """Decode every weight of a weights manifest, shards read from `root`."""
    out: dict[str, np.ndarray] = {}
    for group in manifest:
        blob = b"".join((root / p).read_bytes() for p in group["paths"])
        offset = 0
        for w in group["weights"]:
            shape = [int(s) for s in w["shape"]]
            count = int(np.prod(shape)) if shape else 1
            quant = w.get("quantization")
            if quant:
                qtype = _QUANT_DTYPES[quant["dtype"]]
                raw = np.frombuffer(blob, qtype, count, offset)
                offset += raw.nbytes
                if quant["dtype"] == "float16":
                    arr = raw.astype(np.float32)
                else:
                    arr = raw.astype(np.float32) * np.float32(quant["scale"]) + np.float32(quant["min"])
                arr = arr.astype(_NP_DTYPES[w["dtype"]])
            else:
                dtype = _NP_DTYPES.get(w["dtype"])
                if dtype is None:
                    raise WeightsError(f"weight {w['name']}: unsupported dtype {w['dtype']}")
                arr = np.frombuffer(blob, dtype, count, offset).copy()
                offset += arr.nbytes
            out[w["name"]] = arr.reshape(shape)
        if offset != len(blob):
            raise WeightsError(f"weights manifest does not match the .bin size ({offset} != {len(blob)} bytes)")
    return out


def load_tfjs_model(model_json: str | Path) -> TfjsGraph:
    """Load a TF.js graph model from its model.json (the .bin shards beside it)."""
    path = Path(model_json)
    spec = json.loads(path.read_text())
    if spec.get("format") != "graph-model":
        raise WeightsError(f"{path}: not a TF.js graph model (format={spec.get('format')!r})")
    nodes = parse_topology(spec["modelTopology"])
    consts = read_weights(spec["weightsManifest"], path.parent)
    signature = spec.get("signature", {})
    placeholders = [n.name for n in nodes if n.op == "Placeholder"]
    inputs = [v["name"].split(":")[0] for v in signature.get("inputs", {}).values()] or placeholders
    outputs = [_tensor_name(v["name"]) for v in signature.get("outputs", {}).values()]
    if not outputs:
        outputs = [nodes[-1].name]
    missing = [n.name for n in nodes if n.op == "Const" and n.name not in consts]
    if missing:
        raise WeightsError(f"{path}: constants without weights: {missing[:5]}")
    return TfjsGraph(nodes, consts, inputs, outputs)


def _tensor_name(name: str) -> str:
    """'Identity:0' -> 'Identity'; 'TopKV2:1' stays."""
    node, _, index = name.partition(":")
    return node if index in ("", "0") else name
