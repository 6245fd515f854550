"""Online heatmap teachers for students trained on augmented crops (DistilPose): the teacher sees exactly the
crop the student sees, after augmentation, so its maps can never disagree with the student's targets.

`load_online_teacher(name_or_checkpoint, student)` returns a callable: normalised crops [N,3,H,W] ->
(maps [N,K,h,w] on the student's heatmap grid, valid [K] (the student's keypoints the teacher has),
tokens (keypoint [N,K,D], visual [N,P,D]) or None). Teachers:
- a DistilPose heatmap checkpoint (the TokenPose-style token teacher): maps and tokens; same input size;
- a top-down heatmap checkpoint: its maps; same heatmap size;
- `movenet-thunder` / `movenet-lightning`: the graph's keypoint heatmaps (probabilities) on the crop resized
  to its input, resampled onto the student's grid; joints matched by name (COCO has no LSP neck / head top).
Everything runs under `no_grad` in eval mode: the teacher is frozen (not `inference_mode`: its tokens enter the
student's autograd graph as MSE targets).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from posekit.data.specs import get_spec
from posekit.data.transforms import MEAN, STD
from posekit.distill.teachers import MOVENET_TEACHERS
from posekit.errors import PosekitError


def channel_map(student_names: tuple[str, ...], teacher_names: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """For each student keypoint the teacher channel of the same name (0 where none) and whether it exists."""
    index = [teacher_names.index(n) if n in teacher_names else 0 for n in student_names]
    return torch.tensor(index), torch.tensor([n in teacher_names for n in student_names])


def student_grid(student: Any, teacher_crop: int, teacher_side: int) -> torch.Tensor:
    """grid_sample coordinates [1,h,w,2] (align_corners=True) of the student's heatmap pixels on the heatmap of a
    teacher that sees the student's crop resized to teacher_crop² and outputs teacher_side² maps (MoveNet:
    heatmap pixel i covers crop pixel i * crop/side - 0.5, as `teachers.MoveNetTeacher.heatmap_matrix`)."""
    hw, hh = student.codec.heatmap_size
    sx, sy = student.codec.scale  # student crop px -> map px
    w, h = student.input_size
    qx = torch.arange(hw, dtype=torch.float64) / sx  # student crop pixels
    qy = torch.arange(hh, dtype=torch.float64) / sy
    tx = (qx + 0.5) * teacher_crop / w - 0.5  # teacher crop pixels (pixel centres kept by the resize)
    ty = (qy + 0.5) * teacher_crop / h - 0.5
    ix = (tx + 0.5) * teacher_side / teacher_crop  # teacher heatmap pixels
    iy = (ty + 0.5) * teacher_side / teacher_crop
    gx, gy = ix / (teacher_side - 1) * 2 - 1, iy / (teacher_side - 1) * 2 - 1
    return torch.stack(torch.meshgrid(gx, gy, indexing="xy"), -1)[None].float()


class MoveNetOnlineTeacher:
    def __init__(self, name: str, student: Any) -> None:
        from posekit.distill.teachers import MoveNetTeacher

        self.teacher = MoveNetTeacher(name)
        self.index, self.valid = channel_map(student.spec.keypoints, get_spec(self.teacher.spec).keypoints)
        if not self.valid.any():
            raise PosekitError(f"teacher {name}: none of the student's keypoints ({student.spec.name}) is a COCO keypoint")
        self.grid = student_grid(student, self.teacher.size, self.teacher.size // 4)
        self.mean, self.std = torch.from_numpy(MEAN).view(1, 3, 1, 1), torch.from_numpy(STD).view(1, 3, 1, 1)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        s = self.teacher.size
        rgb = F.interpolate(images.float().cpu() * self.std + self.mean, size=(s, s), mode="bilinear", align_corners=False)
        crops = rgb.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
        maps = torch.from_numpy(self.teacher.raw(crops)["heatmaps"]).permute(0, 3, 1, 2)[:, self.index]
        out = F.grid_sample(maps, self.grid.expand(len(maps), -1, -1, -1), mode="bilinear", padding_mode="zeros", align_corners=True)
        return out.to(images.device), self.valid.to(images.device), None


class CheckpointOnlineTeacher:
    def __init__(self, path: str, student: Any) -> None:
        from posekit.zoo.checkpoints import model_from_checkpoint

        self.model = model_from_checkpoint(path).to(next(student.parameters()).device)
        m = self.model
        if m.input_kind != "crops" or getattr(m, "integral", False) or getattr(m.cfg, "output", "heatmap") != "heatmap":
            raise PosekitError(f"teacher {path}: a teacher needs a top-down heatmap model (this one: {m.family}, not heatmap)")
        if tuple(m.codec.heatmap_size) != tuple(student.codec.heatmap_size) or tuple(m.input_size) != tuple(student.input_size):
            raise PosekitError(f"teacher {path}: input {m.input_size} / heatmaps {m.codec.heatmap_size}; the student's are "
                               f"{student.input_size} / {student.codec.heatmap_size}: they must match")  # fmt: skip
        self.index, self.valid = channel_map(student.spec.keypoints, m.spec.keypoints)
        self.with_tokens = (m.family == "distilpose" and student.cfg.encoder == "tokens" and m.cfg.dim == student.cfg.dim
                            and m.encoder.num_patches == student.encoder.num_patches and m.spec.name == student.spec.name)  # fmt: skip

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
        if self.with_tokens:
            kt, vt = self.model.tokens(images)
            return self.model.outputs(kt)[:, self.index], self.valid.to(images.device), (kt, vt)
        return self.model(images)[:, self.index], self.valid.to(images.device), None


def load_online_teacher(name_or_path: str, student: Any) -> MoveNetOnlineTeacher | CheckpointOnlineTeacher:
    if name_or_path in MOVENET_TEACHERS:
        from posekit.zoo.fetch import fetch

        fetch([name_or_path])
        return MoveNetOnlineTeacher(name_or_path, student)
    if Path(name_or_path).exists():
        return CheckpointOnlineTeacher(name_or_path, student)
    raise PosekitError(f"model.teacher {name_or_path!r}: not {' or '.join(MOVENET_TEACHERS)} or an existing checkpoint")
