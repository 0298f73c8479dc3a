"""Which TFLite runtime runs the model: ai-edge-litert, tflite_runtime or tensorflow.lite.

LiteRT (`ai_edge_litert`) is preferred: wheels for Python 3.11–3.13 and far faster
on the uint8 SSD model. tflite_runtime stays selectable because a libedgetpu build
must match the runtime it was built against (feranick's builds pair with specific
tflite_runtime releases), and full TensorFlow is the last resort. The three expose
the same `Interpreter` / `load_delegate` API; only the import path differs.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from dataclasses import dataclass
from typing import Any, Callable

from edged.errors import UnavailableError

# choice → (module holding Interpreter/load_delegate, distribution names to read the version from)
_CANDIDATES: dict[str, tuple[str, tuple[str, ...]]] = {
    "litert": ("ai_edge_litert.interpreter", ("ai-edge-litert", "ai-edge-litert-nightly")),
    "tflite_runtime": ("tflite_runtime.interpreter", ("tflite-runtime", "tflite_runtime")),
    "tensorflow": ("tensorflow.lite", ("tensorflow", "tensorflow-cpu", "tensorflow-aarch64")),
}
_INSTALL_HINT = {
    "litert": "pip install ai-edge-litert",
    "tflite_runtime": "pip install 'edged[tflite]'",
    "tensorflow": "pip install tensorflow",
}


@dataclass(frozen=True)
class Runtime:
    """An imported TFLite runtime: its short key, distribution name, version and entry points."""

    key: str  # "litert" | "tflite_runtime" | "tensorflow"
    distribution: str  # "ai-edge-litert"
    version: str
    interpreter_class: Callable[..., Any]
    load_delegate: Callable[..., Any]

    def __str__(self) -> str:
        return f"{self.distribution} {self.version}"


def load_runtime(choice: str = "auto") -> Runtime:
    """Import the chosen runtime ("auto": the first of litert, tflite_runtime, tensorflow that imports)."""
    keys = list(_CANDIDATES) if choice == "auto" else [choice]
    if any(key not in _CANDIDATES for key in keys):
        raise UnavailableError(f"unknown TFLite runtime {choice!r} (choose auto, {', '.join(_CANDIDATES)})")
    failures = []
    for key in keys:
        try:
            return _import(key)
        except ImportError as exc:
            failures.append(f"{key}: {exc}")
    if choice == "auto":
        raise UnavailableError(
            "no TFLite runtime is installed (tried " + "; ".join(failures) + f"); {_INSTALL_HINT['litert']}")
    raise UnavailableError(f"TFLite runtime {choice} is not installed ({failures[0]}); {_INSTALL_HINT[choice]}")


def _import(key: str) -> Runtime:
    module_name, distributions = _CANDIDATES[key]
    module = importlib.import_module(module_name)
    if key == "tensorflow":
        interpreter_class, load_delegate = module.Interpreter, module.experimental.load_delegate
    else:
        interpreter_class, load_delegate = module.Interpreter, module.load_delegate
    distribution, version = _installed(module_name, distributions)
    return Runtime(key, distribution, version, interpreter_class, load_delegate)


def _installed(module_name: str, distributions: tuple[str, ...]) -> tuple[str, str]:
    """(distribution, version) of the imported module; Debian/pycoral-style installs may lack metadata."""
    for dist in distributions:
        try:
            return dist, importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    top = importlib.import_module(module_name.split(".")[0])
    return distributions[0], str(getattr(top, "__version__", "unknown"))
