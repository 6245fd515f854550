"""Associative-embedding codec (Newell et al. 2017, as HigherHRNet trains and groups it): identity-free
keypoint heatmaps at one or more resolutions + one scalar tag per joint at the coarsest (1/4), grouped
into persons by tag.

Coordinates: input pixel centres at integers; a stride-s heatmap pixel i covers input pixels
[i*s, (i+1)*s), so input x <-> heatmap (x + 0.5) / s - 0.5. Bilinear upsampling with
align_corners=False keeps that convention, so heatmaps upsampled to the input size are in input pixels.

Targets (`encode`, one image), for each stride s in `strides` (coarsest first): "heatmaps_s{s}" [K,h,w]
(Gaussians with the same sigma at every resolution, centred at the exact sub-pixel joint, max over
persons) and "heatmap_weights_s{s}" [K,h,w] (0 inside crowd / unlabelled regions, and inside a person's
box for the joints its source dataset does not annotate); and per person (padded to `max_persons`):
"tag_index" [M,K] (y*w + x on the coarsest map) with "tag_weights" [M,K] (1 for a labelled joint).

Losses (HigherHRNet §3.4): `heatmap_mse` per resolution (masked, mean over pixels), summed by the
model; `ae_loss`: pull = mean over persons of the variance of their joints' tags, push = mean over
ordered pairs of distinct persons of exp(-(m_i - m_j)^2 / 2) between person mean tags.

Decoding (`decode`, §3.5 and associative embedding): heatmaps averaged at the input size; peaks are the
maxima of their `nms_kernel` window (5), equal neighbouring maxima counted once; top-k candidates per
joint; joints taken in a fixed order (head, shoulders, hips, limbs outwards); Hungarian matching of
candidates to the persons so far on round(tag distance) * 100 - heat, a new person when the tag distance
is >= `tag_threshold`. Each found joint then gets its sub-pixel position (`adjust`: associative
embedding's quarter-pixel step towards the higher neighbour, or, the default, a Newton step on the
log-heatmap at the finest stride's spacing: a heatmap upsampled x2 or x4 has its peaks on a 2- or
4-pixel grid). A person's missing joints are filled from the pixel that best trades heat against tag
distance (refinement), but only when that pixel's tag is within `tag_threshold` of the person's; else
the joint stays missing (score 0, at the mean of the person's joints). Without that guard refinement
copies a neighbour's joint into a person who lacks it and COCO matching pairs the wrong poses: the codec
oracle on coco-mini drops from 0.990 to 0.972 AP at 1/2. Person score = mean heat of its K joints
before refinement (missing joints count 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from posekit.structures import KeypointSpec

# Grouping order: the first keyword a keypoint's name contains ranks it; unknown names go last (stable).
# For COCO-17 this is associative embedding's own order (nose, eyes, ears, shoulders, hips, elbows,
# wrists, knees, ankles).
GROUPING_KEYWORDS = ("nose", "eye", "ear", "head", "neck", "thorax", "shoulder", "hip", "pelvis", "elbow", "wrist", "knee", "ankle")
NO_MATCH_COST = 1e10
REFINE_MARGIN = 0.1  # refinement's search window grows a person's box by at least this fraction of the image
REFINE_TOP = 20  # persons refined, best first: COCO scores 20 per image, and each costs a window of the maps
# Tags are read at the nearest 1/4 pixel: bilinear upsampling blends the tags of two persons whose
# same joints are a pixel apart into a third value that matches neither (the codec oracle loses AP to it).
TAG_UPSAMPLING = "nearest-exact"


def pool_mask(mask: np.ndarray, factor: int) -> np.ndarray:
    """A bool mask [h*f, w*f] pooled to [h, w]: a cell is set when any of its f x f pixels is."""
    if factor == 1:
        return mask
    h, w = mask.shape[0] // factor, mask.shape[1] // factor
    return mask.reshape(h, factor, w, factor).any((1, 3))


def grouping_order(spec: KeypointSpec) -> tuple[int, ...]:
    def rank(name: str) -> int:
        return next((i for i, kw in enumerate(GROUPING_KEYWORDS) if kw in name), len(GROUPING_KEYWORDS))

    return tuple(sorted(range(spec.num_keypoints), key=lambda j: (rank(spec.keypoints[j]), j)))


@dataclass
class AssociativeEmbeddingCodec:
    input_size: tuple[int, int]  # (w, h)
    strides: tuple[int, ...]  # heatmap strides, coarsest first; tags live at strides[0]
    num_keypoints: int
    joint_order: tuple[int, ...] = ()
    sigma: float = 2.0
    max_persons: int = 30
    top_k: int = 30
    detection_threshold: float = 0.1
    tag_threshold: float = 1.0
    nms_kernel: int = 5
    refine: bool = True
    adjust: str = "taylor"  # "quarter" (associative embedding's step) | "taylor" (see `_steps`)

    def size_at(self, stride: int) -> tuple[int, int]:
        return self.input_size[0] // stride, self.input_size[1] // stride

    @property
    def heatmap_size(self) -> tuple[int, int]:
        """The finest heatmap's (w, h): the resolution datasets give the ignore mask at."""
        return self.size_at(self.strides[-1])

    # ------------------------------------------------------------------ targets
    def _draw(self, heat: np.ndarray, j: int, mu: np.ndarray) -> None:
        """max(heat[j], Gaussian at sub-pixel `mu`) inside 3 sigma (exp(-4.5) beyond is below 0.012)."""
        h, w = heat.shape[1:]
        r = int(np.ceil(3 * self.sigma))
        x0, y0 = max(int(np.floor(mu[0])) - r, 0), max(int(np.floor(mu[1])) - r, 0)
        x1, y1 = min(int(np.ceil(mu[0])) + r + 1, w), min(int(np.ceil(mu[1])) + r + 1, h)
        if x0 >= x1 or y0 >= y1:
            return
        xs = np.arange(x0, x1, dtype=np.float32)[None, :]
        ys = np.arange(y0, y1, dtype=np.float32)[:, None]
        g = np.exp(-((xs - mu[0]) ** 2 + (ys - mu[1]) ** 2) / (2 * self.sigma**2))
        np.maximum(heat[j, y0:y1, x0:x1], g, out=heat[j, y0:y1, x0:x1])

    def encode(self, keypoints: np.ndarray, missing: np.ndarray, ignore: np.ndarray) -> dict[str, np.ndarray]:
        """keypoints [N,K,3] in input pixels (v > 0 labelled), missing [N,K] (joints the source does not
        annotate), ignore [h,w] bool at `heatmap_size` -> targets (see the module doc)."""
        k, m = self.num_keypoints, self.max_persons
        people = [(p, miss) for p, miss in zip(keypoints, missing) if (p[:, 2] > 0).any()]
        out: dict[str, np.ndarray] = {}
        finest = self.strides[-1]
        for s in self.strides:
            w, h = self.size_at(s)
            heat = np.zeros((k, h, w), np.float32)
            weights = np.ones((k, h, w), np.float32)
            weights[:, pool_mask(ignore, s // finest)] = 0.0  # the finest map's ignore mask pooled to this one
            for person, miss in people:
                labelled = person[:, 2] > 0
                xy = (person[:, :2].astype(np.float32) + 0.5) / s - 0.5
                for j in np.flatnonzero(labelled):
                    self._draw(heat, j, xy[j])
                if miss.any():  # unknown joints of this person: neither positive nor negative near it
                    lo, hi = xy[labelled].min(0) - 2 * self.sigma, xy[labelled].max(0) + 2 * self.sigma
                    x0, y0 = np.clip(np.floor(lo).astype(int), 0, [w, h])
                    x1, y1 = np.clip(np.ceil(hi).astype(int) + 1, 0, [w, h])
                    weights[np.flatnonzero(miss), y0:y1, x0:x1] = 0.0
            out[f"heatmaps_s{s}"], out[f"heatmap_weights_s{s}"] = heat, weights
        w, h = self.size_at(self.strides[0])
        index, tag_w = np.zeros((m, k), np.int64), np.zeros((m, k), np.float32)
        for n, (person, _) in enumerate(people[:m]):
            xy = np.round((person[:, :2] + 0.5) / self.strides[0] - 0.5).astype(int)
            ok = (person[:, 2] > 0) & (xy[:, 0] >= 0) & (xy[:, 0] < w) & (xy[:, 1] >= 0) & (xy[:, 1] < h)
            index[n] = np.where(ok, xy[:, 1] * w + xy[:, 0], 0)
            tag_w[n] = ok
        out["tag_index"], out["tag_weights"] = index, tag_w
        return out

    def oracle_decode(self, targets: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Decode the targets as if a perfect network had predicted them: the target heatmaps, and tag maps
        where every pixel of joint channel j holds the tag (2 x person number) of the nearest labelled
        joint j. The round trip of the whole codec, grouping included."""
        heatmaps = [torch.from_numpy(targets[f"heatmaps_s{s}"])[None] for s in self.strides]
        w, h = self.size_at(self.strides[0])
        tags = np.zeros((self.num_keypoints, h * w), np.float32)
        ys, xs = np.divmod(np.arange(h * w), w)
        for j in range(self.num_keypoints):
            persons = np.flatnonzero(targets["tag_weights"][:, j] > 0)
            if len(persons):
                py, px = np.divmod(targets["tag_index"][persons, j], w)
                d = (xs[None] - px[:, None]) ** 2 + (ys[None] - py[:, None]) ** 2
                tags[j] = 2.0 * persons[d.argmin(0)]
        heat, tag = self.aggregate(heatmaps, torch.from_numpy(tags.reshape(1, self.num_keypoints, h, w)))
        return self.decode(heat[0], tag[0, ..., None])

    # ------------------------------------------------------------------ decoding
    def aggregate(self, heatmaps: list[torch.Tensor], tags: torch.Tensor, size: tuple[int, int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Heatmaps [N,K,h_i,w_i] of every resolution -> their mean at `size` (h, w; default the input
        size) [N,K,H,W], bilinearly upsampled; tags [N,K,h,w] -> [N,K,H,W] (`TAG_UPSAMPLING`)."""
        size = size or (self.input_size[1], self.input_size[0])

        def up(m: torch.Tensor, mode: str) -> torch.Tensor:
            return F.interpolate(m.float(), size, mode=mode) if tuple(m.shape[-2:]) != tuple(size) else m.float()

        return torch.stack([up(m, "bilinear") for m in heatmaps]).mean(0), up(tags, TAG_UPSAMPLING)

    def decode(self, heat: torch.Tensor, tags: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One image: heatmaps [K,H,W] and tags [K,H,W,T] at the input size -> keypoints [P,K,2] (input
        pixels), keypoint scores [P,K], person scores [P]."""
        k, hh, ww = heat.shape
        peaks = torch.where(heat == max_filter(heat, self.nms_kernel), heat, torch.zeros_like(heat))
        vals, flat = peaks.view(k, -1).topk(min(4 * self.top_k, hh * ww), dim=1)
        # Upsampling a map x2 or x4 puts each of its pixels between output pixels: every peak becomes 2-4
        # equal maxima side by side. A candidate equal to a better-ranked one within the window is dropped.
        x, y = flat % ww, flat // ww
        r = self.nms_kernel // 2
        near = ((x[:, :, None] - x[:, None, :]).abs() <= r) & ((y[:, :, None] - y[:, None, :]).abs() <= r)
        twin = (near & (vals[:, :, None] == vals[:, None, :])).tril(-1).any(-1)
        vals = torch.where(twin | (vals <= 0), torch.full_like(vals, -1.0), vals)
        vals, order = vals.topk(min(self.top_k, vals.shape[1]), dim=1)
        flat = torch.gather(flat, 1, order)
        vals = vals.clamp_min(0.0)
        flat_t = flat.numpy()
        tag_dim = tags.shape[-1]
        cand_tags = torch.gather(tags.view(k, -1, tag_dim), 1, flat[..., None].expand(-1, -1, tag_dim)).numpy()  # [K,top_k,T]
        cand = np.concatenate([np.stack([flat_t % ww, flat_t // ww], -1).astype(np.float32), vals.numpy()[..., None], cand_tags], -1)
        persons = self._match(cand)  # [P,K,3+T]: x, y, heat, tag...
        if len(persons) == 0:
            return np.zeros((0, k, 2), np.float32), np.zeros((0, k), np.float32), np.zeros(0, np.float32)
        heat_np = heat.numpy()
        found = persons[:, :, 2] > 0
        xy = persons[:, :, :2].copy()
        spacing = self.strides[-1] if self.adjust == "taylor" else 0
        xy += np.where(found[..., None], subpixel_offsets(heat_np, np.broadcast_to(np.arange(k), found.shape), xy, spacing), 0.0)
        scores = persons[:, :, 2].mean(1)
        kp_scores = persons[:, :, 2].copy()
        if self.refine:
            tags_f = tags.float()
            for p in np.argsort(-scores, kind="stable")[:REFINE_TOP]:
                miss = np.flatnonzero(~found[p])
                if len(miss) == 0:
                    continue
                # Search a window around the person (its found joints' box grown by its size, at least
                # REFINE_MARGIN of the image): a joint lies near its person, and the whole map for every
                # person made decoding several times slower than the network on crowded images.
                lo, hi = xy[p, found[p]].min(0), xy[p, found[p]].max(0)
                grow = np.maximum(hi - lo, REFINE_MARGIN * max(hh, ww))
                x0, y0 = np.clip(np.floor(lo - grow).astype(int), 0, [ww - 1, hh - 1])
                x1, y1 = np.clip(np.ceil(hi + grow).astype(int) + 1, 1, [ww, hh])
                mean_tag = torch.from_numpy(persons[p, found[p], 3:].mean(0))
                dist = (tags_f[miss, y0:y1, x0:x1] - mean_tag).square_().sum(-1).sqrt_()  # [m,h,w]
                best = (heat[miss, y0:y1, x0:x1] - dist.round()).reshape(len(miss), -1).argmax(1).numpy()
                dist = dist.numpy()
                wy, wx = best // (x1 - x0), best % (x1 - x0)
                # A filled joint must carry the person's tag: else the best pixel is another person's joint.
                ok = dist[np.arange(len(miss)), wy, wx] < self.tag_threshold
                by, bx = wy + y0, wx + x0
                pts = np.stack([bx, by], -1).astype(np.float32)
                pts += subpixel_offsets(heat_np, miss, pts, spacing)
                xy[p, miss[ok]] = pts[ok]
                xy[p, miss[~ok]] = xy[p, found[p]].mean(0)
                kp_scores[p, miss[ok]] = heat_np[miss[ok], by[ok], bx[ok]]
        return xy.astype(np.float32), kp_scores.astype(np.float32), scores.astype(np.float32)

    def _match(self, cand: np.ndarray) -> np.ndarray:
        """cand [K,top_k,3+T] (x, y, heat, tag...) -> persons [P,K,3+T]; unfound joints are all zero."""
        k = cand.shape[0]
        persons: list[np.ndarray] = []
        person_tags: list[list[np.ndarray]] = []
        for j in self.joint_order or range(k):
            joints = cand[j][cand[j, :, 2] > self.detection_threshold]
            if len(joints) == 0:
                continue
            if not persons:
                for c in joints:
                    persons.append(np.zeros((k, cand.shape[2]), np.float32))
                    persons[-1][j] = c
                    person_tags.append([c[3:]])
                continue
            means = np.stack([np.mean(t, 0) for t in person_tags])  # [G,T]
            diff = np.linalg.norm(joints[:, None, 3:] - means[None], axis=2)  # [A,G]
            cost = np.round(diff) * 100 - joints[:, 2:3]
            n_added, n_grouped = cost.shape
            if n_added > n_grouped:
                cost = np.concatenate([cost, np.full((n_added, n_added - n_grouped), NO_MATCH_COST)], 1)
            rows, cols = linear_sum_assignment(cost)
            assigned = set()
            for r, c in zip(rows, cols):
                assigned.add(r)
                if c < n_grouped and diff[r, c] < self.tag_threshold:
                    persons[c][j] = joints[r]
                    person_tags[c].append(joints[r, 3:])
                else:
                    persons.append(np.zeros((k, cand.shape[2]), np.float32))
                    persons[-1][j] = joints[r]
                    person_tags.append([joints[r, 3:]])
        return np.stack(persons) if persons else np.zeros((0, k, cand.shape[2]), np.float32)


def subpixel_offsets(heat: np.ndarray, channels: np.ndarray, xy: np.ndarray, spacing: int) -> np.ndarray:
    """Sub-pixel offsets [...,2] for integer points xy [...,2] on heatmap channels [...] of heat [K,H,W]."""
    h, w = heat.shape[1:]
    return _steps(heat, channels, xy[..., 0].astype(int).clip(0, w - 1), xy[..., 1].astype(int).clip(0, h - 1), spacing)


def max_filter(x: torch.Tensor, kernel: int) -> torch.Tensor:
    """The maximum over each pixel's kernel x kernel window (edges padded with -inf) of [..., H, W]: equal to
    max_pool2d(x, kernel, 1, kernel // 2) and ten times faster on a CPU as separable shifted maxima."""
    r = kernel // 2
    h, w = x.shape[-2:]
    p = F.pad(x, (r, r, 0, 0), value=float("-inf"))
    m = p[..., 0:w]
    for i in range(1, kernel):
        m = torch.maximum(m, p[..., i : i + w])
    p = F.pad(m, (0, 0, r, r), value=float("-inf"))
    out = p[..., 0:h, :]
    for i in range(1, kernel):
        out = torch.maximum(out, p[..., i : i + h, :])
    return out


def _steps(heat: np.ndarray, j: np.ndarray, x: np.ndarray, y: np.ndarray, spacing: int) -> np.ndarray:
    """Sub-pixel steps at integer points (x, y) of channels j. spacing 0: the quarter-pixel step towards
    the higher neighbour (associative embedding's). spacing d: a Newton step on the log-heatmap from
    central differences d pixels apart (a Gaussian's log is quadratic), clipped to +-d."""
    h, w = heat.shape[1:]
    if spacing:
        d = spacing
        lg = lambda yy, xx: np.log(np.maximum(heat[j, np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)], 1e-10))  # noqa: E731
        c = lg(y, x)
        gx, gy = (lg(y, x + d) - lg(y, x - d)) / (2 * d), (lg(y + d, x) - lg(y - d, x)) / (2 * d)
        hx, hy = (lg(y, x + d) - 2 * c + lg(y, x - d)) / d**2, (lg(y + d, x) - 2 * c + lg(y - d, x)) / d**2
        dx = np.where(hx < -1e-9, -gx / np.minimum(hx, -1e-9), 0.0).clip(-d, d)
        dy = np.where(hy < -1e-9, -gy / np.minimum(hy, -1e-9), 0.0).clip(-d, d)
        return np.stack([dx, dy], -1).astype(np.float32)
    xl, xr = np.clip(x - 1, 0, w - 1), np.clip(x + 1, 0, w - 1)
    yu, yd = np.clip(y - 1, 0, h - 1), np.clip(y + 1, 0, h - 1)
    dx = np.where((x > 0) & (x < w - 1), 0.25 * np.sign(heat[j, y, xr] - heat[j, y, xl]), 0.0)
    dy = np.where((y > 0) & (y < h - 1), 0.25 * np.sign(heat[j, yd, x] - heat[j, yu, x]), 0.0)
    return np.stack([dx, dy], -1).astype(np.float32)


# ---------------------------------------------------------------------- losses
def heatmap_mse(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Masked squared error, mean over joints and pixels and the batch (HigherHRNet's HeatmapLoss)."""
    return ((pred.float() - target) ** 2 * weights).mean()


def ae_loss(tags: torch.Tensor, index: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Associative-embedding pull and push losses, each averaged over the batch's images.

    tags [N,K,h,w] (one scalar tag per joint), index [N,M,K] (y*w + x of each person's joints),
    weights [N,M,K] (1 = labelled). pull: per person, the mean squared distance of its joints' tags to
    their mean, averaged over persons; push: exp(-(m_a - m_b)^2 / 2) averaged over ordered pairs of
    distinct persons (0 with fewer than two)."""
    n, k = tags.shape[:2]
    at = torch.gather(tags.float().reshape(n, k, -1), 2, index.permute(0, 2, 1)).permute(0, 2, 1)  # [N,M,K]
    count = weights.sum(-1)
    valid = (count > 0).float()
    mean = (at * weights).sum(-1) / count.clamp_min(1)
    pull = (((at - mean[..., None]) ** 2 * weights).sum(-1) / count.clamp_min(1) * valid).sum(-1) / valid.sum(-1).clamp_min(1)
    pairs = valid[:, :, None] * valid[:, None, :] * (1 - torch.eye(valid.shape[1], device=tags.device))
    push = (torch.exp(-((mean[:, :, None] - mean[:, None, :]) ** 2) / 2) * pairs).sum((1, 2)) / pairs.sum((1, 2)).clamp_min(1)
    return pull.mean(), push.mean()
