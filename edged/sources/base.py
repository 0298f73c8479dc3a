"""What every frame producer implements, and the backoff a failing one is retried with.

A Source hands out RGB frames, blocking until the next one exists. It raises
SourceError for anything the capture loop should recover from (camera
unplugged, stream dropped, file unreadable, directory empty): the loop closes
the source, waits with exponential backoff and opens it again, while the daemon
keeps running and reports the camera as `reconnecting`.
"""

from __future__ import annotations

import itertools
import time
from abc import ABC, abstractmethod

import numpy as np

from edged.types import Frame, Geometry


class SourceError(Exception):
    """The source failed in a way that reopening it later may cure."""


class FrameNumbers:
    """One camera's frame numbers (`seq`, from 1). The daemon keeps them across source rebuilds (a SIGHUP
    reload) so a camera's `seq` never goes back while the process lives: subscribers de-duplicate by
    (device, camera, seq). Thread-safe: `itertools.count` advances atomically under the GIL."""

    def __init__(self) -> None:
        self._count = itertools.count(1)

    def next(self) -> int:
        return next(self._count)


class Source(ABC):
    """A camera, stream or set of files producing frames for one named camera."""

    #: Frames arrive at the device's own pace and go stale: a slow pipeline must drop
    #: them rather than hold them back. Files are not live: they wait for the pipeline.
    live: bool = True

    def __init__(self, camera: str, uri: str) -> None:
        self.camera = camera
        self.uri = uri
        self.numbers = FrameNumbers()  # replaced by the daemon's per-camera numbers (create_source)

    @abstractmethod
    def open(self, model_size: tuple[int, int]) -> None:
        """Start producing; `model_size` (width, height) lets a camera's ISP scale for the model."""

    @abstractmethod
    def read(self) -> Frame:
        """Block until the next frame; raise SourceError when the source failed."""

    @abstractmethod
    def close(self) -> None:
        """Release the device or file; safe to call twice and after a failed open."""

    def default_fps(self) -> float:
        """The frame-rate cap used when the camera's `fps` is "auto" (0: none)."""
        return 0.0

    def make_frame(self, image: np.ndarray | None, *, tensor: np.ndarray | None = None,
                   size: tuple[int, int] | None = None) -> Frame:
        """Stamp a captured picture with its sequence number and capture times."""
        if size is None:
            assert image is not None
            size = (image.shape[1], image.shape[0])
        return Frame(
            seq=self.numbers.next(),
            source=self.camera,
            width=size[0],
            height=size[1],
            captured_ns=time.monotonic_ns(),
            captured_at=time.time(),
            image=image,
            tensor=tensor,
            geometry=Geometry(),
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.camera!r}, {self.uri!r})"


class Backoff:
    """Exponential delays between reconnect attempts: initial, ×2 each failure, capped; reset on success."""

    def __init__(self, initial: float = 0.5, maximum: float = 30.0, factor: float = 2.0) -> None:
        if initial <= 0 or maximum < initial or factor < 1:
            raise ValueError("backoff needs 0 < initial <= maximum and factor >= 1")
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self._next = initial
        self.attempts = 0

    def next_delay(self) -> float:
        delay = self._next
        self._next = min(self.maximum, self._next * self.factor)
        self.attempts += 1
        return delay

    def reset(self) -> None:
        self._next = self.initial
        self.attempts = 0
