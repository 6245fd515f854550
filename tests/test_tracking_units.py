"""Tracking building blocks: the staged pipeline (order, shutdown), Kalman, matcher, One-Euro filter."""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest

from posekit.data.specs import COCO17
from posekit.models.base import poses_from_keypoints
from posekit.pipeline.stream import PipelineError, Stage, run_concurrent, run_sequential
from posekit.structures import Poses
from posekit.tracking.kalman import BoxKalman
from posekit.tracking.smoothing import OneEuroFilter
from posekit.tracking.tracker import PoseTracker, TrackerOptions, normalized_pose_distance


def test_concurrent_pipeline_keeps_order_with_parallel_workers() -> None:
    rng = np.random.default_rng(0)

    def slow_square(x: int) -> int:
        time.sleep(float(rng.uniform(0, 0.004)))  # workers finish out of order
        return x * x

    got: list[int] = []
    times = run_concurrent(
        range(200),
        [Stage("a", lambda x: x + 1, workers=3), Stage("b", slow_square, workers=2), Stage("c", lambda x: x)],
        got.append,
        queue_size=2,
    )
    assert got == [(x + 1) ** 2 for x in range(200)]
    assert times.items["a"] == times.items["b"] == times.items["write"] == 200
    seq: list[int] = []
    run_sequential(range(5), [Stage("a", lambda x: x + 1)], seq.append)
    assert seq == [1, 2, 3, 4, 5]


def test_stage_error_stops_every_thread_and_keeps_earlier_results() -> None:
    def boom(x: int) -> int:
        if x == 50:
            raise ValueError("bad frame 50")
        return x

    got: list[int] = []
    before = threading.active_count()
    with pytest.raises(PipelineError, match="bad frame 50"):
        run_concurrent(iter(range(10_000)), [Stage("a", boom, workers=2), Stage("b", lambda x: x)], got.append)
    assert got == list(range(len(got))) and len(got) <= 50  # in order, nothing after the failure
    time.sleep(0.3)
    assert threading.active_count() <= before  # no hung workers


def test_memory_bounded_source_is_not_read_ahead() -> None:
    pulled = []

    def source():
        for i in range(1000):
            pulled.append(i)
            yield i

    def slow_sink(x: int) -> None:
        if x == 0:
            time.sleep(0.3)
            assert len(pulled) < 20  # bounded queues: the reader waits for the slow sink

    run_concurrent(source(), [Stage("a", lambda x: x)], slow_sink, queue_size=2)


def test_kalman_follows_constant_velocity() -> None:
    kf = BoxKalman(np.array([0, 0, 10, 20], np.float32))
    for t in range(1, 15):
        kf.predict()
        kf.update(np.array([5 * t, 0, 5 * t + 10, 20], np.float32))
    np.testing.assert_allclose(kf.predict(), [75, 0, 85, 20], atol=1.0)


def _poses(boxes: np.ndarray) -> Poses:
    kp = np.stack([np.stack([np.linspace(b[0], b[2], 17), np.linspace(b[1], b[3], 17)], 1) for b in boxes])
    return Poses(kp, np.full((len(boxes), 17), 0.9), boxes, np.full(len(boxes), 0.9))


def test_tracker_keeps_ids_through_order_changes_and_a_gap() -> None:
    tracker = PoseTracker()
    seen = []
    for t in range(12):
        boxes = np.array([[10 + 5 * t, 40, 110 + 5 * t, 260], [300 - 5 * t, 220, 400 - 5 * t, 440]], np.float32)
        order = [0, 1] if t % 2 == 0 else [1, 0]
        if t == 6:
            order = [0]  # person 1 missed for a frame
        out = tracker.update(_poses(boxes[order]))
        seen.append(dict(zip(order, out.track_ids.tolist())))
    assert all(s[0] == seen[0][0] for s in seen)
    assert all(s[1] == seen[0][1] for s in seen if 1 in s)
    assert tracker.next_id == 3


