"""A re-ID head for tracking, trained self-supervised on tracklets of real clips (AlphaPose §4.2's identity
embeddings, learnt here instead of assumed).

Input: the pose-guided embeddings of the top-down pose model (`tfjs_models.pose_guided_embeddings`:
MoveNet's trunk features pooled under its keypoint heatmaps). Those features were trained for pose, not
identity; the head (centring, a 2-layer MLP, L2 norm) learns which of their directions tell people apart.

Labels come from the tracker itself, kept only where they are safe (`tracklet_labels`): detections that
overlap no other person in their frame, of tracks seen long enough. Two tracklets of one clip that are
visible in the same frame are certainly different people (negatives); two of one clip that never co-occur
may be the same person seen twice, so they are neither positive nor negative. Tracklets of different clips
count as different people. The loss is the supervised contrastive loss (Khosla et al. 2020) under that mask.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from posekit.postprocess.nms import box_iou

REID_FORMAT = "posekit-reid/1"


class ReIDHead(nn.Module):
    """Pose-guided embeddings [N,C] -> identity embeddings [N,D] (unit length)."""

    def __init__(self, in_dim: int = 1280, hidden: int = 256, out_dim: int = 64) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(in_dim))  # the features' common part, set from the training data
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.mlp(x - self.mean), dim=-1)

    @torch.no_grad()
    def embed(self, x: np.ndarray) -> np.ndarray:
        """numpy in, numpy out (the tracker's side); refuses non-finite input."""
        if not np.isfinite(x).all():
            raise ValueError("re-ID input embeddings hold non-finite values")
        return self(torch.from_numpy(np.asarray(x, np.float32))).numpy()


@dataclass
class Detection:
    clip: str
    frame: int
    track: int  # the tracker's uid within the clip
    box: np.ndarray  # xyxy
    score: float
    embedding: np.ndarray


def tracklet_labels(detections: list[Detection], min_score: float = 0.1, max_iou: float = 0.2, min_length: int = 8
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[tuple[str, int]]]:  # fmt: skip
    """The safe detections: score >= `min_score`, IoU <= `max_iou` with every other detection of their frame,
    of tracklets with at least `min_length` of them. Returns (indices into `detections`, tracklet label per
    kept detection, negatives [T,T] bool: tracklets known to be different people, tracklet keys)."""
    by_frame: dict[tuple[str, int], list[int]] = {}
    for i, d in enumerate(detections):
        by_frame.setdefault((d.clip, d.frame), []).append(i)
    alone = np.zeros(len(detections), bool)
    for idx in by_frame.values():
        boxes = np.stack([detections[i].box for i in idx])
        iou = box_iou(boxes, boxes)
        np.fill_diagonal(iou, 0.0)
        for j, i in enumerate(idx):
            alone[i] = iou[j].max(initial=0.0) <= max_iou and detections[i].score >= min_score
    counts: dict[tuple[str, int], int] = {}
    for i in np.flatnonzero(alone):
        key = (detections[i].clip, detections[i].track)
        counts[key] = counts.get(key, 0) + 1
    keys = sorted(k for k, c in counts.items() if c >= min_length)
    label_of = {k: n for n, k in enumerate(keys)}
    keep = np.array([i for i in np.flatnonzero(alone) if (detections[i].clip, detections[i].track) in label_of], np.int64)
    labels = np.array([label_of[(detections[i].clip, detections[i].track)] for i in keep], np.int64)
    frames: dict[tuple[str, int], set[int]] = {}
    for d in detections:  # co-occurrence over all of a track's frames, overlapping or not
        frames.setdefault((d.clip, d.track), set()).add(d.frame)
    negatives = np.zeros((len(keys), len(keys)), bool)
    for a, ka in enumerate(keys):
        for b, kb in enumerate(keys):
            negatives[a, b] = ka[0] != kb[0] or (a != b and bool(frames[ka] & frames[kb]))
    return keep, labels, negatives, keys


def supcon_loss(z: torch.Tensor, labels: torch.Tensor, negatives: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Supervised contrastive loss over a batch of unit embeddings `z` [B,D]: each sample's positives (same
    tracklet) against its positives and its known negatives (`negatives[label_a, label_b]`); pairs of
    unknown relation are left out of the denominator."""
    logits = z @ z.T / temperature
    eye = torch.eye(len(z), dtype=torch.bool, device=z.device)
    positive = (labels[:, None] == labels[None]) & ~eye
    considered = positive | negatives[labels][:, labels]
    logits = logits.masked_fill(~considered, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    has = positive.any(1) & (considered & ~positive).any(1)
    mean_log_prob = torch.where(positive, log_prob, torch.zeros_like(log_prob)).sum(1) / positive.sum(1).clamp(min=1)
    return -(mean_log_prob[has]).mean()


def train_reid_head(embeddings: np.ndarray, labels: np.ndarray, negatives: np.ndarray, steps: int = 400, per_tracklet: int = 8,
                    tracklets_per_batch: int = 16, lr: float = 1e-3, seed: int = 0) -> tuple[ReIDHead, list[float]]:  # fmt: skip
    """Train a head on (embedding, tracklet label) pairs; batches of `tracklets_per_batch` tracklets x
    `per_tracklet` detections each. Returns the head (eval mode) and the loss per step."""
    if not np.isfinite(embeddings).all():
        raise ValueError("training embeddings hold non-finite values")
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    head = ReIDHead(embeddings.shape[1])
    head.mean.copy_(torch.from_numpy(embeddings.mean(0)))
    x, y, neg = torch.from_numpy(embeddings.astype(np.float32)), torch.from_numpy(labels), torch.from_numpy(negatives)
    members = [np.flatnonzero(labels == t) for t in range(int(labels.max()) + 1)]
    opt = torch.optim.AdamW(head.parameters(), lr, weight_decay=1e-4)
    losses = []
    for _ in range(steps):
        chosen = rng.choice(len(members), min(tracklets_per_batch, len(members)), replace=False)
        idx = np.concatenate([rng.choice(members[t], per_tracklet, replace=len(members[t]) < per_tracklet) for t in chosen])
        loss = supcon_loss(head(x[idx]), y[idx], neg)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return head.eval(), losses


def save_head(head: ReIDHead, path: str | Path) -> str:
    """fp16 safetensors with the head's sizes in the header, written atomically; returns the file's sha256."""
    from safetensors.torch import save_file

    from posekit.fileio import atomic_path

    first, last = head.mlp[0], head.mlp[-1]
    meta = {"format": REID_FORMAT, "in_dim": str(first.in_features), "hidden": str(first.out_features), "out_dim": str(last.out_features)}
    with atomic_path(Path(path)) as tmp:
        save_file({k: v.detach().half().contiguous() for k, v in head.state_dict().items()}, str(tmp), metadata=meta)
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_head(path: str | Path, sha256: str | None = None) -> ReIDHead:
    """A head written by `save_head` (fp32 in memory), its sha256 checked when given."""
    from safetensors import safe_open

    path = Path(path)
    if sha256 is not None and hashlib.sha256(path.read_bytes()).hexdigest() != sha256:
        raise ValueError(f"{path}: sha256 differs from the recorded one; the file is damaged or was replaced")
    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
        if meta.get("format") != REID_FORMAT:
            raise ValueError(f"{path}: not a posekit re-ID head ({meta.get('format')!r})")
        state = {k: f.get_tensor(k).float() for k in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
    head = ReIDHead(int(meta["in_dim"]), int(meta["hidden"]), int(meta["out_dim"]))
    head.load_state_dict(state)
    return head.eval()
