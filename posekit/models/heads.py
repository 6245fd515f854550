"""Heads: SimpleBaseline deconvolutions, FastPose's DUC (PixelShuffle), HRNet's 1x1, and AlphaPose's
symmetric integral regression (../shared/docs/alphapose.txt §3.1), and DistilPose's simulated-heatmap regression head."""

from __future__ import annotations

import torch
from torch import nn


def init_head(head: nn.Module) -> nn.Module:
    """The heatmap-head initialisation of SimpleBaseline and HRNet (and MMPose's heads): convolutions
    ~ N(0, 0.001) with zero bias, BN weight 1 / bias 0. Heatmaps start near zero everywhere, which keeps
    a from-scratch model from sitting on a plateau of noisy initial maps (PyTorch's default init did:
    an 8-person overfit run reached AP 0.15 or 0.98 depending on the seed)."""
    for m in head.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, std=0.001)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return head


class DeconvHead(nn.Module):
    """SimpleBaseline: 3 x (4x4 transposed conv stride 2, BN, ReLU), then a 1x1 conv to K heatmaps."""

    def __init__(self, in_channels: int, num_keypoints: int, filters: int = 256, num_deconv: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for _ in range(num_deconv):
            layers += [nn.ConvTranspose2d(c, filters, 4, 2, 1, bias=False), nn.BatchNorm2d(filters), nn.ReLU(inplace=True)]
            c = filters
        self.deconv_layers = nn.Sequential(*layers)
        self.final_layer = nn.Conv2d(c, num_keypoints, 1)
        self.upsample = 2**num_deconv
        init_head(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_layer(self.deconv_layers(x))


class DUC(nn.Module):
    """Dense upsampling convolution: 3x3 conv to r^2 x channels, BN, ReLU, PixelShuffle(r)."""

    def __init__(self, in_channels: int, out_channels: int, upscale: int = 2) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.pixel_shuffle = nn.PixelShuffle(upscale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pixel_shuffle(self.relu(self.bn(self.conv(x))))


class DUCHead(nn.Module):
    """FastPose (alphapose.txt Fig. 5): PixelShuffle(2), DUC x2, 3x3 conv to K: stride 32 -> 4."""

    def __init__(self, in_channels: int, num_keypoints: int) -> None:
        super().__init__()
        c = in_channels // 4  # after PixelShuffle(2)
        self.shuffle1 = nn.PixelShuffle(2)
        self.duc1 = DUC(c, c * 2, 2)  # -> c/2 channels
        self.duc2 = DUC(c // 2, c, 2)  # -> c/4 channels
        self.conv_out = nn.Conv2d(c // 4, num_keypoints, 3, padding=1)
        self.upsample = 8
        init_head(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.duc2(self.duc1(self.shuffle1(x))))


class ConvHead(nn.Module):
    """HRNet's head: a 1x1 conv to K heatmaps."""

    def __init__(self, in_channels: int, num_keypoints: int) -> None:
        super().__init__()
        self.final_layer = nn.Conv2d(in_channels, num_keypoints, 1)
        self.upsample = 1
        init_head(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_layer(x)


class SeparableHead(nn.Module):
    """MoveNet's head on a stride-4 FPN map: depthwise 3x3, 1x1 to `hidden`, ReLU, 1x1 to K heatmaps."""

    def __init__(self, in_channels: int, num_keypoints: int, hidden: int = 96) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(in_channels, in_channels, 3, padding=1, groups=in_channels, bias=False)
        self.pointwise = nn.Conv2d(in_channels, hidden, 1)
        self.relu = nn.ReLU(inplace=True)
        self.final_layer = nn.Conv2d(hidden, num_keypoints, 1)
        self.upsample = 1
        init_head(self)  # heatmaps start near zero; the hidden layers get He init (no BN here to rescale them)
        nn.init.kaiming_normal_(self.depthwise.weight, nonlinearity="relu")
        nn.init.kaiming_normal_(self.pointwise.weight, nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_layer(self.relu(self.pointwise(self.depthwise(x))))


class SymmetricIntegral(torch.autograd.Function):
    """mu = sum_x x p_x over a probability heatmap p [N,K,H,W] -> [N,K,2] (x, y), with the amplitude
    symmetric gradient of eq. 3 in backward: dL/dp_x = A (sgn(x - mu_x) g_x + sgn(y - mu_y) g_y), where
    g = dL/dmu (for an L1 loss, sgn(mu - mu_gt) times the loss scale) and A = W/8 (x) and H/8 (y)."""

    @staticmethod
    def forward(ctx, p: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        h, w = p.shape[-2:]
        xs = torch.arange(w, dtype=p.dtype, device=p.device)
        ys = torch.arange(h, dtype=p.dtype, device=p.device)
        mu = torch.stack([(p.sum(-2) * xs).sum(-1), (p.sum(-1) * ys).sum(-1)], dim=-1)
        ctx.save_for_backward(mu)
        ctx.hw = (h, w)
        return mu

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        (mu,) = ctx.saved_tensors
        h, w = ctx.hw
        xs = torch.arange(w, dtype=grad.dtype, device=grad.device)
        ys = torch.arange(h, dtype=grad.dtype, device=grad.device)
        gx = (w / 8) * torch.sign(xs - mu[..., 0:1]) * grad[..., 0:1]  # [N,K,W]
        gy = (h / 8) * torch.sign(ys - mu[..., 1:2]) * grad[..., 1:2]  # [N,K,H]
        return gy[..., :, None] + gx[..., None, :]


def two_step_normalise(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eqs. 13-15: confidence map C = sigmoid(z), confidence = max C (size-independent); P = C / sum C."""
    c = torch.sigmoid(logits)
    conf = c.flatten(2).amax(-1)
    p = c / c.flatten(2).sum(-1).clamp_min(1e-12)[..., None, None]
    return p, conf


class IntegralHead(nn.Module):
    """Wraps a heatmap head: logits -> (coordinates [N,K,2] in heatmap pixels, confidences [N,K])."""

    def __init__(self, heatmap_head: nn.Module) -> None:
        super().__init__()
        self.heatmap_head = heatmap_head
        self.upsample = heatmap_head.upsample

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits = self.heatmap_head(x)
        p, conf = two_step_normalise(logits)
        return SymmetricIntegral.apply(p), conf, logits


class SimulatedHeatmapHead(nn.Module):
    """A regression head for DistilPose's students (distilpose.md §3.2, the CNN variant of Table 6: DeepPose-style,
    global pooling then a linear layer): per keypoint, coordinates (μx, μy) in heatmap pixels of a
    `heatmap_size` (w, h) map, deviations (σx, σy) > 0 of the simulated heatmap, and a confidence s in (0, 1).
    Returns (mu [N,K,2], sigma [N,K,2], confidence [N,K]); `posekit.distill.simulated_heatmaps` holds the losses."""

    MIN_SIGMA = 0.1  # heatmap pixels: keeps exp(-d²/2σ²) differentiable where the prediction starts

    def __init__(self, in_channels: int, num_keypoints: int, heatmap_size: tuple[int, int], hidden: int = 256) -> None:
        super().__init__()
        self.k = num_keypoints
        self.register_buffer("extent", torch.tensor([heatmap_size[0] - 1, heatmap_size[1] - 1], dtype=torch.float32), persistent=False)
        self.reduce = nn.Sequential(nn.Conv2d(in_channels, hidden, 1), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(hidden, num_keypoints * 5)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return regression_activations(self.fc(self.reduce(features)).view(-1, self.k, 5), self.extent)


def regression_activations(raw: torch.Tensor, extent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Raw [..., 5] -> μ = sigmoid × `extent` (inside the map by construction), σ = softplus + MIN_SIGMA,
    s = sigmoid: the DistilPose student's (x, y, σx, σy, s) per keypoint."""
    mu = torch.sigmoid(raw[..., 0:2]) * extent
    sigma = nn.functional.softplus(raw[..., 2:4]) + SimulatedHeatmapHead.MIN_SIGMA
    return mu, sigma, torch.sigmoid(raw[..., 4])
