"""Memory bounded by design (#34 finding 4): crops go through the pose network in chunks, pose NMS works a
block of reference rows at a time; both give exactly what the all-at-once versions gave."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import posekit.postprocess.nms as nms
from posekit.data.specs import get_spec
from posekit.postprocess.pose_nms import PoseNMSParams, parametric_pose_nms


def _poses(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.uniform(0, 400, (n // 4, 1, 2)) + rng.normal(0, 30, (n // 4, 17, 2))
    kp = base.repeat(4, 0) + rng.normal(0, rng.uniform(1, 12, (n, 1, 1)), (n, 17, 2))  # groups of near-duplicates: NMS has work
    boxes = np.concatenate([kp.min(1), kp.max(1)], 1)
    return kp, rng.uniform(0, 1, (len(kp), 17)), boxes, rng.uniform(0, 1, len(kp))


@pytest.mark.parametrize("block", [1, 3, 64])
def test_block_wise_nms_keeps_exactly_what_the_full_matrix_kept(block: int, monkeypatch) -> None:
    kp, sc, boxes, scores = _poses(200)
    sigmas = np.array(get_spec("coco17").sigmas)
    params = PoseNMSParams(sigma1=0.25, sigma2=0.02, lam=0.5, eta=0.4)
    full_oks, full_pnms = nms.oks_nms(kp, scores, boxes, sigmas, 0.5), parametric_pose_nms(kp, sc, boxes, scores, params)
    assert 10 < len(full_oks) < 200 and 10 < len(full_pnms) < 200  # some suppressed, some kept
    monkeypatch.setattr(nms, "NMS_BLOCK", block)
    monkeypatch.setattr(nms.greedy_suppression, "__defaults__", (block,))
    assert np.array_equal(nms.oks_nms(kp, scores, boxes, sigmas, 0.5), full_oks)
    assert np.array_equal(parametric_pose_nms(kp, sc, boxes, scores, params), full_pnms)


def test_given_boxes_run_in_chunks_with_the_same_poses(weights, data_dir: Path) -> None:
    from posekit.pipeline.readers import read_image
    from posekit.pipeline.stages import POSE_CHUNK
    from posekit.zoo.loader import load_model

    pipe = load_model("topdown-thunder", backend="torch", mode="accurate")  # flip test: two crops per box
    image = read_image(data_dir / "fixtures" / "coco" / "000000196141.jpg")
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 300, (3 * POSE_CHUNK, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(60, 200, xy.shape)], 1).astype(np.float32)
    sizes = []
    forward = pipe.pose.forward_crops

    def spy(crops, mats, with_embeddings=False):  # noqa: ANN001, ANN202
        sizes.append(len(crops))
        return forward(crops, mats, with_embeddings)

    pipe.pose.forward_crops = spy
    kp, sc = pipe.pose_boxes(image, boxes)
    assert max(sizes) <= POSE_CHUNK and sum(sizes) == 2 * len(boxes)
    pipe.pose.forward_crops = forward
    one = [pipe.keypoints(*pipe.crop_inputs(image, boxes[i : i + 1]), 1) for i in (0, len(boxes) // 2, len(boxes) - 1)]
    for (k, s, _), i in zip(one, (0, len(boxes) // 2, len(boxes) - 1)):
        assert np.abs(k[0] - kp[i]).max() < 1e-3 and np.abs(s[0] - sc[i]).max() < 1e-4


def test_the_console_script_limits_malloc_arenas_before_any_thread() -> None:
    """`posekit` (cli.run) caps glibc's arenas first: with per-thread arenas a long `track` grew 2.0 -> 2.4 GB
    (docs/memory.md); capped, 1.40 GB at 1 800 frames. The cap must come before torch starts its threads."""
    import subprocess
    import sys

    code = "import sys, posekit.runtime as r; assert 'torch' not in sys.modules; print(r.limit_arenas())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ("True" if sys.platform.startswith("linux") else "False")
    import inspect

    from posekit import cli

    source = inspect.getsource(cli.run)
    assert source.index("limit_arenas()") < source.index("code = main()")
