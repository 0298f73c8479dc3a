"""One thread per camera: read frames, cap the fps, prepare the model input, hand over; recover from failures.

A failing source (camera unplugged, stream dropped, directory emptied) is
closed and reopened with exponential backoff while the rest of the daemon
runs on; its state ("streaming" / "reconnecting") goes into the stats. While
it is retrying, the loop feeds the systemd watchdog: the daemon is healthy and
doing what it can, and a restart would not bring the camera back. A loop that
is stuck inside a read feeds nothing, so a silent hang still gets the service
restarted. The same holds for a camera capped at a low frame rate: while the
loop waits for its next frame and nothing is in the pipeline, it is idle by
design and says so, so `fps = 0.05` does not trip a 15 s watchdog.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from edged.service.handoff import LatestSlots
from edged.service.stats import PipelineStats
from edged.sources.base import Backoff, Source, SourceError
from edged.types import Frame

log = logging.getLogger(__name__)


class CaptureLoop(threading.Thread):
    """Runs `source` (already open) until `stop` is set."""

    def __init__(self, source: Source, *, fps: float, slots: LatestSlots[Frame],
                 prepare: Callable[[Frame], None], model_size: Callable[[], tuple[int, int]],
                 stats: PipelineStats, backoff: Backoff,
                 stop: threading.Event, alive: Callable[[], object] = lambda: None,
                 idle: Callable[[], bool] = lambda: False) -> None:
        super().__init__(name=f"capture-{source.camera}", daemon=True)
        self.source = source
        self.camera = source.camera
        self.interval = 1.0 / fps if fps > 0 else 0.0
        self._slots = slots
        self._prepare = prepare
        self._model_size = model_size
        self._stats = stats
        self._backoff = backoff
        self._halt = stop
        self._alive = alive
        self._idle = idle  # nothing in the pipeline: waiting for this loop is the only thing going on
        self.delays: deque[float] = deque(maxlen=32)  # the backoff delays waited, newest last
        self.frames = 0
        self.skipped = 0  # frames of live sources read but not forwarded because of the fps cap

    def run(self) -> None:
        self._stats.set_state(self.camera, "streaming")
        next_due = time.monotonic()
        while not self._halt.is_set():
            if not self.source.live and self.interval:
                if self._pace(next_due):
                    break
            try:
                frame = self.source.read()
            except SourceError as exc:
                self._recover(str(exc))
                continue
            except Exception as exc:  # a library raising something unexpected is still a failed source
                log.debug("camera %s: read raised", self.camera, exc_info=True)
                self._recover(f"{type(exc).__name__}: {exc}")
                continue
            now = time.monotonic()
            if self._backoff.attempts:
                self._backoff.reset()
            if self.interval and self.source.live and now < next_due:
                self.skipped += 1
                if self._idle():
                    self._alive()
                continue
            next_due = max(next_due + self.interval, now) if self.interval else 0.0
            self._prepare(frame)
            self.frames += 1
            if self.source.live:
                self._slots.put(self.camera, frame)
            elif not self._slots.put_wait(self.camera, frame, self._halt):
                break
        self._stats.set_state(self.camera, "stopped")

    def _pace(self, due: float) -> bool:
        """Wait for the fps cap's next slot, reporting progress while the pipeline is idle; True: stop."""
        while (left := due - time.monotonic()) > 0:
            if self._idle():
                self._alive()
            if self._halt.wait(min(left, 0.5)):
                return True
        return self._halt.is_set()

    def _recover(self, reason: str) -> None:
        """Close, wait (backoff), reopen — until it opens or the daemon stops."""
        self._stats.set_state(self.camera, "reconnecting")
        log.warning("camera %s: %s; reconnecting", self.camera, reason, extra={"CAMERA": self.camera})
        while not self._halt.is_set():
            self._close_quietly()
            delay = self._backoff.next_delay()
            self.delays.append(delay)
            log.info("camera %s: next attempt in %.1f s", self.camera, delay, extra={"CAMERA": self.camera})
            if self._wait_alive(delay):
                return
            try:
                self.source.open(self._model_size())
            except SourceError as exc:
                log.warning("camera %s: %s", self.camera, exc, extra={"CAMERA": self.camera})
                continue
            except Exception as exc:
                log.warning("camera %s: reopening failed: %s: %s", self.camera, type(exc).__name__, exc,
                            extra={"CAMERA": self.camera})
                continue
            log.info("camera %s: %s is back", self.camera, self.source.uri, extra={"CAMERA": self.camera})
            self._stats.set_state(self.camera, "streaming")
            return

    def _wait_alive(self, seconds: float) -> bool:
        """Sleep in short steps, feeding the watchdog; True if the daemon is stopping."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self._alive()
            if self._halt.wait(min(left, 0.5)):
                return True
        self._alive()
        return self._halt.is_set()

    def _close_quietly(self) -> None:
        try:
            self.source.close()
        except Exception as exc:  # closing a dead device may fail too; reopening is what matters
            log.debug("camera %s: close failed: %s", self.camera, exc)
