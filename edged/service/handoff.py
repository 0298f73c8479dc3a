"""Latest-frame-wins hand-off between pipeline stages: one slot per camera, never a backlog.

A live camera keeps producing whether or not inference keeps up; queueing its
frames would only add latency. So each camera has one slot: a new frame
replaces an unconsumed one (the replaced frame is reported as dropped), and
the consumer takes whichever camera has waited longest, so a fast camera
cannot starve a slow one. File sources, which have no pace of their own, wait
for their slot to empty instead of dropping (`put_wait`). The consumer can
take only the cameras it has room for right now (`take(accept=…)`), so a
camera whose frames wait for the workers keeps being replaced by newer ones
here instead of going stale in the consumer's hands; `wake` makes it look
again when its room changed.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class LatestSlots(Generic[T]):
    """Per-key single-item slots guarded by one condition variable."""

    def __init__(self, on_drop: Callable[[str, T], None] | None = None) -> None:
        self._slots: OrderedDict[str, T] = OrderedDict()
        self._cond = threading.Condition()
        self._on_drop = on_drop
        self._closed = False

    def put(self, key: str, item: T) -> bool:
        """Store `item`, replacing (dropping) what the consumer has not taken yet; True if one was dropped."""
        with self._cond:
            replaced = self._slots.get(key)
            had = key in self._slots
            self._slots[key] = item  # an existing key keeps its place in the waiting order
            self._cond.notify_all()
        if had and self._on_drop is not None:
            self._on_drop(key, replaced)  # type: ignore[arg-type]
        return had

    def put_wait(self, key: str, item: T, stop: threading.Event, poll: float = 0.2) -> bool:
        """Store `item` once the key's slot is empty (no drop); False if `stop` was set or closed first."""
        with self._cond:
            while key in self._slots:
                if stop.is_set() or self._closed:
                    return False
                self._cond.wait(poll)
            if self._closed:
                return False
            self._slots[key] = item
            self._cond.notify_all()
        return True

    def put_back(self, key: str, item: T) -> bool:
        """Return a taken item to the front of the waiting order; dropped (False) if a newer one came."""
        with self._cond:
            newer = key in self._slots or self._closed
            if not newer:
                self._slots[key] = item
                self._slots.move_to_end(key, last=False)
                self._cond.notify_all()
        if newer and self._on_drop is not None:
            self._on_drop(key, item)
        return not newer

    def take(self, timeout: float | None = None, accept: Callable[[str], bool] | None = None
             ) -> tuple[str, T] | None:
        """The item of the key that has waited longest (among those `accept` takes), or None after
        `timeout` or when closed and nothing acceptable is left."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                key = next((k for k in self._slots if accept is None or accept(k)), None)
                if key is not None:
                    item = self._slots.pop(key)
                    self._cond.notify_all()
                    return key, item
                remaining = None if deadline is None else deadline - time.monotonic()
                if self._closed or (remaining is not None and remaining <= 0):
                    return None
                self._cond.wait(remaining)

    def wait_until(self, ready: Callable[[], bool], timeout: float) -> bool:
        """Block until `ready()` (re-checked at every put, take and `wake`), or `timeout`, or closed."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not ready():
                remaining = deadline - time.monotonic()
                if self._closed or remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def wake(self) -> None:
        """The consumer's room changed: let a waiting `take` look at the slots again."""
        with self._cond:
            self._cond.notify_all()

    def close(self) -> None:
        """Wake every waiter; `put_wait` then refuses and `take` drains what is left."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._slots)
