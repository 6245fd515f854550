"""The DistilPose family: outputs, an overfit of the regression student, the teacher hook (eq. 7's terms, the
teacher frozen and out of the student's checkpoint) and the MoveNet teacher's maps resampled onto the
student's grid checked against MoveNet's own keypoints on real persons."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

from posekit.data.specs import get_spec
from posekit.distill import simulated_heatmaps as sh
from posekit.distill.online import MoveNetOnlineTeacher, channel_map
from posekit.engine.config import Config, DataConfig
from posekit.models.distilpose import DistilPoseConfig, DistilPoseModel
from posekit.zoo.checkpoints import CHECKPOINT_FORMAT, state_sha256

SPEC = get_spec("lsp14")


def _model(output: str = "regression", encoder: str = "tokens", teacher: str = "", size: int = 32) -> DistilPoseModel:
    torch.manual_seed(0)
    cfg = DistilPoseConfig(backbone="stemnet", output=output, encoder=encoder, patch=(2, 2), dim=32, depth=2, heads=4, mlp_ratio=2,
                           teacher=teacher, flip_test=False)  # fmt: skip
    return DistilPoseModel(SPEC, (size, size), cfg)


def _batch(n: int = 4, size: int = 32) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {"image": torch.randn(n, 3, size, size, generator=g), "keypoints": torch.rand(n, 14, 2, generator=g) * (size - 1),
            "visible": torch.ones(n, 14), "heatmaps": torch.rand(n, 14, size // 4, size // 4, generator=g), "weights": torch.ones(n, 14)}  # fmt: skip


def _save(model: DistilPoseModel, path: Path) -> Path:
    """A checkpoint as the trainer writes it (the fields `load_model` reads)."""
    weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
    cfg = Config(data=DataConfig(format="lsp", input_size=model.input_size), model=model.cfg)
    torch.save({"format": CHECKPOINT_FORMAT, "family": "distilpose", "spec": SPEC.name, "config": asdict(cfg), "model": weights,
                "weights_sha256": state_sha256(weights)}, path)  # fmt: skip
    return path


def test_outputs_of_student_teacher_and_cnn_variant() -> None:
    x = _batch()["image"]
    mu, sigma, score = _model().eval()(x)
    assert mu.shape == sigma.shape == (4, 14, 2) and score.shape == (4, 14)
    assert (mu >= 0).all() and (mu <= 7).all() and (sigma > 0.1).all() and ((score > 0) & (score < 1)).all()
    assert _model("heatmap").eval()(x).shape == (4, 14, 8, 8)
    assert _model(encoder="pooled").eval()(x)[0].shape == (4, 14, 2)
    with pytest.raises(ValueError, match="does not tile"):
        DistilPoseModel(SPEC, (36, 36), DistilPoseConfig(backbone="stemnet", patch=(2, 2), dim=32, depth=1, heads=4))
    xy, scores = _model().eval().predict_crops(x)
    assert xy.shape == (4, 14, 2) and (xy >= 0).all() and (xy <= 31).all()  # crop pixels, not map pixels


def test_regression_student_overfits_a_fixed_batch() -> None:
    model, batch = _model(), _batch()
    opt = torch.optim.Adam(model.parameters(), 2e-3)
    for _ in range(300):
        loss = sum(model.loss(batch).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
    xy, _ = model.eval().predict_crops(batch["image"])
    assert np.abs(xy - batch["keypoints"].numpy()).mean() < 1.0  # crop pixels, from a random start of ~10


def test_token_teacher_overfits_a_fixed_batch_instead_of_staying_at_the_mean_heatmap() -> None:
    """The teacher must tell images apart: memorising 8 crops' Gaussian maps takes image-dependent keypoint
    tokens. With a randomly initialised last layer the tokens collapsed to one value for every image and the
    loss stayed at the mean heatmap's (the 500-step LSP teacher did the same)."""
    model, batch = _model("heatmap", size=64), _batch(8, 64)
    maps = [model.codec.encode(k.numpy(), np.ones(14)) for k in batch["keypoints"]]
    batch["heatmaps"] = torch.from_numpy(np.stack([m for m, _ in maps]))
    mean_map_loss = ((batch["heatmaps"] - batch["heatmaps"].mean(0)) ** 2).mean().item()
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    for _ in range(100):
        loss = model.loss(batch)["heatmap_mse"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    # measured: 0.27 x the mean heatmap's loss, token std 0.94 across images; a random last layer: 1.10 and 0.06
    assert loss.item() < 0.5 * mean_map_loss
    keypoint_tokens = model.tokens(batch["image"])[0]
    assert keypoint_tokens.std(0).mean() > 0.3  # differs from image to image


def test_student_trains_with_every_term_of_eq7_and_the_teacher_stays_frozen(tmp_path: Path) -> None:
    teacher = _model("heatmap")
    path = _save(teacher, tmp_path / "teacher.pt")
    student, batch = _model(teacher=str(path)).train(), _batch()
    terms = student.loss(batch)
    assert set(terms) == {"regression", "simulated_heatmap", "confidence", "keypoint_tokens", "visual_tokens"}
    sum(terms.values()).backward()
    online = student.teacher()
    assert all(p.grad is None for p in online.model.parameters())
    assert not any("teacher" in k for k in student.state_dict())  # never in the student's checkpoint
    # the terms are eq. 7's, on the teacher's own maps and tokens of the same crops
    with torch.no_grad():
        kt, vt = online.model.tokens(batch["image"])
        maps = online.model.outputs(kt)
        skt, svt = student.tokens(batch["image"])
        mu, sigma, score = student.outputs(skt)
    torch.testing.assert_close(terms["simulated_heatmap"], sh.ALPHA_SH * sh.simulated_heatmap_loss(mu, sigma, maps))
    torch.testing.assert_close(terms["keypoint_tokens"], sh.ALPHA_KT * ((skt - kt) ** 2).mean())
    torch.testing.assert_close(terms["visual_tokens"], sh.ALPHA_VT * ((svt - vt) ** 2).mean())
    # switches: Simulated Heatmaps only, and no teacher at all
    student.cfg.token_distill = False
    assert set(student.loss(batch)) == {"regression", "simulated_heatmap", "confidence"}
    assert set(_model().loss(batch)) == {"regression"}


def test_channel_map_by_joint_name() -> None:
    index, valid = channel_map(SPEC.keypoints, get_spec("coco17").keypoints)
    assert valid.sum() == 12 and not valid[SPEC.keypoints.index("neck")] and not valid[SPEC.keypoints.index("head_top")]
    assert index[SPEC.keypoints.index("left_wrist")] == get_spec("coco17").keypoints.index("left_wrist")


@pytest.mark.data
@pytest.mark.weights
def test_movenet_maps_on_the_student_grid_peak_where_movenet_puts_the_joints(coco_mini: Path, weights) -> None:
    """Real persons: MoveNet Lightning on the student's own 128x128 crops, its heatmaps resampled onto the
    student's 32x32 grid; each confident joint's peak, taken back to the image, lies within about one student
    map pixel of the keypoint MoveNet itself decodes from the same crop (whose offsets refine the peak)."""
    from posekit.data.datasets import read_coco
    from posekit.data.topdown import crop_persons
    from posekit.data.transforms import apply_inverse
    from posekit.pipeline.readers import read_image

    student = DistilPoseModel(get_spec("coco17"), (128, 128), DistilPoseConfig(backbone="stemnet", patch=(4, 4), dim=32, depth=1, heads=4))
    online = MoveNetOnlineTeacher("movenet-lightning", student)
    samples = [s for s in read_coco(coco_mini / "annotations" / "person_keypoints_train2017.json", coco_mini / "train2017")
               if any((i.keypoints[:, 2] > 0).sum() >= 10 for i in s.instances)][:3]  # fmt: skip
    errors, checked = [], 0
    for s in samples:
        image = read_image(s.image_path)
        boxes = np.array([i.box for i in s.instances if (i.keypoints[:, 2] > 0).sum() >= 10], np.float32)
        crops, mats = crop_persons(image, boxes, (128, 128))
        maps, valid, _ = online(torch.from_numpy(crops))
        assert valid.all() and maps.shape == (len(boxes), 17, 32, 32)
        flat = maps.flatten(2)
        peak = flat.argmax(-1)
        q = torch.stack([peak % 32, peak // 32], -1).numpy().astype(np.float32)
        from_maps = apply_inverse(mats, q / student.codec.scale)
        crops_u8 = torch.from_numpy(crops) * online.std + online.mean
        raw = online.teacher.raw(torch.nn.functional.interpolate(crops_u8, size=(192, 192), mode="bilinear").round().clamp(0, 255)
                                 .to(torch.uint8).permute(0, 2, 3, 1).numpy())["keypoints"]  # fmt: skip
        own = apply_inverse(mats, (raw[..., [1, 0]] * 192 - 0.5 + 0.5) * 128 / 192 - 0.5)
        confident = raw[..., 2] > 0.5
        pixel = (boxes[:, 2:] - boxes[:, :2]).max(1) * 1.25 / 32  # one student map pixel in image pixels
        errors += list((np.linalg.norm(from_maps - own, axis=-1) / pixel[:, None])[confident])
        checked += confident.sum()
    assert checked >= 20
    assert np.median(errors) < 1.0 and np.percentile(errors, 90) < 2.0, (np.median(errors), np.percentile(errors, 90))


def test_encoder_layer_equals_torch_transformer_layer() -> None:
    """The written-out layer (it exports to ONNX; nn.TransformerEncoderLayer's inference fast path does not)
    computes what nn.TransformerEncoderLayer(norm_first, gelu, no dropout) computes, with its parameter names."""
    from posekit.models.distilpose import EncoderLayer

    torch.manual_seed(0)
    reference = torch.nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, activation="gelu", batch_first=True, norm_first=True).eval()
    layer = EncoderLayer(32, 4, 64)
    layer.load_state_dict(reference.state_dict())
    x = torch.randn(3, 10, 32)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), reference(x), atol=1e-5, rtol=1e-5)


