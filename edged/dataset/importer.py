"""`edged dataset import`: labels corrected in a labelling tool (COCO JSON or Pascal VOC) back into a dataset.

A picture named like our exports (`<camera>_<frame>.jpg`, or a COCO image with
our `camera`/`frame` fields) is matched to its frame: when that frame is already
in the dataset only its objects are replaced (the human's word wins, the JPEG
stays); otherwise the frame is added with the picture (JPEG kept byte for byte,
other formats re-encoded). Pictures with other names become frames of the
camera `imported`. Labels are matched by name: a name the dataset knows keeps
its class id, a new one gets the COCO id it came with (minus one) when free,
else the next free id. Objects without a `score` are marked as a person's
(score None), so `--min-score` never drops them.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from edged.dataset import voc
from edged.dataset.coco import CocoFile, load_coco
from edged.dataset.layout import (
    SIDECAR_SUFFIX,
    Annotation,
    FrameRecord,
    clip,
    iso_utc,
    parse_time,
    read_label_map,
    read_record,
    safe_name,
    write_frame,
    write_label_map,
)
from edged.errors import EX_USAGE, DataError, EdgedError, NoInputError
from edged.types import Box

EXPORTED_NAME = re.compile(r"^(?P<camera>.+)_(?P<frame>\d{8}T\d{6}\.\d{6}Z-\d+(-\d+)?)$")
IMPORTED_CAMERA = "imported"


@dataclass(frozen=True)
class IncomingObject:
    label: str
    suggested_id: int | None  # the id the file gave it (COCO category id - 1), used when free
    corners: tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels
    score: float | None = None
    track_id: str | None = None


@dataclass(frozen=True)
class Incoming:
    """One picture with its labels, whatever format it came in."""

    image_path: Path
    width: int | None
    height: int | None
    objects: list[IncomingObject]
    camera: str | None = None
    frame: str | None = None
    captured_at: str | None = None
    model: str | None = None
    reasons: list[str] | None = None


@dataclass
class ImportResult:
    added: int = 0
    updated: int = 0
    objects: int = 0
    new_labels: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # pictures skipped, one line each
    exit_code: int = 0  # the first problem's


def detect_format(source: Path) -> str:
    if source.is_file():
        return "coco"
    if (source / "Annotations").is_dir():
        return "voc"
    if (source / "labels.json").is_file():
        return "coco"
    if not source.exists():
        raise NoInputError(f"{source} does not exist")
    raise EdgedError(f"{source}: neither a COCO JSON file nor a VOC directory (with Annotations/)",
                     exit_code=EX_USAGE)


def from_coco(source: Path, images: Path | None) -> tuple[list[Incoming], list[IncomingObject]]:
    """The pictures, and the file's categories (as objects without a box) so that all of them are declared."""
    path = source / "labels.json" if source.is_dir() else source
    document: CocoFile = load_coco(path)
    if images is None:
        images = path.parent / "images" if (path.parent / "images").is_dir() else path.parent
    names = document.category_names()
    grouped = document.by_image()
    incoming = []
    for image in document.images:
        objects = [IncomingObject(names[a.category_id], a.category_id - 1,
                                  (a.bbox[0], a.bbox[1], a.bbox[0] + a.bbox[2], a.bbox[1] + a.bbox[3]),
                                  a.score, _track(a.attributes.get("track_id"))) for a in grouped[image.id]]
        incoming.append(Incoming(images / image.file_name, image.width, image.height, objects, image.camera,
                                 image.frame, image.captured_at or image.date_captured, image.model,
                                 image.reasons))
    declared = [IncomingObject(c.name, c.id - 1, (0, 0, 0, 0))
                for c in sorted(document.categories, key=lambda c: c.id)]
    return incoming, declared


def _track(value: object) -> str | None:
    return None if value is None or value == "" else str(value)


def from_voc(source: Path) -> list[Incoming]:
    incoming = []
    for path in sorted((source / "Annotations").glob("*.xml")):
        parsed = voc.parse_voc(path)
        objects = [IncomingObject(o.label, None, (o.xmin, o.ymin, o.xmax, o.ymax)) for o in parsed.objects]
        picture = source / "JPEGImages" / parsed.filename
        incoming.append(Incoming(picture, parsed.width, parsed.height, objects))
    return incoming


