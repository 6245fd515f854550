"""Cost per person of each stage of topdown-wholebody: body (MoveNet Thunder on the person crops, flip test as
the preset has it), feet (BlazePose on the person crops), hands (both hands' crops and landmarks) and face
(crop and FaceMesh), on the COCO-WholeBody fixture's images with their GT person boxes. The parts of all
persons of an image run as one batch, so ms per person = stage time / persons. One JSON line per stage.

With --part-detectors the hand and face stages include the palm detector / BlazeFace and the second
landmark run where they found the part.

usage: .venv/bin/python benchmarks/bench_wholebody.py [--repeat 5] [--threads 2] [--backend torch] [--part-detectors]
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
from posekit.pipeline.readers import read_image
from posekit.zoo.loader import load_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--backend", default="torch", choices=["torch", "onnxruntime"])
    ap.add_argument("--part-detectors", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    root = Path(os.environ.get("POSEKIT_TEST_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")) / "fixtures" / "coco"
    gt = json.loads((root / "test_coco_wholebody.json").read_text())
    pipe = load_model("topdown-wholebody", backend=args.backend, part_detectors=args.part_detectors)
    images = []
    for img in gt["images"]:
        anns = [a for a in gt["annotations"] if a["image_id"] == img["id"] and a["num_keypoints"] > 0]
        images.append(
            (read_image(root / img["file_name"]), np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)], np.float32))
        )
    times: dict[str, list[float]] = {"body": [], "feet": [], "hands": [], "face": []}
    persons = 0
    for r in range(args.repeat + 1):  # the first round is a warm-up
        for image, boxes in images:
            t0 = time.perf_counter()
            body = pipe.estimate(*pipe.crop_inputs(image, boxes), boxes, np.ones(len(boxes), np.float32))
            t1 = time.perf_counter()
            n = len(body)
            xy, sc, skipped = np.zeros((n, 133, 2), np.float32), np.zeros((n, 133), np.float32), []
            pipe._feet(image, body, xy, sc)
            t2 = time.perf_counter()
            pipe._hands(image, body, xy, sc, skipped)
            t3 = time.perf_counter()
            pipe._faces(image, body, xy, sc, skipped)
            t4 = time.perf_counter()
            if r:
                persons += n
                for key, dt in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                    times[key].append(dt)
    for stage, values in times.items():
        print(json.dumps({"name": f"wholebody_{stage}_ms_per_person", "config": {"backend": args.backend, "threads": args.threads, "part_detectors": args.part_detectors,
                          "images": len(images), "persons": persons // args.repeat},
                          "value": round(1000 * sum(values) / persons, 1), "unit": "ms per person", "n": args.repeat, "machine": machine()}))  # fmt: skip


if __name__ == "__main__":
    main()
