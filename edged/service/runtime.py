"""Building and tearing down what one configuration runs: publisher, inference workers, sources, pipeline.

Kept apart from the run loop so a SIGHUP reload can build the parts of a new
configuration next to the running ones and keep the old ones when the new
ones do not come up. Order at start matters for systemd: the model is loaded
first (picamera2 needs its input size for the lores stream), then every source
is opened — each in its own thread, so a stream that takes its whole timeout
to answer delays neither the others nor a SIGTERM (`cancel`) — and only then
is the service READY. `Runtime.health` is what the daemon's main loop asks
every second: None while every stage runs, else why not.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from edged import __version__
from edged.config import CameraConfig, Config
from edged.detect.worker import WorkerResult
from edged.errors import UnavailableError
from edged.publish.publisher import Publisher
from edged.service.inference import Inference
from edged.service.pipeline import CameraRun, Pipeline
from edged.service.recording import Recording
from edged.service.stages import (SecondStages, Segments, detects, start_segments, subclass_counts,
                                  worker_opener)
from edged.service.stats import PipelineStats
from edged.service.tracking import Tracking, captions, detector_settings
from edged.sources.base import FrameNumbers, Source, SourceError
from edged.sources.factory import create_source
from edged.types import Frame

log = logging.getLogger(__name__)


class StartCancelled(Exception):
    """A stop was requested while the sources were opening: nothing is left running, exit cleanly."""


def make_publisher(config: Config, *, run_id: str = "") -> Publisher:
    """Checks broker URLs, TLS files, credentials and camera names (ConfigError) before anything is sent."""
    return Publisher(config.mqtt, config.publish, device_id=config.device_id, version=__version__,
                     cameras=[camera.name for camera in config.cameras], run_id=run_id,
                     subclass_counts=subclass_counts(config))


def make_sources(config: Config, numbers: dict[str, FrameNumbers]) -> list[Source]:
    """The configured cameras' sources, continuing each camera's frame numbers from `numbers`."""
    max_pixels = int(config.service.max_image_megapixels * 1e6)
    return [create_source(c.name, c.source, width=c.width, height=c.height,
                          fps=c.fps if isinstance(c.fps, float) else 0.0, snapshot=c.snapshot,
                          timeout_seconds=c.timeout_seconds, max_pixels=max_pixels,
                          numbers=numbers.setdefault(c.name, FrameNumbers())) for c in config.cameras]


def open_sources(sources: list[Source], model_size: tuple[int, int], cancel: threading.Event) -> None:
    """Open every source, in parallel; a camera that cannot be opened at start is UnavailableError (exit 69),
    and `cancel` set meanwhile is StartCancelled (the openers still blocked are left to the process exit)."""
    problems: dict[int, str] = {}

    def open_one(index: int, source: Source) -> None:
        try:
            source.open(model_size)
        except SourceError as exc:
            problems[index] = str(exc)
        except Exception as exc:  # a library failing in its own way is still a camera that did not open
            problems[index] = f"{type(exc).__name__}: {exc}"

    openers = [threading.Thread(target=open_one, args=(index, source), name=f"open-{source.camera}",
                                daemon=True) for index, source in enumerate(sources)]
    for opener in openers:
        opener.start()
    for opener in openers:
        while opener.is_alive():
            if cancel.wait(0.05):
                raise StartCancelled()
    if problems:
        for index, source in enumerate(sources):
            if index not in problems:
                source.close()
        index = min(problems)
        raise UnavailableError(f"camera {sources[index].camera}: cannot open {sources[index].uri}: "
                               f"{problems[index]}")
    for source in sources:
        log.info("camera %s: %s open", source.camera, source.uri, extra={"CAMERA": source.camera})


def frame_timeout(config: Config, watchdog_seconds: float) -> float:
    """A hung worker must be replaced before systemd's watchdog gives up on the whole daemon: the last
    ping may be half a WatchdogSec old when the hang starts, and the replacement needs time to load."""
    timeout = config.service.frame_timeout_seconds
    return min(timeout, watchdog_seconds / 3) if watchdog_seconds > 0 else timeout


def fps_cap(camera: CameraConfig, source: Source) -> float:
    return source.default_fps() if camera.fps == "auto" else float(camera.fps)


@dataclass
class Runtime:
    """The running parts of one configuration."""

    config: Config
    publisher: Publisher
    inference: Inference
    pipeline: Pipeline
    stats: PipelineStats
    tracking: Tracking
    recording: Recording
    second: SecondStages | None = None  # the cameras' second stages ([[cameras.classify]])
    segments: Segments = field(default_factory=lambda: Segments([], {}, {}))  # the segmenter cameras

    def end_events(self, reason: str) -> None:
        """Close every open event (edged stopping, configuration replaced): ends and zone counts at 0 are
        published. Call after the pipeline stopped, before the publisher does."""
        for camera, update in self.tracking.close(reason).items():
            subclasses = self.second.subclasses(camera) if self.second is not None else None
            self.publisher.publish_tracking(camera, None, update, subclasses)

    @property
    def model(self) -> str:
        info = self.inference.info
        return info.model if info else ""

    def health(self) -> str | None:
        """None while every stage runs; else one line saying which one does not (the daemon exits 70)."""
        publisher_health = getattr(self.publisher, "health", None)  # arrives with the MQTT work
        for check in (self.pipeline.health, self.segments.health, publisher_health):
            if check is not None and (problem := check()) is not None:
                return problem
        return None

    def status_line(self) -> str:
        """systemd's STATUS=: one line a person reads in `systemctl status edged`."""
        snap = self.stats.snapshot()
        cameras = ", ".join(f"{name} {c.source_state}" for name, c in snap.cameras.items())
        state = self.inference.state
        line = (f"{state} · {self.inference.backend} · {snap.fps:.1f} fps · inference p50 "
                f"{snap.inference_p50_ms:.1f} ms · {cameras} · {self.publisher.link}")
        if state == "degraded" and self.inference.reason:
            line += f" · {self.inference.reason}"
        if (recording := self.recording.status()) is not None:
            line += f" · {recording}"
        return line


