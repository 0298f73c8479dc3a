"""DetectorSettings: everything that decides which model runs where and which detections come out.
ModelSettings: the same choices for a classifier or segmenter, which have no detection filters.

One Struct serves the `[detector]` section of the config file, `edged detect`'s
flags and the tests, so a setting means the same thing everywhere. Every field
documents itself (title + description) so `edged config` can print them and
msgspec's decode errors name the key path ("at `$.detector.threads`").
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from edged.fields import documented

DEFAULT_MODEL = "ssd_mobilenet_v1_coco_quant"

RuntimeChoice = Literal["auto", "litert", "tflite_runtime", "tensorflow"]

# Where and how any model runs: shared by DetectorSettings and ModelSettings so each key means one thing.
Backend = Annotated[Literal["auto", "cpu", "edgetpu"], documented(
    "Backend", "`edgetpu` requires a Coral; `cpu` never touches it; `auto` uses the Edge TPU when one is "
    "attached and works, else the CPU file of the same network, saying why. The daemon is `online` on the "
    "CPU when no Edge TPU is attached, `degraded` when an attached one fails, and picks up a Coral plugged "
    "in later without a restart.")]
EdgeTpuDevice = Annotated[str, documented(
    "Edge TPU device", "libedgetpu device selector: `usb`, `usb:N`, `pci` or `pci:N`.",
    pattern=r"^(usb|pci)(:[0-9]+)?$")]
EdgeTpuLibrary = Annotated[str, documented(
    "Edge TPU library", "The delegate library to load (name on the loader path, or a path).")]
Threads = Annotated[int, documented("CPU threads", "Threads for CPU inference (XNNPACK).", ge=1, le=64)]
Runtime = Annotated[RuntimeChoice, documented(
    "Runtime", "TFLite runtime: `auto` prefers ai-edge-litert, then tflite_runtime, then tensorflow.")]
CpuRuntime = Annotated[RuntimeChoice | None, documented(
    "CPU runtime", "Runtime for the CPU backend only; default: `runtime`.")]
EdgeTpuRuntime = Annotated[RuntimeChoice | None, documented(
    "Edge TPU runtime", "Runtime for the Edge TPU backend only (the libedgetpu build must match the "
    "runtime it was built for, e.g. feranick's 16.0tf2.17.1 with tflite_runtime 2.17.1); "
    "default: `runtime`.")]
Resize = Annotated[Literal["stretch", "letterbox"], documented(
    "Resize", "`stretch` fills the model input (what the SSD models were trained on); `letterbox` keeps "
    "the aspect ratio and pads.")]


class DetectorSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Which model, which accelerator, which runtime, and how raw outputs become detections."""

    model: Annotated[str, documented(
        "Model", "Name of a model in the manifest (`edged models list`; its files are fetched with "
        "`edged models fetch NAME`) or of one added with `edged models add NAME`.")] = DEFAULT_MODEL
    cpu_variant: Annotated[Literal["cpu", "raw"], documented(
        "CPU variant", "Which CPU file of the model runs on the CPU: `cpu` (the model with its own "
        "post-process op) or `raw` (no NMS in the model: edged decodes the boxes and runs its NMS).")] = "cpu"
    model_file: Annotated[str | None, documented(
        "Model file", "A .tflite file to run on the CPU instead of the manifest's file (outputs: SSD "
        "post-process op, or raw SSD box encodings + scores with `anchors_file`).")] = None
    edgetpu_model_file: Annotated[str | None, documented(
        "Edge TPU model file", "A .tflite file to run through the Edge TPU delegate instead of the "
        "manifest's `_edgetpu.tflite` file.")] = None
    labels_file: Annotated[str | None, documented(
        "Labels file", "One label per line, line index = class id; default: the manifest model's labels.")] = None
    anchors_file: Annotated[str | None, documented(
        "Anchors file", "float32 .npy [N, 4] anchors (ycenter, xcenter, height, width; normalized) for a raw "
        "SSD `model_file`; manifest models bring their own.")] = None
    backend: Backend = "auto"
    edgetpu_device: EdgeTpuDevice = "usb"
    devices: Annotated[list[Annotated[str, msgspec.Meta(pattern=r"^(usb|pci)(:[0-9]+)?$")]], documented(
        "Edge TPU devices", "Several Edge TPUs, one worker each (e.g. `[\"usb:0\", \"usb:1\", \"pci:0\"]`): "
        "frames go to whichever is free, and one that fails hands its share to the others. Empty: "
        "`edgetpu_device` alone.")] = []
    workers: Annotated[int, documented(
        "CPU workers", "Worker processes for CPU inference, each with `threads` threads; frames go to "
        "whichever is free (on a multi-core Pi, 2 workers x 1 thread keep the cores busier than 1 x 2).",
        ge=1, le=16)] = 1
    hardware_root: Annotated[str, documented(
        "Hardware root", "Where edged looks for Edge TPUs (USB ids under `<root>/sys/bus/usb/devices`, "
        "`<root>/dev/apex_*`): `/` on a device; another directory for diagnostics, tests, or a container "
        "that mounts the host's /sys and /dev elsewhere.")] = "/"
    edgetpu_library: EdgeTpuLibrary = "libedgetpu.so.1"
    threads: Threads = 1
    runtime: Runtime = "auto"
    cpu_runtime: CpuRuntime = None
    edgetpu_runtime: EdgeTpuRuntime = None
    threshold: Annotated[float, documented(
        "Score threshold", "Detections scoring below this are dropped.", ge=0.0, le=1.0)] = 0.5
    nms_iou: Annotated[Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] | None, documented(
        "NMS IoU", "Boxes overlapping a better one by more than this IoU are suppressed. Default: the "
        "model's own value (0.6 for the SSD models), and no second NMS after a model's post-process op.")] = None
    class_agnostic: Annotated[bool, documented(
        "Class-agnostic NMS", "Let a box suppress overlapping boxes of any label, not only its own.")] = False
    allow_labels: Annotated[list[str], documented(
        "Allowed labels", "Report only these labels; empty: all.")] = []
    deny_labels: Annotated[list[str], documented(
        "Denied labels", "Never report these labels.")] = []
    min_area: Annotated[float, documented(
        "Minimum box area", "Smallest box to report, as a fraction of the image area.", ge=0.0, le=1.0)] = 0.0
    max_detections: Annotated[int, documented(
        "Max detections", "At most this many detections per image, best first.", ge=1, le=1000)] = 20
    resize: Resize = "stretch"
    tpu_retry_seconds: Annotated[float, documented(
        "Edge TPU retry", "While an attached Edge TPU fails (`auto`), try it again this often (seconds; 0: "
        "never). A Coral that appears is tried at once.", ge=0.0)] = 60.0

    def runtime_for(self, backend: Literal["cpu", "edgetpu"]) -> RuntimeChoice:
        """The runtime choice for one backend: its own override, else the shared one."""
        own = self.cpu_runtime if backend == "cpu" else self.edgetpu_runtime
        return own or self.runtime


class ModelSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Which classifier or segmenter runs where: the loading half of DetectorSettings, without SSD filters.

    What the model's outputs mean (scores or a class map) comes from the
    manifest's `kind` or, for a `model_file`, from its output shapes.
    """

    model: Annotated[str, documented(
        "Model", "Name of a classifier or segmenter in the manifest (`edged models list`; its files are "
        "fetched with `edged models fetch NAME`) or added with `edged models add NAME`.")]
    model_file: Annotated[str | None, documented(
        "Model file", "A .tflite file to run on the CPU instead of the manifest's file.")] = None
    edgetpu_model_file: Annotated[str | None, documented(
        "Edge TPU model file", "A .tflite file to run through the Edge TPU delegate instead of the "
        "manifest's `_edgetpu.tflite` file.")] = None
    labels_file: Annotated[str | None, documented(
        "Labels file", "One label per line, line index = class id; default: the manifest model's "
        "labels.")] = None
    backend: Backend = "auto"
    edgetpu_device: EdgeTpuDevice = "usb"
    edgetpu_library: EdgeTpuLibrary = "libedgetpu.so.1"
    threads: Threads = 1
    runtime: Runtime = "auto"
    cpu_runtime: CpuRuntime = None
    edgetpu_runtime: EdgeTpuRuntime = None
    resize: Annotated[Literal["stretch", "letterbox"], documented(
        "Resize", "`stretch` fills the model input (how Coral's classifiers and DeepLab are run); "
        "`letterbox` keeps the aspect ratio and pads.")] = "stretch"

    @property
    def cpu_variant(self) -> Literal["cpu"]:
        """Classifiers and segmenters have one CPU file (the `raw` variant is an SSD detector's)."""
        return "cpu"

    @property
    def anchors_file(self) -> None:
        return None

    def runtime_for(self, backend: Literal["cpu", "edgetpu"]) -> RuntimeChoice:
        own = self.cpu_runtime if backend == "cpu" else self.edgetpu_runtime
        return own or self.runtime
