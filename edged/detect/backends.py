"""Backends: a loaded TFLite interpreter on the CPU or behind the Edge TPU delegate.

Both share one small interface (`name`, `input_detail`, `output_details`,
`invoke`, `close`) and know nothing about what the outputs mean — decoding lives
in postprocess.py, so any model layout runs on any backend. `open_edgetpu`
raises `EdgeTpuUnavailable` carrying one readable line; the detector decides
whether that is fatal (`backend="edgetpu"`) or a reason to fall back (`auto`).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import mmap
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edged.detect.runtime import Runtime
from edged.errors import DataError

log = logging.getLogger(__name__)

EDGETPU_CUSTOM_OP = b"edgetpu-custom-op"


class EdgeTpuUnavailable(Exception):
    """The Edge TPU delegate could not be used; str(exc) is one line saying why."""


# USB Coral before first use (Global Unichip) and after the runtime loaded its firmware (Google).
EDGETPU_USB_IDS = {("1a6e", "089a"), ("18d1", "9302")}


def edgetpu_attached(sysfs: Path = Path("/sys/bus/usb/devices"), dev: Path = Path("/dev")) -> list[str]:
    """Edge TPUs visible to the kernel, without loading libedgetpu: "usb:<sysfs name>" / "pci:/dev/apex_N".

    Lets `edged models fetch` decide whether the Edge TPU build is worth
    downloading, `edged doctor` say what is plugged in, and `auto` choose
    between the Edge TPU and the CPU (and notice a Coral plugged in later).
    """
    found = [f"pci:{path}" for path in sorted(dev.glob("apex_*"))]
    for device in sorted(sysfs.glob("*")) if sysfs.is_dir() else []:
        try:
            ids = ((device / "idVendor").read_text().strip(), (device / "idProduct").read_text().strip())
        except OSError:
            continue
        if ids in EDGETPU_USB_IDS:
            found.append(f"usb:{device.name}")
    return found


def edgetpu_attached_under(root: Path) -> list[str]:
    """`edgetpu_attached` for a system whose /sys and /dev are under `root` (the `hardware_root` setting)."""
    return edgetpu_attached(root / "sys" / "bus" / "usb" / "devices", root / "dev")


def is_edgetpu_compiled(path: Path) -> bool:
    """True for files produced by edgetpu_compiler: they hold an `edgetpu-custom-op` the CPU cannot run."""
    if path.name.endswith("_edgetpu.tflite"):
        return True
    with path.open("rb") as handle:
        if path.stat().st_size == 0:
            return False
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return data.find(EDGETPU_CUSTOM_OP) != -1


class Backend:
    """An interpreter with tensors allocated, plus the name it reports (e.g. "cpu:litert-2.3.0:xnnpack:1")."""

    def __init__(self, interpreter: Any, *, name: str, runtime: Runtime, model_path: Path, delegate: Any = None):
        self.name = name
        self.runtime = runtime
        self.model_path = model_path
        self.interpreter = interpreter
        self._delegate = delegate  # kept alive as long as the interpreter that uses it
        self.input_details: list[dict[str, Any]] = interpreter.get_input_details()
        self.input_detail: dict[str, Any] = self.input_details[0]
        self.output_details: list[dict[str, Any]] = interpreter.get_output_details()

    def invoke(self, tensor: np.ndarray) -> list[np.ndarray]:
        """Run the model on one input tensor (HxWxC, batch added here); returns copies of all outputs."""
        self.interpreter.set_tensor(self.input_detail["index"], tensor[np.newaxis])
        self.interpreter.invoke()
        return [self.interpreter.get_tensor(detail["index"]) for detail in self.output_details]

    def close(self) -> None:
        """Drop the interpreter before its delegate: the delegate must outlive every graph it prepared."""
        self.interpreter = None
        self._delegate = None
        gc.collect()


def _interpreter(runtime: Runtime, model_path: Path, **kwargs: Any) -> Any:
    """Create and allocate an interpreter; a file the runtime cannot parse is a DataError."""
    try:
        interpreter = runtime.interpreter_class(model_path=str(model_path), **kwargs)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        detail = " ".join(str(exc).split())
        raise DataError(f"{model_path}: not a usable TFLite model ({detail})") from None
    return interpreter


def open_cpu(model_path: Path, *, runtime: Runtime, threads: int = 1) -> Backend:
    """The CPU backend: the runtime's default kernels plus XNNPACK, `threads` threads."""
    if is_edgetpu_compiled(model_path):
        raise DataError(f"{model_path} is compiled for the Edge TPU and cannot run on the CPU; "
                        "use the CPU file of the same network")
    interpreter = _interpreter(runtime, model_path, num_threads=threads)
    return Backend(interpreter, name=f"cpu:{runtime.key}-{runtime.version}:xnnpack:{threads}",
                   runtime=runtime, model_path=model_path)


def open_edgetpu(model_path: Path, *, runtime: Runtime, device: str = "usb",
                 library: str = "libedgetpu.so.1") -> Backend:
    """The Edge TPU backend: `load_delegate(library, {"device": device})`, then the model through it."""
    delegate = load_edgetpu_delegate(runtime, library, device)
    if not is_edgetpu_compiled(model_path):
        log.warning("%s is not compiled for the Edge TPU: it runs on the CPU through the delegate", model_path)
    try:
        interpreter = runtime.interpreter_class(model_path=str(model_path), experimental_delegates=[delegate])
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise EdgeTpuUnavailable(f"the Edge TPU could not run {model_path.name}: {' '.join(str(exc).split())}") \
            from None
    return Backend(interpreter, name=f"edgetpu:{device}", runtime=runtime, model_path=model_path,
                   delegate=delegate)


def load_edgetpu_delegate(runtime: Runtime, library: str, device: str) -> Any:
    """Load the delegate, turning each way it fails (research/ops.md §6) into one EdgeTpuUnavailable line."""
    reason = None
    with _quiet_delegate_finalizers():
        try:
            return runtime.load_delegate(library, {"device": device})
        except OSError as exc:
            reason = f"Edge TPU library {library} could not be loaded ({_one_line(exc)})"
        except AttributeError as exc:
            reason = f"{library} is not an Edge TPU delegate library ({_one_line(exc)})"
        except ValueError as exc:
            reason = f"no Edge TPU found for device '{device}'{_attached()} ({_one_line(exc)})"
        gc.collect()  # run the failed Delegate's finalizer now, while its noise is filtered
    raise EdgeTpuUnavailable(reason)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _attached() -> str:
    """What pycoral sees, when pycoral happens to be installed (it is optional and not on PyPI)."""
    try:
        from pycoral.utils.edgetpu import list_edge_tpus  # type: ignore[import-not-found]
    except ImportError:
        return ""
    found = [f"{tpu['type']}:{tpu['path']}" for tpu in list_edge_tpus()]
    return f"; attached: {', '.join(found) or 'none'}"


@contextlib.contextmanager
def _quiet_delegate_finalizers() -> Iterator[None]:
    """Swallow the "Exception ignored in Delegate.__del__" tracebacks a failed load_delegate leaves behind.

    The runtimes' Delegate finalizer assumes the library loaded and has its
    symbols; when it did not, it raises inside __del__ and Python prints a
    traceback to stderr although nothing is wrong beyond what we already report.
    """
    previous = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        if getattr(unraisable.object, "__qualname__", "") != "Delegate.__del__":
            previous(unraisable)

    sys.unraisablehook = hook
    try:
        yield
    finally:
        sys.unraisablehook = previous
