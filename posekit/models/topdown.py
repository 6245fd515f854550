"""Top-down single-person models: backbone + heatmap head (SimpleBaseline, FastPose DUC, HRNet 1x1),
optionally with the symmetric integral head."""

from __future__ import annotations

import torch
from torch import nn

from posekit.models.backbones import build_backbone
from posekit.models.heads import ConvHead, DeconvHead, DUCHead, IntegralHead

HEADS = {"deconv": DeconvHead, "duc": DUCHead, "conv": ConvHead}


class TopDownModel(nn.Module):
    def __init__(self, backbone: str, head: str, num_keypoints: int, integral: bool = False, head_channels: int = 256) -> None:
        super().__init__()
        self.backbone = build_backbone(backbone)
        h = (
            DeconvHead(self.backbone.out_channels, num_keypoints, head_channels)
            if head == "deconv"
            else HEADS[head](self.backbone.out_channels, num_keypoints)
        )
        self.head = IntegralHead(h) if integral else h
        self.integral = integral
        self.stride = self.backbone.stride // h.upsample
        self.size_divisor = self.backbone.size_divisor

    def forward(self, x: torch.Tensor):  # heatmaps [N,K,h,w], or (coords [N,K,2], conf [N,K], logits)
        return self.head(self.backbone(x))
