"""Pretrained TF.js graphs wrapped as pose models and a person detector (image pixels in, image pixels out)."""

from __future__ import annotations

import numpy as np
import torch

from posekit.data.transforms import Letterbox, apply_inverse, crop_boxes, expand_box, letterbox, stretch
from posekit.zoo.graph_module import TfjsGraphModule
from posekit.zoo.registry import graph_entry
from posekit.zoo.store import load_graph

COCO_PERSON = 0


# MoveNet single-pose internals used for identity embeddings: the MobileNetV2 trunk's last feature map
# (stride 32) and the keypoint heatmaps (stride 4).
MOVENET_FEATURES = "StatefulPartitionedCall/center_net_mobile_net_v2fpn_feature_extractor/model_1/model/out_relu/Relu6"
MOVENET_HEATMAPS = "StatefulPartitionedCall/Sigmoid"


MOVENET_INPUT_SIZE = {"movenet-thunder": 256, "movenet-lightning": 192}  # square crop side each graph takes


def movenet_crops(image: np.ndarray, boxes: np.ndarray, size: int, margin: float = 1.25) -> tuple[np.ndarray, np.ndarray]:
    """Square crops [N,size,size,3] uint8 (boxes expanded by `margin`) and their affine matrices: MoveNet's input."""
    return crop_boxes(image, expand_box(boxes, 1.0, margin), size, size)


def load_module(name: str, extra_outputs: tuple[str, ...] = (), backend: str = "torch") -> TfjsGraphModule:
    """The graph `name` as a torch module; with `backend="onnxruntime"` its trunk runs in ONNX Runtime."""
    entry = graph_entry(name)
    graph = load_graph(name)
    outputs = list(entry.outputs or graph.outputs) + list(extra_outputs)
    module = TfjsGraphModule(graph, outputs=outputs).eval()
    if backend == "onnxruntime":
        from posekit.export.backend import use_onnxruntime

        use_onnxruntime(module, name)
    return module


def pose_guided_embeddings(features: torch.Tensor, heatmaps: torch.Tensor) -> np.ndarray:
    """Identity embeddings [N,C] in the spirit of AlphaPose's PGA (eq. 20): trunk features weighted by
    (1 + attention), the attention being the max keypoint heatmap at the features' resolution; pooled
    and L2-normalised. features [N,h,w,C], heatmaps [N,H,W,K] (NHWC)."""
    f = features.permute(0, 3, 1, 2)
    attention = torch.nn.functional.adaptive_avg_pool2d(heatmaps.amax(-1, keepdim=True).permute(0, 3, 1, 2), f.shape[-2:])
    weights = 1.0 + attention
    emb = (f * weights).sum((2, 3)) / weights.sum((2, 3))
    return torch.nn.functional.normalize(emb, dim=1).numpy()


def to_batch(images: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    """uint8 NHWC images -> the graph's input tensor (NHWC, RGB 0..255)."""
    return torch.from_numpy(np.ascontiguousarray(images)).to(dtype)


class SinglePoseMoveNet:
    """MoveNet Thunder/Lightning on person crops: all crops of an image run as one batch."""

    spec = "coco17"
    crop_width_axis = 2  # crops are NHWC

    def __init__(self, name: str = "movenet-thunder", margin: float = 1.25, backend: str = "torch") -> None:
        self.name = name
        self.module = load_module(name, (MOVENET_FEATURES, MOVENET_HEATMAPS), backend)
        self.size = MOVENET_INPUT_SIZE[name]
        self.margin = margin

    def crop_inputs(self, image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Square crops (box expanded by `margin`) [N,S,S,3] uint8 and their affine matrices."""
        return movenet_crops(image, boxes, self.size, self.margin)

    def __call__(self, image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Keypoints [N,17,2] in image pixels and their scores [N,17] for person boxes [N,4] xyxy."""
        keypoints, scores, _ = self.forward_crops(*self.crop_inputs(image, boxes))
        return keypoints, scores

    def forward_crops(
        self, crops: np.ndarray, mats: np.ndarray, with_embeddings: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Keypoints in image pixels, their scores and (optionally) identity embeddings for crops from `crop_inputs`."""
        if len(crops) == 0:
            return np.zeros((0, 17, 2), np.float32), np.zeros((0, 17), np.float32), np.zeros((0, 1280), np.float32)
        out, features, heatmaps = self.module(to_batch(crops, torch.int32))
        raw = out.numpy().reshape(len(crops), 17, 3)
        crop_xy = raw[:, :, [1, 0]] * self.size - 0.5  # normalised (y, x) edges -> crop pixel centres
        emb = pose_guided_embeddings(features, heatmaps) if with_embeddings else None
        return apply_inverse(mats, crop_xy), raw[:, :, 2].astype(np.float32), emb


class MultiPoseMoveNet:
    """MoveNet MultiPose: one pass over the letterboxed image, up to 6 persons with boxes."""

    def __init__(self, longest_side: int = 256, backend: str = "torch") -> None:
        if longest_side % 32:
            raise ValueError("movenet-multipose needs a longest side that is a multiple of 32")
        self.module = load_module("movenet-multipose", backend=backend)
        self.longest_side = longest_side

    def input(self, image: np.ndarray) -> tuple[np.ndarray, Letterbox]:
        return letterbox(image, self.longest_side)

    def __call__(self, image: np.ndarray) -> dict[str, np.ndarray]:
        padded, lb = self.input(image)
        raw = self.module(to_batch(padded[None], torch.int32)).numpy()[0]  # [6, 56]
        ph, pw = lb.padded_hw
        sx, sy = lb.scale_xy
        kp = raw[:, :51].reshape(-1, 17, 3)
        keypoints = np.stack([kp[:, :, 1] * pw / sx, kp[:, :, 0] * ph / sy], axis=-1) - 0.5
        ymin, xmin, ymax, xmax, score = raw[:, 51:].T
        boxes = np.stack([xmin * pw / sx, ymin * ph / sy, xmax * pw / sx, ymax * ph / sy], axis=1)
        return {
            "keypoints": keypoints.astype(np.float32),
            "keypoint_scores": kp[:, :, 2].astype(np.float32),
            "boxes": boxes.astype(np.float32),
            "scores": score.astype(np.float32),
        }


class CenterNetDetector:
    """CenterNet (COCO-80) person detector; the image is stretched to 512x512, RGB 0..255 float."""

    size = 512

    def __init__(self, backend: str = "torch") -> None:
        self.module = load_module("centernet", backend=backend)

    def input(self, image: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
        return stretch(image, self.size, self.size)

    def __call__(self, image: np.ndarray, score_threshold: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
        """Person boxes [N,4] xyxy in image pixels and scores [N], best first."""
        resized, (sx, sy) = self.input(image)
        det = self.module(to_batch(resized[None], torch.float32)).numpy()[0]  # [100, 6]
        keep = (det[:, 5] == COCO_PERSON) & (det[:, 4] >= score_threshold)
        det = det[keep]
        boxes = det[:, :4] / np.array([sx, sy, sx, sy], np.float32)
        h, w = image.shape[:2]
        boxes = np.clip(boxes, 0, [w, h, w, h]).astype(np.float32)
        return boxes, det[:, 4].astype(np.float32)
