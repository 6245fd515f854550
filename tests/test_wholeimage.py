"""Whole-image data: the centre-offset codec's oracle on real COCO ground truth, augmentation geometry,
ignore regions, and LSP mosaics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from posekit.codecs.center_offset import CenterOffsetCodec
from posekit.data.datasets import read_coco, read_lsp
from posekit.data.mosaic import MosaicSource
from posekit.data.specs import get_spec
from posekit.data.transforms import apply_inverse
from posekit.data.wholeimage import WholeImageDataset
from posekit.engine.trainer import results_from_poses
from posekit.evaluation.run import evaluate_samples
from posekit.models.base import poses_from_keypoints

pytestmark = pytest.mark.data
COCO17 = get_spec("coco17")


def _oracle_ap(samples, size: int) -> float:
    """Encode every image's ground truth, decode the targets as if a model had predicted them, score."""
    codec = CenterOffsetCodec((size, size), 4, 17)
    data = WholeImageDataset(samples, codec, size, False, "coco17")
    per_image = {}
    for i in range(len(data)):
        item = {k: v.numpy() for k, v in data[i].items()}
        kp, kps, cs = codec.oracle_decode(item)
        kp = apply_inverse(np.repeat(item["matrix"][None], len(kp), 0), kp)
        per_image[data.image_id(i)] = [poses_from_keypoints(kp, kps, cs, "coco17", np.array(COCO17.sigmas))]
    return evaluate_samples(samples, results_from_poses(per_image, np.array(COCO17.sigmas)))["coco/AP"]


def test_center_offset_codec_oracle_on_real_coco(data_dir: Path) -> None:
    samples = read_coco(data_dir / "coco-extra/annotations/person_keypoints_train2017.json", data_dir / "coco-extra/train2017")[:30]
    ap_512 = _oracle_ap(samples, 512)
    ap_256 = _oracle_ap(samples, 256)
    # Measured: 0.970 at both sizes (joints keep the regressed sub-pixel position where it agrees with the
    # snapped peak; people whose centres fall on the same heatmap pixel lose one of them).
    assert ap_512 >= 0.95 and ap_256 >= 0.95, (ap_512, ap_256)


def test_augmentation_moves_keypoints_with_the_image_and_flips_pairs(data_dir: Path) -> None:
    samples = [s for s in read_coco(data_dir / "coco-extra/annotations/person_keypoints_train2017.json", data_dir / "coco-extra/train2017")
               if len(s.instances) == 1][:4]  # fmt: skip
    codec = CenterOffsetCodec((256, 256), 4, 17)
    train = WholeImageDataset(samples, codec, 256, True, "coco17", seed=3)
    for epoch in range(3):
        train.epoch = epoch
        for i in range(len(samples)):
            item = train[i]
            again = train[i]
            assert torch.equal(item["image"], again["image"])  # seeded by (seed, epoch, index)
            heat = item["keypoint_heatmaps"].numpy()
            # the focal loss's positives exist: one pixel of value 1 per labelled joint and person centre
            assert (item["center_heatmap"].numpy() == 1).sum() == item["offset_weights"].numpy().any(1).sum() > 0
            assert (heat == 1).sum() >= item["offset_weights"].numpy().sum() - 1
            mat = item["matrix"].numpy().astype(np.float64)
            kps = samples[i].instances[0].keypoints
            xy = kps[:, :2] @ mat[:, :2].T + mat[:, 2]
            flipped = mat[0, 0] * mat[1, 1] - mat[0, 1] * mat[1, 0] < 0
            perm = train.flip_perm if flipped else np.arange(17)
            for j in range(17):
                src = perm[j]
                x, y = codec.to_heatmap(xy[src])
                if kps[src, 2] > 0 and 2 <= x < 62 and 2 <= y < 62:
                    assert heat[j, int(round(y)), int(round(x))] > 0.6, (i, j, flipped)


def test_crowd_regions_are_ignored(data_dir: Path) -> None:
    samples = read_coco(data_dir / "coco-mini/annotations/person_keypoints_train2017.json", data_dir / "coco-mini/train2017")
    crowded = [s for s in samples if any(inst.iscrowd for inst in s.instances)]
    assert crowded, "coco-mini has 5 crowd regions"
    codec = CenterOffsetCodec((256, 256), 4, 17)
    item = WholeImageDataset(crowded[:1], codec, 256, False, "coco17")[0]
    weights = item["heatmap_weights"].numpy()
    assert (weights == 0).any() and (weights == 1).any()
    assert (weights == weights[:1]).all()  # the same region in every channel


@pytest.fixture(scope="module")
def mosaics(data_dir: Path) -> MosaicSource:
    return MosaicSource(read_lsp(data_dir / "lspet/joints.mat", data_dir / "lspet/images")[:200], "coco17")


def test_mosaic_tiles_lsp_persons_into_coco17(mosaics: MosaicSource) -> None:
    face = [COCO17.keypoints.index(n) for n in ("nose", "left_eye", "right_eye", "left_ear", "right_ear")]
    assert mosaics.missing[face].all() and not mosaics.missing[5:].any()
    for seed in range(4):
        canvas, kps, missing = mosaics.make(np.random.default_rng(seed), 192)
        assert canvas.shape == (192, 192, 3) and len(kps) in (4, 9) and missing.shape == kps.shape[:2]
        labelled = kps[:, :, 2] > 0
        assert not labelled[:, face].any() and labelled.sum(1).min() >= 4
        assert (kps[labelled][:, :2] >= -1).all() and (kps[labelled][:, :2] <= 192).all()
        g = int(np.sqrt(len(kps)))
        cells = np.floor(kps[:, :, :2].clip(0, 191.9) / (192 / g)).astype(int)
        for p in range(len(kps)):  # every person stays inside its own tile
            assert len({tuple(c) for c in cells[p][labelled[p]]}) == 1


def test_mosaic_persons_leave_face_joints_out_of_the_loss(mosaics: MosaicSource) -> None:
    canvas, kps, missing = mosaics.make(np.random.default_rng(0), 192)
    targets = CenterOffsetCodec((192, 192), 4, 17).encode(kps, missing, np.zeros((48, 48), bool))
    w = targets["heatmap_weights"]
    assert (w[1 + 0] == 0).mean() > 0.2  # nose channel: ignored around every person
    assert (w[1 + 5] == 1).all() and (w[0] == 1).all()  # shoulders and centres: everywhere
    assert targets["offset_weights"][: len(kps), 0].sum() == 0 and targets["offset_weights"][: len(kps), 5].all()
