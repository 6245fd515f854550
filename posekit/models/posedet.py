"""PoseDet (Tian et al., ../shared/docs/posedet.txt): single-stage pose estimation by detection with a
keypoint-aware pose embedding. No grouping step: every feature-pyramid pixel is a candidate regressing
a whole pose, so the cost does not grow with the number of people (only the pose NMS does, slightly).

Per pyramid level (heads shared across levels, GroupNorm towers as RepPoints):
- bypass: 3x3 convs -> 1x1 -> 2K coarse displacements from the candidate (eq. 3's delta^c, in units of
  the level's stride, i.e. pyramid pixels);
- regression branch: two 3x3 convs -> deformable convolution with a 1 x K kernel whose taps sit at the
  K coarse joints (`torchvision.ops.deform_conv2d`; the offsets come from the bypass with 0.1 of its
  gradient, RepPoints' `gradient_mul`): the keypoint-aware pose embedding -> 1x1 -> 2K refined
  displacements delta^f, so joint = candidate + delta^c + delta^f;
- classification branch: two 3x3 convs -> the same deformable sampling -> 1x1 -> score logit;
- intermediate supervision (training only): 3x3 + 1x1 convs -> K heatmaps on every level, L2 to
  Gaussians of sigma 2 pyramid pixels.

Losses (eq. 4, `loss`; weights from the authors' configs): coarse L2 on the candidate each person is
assigned to (`codecs.posedet`); refined L2 to (GT - coarse) on candidates whose coarse pose has OKS > 0.7
with a person (plus each person's best candidate when its OKS >= 0.52, the authors' low-quality match);
sigmoid focal loss on every candidate, positive when its coarse pose's best OKS > 0.6, negative < 0.5,
ignored between. Both branches also take each person's assigned candidate as a positive (RepPoints'
point-assigner positives; not in the paper): from random heads no coarse pose reaches OKS 0.6 for
hundreds of steps, and a short schedule would train the score on negatives only; heatmap L2 summed over pixels per labelled joint. Inference: every candidate's refined
pose and score (flip test: both passes' candidates), then the codec's pose NMS.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import deform_conv2d, sigmoid_focal_loss

from posekit.codecs.heatmap import flip_permutation
from posekit.codecs.posedet import PoseDetCodec, candidate_grid
from posekit.models.backbones import build_backbone
from posekit.models.base import PoseModel, image_poses
from posekit.models.graph_heads import SIGMOID_START, check_init_heads, graph_head, yx_to_xy
from posekit.structures import KeypointSpec, Poses


@dataclass
class PoseDetConfig:
    family: str = "posedet"
    backbone: str = "hrnet_w32_pyramid"  # needs `forward_features` (ResNets, hrnet_*_pyramid, graph trunks)
    strides: tuple[int, ...] = (8, 16, 32, 64)  # pyramid levels; beyond the backbone's coarsest: strided convs
    channels: int = 128  # pyramid and head width
    bypass_convs: int = 3
    branch_convs: int = 2  # 3x3 convs before the deformable sampling, in the regression and the classification branch
    gradient_mul: float = 0.1  # share of the deformable offsets' gradient that reaches the bypass
    center: str = "keypoints"  # a person's candidate: nearest its keypoint centroid | "box" centre
    # which candidates the bypass's coarse L2 trains: "assigned" (the paper's: each person's one candidate) | "positives"
    # (every refinement positive too, towards the person its coarse pose matches): at one stride-4 level a person covers
    # dozens of candidates that the focal loss scores, and "assigned" leaves their coarse poses unconstrained
    coarse_targets: str = "assigned"
    intermediate_supervision: bool = True
    # "tower" (the paper's: GroupNorm towers on a pyramid) | "separable": MoveNet's head shape on the trunk's stride-4
    # output, one level (strides [4]): bypass = a separable head, score = a separable centre head + the refinement
    # branch's logit, intermediate heatmaps = a separable head with a sigmoid
    head_shape: str = "tower"
    init_heads: str = ""  # "movenet_multipose": bypass, centre and heatmap heads start as that graph's regression, centre, heatmaps
    sigma: float = 2.0
    coarse_weight: float = 0.1
    refine_weight: float = 0.2
    heatmap_weight: float = 0.1
    refine_oks: float = 0.7
    low_quality_oks: float = 0.52
    positive_oks: float = 0.6
    negative_oks: float = 0.5
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    flip_test: bool = False
    max_persons: int = 30  # persons per image encoded, and poses kept after NMS
    score_threshold: float = 0.05
    pre_nms: int = 500
    nms: str = "oks"  # "oks" | "iou"
    nms_threshold: float = 0.5


def _tower(channels: int, n: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(n):
        layers += [nn.Conv2d(channels, channels, 3, 1, 1, bias=False), nn.GroupNorm(min(32, channels // 4), channels), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class FeaturePyramid(nn.Module):
    """FPN (Lin et al. 2017): 1x1 laterals on the backbone maps at the wanted strides, top-down nearest
    upsampling and sums, 3x3 output convs; levels coarser than the backbone's from stride-2 3x3 convs."""

    def __init__(self, in_channels: list[int], in_strides: list[int], strides: tuple[int, ...], channels: int) -> None:
        super().__init__()
        self.inputs = [i for i, s in enumerate(in_strides) if s in strides]
        if not self.inputs or in_strides[self.inputs[0]] != strides[0]:
            raise ValueError(f"the finest pyramid stride {strides[0]} must be one of the backbone's {in_strides}")
        self.laterals = nn.ModuleList([nn.Conv2d(in_channels[i], channels, 1) for i in self.inputs])
        self.outputs = nn.ModuleList([nn.Conv2d(channels, channels, 3, 1, 1) for _ in self.inputs])
        self.extra = nn.ModuleList([nn.Conv2d(channels, channels, 3, 2, 1) for _ in strides[len(self.inputs) :]])

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        lat = [conv(feats[i]) for conv, i in zip(self.laterals, self.inputs)]
        for i in range(len(lat) - 1, 0, -1):
            lat[i - 1] = lat[i - 1] + F.interpolate(lat[i], size=lat[i - 1].shape[-2:], mode="nearest")
        outs = [conv(x) for conv, x in zip(self.outputs, lat)]
        for j, conv in enumerate(self.extra):
            outs.append(conv(outs[-1] if j == 0 else F.relu(outs[-1])))
        return outs


