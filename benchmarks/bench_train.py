"""Training throughput: samples/s of one optimisation step (forward, loss, backward, Adam) per config,
on random inputs at the config's size (data loading excluded), fp32 and bf16 autocast. One JSON line
per measurement; no assertions.

usage: .venv/bin/python benchmarks/bench_train.py [--batch 8] [--steps 3] [--configs configs/*.yaml]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from posekit.bench import machine
from posekit.data.specs import get_spec
from posekit.engine.config import load_config
from posekit.models import build_model

ROOT = Path(__file__).resolve().parents[1]


def step_time(model: torch.nn.Module, x: torch.Tensor, bf16: bool, steps: int) -> float:
    opt = torch.optim.Adam(model.parameters(), 1e-3)

    def one() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(x)
            loss = sum(o.float().square().mean() for o in (out if isinstance(out, tuple) else (out,)))
        opt.zero_grad()
        loss.backward()
        opt.step()

    one()
    start = time.perf_counter()
    for _ in range(steps):
        one()
    return (time.perf_counter() - start) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--configs", nargs="+", type=Path, default=sorted((ROOT / "configs").glob("*.yaml")))
    ap.add_argument("--no-bf16", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(2)
    for path in args.configs:
        cfg = load_config(path)
        m = cfg.model
        model = build_model(m, get_spec("coco17"), cfg.data.input_size).train()
        w, h = cfg.data.input_size
        x = torch.randn(args.batch, 3, h, w)
        for bf16 in (False,) if args.no_bf16 else (False, True):
            seconds = step_time(model, x, bf16, args.steps)
            print(json.dumps({"name": "train_step_throughput", "config": {"file": path.name, "family": m.family, "backbone": m.backbone,
                              "head": getattr(m, "head", None), "integral": getattr(m, "integral", False), "input": [w, h], "batch": args.batch, "dtype": "bf16-autocast" if bf16 else "fp32"},
                              "value": round(args.batch / seconds, 2), "unit": "samples/s", "n": args.steps * args.batch, "machine": machine()}), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
