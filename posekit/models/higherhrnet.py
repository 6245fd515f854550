"""HigherHRNet (Cheng et al., CVPR 2020): bottom-up pose with associative embedding.

Backbone (HRNet, or a pretrained graph trunk) -> stride-4 features -> 1x1 conv predicting K heatmaps +
K tags at 1/4; each deconvolution module takes concat(features, predicted heatmaps), upsamples x2 with
a 4x4 transposed conv + BN + ReLU, refines with basic residual blocks and predicts K heatmaps at the new
resolution (§3.1-3.3). `num_deconvs: 0` is the HRNet bottom-up baseline (1/4 only).

Training: MSE on every resolution's heatmaps (same sigma everywhere), summed; associative-embedding
pull / push on the 1/4 tags (`posekit.codecs.associative_embedding`). Inference (§3.5): every heatmap
upsampled to the input size and averaged, flip test (tags of both passes concatenated), optional
multi-scale test (heatmaps averaged, tags concatenated), then the codec's grouping.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from posekit.codecs.associative_embedding import AssociativeEmbeddingCodec, ae_loss, grouping_order, heatmap_mse
from posekit.codecs.heatmap import flip_permutation
from posekit.models.backbones import BN_MOMENTUM, BasicBlock, build_backbone
from posekit.models.base import PoseModel, image_poses
from posekit.models.graph_heads import SIGMOID_START, check_init_heads, graph_head
from posekit.models.heads import SeparableHead
from posekit.structures import KeypointSpec, Poses


@dataclass
class HigherHRNetConfig:
    family: str = "higherhrnet"
    backbone: str = "hrnet_w32"
    neck_channels: int = 0  # > 0: a 3x3 conv + BN + ReLU widening a narrow trunk's stride-4 features first
    head_shape: str = "conv"  # 1/4 heads: "conv" (the paper's 1x1 on the neck) | "separable" (MoveNet's, on the trunk, sigmoid heatmaps)
    init_heads: str = ""  # "movenet_multipose": the 1/4 heatmap head starts as that graph's keypoint heatmap head
    num_deconvs: int = 1  # deconvolution modules, each doubling the heatmap resolution (0 = HRNet baseline)
    deconv_channels: int = 32
    num_basic_blocks: int = 4  # residual blocks after each transposed conv
    cat_output: bool = True  # feed the predicted heatmaps into the next deconvolution module
    sigma: float = 2.0  # Gaussian sigma in heatmap pixels, the same at every resolution
    max_persons: int = 30
    heatmap_weight: float = 1.0
    pull_weight: float = 1e-3
    push_weight: float = 1e-3
    flip_test: bool = True
    test_scales: tuple[float, ...] = (1.0,)
    top_k: int = 30  # candidates per joint
    detection_threshold: float = 0.1
    tag_threshold: float = 1.0
    nms_kernel: int = 5  # max-pool window at the input size
    refine: bool = True  # fill a person's missing joints from heat and tag distance
    adjust: str = "taylor"  # sub-pixel step: "quarter" (associative embedding's) | "taylor" (codec doc)


class DeconvModule(nn.Module):
    def __init__(self, in_channels: int, channels: int, num_blocks: int, num_keypoints: int) -> None:
        super().__init__()
        self.up = nn.Sequential(
            nn.ConvTranspose2d(in_channels, channels, 4, 2, 1, bias=False),
            nn.BatchNorm2d(channels, momentum=BN_MOMENTUM),
            nn.ReLU(inplace=True),
        )
        self.blocks = nn.Sequential(*[BasicBlock(channels, channels) for _ in range(num_blocks)])
        self.final_layer = nn.Conv2d(channels, num_keypoints, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.blocks(self.up(x))
        return f, self.final_layer(f)


class HigherHRNetModel(PoseModel):
    family = "higherhrnet"
    input_kind = "image"
    config_class = HigherHRNetConfig
    oks_nms = None  # HigherHRNet evaluates without pose NMS: grouping already gives each person once
    # what `posekit eval --oracle higherhrnet` scores: heatmaps at 1/4 only, and 1/4 + 1/2 aggregated
    oracle_variants: ClassVar[dict[str, dict]] = {"1/4": {"num_deconvs": 0}, "1/2 (+1/4)": {"num_deconvs": 1}}

    def __init__(self, spec: KeypointSpec, input_size: tuple[int, int], cfg: HigherHRNetConfig | None = None) -> None:
        super().__init__()
        cfg = cfg or HigherHRNetConfig()
        self.cfg, self.spec, self.input_size = cfg, spec, tuple(input_size)
        k = spec.num_keypoints
        check_init_heads(cfg.init_heads, cfg.backbone, cfg.head_shape, "conv")
        self.backbone = build_backbone(cfg.backbone)
        c = self.backbone.out_channels
        if cfg.head_shape == "separable":  # on the trunk's own output, as in the graph
            self.heatmap_head = graph_head(cfg.init_heads, "heatmap", c, k, cold_bias=SIGMOID_START)
            self.tag_head = SeparableHead(c, k)  # tags are new: no graph head means them
        self.neck = nn.Identity()
        if cfg.neck_channels:
            self.neck = nn.Sequential(nn.Conv2d(c, cfg.neck_channels, 3, 1, 1, bias=False),
                                      nn.BatchNorm2d(cfg.neck_channels, momentum=BN_MOMENTUM), nn.ReLU(inplace=True))  # fmt: skip
            c = cfg.neck_channels
        if cfg.head_shape == "conv":
            self.final_layer = nn.Conv2d(c, 2 * k, 1)  # K heatmaps + K tags
        self.deconvs = nn.ModuleList()
        for _ in range(cfg.num_deconvs):
            self.deconvs.append(DeconvModule(c + (k if cfg.cat_output else 0), cfg.deconv_channels, cfg.num_basic_blocks, k))
            c = cfg.deconv_channels
        for m in ([self.final_layer] if cfg.head_shape == "conv" else []) + [d.final_layer for d in self.deconvs]:
            nn.init.normal_(m.weight, std=0.001)
            nn.init.zeros_(m.bias)
        self.stride = self.backbone.stride
        self.size_divisor = self.backbone.size_divisor
        self.codec = self.make_codec(spec, self.input_size, cfg, self.stride)
        self.strides = self.codec.strides
        self.flip_perm = flip_permutation(spec.flip_pairs, k)

    @staticmethod
    def make_codec(spec: KeypointSpec, input_size: tuple[int, int], cfg: HigherHRNetConfig, stride: int = 4) -> AssociativeEmbeddingCodec:
        """The codec of a model with this config, without building the network (the oracle uses it)."""
        return AssociativeEmbeddingCodec(
            tuple(input_size), tuple(stride // 2**i for i in range(cfg.num_deconvs + 1)), spec.num_keypoints, grouping_order(spec),
            cfg.sigma, cfg.max_persons, cfg.top_k, cfg.detection_threshold, cfg.tag_threshold, cfg.nms_kernel, cfg.refine, cfg.adjust,
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(heatmaps at 1/4 [N,K,h,w], tags at 1/4 [N,K,h,w], heatmaps at each finer resolution ...)."""
        k = self.spec.num_keypoints
        trunk = self.backbone(x)
        f = self.neck(trunk)
        if self.cfg.head_shape == "separable":
            heatmaps, tags = torch.sigmoid(self.heatmap_head(trunk)), self.tag_head(trunk)
        else:
            out = self.final_layer(f)
            heatmaps, tags = out[:, :k], out[:, k:]
        outputs = [heatmaps, tags]
        for deconv in self.deconvs:
            f, heatmaps = deconv(torch.cat([f, heatmaps], 1) if self.cfg.cat_output else f)
            outputs.append(heatmaps)
        return tuple(outputs)

    def loss(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        heatmaps, tags, *finer = self(batch["image"])
        terms = {}
        for s, hm in zip(self.strides, [heatmaps, *finer]):
            terms[f"heatmap_mse_s{s}"] = self.cfg.heatmap_weight * heatmap_mse(hm, batch[f"heatmaps_s{s}"], batch[f"heatmap_weights_s{s}"])
        pull, push = ae_loss(tags, batch["tag_index"], batch["tag_weights"])
        terms["ae_pull"], terms["ae_push"] = self.cfg.pull_weight * pull, self.cfg.push_weight * push
        return terms

    @torch.inference_mode()
    def outputs(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Aggregated heatmaps [N,K,H,W] and tags [N,K,H,W,T] at the input size, over resolutions, the flip
        test (T doubles) and the test scales (T multiplies)."""
        h, w = images.shape[-2:]
        heat_sum, all_tags = 0.0, []
        for scale in self.cfg.test_scales:
            x = images
            if scale != 1.0:
                d = self.size_divisor
                size = (max(d, round(h * scale / d) * d), max(d, round(w * scale / d) * d))
                x = F.interpolate(images, size, mode="bilinear", align_corners=False)
            passes = [(x, False), (x.flip(-1), True)] if self.cfg.flip_test else [(x, False)]
            for inp, flipped in passes:
                hm, tg, *finer = self(inp)
                heat, tag = self.codec.aggregate([hm, *finer], tg, (h, w))
                if flipped:
                    heat, tag = heat.flip(-1)[:, self.flip_perm], tag.flip(-1)[:, self.flip_perm]
                heat_sum = heat_sum + heat / len(passes)
                all_tags.append(tag)
        return heat_sum / len(self.cfg.test_scales), torch.stack(all_tags, -1)

    def predict(self, batch: dict[str, torch.Tensor]) -> list[Poses]:
        heat, tags = self.outputs(batch["image"])
        heat, tags, matrices = heat.cpu(), tags.cpu(), batch["matrix"].cpu().numpy()
        return [image_poses(*self.codec.decode(heat[i], tags[i]), matrices[i], self.spec, None) for i in range(len(heat))]
