"""Conventions a user of the field's toolboxes expects: `from posekit import PoseEstimator`, `posekit
--version`, a short `Poses` repr, COCO image ids from 2014 and 2017 file names."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import posekit
from posekit.pipeline.writers import ImageIds
from posekit.structures import Poses


def test_package_exports_and_version(capsys: pytest.CaptureFixture) -> None:
    from posekit.api import PoseEstimator
    from posekit.cli import main

    assert posekit.PoseEstimator is PoseEstimator and posekit.Poses is Poses
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        _ = posekit.nothing
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"posekit {posekit.__version__}"
    # importing the package alone does not pull in torch (the CLI's --help and the readers stay light)
    code = "import sys, posekit; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_poses_repr_is_short() -> None:
    n = 40
    poses = Poses(np.zeros((n, 17, 2)), np.zeros((n, 17)), np.zeros((n, 4)), np.linspace(1, 0, n), track_ids=np.arange(n))
    text = repr(poses)
    assert text.startswith("Poses(40 persons, coco17, 17 keypoints, scores [1.00, 0.97") and "..." in text
    assert "track ids [0, 1, 2, 3, 4]" in text and len(text) < 200
    assert repr(Poses.empty()) == "Poses(0 persons, coco17, 17 keypoints, scores [])"


def test_coco_image_ids_from_2014_and_2017_names() -> None:
    ids = ImageIds()
    assert ids.assign("val/COCO_val2014_000000000192.jpg") == 192
    assert ids.assign("train/000000123456.JPG") == 123456
    assert ids.assign("COCO_train2014_000000000192.jpg") == 1  # 192 is taken: the next free sequential id
    assert ids.assign("photo.jpg") == 2
