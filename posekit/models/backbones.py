"""Backbones: ResNet (torchvision, optional deformable 3x3 convs as in FastPose-DCN), HRNet W18/W32/W48
with the official implementation's parameter names (official checkpoints load with strict=True), the
stage-3 HRNet of DistilPose, and TokenPose's stem ("stemnet").

`build_backbone(name)` returns the backbone alone; its state-dict keys carry no prefix. Every backbone
has `out_channels`, `stride` (of its output feature map) and `size_divisor` (input sides must be
multiples of it, else feature maps of different branches or the targets no longer line up). Those a
feature pyramid can sit on also have `forward_features(x)` (maps finest first) with `feature_strides`
and `feature_channels`: ResNet (C2-C5), the `hrnet_*_pyramid` variants (every branch of the last
module) and the graph trunks.
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn
from torchvision.ops import deform_conv2d

BN_MOMENTUM = 0.1


class DeformConv3x3(nn.Module):
    """3x3 deformable convolution (torchvision.ops.deform_conv2d) whose offsets come from a zero-initialised
    conv, so it starts as the plain convolution it replaces."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.stride, self.padding, self.dilation = conv.stride, conv.padding, conv.dilation
        self.weight = conv.weight
        self.offset = nn.Conv2d(conv.in_channels, 18, 3, conv.stride, 1, bias=True)
        nn.init.zeros_(self.offset.weight)
        nn.init.zeros_(self.offset.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return deform_conv2d(x, self.offset(x), self.weight, None, self.stride, self.padding, self.dilation)


class ResNetBackbone(nn.Module):
    """torchvision ResNet without pooling and classifier (stride 32)."""

    def __init__(self, depth: int, dcn_stages: tuple[int, ...] = ()) -> None:
        super().__init__()
        net = getattr(torchvision.models, f"resnet{depth}")(weights=None)
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        for stage in dcn_stages:  # FastPose-DCN: deformable 3x3 in the blocks of these stages (1-4)
            for block in getattr(self, f"layer{stage}"):
                name = "conv2"
                setattr(block, name, DeformConv3x3(getattr(block, name)))
        self.out_channels = 512 if depth < 50 else 2048
        self.stride = self.size_divisor = 32
        self.feature_strides = [4, 8, 16, 32]
        self.feature_channels = [self.out_channels // 8, self.out_channels // 4, self.out_channels // 2, self.out_channels]

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        c2 = self.layer1(self.maxpool(self.relu(self.bn1(self.conv1(x)))))
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        return [c2, c3, c4, self.layer4(c4)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)[-1]


# ---------------------------------------------------------------- HRNet (official names: pose_hrnet.py)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


def _make_layer(block: type, inplanes: int, planes: int, blocks: int) -> nn.Sequential:
    downsample = None
    if inplanes != planes * block.expansion:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, planes * block.expansion, 1, bias=False), nn.BatchNorm2d(planes * block.expansion, momentum=BN_MOMENTUM)
        )
    layers = [block(inplanes, planes, 1, downsample)]
    layers += [block(planes * block.expansion, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


def _conv_bn(cin: int, cout: int, kernel: int, stride: int, relu: bool) -> nn.Sequential:
    mods: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(cout, momentum=BN_MOMENTUM)]
    if relu:
        mods.append(nn.ReLU(inplace=True))
    return nn.Sequential(*mods)


class HighResolutionModule(nn.Module):
    """Parallel branches of BasicBlocks, then every branch fused into every output resolution."""

    def __init__(self, channels: list[int], blocks: int, multi_scale_output: bool) -> None:
        super().__init__()
        n = len(channels)
        self.branches = nn.ModuleList([nn.Sequential(*[BasicBlock(c, c) for _ in range(blocks)]) for c in channels])
        fuse = []
        for i in range(n if multi_scale_output else 1):
            row: list[nn.Module | None] = []
            for j in range(n):
                if j > i:  # lower resolution -> 1x1 conv, BN, nearest upsampling
                    row.append(nn.Sequential(nn.Conv2d(channels[j], channels[i], 1, bias=False), nn.BatchNorm2d(channels[i], momentum=BN_MOMENTUM),
                                             nn.Upsample(scale_factor=2 ** (j - i), mode="nearest")))  # fmt: skip
                elif j == i:
                    row.append(None)
                else:  # higher resolution -> (i - j) strided 3x3 convs, the last one without ReLU
                    steps = [
                        _conv_bn(channels[j], channels[i] if k == i - j - 1 else channels[j], 3, 2, k != i - j - 1) for k in range(i - j)
                    ]
                    row.append(nn.Sequential(*steps))
            fuse.append(nn.ModuleList(row))
        self.fuse_layers = nn.ModuleList(fuse)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        out = []
        for i, row in enumerate(self.fuse_layers):
            y = xs[i]
            for j, f in enumerate(row):
                if j != i:
                    y = y + f(xs[j])
            out.append(self.relu(y))
        return out


def _transition(pre: list[int], cur: list[int]) -> nn.ModuleList:
    layers: list[nn.Module | None] = []
    for i, c in enumerate(cur):
        if i < len(pre):
            layers.append(_conv_bn(pre[i], c, 3, 1, True) if pre[i] != c else None)
        else:  # a new, lower-resolution branch from the lowest existing one
            steps = [_conv_bn(pre[-1], c if k == i - len(pre) else pre[-1], 3, 2, True) for k in range(i + 1 - len(pre))]
            layers.append(nn.Sequential(*steps))
    return nn.ModuleList(layers)


class StemNet(nn.Module):
    """TokenPose's 'stemnet': HRNet's stem and layer1 (stride 4, 256 channels)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, momentum=BN_MOMENTUM)
        self.conv2 = nn.Conv2d(64, 64, 3, 2, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(64, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = _make_layer(Bottleneck, 64, 64, 4)
        self.out_channels, self.stride, self.size_divisor = 256, 4, 4

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer1(self.stem(x))


class HRNet(StemNet):
    """HRNet as in the official pose_hrnet.py: stem, layer1 (4 Bottlenecks), stages 2-4 of 1/4/3
    modules with 4 BasicBlocks per branch; returns the highest-resolution branch (stride 4).
    `num_stages=3` gives the stage-3 HRNet used by DistilPose-L; `multi_scale` keeps every branch of the
    last module (`forward_features`, for a feature pyramid)."""

    STAGE_MODULES = {2: 1, 3: 4, 4: 3}

    def __init__(self, width: int, num_stages: int = 4, multi_scale: bool = False) -> None:
        super().__init__()  # stem + layer1, the same modules and names as TokenPose's stemnet
        pre = [256]
        self.num_stages = num_stages
        for s in range(2, num_stages + 1):
            cur = [width * 2**b for b in range(s)]
            setattr(self, f"transition{s - 1}", _transition(pre, cur))
            modules = self.STAGE_MODULES[s]
            setattr(
                self,
                f"stage{s}",
                nn.Sequential(*[HighResolutionModule(cur, 4, multi_scale or not (s == num_stages and m == modules - 1)) for m in range(modules)]),
            )
            pre = cur
        self.out_channels = width
        self.stride = 4
        self.size_divisor = 4 * 2 ** (num_stages - 1)  # the lowest-resolution branch must tile the input exactly
        self.feature_strides = [4 * 2**b for b in range(num_stages)] if multi_scale else [4]
        self.feature_channels = [width * 2**b for b in range(num_stages)] if multi_scale else [width]

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        xs = [self.layer1(self.stem(x))]
        for s in range(2, self.num_stages + 1):
            trans = getattr(self, f"transition{s - 1}")
            xs = [(t(xs[i] if i < len(xs) else xs[-1]) if t is not None else xs[i]) for i, t in enumerate(trans)]
            xs = getattr(self, f"stage{s}")(xs)
        return xs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)[0]


BACKBONES = {
    "resnet18": lambda: ResNetBackbone(18),
    "resnet34": lambda: ResNetBackbone(34),
    "resnet50": lambda: ResNetBackbone(50),
    "resnet101": lambda: ResNetBackbone(101),
    "resnet152": lambda: ResNetBackbone(152),
    "resnet50_dcn": lambda: ResNetBackbone(50, dcn_stages=(2, 3, 4)),
    "resnet18_dcn": lambda: ResNetBackbone(18, dcn_stages=(2, 3, 4)),
    "hrnet_w18": lambda: HRNet(18),
    "hrnet_w32": lambda: HRNet(32),
    "hrnet_w48": lambda: HRNet(48),
    "hrnet_w48_stage3": lambda: HRNet(48, num_stages=3),
    "hrnet_w32_pyramid": lambda: HRNet(32, multi_scale=True),
    "hrnet_w48_pyramid": lambda: HRNet(48, multi_scale=True),
    "stemnet": StemNet,
}


def _graph_trunk(name: str):  # noqa: ANN202
    def build() -> nn.Module:
        from posekit.models.graph_trunks import GraphTrunk  # needs the fetched weights

        return GraphTrunk(name)

    return build


for _trunk in ("movenet_thunder_fpn", "movenet_lightning_fpn", "movenet_multipose_fpn", "centernet_mbv3"):
    BACKBONES[_trunk] = _graph_trunk(_trunk)


def build_backbone(name: str) -> nn.Module:
    """A backbone by name. The `movenet_*_fpn` and `centernet_mbv3` trunks start from the pose / detection
    weights of the fetched TF.js graphs (`posekit weights fetch`); the others from random initialisation."""
    if name not in BACKBONES:
        raise KeyError(f"unknown backbone {name!r}; known: {', '.join(BACKBONES)}")
    return BACKBONES[name]()
