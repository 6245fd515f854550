"""ONNX and TorchScript files from torch modules, and ONNX Runtime sessions to run them.

Export traces the module (the TorchScript-based exporter: the graphs here are plain tensor code, and it
needs no onnxscript), makes the batch axis dynamic, folds TF-style asymmetric zero padding into the
following Conv (ONNX Conv takes begin/end pads; torch's conv2d does not, so the trace has a separate Pad
that ONNX Runtime leaves unfused), and records where the file came from in its metadata.
"""

from __future__ import annotations

import io
import json
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from posekit.fileio import atomic_path

OPSET = 19  # DeformConv (PoseDet's pose embedding) exists from opset 19


def _register_deform_conv() -> None:
    """torchvision::deform_conv2d -> ONNX DeformConv (torchvision registers no symbolic for it)."""
    from torch.onnx import register_custom_op_symbolic
    from torch.onnx.symbolic_helper import parse_args

    @parse_args("v", "v", "v", "v", "v", "i", "i", "i", "i", "i", "i", "i", "i", "b")
    def deform_conv2d(g, x, weight, offset, mask, bias, sh, sw, ph, pw, dh, dw, groups, offset_groups, use_mask):  # noqa: ANN001, ANN202
        inputs = [x, weight, offset, bias] + ([mask] if use_mask else [])
        return g.op("DeformConv", *inputs, strides_i=[sh, sw], pads_i=[ph, pw, ph, pw], dilations_i=[dh, dw],
                    group_i=groups, offset_group_i=offset_groups)  # fmt: skip

    register_custom_op_symbolic("torchvision::deform_conv2d", deform_conv2d, OPSET)


def _constant_value(model, name: str) -> np.ndarray | None:  # noqa: ANN001 (onnx.ModelProto)
    """The value of tensor `name` when it depends on constants only (the exporter computes F.pad's pads with
    Concat / Reshape / Slice of constants), evaluated with onnx's reference runtime; None otherwise."""
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    if name in inits:
        return numpy_helper.to_array(inits[name])
    producer = {o: n for n in graph.node for o in n.output}
    needed, stack, used_inits = [], [name], set()
    while stack:
        t = stack.pop()
        if t in inits:
            used_inits.add(t)
            continue
        node = producer.get(t)
        if node is None or node.op_type == "Shape":  # a graph input, or the shape of a dynamic tensor
            return None
        if node not in needed:
            needed.append(node)
            stack.extend(i for i in node.input if i)
    order = [n for n in graph.node if n in needed]
    sub = helper.make_graph(order, "pads", [], [helper.make_tensor_value_info(name, 0, None)], [inits[i] for i in used_inits])
    try:
        return np.asarray(ReferenceEvaluator(helper.make_model(sub, opset_imports=model.opset_import)).run(None, {})[0])
    except Exception:  # noqa: BLE001 (not evaluable here: leave the Pad as it is)
        return None


def fuse_pads(model) -> int:  # noqa: ANN001 (onnx.ModelProto)
    """Fold constant zero `Pad` nodes on the spatial axes of NCHW tensors into the `Conv` they feed (ONNX
    Conv pads are [top, left, bottom, right]). Returns how many were folded."""
    from onnx import helper

    graph = model.graph
    consumers: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    removed = []
    for pad in graph.node:
        if pad.op_type != "Pad" or len(consumers.get(pad.output[0], [])) != 1:
            continue
        conv = consumers[pad.output[0]][0]
        mode = next((a.s for a in pad.attribute if a.name == "mode"), b"constant")
        if conv.op_type != "Conv" or mode != b"constant":
            continue
        pads = _constant_value(model, pad.input[1])
        value = _constant_value(model, pad.input[2]) if len(pad.input) > 2 and pad.input[2] else np.zeros(1)
        if pads is None or value is None or np.any(value != 0) or pads.shape != (8,):
            continue
        if np.any(pads[[0, 1, 4, 5]] != 0) or np.any(pads < 0) or any(a.name == "auto_pad" for a in conv.attribute):
            continue
        old = next((list(a.ints) for a in conv.attribute if a.name == "pads"), [0, 0, 0, 0])
        new = [old[0] + int(pads[2]), old[1] + int(pads[3]), old[2] + int(pads[6]), old[3] + int(pads[7])]
        for a in list(conv.attribute):
            if a.name == "pads":
                conv.attribute.remove(a)
        conv.attribute.append(helper.make_attribute("pads", new))
        conv.input[0] = pad.input[0]
        removed.append(pad)
    for pad in removed:
        graph.node.remove(pad)
    if removed:  # the pads' constant subgraphs are now dead
        _drop_dead_nodes(graph)
    return len(removed)


