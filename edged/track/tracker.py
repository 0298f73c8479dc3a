"""The tracker of one camera: stable ids for detections over time, ByteTrack-style two-stage matching.

Each frame, every track's Kalman state is predicted to the frame's capture
time, then
1. confirmed tracks take the high-score detections (IoU ≥ `match_iou`),
2. confirmed tracks still unmatched take low-score detections
   (IoU ≥ `low_match_iou`): an object whose score dips stays tracked,
3. new (tentative) tracks take what high-score detections are left, then
   low-score ones, by overlap of boxes grown by how far an object may have
   walked since the last frame (NEW_OBJECT_SPEED): a new track has no
   velocity yet, and at 2 fps a walking person may not overlap itself from
   one frame to the next;
4. detections left over start tentative tracks.
A tentative track that misses two frames in a row is dropped; one matched
`min_hits` times, at least once with a high score, is confirmed and gets its
id (a low-score first sighting still counts towards it, so the event starts a
frame earlier); a confirmed track not seen for `lost_seconds` is removed.
Labels are kept apart: a cat never continues a person's track. Only
confirmed tracks are reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edged.track import motion
from edged.track.association import Assign, greedy, iou_matrix
from edged.track.settings import TrackingSettings
from edged.types import Box, Detection

NEW_OBJECT_SPEED = 2.0  # box sizes per second a new object may move before its velocity is known


@dataclass(slots=True, eq=False)
class Track:
    """One object followed over time; `box` is the filtered box after the last match."""

    label: str
    box: Box
    score: float
    first_seen: float
    last_seen: float
    id: int = 0  # given at confirmation, so reported ids count 1, 2, 3 …
    peak: float = 0.0  # best score so far: confirmation needs one at least high_score
    hits: int = 1
    matched: bool = True  # matched a detection in the latest frame
    detection: Detection | None = None  # what it matched in the latest frame

    @property
    def confirmed(self) -> bool:
        return self.id > 0


@dataclass(slots=True)
class Step:
    """What one frame changed: tracks confirmed in it, and tracks removed with why."""

    confirmed: list[Track] = field(default_factory=list)
    removed: list[tuple[Track, str]] = field(default_factory=list)


class Tracker:
    """Tracks of one camera. `update` with each frame's capture time (seconds, any monotonic clock).

    `tracks` and the Kalman filters in `_state` are parallel: row i is track i.
    """

    def __init__(self, settings: TrackingSettings, *, assign: Assign = greedy) -> None:
        self.settings = settings
        self.tracks: list[Track] = []
        self._state = np.zeros((0, 5, 4))
        self._time: float | None = None
        self._assign = assign
        self._next_id = 1
        self._labels = frozenset(settings.labels)

    @property
    def confirmed(self) -> list[Track]:
        return [track for track in self.tracks if track.confirmed]

    def update(self, now: float, detections: list[Detection]) -> Step:
        settings = self.settings
        step = Step()
        detections = [d for d in detections if d.score >= settings.low_score
                      and (not self._labels or d.label in self._labels)]
        dt = now - self._time if self._time is not None else 0.0
        motion.predict(self._state, dt)
        self._time = now
        for track in self.tracks:
            track.detection = None
        boxes = np.array([_xyxy(d.box) for d in detections], dtype=np.float64).reshape(-1, 4)
        iou = self._overlaps(detections, boxes)
        high = [j for j, d in enumerate(detections) if d.score >= settings.high_score]
        low = [j for j, d in enumerate(detections) if d.score < settings.high_score]
        confirmed = [i for i, t in enumerate(self.tracks) if t.confirmed]
        tentative = [i for i, t in enumerate(self.tracks) if not t.confirmed]
        matches: dict[int, int] = {}
        left_high = self._match(iou, confirmed, high, settings.match_iou, matches)
        recent = [i for i in confirmed if i not in matches]
        self._match(iou, recent, low, settings.low_match_iou, matches)
        if tentative:
            buffered = self._overlaps(detections, boxes, NEW_OBJECT_SPEED * max(dt, 0.0))
            left_high = self._match(buffered, tentative, left_high, settings.match_iou, matches)
            unsure = [i for i in tentative if i not in matches]
            left_low = [j for j in low if j not in matches.values()]
            self._match(buffered, unsure, left_low, settings.low_match_iou, matches)
        taken = set(matches.values())
        left_low = [j for j in low if j not in taken]
        rows = np.fromiter(matches, dtype=np.intp, count=len(matches))
        motion.correct(self._state, rows, boxes[[matches[i] for i in matches]])
        filtered = motion.boxes(self._state[rows]).tolist()
        for i, box in zip(matches, filtered):
            self._hit(self.tracks[i], detections[matches[i]], Box(*box), now, step)
        keep = []
        for i, track in enumerate(self.tracks):
            if i in matches:
                keep.append(i)
            elif not track.confirmed and track.matched:  # a new object may miss one frame
                track.matched = False
                keep.append(i)
            elif track.confirmed and now - track.last_seen <= settings.lost_seconds:
                track.matched = False
                keep.append(i)
            elif track.confirmed:
                step.removed.append((track, "lost"))
        self.tracks = [self.tracks[i] for i in keep]
        self._state = self._state[keep]
        for j in left_high + left_low:
            self._start(detections[j], boxes[j], now, step)
        return step

    def close(self) -> list[Track]:
        """Remove every track; the confirmed ones are returned (their events must end)."""
        confirmed, self.tracks, self._state = self.confirmed, [], np.zeros((0, 5, 4))
        return confirmed

    def _overlaps(self, detections: list[Detection], boxes: np.ndarray, buffer: float = 0.0) -> np.ndarray:
        """IoU of predicted track boxes and detections, 0 across labels; boxes grown by `buffer` sizes."""
        iou = iou_matrix(_grow(motion.boxes(self._state), buffer), _grow(boxes, buffer))
        if iou.size:
            track_labels = np.array([track.label for track in self.tracks], dtype=object)
            detection_labels = np.array([d.label for d in detections], dtype=object)
            iou[track_labels[:, None] != detection_labels[None, :]] = 0.0
        return iou

    def _match(self, iou: np.ndarray, rows: list[int], cols: list[int], gate: float,
               matches: dict[int, int]) -> list[int]:
        """Assign `rows` (tracks) to `cols` (detections) into `matches`; returns the columns left."""
        if not rows or not cols:
            return cols
        pairs = self._assign(iou[np.ix_(rows, cols)], gate)
        taken = set()
        for r, c in pairs:
            matches[rows[r]] = cols[c]
            taken.add(c)
        return [col for k, col in enumerate(cols) if k not in taken]

    def _hit(self, track: Track, detection: Detection, box: Box, now: float, step: Step) -> None:
        track.box = box
        track.score = detection.score
        track.last_seen = now
        track.matched = True
        track.detection = detection
        track.hits += 1
        track.peak = max(track.peak, detection.score)
        settings = self.settings
        if not track.confirmed and track.hits >= settings.min_hits and track.peak >= settings.high_score:
            self._confirm(track, step)

    def _start(self, detection: Detection, box: np.ndarray, now: float, step: Step) -> None:
        if len(self.tracks) >= self.settings.max_tracks and not self._make_room(step):
            return
        track = Track(detection.label, detection.box, detection.score, first_seen=now, last_seen=now,
                      detection=detection, peak=detection.score)
        self.tracks.append(track)
        self._state = np.concatenate((self._state, motion.start(box[None, :])))
        if self.settings.min_hits <= 1 and track.peak >= self.settings.high_score:
            self._confirm(track, step)

    def _make_room(self, step: Step) -> bool:
        """At the cap: drop the track unseen for longest, if one is unseen now; else refuse the new one."""
        unseen = [track for track in self.tracks if not track.matched]
        if not unseen:
            return False
        oldest = min(unseen, key=lambda track: track.last_seen)
        row = self.tracks.index(oldest)
        del self.tracks[row]
        self._state = np.delete(self._state, row, axis=0)
        step.removed.append((oldest, "evicted"))
        return True

    def _confirm(self, track: Track, step: Step) -> None:
        track.id = self._next_id
        self._next_id += 1
        step.confirmed.append(track)


def _grow(xyxy: np.ndarray, buffer: float) -> np.ndarray:
    if not buffer:
        return xyxy
    margin = np.concatenate((xyxy[:, 2:] - xyxy[:, :2],) * 2, axis=1) * buffer
    return xyxy + margin * np.array([-1.0, -1.0, 1.0, 1.0])


def _xyxy(box: Box) -> tuple[float, float, float, float]:
    return (box.xmin, box.ymin, box.xmax, box.ymax)
