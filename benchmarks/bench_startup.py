"""Start-up as a user meets it: `posekit --version`, and `posekit predict ONE_PHOTO` from process start to
exit with the weights and exports cached (median of --repeat runs); then the first `predict` after a fresh
`posekit weights fetch` (the ONNX exports removed first, so fetch has to make them) against the second.

usage: python benchmarks/bench_startup.py [PHOTO] [--repeat 5] [--skip-fetch]
PHOTO defaults to assets/demo.jpg. Prints one JSON line per measurement. --skip-fetch leaves the cache alone.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
POSEKIT = [sys.executable, "-m", "posekit.cli"]


def timed(args: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(POSEKIT + args, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"posekit {' '.join(args)} failed: {proc.stderr.strip()[-300:]}")
    return seconds


def record(name: str, values: list[float]) -> None:
    print(json.dumps({"name": name, "value": round(statistics.median(values), 3), "unit": "s", "runs": [round(v, 3) for v in values]}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("photo", nargs="?", type=Path, default=ROOT / "assets" / "demo.jpg")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--skip-fetch", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        predict = ["predict", str(args.photo), "--quiet", "--exist-ok", "--out", f"{tmp}/out"]
        timed(predict)  # everything cached and the OS file cache warm
        record("posekit --version", [timed(["--version"]) for _ in range(args.repeat)])
        record("posekit predict one photo (warm)", [timed(predict) for _ in range(args.repeat)])
        if not args.skip_fetch:
            from posekit.export.backend import onnx_cache_dir

            shutil.rmtree(onnx_cache_dir(), ignore_errors=True)
            record("posekit weights fetch (makes the exports)", [timed(["weights", "fetch"])])
            record("first predict after weights fetch", [timed(predict)])
            record("second predict", [timed(predict)])


if __name__ == "__main__":
    main()
