"""The tracking stage as the daemon runs it: one CameraTracker per camera, between inference and publishing.

Called from the publish callback (runtime.start_runtime), so each camera's
frames reach its tracker in capture order whatever the inference pipeline
does (recording runs right after it and gets `recorded_tracks`). Two things
the config implies are decided here:
- with tracking on, the detector reports down to `[tracking] low_score` (the
  tracker's second stage needs the dips), and down to `[record] uncertain_min`
  for cameras recording `uncertain` frames, while `…/detections` and the
  per-label counts still only carry what passes `detector.threshold`;
- zone and tracking label filters, and the label a second stage classifies,
  must name labels of the model: a typo would
  otherwise silently never match (ConfigError with the key path, exit 78).
"""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import msgspec

from edged.config import Config
from edged.detect.catalog import find_model
from edged.detect.labels import read_labels
from edged.detect.settings import DetectorSettings
from edged.errors import ConfigError, EdgedError
from edged.record.policy import TrackUpdate as RecordedTrack
from edged.track.events import CameraTracker, TrackUpdate
from edged.types import Detection, Frame


def detector_settings(config: Config) -> DetectorSettings:
    """The detector as the daemon runs it: its threshold lowered to the trackers' low_score, and to the
    uncertain band's low end of cameras recording `uncertain` frames, if needed."""
    tracked = [config.tracking_for(camera.name) for camera in config.cameras]
    lows = [settings.low_score for settings in tracked if settings.enabled]
    recorded = [config.record_for(camera.name) for camera in config.cameras]
    lows += [settings.uncertain_min for settings in recorded
             if settings.enabled and "uncertain" in settings.policies]
    if not lows or min(lows) >= config.detector.threshold:
        return config.detector
    return msgspec.structs.replace(config.detector, threshold=min(lows))


def model_labels(settings: DetectorSettings) -> list[str] | None:
    """The model's labels, or None when they cannot be read here (the detector then says why at start)."""
    try:
        if settings.labels_file:
            return read_labels(Path(settings.labels_file))
        return read_labels(find_model(settings.model).labels())
    except (EdgedError, OSError, KeyError, ValueError):
        return None


def check_labels(config: Config) -> None:
    """Every label a tracking or zone filter names exists in the model (ConfigError naming the key)."""
    filters = [("tracking.labels", config.tracking.labels)]
    for i, camera in enumerate(config.cameras):
        filters.append((f"cameras[{i}].tracking.labels", config.tracking_for(camera.name).labels))
        filters += [(f"cameras[{i}].zones[{j}].labels", zone.labels) for j, zone in enumerate(camera.zones)]
        filters += [(f"cameras[{i}].classify[{j}].label", [entry.label])
                    for j, entry in enumerate(camera.classify)]
    refuse_unknown_labels(config, filters)


def refuse_unknown_labels(config: Config, filters: list[tuple[str, list[str]]]) -> None:
    """ConfigError naming the first (key path, label) whose label the model does not have; nothing when
    the model's labels cannot be read here (the detector then says why at start)."""
    labels = model_labels(config.detector)
    if labels is None:
        return
    known = set(labels)
    for where, wanted in filters:
        unknown = [label for label in wanted if label not in known]
        if unknown:
            raise ConfigError(f"{where}: unknown label {unknown[0]!r}: the model {config.detector.model} "
                              "has no such label (`edged models list` names its labels file)")


def recorded_tracks(detections: list[Detection], update: TrackUpdate) -> list[RecordedTrack]:
    """What recording's `new_object` policy needs of this frame, per detection (index into `detections`) a
    track matched now: its event id (`…/events` `id`: unique across restarts), first frame, best so far."""
    index = {id(d): i for i, d in enumerate(detections)}
    new = {event.track_id for event in update.events if event.type == "new"}
    best = {shot.track_id for shot in update.best_shots}
    return [RecordedTrack(index[id(o.detection)], o.event_id, o.track_id in new, o.track_id in best)
            for o in update.objects if o.seen_now and id(o.detection) in index]


def captions(detections: list[Detection], update: TrackUpdate) -> list[str]:
    """Snapshot captions: "person #3 82%" for detections a confirmed track matched, "person 82%" else."""
    ids = {id(o.detection): o.track_id for o in update.objects if o.detection is not None and o.seen_now}
    return [f"{d.label} #{ids[id(d)]} {d.score:.0%}" if id(d) in ids else f"{d.label} {d.score:.0%}"
            for d in detections]


class Tracking:
    """Per-camera trackers; `update` from the publish thread, `close` from the daemon when stopping."""

    def __init__(self, config: Config) -> None:
        self.threshold = config.detector.threshold
        self._trackers = {camera.name: CameraTracker(config.tracking_for(camera.name), camera.zones)
                          for camera in config.cameras if config.tracking_for(camera.name).enabled}
        self._lock = threading.Lock()
        self._closed = False

    def __bool__(self) -> bool:
        return bool(self._trackers)

    def update(self, frame: Frame, detections: list[Detection]) -> TrackUpdate | None:
        tracker = self._trackers.get(frame.source)
        if tracker is None:
            return None
        with self._lock:
            if self._closed:
                return None
            return tracker.update(frame.captured_ns / 1e9, frame.captured_at, detections)

    def reported(self, detections: list[Detection]) -> list[Detection]:
        """What `…/detections` carries: only what passes the configured detector threshold."""
        return [d for d in detections if d.score >= self.threshold]

    def close(self, reason: str) -> dict[str, TrackUpdate]:
        """End every open event; per camera the ends and the zone counts back at 0."""
        with self._lock:
            self._closed = True
            return {camera: TrackUpdate([], tracker.close(reason), [],
                                        {zone.name: Counter() for zone in tracker.zones})
                    for camera, tracker in self._trackers.items()}
