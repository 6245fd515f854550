"""Video benchmark: end-to-end fps of `posekit track` on generated 640x480 videos with 1, 3 and 6 people
(real COCO persons crossing), concurrent pipeline vs the same stages run sequentially, with per-stage
busy ms/frame. One JSON line per measurement; no assertions.

usage: .venv/bin/python benchmarks/bench_video.py [--frames 60] [--model topdown-thunder]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import torch

from posekit.api import PoseEstimator
from posekit.bench import machine
from posekit.data.synthetic import crossing_people, make_background, person_patches, synthetic_frames, write_video
from posekit.pipeline.track import run_track
from posekit.pipeline.writers import pick_video_codec
from posekit.postprocess.presets import DEFAULT_MODE, track_options


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--model", default="topdown-thunder")
    ap.add_argument("--people", type=int, nargs="+", default=[1, 3, 6])
    ap.add_argument("--backend", default="auto", choices=["auto", "torch", "onnxruntime"])
    ap.add_argument("--video-codec", default="auto", choices=["auto", "h264", "vp8", "mp4v"], help="the render's codec")
    ap.add_argument("--embeddings", action=argparse.BooleanOptionalAction, default=True, help="as `posekit track --embeddings`")
    args = ap.parse_args()
    torch.set_num_threads(2)
    data = Path(os.environ.get("POSEKIT_TEST_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    # what `posekit track` runs in the default mode (presets.track_options: detector >= 0.1, every scored pose to the tracker)
    as_track = track_options(DEFAULT_MODE, args.model)[0] if args.model in ("topdown-thunder", "topdown-lightning") else {}
    estimator = PoseEstimator(args.model, backend=args.backend, **as_track)
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.people:
            video = Path(tmp) / f"people{n}.mp4"
            people = crossing_people(person_patches(data / "coco-mini", n, 200), 640, 480, args.frames)
            write_video(video, synthetic_frames(people, args.frames, make_background(640, 480)))
            for mode in ("sequential", "concurrent"):
                s = run_track(str(video), estimator, Path(tmp) / "out", render=True, concurrent=mode == "concurrent", quiet=True,
                              video_codec=args.video_codec, embeddings=args.embeddings)  # fmt: skip
                record = {
                    "name": "track_fps",
                    "config": {
                        "model": args.model,
                        "backend": estimator.backend,
                        "people": n,
                        "embeddings": args.embeddings,
                        "mode": mode,
                        "video_codec": pick_video_codec(args.video_codec),
                        "frames": s.frames,
                        "poses_per_frame": round(s.persons / s.frames, 2),
                    },
                    "value": round(s.frames / s.times.wall, 3),
                    "unit": "frames/s",
                    "n": s.frames,
                    "stage_ms_per_frame": {k: round(1000 * v / max(s.times.items[k], 1), 1) for k, v in s.times.seconds.items()},
                    "machine": machine(),
                }
                print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