def test_keypoint_reduction_mean_is_the_sum_over_the_teachers_keypoints(tmp_path: Path) -> None:
    path = _save(_model("heatmap"), tmp_path / "teacher.pt")
    batch = _batch()
    summed = _model(teacher=str(path)).loss(batch)
    student = _model(teacher=str(path))
    student.cfg.keypoint_reduction = "mean"
    averaged = student.loss(batch)
    for term in ("simulated_heatmap", "confidence"):
        torch.testing.assert_close(averaged[term], summed[term] / 14)
    torch.testing.assert_close(averaged["regression"], summed["regression"])


def test_simulated_heatmaps_join_at_sh_start(tmp_path: Path) -> None:
    """`sh_start`: no L_SH or L_CS before that training step (the trainer passes the step with the batch), every
    eq. 7 term from it on, the same values as a run without the delay."""
    path = _save(_model("heatmap"), tmp_path / "teacher.pt")
    batch = _batch()
    student = _model(teacher=str(path))
    student.cfg.sh_start = 3
    early = student.loss({**batch, "step": torch.tensor(2)})
    assert "regression" in early and not {"simulated_heatmap", "confidence"} & set(early)  # token terms are not delayed
    late = student.loss({**batch, "step": torch.tensor(3)})
    at_once = _model(teacher=str(path)).loss(batch)
    assert set(late) == set(at_once) and "simulated_heatmap" in late
    for term in late:
        torch.testing.assert_close(late[term], at_once[term])


