"""Calibrated person scores: a person's score read as the probability that it is a real person whose pose
matches a labelled one at OKS >= 0.5 (COCO's matching, `evaluation/matching.py`).

A logistic model on a few numbers every top-down pipeline has for a person: the detector's box score (as a
logit), the mean keypoint score, and the fraction of keypoints scoring above 0.3 (how much of the body the
pose model sees). It is fitted on labelled images by `tools/fit_modes.py` for each mode's settings (the
candidates a preset keeps differ) and its weights ship in the preset (`postprocess/presets.py`).

Because the keypoint features lie in [0, 1], a box score alone bounds the probability its person can
reach (`max_probability`): boxes that cannot pass an output threshold never go through the pose network.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from posekit.errors import OptionError

FEATURES = ("bias", "box_logit", "keypoint_mean", "keypoints_seen")
SEEN_THRESHOLD = 0.3  # a keypoint "seen" for the keypoints_seen feature (MMPose's kpt_thr for drawing)
_EPS = 1e-4


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


def person_features(box_scores: np.ndarray, keypoint_scores: np.ndarray) -> np.ndarray:
    """[N, len(FEATURES)]: 1, logit(box score), mean keypoint score, fraction of keypoints above 0.3."""
    box = np.asarray(box_scores, np.float64).reshape(-1)
    kp = np.asarray(keypoint_scores, np.float64).reshape(len(box), -1)
    mean = kp.mean(1) if kp.shape[1] else np.zeros(len(box))
    seen = (kp > SEEN_THRESHOLD).mean(1) if kp.shape[1] else np.zeros(len(box))
    return np.stack([np.ones(len(box)), _logit(box), mean, seen], axis=1)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))


@dataclass(frozen=True)
class PersonCalibration:
    """Logistic weights, one per `FEATURES` entry."""

    weights: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.weights) != len(FEATURES) or not np.isfinite(self.weights).all():
            raise OptionError(f"calibration weights: {len(FEATURES)} finite numbers ({', '.join(FEATURES)}), got {self.weights}")

    def __call__(self, box_scores: np.ndarray, keypoint_scores: np.ndarray) -> np.ndarray:
        """Probabilities [N] that each person is right (float32)."""
        return _sigmoid(person_features(box_scores, keypoint_scores) @ np.asarray(self.weights)).astype(np.float32)

    def max_probability(self, box_scores: np.ndarray) -> np.ndarray:
        """The most any pose of a box with this score can reach (keypoint features at their best)."""
        w = np.asarray(self.weights)
        best_keypoints = max(w[2], 0.0) + max(w[3], 0.0)
        return _sigmoid(w[0] + w[1] * _logit(box_scores) + best_keypoints).astype(np.float32)

    def min_box_score(self, threshold: float) -> float:
        """The lowest box score whose person can reach `threshold` (0 when any can, 1 when none can)."""
        w = np.asarray(self.weights)
        if threshold <= 0:
            return 0.0
        if w[1] <= 0:  # a model that does not rank by the box: every box could pass
            return 0.0
        z = float(_logit(np.array([threshold]))[0]) - w[0] - max(w[2], 0.0) - max(w[3], 0.0)
        return float(np.clip(_sigmoid(np.array([z / w[1]]))[0], 0.0, 1.0))


def fit_calibration(features: np.ndarray, labels: np.ndarray, l2: float = 1e-2, steps: int = 50) -> PersonCalibration:
    """Logistic regression by Newton's method with a small L2 penalty (not on the bias); labels 1 / 0."""
    x, y = np.asarray(features, np.float64), np.asarray(labels, np.float64)
    w = np.zeros(x.shape[1])
    penalty = np.full(x.shape[1], l2)
    penalty[0] = 0.0
    for _ in range(steps):
        p = _sigmoid(x @ w)
        grad = x.T @ (p - y) + penalty * w
        hess = (x * (p * (1 - p))[:, None]).T @ x + np.diag(penalty) + 1e-9 * np.eye(len(w))
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return PersonCalibration(tuple(round(float(v), 5) for v in w))


def log_loss(probabilities: np.ndarray, labels: np.ndarray) -> float:
    p = np.clip(np.asarray(probabilities, np.float64), 1e-6, 1 - 1e-6)
    y = np.asarray(labels, np.float64)
    return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())