def _drop_dead_nodes(graph) -> None:  # noqa: ANN001 (onnx.GraphProto)
    live = {o.name for o in graph.output}
    for node in reversed(list(graph.node)):
        if any(o in live for o in node.output):
            live.update(i for i in node.input if i)
        else:
            graph.node.remove(node)


def export_onnx(module: nn.Module, example: Sequence[torch.Tensor], path: str | Path, input_names: Sequence[str],
                output_names: Sequence[str], metadata: dict[str, str], dynamic_batch: bool = True) -> Path:  # fmt: skip
    """`module(*example)` traced to an ONNX file at `path` (written atomically), batch axis dynamic."""
    import onnx

    _register_deform_conv()
    axes = {name: {0: "batch"} for name in [*input_names, *output_names]} if dynamic_batch else None
    buffer = io.BytesIO()
    with torch.inference_mode(False):  # the example may come from inference mode, which tracing refuses
        example = [v.clone() for v in example]
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about Python ints: shapes other than the batch are fixed on purpose
        torch.onnx.export(module.eval(), tuple(example), buffer, dynamo=False, opset_version=OPSET, input_names=list(input_names),
                          output_names=list(output_names), dynamic_axes=axes, do_constant_folding=True)  # fmt: skip
    model = onnx.load_from_string(buffer.getvalue())
    fuse_pads(model)
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=str(value))
    onnx.checker.check_model(model)
    with atomic_path(path) as tmp:
        onnx.save(model, str(tmp))
    return Path(path)


def export_torchscript(module: nn.Module, example: Sequence[torch.Tensor], path: str | Path, metadata: dict[str, str]) -> Path:
    """`module(*example)` traced to a TorchScript file (metadata in its `posekit.json` extra file)."""
    with torch.inference_mode(False):
        example = [v.clone() for v in example]
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(module.eval(), tuple(example), check_trace=False)
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated upstream, and still what runs without Python
        torch.jit.save(traced, str(tmp), _extra_files={"posekit.json": json.dumps(metadata)})
    return Path(path)


def read_metadata(path: str | Path) -> dict[str, str]:
    """The metadata an exported file records (ONNX metadata_props, or TorchScript's posekit.json)."""
    path = Path(path)
    if path.suffix == ".onnx":
        import onnx

        return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    files = {"posekit.json": ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.load(str(path), _extra_files=files)
    return json.loads(files["posekit.json"] or "{}")


def onnx_session(path: str | Path, threads: int = 2):  # noqa: ANN201 (onnxruntime.InferenceSession)
    """A CPU ONNX Runtime session with `threads` intra-op threads and no inter-op pool."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # warnings about unused initialisers are noise here
    # ONNX Runtime's threads spin after each run by default, taking the cores from the torch code (decoding,
    # the next stage) that runs between sessions in this process.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def max_abs_diff(a: Sequence[torch.Tensor | np.ndarray], b: Sequence[torch.Tensor | np.ndarray]) -> float:
    """Largest absolute difference over paired outputs (float; integers compared as floats)."""
    worst = 0.0
    for x, y in zip(a, b):
        x = x.detach().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        y = y.detach().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
        if x.shape != y.shape:
            return float("inf")
        if x.size:
            worst = max(worst, float(np.max(np.abs(x.astype(np.float64) - y.astype(np.float64)))))
    return worst
