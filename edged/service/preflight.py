"""What `edged run` would refuse at start, found without loading a model or opening a camera.

`edged config check` and `edged run` (at start and on every SIGHUP) call the
same `check_config`, so a file that passes the check does not then fail at
start: source URIs that can never work, a model name in neither the built-in
nor the local manifest (`edged models add`) or one of another kind (a
classifier as `[detector] model`, a detector as a camera's classifier or
segmenter), model and label files named but absent, labels in `allow_labels` /
`deny_labels` (and tracking, zone, second-stage or recording filters) that the
model's label file does not have. Each is a ConfigError (exit 78) naming the
key path. What the check cannot know — whether the manifest model is fetched,
whether a local model's files still match their pins, whether the camera is
plugged in — stays a runtime error (exit 69, or 65 for a file that is not the
pinned one).
"""

from __future__ import annotations

from pathlib import Path

from edged.config import Config
from edged.detect.catalog import Found, find_model
from edged.detect.labels import read_labels
from edged.detect.settings import DetectorSettings
from edged.errors import ConfigError, DataError, EdgedError, UnavailableError
from edged.service.recording import check_record_labels
from edged.service.tracking import check_labels
from edged.sources.factory import create_source

FILE_KEYS = ("model_file", "edgetpu_model_file", "labels_file", "anchors_file")
LABEL_FILTERS = ("allow_labels", "deny_labels")


def check_config(config: Config, where: str | None = None) -> None:
    """Raise ConfigError ("WHERE: key.path: what is wrong") for the first problem found."""
    prefix = f"{where}: " if where else ""
    for index, camera in enumerate(config.cameras):
        try:
            create_source(camera.name, camera.source)
        except ConfigError as exc:
            raise ConfigError(f"{prefix}cameras[{index}].source: {exc}") from None
    try:
        check_detector(config.detector)
        check_stage_models(config)
        check_labels(config)
        check_record_labels(config)
    except ConfigError as exc:
        raise ConfigError(f"{prefix}{exc}") from None


def check_kind(model: str, kind: str, key: str) -> Found:
    """A model (built-in or local) of the kind the key runs; else one line naming the key, the model and its
    kind."""
    try:
        found = find_model(model)
    except ConfigError as exc:
        raise ConfigError(f"{key}: {exc}") from None
    entry = found.entry
    if entry.kind != kind:
        where = {"detector": "[detector] model", "classifier": "a camera's [[cameras.classify]] model",
                 "segmenter": "a camera's [cameras.segment] model"}[entry.kind]
        raise ConfigError(f"{key}: {model} is a {entry.kind}, not a {kind} "
                          f"(a {entry.kind} belongs in {where})")
    return found


def check_stage_models(config: Config) -> None:
    """Each camera's second-stage classifiers are classifiers and its segmenter a segmenter."""
    for i, camera in enumerate(config.cameras):
        for j, entry in enumerate(camera.classify):
            check_kind(entry.model, "classifier", f"cameras[{i}].classify[{j}].model")
        if camera.segment is not None:
            check_kind(camera.segment.model, "segmenter", f"cameras[{i}].segment.model")


def check_detector(settings: DetectorSettings) -> None:
    """The model exists (built-in or local) and is a detector, named files exist, filtered labels exist."""
    found = check_kind(settings.model, "detector", "detector.model")
    for key in FILE_KEYS:
        name = getattr(settings, key)
        if name is not None and not Path(name).is_file():
            raise ConfigError(f"detector.{key}: {name} does not exist or is not a file")
    if not (settings.allow_labels or settings.deny_labels):
        return
    try:
        labels_path = Path(settings.labels_file) if settings.labels_file else found.labels()
    except (UnavailableError, DataError):
        return  # a local model's labels gone or changed: the run says so with the model's own error
    try:
        known = set(read_labels(labels_path))
    except EdgedError as exc:
        raise ConfigError(f"detector.labels_file: {exc}") from None
    for key in LABEL_FILTERS:
        unknown = [label for label in getattr(settings, key) if label not in known]
        if unknown:
            raise ConfigError(f"detector.{key}: unknown label(s) {', '.join(map(repr, unknown))} "
                              f"(not in {labels_path.name})")
