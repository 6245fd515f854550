"""Pretrained trunks as trainable backbones: equal to the graphs' intermediate nodes, and trainable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from posekit.data.transforms import normalise, stretch
from posekit.models import build_backbone
from posekit.models.graph_trunks import TRUNKS, GraphTrunk
from posekit.pipeline.readers import read_image
from posekit.zoo.graph_module import TfjsGraphModule
from posekit.zoo.store import load_graph

pytestmark = [pytest.mark.weights, pytest.mark.data]
IMAGES = ("000000037666.jpg", "000000463557.jpg")  # coco-mini images with people


def _reference(name: str, image: np.ndarray, size: int) -> list[torch.Tensor]:
    spec = TRUNKS[name]
    resized, _ = stretch(image, size, size)
    graph = TfjsGraphModule(load_graph(spec.graph), outputs=[node for _, node in spec.features])
    dtype = torch.float32 if spec.graph == "centernet" else torch.int32
    return [o.permute(0, 3, 1, 2) for o in graph(torch.from_numpy(resized[None]).to(dtype))]


@pytest.mark.parametrize("name,size", [("movenet_thunder_fpn", 256), ("movenet_lightning_fpn", 192), ("movenet_multipose_fpn", 256), ("movenet_multipose_fpn", 320),
                                       ("centernet_mbv3", 512)])  # fmt: skip
def test_trunk_features_equal_the_graph_nodes(name: str, size: int, coco_mini: Path, weights) -> None:
    trunk = build_backbone(name)
    assert isinstance(trunk, GraphTrunk) and trunk.feature_strides == [4, 8, 16, 32]
    for file in IMAGES:
        image = read_image(coco_mini / "train2017" / file)
        refs = _reference(name, image, size)
        with torch.no_grad():
            feats = trunk.forward_features(torch.from_numpy(normalise(stretch(image, size, size)[0]))[None])
        for stride, ref, feat in zip(trunk.feature_strides, refs, feats):
            assert feat.shape == ref.shape == (1, feat.shape[1], size // stride, size // stride)
            assert (feat - ref).abs().max().item() <= 1e-4, (name, file, stride)


def test_trunk_weights_are_parameters_and_fine_tune(coco_mini: Path, weights) -> None:
    trunk = build_backbone("movenet_thunder_fpn")
    params = dict(trunk.named_parameters())
    assert len(params) > 100 and all(p.requires_grad for p in params.values())
    assert sum(p.numel() for p in params.values()) == sum(v.numel() for v in trunk.state_dict().values())
    # A non-nominal size (192) works: the FPN's constant-size resizes keep their ratio.
    image = read_image(coco_mini / "train2017" / IMAGES[0])
    x = torch.from_numpy(np.stack([normalise(stretch(image, 192, 192)[0]), normalise(stretch(image[:, ::-1], 192, 192)[0])]))
    target = torch.zeros(2, 1, 48, 48)  # a different blob per input: the output must depend on the image
    target[0, :, 10:20, 8:18] = 1.0
    target[1, :, 26:36, 30:40] = 1.0
    trivial = target.square().mean().item()  # the loss of predicting zeros everywhere
    torch.manual_seed(1)
    head = torch.nn.Conv2d(trunk.out_channels, 1, 1)

    # The gradient is the true one: a small step against it lowers the loss by eta * |g|^2 (first order).
    loss = ((head(trunk(x)) - target) ** 2).mean()
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in params.values())  # down to the first conv
    g2 = sum((p.grad**2).sum() for p in params.values()).item()
    eta = 1e-3 * loss.item() / g2
    with torch.no_grad():
        for p in params.values():
            p -= eta * p.grad
        stepped = ((head(trunk(x)) - target) ** 2).mean().item()
    assert stepped - (loss.item() - eta * g2) == pytest.approx(0, abs=0.05 * eta * g2)

    # Fine-tuning (trunk slower than the head, as the configs do) fits the targets.
    opt = torch.optim.Adam([{"params": trunk.parameters(), "lr": 1e-4}, {"params": head.parameters(), "lr": 1e-2}])
    for _ in range(15):
        loss = ((head(trunk(x)) - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * trivial, (loss.item(), trivial)  # measured: 0.011 vs 0.043
