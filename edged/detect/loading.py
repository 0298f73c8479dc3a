"""One loading path for every kind of model: resolve its files, pick the backend, refuse what cannot run.

Detector, Classifier and Segmenter all open their model through `load_model`,
so the choice of accelerator (`auto` tries the Edge TPU and falls back to the
CPU file of the same network, saying why once), the integrity checks and the
refusals are the same for every kind: a model of another kind than the command
expects, or a model with more than one input (a recurrent model's state inputs
cannot be fed from a picture; running it with zeroed state would give silent
nonsense). What the three share once loaded — prepare, invoke, close — is
`OpenModel`; each adds only its postprocess.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Self

import numpy as np

from edged.detect import backends
from edged.detect.catalog import ResolvedModel, resolve
from edged.detect.models import ModelKind
from edged.detect.preprocess import InputSpec, prepare
from edged.detect.runtime import load_runtime
from edged.detect.settings import DetectorSettings, ModelSettings
from edged.errors import ConfigError, DataError, UnavailableError
from edged.types import Geometry

log = logging.getLogger(__name__)

COMMAND = {"detector": "edged detect", "classifier": "edged classify", "segmenter": "edged segment"}
WHAT = {"detector": "an SSD detection model", "classifier": "a classifier (one output of class scores)",
        "segmenter": "a segmenter (one output with a class or class scores per pixel)"}


@dataclass(frozen=True)
class Loaded:
    """A model on its backend, the files it came from, and why the Edge TPU was not used (if it was not)."""

    backend: backends.Backend
    resolved: ResolvedModel
    fallback_reason: str | None


def output_shapes(details: list[dict[str, Any]]) -> list[tuple[int, ...]]:
    return [tuple(int(v) for v in detail["shape"]) for detail in details]


def output_kind(details: list[dict[str, Any]]) -> ModelKind | None:
    """What a model's outputs say it is: SSD heads (4 post-process outputs or 2 raw ones), one vector of class
    scores ([1, C], [1, 1, 1, C]), or one per-pixel output ([1, H, W] ids or [1, H, W, C] scores)."""
    shapes = output_shapes(details)
    if len(shapes) in (2, 4):
        return "detector"
    if len(shapes) != 1 or len(shapes[0]) < 2:
        return None
    shape = shapes[0]
    if int(np.prod(shape[:-1])) == 1:
        return "classifier"
    if len(shape) in (3, 4) and shape[1] > 1 and shape[2] > 1:
        return "segmenter"
    return None


def load_model(settings: DetectorSettings | ModelSettings, expect: ModelKind, *, backend: str | None = None,
               models_dir: Path | None = None) -> Loaded:
    """Load the model on the chosen backend ("auto" | "cpu" | "edgetpu"; default: settings.backend).

    Raises DataError (exit 65) for a model of another kind than `expect` or with
    more than one input, before anything runs.
    """
    choice = backend or settings.backend
    if choice not in ("auto", "cpu", "edgetpu"):
        raise ConfigError(f"unknown backend {choice!r} (choose auto, cpu or edgetpu)")
    resolved = resolve(settings, models_dir=models_dir)
    if resolved.kind is not None and resolved.kind != expect:
        raise DataError(f"model {resolved.name} is a {resolved.kind}, not a {expect}: use "
                        f"`{COMMAND[resolved.kind]} --model {resolved.name}`")
    opened, reason = None, None
    if choice in ("auto", "edgetpu"):
        try:
            opened = _open_edgetpu(settings, resolved)
        except backends.EdgeTpuUnavailable as exc:
            if choice == "edgetpu":
                raise UnavailableError(f"Edge TPU unavailable: {exc}") from None
            reason = str(exc)
    if opened is None:
        if resolved.cpu is None:
            raise resolved.cpu_problem or UnavailableError(f"model {settings.model} has no CPU file")
        opened = backends.open_cpu(resolved.cpu, runtime=load_runtime(settings.runtime_for("cpu")),
                                   threads=settings.threads)
        if reason:
            log.info("Edge TPU not used: %s; running %s on the CPU", reason, resolved.cpu.name)
    try:
        _check_inputs(opened)
        _check_kind(opened, expect)
    except Exception:
        opened.close()
        raise
    return Loaded(opened, resolved, reason)


def _open_edgetpu(settings: DetectorSettings | ModelSettings, resolved: ResolvedModel) -> backends.Backend:
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


def _check_inputs(backend: backends.Backend) -> None:
    if len(backend.input_details) != 1:
        names = ", ".join(str(detail["name"]) for detail in backend.input_details)
        raise DataError(f"{backend.model_path}: the model has {len(backend.input_details)} inputs ({names}); "
                        "edged feeds it one picture and cannot supply the others (e.g. a recurrent "
                        "model's state)")
    try:
        InputSpec.from_detail(backend.input_detail)
    except ValueError as exc:
        raise DataError(f"{backend.model_path}: not an image model: {exc}") from None


def _check_kind(backend: backends.Backend, expect: ModelKind) -> None:
    """Refuse a file whose outputs say it is another kind; unknown layouts are left to the postprocess."""
    found = output_kind(backend.output_details)
    if found == expect or (found is None and expect == "detector"):
        return
    shapes = output_shapes(backend.output_details)
    if found is None:
        raise DataError(f"{backend.model_path}: not {WHAT[expect]}: its outputs have shapes {shapes}")
    raise DataError(f"{backend.model_path}: not {WHAT[expect]}: its outputs {shapes} are those of "
                    f"{WHAT[found]}; use `{COMMAND[found]}`")


class OpenModel:
    """A loaded model of any kind: input preparation, invoke and the backend it runs on."""

    def __init__(self, backend: backends.Backend, *, model_name: str, fallback_reason: str | None = None,
                 resize: Literal["stretch", "letterbox"] = "stretch"):
        self.backend = backend
        self.model_name = model_name
        self.fallback_reason = fallback_reason
        self.resize = resize
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

    def prepare(self, image: np.ndarray) -> tuple[np.ndarray, Geometry]:
        """RGB uint8 HxWx3 image of any size → (input tensor, Geometry for mapping results back)."""
        return prepare(image, self.input_spec, self.resize)

    def invoke(self, tensor: np.ndarray) -> list[np.ndarray]:
        """Run the model; returns copies of the raw outputs (safe to keep after the next invoke)."""
        return self.backend.invoke(tensor)

    def timed_invoke(self, tensor: np.ndarray) -> tuple[list[np.ndarray], float]:
        """(outputs, invoke time in ms rounded to µs) — what the commands report as inference_ms."""
        start = time.perf_counter()
        outputs = self.invoke(tensor)
        return outputs, round((time.perf_counter() - start) * 1000.0, 3)

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