def _two_people(tracker: PoseTracker, frames: int, a_box: list, emb: np.ndarray, swap_at: int = -1) -> list[list[int]]:
    """Person b still and person a at `a_box[t]` (absent where None); embeddings `emb` [2,D] (b, a), swapped at `swap_at`."""
    ids = []
    for t in range(frames):
        boxes = np.array([[300, 20, 400, 240]] + ([] if a_box[t] is None else [a_box[t]]), np.float32)
        e = emb[[1, 0]] if t == swap_at else emb
        out = tracker.update(_poses(boxes), e[: len(boxes)])
        ids.append(out.track_ids.tolist())
    return ids


def test_appearance_re_finds_lost_tracks_and_never_overrides_geometry_for_visible_ones() -> None:
    emb = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]], np.float32)  # b, a: clearly different people
    emb = np.concatenate([emb, np.ones((2, 1), np.float32)], 1)  # a common part (centred away by the tracker)
    still, moved = np.array([0, 20, 100, 240], np.float32), np.array([130, 20, 230, 240], np.float32)
    # a is hidden for 15 frames after 40 and comes back 130 px to the right: no overlap with where it was, inside
    # the gate of its Kalman prediction (which widens while it is unseen: 5 frames would be too soon for 130 px)
    path = [still] * 40 + [None] * 15 + [moved] * 5
    for options, same in ((TrackerOptions(), True), (TrackerOptions(embedding_warmup=10**9), False)):
        ids = _two_people(PoseTracker(options), 60, path, emb)
        assert (ids[59][1] == ids[39][1]) is same  # re-found by appearance only where embeddings are used
    # both visible and side by side (within each other's gate), geometry unambiguous, one frame's embeddings
    # swapped: stage 1 on visible tracks swaps ids
    beside = np.array([315, 20, 415, 240], np.float32)
    for options, kept in ((TrackerOptions(), True), (TrackerOptions(embedding_lost_only=False), False)):
        ids = _two_people(PoseTracker(options), 50, [beside] * 50, emb, swap_at=45)
        assert (ids[45] == ids[44]) is kept


def test_a_lost_track_never_takes_a_person_a_confirmed_track_follows() -> None:
    """A person lost far from where they reappear gets a new track; walking back into the lost track's gate, the
    lost track (same embedding) must not take them: it did, the new track was lost in turn and took them back
    the next frame, two ids alternating on one person (found on test_video_structuralize.mp4)."""
    emb = np.array([[1.0, 0.0, 0.0, 1.0], [0.0, 1.0, 0.0, 1.0]], np.float32)  # a, and b far away (for centring)
    b = np.array([900, 20, 1000, 240], np.float32)
    tracker, ids = PoseTracker(TrackerOptions(embedding_warmup=0)), []
    for t in range(70):
        # a: still at x=0 for 30 frames, hidden 3, back at x=600 (outside the gate), then walks left to x=0
        x = 0 if t < 30 else None if t < 33 else max(600 - 20 * (t - 33), 0)
        boxes = np.array([b] + ([] if x is None else [[x, 20, x + 100, 240]]), np.float32)
        ids.append(tracker.update(_poses(boxes), emb[[1, 0]][: len(boxes)]).track_ids.tolist())
    assert ids[33][1] != ids[29][1]  # out of the gate: a new track
    assert all(i[1] == ids[33][1] for i in ids[33:])  # followed by geometry, never handed back and forth


def test_tracker_retires_tracks_after_max_age() -> None:
    tracker = PoseTracker()
    tracker.update(_poses(np.array([[0, 0, 50, 100]], np.float32)))
    for _ in range(tracker.options.max_age + 1):
        tracker.update(Poses.empty())
    assert tracker.tracks == []
    assert tracker.update(_poses(np.array([[0, 0, 50, 100]], np.float32))).track_ids.tolist() == [2]


