"""Scoring models on a labelled set: COCO mAP by pycocotools, plus how fast the model runs here.

The metrics are pycocotools' own (`COCOeval`, bbox): mAP@0.5, mAP@[.5:.95]
and AP@0.5 per class, over the categories the dataset and the model share.
Labels are matched by name, never by id: a COCO file numbers its categories
1..90 with gaps, a model's label file counts lines from 0 (with `n/a` fillers,
or 80 contiguous names), a custom set numbers them any way. Detection boxes are
clipped to the picture before scoring, as the TF Object Detection API does.
pycocotools is the optional `evaluate` extra, imported only here.
"""

from __future__ import annotations

import contextlib
import io
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from edged.dataset.coco import CocoFile, load_coco
from edged.errors import DataError, NoInputError, UnavailableError
from edged.types import Detection

MIN_TIMED_INVOKES = 20
UNUSED_LABELS = frozenset({"", "n/a", "???", "background"})


class ModelScore(msgspec.Struct, kw_only=True):
    """One model's row of the comparison (the `--json` object per model)."""

    model: str
    map50: float
    map: float
    per_class: dict[str, float]  # label → AP@0.5, for labels with at least one labelled object
    # (scores are pycocotools' own, rounded to 6 decimals)
    invoke_ms: float  # median of at least MIN_TIMED_INVOKES invokes, after a warm-up
    fps: float  # 1000 / invoke_ms: the model alone on this backend
    size_bytes: int
    backend: str
    labels_not_in_model: list[str] = []  # dataset labels with objects the model cannot detect


@dataclass(frozen=True)
class LabelledSet:
    path: Path
    coco: CocoFile
    images: dict[int, Path]  # image id → picture

    @property
    def labelled_names(self) -> list[str]:
        used = {a.category_id for a in self.coco.annotations}
        return [c.name for c in self.coco.categories if c.id in used]


def normalize(label: str) -> str:
    return " ".join(label.lower().split())


def open_labelled_set(dataset: Path, images_dir: Path | None) -> LabelledSet:
    """The COCO file and its pictures (in `images_dir`, default: the file's directory), checked to exist."""
    coco = load_coco(dataset)
    if not coco.images:
        raise DataError(f"{dataset}: no images")
    directory = images_dir or dataset.parent
    if not directory.is_dir():
        raise NoInputError(f"images directory {directory} does not exist")
    images = {image.id: directory / image.file_name for image in coco.images}
    missing = [path for path in images.values() if not path.is_file()]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise NoInputError(f"{dataset}: image {missing[0]}{more} not found (use --images DIR)")
    return LabelledSet(dataset, coco, images)


def category_ids(labelled: LabelledSet, model_labels: list[str]) -> dict[str, int]:
    """Model label → dataset category id, for the labels both know; DataError when they share none."""
    by_name = {normalize(c.name): c.id for c in labelled.coco.categories}
    common = {label: by_name[normalize(label)] for label in model_labels
              if normalize(label) not in UNUSED_LABELS and normalize(label) in by_name}
    if not common:
        sample = ", ".join(c.name for c in labelled.coco.categories[:5])
        raise DataError(f"no label in common with {labelled.path} (its categories: {sample}…)")
    return common


def coco_results(image_id: int, detections: list[Detection], width: int, height: int,
                 categories: dict[str, int]) -> list[dict[str, Any]]:
    """Detections as COCO result entries: [x, y, w, h] in pixels, clipped to the picture."""
    results = []
    for d in detections:
        if d.label not in categories:
            continue
        x0, y0 = min(max(d.box.xmin, 0.0), 1.0) * width, min(max(d.box.ymin, 0.0), 1.0) * height
        x1, y1 = min(max(d.box.xmax, 0.0), 1.0) * width, min(max(d.box.ymax, 0.0), 1.0) * height
        results.append({"image_id": image_id, "category_id": categories[d.label],
                        "bbox": [x0, y0, x1 - x0, y1 - y0], "score": d.score})
    return results


def coco_metrics(coco: CocoFile, results: list[dict[str, Any]], category_ids: list[int]
                 ) -> tuple[float, float, dict[str, float]]:
    """(mAP@0.5, mAP@[.5:.95], {label: AP@0.5}) by pycocotools over `category_ids` that have objects."""
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        raise UnavailableError("pycocotools is not installed: pip install 'edged[evaluate]'") from None
    labelled = {a.category_id for a in coco.annotations} & set(category_ids)
    if not labelled:
        raise DataError("no labelled object has a label the model knows")
    names = coco.category_names()
    if not results:
        return 0.0, 0.0, {names[i]: 0.0 for i in sorted(labelled)}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress; stdout is ours
        truth = COCO()
        truth.dataset = coco.to_pycocotools()
        truth.createIndex()
        evaluation = COCOeval(truth, truth.loadRes(results), "bbox")
        evaluation.params.catIds = sorted(labelled)
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    precision = evaluation.eval["precision"]  # [IoU thresholds, recall points, classes, areas, max dets]
    per_class = {}
    for index, category in enumerate(evaluation.params.catIds):
        curve = precision[0, :, index, 0, -1]
        per_class[names[category]] = float(curve[curve > -1].mean()) if (curve > -1).any() else 0.0
    return float(evaluation.stats[1]), float(evaluation.stats[0]), per_class


def evaluate_model(detector: Any, labelled: LabelledSet, load_image: Any) -> ModelScore:
    """Run an open Detector over every picture, time its invokes and score its detections."""
    categories = category_ids(labelled, detector.labels)
    results: list[dict[str, Any]] = []
    timings: list[float] = []
    first_tensor = None
    for image_id, path in labelled.images.items():
        image = load_image(str(path))
        tensor, geometry = detector.prepare(image)
        if first_tensor is None:
            first_tensor = tensor
            detector.invoke(tensor)  # warm-up: the first invoke allocates and is not representative
        start = time.perf_counter()
        outputs = detector.invoke(tensor)
        timings.append((time.perf_counter() - start) * 1000.0)
        height, width = image.shape[:2]
        results += coco_results(image_id, detector.postprocess(outputs, geometry), width, height, categories)
    while len(timings) < MIN_TIMED_INVOKES:
        start = time.perf_counter()
        detector.invoke(first_tensor)
        timings.append((time.perf_counter() - start) * 1000.0)
    map50, map_all, per_class = coco_metrics(labelled.coco, results, sorted(set(categories.values())))
    invoke_ms = statistics.median(timings)
    known = {normalize(label) for label in categories}
    missing = [name for name in labelled.labelled_names if normalize(name) not in known]
    return ModelScore(model=detector.model_name, map50=round(map50, 6), map=round(map_all, 6),
                      per_class={label: round(ap, 6) for label, ap in sorted(per_class.items())},
                      invoke_ms=round(invoke_ms, 3),
                      fps=round(1000.0 / invoke_ms, 1), size_bytes=detector.backend.model_path.stat().st_size,
                      backend=detector.backend_name, labels_not_in_model=missing)
