"""YOLO (Ultralytics) labels: one text line per object, `class cx cy w h`, all normalized to the picture.

Class indices are contiguous from 0 (the dataset's class ids, which keep the
model's gaps, are renumbered in id order) and `data.yaml` names them, so a
model retrained with Ultralytics reports the same label names.
"""

from __future__ import annotations

import json
from pathlib import Path

from edged.dataset.layout import Annotation


def yolo_indices(labels: dict[int, str]) -> dict[int, int]:
    """Dataset class id → contiguous YOLO class index, in class id order."""
    return {class_id: index for index, class_id in enumerate(sorted(labels))}


def yolo_lines(kept: list[Annotation], indices: dict[int, int]) -> str:
    lines = []
    for a in kept:
        cx, cy = (a.box.xmin + a.box.xmax) / 2, (a.box.ymin + a.box.ymax) / 2
        w, h = a.box.xmax - a.box.xmin, a.box.ymax - a.box.ymin
        lines.append(f"{indices[a.class_id]} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n")
    return "".join(lines)


def data_yaml(root: Path, labels: dict[int, str], splits: list[str]) -> str:
    """Ultralytics' dataset file, written by hand (JSON strings are valid YAML): no YAML library needed.

    `path` is absolute: Ultralytics resolves a relative one against its own datasets directory.
    """
    train = "images/train"
    val = "images/val" if "val" in splits else train  # Ultralytics requires `val`: without a split, train
    names = "".join(f"  {index}: {json.dumps(labels[class_id])}\n"
                    for class_id, index in yolo_indices(labels).items())
    return (f"# written by edged dataset export; class index = position in the dataset's label map\n"
            f"path: {json.dumps(str(root.resolve()))}\ntrain: {train}\nval: {val}\nnames:\n{names}")
