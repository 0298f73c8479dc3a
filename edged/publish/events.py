"""The MQTT side of tracking: events, best snapshots, zone occupancy and their Home Assistant entities.

The tracker (edged/track) says what happened; this module says it on the
broker, beside the Publisher that owns the connection:
- `…/<camera>/events` (QoS ≥ 1, not retained, no expiry: a late `end` still
  matters) carries every new / update / end in order;
- `…/<camera>/events/snapshot` (retained JPEG, the event id in the MQTT 5 user
  properties) the event's best picture, when it ends (and on `new` if asked),
  sent before the `end` itself so a subscriber reacting to `end` finds it;
- `…/<camera>/zones/<zone>` (retained `true`/`false`) and
  `…/<camera>/zones/<zone>/<label>` (retained count): sent on change and again
  on every connect, like the per-label counts.
Memory on a 1 GB Pi: the best picture is kept as an annotated JPEG, one per
live event (so at most `[tracking] max_tracks` per camera), never as a frame.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from edged.errors import ConfigError
from edged.publish.homeassistant import Announcer
from edged.publish.payloads import EventPayload, encode, iso_utc
from edged.publish.settings import EventsSettings
from edged.publish.topics import Topics
from edged.track.events import Event, TrackedObject, TrackUpdate
from edged.types import Box, Detection, Frame, Subclass

log = logging.getLogger("edged.mqtt")


class Send(Protocol):
    def __call__(self, topic: str, payload: bytes, *, retain: bool, kind: str | None,
                 content_type: str = "application/json", user: tuple[tuple[str, str], ...] = ()) -> None: ...


@dataclass(frozen=True, slots=True)
class Shot:
    jpeg: bytes
    taken_at: float  # wall-clock capture time of the frame


class EventPublisher:
    """Publishes tracking results of every camera; thread-safe (publish thread and paho's on_connect)."""

    def __init__(self, settings: EventsSettings, topics: Topics, *, device_id: str, send: Send,
                 announcer: Announcer | None = None, initial_labels: list[str] | None = None) -> None:
        self.settings = settings
        self.topics = topics
        self.device_id = device_id
        self._send = send
        self._announcer = announcer
        self._initial_labels = initial_labels or []  # labels whose zone counts are published from 0
        self._lock = threading.Lock()
        self._shots: dict[str, Shot] = {}  # event id → best picture so far
        self._occupied: dict[tuple[str, str], bool] = {}
        self._counts: dict[tuple[str, str, str], int] = {}
        self._to_jpeg: Callable | None = None
        self._save_warned = False
        if settings.save_dir:
            try:
                Path(settings.save_dir).mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(f"publish.events.save_dir {settings.save_dir}: cannot create it "
                                  f"({exc.strerror})") from None

    def publish(self, camera: str, update: TrackUpdate, frame: Frame | None, *, connected: bool,
                subclasses: Mapping[int, Subclass] | None = None) -> None:
        """One frame's tracking results (frame None: edged stopping, only ends and zone counts);
        `subclasses`: track id → the second stage's latest subclass for it."""
        subclasses = subclasses or {}
        if frame is not None and frame.image is not None and self.settings.snapshots:
            for shot in update.best_shots:
                self._keep_shot(shot, frame)
        for event in update.events:
            if event.type == "end":
                self._finish(camera, event, subclasses.get(event.track_id))
            else:
                self._send_event(camera, event, subclasses.get(event.track_id))
                if event.type == "new" and self.settings.snapshot_on_new:
                    self._send_shot(camera, event.id)
        changes = self._zone_changes(camera, update)
        if connected:
            for topic, payload, kind in changes:
                self._send(topic, payload, retain=True, kind=kind)
            if self._announcer is not None:
                zones = {zone: list(counts) for zone, counts in update.zone_counts.items()}
                self._announcer.send(self._announcer.new_tracking_entities(camera, zones))

    def state_messages(self) -> list[tuple[str, bytes, str]]:
        """Every retained zone value (topic, payload, schema kind), for a (re)connect."""
        with self._lock:
            flags = [(self.topics.occupied(camera, zone), _flag(value), "occupied")
                     for (camera, zone), value in self._occupied.items()]
            counts = [(self.topics.zone_count(camera, zone, label), str(count).encode(), "count")
                      for (camera, zone, label), count in self._counts.items()]
        return flags + counts

    def _zone_changes(self, camera: str, update: TrackUpdate) -> list[tuple[str, bytes, str]]:
        changes = []
        with self._lock:
            for zone, counts in update.zone_counts.items():
                occupied = sum(counts.values()) > 0
                if self._occupied.get((camera, zone)) != occupied:
                    self._occupied[(camera, zone)] = occupied
                    changes.append((self.topics.occupied(camera, zone), _flag(occupied), "occupied"))
                known = {label for (c, z, label) in self._counts if (c, z) == (camera, zone)}
                for label in dict.fromkeys([*self._initial_labels, *known, *counts]):
                    if self._counts.get((camera, zone, label)) != counts.get(label, 0):
                        self._counts[(camera, zone, label)] = counts.get(label, 0)
                        changes.append((self.topics.zone_count(camera, zone, label),
                                        str(counts.get(label, 0)).encode(), "count"))
        return changes

    def _send_event(self, camera: str, event: Event, subclass: Subclass | None = None) -> None:
        with self._lock:
            shot = self._shots.get(event.id)
        payload = EventPayload(
            type=event.type, id=event.id, device=self.device_id, camera=camera, track_id=event.track_id,
            label=event.label, score=event.score, best_score=event.best_score, box=_rounded(event.box),
            zones=list(event.zones), entered_zones=list(event.entered_zones),
            first_seen=iso_utc(event.first_seen), last_seen=iso_utc(event.last_seen),
            stationary=event.stationary, snapshot_at=iso_utc(shot.taken_at) if shot else None,
            changed=list(event.changed), reason=event.reason,  # type: ignore[arg-type]
            published_at=iso_utc(time.time()), subclass=subclass)
        self._send(self.topics.events(camera), encode(payload), retain=False, kind="events")

    def _finish(self, camera: str, event: Event, subclass: Subclass | None = None) -> None:
        self._send_shot(camera, event.id)
        self._send_event(camera, event, subclass)
        with self._lock:
            shot = self._shots.pop(event.id, None)
        if shot is not None and self.settings.save_dir:
            self._save(camera, event.id, shot.jpeg)

    def _send_shot(self, camera: str, event_id: str) -> None:
        with self._lock:
            shot = self._shots.get(event_id)
        if shot is not None:
            self._send(self.topics.event_snapshot(camera), shot.jpeg, retain=True, kind=None,
                       content_type="image/jpeg", user=(("event_id", event_id),))

    def _keep_shot(self, shot: TrackedObject, frame: Frame) -> None:
        if self._to_jpeg is None:
            from edged.annotate import to_jpeg  # Pillow drawing: only loaded when there is something to draw
            self._to_jpeg = to_jpeg
        detection = Detection(shot.label, shot.track_id, shot.score, shot.box)  # colour per track id
        caption = f"{shot.label} #{shot.track_id} {shot.score:.0%}"
        jpeg = self._to_jpeg(frame.image, [detection], quality=self.settings.quality, captions=[caption])
        with self._lock:
            self._shots[shot.event_id] = Shot(jpeg, frame.captured_at)

    def _save(self, camera: str, event_id: str, jpeg: bytes) -> None:
        """`<save_dir>/<camera>/<event id>.jpg`, then the oldest files go until the quota holds (the new
        one always stays)."""
        root = Path(self.settings.save_dir or ".")
        path = root / camera / f"{event_id}.jpg"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(jpeg)
            files = sorted(((p.stat().st_mtime_ns, p.stat().st_size, p) for p in root.glob("*/*.jpg")
                            if p != path))
            total = len(jpeg) + sum(size for _, size, _ in files)
            quota = self.settings.save_quota_mb * 1e6
            for _, size, path in files:
                if total <= quota:
                    break
                path.unlink(missing_ok=True)
                total -= size
        except OSError as exc:
            if not self._save_warned:
                self._save_warned = True
                log.warning("event snapshots cannot be saved in %s (%s); publishing them still",
                            root, exc.strerror or exc)


def _rounded(box: Box) -> Box:
    """Filtered boxes carry float noise and may overshoot the picture a little: clipped to 0..1 like
    detections, 5 decimals (a tenth of a pixel at 4K)."""
    def unit(value: float) -> float:
        return round(min(1.0, max(0.0, value)), 5)

    return Box(unit(box.xmin), unit(box.ymin), unit(box.xmax), unit(box.ymax))


def _flag(value: bool) -> bytes:
    return b"true" if value else b"false"
