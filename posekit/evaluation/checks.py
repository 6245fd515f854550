"""What `posekit eval` accepts: ground truth and results checked at the boundary, each problem one
`DatasetError` naming the file, the record and the field. Scoring a malformed file silently (NaN keypoints
scoring AP 1.000, the GT passed as results, ids that match nothing) gives wrong numbers with exit 0."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from posekit.data.datasets import DatasetError
from posekit.structures import WHOLEBODY_RESULT_FIELDS


def read_json_file(path: str | Path, what: str) -> Any:
    """A JSON file as the user gave it: missing, a folder, empty, not UTF-8 or not JSON -> one clear error.
    A UTF-8 byte-order mark is accepted (editors on Windows write one)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except IsADirectoryError as e:
        raise DatasetError(f"{what} {path}: is a folder, expected a JSON file") from e
    except OSError as e:
        raise DatasetError(f"{what} {path}: cannot read ({e.strerror})") from e
    if not raw.strip():
        raise DatasetError(f"{what} {path}: empty file")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DatasetError(f"{what} {path}: not UTF-8 text (byte {e.start}); expected a JSON file") from e
    try:
        return json.loads(text)
    except ValueError as e:
        raise DatasetError(f"{what} {path}: not valid JSON ({e}); a truncated or unfinished file?") from e
    except RecursionError as e:
        raise DatasetError(f"{what} {path}: JSON nested too deeply to be an annotation or results file") from e


def _finite_numbers(values: Any, n: int | None) -> bool:
    if not isinstance(values, list) or (n is not None and len(values) != n):
        return False
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)


def check_coco_gt(data: Any, path: Path, num_keypoints: int | None = None) -> dict[str, Any]:
    """A COCO-format keypoint ground truth as pycocotools needs it. Missing `area` is filled from the box
    (w * h; CrowdPose files have none); everything else missing or malformed is refused."""
    if not isinstance(data, dict):
        raise DatasetError(f"--gt {path}: expected a COCO annotation object with 'images', 'annotations', 'categories'")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DatasetError(f"--gt {path}: missing top-level list '{key}': not a COCO keypoint annotation file")
    if not data["images"]:
        raise DatasetError(f"--gt {path}: 'images' is empty; nothing to score")
    if not data["categories"]:
        raise DatasetError(f"--gt {path}: 'categories' is empty; COCO needs the person category")
    ids = set()
    for i, img in enumerate(data["images"]):
        if not isinstance(img, dict) or "id" not in img:
            raise DatasetError(f"--gt {path}: images[{i}]: missing field 'id'")
        if img["id"] in ids:  # pycocotools would silently score one image's persons against the other's
            raise DatasetError(f"--gt {path}: images[{i}]: id {img['id']!r} is used twice; image ids must be unique")
        ids.add(img["id"])
    annotations, ann_ids = [], set()
    for i, ann in enumerate(data["annotations"]):
        where = f"--gt {path}: annotations[{i}]"
        if not isinstance(ann, dict):
            raise DatasetError(f"{where}: expected an object, got {type(ann).__name__}")
        for key in ("image_id", "keypoints", "bbox"):
            if key not in ann:
                raise DatasetError(f"{where}: missing field '{key}'")
        if ann["image_id"] not in ids:
            raise DatasetError(f"{where}: image_id {ann['image_id']!r} is not in 'images'")
        n = len(ann["keypoints"]) if isinstance(ann["keypoints"], list) else -1
        if n % 3 or (num_keypoints is not None and n != 3 * num_keypoints) or not _finite_numbers(ann["keypoints"], None):
            raise DatasetError(f"{where}: 'keypoints' must be {num_keypoints or 'K'} finite x, y, v triples")
        if not _finite_numbers(ann["bbox"], 4) or ann["bbox"][2] < 0 or ann["bbox"][3] < 0:
            raise DatasetError(f"{where}: 'bbox' must be 4 finite numbers [x, y, w, h] with w, h >= 0")
        if "id" in ann:  # pycocotools matches by annotation id: a repeated id silently scores the wrong person
            if ann["id"] in ann_ids:
                raise DatasetError(f"{where}: id {ann['id']!r} is used twice; annotation ids must be unique")
            ann_ids.add(ann["id"])
        if "area" not in ann:
            ann = {**ann, "area": float(ann["bbox"][2] * ann["bbox"][3])}
        elif not _finite_numbers([ann["area"]], 1):
            raise DatasetError(f"{where}: 'area' must be a finite number")
        annotations.append({"category_id": 1, "iscrowd": 0, "id": i + 1, **ann})
    return {**data, "annotations": annotations}


def flat_keypoints(result: dict) -> dict:
    """A result in COCO-WholeBody's layout (body `keypoints` plus `foot_kpts`, `face_kpts`, `lefthand_kpts`,
    `righthand_kpts`) with all 133 keypoints in `keypoints`; any other result as it is."""
    if "foot_kpts" in result and all(isinstance(result.get(key), list) for key, _ in WHOLEBODY_RESULT_FIELDS):
        return {**result, "keypoints": [v for key, _ in WHOLEBODY_RESULT_FIELDS for v in result[key]]}
    return result


