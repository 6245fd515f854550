"""`posekit track`: poses with track ids over a video, image sequence, webcam or stream."""

from __future__ import annotations

import itertools
import json
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from posekit.api import PoseEstimator
from posekit.data.specs import convert_keypoints, get_spec
from posekit.fileio import JsonLines, atomic_path, atomic_write_json, read_json_lines, whole_item
from posekit.pipeline.readers import IMAGE_EXTS, Frame, is_live_source, iter_capture, iter_frames, open_video, read_image
from posekit.pipeline.stages import FrameState
from posekit.pipeline.stream import Stage, StageTimes, run_concurrent, run_sequential
from posekit.pipeline.writers import VideoRender
from posekit.structures import Poses
from posekit.tracking.appearance import limb_colours
from posekit.tracking.camera_motion import CameraMotion
from posekit.tracking.delay import ConfirmationDelay
from posekit.tracking.smoothing import PoseSmoother
from posekit.tracking.tracker import PoseTracker, TrackerOptions
from posekit.viz.draw import draw_poses


@dataclass
class Item:
    """A frame travelling through the stages, with what the pipeline's stages add (`FrameState`)."""

    frame: Frame
    state: FrameState | None = None

    @property
    def poses(self) -> Poses | None:
        return self.state.poses if self.state is not None else None


def open_source(source: str, fps: float = 25.0) -> tuple[Iterator[Frame], int | None, float]:
    """Frames of a video file, an image-sequence folder, a webcam index ('0') or a stream URL;
    with the frame count when known and the frame rate."""
    if is_live_source(source):
        return iter_capture(source), None, fps
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTS)
        frames = (Frame(str(f), i, image=None, timestamp_ms=1000.0 * i / fps) for i, f in enumerate(files))
        return (_load(f) for f in frames), len(files), fps
    cap = open_video(path)
    count, rate = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None, cap.get(cv2.CAP_PROP_FPS) or fps
    cap.release()
    return iter_frames([path]), count, rate


def _load(frame: Frame) -> Frame:
    from posekit.errors import InputError

    try:
        frame.image = read_image(frame.source)
    except InputError as e:
        frame.error = str(e)
    return frame


def build_stages(
    estimator: PoseEstimator, tracker: PoseTracker, smoother: PoseSmoother | None, embeddings: bool, pose_workers: int = 1
) -> list[Stage]:
    """The pipeline's own stages (detect -> crop -> pose for top-down models, pose for whole-image ones),
    then track. `pose_workers` > 1 runs the model stages on several frames at once (the tracker still sees
    them in order)."""

    def stage(fn):  # noqa: ANN001, ANN202
        def run(item: Item) -> Item:
            if item.frame.image is not None:
                if item.state is None:
                    item.state = FrameState(item.frame.image, extras={"timestamp_ms": item.frame.timestamp_ms})
                fn(item.state)
            return item

        return run

    camera = CameraMotion() if tracker.options.camera_motion else None

    def track(state: FrameState) -> None:
        keep = np.flatnonzero(state.poses.scores >= estimator.score_threshold)
        poses = state.poses.select(keep)
        emb = poses.meta.pop("embeddings", None)
        appearance = limb_colours(state.image, poses) if tracker.options.lambda_app > 0 else None
        motion = camera(state.image, poses.boxes) if camera is not None else None
        poses = tracker.update(poses, None if emb is None else emb[keep], appearance, motion)
        if smoother is not None:
            poses = smoother(poses, (state.extras.get("timestamp_ms") or 0.0) / 1000.0)
        state.poses = poses

    steps = estimator.pipeline.steps(embeddings)
    stages = [Stage(name, stage(fn), pose_workers if name in ("detect", "pose") else 1) for name, fn in steps]
    return [*stages, Stage("track", stage(track))]


