"""Backbones (HRNet official names), heads (symmetric integral), heatmap codec round trips."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

from posekit.codecs.heatmap import HeatmapCodec, flip_heatmaps
from posekit.models.backbones import DeformConv3x3, build_backbone
from posekit.models.heads import DUCHead, SymmetricIntegral, two_step_normalise


def official_hrnet_shapes(c: int, stages: int = 4) -> dict[str, tuple[int, ...]]:
    """Parameter and buffer names/shapes of the official pose_hrnet.py, written out from its structure:
    stem (conv1/bn1/conv2/bn2), layer1 = 4 Bottlenecks (64 -> 256, downsample on the first),
    transition{1,2,3}, stage2 (1 module), stage3 (4), stage4 (3), 4 BasicBlocks per branch,
    fuse_layers, the last module fusing into branch 0 only."""
    shapes: dict[str, tuple[int, ...]] = {}

    def bn(prefix: str, n: int) -> None:
        for k in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.{k}"] = (n,)
        shapes[f"{prefix}.num_batches_tracked"] = ()

    def conv(prefix: str, cout: int, cin: int, k: int) -> None:
        shapes[f"{prefix}.weight"] = (cout, cin, k, k)

    conv("conv1", 64, 3, 3), bn("bn1", 64), conv("conv2", 64, 64, 3), bn("bn2", 64)
    for b in range(4):
        cin = 64 if b == 0 else 256
        conv(f"layer1.{b}.conv1", 64, cin, 1), bn(f"layer1.{b}.bn1", 64)
        conv(f"layer1.{b}.conv2", 64, 64, 3), bn(f"layer1.{b}.bn2", 64)
        conv(f"layer1.{b}.conv3", 256, 64, 1), bn(f"layer1.{b}.bn3", 256)
    conv("layer1.0.downsample.0", 256, 64, 1), bn("layer1.0.downsample.1", 256)
    widths = [c, 2 * c, 4 * c, 8 * c]
    modules = {2: 1, 3: 4, 4: 3}
    conv("transition1.0.0", c, 256, 3), bn("transition1.0.1", c)
    conv("transition1.1.0.0", 2 * c, 256, 3), bn("transition1.1.0.1", 2 * c)
    for s in range(3, stages + 1):
        conv(f"transition{s - 1}.{s - 1}.0.0", widths[s - 1], widths[s - 2], 3), bn(f"transition{s - 1}.{s - 1}.0.1", widths[s - 1])
    for s in range(2, stages + 1):
        ch = widths[:s]
        for m in range(modules[s]):
            p = f"stage{s}.{m}"
            for br, w in enumerate(ch):
                for blk in range(4):
                    conv(f"{p}.branches.{br}.{blk}.conv1", w, w, 3), bn(f"{p}.branches.{br}.{blk}.bn1", w)
                    conv(f"{p}.branches.{br}.{blk}.conv2", w, w, 3), bn(f"{p}.branches.{br}.{blk}.bn2", w)
            outputs = 1 if (s == stages and m == modules[s] - 1) else s
            for i in range(outputs):
                for j in range(s):
                    if j > i:
                        conv(f"{p}.fuse_layers.{i}.{j}.0", ch[i], ch[j], 1), bn(f"{p}.fuse_layers.{i}.{j}.1", ch[i])
                    elif j < i:
                        for k in range(i - j):
                            cout = ch[i] if k == i - j - 1 else ch[j]
                            conv(f"{p}.fuse_layers.{i}.{j}.{k}.0", cout, ch[j], 3), bn(f"{p}.fuse_layers.{i}.{j}.{k}.1", cout)
    return shapes


def test_hrnet_w32_loads_official_names_strictly() -> None:
    shapes = official_hrnet_shapes(32)
    # spot checks of names as they appear in the official HRNet-W32 COCO checkpoint
    assert shapes["stage4.2.fuse_layers.0.3.0.weight"] == (32, 256, 1, 1)
    assert shapes["stage3.3.fuse_layers.2.0.1.0.weight"] == (128, 32, 3, 3)
    assert "stage4.2.fuse_layers.1.0.0.0.weight" not in shapes  # the last module fuses into branch 0 only
    model = build_backbone("hrnet_w32")
    state = {k: torch.zeros(v) if v else torch.tensor(0) for k, v in shapes.items()}
    model.load_state_dict(state, strict=True)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == shapes
    out = model(torch.zeros(1, 3, 128, 96))  # sides divisible by 32 (the lowest branch)
    assert out.shape == (1, 32, 32, 24)


def test_stage3_hrnet_and_stemnet_names() -> None:
    shapes = official_hrnet_shapes(48, stages=3)
    model = build_backbone("hrnet_w48_stage3")
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == shapes
    stem = build_backbone("stemnet")
    assert set(stem.state_dict()) == {k for k in official_hrnet_shapes(32) if k.startswith(("conv", "bn", "layer1"))}


def test_resnet_backbone_keys_are_torchvision_without_classifier_and_dcn_starts_as_conv() -> None:
    ours = build_backbone("resnet50")
    ref = torchvision.models.resnet50(weights=None).state_dict()
    assert set(ours.state_dict()) == {k for k in ref if not k.startswith("fc.")}
    assert ours(torch.zeros(1, 3, 64, 64)).shape == (1, 2048, 2, 2)
    conv = torch.nn.Conv2d(8, 8, 3, 1, 1, bias=False)
    x = torch.randn(1, 8, 9, 9)
    torch.testing.assert_close(DeformConv3x3(conv)(x), conv(x), atol=1e-5, rtol=1e-5)  # zero offsets
    dcn = build_backbone("resnet50_dcn")
    assert any(isinstance(m, DeformConv3x3) for m in dcn.modules())
    assert DUCHead(2048, 17)(torch.zeros(1, 2048, 8, 6)).shape == (1, 17, 64, 48)


def test_integral_backward_is_the_amplitude_symmetric_gradient() -> None:
    h, w = 6, 8
    p = torch.zeros(1, 1, h, w, dtype=torch.float64)
    p[0, 0, 2, 3], p[0, 0, 2, 5], p[0, 0, 4, 5] = 0.5, 0.25, 0.25  # mu = (4.0, 2.5)
    p.requires_grad_(True)
    mu = SymmetricIntegral.apply(p)
    torch.testing.assert_close(mu.detach(), torch.tensor([[[4.0, 2.5]]], dtype=torch.float64))
    target = torch.tensor([[[3.0, 3.0]]], dtype=torch.float64)
    (mu - target).abs().sum().backward()  # L1: dL/dmu = sgn(mu - target) = (+1, -1)
    xs, ys = torch.arange(w, dtype=torch.float64), torch.arange(h, dtype=torch.float64)
    expected = (w / 8) * torch.sign(xs - 4.0)[None, :] * 1.0 + (h / 8) * torch.sign(ys - 2.5)[:, None] * -1.0
    torch.testing.assert_close(p.grad[0, 0], expected)


def test_two_step_confidence_does_not_depend_on_spread() -> None:
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    d2 = (xx - 16) ** 2 + (yy - 16) ** 2
    narrow = 6.0 - d2 / 4  # same peak logit, different widths
    wide = 6.0 - d2 / 40
    p1, c1 = two_step_normalise(narrow[None, None])
    p2, c2 = two_step_normalise(wide[None, None])
    assert c1.item() == pytest.approx(c2.item())
    assert p1.sum().item() == pytest.approx(1.0) and p2.max() < p1.max()
    # softmax (the one-step alternative) would not keep the confidence
    assert torch.softmax(narrow.flatten(), 0).max() > 2 * torch.softmax(wide.flatten(), 0).max()


@pytest.mark.parametrize("refine,tolerance", [("dark", 0.05), ("quarter", 0.35)])
def test_heatmap_codec_round_trip(refine: str, tolerance: float) -> None:
    codec = HeatmapCodec((192, 256), (48, 64))
    rng = np.random.default_rng(0)
    kp = rng.uniform(20, 170, (17, 2)).astype(np.float32)
    kp[:, 1] *= 1.3
    heat, weights = codec.encode(kp, np.ones(17))
    assert heat.shape == (17, 64, 48) and weights.min() == 1
    decoded, scores = codec.decode(heat[None], refine)
    err = np.abs(decoded[0] - kp) * codec.scale  # in heatmap pixels
    assert err.max() < tolerance
    assert scores.min() > 0.8


def test_flip_heatmaps_round_trip_and_pairs() -> None:
    hm = torch.randn(2, 17, 8, 6)
    pairs = ((1, 2), (3, 4))
    torch.testing.assert_close(flip_heatmaps(flip_heatmaps(hm, pairs), pairs), hm)
    torch.testing.assert_close(flip_heatmaps(hm, pairs)[:, 1], hm[:, 2].flip(-1))
