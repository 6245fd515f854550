"""AlphaPose's parametric pose NMS (../shared/docs/alphapose.txt §3.4, eqs. 16-19) and the instance
scoring rules a top-down pipeline can rank persons by.

Pose similarity of a pose j to a reference pose i, with box B_i of width w and height h:

    KSim = mean_n tanh(c_i^n / sigma1) * tanh(c_j^n / sigma1)   over joints n where k_j^n lies in the
           window centred on k_i^n whose sides are `window` (1/10) of B_i's, else 0        (eq. 17)
    HSim = mean_n exp(-|k_i^n - k_j^n|^2 / (sigma2 * s_i^2)),  s_i = max(w, h)             (eq. 18)
    d    = KSim + lambda * HSim                                                           (eq. 19)

and j is eliminated when d >= eta (eq. 16 writes the criterion as d <= eta for a *distance*; KSim and
HSim are similarities, so a redundant pose is one whose d is large). Two choices differ from the paper's
text and are only rescalings: the sums are means over joints (eta then does not depend on the keypoint
count), and HSim's squared distance is in units of the reference box's longer side (so sigma2 does not
depend on the image size; AlphaPose's code uses pixels). The reference is the most confident remaining
pose, as in the paper; eliminated poses are dropped (AlphaPose's code also merges their keypoints into
the reference; posekit does not).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from posekit.postprocess.nms import greedy_suppression, mean_above


@dataclass(frozen=True)
class PoseNMSParams:
    sigma1: float = 1.0  # KSim's tanh temperature (AlphaPose's delta1)
    sigma2: float = 0.01  # HSim's kernel width, in (box side)^2
    lam: float = 1.7  # weight of HSim (AlphaPose's mu)
    eta: float = 1.2  # elimination threshold on d, in [0, 1 + lam]
    window: float = 0.1  # KSim window side as a fraction of the reference box (the paper's 1/10)

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def pose_similarity(keypoints: np.ndarray, keypoint_scores: np.ndarray, boxes: np.ndarray, params: PoseNMSParams,
                    refs: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """d(P_j | reference P_i) [R,N] for the reference poses `refs` (default all: [N,N]); row r is the
    reference refs[r] (its box sets the window and the scale)."""
    kp = np.asarray(keypoints, np.float64)
    sc = np.clip(np.asarray(keypoint_scores, np.float64), 0.0, None)
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    refs = np.arange(len(kp)) if refs is None else np.asarray(refs)
    w = np.maximum(b[refs, 2] - b[refs, 0], 1e-6)
    h = np.maximum(b[refs, 3] - b[refs, 1], 1e-6)
    delta = kp[None, :, :, :] - kp[refs, None, :, :]  # [r, j, K, 2]: pose j relative to reference refs[r]
    inside = (np.abs(delta[..., 0]) <= params.window * w[:, None, None] / 2) & (np.abs(delta[..., 1]) <= params.window * h[:, None, None] / 2)
    conf = np.tanh(sc / params.sigma1)
    ksim = (inside * conf[refs, None, :] * conf[None, :, :]).mean(-1)
    side = np.maximum(w, h)[:, None, None]
    hsim = np.exp(-(delta**2).sum(-1) / (params.sigma2 * side**2)).mean(-1)
    return ksim + params.lam * hsim


def parametric_pose_nms(keypoints: np.ndarray, keypoint_scores: np.ndarray, boxes: np.ndarray, scores: np.ndarray,
                        params: PoseNMSParams | None = None) -> np.ndarray:  # fmt: skip
    """Indices of the poses kept, best score first: the most confident remaining pose eliminates every
    pose whose similarity to it reaches `params.eta`, then the next one that survived, and so on."""
    params = params or PoseNMSParams()
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    if len(order) == 0:
        return order.astype(np.int64)
    return greedy_suppression(order, lambda refs: pose_similarity(keypoints, keypoint_scores, boxes, params, refs) >= params.eta)


# Instance scoring: how a person found by the top-down pipeline is ranked (COCO AP depends only on the
# ranking). `threshold` is the keypoint score a joint needs to count in the "*_above" rules.
SCORING_RULES = ("mean", "box", "box_mean", "mean_above", "box_mean_above", "alphapose")


def score_instances(rule: str, box_scores: np.ndarray, keypoint_scores: np.ndarray, threshold: float = 0.2) -> np.ndarray:
    """Person scores [N] in [0, 1] by `rule`:
    mean: mean keypoint score; box: the detector's score; box_mean: their product;
    mean_above / box_mean_above: the mean over keypoints scoring above `threshold` (0 when none does),
    alone or times the box score (SimpleBaseline / MMPose); alphapose: (mean + box + 1.25 max) / 3.25,
    AlphaPose's proposal score rescaled to [0, 1]."""
    kp = np.asarray(keypoint_scores, np.float64).reshape(len(box_scores), -1)
    box = np.asarray(box_scores, np.float64)
    above = mean_above(kp, threshold)
    mean = kp.mean(1) if kp.shape[1] else np.zeros(len(box))
    by_rule = {
        "mean": lambda: mean,
        "box": lambda: box,
        "box_mean": lambda: box * mean,
        "mean_above": lambda: above,
        "box_mean_above": lambda: box * above,
        "alphapose": lambda: (mean + box + 1.25 * (kp.max(1) if kp.shape[1] else 0)) / 3.25,
    }
    if rule not in by_rule:
        raise ValueError(f"unknown scoring rule {rule!r}; one of {', '.join(SCORING_RULES)}")
    return np.clip(by_rule[rule](), 0.0, 1.0).astype(np.float32)