def iter_tracked(frames: Iterable[Frame], estimator: PoseEstimator, smooth: bool = False, embeddings: bool = True,
                 tracker_options: TrackerOptions | None = None) -> Iterator[Item]:  # fmt: skip
    """The stages of `posekit track` run frame by frame in this thread, as a generator (the API's `track`)."""
    tracker = PoseTracker(tracker_options or TrackerOptions())
    stages = build_stages(estimator, tracker, PoseSmoother() if smooth else None, embeddings and estimator.takes_boxes)
    delay = confirmation_delay(tracker)
    for frame in frames:
        item = Item(frame)
        for stage in stages:
            item = stage.fn(item)
        yield from delay.push(item)
    yield from delay.flush()


def confirmation_delay(tracker: PoseTracker) -> ConfirmationDelay[Item]:
    """Frames held until their tracks are confirmed (or not); released with reported track ids."""

    def put(item: Item, poses: Poses) -> None:
        item.state.poses = poses

    return ConfirmationDelay(tracker, lambda item: item.poses, put)


class TrackWriter:
    """results.json (COCO results with track_id), posetrack.json (PoseTrack18 layout), image_ids.json (image id ->
    frame source, as `predict` writes it: `posekit eval` maps the ids to a GT's by file name) and
    render/<name>.mp4|.webm.

    Each frame's records are appended to frames.jsonl as they come (whole lines only, even under kill -9)
    and the JSON files are assembled from it at `close`: memory stays flat on long streams, and a stopped
    run still leaves valid files for the frames processed."""

    STREAM = "frames.jsonl"

    def __init__(self, out_dir: Path, video_name: str, fps: float, render: bool, render_options: dict | None = None,
                 video_codec: str = "auto") -> None:  # fmt: skip
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for stale in ("results.json", "posetrack.json", "image_ids.json"):  # a reused --out (--exist-ok): nothing from the last run stays
            (self.out_dir / stale).unlink(missing_ok=True)
        self.video_name = video_name
        self.failed: list[str] = []
        self.frames = self.persons = 0
        self.stream = JsonLines(self.out_dir / self.STREAM)
        self.render = VideoRender(self.out_dir / "render" / f"{video_name}.mp4", fps, video_codec) if render else None
        self.render_options = render_options or {}

    def __call__(self, item: Item) -> None:
        frame = item.frame
        if frame.image is None:
            self.failed.append(frame.error or frame.source)
            tqdm.write(f"posekit: skipped {frame.error}", file=sys.stderr)
            return
        image_id = frame.index + 1
        poses = item.poses
        self.frames += 1
        self.persons += len(poses)
        image = {"id": image_id, "file_name": frame.source, "frame_id": frame.index, "vid_id": self.video_name,
                 "timestamp_ms": frame.timestamp_ms, "is_labeled": True}  # fmt: skip
        pt_xy, pt_s = convert_keypoints(poses.keypoints, poses.keypoint_scores, poses.spec, "posetrack17")
        annotations = []
        for i in range(len(poses)):
            x1, y1, x2, y2 = (float(v) for v in poses.boxes[i])
            kps = np.concatenate([pt_xy[i], pt_s[i][:, None]], 1)
            annotations.append({
                "image_id": image_id, "track_id": int(poses.track_ids[i]), "category_id": 1,
                "keypoints": [round(float(v), 2) for v in kps.reshape(-1)], "scores": [round(float(v), 4) for v in pt_s[i]],
                "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)], "score": round(float(poses.scores[i]), 4),
            })  # fmt: skip
        canvas = draw_poses(frame.image, poses, **self.render_options) if self.render is not None else None
        with whole_item():  # a stop lands before or after this frame's line and render frame, never between
            self.stream.write({"image": image, "results": poses.to_coco_results(image_id), "annotations": annotations})
            if self.render is not None:
                self.render.write(canvas)

    def _joined(self, key: str) -> Iterator[str]:
        for record in read_json_lines(self.stream.path):
            value = record[key]
            yield from (json.dumps(v) for v in (value if isinstance(value, list) else [value]))

    def close(self) -> None:
        if self.render is not None:
            self.render.close()
        self.stream.close()
        spec = get_spec("posetrack17")
        category = {"id": 1, "name": "person", "keypoints": list(spec.keypoints), "skeleton": [[a + 1, b + 1] for a, b in spec.skeleton]}
        with atomic_path(self.out_dir / "posetrack.json") as tmp, open(tmp, "w") as f:
            f.write('{"images": [' + ",\n".join(self._joined("image")) + '],\n"annotations": [')
            f.write(",\n".join(self._joined("annotations")) + '],\n"categories": ' + json.dumps([category]) + "}")
        with atomic_path(self.out_dir / "results.json") as tmp, open(tmp, "w") as f:
            f.write("[" + ",\n".join(self._joined("results")) + "]")
        ids = {str(r["image"]["id"]): r["image"]["file_name"] for r in read_json_lines(self.stream.path)}
        atomic_write_json(self.out_dir / "image_ids.json", ids, indent=1)


