"""PoseDet's codec (Tian et al., ../shared/docs/posedet.txt §3.2): a pose is detected like an object by
dense candidates, one per feature-pyramid pixel, each regressing all K joints from its own position.

Candidates: on the level of stride s, pyramid pixel (i, j) is the candidate at input pixel
((j + 0.5) s - 0.5, (i + 0.5) s - 0.5) (input pixel centres at integers, as every codec here).
Candidates are numbered level by level, finest first, row-major inside a level.

Assignment (`encode`, eq. 4's first term): each person goes to one level by the size of the box around its
labelled joints (RepPoints' rule: stride ~ sqrt(w h) / 4, clamped to the pyramid), and on that level to
the candidate nearest its *keypoint centroid* (the mean of its labelled joints; `center: box` takes the
centre of that box instead, the paper's Table 5 baseline). Two persons on one candidate: the nearer keeps
it, the other gets none (`oracle_decode` measures what that costs).

Targets (one image): per person, padded to `max_persons`: "gt_keypoints" [M,K,3] (input pixels, v 1 for a
labelled joint), "gt_area" [M] (the joints' box area, at least `MIN_AREA`: OKS's scale) and
"gt_candidate" [M] (-1: none); "candidate_weights" [L] (0 for candidates in crowd / unlabelled regions:
neither positive nor negative); and the intermediate supervision's Gaussians (sigma 2 pyramid pixels) on
every level, as "heatmaps_s{s}" / "heatmap_weights_s{s}" (the associative-embedding codec draws them).
The regression and classification targets depend on the predicted coarse poses (OKS > 0.7 refines,
> 0.6 / < 0.5 classifies): the model's `loss` makes them.

Decoding (`decode`): candidates scoring above `score_threshold`, the best `pre_nms` of them, pose NMS
(`nms: oks`, or box IoU for the ablation) at `nms_threshold`, at most `max_persons` kept. A candidate has
no per-joint confidence: each joint gets the pose's score.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from posekit.codecs.associative_embedding import AssociativeEmbeddingCodec, pool_mask
from posekit.postprocess.nms import box_nms, oks_nms

MIN_AREA = 16.0**2  # input pixels^2: OKS scale of a person whose joints span (almost) nothing
BASE_SCALE = 4  # RepPoints: a person of side 4 s belongs to the level of stride s


@lru_cache(maxsize=16)
def candidate_grid(strides: tuple[int, ...], size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Every candidate's position [L,2] (input pixels) and stride [L] for an input of `size` (w, h), in
    candidate order; read-only (cached)."""
    xy, st = [], []
    for s in strides:
        w, h = size[0] // s, size[1] // s
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        xy.append(np.stack([xs.ravel(), ys.ravel()], -1) * s + (s - 1) / 2)
        st.append(np.full(w * h, s, np.float32))
    out = np.concatenate(xy), np.concatenate(st)
    for a in out:
        a.setflags(write=False)
    return out


