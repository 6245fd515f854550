"""A staged frame pipeline in the shape of AlphaPose §5.1: read -> detect -> crop -> pose -> track -> write.

Concurrent mode runs each stage in its own thread, joined by bounded queues: memory stays flat (at most
`queue_size` frames wait between two stages) and the slowest stage sets the pace. Threads, not
processes: every heavy step (video decode, OpenCV warps, torch kernels) releases the GIL, the models are
loaded once and frames are handed over without copies; on the 2-core dev machine the threaded pipeline
is faster than the same stages run one after another (benchmarks/bench_video.py, README), and a process
per stage would only add model copies and frame pickling on top of the same two cores.

Shutdown: an error in any stage, or Ctrl-C, sets a stop flag that every thread checks while it waits on
a queue; the caller's sink has received every frame completed before the stop, so outputs written by
the sink are valid up to the last frame processed.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

_END = object()


@dataclass
class Stage:
    name: str
    fn: Callable[[Any], Any]
    workers: int = 1  # >1: items of this stage are processed in parallel (order restored downstream)


@dataclass
class StageTimes:
    """Busy seconds and item counts per stage (the source's time is the reader's)."""

    seconds: dict[str, float] = field(default_factory=dict)
    items: dict[str, int] = field(default_factory=dict)
    wall: float = 0.0

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds
        self.items[name] = self.items.get(name, 0) + 1

    def line(self) -> str:
        parts = [f"{k} {1000 * v / max(self.items[k], 1):.1f}" for k, v in self.seconds.items()]
        return "ms/frame: " + ", ".join(parts)


class PipelineError(RuntimeError):
    pass


def _timed_source(source: Iterable[Any], times: StageTimes) -> Iterator[Any]:
    it = iter(source)
    while True:
        start = time.perf_counter()
        try:
            item = next(it)
        except StopIteration:
            return
        times.add("read", time.perf_counter() - start)
        yield item


def run_sequential(source: Iterable[Any], stages: list[Stage], sink: Callable[[Any], None]) -> StageTimes:
    """The same stages one after another in this thread (the baseline the concurrent mode must beat)."""
    times = StageTimes()
    start = time.perf_counter()
    for item in _timed_source(source, times):
        for stage in stages:
            t0 = time.perf_counter()
            item = stage.fn(item)
            times.add(stage.name, time.perf_counter() - t0)
        t0 = time.perf_counter()
        sink(item)
        times.add("write", time.perf_counter() - t0)
    times.wall = time.perf_counter() - start
    return times


class _Reorder:
    """Restores source order for a single consumer of a stage that may finish items out of order."""

    def __init__(self) -> None:
        self.pending: dict[int, Any] = {}
        self.next = 0

    def push(self, seq: int, item: Any) -> Iterator[tuple[int, Any]]:
        """Every (seq, item) that is now next in order."""
        self.pending[seq] = item
        while self.next in self.pending:
            seq = self.next
            self.next += 1
            yield seq, self.pending.pop(seq)


def run_concurrent(source: Iterable[Any], stages: list[Stage], sink: Callable[[Any], None], queue_size: int = 4) -> StageTimes:
    """Reader and stages in threads (`Stage.workers` threads each), the sink in the calling thread, which
    receives items in source order; returns per-stage busy times."""
    times = StageTimes()
    stop = threading.Event()
    errors: list[BaseException] = []
    lock = threading.Lock()
    queues = [queue.Queue(maxsize=queue_size) for _ in range(len(stages) + 1)]
    upstream_done = [threading.Event() for _ in range(len(stages) + 1)]  # the END of queue i was taken

    def put(q: queue.Queue, item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def get(i: int) -> Any:
        while not stop.is_set():
            try:
                item = queues[i].get(timeout=0.1)
            except queue.Empty:
                if upstream_done[i].is_set():
                    return _END
                continue
            if item is _END:
                upstream_done[i].set()
            return item
        return _END

    def reader() -> None:
        try:
            for seq, item in enumerate(_timed_source(source, times)):
                if not put(queues[0], (seq, item)):
                    return
        except BaseException as e:  # noqa: BLE001 - reported to the caller
            errors.append(e)
            stop.set()
        finally:
            put(queues[0], _END)

    live = [stage.workers for stage in stages]

    def worker(i: int, stage: Stage) -> None:
        reorder = _Reorder() if stage.workers == 1 else None
        try:
            while True:
                got = get(i)
                if got is _END:
                    break
                for seq, item in reorder.push(*got) if reorder else [got]:
                    t0 = time.perf_counter()
                    out = stage.fn(item)
                    with lock:
                        times.add(stage.name, time.perf_counter() - t0)
                    if not put(queues[i + 1], (seq, out)):
                        return
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
            stop.set()
        finally:
            with lock:
                live[i] -= 1
                last = live[i] == 0
            if last:
                put(queues[i + 1], _END)

    threads = [threading.Thread(target=reader, name="posekit-read", daemon=True)]
    for i, stage in enumerate(stages):
        for w in range(stage.workers):
            threads.append(threading.Thread(target=worker, args=(i, stage), name=f"posekit-{stage.name}-{w}", daemon=True))
    start = time.perf_counter()
    for t in threads:
        t.start()
    reorder = _Reorder()
    try:
        while True:
            got = get(len(stages))
            if got is _END:
                break
            for _, item in reorder.push(*got):
                t0 = time.perf_counter()
                sink(item)
                times.add("write", time.perf_counter() - t0)
    except BaseException:
        stop.set()
        raise
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
        times.wall = time.perf_counter() - start
    if errors:
        raise PipelineError(f"pipeline stage failed: {type(errors[0]).__name__}: {errors[0]}") from errors[0]
    return times
