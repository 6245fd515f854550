"""DistilPose student vs its teachers on this machine: ms per crop (batch of crops, the flip test off: one
network pass each) and GFLOPs per crop (torch's FlopCounterMode: multiply-adds x 2 of convolutions, matrix
products and attention). One JSON line per model and measure.

Models: checkpoints given with --checkpoint NAME=PATH (e.g. the shipped `distilpose-small` and the token
teacher it was distilled from), and MoveNet Thunder / Lightning (the imported graphs on their own crop size).

usage: .venv/bin/python benchmarks/bench_distilpose.py --checkpoint student=distilpose-small \
           --checkpoint teacher=outputs/train/distilpose_teacher_small_lspet/checkpoint.pt [--batch 8] [--repeat 20]
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from posekit.bench import machine


def measure(name: str, network, example: torch.Tensor, repeat: int, threads: int) -> None:  # noqa: ANN001
    with torch.inference_mode():
        with FlopCounterMode(display=False) as counter:
            network(example[:1])
        flops = counter.get_total_flops()
        for _ in range(3):  # warm-up
            network(example)
        start = time.perf_counter()
        for _ in range(repeat):
            network(example)
        ms = (time.perf_counter() - start) / repeat / len(example) * 1000
    h, w = example.shape[-2:] if example.shape[1] == 3 else example.shape[1:3]  # NCHW crops, or MoveNet's NHWC
    size = f"{w}x{h}"
    for measure_name, value, unit in (("ms_per_crop", ms, "ms"), ("gflops_per_crop", flops / 1e9, "GFLOPs")):
        print(json.dumps({"name": f"distilpose/{measure_name}", "config": f"{name} {size}", "value": round(value, 3), "unit": unit,
                          "n": repeat * len(example), "threads": threads, "machine": machine()}))  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", action="append", default=[], metavar="NAME=PATH", help="a trained top-down checkpoint")
    ap.add_argument("--movenet", nargs="*", default=["movenet-thunder", "movenet-lightning"])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from posekit.zoo.checkpoints import model_from_checkpoint
    from posekit.zoo.loader import read_model_state

    for item in args.checkpoint:
        name, _, path = item.partition("=")
        model = model_from_checkpoint(path, read_model_state(path))  # a shipped model's name or a checkpoint path
        w, h = model.input_size
        measure(name, model, torch.randn(args.batch, 3, h, w), args.repeat, args.threads)
    for graph in args.movenet:
        from posekit.models.tfjs_models import MOVENET_INPUT_SIZE, load_module

        s = MOVENET_INPUT_SIZE[graph]
        module = load_module(graph)
        measure(graph, lambda x, m=module: m(x), torch.randint(0, 256, (args.batch, s, s, 3), dtype=torch.int32), args.repeat, args.threads)


if __name__ == "__main__":
    main()
