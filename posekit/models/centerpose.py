"""A small single-stage whole-image model: person-centre heatmap + per-joint offsets from the centre +
keypoint heatmaps for snapping (MoveNet MultiPose's layout, CenterNet's losses) on a pretrained trunk's
stride-4 features. It exists to prove the whole-image path of the engine end to end; the seed papers'
bottom-up and single-stage families (HigherHRNet, PoseDet, SIMPLE) come as their own modules."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from posekit.codecs.center_offset import CenterOffsetCodec
from posekit.codecs.heatmap import flip_permutation
from posekit.models.backbones import build_backbone
from posekit.models.base import PoseModel, image_poses
from posekit.models.heads import SeparableHead
from posekit.postprocess.nms import instance_scores
from posekit.structures import KeypointSpec, Poses

KEYPOINT_SCORE_THRESHOLD = 0.2  # keypoints counted in the person score


@dataclass
class CenterPoseConfig:
    family: str = "centerpose"
    backbone: str = "movenet_multipose_fpn"
    hidden: int = 96  # channels of each head's hidden layer
    flip_test: bool = False
    max_persons: int = 20  # centre peaks decoded per image
    min_center_score: float = 0.05
    offset_weight: float = 0.1  # L1 in heatmap pixels, beside two focal losses of weight 1


def focal_loss(logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss (alpha 2, beta 4) on sigmoid logits, normalised by the
    number of peaks; `weights` 0 removes pixels (ignore regions)."""
    p = torch.sigmoid(logits.float()).clamp(1e-4, 1 - 1e-4)
    pos = target.ge(0.999).float()
    pos_loss = -torch.log(p) * (1 - p) ** 2 * pos
    neg_loss = -torch.log(1 - p) * p**2 * (1 - target) ** 4 * (1 - pos)
    return ((pos_loss + neg_loss) * weights).sum() / (pos * weights).sum().clamp_min(1.0)


class CenterPoseModel(PoseModel):
    family = "centerpose"
    input_kind = "image"
    config_class = CenterPoseConfig

    def __init__(self, spec: KeypointSpec, input_size: tuple[int, int], cfg: CenterPoseConfig | None = None) -> None:
        super().__init__()
        cfg = cfg or CenterPoseConfig()
        self.cfg, self.spec, self.input_size = cfg, spec, tuple(input_size)
        k = spec.num_keypoints
        self.backbone = build_backbone(cfg.backbone)
        c = self.backbone.out_channels
        self.center_head = SeparableHead(c, 1, cfg.hidden)
        self.keypoint_head = SeparableHead(c, k, cfg.hidden)
        self.offset_head = SeparableHead(c, 2 * k, cfg.hidden)
        prior = -math.log((1 - 0.1) / 0.1)  # heatmaps start at p = 0.1 (CenterNet)
        nn.init.constant_(self.center_head.final_layer.bias, prior)
        nn.init.constant_(self.keypoint_head.final_layer.bias, prior)
        self.stride = self.backbone.stride
        self.size_divisor = self.backbone.size_divisor
        self.codec = self.make_codec(spec, self.input_size, cfg, self.stride)
        self.flip_perm = flip_permutation(spec.flip_pairs, k)

    @staticmethod
    def make_codec(spec: KeypointSpec, input_size: tuple[int, int], cfg: CenterPoseConfig, stride: int = 4) -> CenterOffsetCodec:
        """The codec of a model with this config, without building the network (the oracle uses it)."""
        return CenterOffsetCodec(tuple(input_size), stride, spec.num_keypoints)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(centre logits [N,1,h,w], keypoint logits [N,K,h,w], offsets [N,2K,h,w] in heatmap pixels)."""
        f = self.backbone(x)
        return self.center_head(f), self.keypoint_head(f), self.offset_head(f)

    def loss(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        center, heat, off = self(batch["image"])
        w = batch["heatmap_weights"]
        n, k = heat.shape[:2]
        pred = off.view(n, k, 2, -1).permute(0, 3, 1, 2)  # [N, h*w, K, 2]
        idx = batch["center_index"]
        pred = torch.gather(pred, 1, idx[:, :, None, None].expand(-1, -1, k, 2))  # [N, M, K, 2]
        ow = batch["offset_weights"]
        l1 = ((pred - batch["offsets"]).abs().sum(-1) * ow).sum() / ow.sum().clamp_min(1.0)
        return {
            "center_focal": focal_loss(center, batch["center_heatmap"], w[:, :1]),
            "keypoint_focal": focal_loss(heat, batch["keypoint_heatmaps"], w[:, 1:]),
            "offset_l1": self.cfg.offset_weight * l1,
        }

    @torch.inference_mode()
    def outputs(self, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Centre and keypoint probabilities and offsets [N,K,2,h,w], with the flip test if configured."""
        center, heat, off = self(images)
        n, k = heat.shape[:2]
        center, heat, off = torch.sigmoid(center), torch.sigmoid(heat), off.view(n, k, 2, *off.shape[-2:])
        if self.cfg.flip_test:
            fc, fh, fo = self(images.flip(-1))
            fo = fo.view(n, k, 2, *fo.shape[-2:]).flip(-1)[:, self.flip_perm]
            fo = torch.stack([-fo[:, :, 0], fo[:, :, 1]], 2)
            center = (center + torch.sigmoid(fc).flip(-1)) / 2
            heat = (heat + torch.sigmoid(fh).flip(-1)[:, self.flip_perm]) / 2
            off = (off + fo) / 2
        return center[:, 0].float().cpu().numpy(), heat.float().cpu().numpy(), off.float().cpu().numpy()

    def predict(self, batch: dict[str, torch.Tensor]) -> list[Poses]:
        centers, heats, offs = self.outputs(batch["image"])
        matrices = batch["matrix"].cpu().numpy()
        out = []
        for i in range(len(centers)):
            kp, kps, cs = self.codec.decode(centers[i], heats[i], offs[i], self.cfg.max_persons, self.cfg.min_center_score)
            out.append(image_poses(kp, kps, instance_scores(cs, kps, KEYPOINT_SCORE_THRESHOLD), matrices[i], self.spec))
        return out
