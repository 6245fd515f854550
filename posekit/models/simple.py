"""SIMPLE (Zhang et al., AAAI 2021, ../shared/docs/simple.txt): one network for person detection and pose as
point learning, trained to mimic a top-down teacher.

- Shared features at 1/4 (§3): the four HRNet stage-4 branches upsampled to 1/4 and concatenated
  (`features: concat`, the paper), or a pretrained trunk's stride-4 output (`features: output`); then a 3x3
  conv + BN + ReLU neck to `channels`.
- Pose branch: 3x3 + 1x1 convs -> K heatmaps, MSE to Gaussians (L_pose).
- Detection branch (§4.1, CenterNet-Duan): centre pooling and cascade corner pooling modules
  (`simple_pooling`), each followed by a heatmap head and an offset head; penalty-reduced focal loss on the
  three maps and L1 on the offsets (L_det); boxes from the top-N corner pairs holding a centre
  (`codecs.corner_boxes`).
- Grouping module (§4.2): each box's ROI of the (detached) global heatmaps with two coordinate channels ->
  a small dilated CNN -> a per-pixel gate in [0, 1] times the ROI: it can only keep or suppress activations.
  Its target is the ROI times windows around the person's own joints (`codecs.simple.own_windows`); boxes
  in training are the GT boxes, jittered.
- Mimicking (§5, Algorithm 1): from `mimic_start` steps on (stage 2), the teacher (`teacher`, MoveNet or a
  top-down checkpoint, frozen, held outside the module tree) sees each person's crop of the augmented image;
  the student's heatmaps are cut to the teacher's heatmap grid with ROIAlign and pulled to φ1(teacher-frame
  GT heatmaps) and φ2(teacher heatmaps) (`distill.mimicking`). `mimic`: none | gt | pred | both (Table 3's
  a / b / d / e). Teacher outputs are cached on disk (`distill.cache.TeacherCache`, keyed by the crop's
  image and boxes). `mimic_boxes`: the persons' GT boxes (default here: deterministic, so the cache serves
  every run of an ablation) or the student's own detections (Algorithm 1 as written).

Losses: L_pose + α L_det + grouping + β L_m (α = β = 1 in the paper); L_pose (eq. 8), the grouping loss and L_m
(eqs. 14-15) all sum the squared errors over each map's pixels and average over maps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from posekit.codecs.heatmap import flip_permutation
from posekit.codecs.simple import SimpleCodec, own_windows, student_rois
from posekit.models.backbones import BN_MOMENTUM, build_backbone
from posekit.models.base import PoseModel, image_poses
from posekit.models.centerpose import focal_loss
from posekit.models.graph_heads import SIGMOID_START, check_init_heads, graph_head
from posekit.models.simple_pooling import cascade_corner_pool, center_pool
from posekit.structures import KeypointSpec, Poses

MIMIC_MODES = ("none", "gt", "pred", "both")


@dataclass
class SimpleConfig:
    family: str = "simple"
    backbone: str = "hrnet_w32_pyramid"
    features: str = "concat"  # concat: every branch of `forward_features` at 1/4 (the paper) | output: the backbone's output
    channels: int = 64  # neck, pose head and detection modules
    # "conv" (3x3 + 1x1 on the neck) | "separable": MoveNet's head shape on the trunk's output (`features: output`):
    # sigmoid pose heatmaps from a separable head, and a separable centre head added to the centre-pooling logit
    head_shape: str = "conv"
    init_heads: str = ""  # "movenet_multipose": pose heatmaps and the centre head start as that graph's keypoint and centre heads
    group_channels: int = 32
    roi_size: tuple[int, int] = (24, 32)  # grouping ROI (w, h)
    sigma: float = 2.0
    max_persons: int = 30
    top_n: int = 32  # corner / centre points paired, and boxes grouped (the paper's N)
    box_threshold: float = 0.1  # φ_det: centre points that can keep a box
    det_weight: float = 1.0  # α
    offset_weight: float = 1.0
    group_weight: float = 1.0
    box_jitter: float = 0.1  # grouping boxes in training: each side moved by up to this fraction of the box
    flip_test: bool = True  # pose heatmaps averaged with the flipped image's (boxes from the plain pass)
    # mimicking (stage 2)
    teacher: str = ""  # movenet-thunder | movenet-lightning | a top-down checkpoint
    teacher_cache: str = ""  # a folder for the teacher's outputs ("" = no cache: the teacher runs on every step)
    mimic: str = "both"  # none | gt (φ1 only) | pred (φ2 only) | both
    mimic_start: int = 0  # the step stage 2 begins at (there is no stage 2 without `teacher`)
    mimic_weight: float = 1.0  # β
    mimic_boxes: str = "gt"  # gt | detected
    mimic_sigma: float = 2.0  # teacher-frame GT heatmaps, in teacher heatmap pixels
    mimic_max_boxes: int = 8  # per image (detected boxes: the best scored)


def map_sse(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Eq. 8: (1/K) Σ_k ||Ĥ_k - H_k||²₂ per image (squared errors summed over each map's pixels, weighted), averaged
    over the batch; the same normalisation as the mimicking terms (eqs. 14-15), so α = β = 1 weigh them as the
    paper does."""
    return ((pred.float() - target) ** 2 * weights).sum((-2, -1)).mean()


