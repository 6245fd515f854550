"""Results files of any size in bounded memory: the items of a top-level JSON array read one at a time
(1 MiB chunks), each checked as `check_results` checks it, and per image only the best-scored ones COCO's
evaluation can see kept: COCOeval sorts an image's detections by score (stable) and keeps the first
`maxDets` (20 for keypoints, CrowdPose too) before matching, for every area range, so the rest cannot change
a number. Memory: the chunk plus 20 results per image, whatever the file's size."""

from __future__ import annotations

import codecs
import heapq
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from posekit.data.datasets import DatasetError

CHUNK = 1 << 20
_SPACE = " \t\r\n"


def iter_json_array(path: str | Path, what: str) -> Iterator[Any]:
    """The items of the JSON array `path` holds, one at a time. Raises `DatasetError` (one line naming the
    file) for a missing, unreadable, non-UTF-8 or malformed file; `NotAnArray` when it holds no array."""
    path = Path(path)
    try:
        f = path.open("rb")
    except IsADirectoryError as e:
        raise DatasetError(f"{what} {path}: is a folder, expected a JSON file") from e
    except OSError as e:
        raise DatasetError(f"{what} {path}: cannot read ({e.strerror})") from e
    decoder, text = json.JSONDecoder(), codecs.getincrementaldecoder("utf-8-sig")()
    buf, pos, state, eof = "", 0, "open", False  # state: open -> item | more -> end
    with f:
        while True:
            while pos < len(buf) and buf[pos] in _SPACE:
                pos += 1
            if pos == len(buf):
                if eof:
                    break
                buf, pos, eof = _refill(f, text, buf, pos, path, what)
                continue
            if state == "open":
                if buf[pos] != "[":
                    raise NotAnArray(path)
                pos, state = pos + 1, "first"
            elif state in ("first", "item"):
                if state == "first" and buf[pos] == "]":
                    pos, state = pos + 1, "end"
                    continue
                try:
                    item, end = decoder.raw_decode(buf, pos)
                except ValueError as e:
                    if eof:
                        raise DatasetError(f"{what} {path}: not valid JSON ({e}); a truncated or unfinished file?") from e
                    buf, pos, eof = _refill(f, text, buf, pos, path, what)
                    continue
                except RecursionError as e:
                    raise DatasetError(f"{what} {path}: JSON nested too deeply to be a results file") from e
                if end == len(buf) and not eof:  # a number may go on in the next chunk: decode it again with more
                    buf, pos, eof = _refill(f, text, buf, pos, path, what)
                    continue
                yield item
                pos, state = end, "more"
            elif state == "more":
                if buf[pos] not in ",]":
                    raise DatasetError(f"{what} {path}: not valid JSON (expected ',' or ']' at character {pos} of a chunk)")
                pos, state = pos + 1, "item" if buf[pos] == "," else "end"
            else:
                raise DatasetError(f"{what} {path}: not valid JSON (extra data after the array)")
    if state == "open":
        raise DatasetError(f"{what} {path}: empty file")
    if state != "end":
        raise DatasetError(f"{what} {path}: not valid JSON (the array never closes); a truncated or unfinished file?")


class NotAnArray(Exception):
    """The file holds a JSON value other than an array (e.g. PoseTrack-style results): read it whole."""


def _refill(f: Any, text: Any, buf: str, pos: int, path: Path, what: str) -> tuple[str, int, bool]:
    data = f.read(CHUNK)
    try:
        more = text.decode(data, final=not data)
    except UnicodeDecodeError as e:
        raise DatasetError(f"{what} {path}: not UTF-8 text; expected a JSON file") from e
    return buf[pos:] + more, 0, not data


def top_results(items: Iterator[Any], check: Any, per_image: int = 20) -> list[dict]:
    """The checked items (`check(item, index) -> dict` raises on a bad one), at most `per_image` per image id:
    the best scored, ties to the earlier, in file order, as COCOeval would keep them."""
    heaps: dict[Any, list[tuple[float, int, dict]]] = {}
    for i, item in enumerate(items):
        r = check(item, i)
        heap = heaps.setdefault(r["image_id"], [])
        entry = (float(r["score"]), -i, r)  # on equal scores the later item is the smaller: it goes first
        if len(heap) < per_image:
            heapq.heappush(heap, entry)
        elif entry[:2] > heap[0][:2]:
            heapq.heapreplace(heap, entry)
    kept = [(-neg_i, r) for heap in heaps.values() for _, neg_i, r in heap]
    return [r for _, r in sorted(kept, key=lambda t: t[0])]