def start_runtime(config: Config, *, alive: Callable[[], object],
                  publisher: Publisher | None = None, inference: Inference | None = None,
                  watchdog_seconds: float = 0.0, on_change: Callable[[], None] = lambda: None,
                  numbers: dict[str, FrameNumbers] | None = None,
                  cancel: threading.Event | None = None, recording: Recording | None = None) -> Runtime:
    """Build and start everything `config` describes (reusing a running `publisher`, `inference` and
    `recording` when given); on failure nothing this call started is left running. `numbers`: frame
    numbers per camera to continue (the daemon's, kept across reloads); `cancel`: set by a stop request.
    The config has passed preflight.check_config (labels of tracking, zone and record filters included)."""
    publisher = publisher or make_publisher(config)
    sources = make_sources(config, {} if numbers is None else numbers)
    stats = PipelineStats(window_seconds=config.publish.stats_interval_seconds)
    reused = inference is not None
    if inference is None:
        opener, opener_args = worker_opener(config)
        inference = Inference(detector_settings(config),
                              frame_timeout=frame_timeout(config, watchdog_seconds),
                              cpu_standby=config.service.cpu_standby, on_change=on_change,
                              opener=opener, opener_args=opener_args)
        inference.start()
    info = inference.info
    try:
        open_sources(sources, (info.input_spec.width, info.input_spec.height) if info else (300, 300),
                     cancel or threading.Event())
    except BaseException:
        if not reused:
            inference.close()
        raise
    service = config.service
    reconnect = (service.reconnect_initial_seconds, service.reconnect_max_seconds)
    try:
        timeout = frame_timeout(config, watchdog_seconds)
        segments = start_segments(config, detector_settings(config), {s.camera: s for s in sources},
                                  publisher, frame_timeout=timeout, alive=alive, fps_cap=fps_cap,
                                  reconnect=reconnect)
    except BaseException:
        for source in sources:
            source.close()
        if not reused:
            inference.close()
        raise

    tracking = Tracking(config)
    recording = recording or Recording(config)
    second = SecondStages(config)

    def publish(frame: Frame, result: WorkerResult, backend: str, model: str) -> None:
        update = tracking.update(frame, result.detections)
        named = second.annotate(frame, result.detections, update)  # with the second stage's subclasses
        detections = tracking.reported(named)  # what passes the configured threshold
        shown = captions(tracking.reported(result.detections), update) if update is not None else None
        publisher.publish_frame(frame.source, frame, detections, inference_ms=result.inference_ms,
                                backend=backend, model=model, captions=shown)
        if update is not None:
            publisher.publish_tracking(frame.source, frame, update, second.subclasses(frame.source))
        recording.offer(frame, result.detections, update)  # the tracker's own objects: track ids match
        segments.offer(frame)

    runs = [CameraRun(source, fps_cap(camera, source),
                      config.detector.resize if camera.resize == "default" else camera.resize,
                      keep_image=camera.snapshot != "none" or recording.records(camera.name)
                      or camera.segment is not None)
            for camera, source in zip(config.cameras, sources) if detects(camera)]
    for run in runs:
        log.info("camera %s: %s, fps cap %s", run.source.camera, run.source.uri,
                 f"{run.fps:g}" if run.fps else "none")
    pipeline = Pipeline(runs, inference, publish, stats=stats, alive=alive, reconnect=reconnect,
                        requests=second.request)
    return Runtime(config, publisher, inference, pipeline, stats, tracking, recording, second, segments)
