"""The dataset directory: one JPEG and one JSON sidecar per frame, one label map — what recording writes.

    DIR/labels.json              LabelMap: class id → label name (the model's ids; `n/a` gaps left out)
    DIR/<camera>/<frame>.jpg     the picture as captured (RGB JPEG)
    DIR/<camera>/<frame>.json    FrameRecord: size, camera, capture time, model, why it was kept, objects

`<frame>` is the capture time in UTC plus the frame's sequence number
(`20261128T042136.123456Z-000042`), so names sort by time within a camera.
Files only ever appear whole: each is written under a hidden temporary name,
fsynced and renamed, the JPEG before its sidecar. A frame exists once its
sidecar does; readers look at sidecars only, and `sweep_orphans` removes what a
power cut can leave behind (temporary files, a JPEG without its sidecar).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec

from edged.dataset.atomic import TEMP_SUFFIX, sync_directory, write_atomic
from edged.errors import DataError, NoInputError
from edged.types import Box, Detection

FORMAT_VERSION = 1
LABELS_FILE = "labels.json"
IMAGE_SUFFIX = ".jpg"
SIDECAR_SUFFIX = ".json"
FRAME_NAME = re.compile(r"^\d{8}T\d{6}\.\d{6}Z-\d+(-\d+)?$")  # time-seq, -n when two frames collide
SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


class Annotation(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One object in a frame: box normalized to the picture (0..1, clipped), as Detection plus a track id."""

    label: str
    class_id: int
    box: Box
    score: float | None = None  # None: drawn or corrected by a person, not a model's guess
    track_id: str | None = None

    @classmethod
    def from_detection(cls, detection: Detection, track_id: str | None = None) -> Annotation | None:
        """The detection with its box clipped to the picture; None when nothing of it is inside."""
        box = clip(detection.box)
        if box is None:
            return None
        return cls(label=detection.label, class_id=detection.class_id, box=box, score=detection.score,
                   track_id=track_id)


class FrameRecord(msgspec.Struct, kw_only=True):
    """The sidecar of one frame."""

    version: int = FORMAT_VERSION
    image: str  # the JPEG's file name, beside this sidecar
    width: int
    height: int
    camera: str
    captured_at: str  # ISO 8601 UTC with microseconds, like every edged timestamp
    model: str | None = None  # the model whose detections these are (None: labelled elsewhere)
    reasons: list[str] = []  # why the frame was kept: uncertain, new_object, interval, imported
    detections: list[Annotation] = []


class LabelMap(msgspec.Struct, kw_only=True):
    version: int = FORMAT_VERSION
    labels: dict[int, str] = {}


@dataclass(frozen=True)
class StoredFrame:
    """A frame found in a dataset directory."""

    camera: str
    name: str
    image_path: Path
    sidecar_path: Path
    record: FrameRecord

    @property
    def key(self) -> str:
        return f"{self.camera}/{self.name}"


