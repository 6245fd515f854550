"""Hand-labelled identities for the real clips (tests/fixtures/clip_identities.json): which boxes are which
person, frame by frame, so `identity_switches` can count ID switches on real footage.

1. `propose`: pure tracklets from topdown-thunder's poses (scoring >= 0.05, the poses `tools/reid_tracklets.py`
   caches): a pose is linked to the next frame's only when their IoU is >= 0.5, each is the other's best and
   no runner-up reaches 0.3; tracklets of 3 frames or more are kept. Writes OUT/<clip>.json and contact
   sheets OUT/<clip>_<k>.png (each tracklet's first, middle and last crop, "index:first-last nFrames").
2. A person looks at the sheets and writes LABELS: {clip: {"persons": {letter: description},
   "tracklets": {letter: [tracklet indices]}}}. Tracklets left out are not labelled (not a person, too
   blurred or too occluded to say who it is).
3. `build`: (LABELS default to those kept in the fixture) each person's boxes from their tracklets, gaps of up to 8 frames between them filled by linear
   interpolation (the person is taken as visible there), written to the fixture with the labels.

    .venv/bin/python tools/label_identities.py propose --out outputs/identities
    .venv/bin/python tools/label_identities.py build --out outputs/identities --labels LABELS --fixture tests/fixtures/clip_identities.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reid_tracklets import DATA, cached_poses  # noqa: E402

from posekit.api import PoseEstimator  # noqa: E402
from posekit.fileio import atomic_write_json  # noqa: E402
from posekit.postprocess.nms import box_iou  # noqa: E402

MAX_GAP = 8


def pure_tracklets(frames: list, min_score: float = 0.05) -> list[list]:
    boxes = [p.boxes[p.scores >= min_score] for p in frames]
    tracklets: list[list] = []
    previous: dict[int, int] = {}  # pose index in the previous frame -> tracklet
    for t, now in enumerate(boxes):
        iou = box_iou(now, boxes[t - 1]) if t and len(now) and len(boxes[t - 1]) else np.zeros((len(now), 0))
        current = {}
        for d in range(len(now)):
            k = None
            if iou.shape[1]:
                p = int(np.argmax(iou[d]))
                row, col = np.sort(iou[d])[::-1], np.sort(iou[:, p])[::-1]
                if iou[d, p] >= 0.5 and int(np.argmax(iou[:, p])) == d and (len(row) < 2 or row[1] < 0.3) and (len(col) < 2 or col[1] < 0.3):
                    k = previous.get(p)
            if k is None:
                k, _ = len(tracklets), tracklets.append([])
            tracklets[k].append([t] + [round(float(v), 1) for v in now[d]])
            current[d] = k
        previous = current
    return [tr for tr in tracklets if len(tr) >= 3]


def contact_sheets(video: Path, tracklets: list[list], out: Path, cols: int = 8, rows: int = 6) -> None:
    cap, images = cv2.VideoCapture(str(video)), []
    while (read := cap.read())[0]:
        images.append(read[1])
    tiles = []
    for k, tr in enumerate(tracklets):
        crops = []
        for t, x0, y0, x1, y1 in (tr[0], tr[len(tr) // 2], tr[-1]):
            crop = images[t][max(int(y0) - 10, 0) : int(y1) + 10, max(int(x0) - 10, 0) : int(x1) + 10]
            crops.append(cv2.resize(crop, (60, 110)) if crop.size else np.zeros((110, 60, 3), np.uint8))
        tile = np.vstack([np.zeros((16, 180, 3), np.uint8), np.hstack(crops)])
        cv2.putText(tile, f"{k}:{tr[0][0]}-{tr[-1][0]} n{len(tr)}", (1, 12), 0, 0.38, (255, 255, 255), 1)
        tiles.append(tile)
    tiles += [np.zeros_like(tiles[0])] * (-len(tiles) % cols)
    sheet = np.vstack([np.hstack(tiles[i : i + cols]) for i in range(0, len(tiles), cols)])
    for i, top in enumerate(range(0, sheet.shape[0], 126 * rows)):
        cv2.imwrite(str(out.parent / f"{out.stem}_{i}.png"), sheet[top : top + 126 * rows])


def person_boxes(tracklets: list[list], indices: list[int]) -> list[list]:
    boxes = {row[0]: row[1:] for k in indices for row in tracklets[k]}
    frames = sorted(boxes)
    for a, b in zip(frames, frames[1:]):
        if 1 < b - a <= MAX_GAP + 1:
            for t in range(a + 1, b):
                w = (t - a) / (b - a)
                boxes[t] = [round((1 - w) * u + w * v, 1) for u, v in zip(boxes[a], boxes[b])]
    return [[t] + boxes[t] for t in sorted(boxes)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step", choices=["propose", "build"])
    ap.add_argument("--out", type=Path, default=Path("outputs/identities"))
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--labels", type=Path, default=None, help="build: the person -> tracklets labels (JSON; default: those in --fixture)")
    ap.add_argument("--fixture", type=Path, default=Path("tests/fixtures/clip_identities.json"))
    args = ap.parse_args(argv)
    estimator = PoseEstimator("topdown-thunder", det_threshold=0.1, flip_test=False, calibration=None, score_threshold=0.0)
    clips = {p.stem: p for p in sorted((args.data / "videos").glob("*.mp4"))}
    if args.step == "propose":
        for name, path in clips.items():
            tracklets = pure_tracklets(cached_poses(name, str(path), args.out, estimator))
            atomic_write_json(args.out / f"{name}.json", tracklets)
            contact_sheets(path, tracklets, args.out / f"{name}.png")
            print(f"{name}: {len(tracklets)} tracklets of 3 frames or more -> {args.out}/{name}_*.png")
        return 0
    labels, fixture = json.loads((args.labels or args.fixture).read_text()), {}
    for name, lab in labels.items():
        tracklets = json.loads((args.out / f"{name}.json").read_text())
        persons = {p: person_boxes(tracklets, ks) for p, ks in lab["tracklets"].items()}
        for p, rows in persons.items():
            if len({r[0] for r in rows}) != len(rows):
                raise SystemExit(f"{name}: person {p} has two boxes in one frame; check the labels")
        fixture[name] = {"video": f"videos/{name}.mp4", "persons": lab["persons"], "tracklets": lab["tracklets"], "boxes": persons}
    atomic_write_json(args.fixture, fixture)
    print(f"wrote {args.fixture}: " + ", ".join(f"{n} {len(f['boxes'])} persons" for n, f in fixture.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
