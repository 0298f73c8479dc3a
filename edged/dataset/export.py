"""`edged dataset export`: a dataset directory as COCO, Pascal VOC or YOLO, ready for a training tool.

Layouts (each what its tools read without options):
- coco: `OUT/images/*.jpg` + `OUT/labels.json` (MediaPipe Model Maker's `from_coco_folder`);
  with a split, one such folder per split (`OUT/train/`, `OUT/val/`).
- voc: `OUT/JPEGImages/`, `OUT/Annotations/*.xml`, `OUT/ImageSets/Main/{trainval,train,val}.txt` and
  the TF Object Detection API's `OUT/label_map.pbtxt`.
- yolo: `OUT/images/<split>/`, `OUT/labels/<split>/*.txt` and `OUT/data.yaml` (Ultralytics).

Frames keep their camera in the exported name (`<camera>_<frame>.jpg`) so that
labels corrected elsewhere come back to the right frame on `import`. Pictures
are hard-linked when OUT is on the same filesystem (no extra space on an SD
card), copied otherwise. The split is by ratio and reproducible: frames are
ranked by a seeded hash of their name, so a frame stays on its side when the
dataset grows.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from edged.dataset import coco, voc, yolo
from edged.dataset.layout import Annotation, StoredFrame, iter_frames, read_label_map
from edged.errors import EX_USAGE, EdgedError

Format = Literal["coco", "voc", "yolo"]
Selected = list[tuple[StoredFrame, list[Annotation]]]


@dataclass
class ExportResult:
    out: Path
    format: str
    splits: dict[str, int] = field(default_factory=dict)  # split name → frames
    objects: int = 0
    dropped_weak: int = 0  # auto-labels below --min-score left out
    problems: list[str] = field(default_factory=list)  # unreadable frames that were skipped


def parse_split(text: str) -> float:
    """"80/20" or "0.8/0.2" → the train fraction (0.8); EdgedError (usage) otherwise."""
    try:
        train, val = (float(part) for part in text.split("/"))
    except ValueError:
        raise EdgedError(f"--split {text}: expected TRAIN/VAL, e.g. 80/20", exit_code=EX_USAGE) from None
    if train <= 0 or val <= 0:
        raise EdgedError(f"--split {text}: both parts must be positive", exit_code=EX_USAGE)
    return train / (train + val)


def split_frames(selected: Selected, train_fraction: float | None, seed: int) -> dict[str, Selected]:
    """{"train": …, "val": …} by ratio (at least one frame a side when there are two), or all in "train"."""
    if train_fraction is None:
        return {"train": selected}

    def rank(item: tuple[StoredFrame, list[Annotation]]) -> str:
        return hashlib.sha256(f"{seed}:{item[0].key}".encode()).hexdigest()

    ordered = sorted(selected, key=rank)
    count = round(len(ordered) * train_fraction)
    if len(ordered) >= 2:
        count = min(max(count, 1), len(ordered) - 1)
    chosen = {id(item) for item in ordered[:count]}
    return {"train": [item for item in selected if id(item) in chosen],
            "val": [item for item in selected if id(item) not in chosen]}


def _place(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _prepare_out(out: Path, root: Path) -> None:
    if out.resolve().is_relative_to(root.resolve()):
        raise EdgedError(f"{out} is inside the dataset {root}: export next to it", exit_code=EX_USAGE)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise EdgedError(f"{out} exists and is not an empty directory: export into a new one",
                         exit_code=EX_USAGE)
    out.mkdir(parents=True, exist_ok=True)


def export(root: Path, out: Path, fmt: Format, *, min_score: float | None = None,
           train_fraction: float | None = None, seed: int = 0) -> ExportResult:
    result = ExportResult(out, fmt)
    labels = read_label_map(root)
    selected: Selected = []
    for frame in iter_frames(root, result.problems):
        kept = [a for a in frame.record.detections
                if min_score is None or a.score is None or a.score >= min_score]
        result.dropped_weak += len(frame.record.detections) - len(kept)
        labels.update({a.class_id: a.label for a in kept if a.class_id not in labels})
        selected.append((frame, kept))
    _prepare_out(out, root)
    splits = split_frames(selected, train_fraction, seed)
    writer = {"coco": _write_coco, "voc": _write_voc, "yolo": _write_yolo}[fmt]
    writer(out, splits, labels, split=train_fraction is not None)
    result.splits = {name: len(items) for name, items in splits.items()}
    result.objects = sum(len(kept) for _, kept in selected)
    return result


def _write_coco(out: Path, splits: dict[str, Selected], labels: dict[int, str], *, split: bool) -> None:
    for name, items in splits.items():
        folder = out / name if split else out
        (folder / "images").mkdir(parents=True, exist_ok=True)
        for frame, _ in items:
            _place(frame.image_path, folder / "images" / coco.export_name(frame))
        document = coco.coco_document(items, labels)
        (folder / "labels.json").write_text(json.dumps(document, indent=1) + "\n")


def _write_voc(out: Path, splits: dict[str, Selected], labels: dict[int, str], *, split: bool) -> None:
    (out / "Annotations").mkdir(parents=True)
    (out / "ImageSets" / "Main").mkdir(parents=True)
    stems: dict[str, list[str]] = {}
    for name, items in splits.items():
        for frame, kept in items:
            filename = coco.export_name(frame)
            stem = filename[: -len(".jpg")]
            _place(frame.image_path, out / "JPEGImages" / filename)
            (out / "Annotations" / f"{stem}.xml").write_bytes(voc.voc_xml(frame, kept, filename))
            stems.setdefault(name, []).append(stem)
    lists = {"trainval": [stem for items in stems.values() for stem in items]}
    if split:
        lists.update(stems)
    for name, items in lists.items():
        (out / "ImageSets" / "Main" / f"{name}.txt").write_text("".join(f"{s}\n" for s in items))
    (out / "label_map.pbtxt").write_text(voc.label_map_pbtxt(labels))


def _write_yolo(out: Path, splits: dict[str, Selected], labels: dict[int, str], *, split: bool) -> None:
    indices = yolo.yolo_indices(labels)
    for name, items in splits.items():
        (out / "labels" / name).mkdir(parents=True, exist_ok=True)
        for frame, kept in items:
            filename = coco.export_name(frame)
            _place(frame.image_path, out / "images" / name / filename)
            label_file = out / "labels" / name / (filename[: -len(".jpg")] + ".txt")
            label_file.write_text(yolo.yolo_lines(kept, indices))
    (out / "data.yaml").write_text(yolo.data_yaml(out, labels, list(splits)))
