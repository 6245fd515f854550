"""The teacher side of SIMPLE's mimicking (simple.txt §5.2-5.3): for each person box of an augmented
training image, the teacher's predicted heatmaps on that person's crop, the person's GT keypoints rendered
on the same heatmap grid (GT assigned to the box as Mask R-CNN assigns it), and the input-pixel box whose
ROIAlign puts the student's heatmaps on that grid. Teacher outputs go through `TeacherCache` when a cache
folder is given (keyed by the image's pixels and the boxes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from posekit.codecs.simple import assign_ground_truth
from posekit.data.specs import get_spec
from posekit.data.transforms import MEAN, STD
from posekit.distill.online import channel_map
from posekit.structures import KeypointSpec

MimicTargets = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
__all__ = ["MimicTargets", "MimicTeacher", "gaussian_maps", "teacher_frame_boxes"]


def teacher_frame_boxes(crop_matrices: np.ndarray, heatmap_matrix: np.ndarray, side: tuple[int, int]) -> np.ndarray:
    """Input-pixel boxes [N,4] whose ends are the centres of the teacher heatmap's first and last pixels (the
    ROI `student_rois` must sample to land on the teacher's heatmap grid), for axis-aligned crops."""
    w, h = side
    corners = np.array([[0.0, 0.0, 1.0], [w - 1.0, h - 1.0, 1.0]])
    crop_xy = corners @ np.asarray(heatmap_matrix).T  # [2,2]
    out = np.zeros((len(crop_matrices), 4), np.float32)
    for n, mat in enumerate(crop_matrices):
        inv = np.linalg.inv(np.vstack([mat, [0, 0, 1]]))[:2]
        pts = crop_xy @ inv[:, :2].T + inv[:, 2]
        out[n] = [pts[0, 0], pts[0, 1], pts[1, 0], pts[1, 1]]
    return out


def gaussian_maps(xy: np.ndarray, labelled: np.ndarray, side: tuple[int, int], sigma: float) -> np.ndarray:
    """Maps [N,K,h,w] with a peak-1 Gaussian of `sigma` at each labelled point xy [N,K,2] (map pixels), else 0."""
    w, h = side
    xs, ys = np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)
    gx = np.exp(-((xs[None, None] - xy[..., :1]) ** 2) / (2 * sigma**2))  # [N,K,w]
    gy = np.exp(-((ys[None, None] - xy[..., 1:]) ** 2) / (2 * sigma**2))  # [N,K,h]
    return (gy[..., :, None] * gx[..., None, :] * labelled[..., None, None]).astype(np.float32)


class MimicTeacher:
    def __init__(self, name: str, spec: KeypointSpec, cache_dir: str | Path | None = None, sigma: float = 2.0) -> None:
        from posekit.distill.cache import TeacherCache
        from posekit.distill.teachers import load_teacher

        teacher = load_teacher(name)
        self.run = TeacherCache(cache_dir, teacher) if cache_dir else teacher
        self.sigma = sigma
        index, valid = channel_map(spec.keypoints, get_spec(teacher.spec).keypoints)
        if not bool(valid.all()):
            missing = [n for n, ok in zip(spec.keypoints, valid.tolist()) if not ok]
            raise ValueError(f"model.teacher {name}: it has no {', '.join(missing)}; mimicking needs every keypoint of {spec.name}")
        self.index = index.numpy()
        self.mean, self.std = torch.from_numpy(MEAN).view(3, 1, 1), torch.from_numpy(STD).view(3, 1, 1)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, boxes: list[torch.Tensor], gt_keypoints: torch.Tensor, gt_boxes: torch.Tensor,
                 gt_valid: torch.Tensor) -> MimicTargets | None:  # fmt: skip
        """Normalised images [N,3,H,W], boxes per image (input pixels) and the batch's GT -> (ROI boxes [B,4],
        image index [B], teacher-frame GT maps [B,K,h,w], teacher maps [B,K,h,w], has GT [B]); None when no image has a box."""
        rois, index, t_gt, t_pred, has_gt = [], [], [], [], []
        for i, b in enumerate(boxes):
            if len(b) == 0:
                continue
            rgb = (images[i].detach().float().cpu() * self.std + self.mean).round().clamp(0, 255).to(torch.uint8)
            image = np.ascontiguousarray(rgb.permute(1, 2, 0).numpy())
            b = b.detach().float().cpu()
            out = self.run(image, b.numpy())
            maps = out.heatmaps[:, self.index]
            side = (maps.shape[-1], maps.shape[-2])
            valid = gt_valid[i].cpu() > 0
            assigned = assign_ground_truth(b, gt_boxes[i].cpu()[valid])
            person = gt_keypoints[i].cpu()[valid][assigned.clamp_min(0)].numpy() if valid.any() else np.zeros((len(b), len(self.index), 3))
            heat_from_crop = np.linalg.inv(np.vstack([out.heatmap_matrix, [0, 0, 1]]))
            xy = np.empty(person.shape[:2] + (2,), np.float32)
            for n, mat in enumerate(out.crop_matrices):
                to_heat = heat_from_crop @ np.vstack([mat, [0, 0, 1]])
                xy[n] = person[n, :, :2] @ to_heat[:2, :2].T + to_heat[:2, 2]
            labelled = (person[..., 2] > 0) & (assigned.numpy() >= 0)[:, None]
            rois.append(teacher_frame_boxes(out.crop_matrices, out.heatmap_matrix, side))
            index.append(np.full(len(b), i))
            t_gt.append(gaussian_maps(xy, labelled, side, self.sigma))
            t_pred.append(maps)
            has_gt.append(assigned.numpy() >= 0)
        if not rois:
            return None
        device = images.device
        cat = lambda parts: torch.from_numpy(np.concatenate(parts)).to(device)  # noqa: E731
        return cat(rois), cat(index).long(), cat(t_gt), cat(t_pred).float(), cat(has_gt).bool()
