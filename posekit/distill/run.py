"""`posekit distill`: teacher pass over unlabelled images and videos -> pseudo-labels -> a student trained on
them through the one engine -> (with --val) its score on labelled ground truth. Every stage resumes: rerun
the same command after a kill and nothing finished is computed again."""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

from posekit.errors import PosekitError
from posekit.fileio import atomic_write_bytes, atomic_write_json


def build_teacher(args: argparse.Namespace):  # noqa: ANN201
    """The teacher as a `PoseEstimator`: a pipeline name or a checkpoint, with its ensemble options."""
    from posekit.api import PoseEstimator
    from posekit.zoo.loader import is_top_down

    options = {}
    if args.teacher_flip is not None:
        options["flip_test"] = args.teacher_flip
    if args.teacher_scales:
        options["crop_scales"] = tuple(args.teacher_scales)
    if args.det_thr is not None:
        options["det_threshold"] = args.det_thr
    top_down = is_top_down(args.teacher)
    if options and not top_down:
        raise PosekitError(f"--teacher {args.teacher}: --teacher-flip, --teacher-scales and --det-thr are for top-down teachers")
    # the AP protocol's pipeline (flip test, every person) with its raw instance scores: --person-thr and
    # --kpt-thr were chosen on those, and the cached teacher passes stay valid
    if top_down:
        return PoseEstimator(args.teacher, backend=args.backend, mode="accurate", calibration=None, score_threshold=0.0, **options)
    return PoseEstimator(args.teacher, backend=args.backend, mode="accurate", score_threshold=0.1)


def write_pseudo_labels(coco: dict, out: Path) -> Path:
    """OUT/pseudo_labels-<sha256[:12]>.json: named by its content, so a student run knows its labels."""
    data = json.dumps(coco).encode()
    path = out / f"pseudo_labels-{hashlib.sha256(data).hexdigest()[:12]}.json"
    if not path.exists():
        atomic_write_bytes(path, data)
    return path


def validate(args: argparse.Namespace, checkpoint: Path, out: Path) -> int:
    """`posekit eval --model CHECKPOINT` on the labelled ground truth; its stats go to OUT/val.json."""
    from posekit.cli import main as cli_main

    argv = ["eval", "--gt", str(args.val), "--images", str(args.val_images), "--model", str(checkpoint),
            "--out", str(out / "val.json"), "--out-dir", str(out / "val_predictions")]  # fmt: skip
    if args.val_range:
        argv += ["--range", *map(str, args.val_range)]
    if args.quiet:
        argv.append("--quiet")
    print("validation: posekit " + " ".join(argv))
    return cli_main(argv)


def run_distill(args: argparse.Namespace) -> int:
    from posekit.distill.pseudo_labels import LabelFilter, TeacherPass, coco_pseudo_labels, collect_images, teacher_id
    from posekit.distill.student import student_config, train_student
    from posekit.engine.config import parse_overrides

    if (args.val is None) != (args.val_images is None):
        raise PosekitError("--val and --val-images go together: labelled ground truth and the folder of its images")
    if not 0.0 < args.holdout < 1.0:
        raise PosekitError(f"--holdout {args.holdout}: a fraction of the images between 0 and 1 (e.g. 0.02)")
    if not args.student.is_file():
        raise PosekitError(f"--student {args.student}: no such config file")
    overrides = parse_overrides(args.set)
    rule = LabelFilter(args.kpt_thr, args.person_thr, args.min_keypoints)
    out = Path(args.out)
    # the student's config (and --set) built once now, on placeholder labels: a bad one is refused before the
    # teacher pass, not after it
    student_config(args.student, out / "pseudo_labels.json", 2, 1, out / "student", args.labelled, overrides)
    start = time.perf_counter()

    images, failed = collect_images(args.images, out / "frames", args.video_stride)
    for line in failed:
        print(f"posekit: skipped {line}", file=sys.stderr)
    if not images:
        raise PosekitError("no readable images or video frames in the inputs")
    estimator = build_teacher(args)
    tid = teacher_id(args.teacher, estimator)
    teacher = TeacherPass(estimator, tid, args.teacher_cache or out / "teacher_cache")
    per_image = teacher.run(images, args.quiet)
    s = teacher.summary
    failed += s.failed
    coco, held_out, counts = coco_pseudo_labels(per_image, estimator.spec, rule, args.holdout)
    labels = write_pseudo_labels(coco, out)
    print(f"teacher {args.teacher} ({tid}): {s.images} images ({s.computed} computed, {s.cached} cached"
          f"{f', {s.rejected} cache entries failed their check and were recomputed' if s.rejected else ''}); "
          f"{len(coco['images'])} with labels, {counts['persons']} persons, {counts['keypoints']} keypoints, "
          f"{counts['unsure_persons']} unsure persons as ignore regions -> {labels}")  # fmt: skip
    if args.teacher_only:
        return 1 if failed else 0

    student_dir = out / "student"
    config, config_text = student_config(args.student, labels, len(coco["images"]), held_out, student_dir, args.labelled, overrides)
    summary, checkpoint = train_student(config, config_text, student_dir, args.quiet, args.max_steps)
    agreement = {k.split("/")[-1]: v for k, v in summary.items() if k.split("/")[-1] in ("AP", "AP50", "AR")}
    rc = 1 if failed else 0
    if args.val is not None and summary["step"] >= config.train.steps:
        rc = max(rc, validate(args, checkpoint, out))
    atomic_write_json(out / "summary.json", {"teacher": args.teacher, "teacher_id": tid, "images": s.images, "computed": s.computed,
                                             "cached": s.cached, "failed": failed, "pseudo_labels": str(labels), **counts,
                                             "student": summary, "checkpoint": str(checkpoint)}, indent=1)  # fmt: skip
    agree = " ".join(f"{k} {v:.3f}" for k, v in agreement.items())
    print(f"distilled {args.student.name}: step {summary['step']}, agreement with the teacher on {held_out} held-out images: {agree or 'n/a'}"
          f"; {len(failed)} input(s) failed; {time.perf_counter() - start:.0f} s -> {checkpoint}")  # fmt: skip
    return rc
