"""Which models exist — the manifest shipped with edged plus the local one `edged models add` writes — and how
settings become verified files.

The local manifest, `<models dir>/models.local.toml`, uses the built-in
manifest's model schema; its files live in `<models dir>/local/`, each pinned by
SHA-256 — its labels file too, since a user's labels are part of the model
(built-in labels ship in the package). A name is looked up in the built-in
manifest first and `models add` refuses a built-in name, so a config naming a zoo
model always gets the zoo's bytes; a broken local manifest is only read (and
reported) when a name is not built-in.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import msgspec

from edged import paths
from edged.detect.models import (
    FileEntry,
    ModelEntry,
    ModelKind,
    load_manifest,
    packaged_labels,
    verified_path,
)
from edged.detect.settings import DetectorSettings, ModelSettings
from edged.errors import ConfigError, DataError, NoInputError, UnavailableError

LOCAL_MANIFEST = "models.local.toml"
LOCAL_DIR = "local"

Origin = Literal["built-in", "local"]


class LocalManifest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The models added on this machine, by name (no defaults, no samples: those are the built-in's)."""

    models: dict[str, ModelEntry] = {}


def local_manifest_path(models_dir: Path) -> Path:
    return models_dir / LOCAL_MANIFEST


def local_files_dir(models_dir: Path) -> Path:
    return models_dir / LOCAL_DIR


def load_local(models_dir: Path) -> LocalManifest:
    """The local manifest (empty when there is none); a file edged cannot read is a ConfigError naming it."""
    path = local_manifest_path(models_dir)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return LocalManifest()
    except OSError as exc:
        raise ConfigError(f"{path} cannot be read ({exc.strerror})") from None
    try:
        return msgspec.toml.decode(data, type=LocalManifest)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ConfigError(f"{path}: {exc} (it is written by `edged models add`; remove the model and add it "
                          "again)") from None


@dataclass(frozen=True)
class Found:
    """A model by name: its entry, the directory holding its files, and where it comes from."""

    name: str
    entry: ModelEntry
    directory: Path
    origin: Origin

    def repair_hint(self, variant: str = "cpu") -> str:
        """The command that puts a missing or wrong file right."""
        if self.origin == "local":
            return f"edged models add {self.name} --replace --file … --labels …"
        return f"edged models fetch {self.name}" + ("" if variant == "cpu" else f" --variant {variant}")

    def labels(self) -> Path:
        if self.origin == "built-in":
            return packaged_labels(self.entry.labels)
        pin = FileEntry(file=self.entry.labels, sha256=self.entry.labels_sha256)
        return verified_path(pin, self.directory, fetch_hint=self.repair_hint())


def find_model(name: str, models_dir: Path | None = None) -> Found:
    """The built-in model of that name, else the local one; ConfigError (exit 78) naming both lists if
    neither has it."""
    directory = models_dir or paths.models_dir()
    manifest = load_manifest()
    if name in manifest.models:
        return Found(name, manifest.models[name], directory, "built-in")
    local = load_local(directory)
    if name in local.models:
        return Found(name, local.models[name], local_files_dir(directory), "local")
    known = ", ".join(manifest.models) + (f"; added here: {', '.join(local.models)}" if local.models else "")
    raise ConfigError(f"unknown model {name!r} (known: {known})")


# ---- settings → files --------------------------------------------------------------------------------

@dataclass(frozen=True)
class ResolvedModel:
    """What loading a model needs: labels and, per backend, the file to load (None: not available)."""

    name: str
    labels: Path
    cpu: Path | None
    cpu_output: str | None  # an OutputKind, or None (unknown: a user file)
    edgetpu: Path | None
    anchors: Path | None
    decode: Path | None
    cpu_problem: Exception | None = None  # why `cpu` is None (raised when the CPU is actually needed)
    edgetpu_problem: str | None = None  # why `edgetpu` is None, for the fallback line
    kind: ModelKind | None = None  # the manifest's kind; None for a user file (its outputs tell)


def resolve(settings: DetectorSettings | ModelSettings, *, models_dir: Path | None = None) -> ResolvedModel:
    """Map settings (model name and/or explicit files) to local paths, verifying the catalog's files."""
    found = find_model(settings.model, models_dir)
    labels = Path(settings.labels_file) if settings.labels_file else found.labels()
    cpu = cpu_output = anchors = decode = cpu_problem = None
    if settings.model_file:
        cpu = _user_file(settings.model_file, "model file")
        anchors = _user_file(settings.anchors_file, "anchors file") if settings.anchors_file else None
    else:
        variant = found.entry.cpu if settings.cpu_variant == "cpu" else found.entry.raw
        hint = found.repair_hint(settings.cpu_variant)
        if variant is None:
            cpu_problem = UnavailableError(f"model {settings.model} has no {settings.cpu_variant} variant")
        else:
            try:
                directory = found.directory
                cpu = verified_path(variant, directory, fetch_hint=hint)
                cpu_output = variant.output
                anchors, decode = (verified_path(extra, directory, fetch_hint=hint) if extra else None
                                   for extra in (variant.anchors, variant.decode))
            except (UnavailableError, DataError) as exc:
                cpu, cpu_problem = None, exc
    edgetpu, edgetpu_problem = _edgetpu_file(settings, found)
    name = Path(settings.model_file).stem if settings.model_file else settings.model
    return ResolvedModel(name, labels, cpu, cpu_output, edgetpu, anchors, decode,
                         cpu_problem, edgetpu_problem, None if settings.model_file else found.entry.kind)


def _edgetpu_file(settings: DetectorSettings | ModelSettings, found: Found) -> tuple[Path | None, str | None]:
    if settings.edgetpu_model_file:
        return _user_file(settings.edgetpu_model_file, "Edge TPU model file"), None
    if settings.model_file:
        return None, "no Edge TPU build is configured for the given model file (edgetpu_model_file)"
    if found.entry.edgetpu is None:
        return None, f"model {settings.model} has no Edge TPU variant"
    try:
        hint = found.repair_hint("edgetpu")
        return verified_path(found.entry.edgetpu, found.directory, fetch_hint=hint), None
    except (UnavailableError, DataError) as exc:
        return None, str(exc)


def _user_file(name: str, what: str) -> Path:
    path = Path(name)
    if not path.is_file():
        raise NoInputError(f"{what} {path} does not exist")
    return path
