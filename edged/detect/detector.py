"""The Detector facade: loads an SSD model (loading.py) and turns images into Detections.

`Detector.open(settings)` loads through the shared path that decides where the
model runs: `edgetpu` must get the Edge TPU (else UnavailableError, exit 69),
`cpu` never touches it, `auto` tries the Edge TPU and falls back to the CPU file
of the same network, logging one line why (kept in `fallback_reason`). The steps
stay separate (`prepare`, `invoke`, `postprocess`) because the daemon runs
`invoke` in a child process and the benchmark times each one.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from edged.detect import backends
from edged.detect.catalog import ResolvedModel
from edged.detect.labels import read_labels
from edged.detect.layout import LayoutError, OpLayout, find_layout, settle_classes
from edged.detect.loading import OpenModel, load_model
from edged.detect.postprocess import Decoding, Filters, Postprocessor
from edged.detect.preprocess import InputSpec, quantize
from edged.detect.settings import DetectorSettings
from edged.errors import ConfigError, DataError
from edged.types import Detection, Geometry

log = logging.getLogger(__name__)


class DetectResult(msgspec.Struct, frozen=True):
    """Detections for one image, with the invoke time and the backend that produced them."""

    detections: list[Detection]
    inference_ms: float
    backend: str


class Detector(OpenModel):
    """An SSD detector loaded on one backend, with the postprocessing its outputs need."""

    def __init__(self, backend: backends.Backend, postprocessor: Postprocessor, settings: DetectorSettings, *,
                 model_name: str, fallback_reason: str | None = None):
        super().__init__(backend, model_name=model_name, fallback_reason=fallback_reason,
                         resize=settings.resize)
        self.postprocessor = postprocessor
        self.settings = settings

    @property
    def labels(self) -> list[str]:
        return self.postprocessor.labels

    @classmethod
    def open(cls, settings: DetectorSettings, *, backend: str | None = None,
             models_dir: Path | None = None) -> Detector:
        """Load the model on the chosen backend ("auto" | "cpu" | "edgetpu"; default: settings.backend)."""
        loaded = load_model(settings, "detector", backend=backend, models_dir=models_dir)
        try:
            postprocessor = make_postprocessor(loaded.backend, loaded.resolved, settings,
                                               op_list(loaded.backend))
        except Exception:
            loaded.backend.close()
            raise
        return cls(loaded.backend, postprocessor, settings, model_name=loaded.resolved.name,
                   fallback_reason=loaded.fallback_reason)

    def postprocess(self, outputs: list[np.ndarray], geometry: Geometry = Geometry()) -> list[Detection]:
        """Raw outputs → detections (threshold, labels, area, NMS, max count), boxes in the source frame."""
        return self.postprocessor(outputs, geometry)

    def detect(self, image: np.ndarray) -> DetectResult:
        tensor, geometry = self.prepare(image)
        outputs, inference_ms = self.timed_invoke(tensor)
        return DetectResult(self.postprocess(outputs, geometry), inference_ms, self.backend_name)


def op_list(backend: backends.Backend) -> list[dict[str, Any]] | None:
    """The interpreter's op list (what tells an SSD post-process op's outputs apart); None where the runtime
    does not offer one."""
    interpreter = backend.interpreter
    return interpreter._get_ops_details() if hasattr(interpreter, "_get_ops_details") else None


def make_postprocessor(backend: backends.Backend, resolved: ResolvedModel, settings: DetectorSettings,
                       ops: list[dict[str, Any]] | None) -> Postprocessor:
    """The postprocess for a loaded SSD model; without `ops`, outputs are told apart by shapes and values."""
    tensors = backend.interpreter.get_tensor_details()
    shapes = {int(t["index"]): tuple(int(v) for v in t["shape"]) for t in tensors}
    try:
        layout = find_layout(backend.output_details, ops, shapes)
    except LayoutError as exc:
        raise DataError(f"{backend.model_path}: not an SSD detection model: {exc}") from None
    labels = read_labels(resolved.labels)
    decoding = None
    if isinstance(layout, OpLayout) and not layout.classes_known:
        layout = _settle_by_probe(backend, layout, labels)
    if isinstance(layout, OpLayout):
        classes = layout.classes_in_model
        if classes is not None and len(labels) not in (classes, classes - 1):
            raise DataError(f"labels file {resolved.labels} has {len(labels)} labels but "
                            f"{backend.model_path.name} scores {classes - 1} classes (+ background)")
    else:
        decoding = _decoding(backend.model_path, layout.anchors_count, resolved)
        classes = decoding.num_classes or layout.score_columns - 1
        if len(labels) != classes:
            raise DataError(f"labels file {resolved.labels} has {len(labels)} labels but "
                            f"{backend.model_path.name} scores {classes} classes")
    return Postprocessor(layout, labels, _filters(settings, labels), decoding)


def _settle_by_probe(backend: backends.Backend, layout: OpLayout, labels: list[str]) -> OpLayout:
    """Without an op list, tell class ids from scores by their values on one invoke of a mid-grey picture.

    The SSD post-process op reports its top boxes even for a blank picture
    (with low scores), which is enough to see which output holds whole numbers
    below the label count. If this probe cannot tell, the first frames decide
    (Postprocessor does the same check until one does).
    """
    spec = InputSpec.from_detail(backend.input_detail)
    grey = quantize(np.full((spec.height, spec.width, 3), 128, dtype=np.uint8), spec)
    try:
        settled = settle_classes(layout, backend.invoke(grey), len(labels))
    except LayoutError as exc:
        raise DataError(f"{backend.model_path}: not an SSD detection model: {exc}") from None
    if settled is None:
        log.info("%s: classes and scores outputs not told apart yet; the first frames decide",
                 backend.model_path.name)
        return layout
    return settled


def _decoding(model_path: Path, anchors_count: int, resolved: ResolvedModel) -> Decoding:
    if resolved.anchors is None:
        raise DataError(f"{model_path}: raw SSD outputs ({anchors_count} anchors) need an anchors file "
                        "(detector.anchors_file / the manifest's raw variant)")
    try:
        anchors = np.load(resolved.anchors, allow_pickle=False).astype(np.float32)
    except (OSError, ValueError) as exc:
        raise DataError(f"anchors file {resolved.anchors} cannot be read ({exc})") from None
    if anchors.shape != (anchors_count, 4):
        raise DataError(f"anchors file {resolved.anchors} holds {anchors.shape} anchors but "
                        f"{model_path.name} has {anchors_count}")
    if resolved.decode is None:
        return Decoding(anchors)
    options = json.loads(resolved.decode.read_text())["postprocess_options"]
    scales = tuple(float(options[k]) for k in ("y_scale", "x_scale", "h_scale", "w_scale"))
    return Decoding(anchors, scales, float(options["nms_iou_threshold"]), int(options["num_classes"]))


def _filters(settings: DetectorSettings, labels: list[str]) -> Filters:
    known = set(labels)
    for key in ("allow_labels", "deny_labels"):
        unknown = [name for name in getattr(settings, key) if name not in known]
        if unknown:
            raise ConfigError(f"detector.{key}: unknown label(s) {', '.join(map(repr, unknown))}")
    allowed = None
    if settings.allow_labels or settings.deny_labels:
        names = np.array(labels, dtype=object)
        allowed = np.ones(len(labels), dtype=bool) if not settings.allow_labels else np.isin(names,
                                                                                            settings.allow_labels)
        allowed &= ~np.isin(names, settings.deny_labels)
    return Filters(threshold=settings.threshold, nms_iou=settings.nms_iou, class_agnostic=settings.class_agnostic,
                   allowed=allowed, min_area=settings.min_area, max_detections=settings.max_detections)