def check_results(data: Any, path: Path | str, num_keypoints: int, gt_ids: set, id_of_name: dict[str, Any] | None = None,
                  need_score: bool = True) -> list[dict]:  # fmt: skip
    """COCO keypoint results: a list of {image_id, keypoints (3K finite numbers), score (finite)}; category_id
    defaults to 1, score to 1 where the metric does not rank persons (`need_score=False`: PCK). Image ids
    the GT does not have are mapped through posekit's image_ids.json beside the results and the GT's file
    names (`id_of_name`) when that resolves them all; otherwise refused."""
    if isinstance(data, dict) and "annotations" in data:  # PoseTrack-style results
        data = data["annotations"]
    if isinstance(data, dict) and data and all(isinstance(v, str) for v in data.values()):
        raise DatasetError(f"--results {path}: this is an image-id map (posekit's image_ids.json); pass results.json")
    if not isinstance(data, list):
        raise DatasetError(f"--results {path}: expected a list of keypoint results, got {type(data).__name__}")
    out = [check_result(r, f"--results {path}: result {i}", num_keypoints, need_score) for i, r in enumerate(data)]
    unknown = {r["image_id"] for r in out} - gt_ids
    if unknown:
        out = _remap_by_file_name(out, unknown, Path(path), gt_ids, id_of_name or {})
    return out


def check_result(r: Any, where: str, num_keypoints: int, need_score: bool = True) -> dict:
    """One keypoint result checked (`check_results`), with its category_id (1) and, where the metric does not
    rank persons, a score of 1."""
    if not isinstance(r, dict):
        raise DatasetError(f"{where}: expected an object, got {type(r).__name__}")
    if not need_score:
        r = {"score": 1.0, **r}
    r = flat_keypoints(r)
    for key in ("image_id", "keypoints", "score"):
        if key not in r:
            hint = " (is this a ground-truth file? results carry a score per person)" if key == "score" else ""
            raise DatasetError(f"{where}: missing field '{key}'{hint}")
    if not _finite_numbers(r["keypoints"], 3 * num_keypoints):
        n = len(r["keypoints"]) if isinstance(r["keypoints"], list) else type(r["keypoints"]).__name__
        raise DatasetError(f"{where}: 'keypoints' must be {3 * num_keypoints} finite numbers "
                           f"({num_keypoints} x, y, score triples); got {n}" + ("" if isinstance(n, str) else " values or non-finite ones"))  # fmt: skip
    if not _finite_numbers([r["score"]], 1):
        raise DatasetError(f"{where}: 'score' must be a finite number, got {r['score']!r}")
    if r.get("category_id", 1) != 1:  # pycocotools would score it against no person: AP 0, silently
        raise DatasetError(f"{where}: category_id {r['category_id']!r}; person keypoint results have category_id 1")
    return {"category_id": 1, **r}


def file_keys(path: str) -> tuple[str, str]:
    """The keys a file is matched by: 'folder/name' (its last two path parts) and the bare name."""
    p = Path(path)
    return f"{p.parent.name}/{p.name}", p.name


def ids_by_file(files: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """Image id by `file_keys` of (file path, id) pairs, keeping only keys that name one image: PoseTrack's
    videos all have a 000000.jpg, so a bare name may be ambiguous where 'video/000000.jpg' is not."""
    pairs = list(files)
    count = Counter(key for f, _ in pairs for key in set(file_keys(f)))
    return {key: i for f, i in pairs for key in file_keys(f) if count[key] == 1}


def lookup_file(id_of_file: dict[str, Any], path: str) -> Any:
    """The GT id of `path` by its 'folder/name' key, else its bare name (None when neither names one image)."""
    two, name = file_keys(path)
    return id_of_file.get(two, id_of_file.get(name))


def gt_ids_by_name(images: list[Any]) -> dict[str, Any]:
    """Ground-truth image id by file (see `ids_by_file`), from a COCO 'images' list."""
    return ids_by_file((str(img.get("file_name", "")), img.get("id")) for img in images if isinstance(img, dict))


def image_file_names(ids_file: Path) -> dict[int, str]:
    """posekit's image_ids.json as image id -> the file's path (without a video's #frame=)."""
    try:
        return {int(k): str(v.partition("#")[0]) for k, v in json.loads(ids_file.read_text()).items()}
    except (OSError, ValueError, TypeError, AttributeError) as e:
        raise DatasetError(f"{ids_file}: not a posekit image_ids.json ({e})") from e


def _remap_by_file_name(results: list[dict], unknown: set, path: Path, gt_ids: set, id_of_name: dict[str, Any]) -> list[dict]:
    """posekit predict numbers images it cannot parse a COCO id from; its image_ids.json says which file each
    id is, and the GT's file names say which GT id that file has."""
    first = sorted(map(str, unknown))[:3]
    ids_file = path.parent / "image_ids.json"
    if not ids_file.is_file() or not id_of_name:
        raise DatasetError(f"--results {path}: {len(unknown)} image id(s) not in the ground truth (e.g. {', '.join(first)}), "
                           "and no image_ids.json beside the results to map them by file name")  # fmt: skip
    source_of = image_file_names(ids_file)
    mapping = {i: lookup_file(id_of_name, source_of[i]) for i in unknown if isinstance(i, int) and i in source_of}
    missing = sorted(str(i) for i in unknown if mapping.get(i) is None)
    if missing:
        raise DatasetError(f"--results {path}: {len(missing)} image id(s) neither in the ground truth nor mapped to a GT "
                           f"file_name through {ids_file.name} (e.g. {', '.join(missing[:3])})")  # fmt: skip
    return [{**r, "image_id": mapping.get(r["image_id"], r["image_id"])} for r in results]