def _identity(item: Incoming) -> tuple[str, str]:
    if item.camera and item.frame:
        return safe_name(item.camera), safe_name(item.frame)
    match = EXPORTED_NAME.match(item.image_path.stem)
    if match:
        return safe_name(match["camera"]), match["frame"]
    return IMPORTED_CAMERA, safe_name(item.image_path.stem)


def _assign_ids(labels: dict[int, str], objects: list[IncomingObject]) -> tuple[dict[str, int], list[str]]:
    by_name = {name: class_id for class_id, name in labels.items()}
    new = []
    for obj in objects:
        name, suggested = obj.label, obj.suggested_id
        if name in by_name:
            continue
        free = suggested is not None and suggested >= 0 and suggested not in labels
        class_id = suggested if free else max(labels, default=-1) + 1
        labels[class_id], by_name[name] = name, class_id
        new.append(name)
    return by_name, new


def _picture(item: Incoming) -> tuple[bytes, int, int]:
    """The picture as JPEG bytes (a JPEG as it is) and its size."""
    try:
        data = item.image_path.read_bytes()
    except FileNotFoundError:
        raise NoInputError(f"image {item.image_path} does not exist") from None
    except OSError as exc:
        raise NoInputError(f"image {item.image_path} cannot be read ({exc.strerror})") from None
    try:
        with Image.open(io.BytesIO(data)) as picture:
            width, height = picture.size
            if picture.format != "JPEG":
                buffer = io.BytesIO()
                picture.convert("RGB").save(buffer, format="JPEG", quality=95)
                data = buffer.getvalue()
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"image {item.image_path} cannot be decoded ({exc})") from None
    if (item.width, item.height) not in ((None, None), (width, height)):
        raise DataError(f"image {item.image_path} is {width}x{height} but its labels say "
                        f"{item.width}x{item.height}")
    return data, width, height


def import_into(source: Path, root: Path, *, fmt: str | None = None, images: Path | None = None
                ) -> ImportResult:
    fmt = fmt or detect_format(source)
    items, declared = from_coco(source, images) if fmt == "coco" else (from_voc(source), [])
    result = ImportResult()
    labels = read_label_map(root) if root.exists() else {}
    named = declared + [obj for item in items for obj in item.objects]
    by_name, result.new_labels = _assign_ids(labels, named)
    if result.new_labels or not (root / "labels.json").exists():
        write_label_map(root, labels)
    for item in items:
        try:
            _import_one(item, root, by_name, result)
        except EdgedError as exc:
            result.problems.append(str(exc))
            result.exit_code = result.exit_code or exc.exit_code
    return result


def _import_one(item: Incoming, root: Path, by_name: dict[str, int], result: ImportResult) -> None:
    camera, name = _identity(item)
    sidecar = root / camera / (name + SIDECAR_SUFFIX)
    existing = read_record(sidecar) if sidecar.exists() else None
    if existing is not None:
        jpeg, width, height = None, existing.width, existing.height
    else:
        jpeg, width, height = _picture(item)
    detections = []
    for obj in item.objects:
        x0, y0, x1, y1 = obj.corners
        box = clip(Box(x0 / width, y0 / height, x1 / width, y1 / height))
        if box is not None:
            detections.append(Annotation(label=obj.label, class_id=by_name[obj.label], box=box,
                                         score=obj.score, track_id=obj.track_id))
    if existing is not None:
        reasons = existing.reasons + ([] if "imported" in existing.reasons else ["imported"])
        record = FrameRecord(image=existing.image, width=width, height=height, camera=existing.camera,
                             captured_at=existing.captured_at, model=existing.model, reasons=reasons,
                             detections=detections)
        result.updated += 1
    else:
        captured = item.captured_at if item.captured_at and parse_time(item.captured_at) is not None else \
            iso_utc(item.image_path.stat().st_mtime)
        reasons = item.reasons if item.reasons is not None else ["imported"]
        record = FrameRecord(image=name + ".jpg", width=width, height=height, camera=camera,
                             captured_at=captured, model=item.model, reasons=reasons, detections=detections)
        result.added += 1
    write_frame(root, record, name, jpeg)
    result.objects += len(detections)
