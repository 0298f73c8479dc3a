"""Check a user's model files before they are added: the same checks that loading them by name will make.

The kind comes from the model's outputs (loading.output_kind: SSD heads, one
vector of class scores, one per-pixel map), never from names; `--kind` is a
claim that must agree. The file is then opened on the CPU by the Detector,
Classifier or Segmenter itself, so the layout detection, the label count (with
the leniency built-in models get: a missing background line, a note after a
blank line) and the anchors are judged by the code that will run the model. An
Edge TPU build cannot run here; it must hold the `edgetpu-custom-op` and take
the same input as the CPU file, with as many outputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edged.detect import backends
from edged.detect.layout import LayoutError, RawLayout, find_layout
from edged.detect.loading import COMMAND, WHAT, output_kind, output_shapes
from edged.detect.models import ModelKind, OutputKind, load_manifest
from edged.detect.runtime import load_runtime
from edged.errors import EX_USAGE, DataError, EdgedError, NoInputError
from edged.local_models.tflite_file import contains, require_tflite, summarize

if TYPE_CHECKING:
    from edged.detect.classifier import Classifier
    from edged.detect.detector import Detector
    from edged.detect.segmenter import Segmenter

EDGETPU_OP = backends.EDGETPU_CUSTOM_OP.decode()


@dataclass(frozen=True)
class Submission:
    """The files of a model to add, as given on the command line."""

    file: Path
    labels: Path
    edgetpu: Path | None = None
    anchors: Path | None = None
    kind: ModelKind | None = None  # the user's claim; None: the outputs decide

    def named(self) -> list[tuple[str, Path]]:
        files = [("model file", self.file), ("labels file", self.labels),
                 ("Edge TPU model file", self.edgetpu), ("anchors file", self.anchors)]
        return [(what, path) for what, path in files if path is not None]


@dataclass(frozen=True)
class Vetted:
    """What the files were found to be: what the local manifest records and `models add` reports."""

    kind: ModelKind
    output: OutputKind
    input_size: tuple[int, int]  # width, height
    input_dtype: str
    labels: int  # labels the model uses (a note after a blank line is not a label)

    def describe(self) -> str:
        width, height = self.input_size
        return (f"{self.kind}, {width}x{height} {self.input_dtype} input, {self.output} outputs, "
                f"{self.labels} labels")


def vet(submission: Submission) -> Vetted:
    """Vetted facts about the files, or the first problem as one line (66 missing, 65 wrong, 2 misused)."""
    for what, path in submission.named():
        if not path.is_file():
            raise NoInputError(f"{what} {path} does not exist")
    require_tflite(submission.file, "model file")
    kind, output = _kind_and_output(submission)
    with _open_as(kind, submission) as model:
        vetted = Vetted(kind, output, model.input_size, model.input_spec.dtype.name, len(model.labels))
        cpu_input = model.backend.input_detail
        cpu_outputs = len(model.backend.output_details)
    if submission.edgetpu is not None:
        _check_edgetpu(submission.edgetpu, submission.file, cpu_input, cpu_outputs)
    return vetted


def _kind_and_output(submission: Submission) -> tuple[ModelKind, OutputKind]:
    """The kind the outputs say (refusing a contradicting --kind) and what the outputs are: one CPU load."""
    backend = backends.open_cpu(submission.file, runtime=load_runtime("auto"))
    try:
        details = backend.output_details
        shapes = output_shapes(details)
        found = output_kind(details)
        if found is None:
            raise DataError(f"{submission.file}: its outputs {shapes} are not those of a detector, "
                            "classifier or segmenter")
        if submission.kind is not None and submission.kind != found:
            raise DataError(f"{submission.file} is not {WHAT[submission.kind]}: its outputs {shapes} are "
                            f"those of {WHAT[found]} (add it with --kind {found}, run it with "
                            f"`{COMMAND[found]}`)")
        if found == "detector":
            return found, _detector_output(backend, submission)
        if submission.anchors is not None:
            raise EdgedError(f"--anchors is for a raw SSD detector; {submission.file} is a {found}",
                             exit_code=EX_USAGE)
        if found == "classifier":
            return found, "scores"
        return found, "class_map" if len(shapes[0]) == 3 else "pixel_scores"
    finally:
        backend.close()


def _detector_output(backend: backends.Backend, submission: Submission) -> OutputKind:
    from edged.detect.detector import op_list

    tensors = backend.interpreter.get_tensor_details()
    shapes = {int(t["index"]): tuple(int(v) for v in t["shape"]) for t in tensors}
    try:
        layout = find_layout(backend.output_details, op_list(backend), shapes)
    except LayoutError as exc:
        raise DataError(f"{submission.file}: not an SSD detection model: {exc}") from None
    if isinstance(layout, RawLayout):
        if submission.anchors is None:
            raise DataError(f"{submission.file} has raw SSD outputs ({layout.anchors_count} anchors, no "
                            "post-process op): give its anchors with --anchors ANCHORS.npy")
        return "raw_ssd"
    if submission.anchors is not None:
        raise EdgedError(f"--anchors is for a raw SSD detector; {submission.file} decodes its own boxes "
                         "(it ends in the post-process op)", exit_code=EX_USAGE)
    return "postprocess"


def _open_as(kind: ModelKind, submission: Submission) -> Detector | Classifier | Segmenter:
    """The model opened on the CPU by the class that will run it: its label and layout checks apply."""
    file, labels = str(submission.file), str(submission.labels)
    if kind == "detector":
        from edged.detect.detector import Detector
        from edged.detect.settings import DetectorSettings

        anchors = str(submission.anchors) if submission.anchors else None
        return Detector.open(DetectorSettings(model_file=file, labels_file=labels, anchors_file=anchors,
                                              backend="cpu"))
    from edged.detect.settings import ModelSettings

    settings = ModelSettings(model=load_manifest().default_for(kind), model_file=file, labels_file=labels,
                             backend="cpu")
    if kind == "classifier":
        from edged.detect.classifier import Classifier

        return Classifier.open(settings)
    from edged.detect.segmenter import Segmenter

    return Segmenter.open(settings)


def _check_edgetpu(edgetpu: Path, cpu_file: Path, cpu_input: dict[str, Any], cpu_outputs: int) -> None:
    """An Edge TPU build of the same network: compiled (custom op present), same input, as many outputs."""
    require_tflite(edgetpu, "Edge TPU model file")
    summary = summarize(edgetpu)
    compiled = EDGETPU_OP in summary.custom_ops if summary else contains(edgetpu, backends.EDGETPU_CUSTOM_OP)
    if not compiled:
        raise DataError(f"Edge TPU model file {edgetpu} holds no {EDGETPU_OP}: it is not compiled for the "
                        "Edge TPU (run edgetpu_compiler on the CPU file)")
    if summary is None:
        return
    expected = (tuple(int(v) for v in cpu_input["shape"]), cpu_input["dtype"].__name__)
    found = [(spec.shape, spec.dtype) for spec in summary.inputs]
    if found != [expected] or summary.outputs != cpu_outputs:
        theirs = ", ".join(f"{list(shape)} {dtype}" for shape, dtype in found)
        raise DataError(f"Edge TPU model file {edgetpu} takes {theirs} with {summary.outputs} outputs but "
                        f"{cpu_file.name} takes {list(expected[0])} {expected[1]} with {cpu_outputs}: they "
                        "are not builds of the same network")
