"""The model zoo in the daemon: a second stage on the detector's worker, and the segmenter cameras.

- The detector's workers host the classifiers every `[[cameras.classify]]`
  names (`worker_opener`); each frame's job carries its camera's CropPlan
  (`SecondStages.request`), and after tracking `annotate` puts each track's
  latest subclass on its detections (edged/classify/stage.py).
- Segmenter cameras get a pipeline of their own per segmenter model, with a
  worker hosting the segmenter (same backends and protocol, result kind
  `class_map`): cameras with `detect = false` capture into it directly (fps cap
  1/interval_seconds), the others hand it a frame of the detector's pipeline
  when one is due (`Segments.offer`). The class map becomes shares, coverage
  and an overlay in the publish thread of that pipeline.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from edged.classify.plan import encode_plan
from edged.classify.stage import SecondStage
from edged.config import CameraConfig, Config
from edged.detect.settings import DetectorSettings
from edged.detect.worker import DEFAULT_OPENER, WorkerResult
from edged.publish.publisher import Publisher
from edged.segment.stage import SegmentStage
from edged.service.inference import Inference
from edged.service.pipeline import CameraRun, FedCamera, Pipeline
from edged.service.stats import PipelineStats
from edged.sources.base import Source
from edged.track.events import TrackUpdate
from edged.types import Detection, Frame, Subclass

log = logging.getLogger(__name__)

CLASSIFY_OPENER = "edged.classify.hosted:open_detector_with_classifiers"
SEGMENT_OPENER = "edged.segment.hosted:open_segmenter"


def worker_opener(config: Config) -> tuple[str, tuple]:
    """What the detector's workers host: the detector, with every classifier a camera's second stage names."""
    models = tuple(dict.fromkeys(entry.model for camera in config.cameras for entry in camera.classify))
    return (CLASSIFY_OPENER, (models,)) if models else (DEFAULT_OPENER, ())


def subclass_counts(config: Config) -> dict[str, list[str]]:
    """Camera → the labels whose subclasses are counted (the publisher's retained counts)."""
    return {camera.name: [entry.label for entry in camera.classify if entry.counts_by_subclass]
            for camera in config.cameras if any(entry.counts_by_subclass for entry in camera.classify)}


def detects(camera: CameraConfig) -> bool:
    return camera.segment is None or camera.segment.detect


class SecondStages:
    """Every camera's second stage; `request` from the dispatcher, the rest from the publish thread."""

    def __init__(self, config: Config) -> None:
        self._stages = {camera.name: SecondStage(camera.classify,
                                                 tracked=config.tracking_for(camera.name).enabled)
                        for camera in config.cameras if camera.classify}

    def request(self, frame: Frame) -> bytes | None:
        stage = self._stages.get(frame.source)
        if stage is None:
            return None
        return encode_plan(stage.plan(frame.width, frame.height, frame.captured_ns / 1e9))

    def annotate(self, frame: Frame, detections: list[Detection], update: TrackUpdate | None
                 ) -> list[Detection]:
        stage = self._stages.get(frame.source)
        return detections if stage is None else stage.annotate(detections, update, frame.captured_ns / 1e9)

    def subclasses(self, camera: str) -> Mapping[int, Subclass]:
        stage = self._stages.get(camera)
        return {} if stage is None else stage.subclasses()


@dataclass
class SegmentRun:
    """One segmenter model's worker(s) and pipeline."""

    model: str
    inference: Inference
    pipeline: Pipeline | None  # None until built, after the model loaded


class Segments:
    """The segmenter cameras of one configuration: start, offer, stop and close with the detector's parts."""

    def __init__(self, runs: list[SegmentRun], stages: dict[str, SegmentStage],
                 beside: dict[str, SegmentRun]) -> None:
        self.runs = runs
        self._stages = stages
        self._beside = beside

    def offer(self, frame: Frame) -> None:
        """A detector camera's frame, from its publish thread: handed over when a segmentation is due."""
        run = self._beside.get(frame.source)
        if run is None or run.pipeline is None or frame.image is None:
            return
        if self._stages[frame.source].due(frame.captured_ns / 1e9):
            run.pipeline.offer(dataclasses.replace(frame, tensor=None))

    def _pipelines(self) -> list[Pipeline]:
        return [run.pipeline for run in self.runs if run.pipeline is not None]

    def start(self) -> None:
        for pipeline in self._pipelines():
            pipeline.start()

    def stop(self, timeout: float = 2.0) -> None:
        for pipeline in self._pipelines():
            pipeline.stop(timeout=timeout)

    def close(self) -> None:
        for run in self.runs:
            run.inference.close()

    def health(self) -> str | None:
        return next((f"segmenter {run.model}: {problem}" for run in self.runs if run.pipeline is not None
                     and (problem := run.pipeline.health()) is not None), None)


def start_segments(config: Config, settings: DetectorSettings, sources: dict[str, Source],
                   publisher: Publisher, *, frame_timeout: float, alive: Callable[[], object],
                   fps_cap: Callable[[CameraConfig, Source], float], reconnect: tuple[float, float]
                   ) -> Segments:
    """Load each segmenter model in its worker(s) (on the backend and device of `settings`) and build its
    pipeline, not started; `sources`: the opened sources of the segmenter-only cameras."""
    stages = {camera.name: SegmentStage(camera.segment, camera.zones) for camera in config.cameras
              if camera.segment is not None}
    runs: list[SegmentRun] = []
    beside: dict[str, SegmentRun] = {}
    try:
        for model in dict.fromkeys(stage.settings.model for stage in stages.values()):
            mine = [camera for camera in config.cameras
                    if camera.name in stages and stages[camera.name].settings.model == model]
            inference = Inference(settings, frame_timeout=frame_timeout, cpu_standby=False,
                                  opener=SEGMENT_OPENER, opener_args=(model,))
            runs.append(SegmentRun(model, inference, None))
            inference.start()
            resize = {camera.name: config.detector.resize if camera.resize == "default" else camera.resize
                      for camera in mine}
            captured = [CameraRun(source, segment_fps(camera, fps_cap(camera, source)), resize[camera.name])
                        for camera in mine if not detects(camera) for source in [sources[camera.name]]]
            fed = [FedCamera(camera.name, resize[camera.name]) for camera in mine if detects(camera)]
            stats = PipelineStats(window_seconds=config.publish.stats_interval_seconds)
            runs[-1].pipeline = Pipeline(captured, inference, _publisher(stages, publisher), stats=stats,
                                         alive=alive, reconnect=reconnect, fed=fed)
            beside.update({camera.name: runs[-1] for camera in mine if detects(camera)})
            log.info("segmenter %s for camera(s) %s", model, ", ".join(camera.name for camera in mine))
    except BaseException:
        for run in runs:
            run.inference.close()
        raise
    return Segments(runs, stages, beside)


def segment_fps(camera: CameraConfig, cap: float) -> float:
    """A segmenter-only camera's frame-rate cap: one frame per `interval_seconds`, and its own cap."""
    assert camera.segment is not None
    interval = camera.segment.interval_seconds
    if interval <= 0:
        return cap
    return min(cap, 1.0 / interval) if cap > 0 else 1.0 / interval


def _publisher(stages: dict[str, SegmentStage], publisher: Publisher) -> Callable[..., None]:
    def publish(frame: Frame, result: WorkerResult, backend: str, model: str) -> None:
        stage = stages[frame.source]
        segmented = stage.measure(frame, result.output, inference_ms=result.inference_ms, backend=backend,
                                  model=model)
        publisher.publish_segments(frame.source, frame, segmented, min_change=stage.settings.min_change,
                                   snapshot=stage.settings.snapshot)
    return publish
