"""Report a track from its first frame once it is confirmed: frames are held `min_hits - 1` frames, so by
the time a frame leaves, every track in it that will be confirmed by consecutive matches has been."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

import numpy as np

from posekit.structures import Poses
from posekit.tracking.tracker import PoseTracker

T = TypeVar("T")


class ConfirmationDelay(Generic[T]):
    """A queue of items (frames) whose poses carry track uids; `push` returns the items released, their
    poses limited to confirmed tracks and labelled with reported ids. `flush` releases the rest."""

    def __init__(self, tracker: PoseTracker, get: Callable[[T], Poses | None], put: Callable[[T, Poses], None]) -> None:
        self.tracker, self.get, self.put = tracker, get, put
        self.lag = max(tracker.options.min_hits - 1, 0)
        self.held: deque[T] = deque()

    def push(self, item: T) -> list[T]:
        self.held.append(item)
        released = []
        # the lag counts frames with poses: a frame that could not be read brings no hit, so it must not
        # release an earlier frame before that frame's tracks could be confirmed (it goes out in order)
        while self.held and (self.get(self.held[0]) is None or sum(self.get(i) is not None for i in self.held) > self.lag):
            released.append(self._release(self.held.popleft(), False))
        return released

    def flush(self) -> list[T]:
        released = [self._release(item, True) for item in self.held]
        self.held.clear()
        return released

    def _release(self, item: T, end_of_stream: bool) -> T:
        poses = self.get(item)
        if poses is not None and poses.track_ids is not None:
            ids = np.array([self.tracker.reported_id(int(u), end_of_stream) or -1 for u in poses.track_ids], np.int64)
            keep = np.flatnonzero(ids > 0)
            kept = poses.select(keep)
            kept.track_ids = ids[keep]
            self.put(item, kept)
        return item
