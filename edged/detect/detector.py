"""The Detector facade: picks a backend, loads the model, and turns images into Detections.

`Detector.open(settings)` is the one place that decides where the model runs:
`edgetpu` must get the Edge TPU (else UnavailableError, exit 69), `cpu` never
touches it, `auto` tries the Edge TPU and falls back to the CPU file of the same
network, logging one line why (kept in `fallback_reason`). The steps stay
separate (`prepare`, `invoke`, `postprocess`) because the daemon runs `invoke` in
a child process and the benchmark times each one.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import msgspec
import numpy as np

from edged.detect import backends
from edged.detect.models import ResolvedModel, read_labels, resolve
from edged.detect.postprocess import Decoding, Filters, LayoutError, OpLayout, Postprocessor, find_layout
from edged.detect.preprocess import InputSpec, prepare
from edged.detect.runtime import load_runtime
from edged.detect.settings import DetectorSettings
from edged.errors import ConfigError, DataError, UnavailableError
from edged.types import Detection, Geometry

log = logging.getLogger(__name__)


class DetectResult(msgspec.Struct, frozen=True):
    """Detections for one image, with the invoke time and the backend that produced them."""

    detections: list[Detection]
    inference_ms: float
    backend: str


class Detector:
    """A model loaded on one backend, with the postprocessing its outputs need."""

    def __init__(self, backend: backends.Backend, postprocessor: Postprocessor, settings: DetectorSettings, *,
                 model_name: str, fallback_reason: str | None = None):
        self.backend = backend
        self.postprocessor = postprocessor
        self.settings = settings
        self.model_name = model_name
        self.fallback_reason = fallback_reason
        self.input_spec = InputSpec.from_detail(backend.input_detail)

    @property
    def backend_name(self) -> str:
        return self.backend.name

    @property
    def runtime(self) -> str:
        return str(self.backend.runtime)

    @property
    def input_size(self) -> tuple[int, int]:
        return self.input_spec.width, self.input_spec.height

    @property
    def labels(self) -> list[str]:
        return self.postprocessor.labels

    @classmethod
    def open(cls, settings: DetectorSettings, *, backend: str | None = None,
             models_dir: Path | None = None) -> Detector:
        """Load the model on the chosen backend ("auto" | "cpu" | "edgetpu"; default: settings.backend)."""
        choice = backend or settings.backend
        if choice not in ("auto", "cpu", "edgetpu"):
            raise ConfigError(f"unknown backend {choice!r} (choose auto, cpu or edgetpu)")
        resolved = resolve(settings, models_dir=models_dir)
        loaded, reason = None, None
        if choice in ("auto", "edgetpu"):
            try:
                loaded = _open_edgetpu(settings, resolved)
            except backends.EdgeTpuUnavailable as exc:
                if choice == "edgetpu":
                    raise UnavailableError(f"Edge TPU unavailable: {exc}") from None
                reason = str(exc)
        if loaded is None:
            if resolved.cpu is None:
                raise resolved.cpu_problem or UnavailableError(f"model {settings.model} has no CPU file")
            loaded = backends.open_cpu(resolved.cpu, runtime=load_runtime(settings.runtime_for("cpu")),
                                       threads=settings.threads)
            if reason:
                log.info("Edge TPU not used: %s; running %s on the CPU", reason, resolved.cpu.name)
        try:
            postprocessor = _postprocessor(loaded, resolved, settings)
        except Exception:
            loaded.close()
            raise
        return cls(loaded, postprocessor, settings, model_name=resolved.name, fallback_reason=reason)

    def prepare(self, image: np.ndarray) -> tuple[np.ndarray, Geometry]:
        """RGB uint8 HxWx3 image of any size → (input tensor, Geometry for mapping boxes back)."""
        return prepare(image, self.input_spec, self.settings.resize)

    def invoke(self, tensor: np.ndarray) -> list[np.ndarray]:
        """Run the model; returns copies of the raw outputs (safe to keep after the next invoke)."""
        return self.backend.invoke(tensor)

    def postprocess(self, outputs: list[np.ndarray], geometry: Geometry = Geometry()) -> list[Detection]:
        """Raw outputs → detections (threshold, labels, area, NMS, max count), boxes in the source frame."""
        return self.postprocessor(outputs, geometry)

    def detect(self, image: np.ndarray) -> DetectResult:
        tensor, geometry = self.prepare(image)
        start = time.perf_counter()
        outputs = self.invoke(tensor)
        inference_ms = (time.perf_counter() - start) * 1000.0
        return DetectResult(self.postprocess(outputs, geometry), round(inference_ms, 3), self.backend_name)

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> Detector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _open_edgetpu(settings: DetectorSettings, resolved: ResolvedModel) -> backends.Backend:
    """The Edge TPU backend, or EdgeTpuUnavailable with the first reason it cannot be used.

    The delegate is probed before the model file is looked at: "no Edge TPU" is
    the more useful line on a machine without one than "file not fetched".
    """
    runtime = load_runtime(settings.runtime_for("edgetpu"))
    if resolved.edgetpu is None:
        delegate = backends.load_edgetpu_delegate(runtime, settings.edgetpu_library, settings.edgetpu_device)
        del delegate
        raise backends.EdgeTpuUnavailable(resolved.edgetpu_problem or "no Edge TPU model file")
    return backends.open_edgetpu(resolved.edgetpu, runtime=runtime, device=settings.edgetpu_device,
                                 library=settings.edgetpu_library)


def _postprocessor(backend: backends.Backend, resolved: ResolvedModel, settings: DetectorSettings) -> Postprocessor:
    interpreter = backend.interpreter
    ops = interpreter._get_ops_details() if hasattr(interpreter, "_get_ops_details") else None
    shapes = {int(t["index"]): tuple(int(v) for v in t["shape"]) for t in interpreter.get_tensor_details()}
    try:
        layout = find_layout(backend.output_details, ops, shapes)
        InputSpec.from_detail(backend.input_detail)
    except (LayoutError, ValueError) as exc:
        raise DataError(f"{backend.model_path}: not an SSD detection model: {exc}") from None
    labels = read_labels(resolved.labels)
    decoding = None
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
