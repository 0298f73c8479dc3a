"""Per camera: tracks → zones, stationary marking, best shots and the event state machine.

An event is one confirmed track's life: `new` once the track is confirmed,
`update` only when something a person cares about changed (zone entered or
left, stationary or not, best score up by `best_score_margin`) and at most
once per `update_interval_seconds` (changes in between are combined), `end`
when the track is gone for `lost_seconds` — or for every open event when
edged stops (`close`), with the reason. A track's label never changes (the
tracker keeps labels apart), so a person→cat flip is one event ending and
another starting. Event ids join the capture time and 32 random bits: unique
across restarts without any state on disk.
"""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from edged.track.settings import TrackingSettings, ZoneSettings
from edged.track.tracker import Track, Tracker
from edged.track.zones import Zone
from edged.types import Box, Detection

EventType = Literal["new", "update", "end"]
EDGE_MARGIN = 0.01  # a box this close to the picture's border is cut off: a poor snapshot
BEST_SHOT_GAIN = 1.05  # a new best shot must beat the kept one by 5 %: bounds the JPEG encodes per event


def new_event_id(wall_time: float) -> str:
    return f"{wall_time:.6f}-{secrets.token_hex(4)}"


@dataclass(frozen=True, slots=True)
class Event:
    """One message of an object's event; times are wall-clock seconds (the frames' capture times)."""

    type: EventType
    id: str
    track_id: int
    label: str
    score: float
    best_score: float
    box: Box
    zones: tuple[str, ...]
    entered_zones: tuple[str, ...]
    first_seen: float
    last_seen: float
    stationary: bool
    best_at: float | None
    changed: tuple[str, ...] = ()
    reason: str | None = None


@dataclass(slots=True, eq=False)
class Tracked:
    """The event side of one confirmed track."""

    track: Track
    event_id: str
    first_seen: float
    last_seen: float
    best_score: float = 0.0
    announced_best: float = 0.0
    best_quality: float = -1.0
    best_at: float | None = None
    zones: tuple[str, ...] = ()
    entered: list[str] = field(default_factory=list)
    stationary: bool = False
    still_box: Box | None = None  # where it settled; moving beyond tolerance resets it
    still_since: float = 0.0
    pending: set[str] = field(default_factory=set)
    updated_at: float = float("-inf")

    def event(self, kind: EventType, changed: tuple[str, ...] = (), reason: str | None = None) -> Event:
        track = self.track
        return Event(kind, self.event_id, track.id, track.label, round(track.score, 4),
                     round(self.best_score, 4), track.box, self.zones, tuple(self.entered), self.first_seen,
                     self.last_seen, self.stationary, self.best_at, changed, reason)


@dataclass(frozen=True, slots=True)
class TrackedObject:
    """A live, confirmed object as `edged watch`, annotations and snapshots show it."""

    track_id: int
    event_id: str
    label: str
    score: float
    box: Box
    zones: tuple[str, ...]
    stationary: bool
    seen_now: bool
    detection: Detection | None = None  # what it matched in this frame (snapshots caption it with the id)


@dataclass(slots=True)
class TrackUpdate:
    """What one frame produced: live objects, events in order, whose best shot this frame is, zone counts."""

    objects: list[TrackedObject]
    events: list[Event]
    best_shots: list[TrackedObject]
    zone_counts: dict[str, Counter]


def shot_quality(score: float, box: Box) -> float:
    """Score weighted by size (sqrt of the area: a big box wins, but not over a much better score);
    a box cut off by the picture's edge only wins when no whole view exists."""
    quality = score * box.area ** 0.5
    touching = (box.xmin < EDGE_MARGIN or box.ymin < EDGE_MARGIN or box.xmax > 1 - EDGE_MARGIN
                or box.ymax > 1 - EDGE_MARGIN)
    return quality * (0.1 if touching else 1.0)


