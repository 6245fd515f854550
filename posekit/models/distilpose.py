"""DistilPose (distilpose.md): a regression student distilled from a heatmap teacher, and the teacher, in one family.

- `output: regression` is the student: a CNN trunk's stride-4 features cut into patches (visual tokens) plus
  K learnable keypoint tokens, a transformer encoder (the Token-distilling Encoder, §3.1), and per keypoint
  token a linear head to (μx, μy, σx, σy, s) (§3.2). `encoder: pooled` drops the tokens: the CNN variant of
  Table 6 (DeepPose-style pooling + linear, `heads.SimulatedHeatmapHead`).
- `output: heatmap` is the TokenPose-style teacher: the same token layout, each keypoint token mapped to
  its h×w heatmap by an MLP, trained with the heatmap MSE.

A student with `teacher` set trains with eq. 7: L_reg (smooth-L1 on coordinates normalised to the map, as the
official code's regression targets are) + α3 L_SH + α4 L_CS against the teacher's maps on the student's own
augmented crops, + α1 L_KT + α2 L_VT when the teacher is a token model with the same token layout. The
teacher runs inside `loss` on every batch, frozen and held outside the module tree: it never enters the
student's checkpoint, and a student loads for inference without it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from posekit.codecs.heatmap import HeatmapCodec, flip_heatmaps, flip_permutation
from posekit.distill import simulated_heatmaps as sh
from posekit.models.backbones import build_backbone
from posekit.models.base import PoseModel, crop_heatmap_mse, crop_poses
from posekit.models.heads import SimulatedHeatmapHead, regression_activations
from posekit.structures import KeypointSpec, Poses

OUTPUTS = ("regression", "heatmap")
ENCODERS = ("tokens", "pooled")


@dataclass
class DistilPoseConfig:
    family: str = "distilpose"
    backbone: str = "stemnet"  # any posekit backbone; a pose-pretrained graph trunk for the small config
    output: str = "regression"  # regression (the student) | heatmap (the TokenPose-style teacher)
    encoder: str = "tokens"  # tokens (TDE) | pooled (the CNN variant of Table 6; regression only)
    patch: tuple[int, int] = (4, 3)  # (h, w) feature pixels per visual token (paper: 4x3)
    dim: int = 192  # token dimension (paper: 192)
    depth: int = 12  # transformer layers (paper: 12)
    heads: int = 8
    mlp_ratio: int = 3
    teacher: str = ""  # a heatmap teacher: a distilpose heatmap checkpoint, a top-down checkpoint, movenet-thunder|lightning
    simulated_heatmaps: bool = True  # L_SH + L_CS against the teacher's maps (needs `teacher`)
    token_distill: bool = True  # L_KT + L_VT (needs a token teacher of the same layout)
    # L_SH and L_CS over the keypoints: "sum" as eqs. 5-6 are written, "mean" as the official code reduces them
    # (JointsMSELoss / l1_loss): K times weaker against L_reg
    keypoint_reduction: str = "sum"
    # L_SH against the teacher's maps as they are ("raw"), or each divided by its peak ("normalised"): eq. 2's
    # simulated map peaks at 1, so a teacher peaking lower (MoveNet's probabilities, ~0.4) is matched by
    # shrinking sigma to its floor; normalised, the shape is distilled and L_CS still learns the raw peak value.
    # Maps whose peak is under 0.1 are left out of L_SH when normalised.
    teacher_peaks: str = "raw"
    # L_SH + L_CS join at this training step (before it L_reg, and token distillation if on): the simulated maps start from
    # coordinates that already regress, instead of pulling sigma and mu of a random head towards the teacher
    sh_start: int = 0
    flip_test: bool = True


def sine_positions(rows: int, cols: int, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """[rows*cols, dim] sine/cosine embedding of each token's (x, y) cell centre scaled to [0, 2π] (DETR /
    TokenPose style): a quarter of the dimensions each for sin x, cos x, sin y, cos y."""
    if dim % 4:
        raise ValueError(f"model.dim {dim}: sine positions need a multiple of 4")
    omega = temperature ** -(torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))
    ys, xs = torch.meshgrid((torch.arange(rows) + 0.5) / rows * 2 * math.pi, (torch.arange(cols) + 0.5) / cols * 2 * math.pi, indexing="ij")
    x, y = xs.reshape(-1, 1).double() * omega, ys.reshape(-1, 1).double() * omega
    return torch.cat([x.sin(), x.cos(), y.sin(), y.cos()], 1).float()


class SelfAttention(nn.Module):
    """Multi-head self-attention written out (softmax(QKᵀ/√d)V): exports to ONNX and TorchScript as plain ops,
    where `nn.MultiheadAttention`'s inference fast path does not. Parameter names are nn.MultiheadAttention's."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads, self.scale = heads, 1 / math.sqrt(dim // heads)
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t = x.shape[0], x.shape[1]  # shapes, not len(): a traced export keeps the batch axis dynamic
        q, k, v = F.linear(x, self.in_proj_weight, self.in_proj_bias).view(n, t, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        attention = torch.softmax(q @ k.transpose(-2, -1) * self.scale, -1)
        return self.out_proj((attention @ v).transpose(1, 2).reshape(n, t, -1))


class EncoderLayer(nn.Module):
    """Pre-norm transformer layer (x + attn(norm1(x)), then x + mlp(norm2(x)), GELU, no dropout): the same
    function and parameter names as `nn.TransformerEncoderLayer(norm_first=True, activation="gelu")` (a test)."""

    def __init__(self, dim: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.self_attn = SelfAttention(dim, heads)
        self.linear1, self.linear2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.norm1(x))
        return x + self.linear2(F.gelu(self.linear1(self.norm2(x))))


class TokenEncoder(nn.Module):
    """Patch tokens of a feature map + K keypoint tokens -> a transformer encoder (pre-norm, GELU)."""

    def __init__(self, channels: int, grid: tuple[int, int], patch: tuple[int, int], k: int, dim: int, depth: int, heads: int,
                 mlp_ratio: int) -> None:  # fmt: skip
        super().__init__()
        gh, gw = grid
        if gh % patch[0] or gw % patch[1]:
            raise ValueError(f"model.patch {tuple(patch)} does not tile the {gh}x{gw} feature map")
        self.k = k
        self.embed = nn.Conv2d(channels, dim, patch, patch)
        self.num_patches = (gh // patch[0]) * (gw // patch[1])
        # fixed 2D sine positions (TokenPose's "sine-full", the official DistilPose setting): a learnt embedding
        # starting near 0 left the tokens without position, and a 500-step teacher stuck at the mean heatmap
        self.register_buffer("position", sine_positions(gh // patch[0], gw // patch[1], dim)[None], persistent=False)
        self.keypoints = nn.Parameter(torch.zeros(1, k, dim))
        nn.init.trunc_normal_(self.keypoints, std=0.02)
        self.layers = nn.Sequential(*(EncoderLayer(dim, heads, dim * mlp_ratio) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keypoint tokens [N,K,D] and visual tokens [N,P,D] after the encoder."""
        visual = self.embed(features).flatten(2).transpose(1, 2) + self.position
        tokens = self.norm(self.layers(torch.cat([self.keypoints.expand(visual.shape[0], -1, -1), visual], 1)))
        return tokens[:, : self.k], tokens[:, self.k :]


class DistilPoseModel(PoseModel):
    family = "distilpose"
    input_kind = "crops"
    config_class = DistilPoseConfig

    def __init__(self, spec: KeypointSpec, input_size: tuple[int, int], cfg: DistilPoseConfig | None = None) -> None:
        super().__init__()
        cfg = cfg or DistilPoseConfig()
        if cfg.output not in OUTPUTS or cfg.encoder not in ENCODERS:
            raise ValueError(f"model.output {cfg.output!r} / model.encoder {cfg.encoder!r}: use {OUTPUTS} / {ENCODERS}")
        if cfg.teacher_peaks not in ("raw", "normalised"):
            raise ValueError(f"model.teacher_peaks {cfg.teacher_peaks!r}: use raw or normalised")
        if cfg.keypoint_reduction not in ("sum", "mean"):
            raise ValueError(f"model.keypoint_reduction {cfg.keypoint_reduction!r}: use sum or mean")
        if cfg.output == "heatmap" and cfg.encoder != "tokens":
            raise ValueError("model.output heatmap is the token teacher: it needs model.encoder tokens")
        self.cfg, self.spec, self.input_size = cfg, spec, tuple(input_size)
        k = spec.num_keypoints
        self.backbone = build_backbone(cfg.backbone)
        self.stride = self.backbone.stride
        self.size_divisor = self.backbone.size_divisor
        w, h = self.input_size
        self.codec = HeatmapCodec((w, h), (w // self.stride, h // self.stride))
        hw, hh = self.codec.heatmap_size
        self.flip_perm = flip_permutation(spec.flip_pairs, k)
        self.register_buffer("extent", torch.tensor([hw - 1, hh - 1], dtype=torch.float32), persistent=False)
        if cfg.encoder == "pooled":
            self.head = SimulatedHeatmapHead(self.backbone.out_channels, k, (hw, hh))
        else:
            self.encoder = TokenEncoder(self.backbone.out_channels, (hh, hw), cfg.patch, k, cfg.dim, cfg.depth, cfg.heads, cfg.mlp_ratio)
            if cfg.output == "regression":  # (x, y, σx, σy, s) per keypoint token
                self.head = nn.Linear(cfg.dim, 5)
            else:  # TokenPose: an MLP from each keypoint token to its h×w heatmap
                self.head = nn.Sequential(nn.Linear(cfg.dim, cfg.dim * 2), nn.GELU(), nn.Linear(cfg.dim * 2, hw * hh))
                # its last layer starts at 0: with a random one, per-image differences in the tokens only add noise to
                # the maps, and the first steps remove them: the tokens became the same for every image and the teacher
                # stayed at the mean heatmap (measured on 16 fixed LSP crops: 100 steps at 0.0086 vs 0.0034 from zeros)
                nn.init.zeros_(self.head[-1].weight)
                nn.init.zeros_(self.head[-1].bias)
        self._teacher: list[Any] = []  # a list, so the frozen teacher is no submodule (never saved, never trained)

    # -- network -------------------------------------------------------------------------------------
    def tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder(self.backbone(x))

    def outputs(self, keypoint_tokens: torch.Tensor) -> Any:
        raw = self.head(keypoint_tokens)
        if self.cfg.output == "heatmap":
            hw, hh = self.codec.heatmap_size
            return raw.view(raw.shape[0], -1, hh, hw)
        return regression_activations(raw, self.extent)

    def forward(self, x: torch.Tensor):  # regression: (mu [N,K,2] map px, sigma [N,K,2], score [N,K]); heatmap: [N,K,h,w]
        if self.cfg.encoder == "pooled":
            return self.head(self.backbone(x))
        return self.outputs(self.tokens(x)[0])

    # -- training ------------------------------------------------------------------------------------
    def loss(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        x = batch["image"]
        if self.cfg.output == "heatmap":
            return {"heatmap_mse": crop_heatmap_mse(self(x), batch["heatmaps"], batch["weights"])}
        if self.cfg.encoder == "pooled":
            (mu, sigma, score), kt, vt = self(x), None, None
        else:
            kt, vt = self.tokens(x)
            mu, sigma, score = self.outputs(kt)
        size = torch.tensor(self.codec.heatmap_size, dtype=mu.dtype, device=mu.device)
        target = batch["keypoints"] * torch.from_numpy(self.codec.scale).to(mu)
        losses = {"regression": sh.regression_loss(mu / size, target / size, batch["visible"], 1, 1)}
        teacher = self.teacher()
        if teacher is None:
            return losses
        step = int(batch["step"]) if "step" in batch else self.cfg.sh_start
        simulate = self.cfg.simulated_heatmaps and step >= self.cfg.sh_start
        if not simulate and not (self.cfg.token_distill and kt is not None and getattr(teacher, "with_tokens", False)):
            return losses  # before sh_start with no token term: the teacher's pass would go unused
        maps, valid, t_tokens = teacher(x)
        if simulate:
            weights = valid.to(mu)[None].expand_as(score)
            if self.cfg.keypoint_reduction == "mean":
                weights = weights / valid.sum().clamp_min(1)
            shapes, shape_weights = maps, weights
            if self.cfg.teacher_peaks == "normalised":
                peaks = maps.amax((-2, -1))
                shapes, shape_weights = maps / peaks.clamp_min(0.1)[..., None, None], weights * (peaks >= 0.1)
            losses["simulated_heatmap"] = sh.ALPHA_SH * sh.simulated_heatmap_loss(mu, sigma, shapes, shape_weights)
            losses["confidence"] = sh.ALPHA_CS * sh.confidence_loss(mu, score, maps, weights)
        if self.cfg.token_distill and t_tokens is not None and kt is not None:
            losses["keypoint_tokens"] = sh.ALPHA_KT * F.mse_loss(kt, t_tokens[0])
            losses["visual_tokens"] = sh.ALPHA_VT * F.mse_loss(vt, t_tokens[1])
        return losses

    def teacher(self) -> Any:
        """The frozen teacher of `cfg.teacher`, loaded on first use (a student loaded for inference never needs it)."""
        if not self.cfg.teacher or self.cfg.output != "regression":
            return None
        if not self._teacher:
            from posekit.distill.online import load_online_teacher

            self._teacher.append(load_online_teacher(self.cfg.teacher, self))
        return self._teacher[0]

    # -- inference -----------------------------------------------------------------------------------
    @torch.inference_mode()
    def crop_outputs(self, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray, torch.Tensor | None]:
        """Keypoints [N,K,2] in crop pixels and scores [N,K] (the heatmap teacher: its maps too), with the
        flip test when configured (the mirrored crop's prediction, left/right swapped, averaged)."""
        if self.cfg.output == "heatmap":
            hm = self(images)
            if self.cfg.flip_test:
                hm = (hm + flip_heatmaps(self(images.flip(-1)), self.spec.flip_pairs)) / 2
            xy, scores = self.codec.decode(hm.float().cpu().numpy(), "dark")
            return xy, scores, hm
        mu, _, score = self(images)
        if self.cfg.flip_test:
            fmu, _, fscore = self(images.flip(-1))
            fmu, fscore = fmu[:, self.flip_perm].clone(), fscore[:, self.flip_perm]
            fmu[..., 0] = self.extent[0] - fmu[..., 0]
            mu, score = (mu + fmu) / 2, (score + fscore) / 2
        return mu.float().cpu().numpy() / self.codec.scale, score.float().cpu().numpy(), None

    def predict_crops(self, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        xy, scores, _ = self.crop_outputs(images)
        return xy, scores

    def predict(self, batch: dict[str, torch.Tensor]) -> list[Poses]:
        """One person per crop, in image pixels; person score = box score x mean keypoint score (eq. 3)."""
        xy, scores = self.predict_crops(batch["image"])
        return crop_poses(batch, xy, scores, (batch["box_score"].cpu().numpy() * scores.mean(1)).astype(np.float32), self.spec.name)
