"""The recording stage as the daemon runs it: one Recorder for every recording camera, right after tracking.

Called from the publish callback (runtime.start_runtime) after tracking, so
`new_object` gets the tracker's word on each detection (service/tracking.py
`recorded_tracks`). What the config implies is decided here:
- a camera recording `uncertain` frames needs detections below the publish
  threshold: `tracking.detector_settings` lowers the detector's threshold to
  the band's low end, as it does for tracking's low_score, and published
  detections stay filtered at `detector.threshold`. The stored annotations of
  a camera keep what scores at least min(threshold, uncertain_min) of its own
  settings: a recording camera without `uncertain` stores what is published;
- labels in `[record] labels` (and per camera) must be labels of the model,
  else the allow-list would silently never match (ConfigError, exit 78);
- one Recorder lives as long as `[record]`, the per-camera overrides and the
  model stay the same, across SIGHUP reloads (its interval timers and its
  first/best frames per object go on); any change there replaces it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from edged.config import Config
from edged.record.stats import RecordStats
from edged.service.tracking import model_labels, recorded_tracks, refuse_unknown_labels
from edged.track.events import TrackUpdate
from edged.types import Detection, Frame

if TYPE_CHECKING:
    from edged.record.recorder import Recorder

log = logging.getLogger(__name__)


def recording_key(config: Config) -> tuple[Any, ...]:
    """What the running Recorder depends on: equal keys, the same Recorder serves both configurations."""
    cameras = {camera.name: msgspec.to_builtins(camera.record) for camera in config.cameras}
    detector = config.detector
    return (msgspec.to_builtins(config.record), cameras, detector.model, detector.labels_file,
            detector.threshold)


def check_record_labels(config: Config) -> None:
    """Every label a recording allow-list names exists in the model (ConfigError naming the key)."""
    filters = [("record.labels", config.record.labels)]
    filters += [(f"cameras[{i}].record.labels", camera.record.labels or [])
                for i, camera in enumerate(config.cameras)]
    refuse_unknown_labels(config, filters)


class Recording:
    """The daemon's Recorder (none when no camera records): `offer` from the publish thread, `close` at
    stop."""

    def __init__(self, config: Config) -> None:
        from edged.record.recorder import Recorder  # numpy, Pillow: only when the daemon runs

        self.key = recording_key(config)
        settings = {camera.name: config.record_for(camera.name) for camera in config.cameras}
        threshold = config.detector.threshold
        self._floors = {name: min(threshold, s.uncertain_min) if "uncertain" in s.policies else threshold
                        for name, s in settings.items() if s.enabled}
        self.recorder: Recorder | None = None
        if not self._floors:
            return
        self.recorder = Recorder(config.record, model=config.detector.model,
                                 labels=model_labels(config.detector) or [],
                                 cameras={camera.name: camera.record for camera in config.cameras})
        for name, s in settings.items():
            if s.enabled and "new_object" in s.policies and not config.tracking_for(name).enabled:
                log.warning("camera %s: recording policy new_object keeps nothing: tracking is off for it",
                            name, extra={"CAMERA": name})
        log.info("recording camera(s) %s into %s", ", ".join(self._floors), self.recorder.root)

    def __bool__(self) -> bool:
        return self.recorder is not None

    def records(self, camera: str) -> bool:
        """Whether this camera's frames must keep their full picture until offered."""
        return camera in self._floors

    def serves(self, config: Config) -> bool:
        return recording_key(config) == self.key

    def offer(self, frame: Frame, detections: Sequence[Detection], update: TrackUpdate | None) -> None:
        """The frame, what the detector reported (down to its lowered threshold), the tracker's word."""
        floor = self._floors.get(frame.source)
        if self.recorder is None or floor is None:
            return
        kept = [d for d in detections if d.score >= floor]
        tracks = recorded_tracks(kept, update) if update is not None else None
        self.recorder.offer(frame, kept, tracks)

    def stats(self) -> RecordStats | None:
        return self.recorder.stats() if self.recorder is not None else None

    def status(self) -> str | None:
        """For systemd's STATUS= line: how many frames were saved, or that recording stopped."""
        stats = self.stats()
        if stats is None:
            return None
        return "recording stopped" if stats.stopped else f"recorded {stats.saved}"

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued (up to about `timeout`), then stop; a second call does nothing."""
        recorder, self.recorder = self.recorder, None
        if recorder is not None:
            recorder.close(timeout)