def test_pose_distance_ignores_position_and_scale() -> None:
    kp = np.random.default_rng(1).uniform(0, 100, (1, 17, 2))
    box = np.array([[0, 0, 100, 100]], np.float32)
    sc = np.ones((1, 17))
    moved = normalized_pose_distance(kp, sc, box, kp * 2 + 300, sc, box * 2 + 300)
    other = normalized_pose_distance(kp, sc, box, kp[:, ::-1], sc, box)
    assert moved[0, 0] == pytest.approx(0.0, abs=1e-9) and other[0, 0] > 0.5


def test_one_euro_filter_smooths_jitter_and_follows_motion() -> None:
    rng = np.random.default_rng(0)
    f = OneEuroFilter(min_cutoff=1.0, beta=0.0)
    still = [f(np.array([100.0]) + rng.normal(0, 2, 1), t / 30) for t in range(90)]
    assert np.std(still[30:]) < 1.0  # input jitter has std 2
    f = OneEuroFilter(min_cutoff=1.0, beta=1.0)
    moving = [f(np.array([10.0 * t]), t / 30)[0] for t in range(60)]
    assert abs(moving[-1] - 590) < 30  # beta lets the cutoff rise with speed: little lag


def _run_delayed(tracker: PoseTracker, frames: list[Poses]) -> list[Poses]:
    from posekit.tracking.delay import ConfirmationDelay

    delay = ConfirmationDelay(tracker, lambda item: item[0], lambda item, p: item.__setitem__(0, p))
    out = []
    for p in frames:
        out += delay.push([tracker.update(p)])
    return [item[0] for item in out + delay.flush()]


def test_flickers_are_never_reported_and_confirmed_tracks_from_their_first_frame() -> None:
    """min_hits = 4: a person seen in 3 consecutive frames is never reported; one seen in 4 is reported in
    all 4 (the frames wait for the confirmation), with id 1, the first id reported."""
    a = np.array([[0, 0, 50, 100]], np.float32)
    b = np.array([[300, 0, 350, 100]], np.float32)
    frames = [_poses(np.concatenate([a, b])) if t < 3 else _poses(a) for t in range(3)] + [_poses(a)] * 3
    out = _run_delayed(PoseTracker(), frames)
    assert [p.track_ids.tolist() for p in out] == [[1]] * 6  # b (3 frames) never, a in every frame
    tracker = PoseTracker()
    assert [p.track_ids.tolist() for p in _run_delayed(tracker, [_poses(a)] * 2)] == [[1], [1]]  # a stream shorter than min_hits
    assert tracker.reported_count == 1


def test_low_scoring_poses_continue_tracks_but_never_start_them() -> None:
    """ByteTrack's second pass: an occluded person's weak detection keeps its track; a weak detection
    elsewhere is dropped."""
    tracker = PoseTracker(TrackerOptions(high_threshold=0.5, min_hits=1))
    box = np.array([[0, 0, 50, 100]], np.float32)
    first = tracker.update(_poses(box)).track_ids.tolist()
    weak = _poses(np.concatenate([box + 2, box + 400]))
    weak.scores[:] = 0.2
    out = tracker.update(weak)
    assert first == [1] and out.track_ids.tolist() == [1] and out.boxes[0, 0] == 2  # the far weak one is gone
    assert len(tracker.tracks) == 1


def test_limb_colours_tell_people_apart_by_what_they_wear() -> None:
    from posekit.tracking.appearance import appearance_distance, limb_colours, update_appearance

    image = np.zeros((200, 200, 3), np.uint8)
    image[:, :100] = (200, 30, 30)  # red left half, blue right half
    image[:, 100:] = (30, 30, 200)
    left, right = np.array([[10, 10, 90, 190]], np.float32), np.array([[110, 10, 190, 190]], np.float32)
    poses = _poses(np.concatenate([left, right, left]))
    d = limb_colours(image, poses)
    dist = appearance_distance(d, d)
    assert dist[0, 2] == pytest.approx(0.0, abs=1e-6) and dist[0, 1] == 1.0
    unsure = poses.select(np.array([0]))
    unsure.keypoint_scores[:] = 0.1  # no joint confident enough: undecided
    assert appearance_distance(limb_colours(image, unsure), d)[0, 1] == 0.5
    merged = update_appearance(d[0], d[1], momentum=0.8)
    np.testing.assert_allclose(merged[:, :3], 0.8 * d[0, :, :3] + 0.2 * d[1, :, :3], atol=1e-6)


