"""Online pose tracking: AlphaPose's multi-stage identity matching (../shared/docs/alphapose.txt §4.2).

Per frame: move every track with the camera (`camera_motion`, when given) and Kalman-predict its box. The
poses scoring at least `high_threshold` go through stage 1, identity embeddings (cosine distance <=
`embedding_threshold`, when embeddings are given, inside the track's Kalman gate; by default only for tracks
unseen in the last frame, `embedding_lost_only`, after the confirmed tracks seen in the last frame took their
poses by stage 2, and never for a pose inside the gate of one of those), and
stage 2, the fusion f = (1 - IoU) + lambda_np * dist_np (+ lambda_app * appearance distance, when
appearance descriptors are given) (eq. 22) <= `fusion_threshold`, then the same with a lowered bar
(`relaxed_threshold`). The tracks still unmatched then take the low-scoring poses by IoU alone (ByteTrack's
second pass: an occluded person's weak detection keeps its track; the high-scoring poses left too, with
`iou_pass_all`); low-scoring poses matching no track are dropped. High-scoring poses left start tentative
tracks. Lost tracks coast on their Kalman prediction for `max_age` frames.

A tentative track is confirmed after `min_hits` consecutive matches and deleted at its first miss; only
confirmed tracks are reported (`reported_id`), with ids 1, 2, ... in order of confirmation. `update` labels
poses with internal track uids; `ConfirmationDelay` holds frames long enough to report a confirmed track
from its first frame. Assignment within a stage is Hungarian.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from posekit.postprocess.nms import box_iou
from posekit.structures import Poses
from posekit.tracking.appearance import appearance_distance, update_appearance
from posekit.tracking.kalman import BoxKalman


def link_unambiguous(cost: np.ndarray, threshold: float, ratio: float, link) -> None:
    """Link (r, c) when each is the other's best, the cost is under `threshold`, and the runner-up in
    both its row and its column costs more than cost / `ratio` (appearance alone is not trusted in a tie)."""
    for r in range(cost.shape[0]):
        c = int(np.argmin(cost[r]))
        best = cost[r, c]
        if not best <= threshold or int(np.argmin(cost[:, c])) != r:
            continue
        others = np.concatenate([np.delete(cost[r], c), np.delete(cost[:, c], r)])
        if others.size == 0 or others.min() * ratio > best:
            link(r, c)


def normalized_pose_distance(kp_a, sc_a, box_a, kp_b, sc_b, box_b, sigma_conf: float = 0.5, sigma_dist: float = 0.02) -> np.ndarray:
    """dist_np [Na,Nb] in [0,1]: poses centred on their box centres and scaled by the box size (the
    same scale for both), then 1 - the confidence-weighted mean of exp(-d^2 / sigma_dist) over joints
    (the KSim tanh weights and HSim kernel of eqs. 17-19)."""

    def normalise(kp: np.ndarray, box: np.ndarray) -> np.ndarray:
        centre = (box[:, None, :2] + box[:, None, 2:]) / 2
        size = np.sqrt(np.prod(np.maximum(box[:, 2:] - box[:, :2], 1.0), axis=1))[:, None, None]
        return (kp - centre) / size

    na, nb = normalise(kp_a, box_a), normalise(kp_b, box_b)
    d2 = ((na[:, None] - nb[None]) ** 2).sum(-1)  # [Na,Nb,K]
    w = np.tanh(sc_a[:, None] / sigma_conf) * np.tanh(sc_b[None] / sigma_conf)
    sim = (w * np.exp(-d2 / sigma_dist)).sum(-1) / np.maximum(w.sum(-1), 1e-9)
    return 1.0 - sim


@dataclass
class Track:
    uid: int  # internal, unique per tracker
    kalman: BoxKalman
    keypoints: np.ndarray
    keypoint_scores: np.ndarray
    box: np.ndarray  # last matched detection box
    embedding: np.ndarray | None = None
    appearance: np.ndarray | None = None
    missed: int = 0
    hits: int = 1
    confirmed: bool = False


@dataclass
class TrackerOptions:
    embedding_threshold: float = 0.6  # cosine distance of centred embeddings, stage 1
    # stage 1 only links poses whose box centre is this likely where the track's Kalman filter predicts it: the
    # squared Mahalanobis distance under the prediction's covariance (chi-square, 2 dof, 95%: 5.99), which widens
    # the longer the track is unseen. A fixed 1.5 box sizes let a track lost for a frame take the person next to it
    embedding_gate: float = 5.991
    embedding_ratio: float = 0.7  # ... and whose best match beats every other candidate by this ratio
    embedding_warmup: int = 64  # embeddings seen before stage 1 starts (their mean is used for centring)
    # stage 1 only for tracks unseen in the last frame: appearance re-finds a person after an occlusion, geometry
    # follows the visible ones (on the crossing test, stage 1 for every track cost 17 ID switches vs 2; README)
    embedding_lost_only: bool = True
    fusion_threshold: float = 0.5  # mu_f of eq. 22 (paper: 0.5)
    relaxed_threshold: float = 0.9  # the lowered bar of the repeated stage 2
    lambda_np: float = 1.0  # weight of the pose distance in eq. 22
    # frames a confirmed track may go unseen (coasting on its Kalman prediction) before it is retired; 30 lost the
    # two people of the labelled clips whom the detector missed for 58-60 frames (DeepSORT keeps tracks for 70)
    max_age: int = 60
    embedding_momentum: float = 0.9  # track embedding = running mean of its detections'
    high_threshold: float = 0.1  # poses scoring below this only continue tracks (second pass); they never start one
    low_iou: float = 0.5  # second pass: IoU with the predicted box a low-scoring pose needs
    min_hits: int = 4  # consecutive matches that confirm a track (so tracks of min_hits - 1 frames or fewer are never reported)
    # the last pass by IoU alone takes every pose left, not only the weak ones: a high-scoring pose whose box
    # changed shape (legs found again, a limb hidden) fails the fusion but still overlaps its track's box
    iou_pass_all: bool = True
    camera_motion: bool = True  # the pipeline estimates camera motion between frames and passes it to `update`
    lambda_app: float = 0.0  # weight of the appearance distance in the fusion (with appearance descriptors)


@dataclass
class PoseTracker:
    options: TrackerOptions = field(default_factory=TrackerOptions)
    tracks: list[Track] = field(default_factory=list)
    next_uid: int = 1
    next_id: int = 1  # the next reported id
    frames: int = 0
    reported: dict[int, int] = field(default_factory=dict)  # uid -> reported id, for confirmed tracks
    embedding_sum: np.ndarray | None = None  # sum and count of every embedding seen, for centring
    embedding_count: int = 0

    def _centred(self, e: np.ndarray) -> np.ndarray:
        """Embeddings minus the mean of all seen, re-normalised: the trunk features of all persons share a
        large common part; without it, different persons' cosine distances crowd near same-person ones
        (measured on synthetic crossings: median 0.10 vs 0.035 raw; 1.20 vs 0.39 centred)."""
        c = e - self.embedding_sum / self.embedding_count
        return c / np.maximum(np.linalg.norm(c, axis=-1, keepdims=True), 1e-9)

    @property
    def reported_count(self) -> int:
        return self.next_id - 1

    def reported_id(self, uid: int, end_of_stream: bool = False) -> int | None:
        """The id a track is reported under, None while it is not (yet) confirmed. At the end of a stream
        shorter than `min_hits` frames, tracks matched in every one of its frames are reported too."""
        if (uid not in self.reported and end_of_stream and self.frames < self.options.min_hits
                and any(t.uid == uid and t.hits == self.frames for t in self.tracks)):  # fmt: skip
            self.reported[uid] = self.next_id
            self.next_id += 1
        return self.reported.get(uid)

    def update(self, poses: Poses, embeddings: np.ndarray | None = None, appearance: np.ndarray | None = None,
               camera_motion: np.ndarray | None = None) -> Poses:  # fmt: skip
        """Assign track uids to this frame's poses (a copy of `poses` with `track_ids` set to uids; the
        low-scoring poses that continue no track are left out). `appearance` [N,D]: descriptors compared
        by `appearance_distance` (e.g. `tracking.appearance.limb_colours`). `camera_motion` [2,3]: the affine
        from the previous frame's pixels to this one's (`tracking.camera_motion.CameraMotion`), applied to
        every track before its prediction."""
        o = self.options
        if camera_motion is not None:
            for t in self.tracks:
                t.kalman.warp(camera_motion)
        predicted = np.array([t.kalman.predict() for t in self.tracks], np.float32).reshape(-1, 4)
        n = len(poses)
        ids = np.full(n, -1, np.int64)
        low = {d for d in range(n) if poses.scores[d] < o.high_threshold}
        free_dets, free_tracks = set(range(n)) - low, set(range(len(self.tracks)))

        def link(d: int, t: int) -> None:
            self._link(t, poses, d, embeddings, appearance)
            ids[d] = self.tracks[t].uid
            free_dets.discard(d)
            low.discard(d)
            free_tracks.discard(t)

        def assign(dets: list[int], trks: list[int], cost: np.ndarray, threshold: float) -> None:
            for r, c in zip(*linear_sum_assignment(cost)):
                if cost[r, c] <= threshold:
                    link(dets[r], trks[c])

        def geometry(trks_allowed: set[int]) -> None:  # stage 2, then with the lowered bar
            for threshold in (o.fusion_threshold, o.relaxed_threshold):
                dets, trks = sorted(free_dets), sorted(free_tracks & trks_allowed)
                if dets and trks:
                    assign(dets, trks, self._fusion(poses, dets, predicted, trks, appearance), threshold)

        if embeddings is not None and len(embeddings):
            held = {t for t in free_tracks if self.tracks[t].confirmed and self.tracks[t].missed == 0} if o.embedding_lost_only else set()
            # confirmed tracks seen in the last frame keep their people by geometry before lost tracks look by
            # appearance: otherwise a lost track of the same person takes the detection, the visible track is
            # lost in turn and takes it back the next frame (two ids alternating on one person)
            geometry(held)
            self.embedding_sum = embeddings.sum(0) + (0 if self.embedding_sum is None else self.embedding_sum)
            self.embedding_count += len(embeddings)
            dets = sorted(free_dets)
            unmatched_held = sorted(held & free_tracks)
            if unmatched_held and dets:
                # nor does a lost track take a pose inside the gate of such a track that geometry left unmatched
                # (its box changed shape, say): continuity beats appearance there, the pose goes on to the passes below
                near = np.any([self.tracks[t].kalman.centre_distance(poses.boxes[dets]) <= o.embedding_gate for t in unmatched_held], axis=0)
                dets = [d for d, inside in zip(dets, near) if not inside]
            trks = [t for t in sorted(free_tracks) if self.tracks[t].embedding is not None
                    and (self.tracks[t].missed > 0 or not o.embedding_lost_only)]  # fmt: skip
            if dets and trks and self.embedding_count >= o.embedding_warmup:  # stage 1: identity embeddings
                cost = 1.0 - self._centred(embeddings[dets]) @ self._centred(np.stack([self.tracks[t].embedding for t in trks])).T
                gate = np.stack([self.tracks[t].kalman.centre_distance(poses.boxes[dets]) for t in trks], 1)
                cost = np.where(gate <= o.embedding_gate, cost, np.inf)
                link_unambiguous(cost, o.embedding_threshold, o.embedding_ratio, lambda r, c: link(dets[r], trks[c]))
        geometry(set(free_tracks))
        dets, trks = sorted(low | (free_dets if o.iou_pass_all else set())), sorted(free_tracks)
        if dets and trks:  # ByteTrack's second pass: weak (and other left-over) poses continue unmatched tracks, by IoU
            assign(dets, trks, 1.0 - box_iou(poses.boxes[dets], predicted[trks]), 1.0 - o.low_iou)
        for d in sorted(free_dets):
            self.tracks.append(Track(self.next_uid, BoxKalman(poses.boxes[d]), poses.keypoints[d], poses.keypoint_scores[d], poses.boxes[d],
                                     None if embeddings is None else embeddings[d], None if appearance is None else appearance[d]))  # fmt: skip
            ids[d] = self.next_uid
            self.next_uid += 1
        for t in free_tracks:
            self.tracks[t].missed += 1
        for t in self.tracks:
            if not t.confirmed and t.hits >= o.min_hits:
                t.confirmed = True
                self.reported[t.uid] = self.next_id
                self.next_id += 1
        # tentative tracks die at their first miss, confirmed ones after max_age frames unseen
        self.tracks = [t for t in self.tracks if t.missed == 0 or (t.confirmed and t.missed <= o.max_age)]
        self.frames += 1
        keep = np.flatnonzero(ids >= 0)
        out = poses.select(keep)
        out.track_ids = ids[keep]
        return out

    def _fusion(self, poses: Poses, dets: list[int], predicted: np.ndarray, tracks: list[int], appearance: np.ndarray | None) -> np.ndarray:
        tr = [self.tracks[t] for t in tracks]
        iou = box_iou(poses.boxes[dets], predicted[tracks])
        dist = normalized_pose_distance(
            poses.keypoints[dets], poses.keypoint_scores[dets], poses.boxes[dets],
            np.stack([t.keypoints for t in tr]), np.stack([t.keypoint_scores for t in tr]), np.stack([t.box for t in tr]),
        )  # fmt: skip
        cost = (1.0 - iou) + self.options.lambda_np * dist
        if appearance is not None and self.options.lambda_app > 0 and all(t.appearance is not None for t in tr):
            cost = cost + self.options.lambda_app * appearance_distance(appearance[dets], np.stack([t.appearance for t in tr]))
        return cost

    def _link(self, t: int, poses: Poses, d: int, embeddings: np.ndarray | None, appearance: np.ndarray | None = None) -> None:
        track = self.tracks[t]
        track.kalman.update(poses.boxes[d])
        track.box = poses.boxes[d]  # the box its keypoints belong to (the pose distance normalises by it)
        track.keypoints, track.keypoint_scores = poses.keypoints[d], poses.keypoint_scores[d]
        track.missed, track.hits = 0, track.hits + 1
        if appearance is not None:
            track.appearance = update_appearance(track.appearance, appearance[d])
        if embeddings is not None:
            e = (
                embeddings[d]
                if track.embedding is None
                else self.options.embedding_momentum * track.embedding + (1 - self.options.embedding_momentum) * embeddings[d]
            )
            track.embedding = e / max(float(np.linalg.norm(e)), 1e-9)