class CameraTracker:
    """The tracking stage of one camera: `update(frame times, detections)` → TrackUpdate; `close(reason)`."""

    def __init__(self, settings: TrackingSettings, zones: list[ZoneSettings] | None = None, *,
                 new_id: Callable[[float], str] = new_event_id, tracker: Tracker | None = None) -> None:
        self.settings = settings
        self.zones = [Zone(zone) for zone in zones or []]
        self.tracker = tracker or Tracker(settings)
        self._new_id = new_id
        self._live: dict[int, Tracked] = {}  # by track id

    def update(self, monotonic: float, wall: float, detections: list[Detection]) -> TrackUpdate:
        """`monotonic` drives motion and timeouts, `wall` stamps events: both the frame's capture time."""
        step = self.tracker.update(monotonic, detections)
        events: list[Event] = []
        best_shots: list[TrackedObject] = []
        for track in step.confirmed:
            tracked = self._live[track.id] = Tracked(track, self._new_id(wall), wall, wall,
                                                     still_box=track.box, still_since=monotonic)
            self._observe(tracked, monotonic, wall, best_shots)
            tracked.pending.clear()
            tracked.announced_best = tracked.best_score
            tracked.updated_at = monotonic
            events.append(tracked.event("new"))
        confirmed_now = {track.id for track in step.confirmed}
        for tracked in self._live.values():
            if tracked.track.id in confirmed_now:
                continue
            if tracked.track.matched:
                self._observe(tracked, monotonic, wall, best_shots)
            if tracked.pending and monotonic - tracked.updated_at >= self.settings.update_interval_seconds:
                events.append(tracked.event("update", tuple(sorted(tracked.pending))))
                tracked.pending.clear()
                tracked.updated_at = monotonic
        for track, reason in step.removed:
            tracked = self._live.pop(track.id, None)
            if tracked is not None:
                events.append(tracked.event("end", reason=reason))
        return TrackUpdate(self.objects(), events, best_shots, self.zone_counts())

    def close(self, reason: str) -> list[Event]:
        """End every open event (edged stopping, configuration reloaded)."""
        self.tracker.close()
        events = [tracked.event("end", reason=reason) for tracked in self._live.values()]
        self._live.clear()
        return events

    def objects(self) -> list[TrackedObject]:
        return [TrackedObject(t.track.id, t.event_id, t.track.label, t.track.score, t.track.box, t.zones,
                              t.stationary, t.track.matched, t.track.detection) for t in self._live.values()]

    def zone_counts(self) -> dict[str, Counter]:
        counts: dict[str, Counter] = {zone.name: Counter() for zone in self.zones}
        for tracked in self._live.values():
            for name in tracked.zones:
                counts[name][tracked.track.label] += 1
        return counts

    def _observe(self, tracked: Tracked, monotonic: float, wall: float,
                 best_shots: list[TrackedObject]) -> None:
        """A matched frame: last seen, stationary, zones, best score and best shot."""
        track, settings = tracked.track, self.settings
        tracked.last_seen = wall
        self._settle(tracked, monotonic)
        if not tracked.stationary:
            zones = tuple(zone.name for zone in self.zones
                          if zone.contains(track.label, tracked.best_score, track.box))
            if zones != tracked.zones:
                tracked.entered.extend(name for name in zones if name not in tracked.entered)
                tracked.pending.add("zones")
                tracked.zones = zones
        tracked.best_score = max(tracked.best_score, track.score)
        better = tracked.best_score >= tracked.announced_best + settings.best_score_margin
        if better and not tracked.stationary:
            tracked.pending.add("best_score")
            tracked.announced_best = tracked.best_score
        quality = shot_quality(track.score, track.box)
        if quality > tracked.best_quality * BEST_SHOT_GAIN:
            tracked.best_quality = quality
            tracked.best_at = wall
            best_shots.append(TrackedObject(track.id, tracked.event_id, track.label, track.score, track.box,
                                            tracked.zones, tracked.stationary, True))

    def _settle(self, tracked: Tracked, monotonic: float) -> None:
        """Stationary once the centre stayed within tolerance of where it settled for stationary_seconds."""
        box, still = tracked.track.box, tracked.still_box
        size = max(box.area, 1e-9) ** 0.5
        moved = still is None or (abs((box.xmin + box.xmax - still.xmin - still.xmax) / 2)
                                  + abs((box.ymin + box.ymax - still.ymin - still.ymax) / 2)
                                  > self.settings.stationary_tolerance * size)
        if moved:
            tracked.still_box, tracked.still_since = box, monotonic
            if tracked.stationary:
                tracked.stationary = False
                tracked.pending.add("stationary")
        elif not tracked.stationary and monotonic - tracked.still_since >= self.settings.stationary_seconds:
            tracked.stationary = True
            tracked.pending.add("stationary")