def conv_bn_relu(cin: int, cout: int, k: int = 3, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=dilation * (k // 2), dilation=dilation, bias=False),
                         nn.BatchNorm2d(cout, momentum=BN_MOMENTUM), nn.ReLU(inplace=True))  # fmt: skip


class PoolModule(nn.Module):
    """CenterNet-Duan's pooling module: branches -> pooling -> 3x3 conv + BN, plus a 1x1 conv + BN skip,
    ReLU, 3x3 conv + BN + ReLU. `kind`: center | top_left | bottom_right."""

    def __init__(self, c: int, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.branches = nn.ModuleList([conv_bn_relu(c, c) for _ in range(2 if kind == "center" else 4)])
        self.merge = nn.Sequential(nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c, momentum=BN_MOMENTUM))
        self.skip = nn.Sequential(nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c, momentum=BN_MOMENTUM))
        self.out = conv_bn_relu(c, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = [branch(x) for branch in self.branches]
        pooled = center_pool(b[0], b[1]) if self.kind == "center" else cascade_corner_pool((b[0], b[1]), (b[2], b[3]), self.kind)
        return self.out(F.relu(self.merge(pooled) + self.skip(x)))


def head(c: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(c, out, 1))


class GroupingModule(nn.Module):
    """ROI heatmaps [N,K,h,w] -> the same maps gated per pixel: other persons' activations suppressed."""

    def __init__(self, k: int, c: int) -> None:
        super().__init__()
        self.net = nn.Sequential(conv_bn_relu(k + 2, c), conv_bn_relu(c, c, dilation=2), conv_bn_relu(c, c, dilation=4),
                                 conv_bn_relu(c, c, dilation=8), nn.Conv2d(c, k, 1))  # fmt: skip

    def forward(self, rois: torch.Tensor) -> torch.Tensor:
        n, _, h, w = rois.shape
        ys = torch.linspace(-1, 1, h, device=rois.device, dtype=rois.dtype)[:, None].expand(h, w)
        xs = torch.linspace(-1, 1, w, device=rois.device, dtype=rois.dtype)[None].expand(h, w)
        coords = torch.stack([xs, ys])[None].expand(n, -1, -1, -1)
        return torch.sigmoid(self.net(torch.cat([rois, coords], 1))) * rois


def person_scores(box_scores: np.ndarray, keypoint_scores: np.ndarray) -> np.ndarray:
    """The geometric mean of the box score and the mean of all K keypoint scores. MSE heatmaps peak well below 1
    (~0.3 after a short training), so their product alone would put most true persons under the pipelines'
    person threshold (0.1); the square root keeps the product's ranking (COCO AP unchanged) on a usable scale."""
    return np.sqrt(box_scores * keypoint_scores.mean(-1)).astype(np.float32) if len(box_scores) else box_scores.astype(np.float32)


class SimpleModel(PoseModel):
    family = "simple"
    input_kind = "image"
    config_class = SimpleConfig

    def __init__(self, spec: KeypointSpec, input_size: tuple[int, int], cfg: SimpleConfig | None = None) -> None:
        super().__init__()
        cfg = cfg or SimpleConfig()
        if cfg.mimic not in MIMIC_MODES:
            raise ValueError(f"model.mimic {cfg.mimic!r}: use one of {', '.join(MIMIC_MODES)}")
        if cfg.mimic_boxes not in ("gt", "detected"):
            raise ValueError(f"model.mimic_boxes {cfg.mimic_boxes!r}: use gt or detected")
        check_init_heads(cfg.init_heads, cfg.backbone, cfg.head_shape, "conv")
        if cfg.head_shape == "separable" and cfg.features != "output":
            raise ValueError("model.head_shape separable reads the trunk's own output: set model.features to output")
        self.cfg, self.spec, self.input_size = cfg, spec, tuple(input_size)
        k, c = spec.num_keypoints, cfg.channels
        self.backbone = build_backbone(cfg.backbone)
        if cfg.features == "concat":
            if not hasattr(self.backbone, "forward_features"):
                raise ValueError(f"model.features concat: backbone {cfg.backbone!r} has no multi-scale features")
            cin, self.stride = sum(self.backbone.feature_channels), self.backbone.feature_strides[0]
        elif cfg.features == "output":
            cin, self.stride = self.backbone.out_channels, self.backbone.stride
        else:
            raise ValueError(f"model.features {cfg.features!r}: use concat or output")
        self.neck = conv_bn_relu(cin, c)
        self.pose_head = head(c, k)
        self.pools = nn.ModuleList([PoolModule(c, kind) for kind in ("top_left", "bottom_right", "center")])
        self.box_heads = nn.ModuleList([head(c, 1) for _ in range(3)])
        self.offset_heads = nn.ModuleList([head(c, 2) for _ in range(3)])
        self.grouping = GroupingModule(k, cfg.group_channels)
        from posekit.distill.mimicking import HeatmapAdapter

        self.adapter_gt, self.adapter_pred = HeatmapAdapter(k), HeatmapAdapter(k)
        for hd in self.box_heads:
            nn.init.constant_(hd[-1].bias, -math.log((1 - 0.1) / 0.1))  # maps start at p = 0.1 (CenterNet)
        nn.init.normal_(self.pose_head[-1].weight, std=0.001)
        nn.init.zeros_(self.pose_head[-1].bias)
        self.centre_head: nn.Module | None = None
        if cfg.head_shape == "separable":
            self.pose_head = graph_head(cfg.init_heads, "heatmap", cin, k, cold_bias=SIGMOID_START)
            self.centre_head = graph_head(cfg.init_heads, "centre", cin, 1, cold_bias=-math.log((1 - 0.1) / 0.1))  # as the box heads
            nn.init.zeros_(self.box_heads[2][-1].weight)  # the centre logit starts as the centre head's alone
            nn.init.zeros_(self.box_heads[2][-1].bias)
        self.size_divisor = self.backbone.size_divisor
        self.codec = self.make_codec(spec, self.input_size, cfg, self.stride)
        self.flip_perm = flip_permutation(spec.flip_pairs, k)
        self._teacher: list[Any] = []  # a list, so the frozen teacher is no submodule (never saved, never trained)

    @staticmethod
    def make_codec(spec: KeypointSpec, input_size: tuple[int, int], cfg: SimpleConfig, stride: int = 4) -> SimpleCodec:
        """The codec of a model with this config, without building the network (the oracle uses it)."""
        return SimpleCodec(tuple(input_size), stride, spec.num_keypoints, cfg.sigma, cfg.max_persons, tuple(cfg.roi_size),
                           cfg.top_n, cfg.box_threshold)  # fmt: skip

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        if self.cfg.features == "concat":
            feats = self.backbone.forward_features(x)
            size = feats[0].shape[-2:]
            feats = [feats[0]] + [F.interpolate(f, size=size, mode="bilinear", align_corners=False) for f in feats[1:]]
            return torch.cat(feats, 1)
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(pose heatmaps [N,K,h,w], box logits [N,3,h,w] (top-left, bottom-right, centre), offsets [N,6,h,w])."""
        t = self.trunk(x)
        f = self.neck(t)
        pooled = [pool(f) for pool in self.pools]
        box = torch.cat([hd(p) for hd, p in zip(self.box_heads, pooled)], 1)
        off = torch.cat([hd(p) for hd, p in zip(self.offset_heads, pooled)], 1)
        if self.centre_head is None:
            return self.pose_head(f), box, off
        box = torch.cat([box[:, :2], box[:, 2:] + self.centre_head(t)], 1)
        return torch.sigmoid(self.pose_head(t)), box, off

    def group(self, heatmaps: torch.Tensor, boxes: torch.Tensor, batch_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(ROIs of the detached heatmaps [N,K,h,w], the grouping module's output for them)."""
        rois = student_rois(heatmaps.detach().float(), boxes, batch_index, tuple(self.cfg.roi_size), self.stride)
        return rois, self.grouping(rois)

    # ------------------------------------------------------------------ training
    def loss(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        heat, box, off = self(batch["image"])
        terms = {"pose_mse": map_sse(heat, batch["heatmaps"], batch["heatmap_weights"])}
        bw = batch["box_weights"]
        terms["det_focal"] = cfg.det_weight * focal_loss(box, batch["box_heatmaps"], bw.expand_as(box))
        ow = batch["box_offset_weights"].repeat_interleave(2, 1)
        l1 = ((off - batch["box_offsets"]).abs() * ow).sum() / ow.sum().clamp_min(1.0) * 2  # |dx| + |dy| per labelled point
        terms["det_offset_l1"] = cfg.det_weight * cfg.offset_weight * l1
        valid = batch["gt_valid"] > 0
        boxes, keypoints = batch["gt_boxes"][valid], batch["gt_keypoints"][valid]
        index = torch.nonzero(valid)[:, 0]
        if len(boxes):
            size = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)
            jittered = boxes + (torch.rand(boxes.shape, device=boxes.device) * 2 - 1) * cfg.box_jitter * size
            jittered = torch.cat([torch.minimum(jittered[:, :2], jittered[:, 2:] - 1), torch.maximum(jittered[:, 2:], jittered[:, :2] + 1)], 1)
            rois, grouped = self.group(heat, jittered, index)
            windows = own_windows(keypoints, jittered, tuple(cfg.roi_size), self.codec.window_sigma)
            labelled = (keypoints[:, :, 2] > 0).float()[..., None, None]
            terms["group_mse"] = cfg.group_weight * map_sse(grouped, rois * windows, labelled)
        else:
            terms["group_mse"] = heat.sum() * 0
        if self.mimicking(batch):
            terms.update(self.mimic_terms(batch, heat, box, off))
        return terms

    def mimicking(self, batch: dict[str, torch.Tensor]) -> bool:
        """Stage 2: a teacher is configured, mimicking is on, and the trainer's step has reached `mimic_start`."""
        step = int(batch["step"]) if "step" in batch else 0
        return bool(self.cfg.teacher) and self.cfg.mimic != "none" and step >= self.cfg.mimic_start

    def teacher(self) -> Any:
        """The frozen teacher of `cfg.teacher` behind its disk cache, loaded on first use."""
        if not self._teacher:
            from posekit.distill.mimic_teacher import MimicTeacher

            self._teacher.append(MimicTeacher(self.cfg.teacher, self.spec, self.cfg.teacher_cache or None, self.cfg.mimic_sigma))
        return self._teacher[0]

    def mimic_terms(self, batch: dict[str, torch.Tensor], heat: torch.Tensor, box: torch.Tensor, off: torch.Tensor) -> dict[str, torch.Tensor]:
        from posekit.distill.mimicking import mimicking_loss

        boxes = self.mimic_boxes(batch, box, off)
        targets = self.teacher()(batch["image"], boxes, batch["gt_keypoints"], batch["gt_boxes"], batch["gt_valid"])
        if targets is None:
            zero = heat.sum() * 0
            return {"mimic_gt": zero, "mimic_pred": zero}
        roi_boxes, index, t_gt, t_pred, has_gt = targets
        student = student_rois(heat.float(), roi_boxes, index, (t_pred.shape[-1], t_pred.shape[-2]), self.stride)
        terms = mimicking_loss(student, t_gt, t_pred, self.adapter_gt, self.adapter_pred, has_gt)
        use = {"gt": ("mimic_gt",), "pred": ("mimic_pred",), "both": ("mimic_gt", "mimic_pred")}[self.cfg.mimic]
        return {name: self.cfg.mimic_weight * terms[name] for name in use}

    def mimic_boxes(self, batch: dict[str, torch.Tensor], box: torch.Tensor, off: torch.Tensor) -> list[torch.Tensor]:
        """Per image, the boxes the teacher looks at: the persons' GT boxes, or the student's detections."""
        n = len(batch["image"])
        m = self.cfg.mimic_max_boxes
        if self.cfg.mimic_boxes == "gt":
            return [batch["gt_boxes"][i][batch["gt_valid"][i] > 0][:m] for i in range(n)]
        with torch.no_grad():
            prob, off = torch.sigmoid(box.detach().float()).cpu(), off.detach().float().cpu()
            return [self.codec.boxes.decode(prob[i], off[i], self.cfg.box_threshold)[0][:m].to(box.device) for i in range(n)]

    # ------------------------------------------------------------------ inference
    @torch.inference_mode()
    def outputs(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Pose heatmaps [N,K,h,w] (flip-averaged with `flip_test`), box probabilities [N,3,h,w], offsets [N,6,h,w]."""
        heat, box, off = self(images)
        if self.cfg.flip_test:
            heat = (heat + self(images.flip(-1))[0].flip(-1)[:, self.flip_perm]) / 2
        return heat.float(), torch.sigmoid(box.float()), off.float()

    @torch.inference_mode()
    def decode(self, heat: torch.Tensor, box: torch.Tensor, off: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One image's outputs (as `outputs` gives them, without the batch axis) -> keypoints [P,K,2] (input
        pixels), keypoint scores [P,K] and person scores [P]: boxes from the triplet maps (the top N), each
        grouped by the grouping module, keypoints read from the grouped ROI and refined on the global map."""
        boxes, scores = self.codec.boxes.decode(box.cpu(), off.cpu(), self.cfg.box_threshold)
        boxes, scores = boxes[: self.cfg.top_n], scores[: self.cfg.top_n]
        device = next(self.parameters()).device
        _, grouped = self.group(heat[None].to(device), boxes.to(device), torch.zeros(len(boxes), dtype=torch.long, device=device))
        kp, kp_scores, box_scores = self.codec.decode(heat.cpu(), boxes, scores, grouped.cpu())
        return kp, kp_scores, person_scores(box_scores, kp_scores)

    def predict(self, batch: dict[str, torch.Tensor]) -> list[Poses]:
        heat, box, off = self.outputs(batch["image"])
        matrices = batch["matrix"].cpu().numpy()
        return [image_poses(*self.decode(heat[i], box[i], off[i]), matrices[i], self.spec) for i in range(len(heat))]