def test_identity_switches_split_by_visibility() -> None:
    from posekit.evaluation.mot import identity_switches

    box = [0, 0, 10, 20]
    persons = {"A": [[t, *box] for t in [0, 1, 2, 3, 6, 7]]}  # not labelled (not visible) in frames 4-5

    def results(ids: list[int]) -> list[dict]:
        return [{"image_id": t + 1, "bbox": [0, 0, 10, 20], "track_id": i} for t, i in zip([0, 1, 2, 3, 6, 7], ids)]

    assert identity_switches(persons, results([1, 1, 1, 1, 1, 1])) == {"visible": [], "after_gap": []}
    assert identity_switches(persons, results([1, 1, 2, 2, 3, 3])) == {"visible": [("A", 2, 1, 2)], "after_gap": [("A", 6, 2, 3)]}
    # unmatched in frame 1 (track box elsewhere), still visible: a switch at frame 2 counts as visible
    moved = results([1, 9, 2, 2, 2, 2])
    moved[1]["bbox"] = [50, 50, 10, 20]
    assert identity_switches(persons, moved)["visible"] == [("A", 2, 1, 2)]


def test_camera_motion_finds_a_pan_and_ignores_people_moving_before_a_still_camera() -> None:
    from posekit.tracking.camera_motion import CameraMotion

    rng = np.random.default_rng(0)
    scene = cv2.GaussianBlur(rng.integers(0, 255, (400, 600), np.uint8), (5, 5), 0)
    camera = CameraMotion(width=600)
    camera(scene[50:290, 50:450])
    pan = camera(scene[53:293, 45:445])  # the view moves 5 px left and 3 px down: the scene 5 px right and 3 px up
    np.testing.assert_allclose(pan, [[1, 0, 5], [0, 1, -3]], atol=0.3)
    # still camera, a textured person moving 8 px right: masked by its box, the motion found is none
    still, camera = scene[50:290, 50:450].copy(), CameraMotion(width=600)
    person = rng.integers(0, 255, (120, 60), np.uint8)
    for x in (100, 108):
        frame = still.copy()
        frame[60:180, x : x + 60] = person
        motion = camera(frame, np.array([[x, 60, x + 60, 180]], np.float32))
    np.testing.assert_allclose(motion, np.eye(2, 3), atol=0.3)


def test_kalman_warp_moves_the_prediction_with_the_camera() -> None:
    kf = BoxKalman(np.array([100, 100, 150, 200], np.float32))
    kf.warp(np.array([[1.0, 0.0, -20.0], [0.0, 1.0, 5.0]]))
    np.testing.assert_allclose(kf.predict(), [80, 105, 130, 205], atol=1e-4)
    kf.warp(np.array([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0]]))  # zoom: centre and size double
    np.testing.assert_allclose(kf.predict(), [160, 210, 260, 410], atol=1e-3)


