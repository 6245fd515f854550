"""Inference benchmarks: img/s of each pipeline on the shared COCO images that contain people, and
MoveNet Thunder ms/crop batched vs one crop at a time. One JSON line per measurement; no assertions.

usage: .venv/bin/python benchmarks/bench_inference.py [--repeat 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from posekit.bench import bench_pipelines, machine
from posekit.models.tfjs_models import SinglePoseMoveNet
from posekit.runtime import tune_malloc
from posekit.zoo.loader import model_names


def person_images(data: Path) -> list[Path]:
    ann = json.loads((data / "coco-mini" / "annotations" / "person_keypoints_train2017.json").read_text())
    with_people = {a["image_id"] for a in ann["annotations"] if not a["iscrowd"]}
    return sorted(data / "coco-mini" / "train2017" / i["file_name"] for i in ann["images"] if i["id"] in with_people)


def bench_crops(batch: int, repeat: int) -> list[dict]:
    tune_malloc()
    model = SinglePoseMoveNet("movenet-thunder")
    crops = torch.randint(0, 256, (batch, 256, 256, 3), dtype=torch.int32)
    records = []
    for mode in ("batched", "one_at_a_time"):
        run = (lambda: model.module(crops)) if mode == "batched" else (lambda: [model.module(crops[i : i + 1]) for i in range(batch)])
        run()
        start = time.perf_counter()
        for _ in range(repeat):
            run()
        ms = (time.perf_counter() - start) / (repeat * batch) * 1000
        records.append(
            {
                "name": "thunder_crop_latency",
                "config": {"mode": mode, "batch": batch},
                "value": round(ms, 2),
                "unit": "ms/crop",
                "n": repeat * batch,
                "machine": machine(),
            }
        )
    return records


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", nargs="+", default=model_names(), help="model names or checkpoints (default: every named model)")
    ap.add_argument("--no-crops", action="store_true", help="skip the batched-crop measurement")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = Path(os.environ.get("POSEKIT_TEST_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    for record in bench_pipelines(args.models, person_images(data), args.repeat, args.threads):
        print(json.dumps(record), flush=True)
    for record in () if args.no_crops else bench_crops(8, args.repeat * 2):
        print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
