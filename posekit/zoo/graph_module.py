"""Run an imported TF.js graph as a torch `nn.Module`, node by node in topological order.

Batching: graphs exported for batch 1 begin and end with batch-1 code (unstack/expand of the input; ArgMax,
GatherNd, fixed Reshapes at the end) around a convolutional trunk. The module splits the nodes in three:
a light head (no heavy op, fed only by the inputs) run once per sample, the batch-safe trunk (convolutions,
element-wise ops, ...) run once on the whole batch, and the remaining tail run once per sample.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from posekit.zoo.tfjs_format import GraphNode, TfjsGraph
from posekit.zoo.tfjs_ops import _DTYPES, BATCH_SAFE_OPS, HEAVY_OPS, OPS


def _source(ref: str) -> str:
    """Env key of an input reference: 'n' and 'n:0' -> 'n'; 'n:2' stays."""
    node, _, index = ref.partition(":")
    return node if index in ("", "0") else ref


def _node_of(key: str) -> str:
    return key.partition(":")[0]


class UnsupportedOpError(NotImplementedError):
    pass


def needed_nodes(by_name: dict[str, GraphNode], outputs: Sequence[str], stop: str | None = None) -> set[str]:
    """Names of the nodes `outputs` depend on (themselves included); the walk does not go past `stop`."""
    needed: set[str] = set()
    stack = [_node_of(o) for o in outputs]
    while stack:
        name = stack.pop()
        if name in needed:
            continue
        needed.add(name)
        if name != stop:
            stack.extend(_node_of(i) for i in by_name[name].inputs if not i.startswith("^"))
    return needed


def store_output(env: dict[str, Any], name: str, out: Any) -> None:
    """An op's result into the environment: a tuple's k-th item is 'name:k' (the first is 'name')."""
    if isinstance(out, (tuple, list)):
        env[name] = out[0]
        for k in range(1, len(out)):
            env[f"{name}:{k}"] = out[k]
    else:
        env[name] = out


class TfjsGraphModule(nn.Module):
    """A TF.js graph executed with torch ops. `forward(*inputs)` returns the outputs (a tuple if several)."""

    def __init__(self, graph: TfjsGraph, outputs: Sequence[str] | None = None) -> None:
        super().__init__()
        self.input_names = list(graph.inputs)
        self.output_names = [_source(o) for o in (outputs or graph.outputs)]
        by_name = {n.name: n for n in graph.nodes}
        needed = needed_nodes(by_name, self.output_names)
        unsupported = sorted({n.op for n in graph.nodes if n.name in needed and n.op not in OPS and n.op not in ("Const", "Placeholder")})
        if unsupported:
            raise UnsupportedOpError(f"graph uses ops the importer does not implement: {unsupported}")
        self._consts = {
            n.name: torch.from_numpy(np.array(graph.consts[n.name], copy=True)) for n in graph.nodes if n.op == "Const" and n.name in needed
        }
        self._input_dtypes = {n.name: _DTYPES.get(n.attr.get("dtype"), torch.float32) for n in graph.nodes if n.op == "Placeholder"}
        self._steps: list[tuple[str, Callable[..., Any], list[str]]] = []
        head: set[str] = set(self.input_names)
        batched: set[str] = set()
        for node in graph.nodes:
            if node.name not in needed or node.op in ("Const", "Placeholder"):
                continue
            refs = [_source(i) for i in node.inputs]
            fn = OPS[node.op](node, self._const_lookup(refs))
            self._steps.append((node.name, fn, refs))
            dynamic = [_node_of(r) for r in refs if r not in self._consts]
            if node.op not in HEAVY_OPS and all(d in head for d in dynamic):
                head.add(node.name)
            elif self._is_batch_safe(node, refs) and dynamic and all(d in batched or d in head for d in dynamic):
                batched.add(node.name)
        self._head_steps = head - set(self.input_names)
        self._batched_steps = batched
        # Values crossing phases: head -> trunk (stacked), trunk -> tail (sliced per sample).
        self._head_to_trunk = sorted({r for n, _, refs in self._steps if n in batched for r in refs if _node_of(r) in head})
        self._trunk_to_tail = sorted(
            {r for n, _, refs in self._steps if n not in batched and n not in head for r in refs if _node_of(r) in batched}
        )
        self._tail_outputs = [o for o in self.output_names if _node_of(o) not in batched]
        self._drop_after = self._last_uses(head, batched)
        # The trunk as a function of its own: what export traces, and what another backend may run.
        self.trunk_inputs = list(self._head_to_trunk)
        self.trunk_outputs = sorted(set(self._trunk_to_tail) | {o for o in self.output_names if _node_of(o) in batched})
        self.trunk_runner: Callable[[list[torch.Tensor]], list[torch.Tensor]] | None = None

    def _last_uses(self, head: set[str], batched: set[str]) -> dict[str, list[str]]:
        """Values to free after each step (their last use), so peak memory is the live set, not the graph.
        Values that cross phases or are outputs are kept."""
        phase = {n: 0 if n in head else 1 if n in batched else 2 for n, _, _ in self._steps}
        keep = set(self.output_names)
        last: dict[str, str] = {}
        for name, _, refs in self._steps:
            for r in refs:
                if r in self._consts:
                    continue
                if phase.get(_node_of(r), 0) != phase[name]:
                    keep.add(r)
                last[r] = name
        drops: dict[str, list[str]] = {}
        for r, name in last.items():
            if r not in keep:
                drops.setdefault(name, []).append(r)
        return drops

    def _const_lookup(self, refs: list[str]) -> Callable[[int], torch.Tensor | None]:
        return lambda i: self._consts.get(refs[i]) if i < len(refs) else None

    def _is_batch_safe(self, node: GraphNode, refs: list[str]) -> bool:
        if node.op not in BATCH_SAFE_OPS:
            return False
        if node.op in ("Mean", "Sum", "Max", "ConcatV2"):
            axes = self._consts.get(refs[-1])
            return axes is not None and bool((axes > 0).all())
        if node.op == "ResizeBilinear":
            return refs[1] in self._consts
        if node.op in ("MatMul", "_FusedMatMul"):  # rows are samples only when x @ W with a constant W
            return refs[1] in self._consts and not node.attr.get("transpose_a", False)
        return True

    def _run(self, env: dict[str, Any], only: set[str] | None, skip: set[str]) -> None:
        for name, fn, refs in self._steps:
            if name in skip or (only is not None and name not in only):
                continue
            store_output(env, name, fn(*[env[r] for r in refs]))
            for r in self._drop_after.get(name, ()):
                env.pop(r, None)

    def run_trunk(self, *values: torch.Tensor, consts: dict[str, torch.Tensor] | None = None) -> tuple[torch.Tensor, ...]:
        """The batch-safe trunk alone: `trunk_inputs` (batched) -> `trunk_outputs`, in torch (`consts`: the
        graph's constants as copies on another device)."""
        env: dict[str, Any] = dict(self._consts if consts is None else consts)
        env.update(zip(self.trunk_inputs, values))
        self._run(env, self._batched_steps, set())
        return tuple(env[o] for o in self.trunk_outputs)

    def _heads(self, env: dict[str, Any], batch: int) -> tuple[list[dict[str, Any]], list[torch.Tensor]]:
        """The per-sample head on each sample of the graph inputs in `env`: the samples' environments and
        the trunk's inputs stacked over the batch."""
        samples = []
        for i in range(batch):
            env_i = dict(self._consts)
            env_i.update({k: env[k][i : i + 1] for k in self.input_names})
            self._run(env_i, self._head_steps, set())
            samples.append(env_i)
        for k in self._head_to_trunk:
            if samples[0][k].dim() == 0 or samples[0][k].shape[0] != 1:
                raise RuntimeError(f"cannot batch this graph: {k} has no leading batch dimension")
        return samples, [torch.cat([s[k] for s in samples], dim=0) for k in self.trunk_inputs]

    @torch.inference_mode()
    def trunk_feed(self, *inputs: torch.Tensor) -> list[torch.Tensor]:
        """The trunk's inputs for these graph inputs (the head run on each sample, stacked)."""
        env = {name: value.to(self._input_dtypes.get(name, value.dtype)) for name, value in zip(self.input_names, inputs)}
        return self._heads(env, inputs[0].shape[0])[1]

    @torch.inference_mode()
    def forward(self, *inputs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        env: dict[str, Any] = dict(self._consts)
        for name, value in zip(self.input_names, inputs):
            env[name] = value.to(self._input_dtypes.get(name, value.dtype))
        batch = inputs[0].shape[0] if inputs[0].dim() else 1
        if batch == 1 and self.trunk_runner is None:
            self._run(env, None, set())
        else:
            samples, stacked = self._heads(env, batch)
            trunk = self.trunk_runner(stacked) if self.trunk_runner is not None else self.run_trunk(*stacked)
            env.update(zip(self.trunk_outputs, trunk))
            done = self._head_steps | self._batched_steps
            for i, env_i in enumerate(samples):
                env_i.update({k: env[k][i : i + 1] for k in self._trunk_to_tail})
                self._run(env_i, None, done)
            for o in self._tail_outputs:
                env[o] = torch.cat([s[o] for s in samples], dim=0)
        outs = tuple(env[o] for o in self.output_names)
        return outs[0] if len(outs) == 1 else outs


class GraphTrunk(nn.Module):
    """A graph's batch-safe trunk as a plain module, for tracing / export: `trunk_inputs` -> `trunk_outputs`."""

    def __init__(self, graph: TfjsGraphModule) -> None:
        super().__init__()
        self.graph = graph

    def forward(self, *values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.graph.run_trunk(*values)


class DeviceTrunk:
    """A `TfjsGraphModule.trunk_runner` that runs the trunk (the convolutions: nearly all the compute) on a
    torch device such as "cuda"; the graph's small data-dependent head and tail stay on the CPU."""

    def __init__(self, graph: TfjsGraphModule, device: torch.device) -> None:
        self.graph, self.device = graph, device
        self.consts = {k: v.to(device) for k, v in graph._consts.items()}

    @torch.inference_mode()
    def __call__(self, values: list[torch.Tensor]) -> list[torch.Tensor]:
        outputs = self.graph.run_trunk(*(v.to(self.device) for v in values), consts=self.consts)
        return [o.cpu() for o in outputs]