@dataclass
class TrackSummary:
    frames: int
    persons: int
    tracks: int
    failed: list[str]
    times: StageTimes

    def line(self) -> str:
        fps = self.frames / self.times.wall if self.times.wall else 0.0
        bad = f", {len(self.failed)} failed" if self.failed else ""
        return f"{self.frames} frames, {self.persons} poses, {self.tracks} tracks, {fps:.2f} fps{bad}; {self.times.line()}"


def run_track(
    source: str, estimator: PoseEstimator, out_dir: Path, render: bool = True, smooth: bool = False, embeddings: bool = True,
    concurrent: bool | None = None, quiet: bool = False, tracker_options: TrackerOptions | None = None, max_frames: int | None = None,
    render_options: dict | None = None, video_codec: str = "auto",
) -> TrackSummary:  # fmt: skip
    """Track poses over `source` (video file, frame folder, webcam index or stream URL) into `out_dir`."""
    frames, count, fps = open_source(source)
    if max_frames is not None:
        frames = itertools.islice(frames, max_frames)
        count = min(count or max_frames, max_frames)
    name = Path(source).stem if not source.isdigit() and "://" not in source else "stream"
    return track_frames(frames, estimator, out_dir, name, fps, count, render, smooth, embeddings, concurrent, quiet, tracker_options,
                        render_options, video_codec)


def track_frames(
    frames: Iterator[Frame], estimator: PoseEstimator, out_dir: Path, name: str = "stream", fps: float = 25.0, count: int | None = None,
    render: bool = True, smooth: bool = False, embeddings: bool = True, concurrent: bool | None = None, quiet: bool = False,
    tracker_options: TrackerOptions | None = None, render_options: dict | None = None, video_codec: str = "auto",
) -> TrackSummary:  # fmt: skip
    """Track poses over an iterator of frames (any reader, or generated frames)."""
    tracker = PoseTracker(tracker_options or TrackerOptions())
    use_emb = embeddings and estimator.takes_boxes  # embeddings come from the top-down pose model
    # Concurrent: one single-threaded worker per core on each model stage, frames in parallel. Measured on
    # the 2-core machine (README "Video and tracking"): with ONNX Runtime it beats 2-thread sessions in
    # sequence (24 vs 12 fps, 1 person); with torch it is slower since the importer's convolutions got
    # faster on two threads (8.8 vs 11.9 fps, 6 people). So by default: concurrent with onnxruntime only.
    if concurrent is None:
        concurrent = getattr(estimator, "backend", "torch") == "onnxruntime"
    workers = max(1, min(os.cpu_count() or 1, 4)) if concurrent else 1
    stages = build_stages(estimator, tracker, PoseSmoother() if smooth else None, use_emb, workers)
    writer = TrackWriter(out_dir, name, fps, render, render_options, video_codec)
    bar = tqdm(total=count, unit="frame", disable=quiet or None, dynamic_ncols=True)

    delay = confirmation_delay(tracker)

    def sink(item: Item) -> None:
        for released in delay.push(item):
            writer(released)
            bar.update(1)

    items = (Item(f) for f in frames)
    threads = torch.get_num_threads()
    if concurrent:
        torch.set_num_threads(1)
    try:
        times = (run_concurrent if concurrent else run_sequential)(items, stages, sink)
    finally:
        torch.set_num_threads(threads)
        for released in delay.flush():  # the last frames (and a stopped run's) are written too
            writer(released)
            bar.update(1)
        bar.close()
        writer.close()
    return TrackSummary(writer.frames, writer.persons, tracker.reported_count, writer.failed, times)
