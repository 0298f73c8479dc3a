"""MOTChallenge text files: detections in (`frame,id,x,y,w,h,score,…`), tracks out
(`frame,id,x,y,w,h,score,-1,-1,-1`).

For tuning `[tracking]` offline and comparing with other trackers on the same
detections. Boxes stay in pixels: the tracker's geometry is scale-free (IoU,
noise relative to box size), so no picture size is needed. Frames are
numbered from 1 and timed as `(frame - 1) / fps`, as a paced camera would be.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from edged.errors import DataError, NoInputError
from edged.track.settings import TrackingSettings
from edged.track.tracker import Tracker
from edged.types import Box, Detection

MOT_LABEL = "object"  # MOTChallenge files carry no labels: every box is one class


@dataclass(frozen=True, slots=True)
class MotBox:
    frame: int
    x: float
    y: float
    w: float
    h: float
    score: float

    def detection(self) -> Detection:
        """In pixels: the tracker is scale-free, and these boxes never go on the wire (where Box is 0..1)."""
        return Detection(MOT_LABEL, 0, self.score, Box(self.x, self.y, self.x + self.w, self.y + self.h))


def parse_line(line: str, where: str) -> MotBox | None:
    """One CSV line → MotBox; None for a blank line or comment; DataError naming `where` for anything else."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    fields = [f.strip() for f in text.split(",")]
    if len(fields) < 7:
        raise DataError(f"{where}: expected at least 7 comma-separated fields (frame,id,x,y,w,h,score), "
                        f"got {len(fields)}")
    try:
        frame = int(float(fields[0]))
        x, y, w, h, score = (float(value) for value in fields[2:7])
    except ValueError:
        raise DataError(f"{where}: frame, x, y, w, h and score must be numbers: {text[:80]!r}") from None
    if frame < 1 or float(fields[0]) != frame:
        raise DataError(f"{where}: frame must be a whole number from 1, got {fields[0]!r}")
    if not w > 0 or not h > 0:
        raise DataError(f"{where}: box width and height must be positive, got w={fields[4]} h={fields[5]}")
    return MotBox(frame, x, y, w, h, score)


def read_detections(path: Path) -> dict[int, list[Detection]]:
    """frame number → detections; NoInputError if unreadable, DataError on the first bad line."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise NoInputError(f"{path}: no such detections file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise NoInputError(f"{path}: cannot read the detections file ({exc})") from None
    frames: dict[int, list[Detection]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        box = parse_line(line, f"{path}:{number}")
        if box is not None:
            frames.setdefault(box.frame, []).append(box.detection())
    return frames


def replay(frames: dict[int, list[Detection]], settings: TrackingSettings, fps: float,
           tracker: Tracker | None = None) -> Iterator[tuple[int, int, Box, float]]:
    """(frame, track id, box, score) for every confirmed track matched in each frame, frames in order."""
    tracker = tracker or Tracker(settings)
    last = max(frames, default=0)
    for frame in range(1, last + 1):
        tracker.update((frame - 1) / fps, frames.get(frame, []))
        for track in tracker.tracks:
            if track.confirmed and track.matched:
                yield frame, track.id, track.box, track.score


def write_results(rows: Iterator[tuple[int, int, Box, float]], out: TextIO) -> int:
    count = 0
    for frame, track_id, box, score in rows:
        out.write(f"{frame},{track_id},{box.xmin:.2f},{box.ymin:.2f},{box.xmax - box.xmin:.2f},"
                  f"{box.ymax - box.ymin:.2f},{score:.4f},-1,-1,-1\n")
        count += 1
    return count
