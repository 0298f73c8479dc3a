"""COCO detection JSON: reading a file strictly enough to trust it, and writing one from dataset frames.

What labelling tools (CVAT, Label Studio) and pycocotools exchange: `images`,
`annotations` (`bbox` = [x, y, width, height] in pixels) and `categories`
(`id`, `name`). Category ids are whatever the file says — COCO's own are 1..90
with gaps — so everything in edged matches categories by name. Our exports add
a few fields tools ignore (`camera`, `frame`, `captured_at`, `model`, `reasons`
on images; `score` and `attributes.track_id` on annotations) so that an import
of our own export restores the frames exactly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from edged.dataset.layout import Annotation, StoredFrame
from edged.errors import DataError, NoInputError


class CocoImage(msgspec.Struct, kw_only=True):
    id: int
    file_name: str
    width: int | None = None
    height: int | None = None
    date_captured: str | None = None
    camera: str | None = None
    frame: str | None = None
    captured_at: str | None = None
    model: str | None = None
    reasons: list[str] | None = None


class CocoAnnotation(msgspec.Struct, kw_only=True):
    image_id: int
    category_id: int
    bbox: tuple[float, float, float, float]
    id: int | None = None
    area: float | None = None
    iscrowd: int = 0
    score: float | None = None
    attributes: dict[str, Any] = {}


class CocoCategory(msgspec.Struct, kw_only=True):
    id: int
    name: str
    supercategory: str = ""


class CocoFile(msgspec.Struct, kw_only=True):
    images: list[CocoImage]
    annotations: list[CocoAnnotation]
    categories: list[CocoCategory]

    def category_names(self) -> dict[int, str]:
        return {category.id: category.name for category in self.categories}

    def by_image(self) -> dict[int, list[CocoAnnotation]]:
        grouped: dict[int, list[CocoAnnotation]] = {image.id: [] for image in self.images}
        for annotation in self.annotations:
            grouped[annotation.image_id].append(annotation)
        return grouped

    def to_pycocotools(self) -> dict[str, Any]:
        """The dict pycocotools' COCO() indexes, with the fields its evaluation needs filled in."""
        annotations = []
        for number, a in enumerate(self.annotations, 1):
            annotations.append({"id": a.id if a.id is not None else number, "image_id": a.image_id,
                                "category_id": a.category_id, "bbox": list(a.bbox), "iscrowd": a.iscrowd,
                                "area": a.area if a.area is not None else a.bbox[2] * a.bbox[3]})
        return {"images": [{"id": i.id, "file_name": i.file_name, "width": i.width, "height": i.height}
                           for i in self.images],
                "annotations": annotations,
                "categories": [{"id": c.id, "name": c.name} for c in self.categories]}


def load_coco(path: Path) -> CocoFile:
    """A COCO detection file, checked: one line naming the file and what is wrong, else the content."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise NoInputError(f"{path} does not exist") from None
    except IsADirectoryError:
        raise NoInputError(f"{path} is a directory, not a COCO JSON file") from None
    except OSError as exc:
        raise NoInputError(f"{path} cannot be read ({exc.strerror})") from None
    try:
        coco = msgspec.json.decode(data, type=CocoFile)
    except msgspec.ValidationError as exc:
        raise DataError(f"{path}: not COCO detection JSON ({exc})") from None
    except msgspec.DecodeError as exc:
        raise DataError(f"{path}: not JSON ({exc})") from None
    image_ids = [image.id for image in coco.images]
    if len(set(image_ids)) != len(image_ids):
        raise DataError(f"{path}: two images share an id")
    names = coco.category_names()
    if len(names) != len(coco.categories):
        raise DataError(f"{path}: two categories share an id")
    known_images = set(image_ids)
    for index, annotation in enumerate(coco.annotations):
        where = f"{path}: annotations[{index}]"
        if annotation.image_id not in known_images:
            raise DataError(f"{where}: image_id {annotation.image_id} is not in `images`")
        if annotation.category_id not in names:
            raise DataError(f"{where}: category_id {annotation.category_id} is not in `categories`")
        if annotation.bbox[2] < 0 or annotation.bbox[3] < 0:
            raise DataError(f"{where}: bbox {list(annotation.bbox)} has a negative width or height")
    return coco


def export_name(frame: StoredFrame) -> str:
    """The exported file name: `<camera>_<frame>.jpg`, from which `import` recovers camera and frame."""
    return f"{frame.camera}_{frame.name}.jpg"


def coco_document(frames: list[tuple[StoredFrame, list[Annotation]]], labels: dict[int, str]
                  ) -> dict[str, Any]:
    """COCO JSON for frames (each with the annotations to export); category id = class id + 1 (COCO's own)."""
    images, annotations = [], []
    for image_id, (frame, kept) in enumerate(frames, 1):
        record = frame.record
        images.append({"id": image_id, "file_name": export_name(frame), "width": record.width,
                       "height": record.height, "date_captured": record.captured_at, "camera": frame.camera,
                       "frame": frame.name, "captured_at": record.captured_at, "model": record.model,
                       "reasons": record.reasons})
        for a in kept:
            x, y = a.box.xmin * record.width, a.box.ymin * record.height
            w, h = (a.box.xmax - a.box.xmin) * record.width, (a.box.ymax - a.box.ymin) * record.height
            entry: dict[str, Any] = {"id": len(annotations) + 1, "image_id": image_id,
                                     "category_id": a.class_id + 1,
                                     "bbox": [round(v, 3) for v in (x, y, w, h)], "area": round(w * h, 3),
                                     "iscrowd": 0, "segmentation": []}
            if a.score is not None:
                entry["score"] = a.score
            if a.track_id is not None:
                entry["attributes"] = {"track_id": a.track_id}
            annotations.append(entry)
    categories = [{"id": class_id + 1, "name": name, "supercategory": ""}
                  for class_id, name in sorted(labels.items())]
    return {"info": {"description": "exported by edged dataset export"}, "licenses": [], "images": images,
            "annotations": annotations, "categories": categories}