def test_normalised_teacher_peaks_distil_the_shape(tmp_path: Path) -> None:
    """teacher_peaks=normalised: L_SH against each teacher map divided by its peak (maps peaking under 0.1 left
    out); L_CS still against the raw maps."""
    path = _save(_model("heatmap"), tmp_path / "teacher.pt")
    batch = _batch()
    student = _model(teacher=str(path))
    student.cfg.teacher_peaks = "normalised"
    terms = student.loss(batch)
    with torch.no_grad():
        maps = student.teacher()(batch["image"])[0]
        mu, sigma, score = student(batch["image"])
    peaks = maps.amax((-2, -1))
    expected = sh.simulated_heatmap_loss(mu, sigma, maps / peaks.clamp_min(0.1)[..., None, None], (peaks >= 0.1).float())
    torch.testing.assert_close(terms["simulated_heatmap"], sh.ALPHA_SH * expected)
    torch.testing.assert_close(terms["confidence"], sh.ALPHA_CS * sh.confidence_loss(mu, score, maps))


@pytest.mark.data
@pytest.mark.weights
def test_shipped_distilpose_small(data_dir: Path, tmp_path: Path, coco_extra_heldout: Path, weights) -> None:
    """The shipped student matches its sha256, fits in 10 MB, predicts COCO-17, and scores on the 20 coco-extra
    images its training held out (70-89, CenterNet boxes) what docs/distilpose_coco17.md reports (AP 0.31 from
    the fp32 checkpoint; a margin for fp16 and threads)."""
    import json

    from posekit.cli import main
    from posekit.zoo.packaged import MODELS_DIR, PACKAGED, packaged_state

    assert (MODELS_DIR / "distilpose-small.safetensors").stat().st_size <= 10_000_000
    state = packaged_state("distilpose-small")  # raises on a sha256 mismatch
    assert state["family"] == "distilpose" and state["spec"] == "coco17" and "distilpose_coco17" in PACKAGED["distilpose-small"].command
    stats = tmp_path / "stats.json"
    assert main(["eval", "--gt", str(coco_extra_heldout), "--images", str(data_dir / "coco-extra/train2017"),
                 "--model", "distilpose-small", "--out-dir", str(tmp_path / "e"), "--out", str(stats), "--quiet"]) == 0  # fmt: skip
    assert json.loads(stats.read_text())["stats"]["AP"] >= 0.25


def test_bench_networks_times_a_trained_crop_model_beside_the_graphs(data_dir: Path, weights, capsys) -> None:
    """`posekit bench --networks` takes a trained top-down model (crop time against Lightning's, #33); a
    whole-image model is refused in one line."""
    import json

    from posekit.cli import main

    image = str(data_dir / "fixtures" / "coco" / "000000196141.jpg")
    assert main(["bench", image, "--networks", "distilpose-small", "--batch-sizes", "2", "--backends", "torch", "--threads", "1"]) == 0
    (record,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert record["unit"] == "ms/crop" and record["config"]["graph"] == "distilpose-small" and record["value"] > 0
    assert record["gflops_per_forward"] == pytest.approx(2 * 0.415, abs=0.01)  # two 160x160 crops (FlopCounterMode)
    assert main(["bench", image, "--networks", "higherhrnet-small", "--batch-sizes", "1", "--backends", "torch"]) == 2
    err = capsys.readouterr().err
    assert "whole images" in err and err.count("\n") == 1
