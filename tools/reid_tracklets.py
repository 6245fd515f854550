"""Measure the tracker's variants on real footage (README, "Tracking on real footage"), the re-ID head
trained on tracklets of the real clips among them.

1. Poses of topdown-thunder (--det-thr 0.1, no flip test, as `posekit track` runs) and their pose-guided
   embeddings, once per frame of every clip of ../shared/data/videos and of the synthetic crossing video
   (tests/test_track_cli.py's: 80 frames, 4 real COCO persons), cached under OUT/poses/; the camera motion
   between frames (`CameraMotion`, as `posekit track` computes it) under OUT/motion/.
2. Tracklets: the default tracker (no embeddings) labels the clips; `tracklet_labels` keeps the safe part.
3. The head trains on the tracklets of the clips named by --train-clips (default: all of them).
4. Each tracker variant runs on the cached poses: crossing MOTA / IDF1 / ID switches (motmetrics); on the
   real clips, ID switches against the hand-labelled identities of tests/fixtures/clip_identities.json
   (`identity_switches`: while the person stays visible, and after a gap) and, per clip, the ids reported
   and those reported in 3 frames or fewer.

    .venv/bin/python tools/reid_tracklets.py --out outputs/reid [--save posekit/zoo/models/reid-head.safetensors]
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import tempfile
from pathlib import Path

import numpy as np

from posekit.api import PoseEstimator
from posekit.data.synthetic import crossing_people, make_background, person_patches, synthetic_frames, write_video
from posekit.evaluation.mot import identity_switches, mot_metrics
from posekit.fileio import atomic_path
from posekit.pipeline.stages import FrameState
from posekit.pipeline.track import open_source
from posekit.tracking.camera_motion import CameraMotion
from posekit.tracking.reid import Detection, ReIDHead, tracklet_labels, train_reid_head
from posekit.tracking.tracker import PoseTracker, TrackerOptions

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def frame_poses(source: str, estimator: PoseEstimator) -> list:
    """Per frame: the poses `posekit track` would hand the tracker, with their embeddings in meta."""
    frames, _, _ = open_source(source)
    steps = estimator.pipeline.steps(True)
    out = []
    for frame in frames:
        state = FrameState(frame.image)
        for _, fn in steps:
            fn(state)
        poses = state.poses
        emb = poses.meta.pop("embeddings", np.zeros((len(poses), 1280), np.float32))
        keep = np.flatnonzero(poses.scores >= estimator.score_threshold)
        poses = poses.select(keep)
        poses.meta["embeddings"] = emb[keep]
        out.append(poses)
    return out


def cached_poses(name: str, source: str, out: Path, estimator: PoseEstimator) -> list:
    path = out / "poses" / f"{name}.pkl"
    if path.exists():
        return pickle.loads(path.read_bytes())
    print(f"poses of {name} ...", flush=True)
    poses = frame_poses(source, estimator)
    with atomic_path(path) as tmp:
        tmp.write_bytes(pickle.dumps(poses))
    return poses


def cached_motion(name: str, source: str, out: Path, frames: list) -> list:
    """Per frame, the camera motion `posekit track` passes the tracker (corners outside the frame's poses)."""
    path = out / "motion" / f"{name}.pkl"
    if path.exists():
        return pickle.loads(path.read_bytes())
    camera = CameraMotion()
    motion = [camera(frame.image, poses.boxes) for frame, poses in zip(open_source(source)[0], frames)]
    with atomic_path(path) as tmp:
        tmp.write_bytes(pickle.dumps(motion))
    return motion


def run_tracker(frames: list, options: TrackerOptions, head: ReIDHead | None | str, motion: list | None = None
                ) -> tuple[list[dict], PoseTracker]:  # fmt: skip
    """Track cached poses; `head`: None (no embeddings), "raw" (the pose-guided embeddings) or a ReIDHead;
    `motion`: per-frame camera motion, used where `options.camera_motion`. Returns COCO-style results with
    reported ids (confirmed tracks, from their first frame) and the tracker."""
    tracker = PoseTracker(options)
    labelled = []
    for t, poses in enumerate(frames):
        emb = poses.meta["embeddings"]
        emb = None if head is None else emb if isinstance(head, str) else head.embed(emb)
        moved = motion[t] if motion is not None and options.camera_motion else None
        labelled.append((t, tracker.update(poses, emb, None, moved)))
    results = []
    for t, poses in labelled:
        for i in range(len(poses)):
            rid = tracker.reported.get(int(poses.track_ids[i]))
            if rid is not None:
                x0, y0, x1, y1 = poses.boxes[i].tolist()
                results.append({"image_id": t + 1, "bbox": [x0, y0, x1 - x0, y1 - y0], "track_id": rid})
    return results, tracker


def detections(name: str, frames: list) -> list[Detection]:
    results, _ = run_tracker(frames, TrackerOptions(), None)
    out = []
    by_frame: dict[int, list] = {}
    for r in results:
        by_frame.setdefault(r["image_id"] - 1, []).append(r)
    for t, poses in enumerate(frames):
        for r in by_frame.get(t, []):
            x, y, w, h = r["bbox"]
            box = np.array([x, y, x + w, y + h], np.float32)
            i = int(np.argmin(np.abs(poses.boxes - box).sum(1)))
            out.append(Detection(name, t, r["track_id"], box, float(poses.scores[i]), poses.meta["embeddings"][i]))
    return out


def id_counts(results: list[dict]) -> tuple[int, int]:
    lengths: dict[int, int] = {}
    for r in results:
        lengths[r["track_id"]] = lengths.get(r["track_id"], 0) + 1
    return len(lengths), sum(1 for n in lengths.values() if n <= 3)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("outputs/reid"))
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--train-clips", nargs="*", default=None, help="clip names (file stems) the head trains on; default all")
    ap.add_argument("--steps", type=int, default=100, help="training steps of the head (100 measured better than 400)")
    ap.add_argument("--save", type=Path, default=None, help="write the trained head here (safetensors)")
    ap.add_argument("--scores", choices=("raw", "calibrated"), default="raw",
                    help="raw: the instance scores at --det-thr 0.1 (the variants' table); calibrated: the balanced mode's "
                         "calibrated scores, the default tracker at several --high-thresholds")  # fmt: skip
    ap.add_argument("--high-thresholds", type=float, nargs="*", default=[0.1, 0.2, 0.3, 0.5])
    ap.add_argument("--det-thr", type=float, default=None, help="with --scores calibrated: the detector threshold (default: the mode's)")
    args = ap.parse_args(argv)
    if args.scores == "raw":
        estimator = PoseEstimator("topdown-thunder", det_threshold=0.1, flip_test=False, calibration=None, score_threshold=0.0)
    else:  # every pose the balanced mode scores, low ones included: the tracker's second pass takes them
        det = {} if args.det_thr is None else {"det_threshold": args.det_thr}
        estimator = PoseEstimator("topdown-thunder", mode="balanced", score_threshold=0.0, **det)
    clips = {p.stem: p for p in sorted((args.data / "videos").glob("*.mp4"))}
    poses = {name: cached_poses(name, str(p), args.out, estimator) for name, p in clips.items()}
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "crossing.mp4"
        people = crossing_people(person_patches(args.data / "coco-mini", 4, 220), 640, 480, 80)
        gts = write_video(video, synthetic_frames(people, 80, make_background(640, 480)))
        crossing = cached_poses("crossing", str(video), args.out, estimator)
        motion = {"crossing": cached_motion("crossing", str(video), args.out, crossing)}
    motion |= {name: cached_motion(name, str(p), args.out, poses[name]) for name, p in clips.items()}

    if args.scores == "calibrated":
        variants = {f"default, calibrated scores, `high_threshold` {t}": ("raw", TrackerOptions(high_threshold=t)) for t in args.high_thresholds}
        return print_table(variants, gts, crossing, poses, motion, clips)
    train = args.train_clips or list(clips)
    dets = [d for name in train for d in detections(name, poses[name])]
    keep, labels, negatives, keys = tracklet_labels(dets)
    emb = np.stack([dets[i].embedding for i in keep])
    print(f"re-ID training: {len(keep)} detections in {len(keys)} tracklets of {len(train)} clips ({', '.join(train)})")
    head, losses = train_reid_head(emb, labels, negatives, steps=args.steps)
    print(f"supcon loss {np.mean(losses[:20]):.3f} (first 20 steps) -> {np.mean(losses[-20:]):.3f} (last 20)")
    if args.save:
        from posekit.tracking.reid import save_head

        print(f"saved {args.save} sha256 {save_head(head, args.save)}")

    old = {"iou_pass_all": False, "camera_motion": False, "max_age": 30}  # the tracker before 2026-12-06's second change
    variants = {
        "before: no embeddings, IoU pass for weak poses only, no camera motion, `max_age` 30": (None, TrackerOptions(**old)),
        "before, with embeddings for lost tracks (+ the Kalman gate and rule (b))": ("raw", TrackerOptions(**old)),
        "default without camera motion (`--no-camera-motion`)": ("raw", TrackerOptions(camera_motion=False)),
        "default with the IoU pass for weak poses only": ("raw", TrackerOptions(iou_pass_all=False)),
        "default with tracks kept 30 frames unseen (`max_age`, was the default)": ("raw", TrackerOptions(max_age=30)),
        "**default** (embeddings for lost tracks, IoU pass for every pose left, camera motion, `max_age` 60)": ("raw", TrackerOptions()),
        "default without embeddings (`--no-embeddings`)": (None, TrackerOptions()),
        "default with embeddings for every track": ("raw", TrackerOptions(embedding_lost_only=False)),
        f"default with the re-ID head ({args.steps} steps) for lost tracks": (head, TrackerOptions()),
    }
    return print_table(variants, gts, crossing, poses, motion, clips)


def print_table(variants: dict, gts: list, crossing: list, poses: dict, motion: dict, clips: dict) -> int:
    """One README row per tracker variant: crossing MOTA / IDF1 / switches, labelled switches, ids per clip."""
    labelled = json.loads((Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "clip_identities.json").read_text())
    print("| tracker | crossing MOTA | IDF1 | ID switches | real clips: switches while visible / after a gap | "
          + " | ".join(f"{n} ids / ≤ 3" for n in clips) + " |")  # fmt: skip
    for label, (h, options) in variants.items():
        m = mot_metrics(gts, run_tracker(crossing, options, h, motion["crossing"])[0])
        cells = [f"{m['mota']:.3f}", f"{m['idf1']:.3f}", f"{int(m['num_switches'])}"]
        runs = {n: run_tracker(poses[n], options, h, motion[n])[0] for n in clips}
        switches = [identity_switches(labelled[n]["boxes"], runs[n]) for n in labelled]
        cells.append(f"{sum(len(s['visible']) for s in switches)} / {sum(len(s['after_gap']) for s in switches)}")
        cells += ["{} / {}".format(*id_counts(runs[n])) for n in clips]
        print(f"| {label} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