class PoseDetHead(nn.Module):
    """The bypass, the two pose-embedding branches and the intermediate heatmaps, shared across levels."""

    def __init__(self, channels: int, num_keypoints: int, cfg: PoseDetConfig, in_channels: int = 0) -> None:
        """`in_channels`: the features' width with `head_shape: separable` (the trunk's), else `channels`."""
        super().__init__()
        k = num_keypoints
        self.taps = k if k % 2 else k + 1  # an odd 1 x taps kernel keeps the output size; an extra tap sits on the candidate
        self.gradient_mul = cfg.gradient_mul
        self.separable = cfg.head_shape == "separable"
        if self.separable:
            c = in_channels
            self.reg_tower = nn.Sequential(nn.Conv2d(c, channels, 1), _tower(channels, cfg.branch_convs))
            self.cls_tower = nn.Sequential(nn.Conv2d(c, channels, 1), _tower(channels, cfg.branch_convs))
        else:
            self.bypass = nn.Sequential(_tower(channels, cfg.bypass_convs), nn.Conv2d(channels, 2 * k, 1))
            self.reg_tower, self.cls_tower = _tower(channels, cfg.branch_convs), _tower(channels, cfg.branch_convs)
        self.reg_dcn = nn.Parameter(torch.empty(channels, channels, 1, self.taps))
        self.cls_dcn = nn.Parameter(torch.empty(channels, channels, 1, self.taps))
        self.reg_out, self.cls_out = nn.Conv2d(channels, 2 * k, 1), nn.Conv2d(channels, 1, 1)
        self.heatmap = nn.Sequential(nn.Conv2d(channels, channels, 3, 1, 1), nn.ReLU(inplace=True), nn.Conv2d(channels, k, 1))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        for w in (self.reg_dcn, self.cls_dcn):
            nn.init.normal_(w, std=0.01)
        prior = -math.log((1 - 0.01) / 0.01)  # scores start at 0.01 (focal loss prior)
        nn.init.constant_(self.cls_out.bias, prior)
        if self.separable:  # built after the init above, which would overwrite a graph's weights
            self.bypass = graph_head(cfg.init_heads, "regress", in_channels, 2 * k, yx_to_xy(k))
            self.centre = graph_head(cfg.init_heads, "centre", in_channels, 1, cold_bias=prior)
            self.heatmap = graph_head(cfg.init_heads, "heatmap", in_channels, k, cold_bias=SIGMOID_START)
            for out in (self.cls_out, self.reg_out):  # the score starts as the centre head's, the pose as the coarse one
                nn.init.zeros_(out.weight)
                nn.init.zeros_(out.bias)
        # tap j of a 1 x taps kernel samples (y, x + j - taps // 2) before its offset
        self.register_buffer("tap_x", torch.arange(self.taps, dtype=torch.float32) - self.taps // 2, persistent=False)

    def _offsets(self, coarse: torch.Tensor) -> torch.Tensor:
        """Deformable-conv offsets [N, 2*taps, h, w] ((dy, dx) per tap) putting tap j on coarse joint j."""
        n, _, h, w = coarse.shape
        g = self.gradient_mul
        xy = (coarse * g + coarse.detach() * (1 - g)).reshape(n, -1, 2, h, w)  # [N,K,2,h,w] as (dx, dy)
        if xy.shape[1] < self.taps:
            xy = torch.cat([xy, xy.new_zeros(n, 1, 2, h, w)], 1)
        dx = xy[:, :, 0] - self.tap_x.view(1, -1, 1, 1)
        return torch.stack([xy[:, :, 1], dx], 2).reshape(n, 2 * self.taps, h, w)

    def forward(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One level -> (score logits [N,1,h,w], coarse [N,2K,h,w], refined [N,2K,h,w]), joint j as (x, y) at 2j."""
        coarse = self.bypass(f)
        off = self._offsets(coarse)
        pad = (0, self.taps // 2)
        reg = F.relu(deform_conv2d(self.reg_tower(f), off, self.reg_dcn, padding=pad))
        cls = F.relu(deform_conv2d(self.cls_tower(f), off, self.cls_dcn, padding=pad))
        logits = self.cls_out(cls) + self.centre(f) if self.separable else self.cls_out(cls)
        return logits, coarse, self.reg_out(reg)

    def heatmaps(self, f: torch.Tensor) -> torch.Tensor:
        """The intermediate supervision's heatmaps of one level."""
        return torch.sigmoid(self.heatmap(f)) if self.separable else self.heatmap(f)


def pose_oks(poses: torch.Tensor, gt: torch.Tensor, area: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """COCO's OKS [N,L,M] of candidate poses [N,L,K,2] against persons [N,M,K,3] (v > 0: labelled),
    areas [N,M]; persons without a labelled joint get -1."""
    var = (2 * sigmas) ** 2
    d2 = ((poses[:, :, None] - gt[:, None, :, :, :2]) ** 2).sum(-1)  # [N,L,M,K]
    e = d2 / var / (area[:, None, :, None] * 2)
    vis = (gt[..., 2] > 0).float()[:, None]  # [N,1,M,K]
    count = vis.sum(-1)
    return torch.where(count > 0, (torch.exp(-e) * vis).sum(-1) / count.clamp_min(1), torch.full_like(count, -1.0))


class PoseDetModel(PoseModel):
    family = "posedet"
    input_kind = "image"
    config_class = PoseDetConfig
    oks_nms = None  # the codec's decoding already ends in the configured pose NMS
    # what `posekit eval --oracle posedet` scores: the paper's assignment and Table 5's box-centre baseline
    oracle_variants: ClassVar[dict[str, dict]] = {"keypoint centroid": {}, "box centre": {"center": "box"}}

    def __init__(self, spec: KeypointSpec, input_size: tuple[int, int], cfg: PoseDetConfig | None = None) -> None:
        super().__init__()
        cfg = cfg or PoseDetConfig()
        self.cfg, self.spec, self.input_size = cfg, spec, tuple(input_size)
        check_init_heads(cfg.init_heads, cfg.backbone, cfg.head_shape, "tower")
        if cfg.coarse_targets not in ("assigned", "positives"):
            raise ValueError(f"model.coarse_targets must be assigned or positives, not {cfg.coarse_targets!r}")
        self.backbone = build_backbone(cfg.backbone)
        if not hasattr(self.backbone, "forward_features"):
            raise ValueError(f"backbone {cfg.backbone!r} has no multi-scale features for a pyramid")
        if cfg.head_shape == "separable":
            if tuple(cfg.strides) != (self.backbone.stride,):
                raise ValueError(f"model.head_shape separable reads the trunk's own output: set model.strides to [{self.backbone.stride}]")
            self.pyramid = None
        else:
            self.pyramid = FeaturePyramid(self.backbone.feature_channels, self.backbone.feature_strides, cfg.strides, cfg.channels)
        self.head = PoseDetHead(cfg.channels, spec.num_keypoints, cfg, self.backbone.out_channels)
        self.stride = cfg.strides[0]
        self.size_divisor = max(self.backbone.size_divisor, max(cfg.strides))
        self.codec = self.make_codec(spec, self.input_size, cfg, self.stride)
        self.flip_perm = flip_permutation(spec.flip_pairs, spec.num_keypoints)
        self.register_buffer("sigmas", torch.tensor(spec.sigmas, dtype=torch.float32), persistent=False)

    @staticmethod
    def make_codec(spec: KeypointSpec, input_size: tuple[int, int], cfg: PoseDetConfig, stride: int = 8) -> PoseDetCodec:
        """The codec of a model with this config, without building the network (the oracle uses it)."""
        return PoseDetCodec(tuple(input_size), tuple(cfg.strides), spec.num_keypoints, tuple(spec.sigmas), cfg.center, cfg.sigma,
                            cfg.max_persons, cfg.score_threshold, cfg.pre_nms, cfg.nms, cfg.nms_threshold)  # fmt: skip

    def _levels(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [self.backbone(x)] if self.pyramid is None else self.pyramid(self.backbone.forward_features(x))

    def _flat(self, levels: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        k = self.spec.num_keypoints
        outs = [self.head(f) for f in levels]
        n = levels[0].shape[0]
        logits = torch.cat([c.flatten(1) for c, _, _ in outs], 1)
        coarse = torch.cat([d.reshape(n, k, 2, -1).permute(0, 3, 1, 2) for _, d, _ in outs], 1)
        refined = torch.cat([r.reshape(n, k, 2, -1).permute(0, 3, 1, 2) for _, _, r in outs], 1)
        return logits, coarse, refined

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(score logits [N,L], coarse [N,L,K,2], refined displacements [N,L,K,2]) over every candidate
        (`codec.candidates()` order), displacements in units of the candidate's stride."""
        return self._flat(self._levels(x))

    def _candidates(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Candidate positions [1,L,1,2] and strides [1,L,1,1] for these images' size (any multiple of
        `size_divisor`, not only the trained one)."""
        pos, stride = candidate_grid(tuple(self.cfg.strides), (images.shape[-1], images.shape[-2]))
        return torch.tensor(pos, device=images.device)[None, :, None], torch.tensor(stride, device=images.device)[None, :, None, None]

    def loss(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        levels = self._levels(batch["image"])
        logits, coarse, refined = self._flat(levels)
        pos, stride = self._candidates(batch["image"])  # [1,L,1,2], [1,L,1,1]
        gt, area, cand = batch["gt_keypoints"], batch["gt_area"], batch["gt_candidate"]
        m = max(int((cand >= 0).sum(1).max()), int((gt[..., 2] > 0).any(-1).sum(1).max()), 1)
        gt, area, cand = gt[:, :m], area[:, :m], cand[:, :m]
        vis = (gt[..., 2] > 0).float()
        n, k = gt.shape[0], gt.shape[2]
        terms = {}
        assigned = cand >= 0
        if cfg.coarse_targets == "assigned":  # bypass: the assigned candidate regresses its person's joints
            idx = cand.clamp_min(0)
            take = lambda t: torch.gather(t, 1, idx[:, :, None, None].expand(-1, -1, *t.shape[2:]))  # noqa: E731
            pos_b, stride_b = pos.expand(n, -1, -1, -1), stride.expand(n, -1, -1, -1)
            target = (gt[..., :2] - take(pos_b)) / take(stride_b)
            w = vis * assigned[..., None].float()
            err = ((take(coarse) - target) ** 2).sum(-1)
            terms["coarse_l2"] = cfg.coarse_weight * (err * w).sum() / w.sum().clamp_min(1.0)
        # the coarse poses' OKS with every person decides refinement and classification
        with torch.no_grad():
            coarse_xy = pos + coarse.detach() * stride
            oks = pose_oks(coarse_xy, gt, area, self.sigmas)  # [N,L,M]
            best, who = oks.max(-1)
            refine_pos = best > cfg.refine_oks
            top, top_idx = oks.max(1)  # each person's best candidate
            low = (top >= cfg.low_quality_oks) & (vis.sum(-1) > 0)
            rows = torch.arange(n, device=oks.device)[:, None].expand_as(top_idx)
            person = torch.arange(m, device=oks.device)[None].expand_as(top_idx)
            refine_pos[rows[low], top_idx[low]] = True
            who[rows[low], top_idx[low]] = person[low]
            # each person's assigned candidate is a positive of both branches from the first step: a short
            # schedule otherwise trains them on negatives only until coarse poses reach OKS 0.6
            refine_pos[rows[assigned], cand[assigned]] = True
            who[rows[assigned], cand[assigned]] = person[assigned]
            cls_pos = best > cfg.positive_oks
            cls_pos[rows[assigned], cand[assigned]] = True
        gt_b = torch.gather(gt, 1, who[:, :, None, None].expand(-1, -1, k, 3))  # [N,L,K,3]
        w = (gt_b[..., 2] > 0).float() * refine_pos[..., None].float()  # the refinement positives' labelled joints
        if cfg.coarse_targets == "positives":  # bypass: every refinement positive regresses its matched person's joints
            err = ((coarse - (gt_b[..., :2] - pos) / stride) ** 2).sum(-1)
            terms["coarse_l2"] = cfg.coarse_weight * (err * w).sum() / w.sum().clamp_min(1.0)
        target_f = (gt_b[..., :2] - coarse_xy) / stride
        err = ((refined - target_f) ** 2).sum(-1)
        terms["refine_l2"] = cfg.refine_weight * (err * w).sum() / w.sum().clamp_min(1.0)
        positive = cls_pos.float()
        weight = (cls_pos | (best < cfg.negative_oks)).float() * batch["candidate_weights"]
        focal = sigmoid_focal_loss(logits.float(), positive, cfg.focal_alpha, cfg.focal_gamma, reduction="none")
        terms["score_focal"] = (focal * weight).sum() / (positive * weight).sum().clamp_min(1.0)
        if cfg.intermediate_supervision:
            joints = vis.sum().clamp_min(1.0)
            heat = 0.0
            for s, f in zip(cfg.strides, levels):
                err = (self.head.heatmaps(f) - batch[f"heatmaps_s{s}"]) ** 2 * batch[f"heatmap_weights_s{s}"]
                heat = heat + err.sum() / joints
            terms["heatmap_l2"] = cfg.heatmap_weight * heat / len(levels)
        return terms

    @torch.inference_mode()
    def outputs(self, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Every candidate's score [N,L'] and refined pose [N,L',K,2] in input pixels (L' = 2L with the
        flip test: the flipped pass's candidates mapped back)."""
        pos, stride = self._candidates(images)
        logits, coarse, refined = self(images)
        scores, poses = [torch.sigmoid(logits)], [pos + (coarse + refined) * stride]
        if self.cfg.flip_test:
            logits, coarse, refined = self(images.flip(-1))
            p = (pos + (coarse + refined) * stride)[:, :, self.flip_perm]
            p = torch.stack([images.shape[-1] - 1 - p[..., 0], p[..., 1]], -1)
            scores.append(torch.sigmoid(logits))
            poses.append(p)
        return torch.cat(scores, 1).float().cpu().numpy(), torch.cat(poses, 1).float().cpu().numpy()

    def predict(self, batch: dict[str, torch.Tensor]) -> list[Poses]:
        scores, poses = self.outputs(batch["image"])
        matrices = batch["matrix"].cpu().numpy()
        return [image_poses(*self.codec.decode(scores[i], poses[i]), matrices[i], self.spec, None) for i in range(len(scores))]
