"""Training engine: bit-identical resume, DDP gradients, data split across ranks, overfit on real persons."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from posekit.data.specs import get_spec
from posekit.engine.config import load_config
from posekit.engine.trainer import Trainer, lr_factor, release_process_group
from posekit.errors import PosekitError
from posekit.models import build_model
from posekit.models.graph_trunks import TRUNKS
from posekit.postprocess.nms import box_iou

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "data.input_size": [64, 64], "data.val_range": [6, 8], "model.head_channels": 16, "train.batch_size": 4,
    "train.steps": 6, "train.log_every": 1, "train.checkpoint_every": 0, "model.flip_test": False,
    "data.augment": {"scale": 0.3, "rotation": 30.0, "rotation_prob": 0.6, "flip": True, "half_body_prob": 0.3, "jitter": 0.1, "colour": 0.2},
}  # fmt: skip


@pytest.mark.data
def test_resume_after_a_kill_is_bit_identical(data_dir: Path, tmp_path: Path) -> None:
    cfg = load_config(ROOT / "configs" / "overfit_coco_mini.yaml", TINY)
    straight = Trainer(cfg, tmp_path / "a", quiet=True)
    straight.train()
    first = Trainer(cfg, tmp_path / "b", quiet=True)
    first.train(max_steps=3)  # "killed" here: only the checkpoint survives
    del first
    resumed = Trainer(cfg, tmp_path / "b", quiet=True)
    resumed.load_checkpoint()
    assert resumed.step == 3
    resumed.train()
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert straight.optimizer.state_dict()["state"][0]["step"] == resumed.optimizer.state_dict()["state"][0]["step"]


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_config_loads_and_builds(path: Path, request: pytest.FixtureRequest) -> None:
    cfg = load_config(path)  # unknown keys raise
    if cfg.model.backbone in TRUNKS:
        request.getfixturevalue("weights")  # pretrained trunks come from the fetched graphs
    model = build_model(cfg.model, get_spec("coco17"), cfg.data.input_size)
    assert all(side % model.size_divisor == 0 for side in cfg.data.input_size), cfg.data.input_size
    w, h = cfg.data.input_size
    with torch.no_grad():
        out = model.eval()(torch.zeros(1, 3, h, w))
    if cfg.model.family == "posedet":  # one score per candidate, over every pyramid level
        assert out[0].shape == (1, len(model.codec.candidates()[1]))
        return
    if cfg.model.family == "distilpose" and cfg.model.output == "regression":  # (mu, sigma, score) in heatmap pixels
        assert out[0].shape == (1, 17, 2) and (out[0] <= torch.tensor([w // model.stride - 1, h // model.stride - 1])).all()
        return
    heatmaps = out[2] if getattr(cfg.model, "integral", False) else out if torch.is_tensor(out) else out[1]
    assert heatmaps.shape[-2:] == (h // model.stride, w // model.stride)


@pytest.mark.data
def test_input_size_must_tile_the_backbone(data_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(PosekitError, match=r"data.input_size \[100, 128\]: both sides must be multiples of 32 for resnet18"):
        Trainer(load_config(ROOT / "configs" / "overfit_coco_mini.yaml", {"data.input_size": [100, 128]}), tmp_path, quiet=True)


def test_lr_schedules() -> None:
    cfg = load_config(ROOT / "configs" / "overfit_coco_mini.yaml", {"train.steps": 100, "train.warmup_steps": 10})
    t = cfg.train
    assert lr_factor(0, t) == pytest.approx(0.1) and lr_factor(9, t) == pytest.approx(1.0)
    assert lr_factor(55, t) == pytest.approx(0.5) and lr_factor(100, t) == pytest.approx(0.0)
    step = load_config(
        ROOT / "configs" / "overfit_coco_mini.yaml", {"train.scheduler": "step", "train.milestones": [50, 80], "train.warmup_steps": 0}
    ).train
    assert [lr_factor(s, step) for s in (0, 50, 80)] == pytest.approx([1.0, 0.1, 0.01])


@pytest.mark.data
def test_ranks_split_every_global_batch(data_dir: Path, monkeypatch) -> None:
    cfg = load_config(ROOT / "configs" / "overfit_coco_mini.yaml", {**TINY, "train.batch_size": 2})
    single = Trainer(cfg, quiet=True)
    monkeypatch.setenv("WORLD_SIZE", "2")
    plans = []
    for rank in (0, 1):
        t = Trainer.__new__(Trainer)
        t.cfg, t.train_set, t.world, t.rank = cfg, single.train_set, 2, rank
        plans.append(t.epoch_batches(0))
    whole = [i for b in Trainer.epoch_batches.__get__(_as_world(single, 1))(0) for i in b]
    merged = [i for b0, b1 in zip(*plans) for i in b0 + b1]
    assert merged == whole[: len(merged)] and len(set(merged)) == len(merged)


def _as_world(trainer: Trainer, world: int) -> Trainer:
    trainer.world, trainer.rank = world, 0
    trainer.cfg.train.batch_size = 4  # one rank with the global batch of two ranks of 2
    return trainer


def _ddp_worker(rank: int, init: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 2))
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    data = torch.load(out + ".data")
    x, y = data["x"][rank * 4 : (rank + 1) * 4], data["y"][rank * 4 : (rank + 1) * 4]
    ((ddp(x) - y) ** 2).mean().backward()
    if rank == 0:
        torch.save({k: p.grad for k, p in model.named_parameters()}, out)
    del ddp  # the reducer holds the process group: release_process_group must be able to free it
    release_process_group()


def test_ddp_gloo_gradients_equal_single_process_on_the_whole_batch(tmp_path: Path) -> None:
    torch.manual_seed(1)
    data = {"x": torch.randn(8, 3, 8, 8), "y": torch.randn(8, 2)}
    out = str(tmp_path / "grads.pt")
    torch.save(data, out + ".data")
    mp.spawn(_ddp_worker, args=(f"file://{tmp_path / 'init'}", out), nprocs=2, join=True)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 2))
    ((model(data["x"]) - data["y"]) ** 2).mean().backward()
    ddp_grads = torch.load(out)
    for k, p in model.named_parameters():
        torch.testing.assert_close(ddp_grads[k], p.grad, atol=1e-6, rtol=1e-5)


@pytest.mark.slow
@pytest.mark.data
def test_overfit_eight_real_persons(data_dir: Path, tmp_path: Path) -> None:
    cfg = load_config(ROOT / "configs" / "overfit_coco_mini.yaml")
    trainer = Trainer(cfg, tmp_path, quiet=True)
    assert len(trainer.train_set) == 8
    summary = trainer.train()
    assert summary["coco/AP"] >= 0.9, summary

    # The same model evaluated on detection-file boxes (the top-down protocol): boxes equal to the
    # annotated ones with score 1 reproduce the annotated-box AP, and so do they with a low-scoring
    # false positive added to every image (its person score ranks it after every true person).
    persons = [(s.image_id, inst.box) for s, inst in trainer.val_set.items]
    exact = [{"image_id": i, "category_id": 1, "bbox": [float(v) for v in (*b[:2], *(b[2:] - b[:2]))], "score": 1.0} for i, b in persons]
    false_positives = [{"image_id": i, "category_id": 1, "bbox": [0.0, 0.0, 40.0, 40.0], "score": 0.3} for i in {i for i, _ in persons}]
    gt_box_metrics = {k: v for k, v in summary.items() if k.startswith("coco/")}
    for name, dets in (("exact", exact), ("with_false_positives", exact + false_positives)):
        (tmp_path / f"{name}.json").write_text(json.dumps(dets))
        on_dets = Trainer(load_config(ROOT / "configs" / "overfit_coco_mini.yaml", {"data.val_det_file": str(tmp_path / f"{name}.json")}),
                          tmp_path / name, quiet=True)  # fmt: skip
        assert len(on_dets.val_set) == len(dets) and not on_dets.val_set.items[0][1].keypoints.any()
        on_dets.model.load_state_dict(trainer.model.state_dict())
        assert on_dets.evaluate() == pytest.approx(gt_box_metrics, abs=1e-3), name

    # Training on a detector's boxes (here: shifted annotated boxes) pairs each with its person.
    rng = np.random.default_rng(0)
    shifted = [{**d, "bbox": [v + rng.uniform(-0.04, 0.04) * d["bbox"][2 + k % 2] for k, v in enumerate(d["bbox"])]} for d in exact]
    (tmp_path / "shifted.json").write_text(json.dumps(shifted + false_positives))
    cfg = load_config(ROOT / "configs" / "overfit_coco_mini.yaml", {"data.train_det_file": str(tmp_path / "shifted.json")})
    on_train_dets = Trainer(cfg, tmp_path / "train_dets", quiet=True).train_set
    assert sorted(inst.id for _, inst in on_train_dets.items) == sorted(inst.id for _, inst in trainer.train_set.items)
    ious = [box_iou(a.box[None], b.box[None])[0, 0] for (_, a), (_, b) in zip(on_train_dets.items, trainer.train_set.items)]
    assert min(ious) > 0.7, ious


def test_repeated_set_options_all_apply() -> None:
    """`--set a=1 --set b=2` keeps both (it kept only the last, and a Table 4 row silently trained the wrong model)."""
    from posekit.cli import build_parser

    args = build_parser().parse_args(["train", "c.yaml", "--set", "model.encoder=pooled", "--set", "a=1", "b=2"])
    assert args.set == ["model.encoder=pooled", "a=1", "b=2"]


@pytest.mark.data
def test_train_logs_lines_when_stdout_is_no_terminal(tmp_path: Path, data_dir: Path, capsys) -> None:
    """Under pytest stdout is no terminal, as in a log file: no progress bar, so every `log_every` steps one line."""
    from posekit.cli import main

    config = ROOT / "configs" / "overfit_coco_mini.yaml"
    args = ["train", str(config), "--out", str(tmp_path / "run"), "--max-steps", "2", "--set", "train.eval_every=0", "train.log_every=1"]
    assert main(args) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("step ")]
    assert [line.split()[1] for line in lines[:2]] == ["1/2", "2/2"] and "loss" in lines[0] and "lr" in lines[0]
    quiet = ["train", str(config), "--out", str(tmp_path / "quiet"), "--max-steps", "1", "--set", "train.eval_every=0", "--quiet"]
    assert main(quiet) == 0
    assert not [line for line in capsys.readouterr().out.splitlines() if line.startswith("step ") and " loss " in line]  # the summary only


def test_set_takes_floats_written_without_a_dot(tmp_path: Path) -> None:
    """`--set train.lr=1e-4` (and `lr: 5E-4` in a config): PyYAML alone reads these as strings, which the
    config then refused as "not a number"."""
    from posekit.engine.config import load_config, parse_overrides

    assert parse_overrides(["train.lr=1e-4", "a=-2E+2", "b=1.5", "c=1e4x", "d=10"]) == {"train.lr": 1e-4, "a": -200.0, "b": 1.5, "c": "1e4x", "d": 10}
    config = Path(__file__).resolve().parents[1] / "configs" / "overfit_coco_mini.yaml"
    text = config.read_text().replace("lr: 0.002", "lr: 5E-4")
    assert "lr: 5E-4" in text
    (tmp_path / "c.yaml").write_text(text)
    assert load_config(tmp_path / "c.yaml").train.lr == 5e-4
    assert load_config(config, parse_overrides(["train.lr=1e-4"])).train.lr == 1e-4
