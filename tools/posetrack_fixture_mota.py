"""PoseTrack18 fixture: MOTA and AP of `posekit track` output, with the tracker as it was before #15 (every
pose starts a track, reported at once) and as it is now (the default `TrackerOptions`); README table.

usage: .venv/bin/python tools/posetrack_fixture_mota.py [--out DIR]   (POSEKIT_TEST_DATA: the shared data)
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from posekit.api import PoseEstimator  # noqa: E402
from posekit.evaluation.run import evaluate_files  # noqa: E402
from posekit.pipeline.track import run_track  # noqa: E402
from posekit.postprocess.presets import DEFAULT_MODE, track_options  # noqa: E402
from posekit.tracking.tracker import TrackerOptions  # noqa: E402

VIDEOS = ("003418_mpii_test", "009473_mpii_test", "012834_mpii_test")
OPTIONS, START = track_options(DEFAULT_MODE, "topdown-thunder")  # what `posekit track` runs
VARIANTS = {"before": TrackerOptions(high_threshold=0.0, min_hits=1), "now": TrackerOptions(high_threshold=START)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("outputs/posetrack_fixture"))
    args = ap.parse_args()
    data = Path(os.environ.get("POSEKIT_TEST_DATA", ROOT.parent / "shared" / "data")) / "fixtures" / "posetrack18"
    estimator = PoseEstimator(backend="torch", **OPTIONS)
    for video in VIDEOS:
        cells = []
        for name, options in VARIANTS.items():
            out = args.out / name / video
            run_track(str(data / "images" / "val" / video), estimator, out, render=False, quiet=True, tracker_options=options)
            _, stats = evaluate_files(data / "annotations" / "val" / f"{video}.json", out / "posetrack.json")
            cells.append(f"{name}: MOTA {stats['MOTA']['Total']:.3f} AP {stats['AP']['Total']:.3f}")
        print(video, " | ".join(cells), flush=True)


if __name__ == "__main__":
    main()
