"""The parent's side of the second stage, per camera: what to ask for with each frame, what each track
carries.

`plan` (dispatcher, when a frame goes to the worker) says which labels to
classify with which model, and — with tracking on — where the objects are that
were classified less than `interval_seconds` ago, so the worker skips them.
`annotate` (publish thread, after tracking) drops subclasses below
`min_score`, remembers each track's latest one, and puts it on every later
detection of that track: a bird keeps its species between classifications.
Frames in flight when a track was classified may ask for it once more; that
costs one crop, never a wrong answer.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import msgspec

from edged.classify.plan import CropPlan, CropRequest
from edged.classify.settings import ClassifySettings
from edged.track.events import TrackUpdate
from edged.types import Box, Detection, Subclass


@dataclass(frozen=True, slots=True)
class Classified:
    """A track's latest classification: its subclass (None: below min_score) and its capture time."""

    label: str
    subclass: Subclass | None
    at: float


class SecondStage:
    """One camera's classifiers: `plan` per frame sent, `annotate` per frame published (other threads)."""

    def __init__(self, settings: list[ClassifySettings], *, tracked: bool) -> None:
        self._settings = {entry.label: entry for entry in settings}
        self._tracked = tracked
        self._lock = threading.Lock()
        self._classified: dict[int, Classified] = {}  # track id → its latest classification
        self._boxes: dict[int, Box] = {}  # live track id → its latest box
        self._gone: dict[int, Classified] = {}  # tracks the latest frame ended: their `end` events need it

    @property
    def models(self) -> list[str]:
        return list(dict.fromkeys(entry.model for entry in self._settings.values()))

    def plan(self, width: int, height: int, now: float) -> CropPlan:
        """The second-stage work for a frame of this size captured at `now` (monotonic seconds)."""
        requests = []
        with self._lock:
            for label, entry in self._settings.items():
                skip = tuple(self._boxes[track] for track, known in self._classified.items()
                             if known.label == label and track in self._boxes
                             and now - known.at < entry.interval_seconds) if self._tracked else ()
                requests.append(CropRequest(entry.model, label, entry.margin, entry.min_crop_pixels,
                                            entry.max_per_frame, skip))
        return CropPlan(width, height, tuple(requests))

    def annotate(self, detections: list[Detection], update: TrackUpdate | None, now: float
                 ) -> list[Detection]:
        """The detections as published: fresh subclasses kept if they pass `min_score`, and each tracked
        object's latest subclass on its detection when this frame did not classify it."""
        passed = [self._passing(detection) for detection in detections]
        if update is None:
            return passed
        position = {id(detection): index for index, detection in enumerate(detections)}
        with self._lock:
            boxes = {}
            for tracked in update.objects:
                boxes[tracked.track_id] = tracked.box
                index = position.get(id(tracked.detection))
                if index is None or tracked.label not in self._settings:
                    continue
                if detections[index].subclass is not None:  # classified in this frame
                    fresh = passed[index].subclass
                    self._classified[tracked.track_id] = Classified(tracked.label, fresh, now)
                elif (known := self._classified.get(tracked.track_id)) and known.subclass is not None:
                    passed[index] = msgspec.structs.replace(passed[index], subclass=known.subclass)
            self._boxes = boxes
            self._gone = {track: known for track, known in self._classified.items() if track not in boxes}
            self._classified = {track: known for track, known in self._classified.items() if track in boxes}
        return passed

    def subclasses(self) -> dict[int, Subclass]:
        """Track id → its latest subclass, for the events of those tracks (and of those just ended)."""
        with self._lock:
            return {track: known.subclass for track, known in [*self._gone.items(), *self._classified.items()]
                    if known.subclass is not None}

    def _passing(self, detection: Detection) -> Detection:
        entry = self._settings.get(detection.label)
        if detection.subclass is None or (entry is not None and detection.subclass.score >= entry.min_score):
            return detection
        return msgspec.structs.replace(detection, subclass=None)