def test_a_track_lost_for_a_frame_never_takes_the_person_beside_it_by_appearance() -> None:
    """The gate of stage 1 is the Kalman prediction's: a track unseen for a frame cannot jump 1.5 body widths to a
    newcomer whose embedding looks like it (test_video_structuralize: the girl took the boy's id; the old gate
    was 1.5 box sizes). Embeddings are made identical so that only the gate can tell."""
    emb = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]], np.float32)  # a (and c), and b far away for the centring
    a, c, b = (np.array(x, np.float32) for x in ([0, 20, 60, 200], [90, 20, 150, 200], [900, 20, 960, 200]))
    tracker, ids = PoseTracker(TrackerOptions(embedding_warmup=0)), []
    for t in range(14):
        boxes = [b, a] if t < 10 else [b, c]  # a leaves at 10 as c comes in beside where a was
        ids.append(tracker.update(_poses(np.stack(boxes)), emb[[1, 0]]).track_ids.tolist())
    assert ids[10][1] != ids[9][1] and all(i[1] == ids[10][1] for i in ids[10:])


def test_a_lost_track_never_takes_the_pose_of_a_visible_track_whose_box_changed_shape() -> None:
    """b hides behind a; a's box then changes shape so the fusion fails. a's pose lies inside a's own gate: it
    goes on to the IoU pass (a keeps it) instead of to b's lost track by appearance, as it did on
    test_video_structuralize (both persons' embeddings alike, made identical here)."""
    emb = np.array([[1.0, 0.0, 1.0], [1.0, 0.0, 1.0], [0.0, 1.0, 1.0]], np.float32)  # a, b, and d far away
    a, b, d = (np.array(x, np.float32) for x in ([100, 20, 160, 200], [130, 20, 190, 200], [900, 20, 960, 200]))
    grown = _poses(np.array([d, [100, 20, 170, 250]], np.float32))
    grown.keypoints[1, :, 1] = np.linspace(20, 90, 17)  # a large pose distance to a's last pose
    tracker = PoseTracker(TrackerOptions(embedding_warmup=0))
    for t in range(12):
        boxes = [d, a, b] if t < 10 else [d, a]  # b hidden behind a from frame 10
        out = tracker.update(_poses(np.stack(boxes)), emb[[2, 0, 1]][: len(boxes)])
    assert tracker.update(grown, emb[[2, 0]]).track_ids[1] == out.track_ids[1]


def test_a_pose_whose_box_changed_shape_continues_its_track() -> None:
    """Legs found again: the box grows from 80 to 120 px tall, the fusion cost passes 0.9, the IoU stays >= 0.5."""
    grown = _poses(np.array([[100, 100, 145, 220]], np.float32))
    grown.keypoints[0, :, 1] = np.linspace(100, 140, 17)  # the keypoints no longer span the box: a large pose distance
    for options, kept in ((TrackerOptions(), True), (TrackerOptions(iou_pass_all=False), False)):
        tracker = PoseTracker(options)
        ids = [tracker.update(_poses(np.array([[100, 100, 140, 180]], np.float32))).track_ids[0] for _ in range(6)]
        assert bool(tracker.update(grown).track_ids[0] == ids[0]) is kept


def test_a_pose_whose_confident_joints_lie_on_one_row_is_tracked() -> None:
    """A whole-image model's box is the extent of its confident joints; when those lie on one row (here eyes,
    ears and nose at one height, as `simple-small` gave on assets/demo.jpg), the box must still have an area,
    or the tracker has no IoU to link the person by and starts a new track every frame."""
    xy = np.stack([np.linspace(232, 287, 17), np.linspace(132, 260, 17)], -1)[None].astype(np.float32)
    xy[0, :5, 1] = 132.0  # the face on one row
    kp_scores = np.full((1, 17), 0.05, np.float32)
    kp_scores[0, :5] = 0.5
    poses = poses_from_keypoints(xy, kp_scores, np.array([0.8], np.float32), "coco17", np.array(COCO17.sigmas))
    x1, y1, x2, y2 = poses.boxes[0]
    assert x2 > x1 and y2 > y1
    tracker = PoseTracker(TrackerOptions(embedding_warmup=10**9, camera_motion=False))
    ids = [int(tracker.update(poses).track_ids[0]) for _ in range(6)]
    assert ids == [ids[0]] * 6 and len(tracker.tracks) == 1
