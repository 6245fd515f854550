"""The model interface end to end: DDP through `loss`, checkpoints loaded by `load_model` and run by
predict / track / eval, and one clear line for bad checkpoints and configs."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from posekit.cli import main
from posekit.data.specs import get_spec
from posekit.engine.config import load_config
from posekit.engine.trainer import Trainer, release_process_group
from posekit.models.base import LossModule
from posekit.models.topdown import TopDownConfig, TopDownModel
from posekit.pipeline.writers import VIDEO_CODECS, pick_video_codec

RENDER_SUFFIX = VIDEO_CODECS[pick_video_codec()][1]  # .mp4 (H.264) or .webm (VP8), as this OpenCV can encode

ROOT = Path(__file__).resolve().parents[1]


def _tiny_topdown() -> TopDownModel:
    torch.manual_seed(0)
    return TopDownModel(get_spec("coco17"), (64, 64), TopDownConfig(backbone="resnet18", head_channels=16)).eval()


def _batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {"image": torch.randn(8, 3, 64, 64, generator=g), "heatmaps": torch.rand(8, 17, 16, 16, generator=g),
            "weights": (torch.rand(8, 17, generator=g) > 0.3).float()}  # fmt: skip


def _ddp_worker(rank: int, init: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    model = _tiny_topdown()
    ddp = torch.nn.parallel.DistributedDataParallel(LossModule(model))
    batch = {k: v[rank * 4 : (rank + 1) * 4] for k, v in _batch().items()}
    sum(ddp(batch).values()).backward()
    if rank == 0:
        torch.save({k: p.grad for k, p in model.named_parameters()}, out)
    del ddp  # the reducer holds the process group: release_process_group must be able to free it
    release_process_group()


def test_ddp_through_the_model_interface_equals_one_process(tmp_path: Path) -> None:
    out = str(tmp_path / "grads.pt")
    mp.spawn(_ddp_worker, args=(f"file://{tmp_path / 'init'}", out), nprocs=2, join=True)
    model = _tiny_topdown()  # BatchNorm in eval mode: per-rank batch statistics would differ by design
    sum(model.loss(_batch()).values()).backward()
    ddp_grads = torch.load(out)
    for k, p in model.named_parameters():
        torch.testing.assert_close(ddp_grads[k], p.grad, atol=1e-6, rtol=1e-4)


def _one_line_error(capsys, argv: list[str], *fragments: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("posekit: error:") and "\n" not in err and "Traceback" not in err, err
    for f in fragments:
        assert f in err, err
    return err


@pytest.mark.data
def test_bad_checkpoints_give_one_clear_line(tmp_path: Path, capsys, coco_mini: Path) -> None:
    image = str(next((coco_mini / "train2017").glob("*.jpg")))
    cfg = load_config(ROOT / "configs" / "overfit_coco_mini.yaml", {"data.input_size": [64, 64], "model.head_channels": 16,
                                                                   "train.batch_size": 4, "train.steps": 1})  # fmt: skip
    trainer = Trainer(cfg, tmp_path / "run", quiet=True)
    trainer.train()
    good = trainer.checkpoint_path()
    data = good.read_bytes()
    cases = {
        "empty.pt": (b"", "empty"),
        "truncated.pt": (data[: len(data) // 2], "truncated or corrupt"),
        "garbage.pt": (bytes(range(256)) * 64, "truncated or corrupt"),
        "pickle.pt": (pickle.dumps({"format": "posekit-checkpoint/1"}), "truncated or corrupt"),
    }
    for name, (content, fragment) in cases.items():
        (tmp_path / name).write_bytes(content)
        _one_line_error(capsys, ["predict", image, "--model", str(tmp_path / name), "--out", str(tmp_path / "o")], name, fragment)
    torch.save({"state_dict": {"w": torch.zeros(2)}}, tmp_path / "foreign.pt")
    _one_line_error(capsys, ["predict", image, "--model", str(tmp_path / "foreign.pt")], "not a posekit checkpoint")
    state = torch.load(good, weights_only=True)
    first = next(iter(state["model"]))
    state["model"][first] = state["model"][first] + 1
    torch.save(state, tmp_path / "edited.pt")
    _one_line_error(capsys, ["track", image, "--model", str(tmp_path / "edited.pt")], "do not match their sha256")
    _one_line_error(capsys, ["predict", image, "--model", str(tmp_path / "nowhere.pt")], "neither a model name", "nor a checkpoint path")
    _one_line_error(capsys, ["train", str(ROOT / "configs" / "overfit_coco_mini.yaml"), "--resume", "--out", str(tmp_path / "o2")], "no checkpoint")


def test_bad_configs_give_one_clear_line(tmp_path: Path, capsys) -> None:
    cfg = ROOT / "configs" / "overfit_coco_mini.yaml"
    text = cfg.read_text()
    cases = {
        "typo.yaml": (text.replace("batch_size:", "batchsize:"), "train: unknown key(s) batchsize"),
        "family.yaml": (text.replace("family: topdown", "family: hrnet"), "model.family 'hrnet' is not a model family"),
        "modelkey.yaml": (text.replace("head_channels:", "head_chanels:"), "model: unknown key(s) head_chanels"),
        "yaml.yaml": ("train: {steps: [1, 2\n", "not valid YAML"),
        "list.yaml": ("- 1\n- 2\n", "expected a mapping"),
    }
    for name, (content, fragment) in cases.items():
        (tmp_path / name).write_text(content)
        _one_line_error(capsys, ["train", str(tmp_path / name)], fragment)
    _one_line_error(capsys, ["train", str(tmp_path / "missing.yaml")], "cannot read the config")
    for setting, fragment in (("train.steps=abc", "train.steps: expected an integer"), ("train.batch_size=0", "batch_size must be > 0"),
                              ("train.steps", "expected KEY=VALUE"), ("data.input_size=[100]", "two positive integers"),
                              ("data.val_range=[5,2]", "start < stop"), ("model.head=fancy", "model.head 'fancy'"),
                              ("train.device=tpu", "train.device 'tpu'")):  # fmt: skip
        _one_line_error(capsys, ["train", str(cfg), "--set", setting], fragment)
    if not torch.cuda.is_available():
        _one_line_error(capsys, ["train", str(cfg), "--set", "train.device=cuda"], "sees no CUDA device")


@pytest.mark.slow
@pytest.mark.data
@pytest.mark.weights
def test_trained_checkpoints_run_in_predict_track_and_eval(tmp_path: Path, data_dir: Path, weights, capsys) -> None:
    """A whole-image model trained on LSP mosaics + COCO, and a top-down model, each trained a few steps
    through the generic trainer, then loaded by path in predict, track and eval on real images and a clip."""
    image_dir = data_dir / "coco-mini" / "train2017"
    clip = data_dir / "videos" / "demo.mp4"
    gt = data_dir / "coco-mini" / "annotations" / "person_keypoints_train2017.json"
    runs = {
        "centerpose": load_config(ROOT / "configs" / "centerpose_multipose_mosaic.yaml",
                                  {"data.input_size": [128, 128], "data.mosaic.count": 8, "data.num_workers": 0, "train.batch_size": 4,
                                   "train.steps": 3, "data.train_range": [0, 4], "data.val_range": [70, 73]}),
        "higherhrnet": load_config(ROOT / "configs" / "higherhrnet_small_mosaic.yaml",
                                   {"data.input_size": [128, 128], "data.mosaic.count": 8, "data.num_workers": 0, "train.batch_size": 4,
                                    "train.steps": 2, "data.train_range": [0, 4], "data.val_range": [70, 72]}),
        "posedet": load_config(ROOT / "configs" / "posedet_small_mosaic.yaml",
                               {"data.input_size": [128, 128], "data.mosaic.count": 8, "data.num_workers": 0, "train.batch_size": 4,
                                "train.steps": 2, "data.train_range": [0, 4], "data.val_range": [70, 72]}),
        # stage 2 from step 1: mimicking MoveNet Thunder (its outputs cached in the run's folder)
        "simple": load_config(ROOT / "configs" / "simple_small_mosaic.yaml",
                              {"data.input_size": [128, 128], "data.mosaic.count": 8, "data.num_workers": 0, "train.batch_size": 4,
                               "train.steps": 2, "data.train_range": [0, 4], "data.val_range": [70, 72], "model.mimic_start": 1,
                               "model.teacher_cache": str(tmp_path / "teacher_cache")}),
        "topdown": load_config(ROOT / "configs" / "overfit_coco_mini.yaml", {"data.input_size": [64, 64], "model.head_channels": 16,
                                                                             "train.batch_size": 4, "train.steps": 2}),
        "distilpose": load_config(ROOT / "configs" / "overfit_coco_mini.yaml",
                                  {"data.input_size": [64, 64], "train.batch_size": 4, "train.steps": 2,
                                   "model": {"family": "distilpose", "backbone": "stemnet", "patch": [2, 2], "dim": 32, "depth": 1, "heads": 4}}),
    }  # fmt: skip
    for family, cfg in runs.items():
        out = tmp_path / family
        summary = Trainer(cfg, out, quiet=True).train()
        assert summary["step"] == cfg.train.steps and "coco/AP" in summary
        ckpt = out / "checkpoint.pt"
        assert main(["predict", str(image_dir), "--model", str(ckpt), "--out", str(tmp_path / f"p_{family}"), "--quiet"]) == 0
        results = json.loads((tmp_path / f"p_{family}" / "results.json").read_text())
        assert all(len(r["keypoints"]) == 51 for r in results)
        assert main(["track", str(clip), "--model", str(out), "--max-frames", "6", "--out", str(tmp_path / f"t_{family}"), "--quiet"]) == 0
        tracked = json.loads((tmp_path / f"t_{family}" / "results.json").read_text())
        assert {r["image_id"] for r in tracked} <= set(range(1, 7)) and all("track_id" in r for r in tracked)
        assert (tmp_path / f"t_{family}" / "render" / f"demo{RENDER_SUFFIX}").stat().st_size > 0
        assert main(["eval", "--gt", str(gt), "--model", str(ckpt), "--images", str(image_dir), "--out-dir", str(tmp_path / f"e_{family}"),
                     "--quiet"]) == 0  # fmt: skip
        assert "coco" in capsys.readouterr().out
        # export: the forward as ONNX, checked on real images, then run alone in a plain onnxruntime session
        onnx_file = tmp_path / f"{family}.onnx"
        assert main(["export", "--model", str(ckpt), "--images", str(image_dir), "--max-images", "2", "--out", str(onnx_file)]) == 0
        assert "max abs diff" in capsys.readouterr().out
        session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
        shape = [3, *cfg.data.input_size[::-1]]
        outs = session.run(None, {"image": np.zeros((3, *shape), np.float32)})
        assert all(o.shape[0] == 3 and np.isfinite(o).all() for o in outs)
        assert session.get_modelmeta().custom_metadata_map["posekit.family"] == family
