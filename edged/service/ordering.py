"""Frames in flight, released to the publisher in capture order per camera.

With several jobs in flight (two slots per worker, several workers), a frame
can finish before an older frame of the same camera. Whatever runs after
inference (the publisher, a tracker) needs each camera's results in capture
order, so every frame is registered here when it is handed to a worker and
released only once every older frame of its camera has finished or been lost;
lost frames are simply absent. Released results wait for the publisher in one
queue; a live camera whose results pile up there (the publisher is slower than
inference) loses its oldest ones, a file camera is instead held back by the
dispatcher (`ready_count`).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

from edged.types import Frame

T = TypeVar("T")

_LOST = object()


class Entry(Generic[T]):
    """One frame in flight; `outcome` is set when its result arrives (or it is lost)."""

    __slots__ = ("frame", "outcome")

    def __init__(self, frame: Frame) -> None:
        self.frame = frame
        self.outcome: object = None


class CaptureOrder(Generic[T]):
    """Per-camera order of frames in flight, and the queue of results ready to publish."""

    def __init__(self, live: dict[str, bool], *, on_drop: Callable[[str], None], backlog: int = 4) -> None:
        self._live = live
        self._on_drop = on_drop  # a live camera's ready result replaced by newer ones before it was published
        self._backlog = backlog
        self._cond = threading.Condition()
        self._flight: dict[str, deque[Entry[T]]] = {camera: deque() for camera in live}
        self._ready: deque[tuple[Frame, T]] = deque()
        self._ready_per_camera: dict[str, int] = dict.fromkeys(live, 0)

    def add(self, frame: Frame) -> Entry[T]:
        """Register a frame about to be handed to a worker (newer than any registered frame of its camera)."""
        entry: Entry[T] = Entry(frame)
        with self._cond:
            self._flight[frame.source].append(entry)
        return entry

    def complete(self, entry: Entry[T], outcome: T) -> bool:
        """Its result arrived; False for a frame this order does not hold (of a pipeline since replaced)."""
        return self._settle(entry, outcome)

    def lose(self, entry: Entry[T]) -> bool:
        """The frame's worker failed: it is never published; younger frames need not wait for it."""
        return self._settle(entry, _LOST)

    def _settle(self, entry: Entry[T], outcome: object) -> bool:
        with self._cond:
            queue = self._flight.get(entry.frame.source)
            if queue is None or entry not in queue:
                return False
            entry.outcome = outcome
            self._release(entry.frame.source)
            return True

    def withdraw(self, entry: Entry[T]) -> None:
        """The frame did not stay with a worker (replaced by a newer one, or no room after all)."""
        with self._cond:
            queue = self._flight[entry.frame.source]
            if entry in queue:
                queue.remove(entry)
                self._release(entry.frame.source)

    def _release(self, camera: str) -> None:
        queue = self._flight[camera]
        released = False
        while queue and queue[0].outcome is not None:
            entry = queue.popleft()
            if entry.outcome is _LOST:
                continue
            if self._live[camera] and self._ready_per_camera[camera] >= self._backlog:
                self._drop_oldest_ready(camera)
            self._ready.append((entry.frame, entry.outcome))  # type: ignore[arg-type]
            self._ready_per_camera[camera] += 1
            released = True
        if released or not queue:
            self._cond.notify_all()

    def _drop_oldest_ready(self, camera: str) -> None:
        for index, (frame, _) in enumerate(self._ready):
            if frame.source == camera:
                del self._ready[index]
                self._ready_per_camera[camera] -= 1
                self._on_drop(camera)
                return

    def take(self, timeout: float) -> tuple[Frame, T] | None:
        """The next result to publish, or None after `timeout`."""
        with self._cond:
            if not self._ready:
                self._cond.wait(timeout)
            if not self._ready:
                return None
            frame, outcome = self._ready.popleft()
            self._ready_per_camera[frame.source] -= 1
            return frame, outcome

    def ready_count(self, camera: str) -> int:
        with self._cond:
            return self._ready_per_camera[camera]

    def in_flight(self) -> int:
        with self._cond:
            return sum(len(queue) for queue in self._flight.values())

    def __len__(self) -> int:
        """Frames registered and not yet taken by the publisher."""
        with self._cond:
            return sum(len(queue) for queue in self._flight.values()) + len(self._ready)

    def wait_settled(self, timeout: float) -> bool:
        """Wait until no frame is in flight (every one finished or lost); False after `timeout`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while any(self._flight.values()):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True
