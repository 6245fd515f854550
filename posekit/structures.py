"""Core types: `KeypointSpec` (what the keypoints are) and `Poses` (one image's result)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class KeypointSpec:
    name: str
    keypoints: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...]
    skeleton: tuple[tuple[int, int], ...]  # 0-based index pairs
    sigmas: tuple[float, ...]  # OKS per-keypoint sigmas
    colors: tuple[tuple[int, int, int], ...] = ()  # RGB per skeleton link

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoints)


# COCO-WholeBody results and annotations: 17 body keypoints in "keypoints", then the parts in this order
WHOLEBODY_RESULT_FIELDS = (("keypoints", 17), ("foot_kpts", 6), ("face_kpts", 68), ("lefthand_kpts", 21), ("righthand_kpts", 21))


@dataclass
class Poses:
    """Poses found in one image, in image pixels (pixel centres at integers).

    keypoints float32 [N,K,2]; keypoint_scores float32 [N,K] in [0,1]; boxes float32 [N,4] xyxy;
    scores float32 [N]; track_ids int64 [N] or None; spec: name of the KeypointSpec.
    """

    keypoints: np.ndarray
    keypoint_scores: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    spec: str = "coco17"
    track_ids: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        k = self.keypoints.shape[1] if self.keypoints.ndim == 3 else 0
        self.keypoints = np.asarray(self.keypoints, np.float32).reshape(-1, k, 2)
        self.keypoint_scores = np.asarray(self.keypoint_scores, np.float32).reshape(-1, k)
        self.boxes = np.asarray(self.boxes, np.float32).reshape(-1, 4)
        self.scores = np.asarray(self.scores, np.float32).reshape(-1)
        n = len(self.keypoints)
        if not (len(self.keypoint_scores) == len(self.boxes) == len(self.scores) == n):
            raise ValueError("Poses arrays disagree on the number of persons")
        if self.track_ids is not None:
            self.track_ids = np.asarray(self.track_ids, np.int64).reshape(n)

    @classmethod
    def empty(cls, num_keypoints: int = 17, spec: str = "coco17") -> Poses:
        return cls(np.zeros((0, num_keypoints, 2)), np.zeros((0, num_keypoints)), np.zeros((0, 4)), np.zeros(0), spec)

    def __len__(self) -> int:
        return len(self.scores)

    def __repr__(self) -> str:  # the dataclass default prints every array in full
        shown = ", ".join(f"{v:.2f}" for v in self.scores[:5]) + (", ..." if len(self) > 5 else "")
        tracks = "" if self.track_ids is None else f", track ids {self.track_ids[:5].tolist()}"
        return f"Poses({len(self)} persons, {self.spec}, {self.keypoints.shape[1]} keypoints, scores [{shown}]{tracks})"

    def plot(self, image: Any, keypoint_threshold: float = 0.3, person_threshold: float = 0.0, rgb: bool = False) -> np.ndarray:
        """The poses drawn on a copy of `image` (a path, a PIL image, a BGR array or with `rgb=True` an RGB
        one); returns a BGR array, ready for cv2.imwrite / cv2.imshow (as Ultralytics' Results.plot)."""
        from posekit.pipeline.readers import as_rgb
        from posekit.viz.draw import draw_poses

        return draw_poses(as_rgb(image, rgb), self, keypoint_threshold, person_threshold=person_threshold)

    def to_json(self) -> str:
        """The persons as JSON: per person its box [x, y, w, h], score, keypoints [x1, y1, s1, ...] and track id."""
        import json

        return json.dumps([{k: v for k, v in r.items() if k not in ("image_id", "category_id")} for r in self.to_coco_results(0)])

    def save(self, path: str | Path, image: Any = None, rgb: bool = False) -> Path:
        """Write the poses: `.json` -> `to_json()`; an image suffix (.jpg, .png, ...) -> `plot(image)`. Atomic:
        a failure leaves no partial file."""
        import cv2

        from posekit.errors import InputError
        from posekit.fileio import atomic_write_bytes

        path = Path(path)
        if path.suffix.lower() == ".json":
            atomic_write_bytes(path, self.to_json().encode())
            return path
        if image is None:
            raise InputError(f"{path}: saving a render needs the image the poses were found in (save(path, image))")
        ok, buf = cv2.imencode(path.suffix or ".jpg", self.plot(image, rgb=rgb))
        if not ok:
            raise InputError(f"{path}: OpenCV cannot encode images as {path.suffix!r}; use .jpg or .png")
        atomic_write_bytes(path, buf.tobytes())
        return path

    @classmethod
    def concat(cls, items: list[Poses]) -> Poses:
        """The persons of several `Poses` of one image and spec, in order (track ids and meta dropped)."""
        if not items:
            return cls.empty()
        return cls(np.concatenate([p.keypoints for p in items]), np.concatenate([p.keypoint_scores for p in items]),
                   np.concatenate([p.boxes for p in items]), np.concatenate([p.scores for p in items]), items[0].spec)  # fmt: skip

    def select(self, index: np.ndarray) -> Poses:
        tid = None if self.track_ids is None else self.track_ids[index]
        return Poses(
            self.keypoints[index], self.keypoint_scores[index], self.boxes[index], self.scores[index], self.spec, tid, dict(self.meta)
        )

    def to_coco_results(self, image_id: int | str, category_id: int = 1) -> list[dict[str, Any]]:
        """COCO keypoint-results entries (what pycocotools' loadRes reads)."""
        out = []
        for i in range(len(self)):
            kps = np.concatenate([self.keypoints[i], self.keypoint_scores[i, :, None]], axis=1)
            x1, y1, x2, y2 = (float(v) for v in self.boxes[i])
            entry = {
                "image_id": image_id if isinstance(image_id, str) else int(image_id),
                "category_id": category_id,
                "keypoints": [round(float(v), 3) for v in kps.reshape(-1)],
                "score": round(float(self.scores[i]), 6),
                "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
            }
            if self.spec == "coco_wholebody133":  # COCO-WholeBody's own results layout: body, then one field per part
                flat, start = entry.pop("keypoints"), 0
                for key, count in WHOLEBODY_RESULT_FIELDS:
                    entry[key], start = flat[3 * start : 3 * (start + count)], start + count
            if self.track_ids is not None:
                entry["track_id"] = int(self.track_ids[i])
            out.append(entry)
        return out

    def to_openpose(self) -> dict[str, Any]:
        """OpenPose-style JSON in the 18-point COCO layout (neck = shoulder midpoint), as AlphaPose writes it;
        other specs are converted to COCO-17 by joint name first."""
        keypoints, keypoint_scores = self.keypoints, self.keypoint_scores
        if self.spec != "coco17":  # by joint name; joints the spec lacks get score 0
            from posekit.data.specs import convert_keypoints

            keypoints, keypoint_scores = convert_keypoints(keypoints, keypoint_scores, self.spec, "coco17")
        people = []
        for i in range(len(self)):
            xy, s = keypoints[i], keypoint_scores[i]
            neck_xy, neck_s = (xy[5] + xy[6]) / 2, min(s[5], s[6])
            pts = [(xy[j], s[j]) if j >= 0 else (neck_xy, neck_s) for j in OPENPOSE18_FROM_COCO17]
            flat = [round(float(v), 3) for p, c in pts for v in (p[0], p[1], c)]
            tid = -1 if self.track_ids is None else int(self.track_ids[i])
            people.append({"person_id": [tid], "pose_keypoints_2d": flat, "score": round(float(self.scores[i]), 6)})
        return {"version": 1.3, "keypoint_layout": "COCO-18 (OpenPose)", "people": people}

    @classmethod
    def from_coco(cls, annotations: list[dict[str, Any]], spec: str = "coco17") -> Poses:
        """Poses from COCO annotations or results (visibility / score in the third column)."""
        if not annotations:
            return cls.empty(spec=spec)
        kps = np.array([a["keypoints"] for a in annotations], np.float32).reshape(len(annotations), -1, 3)
        if "bbox" in annotations[0]:
            b = np.array([a["bbox"] for a in annotations], np.float32)
            boxes = np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)
        else:
            boxes = np.concatenate([kps[:, :, :2].min(1), kps[:, :, :2].max(1)], axis=1)
        scores = np.array([a.get("score", 1.0) for a in annotations], np.float32)
        vis = kps[:, :, 2] if "score" in annotations[0] else (kps[:, :, 2] > 0).astype(np.float32)
        return cls(kps[:, :, :2], vis, boxes, scores, spec)


# OpenPose COCO-18 order: nose, neck, r-sho, r-elb, r-wri, l-sho, l-elb, l-wri, r-hip, r-knee, r-ank,
# l-hip, l-knee, l-ank, r-eye, l-eye, r-ear, l-ear (-1 = neck, synthesised).
OPENPOSE18_FROM_COCO17 = (0, -1, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3)
