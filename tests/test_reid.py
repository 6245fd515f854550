"""The tracker's re-ID head: safe tracklet labels, the masked contrastive loss, training, the file round trip."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from posekit.tracking.reid import Detection, ReIDHead, load_head, save_head, supcon_loss, tracklet_labels, train_reid_head


def _det(clip: str, frame: int, track: int, x: float, score: float = 0.9) -> Detection:
    return Detection(clip, frame, track, np.array([x, 0, x + 10, 20], np.float32), score, np.zeros(4, np.float32))


def test_tracklet_labels_keep_lone_confident_detections_of_long_tracks_and_know_which_are_different_people() -> None:
    dets = []
    for f in range(10):
        dets += [_det("a", f, 1, 0), _det("a", f, 2, 100)]  # two people side by side: different
    dets += [_det("a", f, 3, 200) for f in range(20, 30)]  # later in the clip: maybe person 1 again
    dets += [_det("a", f, 4, 5) for f in range(10)]  # overlaps track 1 in every frame: never a sample
    dets += [_det("b", f, 1, 0, score=0.05 if f < 5 else 0.9) for f in range(12)]  # weak frames are left out
    keep, labels, negatives, keys = tracklet_labels(dets, min_length=5)
    assert keys == [("a", 2), ("a", 3), ("b", 1)]  # track 1 overlaps track 4 everywhere: nothing of it is safe
    assert len(keep) == 10 + 10 + 7
    assert all(dets[i].track != 4 and dets[i].score >= 0.1 for i in keep)
    assert [int((labels == t).sum()) for t in range(3)] == [10, 10, 7]
    # 2 and 3 of clip a never share a frame: unknown; clip b is another video: different
    assert negatives.tolist() == [[False, False, True], [False, False, True], [True, True, False]]


def test_supcon_loss_known_answers_and_unknown_pairs_ignored() -> None:
    z = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]), dim=1)
    labels = torch.tensor([0, 0, 1, 1])
    different = torch.tensor([[False, True], [True, False]])
    # each sample: one positive at cos 1, two negatives at cos 0: -log(e^10 / (e^10 + 2))
    expected = -math.log(math.exp(10) / (math.exp(10) + 2))
    assert supcon_loss(z, labels, different).item() == pytest.approx(expected, abs=1e-6)
    # with the two tracklets of unknown relation, no sample has a negative: nothing to learn from
    swapped = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]), dim=1)
    unknown = torch.zeros(2, 2, dtype=torch.bool)
    assert torch.isnan(supcon_loss(swapped, labels, unknown))  # mean of nothing
    assert supcon_loss(swapped, labels, different).item() > expected + 5  # the positives are the far ones


def test_head_learns_the_few_directions_that_tell_tracklets_apart() -> None:
    """Persons differ in 4 of 64 feature dimensions, beside a large common part and noise in all of them:
    a random head barely separates them; the trained one does, on held-out samples."""
    rng = np.random.default_rng(0)
    common = rng.normal(size=64) * 5
    people = np.zeros((6, 64))
    people[:, :4] = rng.normal(size=(6, 4))
    x = np.concatenate([common + p + rng.normal(size=(20, 64)) * 0.5 for p in people]).astype(np.float32)
    labels = np.repeat(np.arange(6), 20)

    def separation(steps: int) -> tuple[float, list[float]]:
        head, losses = train_reid_head(x[::2], labels[::2], ~np.eye(6, dtype=bool), steps=steps, tracklets_per_batch=6)
        z = head.embed(x[1::2])  # the held-out half
        sim, same = z @ z.T, labels[1::2, None] == labels[None, 1::2]
        return float(sim[same].mean() - sim[~same].mean()), losses

    untrained, _ = separation(0)
    trained, losses = separation(150)
    assert untrained < 0.2 and trained > 0.4, (untrained, trained)  # measured 0.15 and 0.56
    assert losses[-1] < math.log(7) + 0.02  # the floor: each sample spreads its mass over 7 positives
    head = ReIDHead(64)
    with pytest.raises(ValueError, match="non-finite"):
        head.embed(np.full((1, 64), np.nan, np.float32))


def test_head_file_round_trip_and_checksum(tmp_path: Path) -> None:
    torch.manual_seed(0)
    head = ReIDHead(32, 16, 8).eval()
    head.mean.normal_()
    sha = save_head(head, tmp_path / "head.safetensors")
    loaded = load_head(tmp_path / "head.safetensors", sha)
    x = np.random.default_rng(0).normal(size=(5, 32)).astype(np.float32)
    assert np.abs(loaded.embed(x) - head.embed(x)).max() < 2e-2  # fp16 on disk
    with pytest.raises(ValueError, match="sha256"):
        load_head(tmp_path / "head.safetensors", "0" * 64)
