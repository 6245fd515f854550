"""The `posekit predict` job: inputs -> PoseEstimator -> writers, never stopping on one bad input."""

from __future__ import annotations

import os
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from posekit.api import PoseEstimator
from posekit.data.datasets import parse_detections
from posekit.errors import InputError
from posekit.pipeline.readers import VIDEO_EXTS, Frame, expand_inputs, is_live_source, iter_capture, iter_frames, open_video
from posekit.pipeline.stream import Stage, run_concurrent, run_sequential
from posekit.pipeline.writers import PredictionWriter
from posekit.structures import Poses


@dataclass
class PredictSummary:
    images: int = 0
    persons: int = 0
    seconds: float = 0.0
    failed: list[str] = field(default_factory=list)

    def line(self) -> str:
        rate = self.images / self.seconds if self.seconds > 0 else 0.0
        bad = f", {len(self.failed)} failed" if self.failed else ""
        return f"{self.images} images, {self.persons} persons, {rate:.2f} img/s{bad}"


def load_boxes(path: Path) -> tuple[dict[int, tuple[np.ndarray, np.ndarray]], dict[str, int]]:
    """Person boxes per image id from a COCO detection-results list (category 1) or from GT annotations
    (non-crowd persons with keypoints, score 1). Also file name -> image id, when the file has images.
    A malformed file is refused as a whole (one line naming the record and field): half its boxes would
    silently score as missed persons."""
    from posekit.data.datasets import _get, _xywh_to_xyxy
    from posekit.evaluation.checks import read_json_file

    data = read_json_file(path, "--boxes")
    if isinstance(data, list):
        return parse_detections(data, path), {}
    if not (isinstance(data, dict) and isinstance(data.get("annotations"), list)):
        raise InputError(f"--boxes {path}: expected COCO annotations or a detection-results list")
    images = data.get("images", [])
    names = {Path(str(_get(img, "file_name", path, f"images[{i}]"))).name: _get(img, "id", path, f"images[{i}]")
             for i, img in enumerate(images if isinstance(images, list) else [])}  # fmt: skip
    per_image: dict[int, list[np.ndarray]] = defaultdict(list)
    for i, a in enumerate(data["annotations"]):
        where = f"annotations[{i}]"
        image_id = _get(a, "image_id", path, where)
        if a.get("category_id", 1) == 1 and not a.get("iscrowd", 0) and a.get("num_keypoints", 1) > 0:
            per_image[image_id].append(_xywh_to_xyxy(_get(a, "bbox", path, where), path, where))
    return {k: (np.stack(v), np.ones(len(v), np.float32)) for k, v in per_image.items()}, names


def count_frames(files: list[Path]) -> int:
    total = 0
    for f in files:
        if f.suffix.lower() in VIDEO_EXTS:
            cap = open_video(f)
            total += max(int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), 1)
            cap.release()
        else:
            total += 1
    return total


def run_predict(
    inputs: list[str],
    estimator: PoseEstimator,
    out_dir: Path,
    openpose: bool = False,
    render: bool = False,
    boxes_file: Path | None = None,
    quiet: bool = False,
    concurrent: bool | None = None,
    render_options: dict | None = None,
    video_codec: str = "auto",
) -> PredictSummary:
    """Every input through `estimator` into the writers. `concurrent`: two frames at a time, each worker
    single-threaded (one per core), as `track` runs. By default only with the ONNX Runtime backend: measured
    on coco-mini (README, Speed), it is faster there (decoding and the Python parts of one frame overlap the
    networks of the other) and slower with torch, whose ops run better on two threads."""
    if concurrent is None:
        concurrent = getattr(estimator, "backend", "torch") == "onnxruntime"
    live = [item for item in inputs if is_live_source(item)]  # webcams and stream URLs, after the files
    files, errors = expand_inputs([item for item in inputs if item not in live])
    summary = PredictSummary(failed=list(errors))
    for e in errors:
        print(f"posekit: skipped {e}", file=sys.stderr)
    boxes, names = load_boxes(boxes_file) if boxes_file else ({}, {})
    if not files and not live:  # nothing to run: no output folder is made
        return summary
    created = not out_dir.exists()
    writer = PredictionWriter(out_dir, openpose=openpose, render=render, render_options=render_options, video_codec=video_codec)
    fps_of: dict[str, float] = {item: 25.0 for item in live}  # a live source's frames are timed as they come; renders at 25
    total = None if live else count_frames(files)
    bar = tqdm(total=total, unit="img", disable=quiet or None, dynamic_ncols=True)

    def frames() -> Iterator[Frame]:
        yield from iter_frames(files)
        for item in live:
            yield from iter_capture(item)

    def source() -> Iterator[tuple[Frame, dict]]:
        for frame in frames():
            kwargs = {}
            if boxes_file and frame.image is not None:  # ids in input order, before frames run in parallel
                image_id = writer.ids.assign(frame.source, names.get(Path(frame.source).name))
                kwargs = dict(zip(("boxes", "box_scores"), boxes.get(image_id, (np.zeros((0, 4), np.float32), np.zeros(0, np.float32)))))
            yield frame, kwargs

    def estimate(item: tuple[Frame, dict]) -> tuple[Frame, Poses | None, str | None]:
        frame, kwargs = item
        if frame.image is None:
            return frame, None, frame.error or frame.source
        try:
            return frame, estimator.estimate(frame.image, **kwargs), None
        except Exception as e:  # one bad frame must not end the batch
            return frame, None, f"{frame.source}: {type(e).__name__}: {e}"

    def sink(item: tuple[Frame, Poses | None, str | None]) -> None:
        frame, poses, error = item
        bar.update(1)
        if poses is None:
            summary.failed.append(error or frame.source)
            tqdm.write(f"posekit: {'skipped' if frame.image is None else 'failed'} {error}", file=sys.stderr)
            return
        video = frame.source.partition("#frame=")[0]
        if "#frame=" in frame.source and video not in fps_of:
            cap = open_video(video)
            fps_of[video] = cap.get(cv2.CAP_PROP_FPS)
            cap.release()
        writer.add(frame.source, frame.image, poses, fps_of.get(video))
        summary.images += 1
        summary.persons += len(poses)

    # one frame has nothing to overlap with: its networks run on every core (and no single-threaded sessions are made)
    workers = min(os.cpu_count() or 1, 2) if concurrent and total != 1 else 1
    threads = torch.get_num_threads()
    start = time.perf_counter()
    try:
        if workers > 1:
            torch.set_num_threads(1)
            run_concurrent(source(), [Stage("pose", estimate, workers)], sink)
        else:
            run_sequential(source(), [Stage("pose", estimate)], sink)
    finally:
        torch.set_num_threads(threads)
        bar.close()
        writer.close()
        summary.seconds = time.perf_counter() - start
        if summary.images == 0:  # every input failed: leave no empty outputs (nor a folder this run made) behind
            writer.remove(remove_folder=created)
    return summary
