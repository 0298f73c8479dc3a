"""The running pipeline: capture threads → one inference thread → one publish thread.

Stages run concurrently and hand over through latest-frame-wins slots, so a
slow stage makes the one before it drop stale frames of live cameras (counted
per camera) instead of building a backlog; file sources wait instead. Each
camera's capture thread also prepares the model input (resize + quantize) so
the inference thread only copies the tensor into the worker's shared memory
and waits. Several cameras share the one worker; the camera that waited
longest goes next. Every frame carries its timestamps: captured (source),
inference start and end (stamped in the worker), published (`published_at`,
stamped by the publisher).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from edged.detect.preprocess import prepare
from edged.detect.worker import WorkerResult
from edged.service.capture import CaptureLoop
from edged.service.handoff import LatestSlots
from edged.service.inference import Inference
from edged.service.stats import PipelineStats
from edged.sources.base import Backoff, Source
from edged.types import Frame

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CameraRun:
    """One camera as the pipeline needs it: an opened source, its fps cap, resize mode, snapshot picture."""

    source: Source
    fps: float
    resize: Literal["stretch", "letterbox"]
    keep_image: bool = True  # False: drop the full picture once the model input is made (no snapshots)


class FramePublisher(Protocol):
    def __call__(self, frame: Frame, result: WorkerResult, backend: str, model: str) -> None: ...


class Pipeline:
    def __init__(self, cameras: list[CameraRun], inference: Inference, publish: FramePublisher, *,
                 stats: PipelineStats, alive: Callable[[], object] = lambda: None,
                 reconnect: tuple[float, float] = (0.5, 30.0)) -> None:
        self.inference = inference
        self.stats = stats
        self._publish = publish
        self._alive = alive  # called when a frame completed the pipeline: the systemd watchdog
        self._frames: LatestSlots[Frame] = LatestSlots(on_drop=lambda camera, _: stats.add_dropped(camera))
        self._results: LatestSlots[tuple[Frame, WorkerResult, str, str]] = LatestSlots(
            on_drop=self._result_dropped)
        self._stop_capture = threading.Event()
        self._stop_inference = threading.Event()
        self._resize = {run.source.camera: run.resize for run in cameras}
        self._keep_image = {run.source.camera: run.keep_image for run in cameras}
        self._live = {run.source.camera: run.source.live for run in cameras}
        self._never = threading.Event()  # file results wait for the publisher, however long it takes
        self._busy = 0  # frames taken by inference and not yet published or lost
        self._busy_lock = threading.Lock()
        self.captures = [
            CaptureLoop(run.source, fps=run.fps, slots=self._frames, prepare=self._prepare,
                        model_size=self._model_size, stats=stats, backoff=Backoff(*reconnect),
                        stop=self._stop_capture, alive=alive, idle=self.idle)
            for run in cameras
        ]
        self._inference_thread = threading.Thread(target=self._infer_loop, name="inference", daemon=True)
        self._publish_thread = threading.Thread(target=self._publish_loop, name="publish", daemon=True)
        self.lost = 0  # frames lost in flight to a failing worker

    def idle(self) -> bool:
        """No frame waiting for or inside inference or publishing."""
        with self._busy_lock:
            return self._busy == 0 and len(self._frames) == 0

    def health(self) -> str | None:
        """None while every thread of this pipeline runs (or it was stopped); else which one died."""
        if self._stop_capture.is_set():
            return None
        threads = [self._inference_thread, self._publish_thread, *self.captures]
        dead = next((thread for thread in threads if thread.ident and not thread.is_alive()), None)
        return None if dead is None else f"thread {dead.name} died"

    def _done(self) -> None:
        with self._busy_lock:
            self._busy -= 1

    def _result_dropped(self, camera: str, _item: object) -> None:
        self.stats.add_dropped(camera)
        self._done()

    def _model_size(self) -> tuple[int, int]:
        info = self.inference.info
        return (info.input_spec.width, info.input_spec.height) if info else (300, 300)

    def _prepare(self, frame: Frame) -> None:
        """Model input for the current worker: picamera2's ISP-scaled lores frame, else the full image."""
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
        for capture in self.captures:
            capture.start()
        self._inference_thread.start()
        self._publish_thread.start()

    def _infer_loop(self) -> None:
        while not self._stop_inference.is_set():
            taken = self._frames.take(timeout=0.2)
            if taken is None:
                continue
            camera, frame = taken
            with self._busy_lock:
                self._busy += 1
            info = self.inference.info
            wanted = (info.input_spec.height, info.input_spec.width) if info else None
            if wanted and (frame.tensor is None or frame.tensor.shape[:2] != wanted):
                self._prepare(frame)  # prepared for a worker with another input size (switched meanwhile)
            if frame.tensor is None:
                self._done()
                continue
            result = self.inference.infer(frame.tensor, frame.geometry, seq=frame.seq)
            if result is None:
                self.lost += 1
                self.stats.add_dropped(camera)
                self._done()
                continue
            backend, model = (info.backend, info.model) if info else ("", "")
            if self._live[camera]:
                self._results.put(camera, (frame, result, backend, model))
            else:  # files are not live: no stage drops their frames
                self._results.put_wait(camera, (frame, result, backend, model), self._never)

    def _publish_loop(self) -> None:
        while True:
            taken = self._results.take(timeout=0.2)
            if taken is None:
                if not self._inference_thread.is_alive():
                    return
                continue
            camera, (frame, result, backend, model) = taken
            try:
                self._publish(frame, result, backend, model)
            except Exception:  # a publishing bug must not stop detection; it is logged with its traceback
                log.exception("camera %s: publishing frame %d failed", camera, frame.seq)
                self._done()
                continue
            self.stats.record(camera, result.inference_ms, time.monotonic_ns())
            self._done()
            self._alive()

    def stop(self, timeout: float = 4.0) -> None:
        """Stop capture, let the frame in flight finish and be published, then return."""
        deadline = time.monotonic() + timeout
        self._stop_capture.set()
        self._frames.close()
        self._stop_inference.set()
        for thread in (self._inference_thread, self._publish_thread):
            if thread.is_alive():
                thread.join(max(0.1, deadline - time.monotonic()))
        for capture in self.captures:
            capture.join(max(0.0, min(0.5, deadline - time.monotonic())))
            if not capture.is_alive():
                capture.source.close()  # a thread stuck in a blocking read keeps its source; exit frees it
