"""The running pipeline: capture threads → dispatcher → inference workers → capture order → publish thread.

Stages hand over through latest-frame-wins slots, so a slow stage makes the one
before it drop stale frames of live cameras (counted per camera) instead of
building a backlog; file sources wait instead. Each camera's capture thread
prepares the model input (resize + quantize), so the dispatcher only copies the
tensor into a free input slot of whichever worker has room (edged/service/lanes.py)
— it takes a camera's frame only when there is room for it, so frames that
cannot run yet stay in their slot and are replaced by newer ones; a live
camera's frame that waits in a worker's slot and has not started is replaced
in place. Results come back on each worker's reader thread and are released to
the publish thread in capture order per camera (edged/service/ordering.py). The
camera that waited longest goes next. Every frame carries its timestamps:
captured (source), inference start and end (stamped in the worker), published
(`published_at`, stamped by the publisher).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from edged.detect.preprocess import prepare
from edged.detect.worker import WorkerResult
from edged.service.capture import CaptureLoop
from edged.service.handoff import LatestSlots
from edged.service.inference import Inference
from edged.service.ordering import CaptureOrder, Entry
from edged.service.stats import PipelineStats
from edged.sources.base import Backoff, Source
from edged.types import Frame

log = logging.getLogger(__name__)

Outcome = tuple[WorkerResult, str, str]  # result, backend, model


@dataclass(frozen=True)
class CameraRun:
    """One camera as the pipeline needs it: an opened source, its fps cap, resize mode, snapshot picture."""

    source: Source
    fps: float
    resize: Literal["stretch", "letterbox"]
    keep_image: bool = True  # False: drop the full picture once the model input is made (no snapshots)


@dataclass(frozen=True)
class FedCamera:
    """A camera whose frames another pipeline hands over (`offer`) instead of a capture thread of this one:
    a segmenter beside the detector. Treated as live: a newer frame replaces one not yet taken."""

    name: str
    resize: Literal["stretch", "letterbox"]


class FramePublisher(Protocol):
    def __call__(self, frame: Frame, result: WorkerResult, backend: str, model: str) -> None: ...


class Pipeline:
    def __init__(self, cameras: list[CameraRun], inference: Inference, publish: FramePublisher, *,
                 stats: PipelineStats, alive: Callable[[], object] = lambda: None,
                 reconnect: tuple[float, float] = (0.5, 30.0), fed: Sequence[FedCamera] = (),
                 requests: Callable[[Frame], bytes | None] | None = None) -> None:
        """`requests`: what goes with each frame's job to the hosted model (a second stage's CropPlan)."""
        self.inference = inference
        self.stats = stats
        self._publish = publish
        self._alive = alive  # called when a frame completed the pipeline: the systemd watchdog
        self._frames: LatestSlots[Frame] = LatestSlots(on_drop=lambda camera, _: stats.add_dropped(camera))
        self._live = {run.source.camera: run.source.live for run in cameras} | {c.name: True for c in fed}
        self._requests = requests
        self._order: CaptureOrder[Outcome] = CaptureOrder(self._live, on_drop=stats.add_dropped)
        self._stop_capture = threading.Event()
        self._stop_dispatch = threading.Event()
        self._abandon = threading.Event()  # stop gave up waiting for the jobs in flight
        self._holding = False  # the dispatcher holds a file frame until a worker has room
        self._resize = {run.source.camera: run.resize for run in cameras} | {c.name: c.resize for c in fed}
        self._keep_image = {run.source.camera: run.keep_image for run in cameras} | dict.fromkeys(
            (c.name for c in fed), True)
        self.captures = [
            CaptureLoop(run.source, fps=run.fps, slots=self._frames, prepare=self._prepare,
                        model_size=self._model_size, stats=stats, backoff=Backoff(*reconnect),
                        stop=self._stop_capture, alive=alive, idle=self.idle)
            for run in cameras
        ]
        self._dispatch_thread = threading.Thread(target=self._dispatch_loop, name="dispatch", daemon=True)
        self._publish_thread = threading.Thread(target=self._publish_loop, name="publish", daemon=True)
        self.dispatched = 0  # frames handed to a worker (and not replaced there by a newer one)
        self.replaced = 0  # live frames replaced in a worker's slot by a newer one before they started
        self.frames_lost = 0  # frames lost in flight to a failing worker

    def offer(self, frame: Frame) -> None:
        """A fed camera's frame (with its full picture; the model input is made here): latest wins."""
        self._frames.put(frame.source, frame)

    def idle(self) -> bool:
        """No frame waiting for or inside inference or publishing."""
        return not self._holding and len(self._frames) == 0 and len(self._order) == 0

    def health(self) -> str | None:
        """None while every thread this pipeline owns runs (and its workers are supervised), else why not."""
        if self._stop_capture.is_set():
            return None
        for thread in (self._dispatch_thread, self._publish_thread):
            if thread.ident is not None and not thread.is_alive():
                return f"{thread.name} thread died"
        dead = next((c.camera for c in self.captures if c.ident is not None and not c.is_alive()), None)
        if dead is not None:
            return f"capture thread of camera {dead} died"
        return self.inference.health()

    def _model_size(self) -> tuple[int, int]:
        info = self.inference.info
        return (info.input_spec.width, info.input_spec.height) if info else (300, 300)

    def _prepare(self, frame: Frame) -> None:
        """Model input for the current workers: picamera2's ISP-scaled lores frame, else the full image."""
        info = self.inference.info
        if info is None:
            return
        spec = info.input_spec
        if frame.tensor is not None and frame.tensor.shape[:2] == (spec.height, spec.width):
            frame.tensor, frame.geometry = prepare(frame.tensor, spec, "stretch")
        elif frame.image is not None:
            frame.tensor, frame.geometry = prepare(frame.image, spec, self._resize[frame.source])
        if not self._keep_image[frame.source]:
            frame.image = None

    def start(self) -> None:
        self.inference.attach(self)
        for capture in self.captures:
            capture.start()
        self._dispatch_thread.start()
        self._publish_thread.start()

    # -- what the workers' reader threads report (edged/service/lanes.py ResultSink) -------------------------
    def completed(self, tag: object, result: WorkerResult, backend: str, model: str) -> None:
        assert isinstance(tag, Entry)
        self._order.complete(tag, (result, backend, model))

    def lost(self, tag: object, why: str) -> None:
        assert isinstance(tag, Entry)
        if self._order.lose(tag):
            self.frames_lost += 1
            self.stats.add_dropped(tag.frame.source)

    def room(self) -> None:
        self._frames.wake()

    # -- dispatcher ------------------------------------------------------------------------------------------
    def _has_room(self, camera: str) -> bool:
        live = self._live[camera]
        if not live and self._order.ready_count(camera) >= 2:
            return False  # a file camera waits for the publisher instead of piling up results
        return self.inference.has_room(camera, live)

    def _dispatch_loop(self) -> None:
        while not self._stop_dispatch.is_set():
            taken = self._frames.take(timeout=0.2, accept=self._has_room)
            if taken is None:
                continue
            camera, frame = taken
            info = self.inference.info
            wanted = (info.input_spec.height, info.input_spec.width) if info else None
            if wanted and (frame.tensor is None or frame.tensor.shape[:2] != wanted):
                self._prepare(frame)  # prepared for workers with another input size (switched meanwhile)
            if frame.tensor is None:
                continue
            self._holding = True
            while not self._dispatch(camera, frame):
                if self._live[camera]:
                    self._frames.put_back(camera, frame)  # dropped if a newer one came meanwhile
                    break
                # a file frame is never dropped: wait for room (a worker restarting, say)
                self._frames.wait_until(lambda: self.inference.has_room(camera, False)
                                        or self._stop_dispatch.is_set(), 0.2)
                if self._stop_dispatch.is_set():
                    break
            self._holding = False

    def _dispatch(self, camera: str, frame: Frame) -> bool:
        assert frame.tensor is not None
        entry: Entry[Outcome] = self._order.add(frame)
        request = self._requests(frame) if self._requests is not None else None
        placement = self.inference.place(frame.tensor, frame.geometry, seq=frame.seq, tag=entry,
                                         stream=camera, live=self._live[camera], request=request)
        if not placement.placed:
            self._order.withdraw(entry)
            return False
        if isinstance(placement.replaced, Entry):  # a newer frame took the place of one that had not started
            self._order.withdraw(placement.replaced)
            self.stats.add_dropped(camera)
            self.replaced += 1
        else:
            self.dispatched += 1
        return True

    # -- publisher -------------------------------------------------------------------------------------------
    def _publish_loop(self) -> None:
        while True:
            taken = self._order.take(timeout=0.2)
            if taken is None:
                if self._abandon.is_set() or (not self._dispatch_thread.is_alive() and len(self._order) == 0
                                              and self._stop_dispatch.is_set()):
                    return
                continue
            frame, (result, backend, model) = taken
            if not self._live[frame.source]:
                self._frames.wake()  # a file camera held back for its backlog may go on
            try:
                self._publish(frame, result, backend, model)
            except Exception:  # a publishing bug must not stop detection; it is logged with its traceback
                log.exception("camera %s: publishing frame %d failed", frame.source, frame.seq)
                continue
            self.stats.record(frame.source, result.inference_ms, time.monotonic_ns(), worker=result.worker,
                              backend=backend, busy_ns=result.invoked_ns - result.started_ns)
            self._alive()

    def stop(self, timeout: float = 4.0) -> None:
        """Stop capture, let the frames in flight finish and be published, then return."""
        deadline = time.monotonic() + timeout
        self._stop_capture.set()
        self._stop_dispatch.set()
        self._frames.close()
        if self._dispatch_thread.is_alive():
            self._dispatch_thread.join(max(0.1, deadline - time.monotonic()))
        if not self._order.wait_settled(max(0.1, deadline - time.monotonic())):
            log.warning("stopping with %d frame(s) still in inference", self._order.in_flight())
            self._abandon.set()
        if self._publish_thread.is_alive():
            self._publish_thread.join(max(0.1, deadline - time.monotonic()))
        self._abandon.set()
        self.inference.detach(self)
        for capture in self.captures:
            capture.join(max(0.0, min(0.5, deadline - time.monotonic())))
            if not capture.is_alive():
                capture.source.close()  # a thread stuck in a blocking read keeps its source; exit frees it
