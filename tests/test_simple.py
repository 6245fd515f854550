"""SIMPLE: the codec's oracle on real COCO, the grouping geometry, a grouping module that learns to suppress
another person's joints, the teacher-frame ROIs of mimicking, and stage 2 switching on with a real teacher."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from posekit.codecs.simple import keypoint_boxes, own_windows, refine_on_map, roi_keypoints, student_rois
from posekit.distill.mimic_teacher import gaussian_maps, teacher_frame_boxes
from posekit.models.simple import GroupingModule

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.data
def test_codec_oracle_on_coco_mini(coco_mini: Path) -> None:
    """GT encoded at 512 (triplet maps, heatmaps), boxes decoded from the maps, each box grouped as a perfect
    grouping module would (its own joints' activations kept): COCO AP >= 0.97."""
    from posekit.evaluation.oracle import codec_oracle

    stats = codec_oracle("simple", coco_mini / "annotations" / "person_keypoints_train2017.json", coco_mini / "train2017")
    # measured 0.984, every person found (AP50 1.000)
    assert stats["coco/AP"] >= 0.97 and stats["coco/AP50"] >= 0.99, stats


def test_keypoint_boxes_hold_the_joints() -> None:
    kps = np.array([[[10, 20, 2], [50, 100, 2], [0, 0, 0]], [[5, 5, 0], [0, 0, 0], [0, 0, 0]]], np.float32)
    boxes, ok = keypoint_boxes(kps, (128, 128))
    assert ok.tolist() == [True, False]
    assert boxes[0].tolist() == pytest.approx([10 - 8, 20 - 8, 50 + 8, 100 + 8])  # 10 % of the longer side (80)


def test_windows_and_roi_keypoints_invert_the_roi_grid() -> None:
    box = torch.tensor([[20.0, 30.0, 80.0, 150.0]])
    joint = torch.tensor([[[44.0, 90.0, 2.0], [0.0, 0.0, 0.0]]])
    win = own_windows(joint, box, (24, 32), 8.0)
    assert win.shape == (1, 2, 32, 24) and float(win[0, 1].abs().max()) == 0.0  # an unlabelled joint has no window
    xy, peak = roi_keypoints(win, box)
    step = torch.tensor([60 / 23, 120 / 31])
    assert bool(((xy[0, 0] - joint[0, 0, :2]).abs() <= step / 2 + 1e-4).all()) and float(peak[0, 0]) > 0.9


def test_refine_on_map_finds_the_sub_pixel_peak() -> None:
    """A Gaussian at heatmap (10.3, 7.8) (stride 4): a guess two heatmap pixels off lands within a quarter pixel."""
    stride, mu = 4, torch.tensor([10.3, 7.8])
    xs, ys = torch.arange(32.0), torch.arange(24.0)
    heat = torch.exp(-((xs[None] - mu[0]) ** 2 + (ys[:, None] - mu[1]) ** 2) / 8)[None]
    guess = ((mu + torch.tensor([1.0, -1.0]) + 0.5) * stride - 0.5)[None, None]
    xy, value = refine_on_map(heat, guess, stride)
    want = (mu + 0.5) * stride - 0.5
    assert bool(((xy[0, 0] - want).abs() <= 0.3 * stride).all()) and float(value) > 0.9


def test_student_rois_land_on_the_teachers_heatmap_grid() -> None:
    """A joint at input (70, 95) in the student's stride-4 maps, a teacher crop (scale 2, shifted) with MoveNet's
    heatmap convention: the student ROI's peak is the teacher heatmap pixel the crop matrices put the joint at."""
    stride, size, side = 4, 256, 64
    joint = np.array([70.0, 95.0])
    crop = np.array([[2.0, 0, -60.0], [0, 2.0, -110.0]])  # input -> crop pixels
    heat_matrix = np.array([[size / side, 0, -0.5], [0, size / side, -0.5]])  # heatmap -> crop pixels
    hx, hy = ((joint + 0.5) / stride - 0.5).tolist()
    xs, ys = torch.arange(64.0), torch.arange(64.0)
    student = torch.exp(-((xs[None] - hx) ** 2 + (ys[:, None] - hy) ** 2) / 2)[None, None]
    rois = torch.from_numpy(teacher_frame_boxes(crop[None], heat_matrix, (side, side)))
    roi = student_rois(student, rois, torch.zeros(1, dtype=torch.long), (side, side), stride)[0, 0]
    in_crop = crop[:, :2] @ joint + crop[:, 2]
    want = (in_crop - heat_matrix[:, 2]) / np.diag(heat_matrix[:, :2])
    j, i = divmod(int(roi.argmax()), side)
    assert abs(i - want[0]) <= 1 and abs(j - want[1]) <= 1
    maps = gaussian_maps(want[None, None].astype(np.float32), np.ones((1, 1), bool), (side, side), 2.0)
    assert np.unravel_index(maps[0, 0].argmax(), maps[0, 0].shape) == (j, i)


def test_grouping_module_learns_to_suppress_another_persons_joint() -> None:
    """The overfit that the grouping loss must achieve: in a box around person A, whose ROI also holds person B's
    same joint, the module keeps A's activation and removes B's."""
    torch.manual_seed(0)
    box = torch.tensor([[0.0, 0.0, 63.0, 127.0]])
    a, b = torch.tensor([[[30.0, 60.0, 2.0]]]), torch.tensor([[[58.0, 20.0, 2.0]]])
    xs, ys = torch.arange(16.0) * 4 + 1.5, torch.arange(32.0) * 4 + 1.5

    def gauss(p: torch.Tensor) -> torch.Tensor:
        return torch.exp(-((xs[None] - p[0]) ** 2 + (ys[:, None] - p[1]) ** 2) / (2 * 8.0**2))

    heat = torch.maximum(gauss(a[0, 0]), gauss(b[0, 0]))[None, None]
    rois = student_rois(heat, box, torch.zeros(1, dtype=torch.long), (24, 32), 4)
    target = rois * own_windows(a, box, (24, 32), 16.0)
    module = GroupingModule(1, 16)
    opt = torch.optim.Adam(module.parameters(), 0.01)
    for _ in range(150):
        loss = ((module(rois) - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    module.eval()
    with torch.no_grad():
        out = module(rois)[0, 0]
    xy, _ = roi_keypoints(out[None, None], box)
    assert float((xy[0, 0] - a[0, 0, :2]).norm()) < 4.0  # the kept peak is A's
    bi, bj = round(58.0 * 23 / 63), round(20.0 * 31 / 127)
    assert float(out[bj, bi]) < 0.1 * float(rois[0, 0, bj, bi])  # B's activation suppressed


@pytest.mark.data
@pytest.mark.weights
def test_stage_two_adds_mimicking_of_a_real_teacher(coco_mini: Path, weights, tmp_path: Path) -> None:
    """Before `mimic_start` the loss has no mimicking terms; from it on, MoveNet Thunder's maps on each person's
    crop give finite L_m terms that reach the student's pose head; the teacher's outputs come from the disk cache
    the second time, and `mimic: pred` keeps only the predicted-heatmap term."""
    from posekit.engine.config import load_config
    from posekit.engine.trainer import Trainer

    cfg = load_config(ROOT / "configs" / "simple_small_mosaic.yaml", {
        "data.input_size": [128, 128], "data.mosaic.count": 0, "data.num_workers": 0, "train.batch_size": 2, "data.train_range": [0, 4],
        "data.val_range": [70, 71], "model.mimic_start": 1, "model.teacher_cache": str(tmp_path / "cache")})  # fmt: skip
    trainer = Trainer(cfg, tmp_path / "run", quiet=True)
    model = trainer.model
    batch = default_collate([trainer.train_set[i] for i in (0, 1, 2)])
    assert int(batch["gt_valid"].sum()) >= 2  # augmented items can leave every person outside: these hold some
    assert set(model.loss({**batch, "step": torch.tensor(0)})) == {"pose_mse", "det_focal", "det_offset_l1", "group_mse"}
    terms = model.loss({**batch, "step": torch.tensor(1)})
    assert {"mimic_gt", "mimic_pred"} <= set(terms) and all(torch.isfinite(v) for v in terms.values())
    (terms["mimic_gt"] + terms["mimic_pred"]).backward()
    assert model.pose_head[-1].weight.grad.abs().sum() > 0 and model.adapter_pred.conv.weight.grad is not None
    cache = model.teacher().run
    misses = cache.misses
    assert misses > 0 and cache.hits == 0
    model.cfg.mimic = "pred"
    again = model.loss({**batch, "step": torch.tensor(1)})
    assert cache.hits == misses and cache.misses == misses
    assert "mimic_pred" in again and "mimic_gt" not in again
    torch.testing.assert_close(again["mimic_pred"], terms["mimic_pred"])


def test_detected_mimic_boxes_are_the_students_decoded_boxes() -> None:
    """Algorithm 1's boxes (`mimic_boxes: detected`): the student's own triplet maps decoded; maps equal to the
    targets of two persons give back their two boxes."""
    from torchvision.ops import box_iou

    from posekit.data.specs import get_spec
    from posekit.models.simple import SimpleConfig, SimpleModel

    model = SimpleModel(get_spec("coco17"), (128, 128), SimpleConfig(backbone="stemnet", features="output", mimic_boxes="detected"))
    kps = np.zeros((2, 17, 3), np.float32)
    kps[0, :, :2], kps[1, :, :2] = np.linspace([20, 10], [50, 90], 17), np.linspace([70, 30], [110, 120], 17)
    kps[..., 2] = 2
    t = model.codec.encode(kps, np.zeros((2, 17), bool), np.zeros((32, 32), bool))
    p = torch.from_numpy(t["box_heatmaps"]).clamp(1e-4, 1 - 1e-4)
    logits, offsets = torch.log(p / (1 - p))[None], torch.from_numpy(t["box_offsets"])[None]
    boxes = model.mimic_boxes({"image": torch.zeros(1, 3, 128, 128)}, logits, offsets)
    assert len(boxes) == 1 and len(boxes[0]) == 2
    assert bool((box_iou(torch.from_numpy(t["gt_boxes"][:2]), boxes[0]).max(1).values >= 0.95).all())


@pytest.mark.data
@pytest.mark.weights
def test_shipped_simple_small(data_dir: Path, tmp_path: Path, weights) -> None:
    """The shipped model matches its sha256, fits in 10 MB, and scores on the held-out coco-extra images 70-89
    what it scored when packaged (the 2000-step warm + pseudo run of docs/warm_start.md: AP 0.348 for the fp32
    checkpoint), through `posekit eval --model`."""
    import json

    from posekit.cli import main
    from posekit.data.datasets import read_coco
    from posekit.zoo.packaged import MODELS_DIR, PACKAGED, packaged_state

    assert (MODELS_DIR / "simple-small.safetensors").stat().st_size <= 10_000_000
    state = packaged_state("simple-small")  # raises on a sha256 mismatch
    assert state["family"] == "simple" and "simple_small_mosaic" in PACKAGED["simple-small"].command
    extra = data_dir / "coco-extra"
    ann = extra / "annotations" / "person_keypoints_train2017.json"
    held_out = {s.image_id for s in read_coco(ann, extra / "train2017")[70:90]}
    gt = json.loads(ann.read_text())
    gt["images"] = [i for i in gt["images"] if i["id"] in held_out]
    gt["annotations"] = [a for a in gt["annotations"] if a["image_id"] in held_out]
    (tmp_path / "heldout.json").write_text(json.dumps(gt))
    stats = tmp_path / "stats.json"
    assert main(["eval", "--gt", str(tmp_path / "heldout.json"), "--images", str(extra / "train2017"), "--model", "simple-small",
                 "--out-dir", str(tmp_path / "e"), "--out", str(stats), "--quiet"]) == 0  # fmt: skip
    assert json.loads(stats.read_text())["stats"]["AP"] == pytest.approx(0.348, abs=0.01)
