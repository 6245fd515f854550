"""Peak memory and time of `posekit predict` on one photo with N given person boxes (`--boxes`): memory must
not grow with the number of people (crops go through the pose network in chunks, pose NMS works a block of
rows at a time).

usage: python benchmarks/bench_memory.py [PHOTO] [--counts 10 100 1000 3000] [--mode balanced]
Each count runs in a fresh process (the CLI as a user runs it); peak RSS is that process's ru_maxrss.
Prints a markdown table and one JSON line per count.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CHILD = """
import resource, sys, time
from posekit.cli import main
start = time.perf_counter()
code = main(sys.argv[1:])
print("RESULT", code, time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, flush=True)
"""


def boxes_file(path: Path, photo: Path, count: int, seed: int = 0) -> None:
    """`count` person-shaped boxes spread over the photo, as a COCO detection-results list."""
    import cv2

    h, w = cv2.imread(str(photo)).shape[:2]
    rng = np.random.default_rng(seed)
    bw, bh = rng.uniform(0.1, 0.4, count) * w, rng.uniform(0.3, 0.9, count) * h
    x, y = rng.uniform(0, 1, count) * (w - bw), rng.uniform(0, 1, count) * (h - bh)
    dets = [{"image_id": 790, "category_id": 1, "bbox": [float(a), float(b), float(c), float(d)], "score": 1.0} for a, b, c, d in zip(x, y, bw, bh)]
    path.write_text(json.dumps(dets))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("photo", nargs="?", type=Path, default=ROOT / "assets" / "demo.jpg")
    ap.add_argument("--counts", type=int, nargs="+", default=[10, 100, 1000, 3000])
    ap.add_argument("--mode", default="balanced")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        photo = Path(tmp) / "000000000790.jpg"  # a COCO name, so the image id matches the boxes' image_id
        photo.write_bytes(args.photo.read_bytes())
        for count in args.counts:
            boxes = Path(tmp) / f"boxes{count}.json"
            boxes_file(boxes, photo, count)
            cmd = [sys.executable, "-c", CHILD, "predict", str(photo), "--boxes", str(boxes), "--mode", args.mode,
                   "--out", f"{tmp}/out{count}", "--quiet"]  # fmt: skip
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")), None)
            if line is None:
                rows.append({"boxes": count, "exit": proc.returncode, "error": proc.stderr.strip()[-200:]})
                continue
            _, code, seconds, maxrss_kb = line.split()
            rows.append({"boxes": count, "exit": int(code), "seconds": round(float(seconds), 2), "peak_rss_mb": round(int(maxrss_kb) / 1024),
                         "ms_per_person": round(1000 * float(seconds) / count, 1)})  # fmt: skip
    print("| boxes | peak RSS (MB) | seconds | ms/person |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['boxes']} | {r.get('peak_rss_mb', 'failed')} | {r.get('seconds', '')} | {r.get('ms_per_person', '')} |")
    for r in rows:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