def clip(box: Box) -> Box | None:
    """The part of a normalized box inside the picture; None if it has no area there."""
    x0, y0 = min(max(box.xmin, 0.0), 1.0), min(max(box.ymin, 0.0), 1.0)
    x1, y1 = min(max(box.xmax, 0.0), 1.0), min(max(box.ymax, 0.0), 1.0)
    return Box(x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def iso_utc(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> float | None:
    """An ISO 8601 time (`Z` or offset; no zone: UTC) → POSIX seconds; None if it is not one."""
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


def frame_name(captured_at: float, seq: int) -> str:
    moment = dt.datetime.fromtimestamp(captured_at, tz=dt.UTC)
    return f"{moment.strftime('%Y%m%dT%H%M%S.%fZ')}-{seq:06d}"


def safe_name(text: str) -> str:
    """A file-name-safe version of a camera or frame name (what a topic level allows stays as it is)."""
    cleaned = SAFE_NAME.sub("_", text).strip("._")
    return cleaned or "unnamed"


# ---- writing -----------------------------------------------------------------------------------------

_encoder = msgspec.json.Encoder()


def encode_record(record: FrameRecord) -> bytes:
    return _encoder.encode(record) + b"\n"


def write_frame(root: Path, record: FrameRecord, name: str, jpeg: bytes | None) -> StoredFrame:
    """Store one frame (JPEG first, then its sidecar; `jpeg` None keeps the JPEG already there)."""
    directory = root / record.camera
    directory.mkdir(parents=True, exist_ok=True)
    image_path, sidecar_path = directory / (name + IMAGE_SUFFIX), directory / (name + SIDECAR_SUFFIX)
    if jpeg is not None:
        write_atomic(image_path, jpeg)
    write_atomic(sidecar_path, encode_record(record))
    sync_directory(directory)
    return StoredFrame(record.camera, name, image_path, sidecar_path, record)


def unused_name(directory: Path, name: str) -> str:
    """`name`, or `name-2`, `name-3`… when two frames share capture time and sequence number."""
    candidate, n = name, 1
    while (directory / (candidate + SIDECAR_SUFFIX)).exists():
        n += 1
        candidate = f"{name}-{n}"
    return candidate


def remove_frame(image_path: Path, sidecar_path: Path) -> None:
    """Sidecar first: a crash in between leaves a JPEG without sidecar, which is not a frame (swept later)."""
    sidecar_path.unlink(missing_ok=True)
    image_path.unlink(missing_ok=True)


def write_label_map(root: Path, labels: dict[int, str]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    write_atomic(root / LABELS_FILE, msgspec.json.format(_encoder.encode(LabelMap(labels=labels))) + b"\n")


def extend_label_map(root: Path, labels: dict[int, str], model: str) -> None:
    """Add a model's labels to the dataset's map; ValueError when an id already means another label."""
    root.mkdir(parents=True, exist_ok=True)
    existing = read_label_map(root)
    for class_id, name in labels.items():
        if existing.get(class_id, name) != name:
            raise ValueError(f"{root} holds frames of another label map (class {class_id} is "
                             f"{existing[class_id]!r} there, {name!r} for {model}): record elsewhere")
    if {**existing, **labels} != existing:
        write_label_map(root, {**existing, **labels})


# ---- reading -----------------------------------------------------------------------------------------

def read_label_map(root: Path) -> dict[int, str]:
    """The dataset's label map; {} when it has none yet."""
    path = root / LABELS_FILE
    try:
        return msgspec.json.decode(path.read_bytes(), type=LabelMap).labels
    except FileNotFoundError:
        return {}
    except (OSError, msgspec.DecodeError) as exc:
        raise DataError(f"{path}: not an edged label map ({exc})") from None


def read_record(path: Path) -> FrameRecord:
    try:
        return msgspec.json.decode(path.read_bytes(), type=FrameRecord)
    except (OSError, msgspec.DecodeError) as exc:
        raise DataError(f"{path}: not an edged frame sidecar ({exc})") from None


def sidecars(root: Path) -> Iterator[Path]:
    """Every frame sidecar under `root` (one level of camera directories), in name order."""
    for directory in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for path in sorted(directory.glob("*" + SIDECAR_SUFFIX)):
            if not path.name.startswith("."):
                yield path


def open_dataset(root: Path) -> Path:
    if not root.exists():
        raise NoInputError(f"dataset directory {root} does not exist")
    if not root.is_dir():
        raise DataError(f"{root} is not a dataset directory (a directory of camera folders and labels.json)")
    return root


def iter_frames(root: Path, problems: list[str] | None = None) -> Iterator[StoredFrame]:
    """The frames of a dataset; unreadable sidecars are reported into `problems` (else raised) and skipped."""
    for sidecar in sidecars(open_dataset(root)):
        try:
            record = read_record(sidecar)
        except DataError as exc:
            if problems is None:
                raise
            problems.append(str(exc))
            continue
        image = sidecar.with_name(record.image)
        if not image.is_file():
            if problems is None:
                raise DataError(f"{sidecar}: its image {record.image} is missing")
            problems.append(f"{sidecar}: its image {record.image} is missing")
            continue
        yield StoredFrame(sidecar.parent.name, sidecar.name[: -len(SIDECAR_SUFFIX)], image, sidecar, record)


def sweep_orphans(root: Path) -> list[Path]:
    """Delete what an interrupted write or rotation leaves: temp files, JPEGs without a sidecar."""
    removed = []
    for directory in (p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for path in directory.iterdir():
            orphan = (path.name.startswith(".") and path.name.endswith(TEMP_SUFFIX)) or (
                path.suffix == IMAGE_SUFFIX and not path.with_suffix(SIDECAR_SUFFIX).exists())
            if orphan and path.is_file():
                path.unlink(missing_ok=True)
                removed.append(path)
    for path in root.glob("." + "*" + TEMP_SUFFIX):
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed
