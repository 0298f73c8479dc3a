"""Pascal VOC XML: one annotation file per picture, boxes in whole pixels, labels by name.

What the TF Object Detection API's `create_pascal_tf_record` and TF Model Maker's
`DataLoader.from_pascal_voc` read, and what CVAT and Label Studio export. Box
corners are 0-based pixel coordinates (`xmin = round(x0 * width)`), which is how
those readers divide them back by the picture size.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from edged.dataset.layout import Annotation, StoredFrame
from edged.errors import DataError


@dataclass(frozen=True)
class VocObject:
    label: str
    xmin: float
    ymin: float
    xmax: float
    ymax: float


@dataclass(frozen=True)
class VocAnnotation:
    filename: str
    width: int
    height: int
    objects: list[VocObject]


def _text(parent: ET.Element, tag: str, value: object) -> ET.Element:
    element = ET.SubElement(parent, tag)
    element.text = str(value)
    return element


def voc_xml(frame: StoredFrame, kept: list[Annotation], filename: str, folder: str = "JPEGImages") -> bytes:
    record = frame.record
    root = ET.Element("annotation")
    _text(root, "folder", folder)
    _text(root, "filename", filename)
    source = ET.SubElement(root, "source")
    _text(source, "database", f"edged camera {frame.camera}")
    size = ET.SubElement(root, "size")
    _text(size, "width", record.width)
    _text(size, "height", record.height)
    _text(size, "depth", 3)
    _text(root, "segmented", 0)
    for a in kept:
        element = ET.SubElement(root, "object")
        _text(element, "name", a.label)
        _text(element, "pose", "Unspecified")
        _text(element, "truncated", 0)
        _text(element, "difficult", 0)
        box = ET.SubElement(element, "bndbox")
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), a.box.to_pixels(record.width, record.height)):
            _text(box, tag, value)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def label_map_pbtxt(labels: dict[int, str]) -> str:
    """The TF Object Detection API's label map: ids from 1 (0 is its background), class id + 1 as in COCO."""
    items = [f"item {{\n  id: {class_id + 1}\n  name: '{name}'\n}}\n"
             for class_id, name in sorted(labels.items())]
    return "".join(items)


def _number(element: ET.Element, tag: str, where: str) -> float:
    child = element.find(tag)
    if child is None or child.text is None:
        raise DataError(f"{where}: <{tag}> is missing")
    try:
        return float(child.text)
    except ValueError:
        raise DataError(f"{where}: <{tag}> is {child.text!r}, not a number") from None


def parse_voc(path: Path) -> VocAnnotation:
    """One VOC annotation file; DataError naming the file and the element that is wrong."""
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise DataError(f"{path}: not readable VOC XML ({exc})") from None
    if root.tag != "annotation":
        raise DataError(f"{path}: root element is <{root.tag}>, not <annotation>")
    filename = root.findtext("filename")
    size = root.find("size")
    if not filename or size is None:
        raise DataError(f"{path}: <filename> or <size> is missing")
    objects = []
    for index, element in enumerate(root.iter("object")):
        where = f"{path}: object {index + 1}"
        name = (element.findtext("name") or "").strip()
        box = element.find("bndbox")
        if not name or box is None:
            raise DataError(f"{where}: <name> or <bndbox> is missing")
        corners = (_number(box, tag, where) for tag in ("xmin", "ymin", "xmax", "ymax"))
        objects.append(VocObject(name, *corners))
    width, height = int(_number(size, "width", str(path))), int(_number(size, "height", str(path)))
    return VocAnnotation(filename.strip(), width, height, objects)