@dataclass
class PoseDetCodec:
    input_size: tuple[int, int]  # (w, h)
    strides: tuple[int, ...]  # pyramid levels, finest first
    num_keypoints: int
    sigmas: tuple[float, ...]  # the spec's OKS sigmas (pose NMS)
    center: str = "keypoints"  # "keypoints" (the paper's) | "box": where a person's candidate is chosen
    sigma: float = 2.0  # intermediate supervision's Gaussians, in pyramid pixels
    max_persons: int = 30
    score_threshold: float = 0.05
    pre_nms: int = 500
    nms: str = "oks"  # "oks" | "iou"
    nms_threshold: float = 0.5
    heatmap_codec: AssociativeEmbeddingCodec = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.center not in ("keypoints", "box") or self.nms not in ("oks", "iou"):
            raise ValueError(f"center must be keypoints|box and nms oks|iou, not {self.center!r} / {self.nms!r}")
        self.heatmap_codec = AssociativeEmbeddingCodec(self.input_size, tuple(reversed(self.strides)), self.num_keypoints, sigma=self.sigma)

    def size_at(self, stride: int) -> tuple[int, int]:
        return self.input_size[0] // stride, self.input_size[1] // stride

    @property
    def heatmap_size(self) -> tuple[int, int]:
        """The finest level's (w, h): the resolution datasets give the ignore mask at."""
        return self.size_at(self.strides[0])

    def candidates(self) -> tuple[np.ndarray, np.ndarray]:
        """Every candidate's position [L,2] (input pixels) and stride [L] at `input_size`."""
        return candidate_grid(tuple(self.strides), tuple(self.input_size))

    def level_of(self, box_wh: np.ndarray) -> np.ndarray:
        """Level index (into `strides`) of persons whose joints' box is `box_wh` [N,2]."""
        wh = np.maximum(np.asarray(box_wh, np.float64), 1.0)
        lvl = np.floor(np.log2(wh / BASE_SCALE).mean(-1))
        lo, hi = np.log2(self.strides[0]), np.log2(self.strides[-1])
        return (np.clip(lvl, lo, hi) - lo).astype(np.int64)

    def encode(self, keypoints: np.ndarray, missing: np.ndarray, ignore: np.ndarray) -> dict[str, np.ndarray]:
        """keypoints [N,K,3] in input pixels (v > 0 labelled), missing [N,K] (joints the source does not
        annotate), ignore [h,w] bool at `heatmap_size` -> targets (see the module doc)."""
        k, m = self.num_keypoints, self.max_persons
        out = {key: v for key, v in self.heatmap_codec.encode(keypoints, missing, ignore).items() if key.startswith("heatmap")}
        # the finest level's ignore mask pooled to each level
        weights = [~pool_mask(ignore, s // self.strides[0]).ravel() for s in self.strides]
        out["candidate_weights"] = np.concatenate(weights).astype(np.float32)
        people = [p for p in keypoints if (p[:, 2] > 0).any()][:m]
        gt = np.zeros((m, k, 3), np.float32)
        area = np.full(m, MIN_AREA, np.float32)
        cand = np.full(m, -1, np.int64)
        offsets = np.cumsum([0] + [np.prod(self.size_at(s)) for s in self.strides])
        taken: dict[int, tuple[int, float]] = {}  # candidate -> (person, distance)
        for n, person in enumerate(people):
            labelled = person[:, 2] > 0
            xy = person[labelled, :2].astype(np.float64)
            lo, hi = xy.min(0), xy.max(0)
            gt[n, :, :2], gt[n, :, 2] = person[:, :2], labelled
            area[n] = max(np.prod(hi - lo), MIN_AREA)
            lvl = int(self.level_of((hi - lo)[None])[0])
            s = self.strides[lvl]
            w, h = self.size_at(s)
            c = xy.mean(0) if self.center == "keypoints" else (lo + hi) / 2
            ij = np.clip(np.round((c + 0.5) / s - 0.5), 0, [w - 1, h - 1]).astype(int)
            index = int(offsets[lvl] + ij[1] * w + ij[0])
            dist = float(np.linalg.norm(c - (ij * s + (s - 1) / 2)))
            if index in taken and taken[index][1] <= dist:
                continue
            if index in taken:
                cand[taken[index][0]] = -1
            taken[index] = (n, dist)
            cand[n] = index
        out.update(gt_keypoints=gt, gt_area=area, gt_candidate=cand)
        return out

    def decode(self, scores: np.ndarray, poses: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One image's candidates: scores [L] (probabilities), poses [L,K,2] (input pixels) -> keypoints
        [P,K,2], keypoint scores [P,K], pose scores [P], best first, after pose NMS."""
        keep = np.flatnonzero(scores > self.score_threshold)
        keep = keep[np.argsort(-scores[keep], kind="stable")[: self.pre_nms]]
        scores, poses = scores[keep].astype(np.float32), poses[keep].astype(np.float32)
        boxes = np.concatenate([poses.min(1), poses.max(1)], 1) if len(poses) else np.zeros((0, 4), np.float32)
        if self.nms == "oks":
            kept = oks_nms(poses, scores, boxes, np.asarray(self.sigmas), self.nms_threshold)
        else:
            kept = box_nms(boxes, scores, self.nms_threshold)
        kept = kept[: self.max_persons]
        return poses[kept], np.repeat(scores[kept, None], self.num_keypoints, 1), scores[kept]

    def oracle_decode(self, targets: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Decode the targets as if a perfect network had predicted them: score 1 and the exact pose at every
        assigned candidate, score 0 elsewhere (unlabelled joints sit at the person's labelled mean)."""
        positions, _ = self.candidates()
        scores = np.zeros(len(positions), np.float32)
        poses = np.repeat(positions[:, None], self.num_keypoints, 1)
        for person, index in zip(targets["gt_keypoints"], targets["gt_candidate"]):
            if index < 0:
                continue
            labelled = person[:, 2] > 0
            scores[index] = 1.0
            poses[index] = np.where(labelled[:, None], person[:, :2], person[labelled, :2].mean(0))
        return self.decode(scores, poses)
