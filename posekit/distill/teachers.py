"""Frozen teachers for distillation: given an image and person boxes, a teacher returns keypoints,
keypoint scores and heatmaps in the crop frame and in the image frame.

Implementations: `MoveNetTeacher` (MoveNet Thunder / Lightning: the graph's internal keypoint heatmaps,
exposed through the importer, and its own keypoints) and `CheckpointTeacher` (any top-down checkpoint
trained here). Teachers are plain objects holding their networks in eval mode under `inference_mode`; a
student never holds one as a submodule, so teacher weights never enter student checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
import torch

from posekit.data.transforms import apply_inverse


@dataclass
class TeacherOutput:
    """One image's teacher pass over N person boxes (K keypoints of `spec`)."""

    keypoints: np.ndarray  # [N,K,2] image pixels
    keypoints_crop: np.ndarray  # [N,K,2] crop pixels
    scores: np.ndarray  # [N,K] in [0, 1]
    heatmaps: np.ndarray  # [N,K,h,w] crop frame: MoveNet's probabilities, or a checkpoint's maps exactly as it decodes them
    crop_matrices: np.ndarray  # [N,2,3] image pixels -> crop pixels
    heatmap_matrix: np.ndarray  # [2,3] heatmap pixels -> crop pixels (the same for every crop)
    spec: str

    def heatmaps_in_image(self, index: int, image_hw: tuple[int, int], stride: int = 4) -> np.ndarray:
        """Person `index`'s heatmaps [K, H/stride, W/stride] on a grid over the whole image (grid pixel q
        covers image pixels [q*stride, (q+1)*stride)); zero outside the crop."""
        h, w = (int(np.ceil(v / stride)) for v in image_hw)
        grid_to_image = np.array([[stride, 0, (stride - 1) / 2], [0, stride, (stride - 1) / 2], [0, 0, 1]])
        crop_to_image = np.linalg.inv(np.vstack([self.crop_matrices[index], [0, 0, 1]]))
        heat_to_crop = np.vstack([self.heatmap_matrix, [0, 0, 1]])
        heat_to_grid = np.linalg.inv(grid_to_image) @ crop_to_image @ heat_to_crop
        return np.stack([cv2.warpAffine(hm, heat_to_grid[:2], (w, h), flags=cv2.INTER_LINEAR) for hm in self.heatmaps[index]])


class Teacher(Protocol):
    teacher_id: str  # names the weights and the settings: the cache key
    spec: str

    def __call__(self, image: np.ndarray, boxes: np.ndarray) -> TeacherOutput: ...


MOVENET_TEACHERS = ("movenet-thunder", "movenet-lightning")
MOVENET_PREFIX = "StatefulPartitionedCall/"
MOVENET_NODES = {  # the graph's head outputs (stride 4 of the crop), see models.tfjs_models
    "heatmaps": MOVENET_PREFIX + "Sigmoid",
    "centre": MOVENET_PREFIX + "Sigmoid_1",
    "regress": MOVENET_PREFIX + "kpt_regress_0/conv2d_6/BiasAdd",
    "offsets": MOVENET_PREFIX + "kpt_offset_0/conv2d_7/BiasAdd",
}
MOVENET_CENTRE_WEIGHT = "ConstantFolding/StatefulPartitionedCall/truediv_2_recip"  # favours the crop's centre
MOVENET_DISTANCE_BIAS = 1.8


