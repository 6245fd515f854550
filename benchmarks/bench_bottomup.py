"""Cost against the number of people. Default: network ms and decoding ms (grouping, or PoseDet's pose
NMS, SIMPLE's box decoding and grouping) per image of a whole-image model at its own input size. --pipelines: the whole `PoseEstimator` call
(detector + one crop per person for top-down models) of each named model on the same images. Images are
mosaics of held-out LSP-Extended persons with 1, 6 and 20 persons (1x1, 2x3, 4x5 tiles). One JSON line
per measurement; no assertions.

usage: .venv/bin/python benchmarks/bench_bottomup.py [--model higherhrnet-small] [--repeat 10] [--threads 2]
       .venv/bin/python benchmarks/bench_bottomup.py --pipelines posedet-small topdown-thunder [--image-size 512]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from posekit.bench import machine
from posekit.data.datasets import read_lsp
from posekit.data.mosaic import MosaicSource
from posekit.data.transforms import normalise
from posekit.zoo.loader import load_model

GRIDS = {1: (1, 1), 6: (2, 3), 20: (4, 5)}


def _emit(name: str, cfg: dict, values: list[float], found: list[int]) -> None:
    print(json.dumps({"name": name, "config": cfg, "value": round(1000 * float(np.median(values)), 2), "unit": "ms (median)",
                      "n": len(values), "persons_found_mean": round(float(np.mean(found)), 1), "machine": machine()}))  # fmt: skip


def network_and_decode(args: argparse.Namespace, lsp: list) -> None:
    model = load_model(args.model).model.model  # ImagePipeline -> CheckpointImageModel -> PoseModel
    size = model.input_size[0]
    source = MosaicSource(lsp, model.spec.name)
    decode = getattr(model, "decode", model.codec.decode)  # SIMPLE decodes with its grouping module, a model part
    rng = np.random.default_rng(0)
    for persons, grid in GRIDS.items():
        net, dec, found = [], [], []
        for i in range(args.repeat + 1):  # the first is a warm-up
            canvas, _, _ = source.make(rng, size, grid)
            x = torch.from_numpy(normalise(canvas))[None]
            t0 = time.perf_counter()
            outputs = model.outputs(x)
            t1 = time.perf_counter()
            kp = decode(*(o[0] for o in outputs))[0]
            t2 = time.perf_counter()
            if i:
                net.append(t1 - t0)
                dec.append(t2 - t1)
                found.append(len(kp))
        cfg = {"model": str(args.model), "input": size, "persons": persons, "flip_test": model.cfg.flip_test, "threads": args.threads}
        _emit("network_ms", cfg, net, found)
        _emit("decode_ms", cfg, dec, found)


def pipelines(args: argparse.Namespace, lsp: list) -> None:
    from posekit.api import PoseEstimator

    estimators = {name: PoseEstimator(name) for name in args.pipelines}
    source = MosaicSource(lsp, "coco17")
    rng = np.random.default_rng(0)
    for persons, grid in GRIDS.items():
        images = [source.make(rng, args.image_size, grid)[0] for _ in range(args.repeat + 1)]  # RGB, as PoseEstimator takes
        for name, estimator in estimators.items():
            times, found = [], []
            for i, image in enumerate(images):  # the first is a warm-up
                t0 = time.perf_counter()
                poses = estimator.estimate(image)
                if i:
                    times.append(time.perf_counter() - t0)
                    found.append(len(poses))
            _emit("pipeline_ms", {"model": name, "image": args.image_size, "persons": persons, "threads": args.threads}, times, found)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="higherhrnet-small", help="a whole-image model name or checkpoint")
    ap.add_argument("--pipelines", nargs="+", metavar="MODEL", help="time the whole PoseEstimator call of these models instead")
    ap.add_argument("--image-size", type=int, default=512, help="mosaic side for --pipelines")
    ap.add_argument("--repeat", type=int, default=10, help="mosaics per person count")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("POSEKIT_TEST_DATA", "../shared/data")))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    lsp = read_lsp(args.data / "lspet/joints.mat", args.data / "lspet/images")[9000:]
    if args.pipelines:
        pipelines(args, lsp)
    else:
        network_and_decode(args, lsp)


if __name__ == "__main__":
    main()
