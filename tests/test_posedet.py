"""PoseDet: the deformable taps land on the coarse joints, assignment by level and centroid, OKS parity
with the evaluation's, loss terms and shapes, the codec oracle on real COCO ground truth, and OKS-NMS
against box-IoU NMS on CrowdPose ground truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.ops import deform_conv2d

from posekit.codecs.posedet import PoseDetCodec
from posekit.data.specs import get_spec
from posekit.models.posedet import PoseDetConfig, PoseDetHead, PoseDetModel, pose_oks
from posekit.postprocess.nms import box_nms, oks_matrix, oks_nms

COCO17 = get_spec("coco17")


def test_deformable_taps_sample_the_coarse_joints() -> None:
    """A kernel that copies each tap's (x, y) input coordinate: the pose embedding at a candidate reads the
    feature map exactly at candidate + coarse displacement of joint j, for every j."""
    k, h, w = 17, 12, 12
    head = PoseDetHead(8, k, PoseDetConfig(channels=8))
    coarse = torch.randn(1, 2 * k, h, w, generator=torch.Generator().manual_seed(0)) * 2
    ys, xs = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    weight = torch.zeros(2 * head.taps, 2, 1, head.taps)
    for j in range(head.taps):
        weight[2 * j, 0, 0, j] = weight[2 * j + 1, 1, 0, j] = 1
    out = deform_conv2d(torch.stack([xs, ys])[None], head._offsets(coarse), weight, padding=(0, head.taps // 2))[0]
    jx, jy = xs + coarse[0, 0::2], ys + coarse[0, 1::2]
    inside = (jx >= 0) & (jx <= w - 1) & (jy >= 0) & (jy <= h - 1)  # outside, bilinear sampling reads zeros
    assert inside.float().mean() > 0.5
    torch.testing.assert_close(out[0::2][:k][inside], jx[inside], atol=1e-4, rtol=0)
    torch.testing.assert_close(out[1::2][:k][inside], jy[inside], atol=1e-4, rtol=0)


def test_assignment_by_size_and_keypoint_centroid() -> None:
    codec = PoseDetCodec((256, 256), (8, 16, 32), 17, COCO17.sigmas)
    box = PoseDetCodec((256, 256), (8, 16, 32), 17, COCO17.sigmas, center="box")
    person = np.zeros((1, 17, 3), np.float32)
    person[0, :, 2] = 1
    person[0, :16, :2] = [98, 98]  # sixteen joints in a clump, one far away: the centroid stays near the clump
    person[0, 16, :2] = [150, 150]
    no_missing, no_ignore = np.zeros((1, 17), bool), np.zeros((32, 32), bool)
    t, tb = codec.encode(person, no_missing, no_ignore), box.encode(person, no_missing, no_ignore)
    # a 52 x 52 box: sqrt(w h) / 4 = 13 -> the stride-8 level (log2 rounds down); centroid (101.1, 101.1), box centre (124, 124)
    pos, stride = codec.candidates()
    kp_cand, box_cand = t["gt_candidate"][0], tb["gt_candidate"][0]
    assert stride[kp_cand] == 8 and stride[box_cand] == 8
    assert np.allclose(pos[kp_cand], [99.5, 99.5]) and np.allclose(pos[box_cand], [123.5, 123.5])
    assert t["gt_area"][0] == 52 * 52 and t["gt_keypoints"].shape == (30, 17, 3) and (t["gt_candidate"][1:] == -1).all()
    assert set(t) >= {"heatmaps_s8", "heatmaps_s16", "heatmaps_s32", "heatmap_weights_s8", "candidate_weights"}
    assert t["heatmaps_s32"].shape == (17, 8, 8) and t["candidate_weights"].shape == (32 * 32 + 16 * 16 + 8 * 8,)
    # a large person goes to the coarsest level; two persons on one candidate: the nearer keeps it
    assert codec.level_of(np.array([[200.0, 200.0], [10.0, 10.0]])).tolist() == [2, 0]
    twins = np.repeat(person, 2, 0)
    twins[1, :, :2] += 1.0
    t2 = codec.encode(twins, np.zeros((2, 17), bool), no_ignore)
    assert t2["gt_candidate"][0] == kp_cand and t2["gt_candidate"][1] == -1
    # an ignored region removes its candidates from classification
    ignore = np.zeros((32, 32), bool)
    ignore[:4, :4] = True
    weights = codec.encode(person, no_missing, ignore)["candidate_weights"]
    assert weights[0] == 0 and weights[32 * 32] == 0 and weights[-1] == 1 and weights[5 * 32 + 5] == 1


def test_training_oks_matches_the_evaluation_oks() -> None:
    rng = np.random.default_rng(0)
    gt = rng.uniform(0, 100, (3, 17, 3)).astype(np.float32)
    gt[..., 2] = 1
    gt[1, :5, 2] = 0  # unlabelled joints do not count
    poses = (gt[None, :, :, :2] + rng.normal(0, 4, (2, 3, 17, 2))).reshape(6, 17, 2).astype(np.float32)
    area = np.array([900.0, 1600.0, 2500.0], np.float32)
    got = pose_oks(torch.from_numpy(poses)[None], torch.from_numpy(gt)[None], torch.from_numpy(area)[None], torch.tensor(COCO17.sigmas))[0]
    for m in range(3):
        lab = gt[m, :, 2] > 0
        want = oks_matrix(poses[:, lab], gt[m : m + 1, lab, :2], area[m], np.array(COCO17.sigmas)[lab])[:, 0]
        np.testing.assert_allclose(got[:, m].numpy(), want, atol=1e-5)


def test_model_loss_terms_and_predict_shapes() -> None:
    cfg = PoseDetConfig(backbone="resnet18", strides=(8, 16, 32, 64), channels=16, flip_test=True)
    model = PoseDetModel(COCO17, (128, 128), cfg)
    logits, coarse, refined = model(torch.zeros(2, 3, 128, 128))
    n_cand = 16 * 16 + 8 * 8 + 4 * 4 + 2 * 2
    assert logits.shape == (2, n_cand) and coarse.shape == refined.shape == (2, n_cand, 17, 2)
    persons = np.zeros((1, 17, 3), np.float32)
    persons[0, :, :2], persons[0, :, 2] = np.random.default_rng(0).uniform(20, 100, (17, 2)), 2
    t = model.codec.encode(persons, np.zeros((1, 17), bool), np.zeros(model.codec.heatmap_size[::-1], bool))
    batch = {k: torch.from_numpy(v)[None].repeat(2, *[1] * v.ndim) for k, v in t.items()}
    batch["image"] = torch.randn(2, 3, 128, 128)
    terms = model.loss(batch)
    assert set(terms) == {"coarse_l2", "refine_l2", "score_focal", "heatmap_l2"}
    assert all(torch.isfinite(v) for v in terms.values()) and terms["coarse_l2"] > 0 and terms["heatmap_l2"] > 0
    sum(terms.values()).backward()
    assert model.head.bypass[-1].weight.grad.abs().sum() > 0 and model.pyramid.laterals[0].weight.grad.abs().sum() > 0
    model.cfg.intermediate_supervision = False
    assert "heatmap_l2" not in model.loss(batch)
    # coarse L2 on every refinement positive: from random heads the only positive is the assigned candidate, so
    # both ways of taking the targets (gathered per person / per candidate) must give the same loss
    model.cfg.coarse_targets = "positives"
    assert torch.allclose(model.loss(batch)["coarse_l2"], terms["coarse_l2"], rtol=1e-5)
    model.cfg.coarse_targets = "assigned"
    with pytest.raises(ValueError, match="coarse_targets"):
        PoseDetModel(COCO17, (128, 128), PoseDetConfig(backbone="resnet18", coarse_targets="all"))
    model.eval()
    batch["matrix"] = torch.tensor([[[1.0, 0, 0], [0, 1.0, 0]]]).repeat(2, 1, 1)
    out = model.predict(batch)
    assert len(out) == 2 and all(p.keypoints.shape[1:] == (17, 2) for p in out)
    # candidates follow the input actually given, not only the trained size (flip test: both passes)
    scores, poses = model.outputs(torch.zeros(1, 3, 192, 128))
    assert scores.shape == (1, 2 * (16 * 24 + 8 * 12 + 4 * 6 + 2 * 3)) and poses.shape == (1, scores.shape[1], 17, 2)


@pytest.mark.data
def test_codec_oracle_on_real_coco(data_dir: Path) -> None:
    """GT poses on their assigned candidates, decoded by the model's own decoder and OKS-NMS. Measured
    1.000 for both assignments on coco-mini (no two persons share a candidate there)."""
    from posekit.evaluation.oracle import codec_oracle

    gt = data_dir / "coco-mini/annotations/person_keypoints_train2017.json"
    for options in PoseDetModel.oracle_variants.values():
        stats = codec_oracle("posedet", gt, data_dir / "coco-mini/train2017", 512, **options)
        assert stats["coco/AP"] >= 0.97, (options, stats["coco/AP"])


@pytest.mark.data
def test_oks_nms_keeps_more_true_poses_than_box_nms_on_crowdpose(data_dir: Path) -> None:
    """Every CrowdPose person with three jittered duplicates (keypoints and boxes moved by 3 % of the box
    side), random scores: at equal thresholds OKS-NMS keeps at least as many persons as box-IoU NMS, more
    at the low thresholds where neighbours' boxes overlap (IoU 0.23-0.24 here, OKS under 0.2), and still
    removes every duplicate up to 0.7."""
    from posekit.data.datasets import read_coco

    samples = read_coco(data_dir / "fixtures/crowdpose/test_crowdpose.json", data_dir / "fixtures/crowdpose")
    sigmas = np.array(get_spec(samples[0].spec).sigmas)
    rng = np.random.default_rng(0)
    images = []
    for sample in samples:
        kps, boxes, owner = [], [], []
        people = [p for p in sample.instances if (p.keypoints[:, 2] > 0).any()]
        for n, p in enumerate(people):
            lab = p.keypoints[:, 2] > 0
            xy = np.where(lab[:, None], p.keypoints[:, :2], p.keypoints[lab, :2].mean(0))
            noise = 0.03 * np.sqrt(np.prod(p.box[2:] - p.box[:2]))
            for copy in range(4):
                shift = rng.normal(0, noise, 2) if copy else np.zeros(2)
                kps.append(xy + shift + (rng.normal(0, noise, xy.shape) if copy else 0))
                boxes.append(p.box + np.tile(shift, 2) + (rng.normal(0, noise, 4) if copy else 0))
                owner.append(n)
        images.append((np.array(kps, np.float32), np.array(boxes, np.float32), np.array(owner), rng.uniform(0.5, 1, len(owner)), len(people)))
    assert sum(n for *_, n in images) == 4
    kept = {"oks": [], "iou": []}
    for t in np.round(np.arange(0.1, 1.0, 0.1), 1):
        for name in kept:
            persons = duplicates = 0
            for kps, boxes, owner, scores, _ in images:
                keep = oks_nms(kps, scores, boxes, sigmas, t) if name == "oks" else box_nms(boxes, scores, t)
                persons += len(set(owner[keep]))
                duplicates += len(keep) - len(set(owner[keep]))
            kept[name].append(persons)
            if name == "oks" and t <= 0.7:
                assert duplicates == 0, t
    assert all(o >= i for o, i in zip(kept["oks"], kept["iou"])), kept
    assert kept["oks"][:2] == [4, 4] and max(kept["iou"][:2]) < 4, kept  # thresholds 0.1 and 0.2 (box NMS kept 2 and 3)


def test_paper_scale_config_builds_the_paper_model() -> None:
    from posekit.engine.config import load_config
    from posekit.models import build_model

    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "posedet_w32_512_coco.yaml")
    assert cfg.data.input_size == (512, 512) and cfg.train.device == "auto" and cfg.train.lr == 1e-4
    model = build_model(cfg.model, COCO17, cfg.data.input_size)
    assert model.backbone.feature_strides == [4, 8, 16, 32] and model.backbone.feature_channels == [32, 64, 128, 256]
    assert len(model.pyramid.laterals) == 3 and len(model.pyramid.extra) == 1 and model.head.taps == 17
    assert model.size_divisor == 64
    with torch.no_grad():
        logits, _, _ = model(torch.zeros(1, 3, 128, 128))
    assert logits.shape == (1, 16 * 16 + 8 * 8 + 4 * 4 + 2 * 2)



@pytest.mark.data
@pytest.mark.weights
def test_shipped_posedet_small_is_intact_and_finds_people(tmp_path: Path, data_dir: Path, coco_extra_heldout: Path, weights) -> None:
    """The shipped model matches its recorded sha256, fits in 10 MB, and scores on the 20 coco-extra images
    its training held out (images 70-89) what the README reports (AP 0.274 for the fp32 checkpoint and its fp16
    copy; a margin for threads)."""
    import json

    from posekit.cli import main
    from posekit.zoo.packaged import MODELS_DIR, PACKAGED, packaged_state

    assert (MODELS_DIR / "posedet-small.safetensors").stat().st_size <= 10_000_000
    state = packaged_state("posedet-small")  # raises on a sha256 mismatch
    assert state["family"] == "posedet" and "posedet_small_mosaic" in PACKAGED["posedet-small"].command
    stats = tmp_path / "stats.json"
    assert main(["eval", "--gt", str(coco_extra_heldout), "--images", str(data_dir / "coco-extra/train2017"),
                 "--model", "posedet-small", "--out-dir", str(tmp_path / "e"), "--out", str(stats), "--quiet"]) == 0  # fmt: skip
    assert json.loads(stats.read_text())["stats"]["AP"] >= 0.24  # 0.274 measured