def movenet_keypoints(heatmaps: np.ndarray, centre: np.ndarray, regress: np.ndarray, offsets: np.ndarray,
                      centre_weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """MoveNet single-pose decoding from its head outputs (NHWC, one crop): the person centre is the
    argmax of the centre heatmap times the graph's centre weight; each joint is the argmax of its heatmap
    divided by (distance to the joint regressed from that centre + 1.8), plus the offset there.
    Returns (y, x) in heatmap pixels [K,2] and scores [K]: the graph's own output times the heatmap side."""
    h, w, k = heatmaps.shape
    c = int(np.argmax((centre * centre_weight).reshape(-1)))
    cy, cx = divmod(c, w)
    reg = regress[cy, cx].reshape(k, 2)  # (dy, dx) per joint
    ry, rx = cy + reg[:, 0], cx + reg[:, 1]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    dist = np.sqrt((ys[..., None] - ry) ** 2 + (xs[..., None] - rx) ** 2)  # [h,w,K]
    best = np.argmax((heatmaps / (dist + MOVENET_DISTANCE_BIAS)).reshape(-1, k), axis=0)
    by, bx = np.divmod(best, w)
    off = offsets[by, bx].reshape(k, k, 2)[np.arange(k), np.arange(k)]  # joint j's offset at its own argmax
    return np.stack([by + off[:, 0], bx + off[:, 1]], -1).astype(np.float32), heatmaps[by, bx, np.arange(k)].astype(np.float32)


class MoveNetTeacher:
    """MoveNet Thunder (or Lightning) on 1.25x square person crops, as the top-down pipeline runs it."""

    spec = "coco17"

    def __init__(self, name: str = "movenet-thunder", margin: float = 1.25) -> None:
        from posekit.models.tfjs_models import MOVENET_INPUT_SIZE, load_module
        from posekit.zoo.store import load_graph, read_manifest

        self.size, self.margin = MOVENET_INPUT_SIZE[name], margin
        self.module = load_module(name, tuple(MOVENET_NODES.values()))
        self.centre_weight = np.asarray(load_graph(name).consts[MOVENET_CENTRE_WEIGHT], np.float32)
        self.teacher_id = f"{name}-{read_manifest()['models'][name]['sha256'][:12]}-m{margin}"
        side = self.size // 4
        # heatmap pixel i <-> normalised (i / side) -> crop pixel i * size / side - 0.5 (the pipeline's convention)
        self.heatmap_matrix = np.array([[self.size / side, 0, -0.5], [0, self.size / side, -0.5]])

    def crop_inputs(self, image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from posekit.models.tfjs_models import movenet_crops

        return movenet_crops(image, np.asarray(boxes, np.float32).reshape(-1, 4), self.size, self.margin)

    def raw(self, crops: np.ndarray) -> dict[str, np.ndarray]:
        """The graph's keypoint output [N,17,3] and its head tensors (NHWC) for uint8 crops [N,S,S,3]."""
        outs = self.module(torch.from_numpy(np.ascontiguousarray(crops)).to(torch.int32))
        return {"keypoints": outs[0].numpy().reshape(len(crops), 17, 3), **{k: v.numpy() for k, v in zip(MOVENET_NODES, outs[1:])}}

    def __call__(self, image: np.ndarray, boxes: np.ndarray) -> TeacherOutput:
        crops, mats = self.crop_inputs(image, boxes)
        k = 17
        if len(crops) == 0:
            z = np.zeros((0, k, 2), np.float32)
            return TeacherOutput(z, z, np.zeros((0, k), np.float32), np.zeros((0, k, self.size // 4, self.size // 4), np.float32),
                                 mats, self.heatmap_matrix, self.spec)  # fmt: skip
        raw = self.raw(crops)
        crop_xy = raw["keypoints"][:, :, [1, 0]] * self.size - 0.5
        return TeacherOutput(apply_inverse(mats, crop_xy), crop_xy.astype(np.float32), raw["keypoints"][:, :, 2].astype(np.float32),
                             raw["heatmaps"].transpose(0, 3, 1, 2).copy(), mats, self.heatmap_matrix, self.spec)  # fmt: skip


class CheckpointTeacher:
    """A top-down checkpoint trained here: its heatmaps (`TopDownModel.crop_outputs`: flip-averaged when
    the model's flip test is on; sigmoid maps for integral models) and its decoded keypoints, on the crops
    its validation uses."""

    def __init__(self, path: str | Path, margin: float = 1.25) -> None:
        from posekit.zoo.checkpoints import CheckpointError, model_from_checkpoint

        self.model = model_from_checkpoint(path)
        if self.model.input_kind != "crops":
            raise CheckpointError(f"{path}: a teacher needs a top-down checkpoint, this one is {self.model.family}")
        self.margin, self.spec = margin, self.model.spec.name
        self.teacher_id = f"ckpt-{self.model.weights_sha256[:12]}-m{margin}"
        sx, sy = (1 / s for s in self.model.codec.scale)  # UDP: crop = heatmap / scale
        self.heatmap_matrix = np.array([[sx, 0, 0], [0, sy, 0]])

    @torch.inference_mode()
    def __call__(self, image: np.ndarray, boxes: np.ndarray) -> TeacherOutput:
        from posekit.data.topdown import crop_persons

        crops, mats = crop_persons(image, np.asarray(boxes, np.float32).reshape(-1, 4), self.model.input_size, self.margin)
        x = torch.from_numpy(crops)
        k = self.model.spec.num_keypoints
        w, h = self.model.codec.heatmap_size
        if len(crops) == 0:
            z = np.zeros((0, k, 2), np.float32)
            return TeacherOutput(z, z, np.zeros((0, k), np.float32), np.zeros((0, k, h, w), np.float32), mats, self.heatmap_matrix, self.spec)
        xy, scores, heatmaps = self.model.crop_outputs(x)  # heatmaps not clamped: exactly what the keypoints come from
        return TeacherOutput(apply_inverse(mats, xy), xy.astype(np.float32), np.clip(scores, 0, 1).astype(np.float32),
                             heatmaps.float().numpy(), mats, self.heatmap_matrix, self.spec)  # fmt: skip


def load_teacher(name_or_path: str | Path) -> Teacher:
    """`movenet-thunder` / `movenet-lightning`, or a top-down checkpoint path."""
    from posekit.errors import UnknownModelError

    if str(name_or_path) in MOVENET_TEACHERS:
        from posekit.zoo.fetch import fetch

        fetch([str(name_or_path)])
        return MoveNetTeacher(str(name_or_path))
    if Path(name_or_path).exists():
        return CheckpointTeacher(name_or_path)
    raise UnknownModelError(f"unknown teacher {str(name_or_path)!r}: movenet-thunder, movenet-lightning or a top-down checkpoint path")
