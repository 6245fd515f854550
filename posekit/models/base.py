"""The interface every trainable pose family implements (torchvision's detection models are the model:
the model owns its losses and its post-processing, the trainer knows nothing about either).

- `forward(images)` -> raw tensors: what `export` traces.
- `loss(batch)` -> named loss terms; the trainer sums them and logs each.
- `predict(batch)` -> one `Poses` per batch item, in image pixels: decoding, flip test and scoring inside.
  For `input_kind == "crops"` an item is one person crop (a `Poses` of one person); for "image" it is one
  whole image (all its persons).
- `input_kind`, `codec` (encodes the dataset's targets, decodes outputs), `spec` (a `KeypointSpec`),
  `stride` (input pixels per output pixel) and `size_divisor` (input sides must be multiples of it).

Batches are dicts of tensors made by the dataset of the model's `input_kind` (`posekit.data.build`):
"image" [N,3,H,W] (normalised, `transforms.normalise`), "matrix" [N,2,3] (image pixels -> input pixels),
"index" [N] (the dataset item), plus the targets the model's codec encoded, and for crops "box" [N,4] /
"box_score" [N] (the person box the crop came from).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from posekit.structures import KeypointSpec, Poses


class PoseModel(nn.Module):
    family: ClassVar[str]
    input_kind: ClassVar[str]  # "crops" | "image"
    spec: KeypointSpec
    codec: Any
    stride: int
    size_divisor: int
    input_size: tuple[int, int]  # (w, h) the model was trained at

    def loss(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def predict(self, batch: dict[str, torch.Tensor]) -> list[Poses]:
        raise NotImplementedError


class LossModule(nn.Module):
    """`forward(batch) = model.loss(batch)`: what the trainer wraps in DDP, so that gradient
    synchronisation sees the model's forward pass however `loss` calls it."""

    def __init__(self, model: PoseModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.model.loss(batch)

