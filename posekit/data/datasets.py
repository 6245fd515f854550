"""Dataset readers into one sample type: COCO-style keypoint json (COCO, CrowdPose, OCHuman, Halpe,
COCO-WholeBody), MPII json (as MMPose ships it), PoseTrack18/21 json, LSP / LSP-Extended joints.mat.

A malformed file raises `DatasetError` naming the file, the record and the field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from posekit.data.specs import get_spec
from posekit.errors import PosekitError
from posekit.postprocess.nms import box_iou

WHOLEBODY_PARTS = ("keypoints", "foot_kpts", "face_kpts", "lefthand_kpts", "righthand_kpts")  # 17+6+68+21+21


class DatasetError(PosekitError):
    """A dataset file that cannot be read as its format says."""


@dataclass
class Instance:
    box: np.ndarray  # float32 [4] xyxy
    keypoints: np.ndarray  # float32 [K,3]: x, y, visibility (0 unlabelled, 1 occluded, 2 visible) or score
    area: float = 0.0
    iscrowd: bool = False
    track_id: int | None = None
    id: int | None = None
    extras: dict[str, Any] = field(default_factory=dict)  # e.g. head_box, face_box, num_keypoints


@dataclass
class Sample:
    image_path: Path
    image_id: int | str
    instances: list[Instance]
    spec: str
    width: int | None = None
    height: int | None = None
    extras: dict[str, Any] = field(default_factory=dict)  # e.g. crowd_index, vid_id, frame_id, is_labeled


def _load_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except OSError as e:
        raise DatasetError(f"{path}: cannot read ({e.strerror})") from e
    except ValueError as e:
        raise DatasetError(f"{path}: not valid JSON ({e})") from e


def _get(record: dict, key: str, path: Path, where: str) -> Any:
    if not isinstance(record, dict):
        raise DatasetError(f"{path}: {where}: expected an object, got {type(record).__name__}")
    if key not in record:
        raise DatasetError(f"{path}: {where}: missing field '{key}'")
    return record[key]


def _keypoints(values: Any, k: int | None, path: Path, where: str, name: str = "keypoints") -> np.ndarray:
    try:
        arr = np.asarray(values, np.float32).reshape(-1, 3)
    except (TypeError, ValueError) as e:
        raise DatasetError(f"{path}: {where}: field '{name}' is not a list of x, y, v triples") from e
    if not np.isfinite(arr).all():
        raise DatasetError(f"{path}: {where}: field '{name}' has non-finite values (NaN or Inf)")
    if k is not None and len(arr) != k:
        raise DatasetError(f"{path}: {where}: field '{name}' has {len(arr)} keypoints, expected {k}")
    return arr


def _xywh_to_xyxy(b: Any, path: Path, where: str) -> np.ndarray:
    try:
        x, y, w, h = (float(v) for v in b)
    except (TypeError, ValueError) as e:
        raise DatasetError(f"{path}: {where}: field 'bbox' must be [x, y, w, h]") from e
    if not all(np.isfinite([x, y, w, h])) or w < 0 or h < 0:
        raise DatasetError(f"{path}: {where}: field 'bbox' must be finite with w, h >= 0, got {list(b)}")
    return np.array([x, y, x + w, y + h], np.float32)


def detect_spec(data: dict, path: Path) -> str:
    anns = data.get("annotations") or []
    first = next((a for a in anns if isinstance(a, dict) and "keypoints" in a), None)
    if first is None:
        return "coco17"
    if all(p in first for p in WHOLEBODY_PARTS):
        return "coco_wholebody133"
    k = len(first["keypoints"]) // 3
    by_count = {17: "coco17", 14: "crowdpose14", 26: "halpe26", 136: "halpe136", 133: "coco_wholebody133", 16: "mpii16"}
    if k == 17 and any("head_bottom" in c.get("keypoints", []) for c in data.get("categories", [])):
        return "posetrack17"
    if k not in by_count:
        raise DatasetError(f"{path}: annotations have {k} keypoints; no known spec has that many")
    return by_count[k]


def read_coco(ann_file: str | Path, image_root: str | Path | None = None, spec: str | None = None) -> list[Sample]:
    """COCO-style keypoint annotations (COCO, CrowdPose, OCHuman, Halpe, COCO-WholeBody, PoseTrack18).

    COCO-WholeBody's body/foot/face/hand fields are concatenated into 133 keypoints when `spec` is
    coco_wholebody133 (the default when those fields are present)."""
    path = Path(ann_file)
    data = _load_json(path)
    for key in ("images", "annotations"):
        if not isinstance(data, dict) or key not in data:
            raise DatasetError(f"{path}: missing top-level '{key}': not a COCO keypoint file")
    spec = spec or detect_spec(data, path)
    k = get_spec(spec).num_keypoints
    root = Path(image_root) if image_root is not None else path.parent
    samples: dict[Any, Sample] = {}
    for i, img in enumerate(data["images"]):
        where = f"images[{i}]"
        image_id = _get(img, "id", path, where)
        extras = {key: img[key] for key in ("crowdIndex", "vid_id", "frame_id", "is_labeled", "nframes", "ignore_regions_x", "ignore_regions_y")
                  if key in img}  # fmt: skip
        if "crowdIndex" in extras:
            extras["crowd_index"] = float(extras.pop("crowdIndex"))
        file_name = _get(img, "file_name", path, where)
        if not isinstance(file_name, str) or not file_name or "\x00" in file_name:
            raise DatasetError(f"{path}: {where}: 'file_name' must be a non-empty path without NUL bytes, got {file_name!r}")
        samples[image_id] = Sample(root / file_name, image_id, [], spec, img.get("width"), img.get("height"), extras)
    for i, ann in enumerate(data["annotations"]):
        where = f"annotations[{i}] (id {ann.get('id')})" if isinstance(ann, dict) else f"annotations[{i}]"
        image_id = _get(ann, "image_id", path, where)
        if image_id not in samples:
            raise DatasetError(f"{path}: {where}: image_id {image_id} is not in 'images'")
        if spec == "coco_wholebody133" and "foot_kpts" in ann:
            kps = np.concatenate([_keypoints(_get(ann, p, path, where), None, path, where, p) for p in WHOLEBODY_PARTS])
            if len(kps) != k:
                raise DatasetError(f"{path}: {where}: whole-body parts add up to {len(kps)} keypoints, expected {k}")
        else:
            kps = _keypoints(_get(ann, "keypoints", path, where), k, path, where)
        box = _xywh_to_xyxy(_get(ann, "bbox", path, where), path, where)
        extras = {key: ann[key] for key in ("num_keypoints", "face_box", "lefthand_box", "righthand_box") if key in ann}
        if "segmentation" in ann and (ann.get("iscrowd", 0) or not (kps[:, 2] > 0).any()):
            extras["segmentation"] = ann["segmentation"]  # ignore regions for whole-image training
        if "bbox_head" in ann:
            extras["head_box"] = _xywh_to_xyxy(ann["bbox_head"], path, where + " bbox_head")
        area = float(ann.get("area", (box[2] - box[0]) * (box[3] - box[1])))
        samples[image_id].instances.append(
            Instance(box, kps, area, bool(ann.get("iscrowd", 0)), ann.get("track_id"), ann.get("id"), extras)
        )
    return list(samples.values())


def read_posetrack(ann: str | Path, image_root: str | Path | None = None) -> list[Sample]:
    """PoseTrack18/21 json: one file, or a directory of per-video files (frames in order, track ids)."""
    path = Path(ann)
    files = sorted(path.glob("*.json")) if path.is_dir() else [path]
    if not files:
        raise DatasetError(f"{path}: no PoseTrack json files here")
    samples = []
    for f in files:
        root = Path(image_root) if image_root is not None else f.parent
        samples += read_coco(f, root, "posetrack17")
    return sorted(samples, key=lambda s: (str(s.extras.get("vid_id", "")), s.extras.get("frame_id", 0)))


def read_mpii(ann_file: str | Path, image_root: str | Path | None = None) -> list[Sample]:
    """MPII as MMPose ships it: a list of {image, joints [16,2], joints_vis [16], center, scale[, headbox]}.

    One record = one person; records of the same image become one sample. The person box is the
    200 px * scale square around `center` (MPII's convention)."""
    path = Path(ann_file)
    data = _load_json(path)
    if not isinstance(data, list):
        raise DatasetError(f"{path}: expected a list of person records (MMPose's MPII json)")
    root = Path(image_root) if image_root is not None else path.parent
    samples: dict[str, Sample] = {}
    for i, rec in enumerate(data):
        where = f"record {i}"
        image = _get(rec, "image", path, where)
        where = f"record {i} ({image})"
        try:
            joints = np.asarray(_get(rec, "joints", path, where), np.float32).reshape(16, 2)
            vis = np.asarray(_get(rec, "joints_vis", path, where), np.float32).reshape(16)
        except ValueError as e:
            raise DatasetError(f"{path}: {where}: 'joints' must be 16 [x, y] and 'joints_vis' 16 flags") from e
        cx, cy = (float(v) for v in _get(rec, "center", path, where))
        half = float(_get(rec, "scale", path, where)) * 100.0
        extras = {"center": (cx, cy), "scale": float(rec["scale"])}
        if "headbox" in rec:
            extras["head_box"] = np.asarray(rec["headbox"], np.float32).reshape(4)
        inst = Instance(np.array([cx - half, cy - half, cx + half, cy + half], np.float32),
                        np.concatenate([joints, vis[:, None]], 1), (2 * half) ** 2, False, None, i, extras)  # fmt: skip
        samples.setdefault(image, Sample(root / image, image, [], "mpii16")).instances.append(inst)
    return list(samples.values())


def read_lsp(joints_mat: str | Path, image_root: str | Path | None = None) -> list[Sample]:
    """LSP (joints 3x14xN) or LSP-Extended (joints 14x3xN) `joints.mat`; images im00001.jpg, ... in `image_root`.

    Visibility follows COCO (0 unlabelled, 1 labelled but occluded, 2 visible). LSP-Extended's flag is
    1 = annotated, 0 = not annotated (checked on the data: 550 of 551 unflagged joints of the first 300
    images lie outside the image) -> 2 / 0. The original LSP annotates every joint and its third row flags
    occlusion -> 1 (occluded) / 2 (visible)."""
    from scipy.io import loadmat

    path = Path(joints_mat)
    try:
        joints = loadmat(str(path))["joints"]
    except (OSError, ValueError, KeyError) as e:
        raise DatasetError(f"{path}: not a MATLAB file with a 'joints' matrix ({e})") from e
    if joints.shape[:2] == (14, 3):
        arr = joints.transpose(2, 0, 1).astype(np.float32)  # LSP-Extended
        arr[:, :, 2] = np.where(arr[:, :, 2] > 0, 2.0, 0.0)
    elif joints.shape[:2] == (3, 14):
        arr = joints.transpose(2, 1, 0).astype(np.float32)  # LSP: occlusion flag
        arr[:, :, 2] = 2.0 - (arr[:, :, 2] > 0)
    else:
        raise DatasetError(f"{path}: 'joints' has shape {joints.shape}; expected 14x3xN or 3x14xN")
    root = Path(image_root) if image_root is not None else path.parent / "images"
    samples = []
    for i, kps in enumerate(arr):
        labelled = kps[:, 2] > 0
        pts = kps[labelled, :2] if labelled.any() else kps[:, :2]
        box = np.concatenate([pts.min(0), pts.max(0)]).astype(np.float32)
        inst = Instance(box, kps, float((box[2] - box[0]) * (box[3] - box[1])), id=i)
        samples.append(Sample(root / f"im{i + 1:05d}.jpg", i + 1, [inst], "lsp14"))
    return samples


def read_detections(path: str | Path, min_score: float = 0.0) -> dict[int | str, tuple[np.ndarray, np.ndarray]]:
    """Person boxes from a COCO detection-results file (a list of {image_id, category_id, bbox xywh,
    score}, e.g. the AP_H_56 / AP 56.4 boxes every top-down paper evaluates with): per image id,
    (boxes [N,4] xyxy, scores [N]) with score >= `min_score`, best first. Other categories are skipped."""
    return parse_detections(_load_json(Path(path)), Path(path), min_score)


def parse_detections(data: Any, path: Path, min_score: float = 0.0) -> dict[int | str, tuple[np.ndarray, np.ndarray]]:
    """`read_detections` on an already-loaded JSON value (`path` only names it in errors)."""
    if not isinstance(data, list):
        raise DatasetError(f"{path}: expected a list of detection results, got {type(data).__name__}")
    per_image: dict[int | str, list[tuple[np.ndarray, float]]] = {}
    for i, d in enumerate(data):
        where = f"detection {i}"
        image_id = _get(d, "image_id", path, where)
        if d.get("category_id", 1) != 1:
            continue
        score = d.get("score", 1.0)
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not np.isfinite(score):
            raise DatasetError(f"{path}: {where}: field 'score' must be a finite number, got {score!r}")
        if score >= min_score:
            per_image.setdefault(image_id, []).append((_xywh_to_xyxy(_get(d, "bbox", path, where), path, where), score))
    out = {}
    for image_id, dets in per_image.items():
        dets.sort(key=lambda bs: -bs[1])
        out[image_id] = (np.stack([b for b, _ in dets]).astype(np.float32), np.array([s for _, s in dets], np.float32))
    return out


def with_detected_boxes(samples: list[Sample], detections: dict[int | str, tuple[np.ndarray, np.ndarray]]) -> list[Sample]:
    """The same images with one instance per detected box instead of the annotated persons: no
    keypoints (all zero), the detection score in `extras['score']`. Images without detections drop out."""
    out = []
    for s in samples:
        boxes, scores = detections.get(s.image_id, (np.zeros((0, 4), np.float32), np.zeros(0, np.float32)))
        if len(boxes) == 0:
            continue
        k = get_spec(s.spec).num_keypoints
        insts = [
            Instance(b.copy(), np.zeros((k, 3), np.float32), float((b[2] - b[0]) * (b[3] - b[1])), extras={"score": float(sc)})
            for b, sc in zip(boxes, scores)
        ]
        out.append(Sample(s.image_path, s.image_id, insts, s.spec, s.width, s.height, dict(s.extras)))
    return out


def match_detected_boxes(samples: list[Sample], detections: dict[int | str, tuple[np.ndarray, np.ndarray]],
                         min_iou: float = 0.5) -> list[Sample]:  # fmt: skip
    """Training on a detector's boxes: each detected box takes the keypoints of the annotated person it
    overlaps most (IoU >= `min_iou`; non-crowd persons with a labelled keypoint); unmatched boxes are
    dropped. A person found by two boxes gives two crops, as a detector's duplicates would."""
    out = []
    for s in samples:
        people = [inst for inst in s.instances if not inst.iscrowd and (inst.keypoints[:, 2] > 0).any()]
        boxes, scores = detections.get(s.image_id, (np.zeros((0, 4), np.float32), np.zeros(0, np.float32)))
        if not people or len(boxes) == 0:
            continue
        iou = box_iou(boxes, np.stack([p.box for p in people]))
        insts = [
            Instance(b.copy(), people[j].keypoints, people[j].area, id=people[j].id, extras={"score": float(sc)})
            for b, sc, j, best in zip(boxes, scores, iou.argmax(1), iou.max(1))
            if best >= min_iou
        ]
        if insts:
            out.append(Sample(s.image_path, s.image_id, insts, s.spec, s.width, s.height, dict(s.extras)))
    return out


def to_coco_dict(samples: list[Sample]) -> dict[str, Any]:
    """Samples back to a COCO-style keypoint dict (the round trip of `read_coco`)."""
    images, annotations = [], []
    spec = get_spec(samples[0].spec) if samples else get_spec("coco17")
    next_id = 1
    for s in samples:
        img = {"id": s.image_id, "file_name": s.image_path.name, "width": s.width, "height": s.height}
        if "crowd_index" in s.extras:
            img["crowdIndex"] = s.extras["crowd_index"]
        images.append(img)
        for inst in s.instances:
            x1, y1, x2, y2 = (float(v) for v in inst.box)
            ann = {
                "id": inst.id if inst.id is not None else next_id,
                "image_id": s.image_id,
                "category_id": 1,
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "area": inst.area,
                "iscrowd": int(inst.iscrowd),
                "keypoints": [float(v) for v in inst.keypoints.reshape(-1)],
                "num_keypoints": int(inst.extras.get("num_keypoints", (inst.keypoints[:, 2] > 0).sum())),
            }
            if inst.track_id is not None:
                ann["track_id"] = inst.track_id
            annotations.append(ann)
            next_id += 1
    categories = [{"id": 1, "name": "person", "keypoints": list(spec.keypoints), "skeleton": [[a + 1, b + 1] for a, b in spec.skeleton]}]
    return {"images": images, "annotations": annotations, "categories": categories}
