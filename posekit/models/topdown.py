"""Top-down single-person models: backbone + heatmap head (SimpleBaseline, FastPose DUC, HRNet 1x1,
MoveNet-style separable), optionally with the symmetric integral head. Crops in, one person per crop out."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from posekit.codecs.heatmap import HeatmapCodec, flip_heatmaps, flip_permutation
from posekit.models.backbones import build_backbone
from posekit.models.base import PoseModel, crop_heatmap_mse, crop_poses
from posekit.models.heads import ConvHead, DeconvHead, DUCHead, IntegralHead, SeparableHead
from posekit.postprocess.nms import instance_scores
from posekit.structures import KeypointSpec, Poses

HEADS = {"deconv": DeconvHead, "duc": DUCHead, "conv": ConvHead, "separable": SeparableHead}
KEYPOINT_SCORE_THRESHOLD = 0.2  # keypoints counted in the person score (SimpleBaseline / MMPose)


@dataclass
class TopDownConfig:
    family: str = "topdown"
    backbone: str = "resnet50"
    head: str = "deconv"  # deconv | duc | conv | separable
    integral: bool = False  # AlphaPose's symmetric integral regression instead of heatmap decoding
    head_channels: int = 256  # deconv head filters (SimpleBaseline: 256)
    flip_test: bool = True


class TopDownModel(PoseModel):
    family = "topdown"
    input_kind = "crops"
    config_class = TopDownConfig

    def __init__(self, spec: KeypointSpec, input_size: tuple[int, int], cfg: TopDownConfig | None = None) -> None:
        super().__init__()
        cfg = cfg or TopDownConfig()
        if cfg.head not in HEADS:
            raise ValueError(f"model.head {cfg.head!r}: known heads are {', '.join(HEADS)}")
        self.cfg, self.spec, self.input_size = cfg, spec, tuple(input_size)
        k = spec.num_keypoints
        self.backbone = build_backbone(cfg.backbone)
        h = DeconvHead(self.backbone.out_channels, k, cfg.head_channels) if cfg.head == "deconv" else HEADS[cfg.head](self.backbone.out_channels, k)
        self.head = IntegralHead(h) if cfg.integral else h
        self.integral = cfg.integral
        self.stride = self.backbone.stride // h.upsample
        self.size_divisor = self.backbone.size_divisor
        w, hh = self.input_size
        self.codec = HeatmapCodec((w, hh), (w // self.stride, hh // self.stride))
        self.flip_perm = flip_permutation(spec.flip_pairs, k)

    def forward(self, x: torch.Tensor):  # heatmaps [N,K,h,w], or (coords [N,K,2], conf [N,K], logits)
        return self.head(self.backbone(x))

    def loss(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Heatmap head: target-weighted MSE. Integral head: target-weighted L1 on coordinates (heatmap
        pixels), whose gradient reaches the heatmap through the amplitude-symmetric backward."""
        out = self(batch["image"])
        w = batch["weights"]
        if self.integral:
            coords = out[0]
            target = batch["keypoints"] * torch.from_numpy(self.codec.scale).to(coords.device)
            return {"integral_l1": ((coords - target).abs().sum(-1) * w).sum() / w.sum().clamp_min(1.0)}
        return {"heatmap_mse": crop_heatmap_mse(out, batch["heatmaps"], w)}

    @torch.inference_mode()
    def crop_outputs(self, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
        """Keypoints [N,K,2] in input (crop) pixels, their scores [N,K] and the heatmaps [N,K,h,w] they come
        from (integral models: the sigmoid confidence maps), each averaged with the mirrored crop's when
        the flip test is on. One forward pass (two with the flip test): what teachers hand out."""
        out = self(images)
        flipped = self(images.flip(-1)) if self.cfg.flip_test else None
        if not self.integral:
            hm = out if flipped is None else (out + flip_heatmaps(flipped, self.spec.flip_pairs)) / 2
            xy, scores = self.codec.decode(hm.float().cpu().numpy(), "dark")
            return xy, scores, hm
        coords, conf, logits = out
        hm = torch.sigmoid(logits)
        if flipped is not None:
            fc, fconf, flogits = flipped
            fc, fconf = fc[:, self.flip_perm], fconf[:, self.flip_perm]  # indexing copies
            fc[..., 0] = self.codec.heatmap_size[0] - 1 - fc[..., 0]
            coords, conf = (coords + fc) / 2, (conf + fconf) / 2
            hm = (hm + flip_heatmaps(torch.sigmoid(flogits), self.spec.flip_pairs)) / 2
        return self.codec.decode_integral(coords.float().cpu().numpy()), conf.float().cpu().numpy(), hm

    def predict_crops(self, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Keypoints [N,K,2] in input (crop) pixels and scores [N,K], with the flip test if configured."""
        xy, scores, _ = self.crop_outputs(images)
        return xy, scores

    def predict(self, batch: dict[str, torch.Tensor]) -> list[Poses]:
        """One person per crop, in image pixels; person score = box score x mean keypoint score above 0.2."""
        xy, scores = self.predict_crops(batch["image"])
        person = instance_scores(batch["box_score"].cpu().numpy().astype(np.float32), scores, KEYPOINT_SCORE_THRESHOLD)
        return crop_poses(batch, xy, scores, person, self.spec.name)
