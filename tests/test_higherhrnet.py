"""HigherHRNet: associative-embedding losses against hand-computed values, multi-resolution targets and
loss, grouping on hand-built maps, the codec oracle on real COCO ground truth, and the model's shapes."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from posekit.codecs.associative_embedding import AssociativeEmbeddingCodec, ae_loss, grouping_order, heatmap_mse
from posekit.data.specs import get_spec
from posekit.models.higherhrnet import HigherHRNetConfig, HigherHRNetModel

COCO17 = get_spec("coco17")


def test_ae_pull_push_on_two_toy_persons() -> None:
    # one image, tags 1x1x3x3 per joint; person A: joints 0, 1 with tags 1 and 2; person B: joint 0 with tag 4
    tags = torch.zeros(1, 2, 3, 3)
    tags[0, 0, 0, 0], tags[0, 1, 0, 1], tags[0, 0, 2, 2] = 1.0, 2.0, 4.0
    index = torch.tensor([[[0, 1], [8, 0], [0, 0]]])  # [N=1, M=3, K=2]: y*w + x
    weights = torch.tensor([[[1.0, 1.0], [1.0, 0.0], [0.0, 0.0]]])
    pull, push = ae_loss(tags, index, weights)
    # A: mean 1.5, variance ((0.5)^2 + (0.5)^2) / 2 = 0.25; B: one joint, 0 -> mean over 2 persons 0.125
    assert pull.item() == pytest.approx(0.125)
    # means 1.5 and 4: exp(-(2.5)^2 / 2), the same for both ordered pairs
    assert push.item() == pytest.approx(math.exp(-3.125), rel=1e-6)
    # one person: push 0; an image without persons: both 0 (and the batch mean halves)
    pull2, push2 = ae_loss(torch.cat([tags, tags]), torch.cat([index, index]), torch.cat([weights * torch.tensor([[[1.0], [0.0], [0.0]]]), 0 * weights]))
    assert pull2.item() == pytest.approx(0.25 / 2) and push2.item() == 0.0


def test_multi_resolution_targets_and_mse() -> None:
    codec = AssociativeEmbeddingCodec((64, 64), (4, 2), 2, (0, 1))
    person = np.array([[[20.0, 30.0, 2.0], [41.5, 10.5, 2.0]]], np.float32)
    t = codec.encode(person, np.zeros((1, 2), bool), np.zeros(codec.heatmap_size[::-1], bool))
    assert t["heatmaps_s4"].shape == (2, 16, 16) and t["heatmaps_s2"].shape == (2, 32, 32)
    for s in (4, 2):  # same sigma (2 heatmap pixels) at every resolution, centred at the sub-pixel joint
        hm = t[f"heatmaps_s{s}"][0]
        mu = (np.array([20.0, 30.0]) + 0.5) / s - 0.5
        y, x = np.unravel_index(hm.argmax(), hm.shape)
        assert hm[y, x] == pytest.approx(math.exp(-((x - mu[0]) ** 2 + (y - mu[1]) ** 2) / 8), rel=1e-5)
    assert t["tag_index"][0, 0] == round((30.5 / 4) - 0.5) * 16 + round(20.5 / 4 - 0.5) and t["tag_weights"][0].tolist() == [1, 1]
    pred, target, w = torch.zeros(1, 2, 4, 4), torch.ones(1, 2, 4, 4), torch.ones(1, 2, 4, 4)
    w[0, 1] = 0  # an ignored channel counts as zero error
    assert heatmap_mse(pred, target, w).item() == pytest.approx(0.5)


def test_grouping_by_tags_refines_missing_joints_and_scores() -> None:
    k, size = 3, 32
    codec = AssociativeEmbeddingCodec((size, size), (1,), k, (0, 1, 2))
    heat, tags = torch.zeros(k, size, size), torch.zeros(k, size, size, 1)
    persons = {0.0: [(5, 5), (5, 10), (5, 15)], 3.0: [(20, 5), (20, 10), None]}  # tag -> joints (x, y)
    for tag, joints in persons.items():
        for j, xy in enumerate(joints):
            tags[j, :, :, 0] += 0  # default tag 0 everywhere
            if xy is not None:
                heat[j, xy[1], xy[0]] = 0.9
                tags[j, xy[1] - 2 : xy[1] + 3, xy[0] - 2 : xy[0] + 3, 0] = tag
    tags[2, :, 16:, 0] = 3.0  # person 2's region of joint 2 carries its tag; a weak peak there
    heat[2, 14, 22] = 0.05  # below the detection threshold: found only by refinement
    kp, kp_scores, scores = codec.decode(heat, tags)
    assert len(kp) == 2
    order = np.argsort(kp[:, 0, 0])
    kp, kp_scores, scores = kp[order], kp_scores[order], scores[order]
    np.testing.assert_allclose(kp[0], [[5, 5], [5, 10], [5, 15]], atol=0.3)
    np.testing.assert_allclose(kp[1, :2], [[20, 5], [20, 10]], atol=0.3)
    np.testing.assert_allclose(kp[1, 2], [22, 14], atol=0.3)  # refined from heat and tag
    assert scores[0] == pytest.approx(0.9) and scores[1] == pytest.approx(0.6)  # mean heat of K joints before refinement
    assert kp_scores[1, 2] == pytest.approx(0.05)
    # a missing joint is filled only from a pixel carrying the person's tag
    tags[2, :, 16:, 0] = 0.0
    kp, kp_scores, _ = codec.decode(heat, tags)
    second = int(np.argmax(kp[:, 0, 0]))
    assert kp_scores[second, 2] == 0 and np.allclose(kp[second, 2], kp[second, :2].mean(0), atol=0.3)


def test_grouping_order_puts_the_head_first() -> None:
    assert grouping_order(COCO17) == (0, 1, 2, 3, 4, 5, 6, 11, 12, 7, 8, 9, 10, 13, 14, 15, 16)


def test_model_outputs_loss_terms_and_predict_shapes() -> None:
    cfg = HigherHRNetConfig(backbone="resnet18", num_deconvs=1, deconv_channels=16, num_basic_blocks=1, flip_test=True, test_scales=(1.0, 0.5))
    model = HigherHRNetModel(COCO17, (128, 128), cfg)
    heat, tags, finer = model(torch.zeros(2, 3, 128, 128))
    s = model.stride
    assert heat.shape == tags.shape == (2, 17, 128 // s, 128 // s) and finer.shape == (2, 17, 256 // s, 256 // s)
    persons = np.zeros((1, 17, 3), np.float32)
    persons[0, :, :2], persons[0, :, 2] = np.random.default_rng(0).uniform(10, 110, (17, 2)), 2
    t = model.codec.encode(persons, np.zeros((1, 17), bool), np.zeros(model.codec.heatmap_size[::-1], bool))
    batch = {k: torch.from_numpy(v)[None].repeat(2, *[1] * v.ndim) for k, v in t.items()}
    batch["image"] = torch.zeros(2, 3, 128, 128)
    terms = model.loss(batch)
    assert set(terms) == {f"heatmap_mse_s{s}", f"heatmap_mse_s{s // 2}", "ae_pull", "ae_push"}
    model.eval()
    batch["matrix"] = torch.tensor([[[1.0, 0, 0], [0, 1.0, 0]]]).repeat(2, 1, 1)
    out = model.predict(batch)
    assert len(out) == 2 and all(p.keypoints.shape[1:] == (17, 2) for p in out)


@pytest.mark.data
def test_codec_oracle_on_real_coco(data_dir: Path) -> None:
    from posekit.evaluation.oracle import codec_oracle

    gt = data_dir / "coco-mini/annotations/person_keypoints_train2017.json"
    quarter = codec_oracle("higherhrnet", gt, data_dir / "coco-mini/train2017", 512, num_deconvs=0)
    half = codec_oracle("higherhrnet", gt, data_dir / "coco-mini/train2017", 512, num_deconvs=1)
    # Measured 0.987 (1/4) and 0.990 (1/2 + 1/4), every person found (AP50 1.000). What is lost: joints of
    # different persons closer than a heatmap peak is wide, annotated joints outside the image.
    assert quarter["coco/AP50"] >= 0.99 and half["coco/AP50"] >= 0.99
    assert quarter["coco/AP"] >= 0.97 and half["coco/AP"] >= 0.99, (quarter["coco/AP"], half["coco/AP"])


def test_oracle_cli_refuses_what_it_cannot_score(tmp_path: Path, capsys) -> None:
    from posekit.cli import main

    (tmp_path / "gt.json").write_text("{}")
    for argv, fragment in (
        (["eval", "--oracle", "topdown", "--gt", str(tmp_path / "gt.json")], "not a whole-image family"),
        (["eval", "--oracle", "higherhrnet", "--gt", str(tmp_path / "joints.mat")], "COCO-format"),
        (["eval", "--oracle", "higherhrnet", "--gt", str(tmp_path / "gt.json"), "--input-size", "100"], "multiple of 32"),
        (["eval", "--oracle", "higherhrnet", "--gt", str(tmp_path / "gt.json")], "gt.json"),
        (["eval", "--model", "movenet-multipose", "--gt", str(tmp_path / "gt.json"), "--images", str(tmp_path), "--mosaics", "5"], "--mosaics 5"),
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert fragment in err and "\n" not in err, err


def test_packaged_model_round_trip_and_checks(tmp_path: Path) -> None:
    """A checkpoint shipped as fp16 safetensors rebuilds the same model (to fp16 precision); a file whose
    sha256 differs from the recorded one, or a foreign file, is refused with one line."""
    from dataclasses import asdict

    from posekit.engine.config import Config, DataConfig
    from posekit.zoo.checkpoints import CHECKPOINT_FORMAT, CheckpointError, model_from_checkpoint, state_sha256
    from posekit.zoo.packaged import read_packaged, write_packaged

    cfg = HigherHRNetConfig(backbone="resnet18", num_deconvs=1, deconv_channels=8, num_basic_blocks=1)
    model = HigherHRNetModel(COCO17, (64, 64), cfg).eval()
    weights = model.state_dict()
    config = asdict(Config(data=DataConfig(input_size=(64, 64)), model=cfg))
    torch.save({"format": CHECKPOINT_FORMAT, "family": "higherhrnet", "spec": "coco17", "config": config, "model": weights,
                "weights_sha256": state_sha256(weights)}, tmp_path / "checkpoint.pt")  # fmt: skip
    sha = write_packaged(tmp_path / "checkpoint.pt", tmp_path / "m.safetensors")
    rebuilt = model_from_checkpoint("m", read_packaged(tmp_path / "m.safetensors", sha))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(model(x), rebuilt(x)):
            torch.testing.assert_close(a, b, atol=2e-2, rtol=2e-2)
    with pytest.raises(CheckpointError, match="sha256"):
        read_packaged(tmp_path / "m.safetensors", "0" * 64)
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="not a readable"):
        read_packaged(tmp_path / "bad.safetensors")


@pytest.mark.data
@pytest.mark.weights
def test_shipped_higherhrnet_small_is_intact_and_finds_people(tmp_path: Path, data_dir: Path, coco_extra_heldout: Path, weights) -> None:
    """The shipped model matches its recorded sha256, fits in 10 MB, and scores on the 20 coco-extra images
    its training held out (images 70-89) what the README reports (AP 0.18 measured; a margin for threads)."""
    import json

    from posekit.cli import main
    from posekit.zoo.packaged import MODELS_DIR, PACKAGED, packaged_state

    path = MODELS_DIR / "higherhrnet-small.safetensors"
    assert path.stat().st_size <= 10_000_000
    state = packaged_state("higherhrnet-small")  # raises on a sha256 mismatch
    assert state["family"] == "higherhrnet" and "higherhrnet_small_mosaic" in PACKAGED["higherhrnet-small"].command
    stats = tmp_path / "stats.json"
    assert main(["eval", "--gt", str(coco_extra_heldout), "--images", str(data_dir / "coco-extra/train2017"),
                 "--model", "higherhrnet-small", "--out-dir", str(tmp_path / "e"), "--out", str(stats), "--quiet"]) == 0  # fmt: skip
    assert json.loads(stats.read_text())["stats"]["AP"] >= 0.12


def test_paper_scale_configs_build_the_paper_models() -> None:
    from posekit.engine.config import load_config
    from posekit.models import build_model

    root = Path(__file__).resolve().parents[1] / "configs"
    for name, width, size in (("higherhrnet_w32_512_coco.yaml", 32, 512), ("higherhrnet_w48_640_coco.yaml", 48, 640)):
        cfg = load_config(root / name)
        assert cfg.data.input_size == (size, size) and cfg.model.family == "higherhrnet" and cfg.train.device == "auto"
        model = build_model(cfg.model, COCO17, cfg.data.input_size)
        assert model.backbone.out_channels == width and model.strides == (4, 2)
        assert len(model.deconvs) == 1 and len(model.deconvs[0].blocks) == 4
