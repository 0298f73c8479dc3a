"""The model manifest's schema (models/manifest.toml, shipped as `edged._models`) and integrity checks.

The manifest says which files make up each model and how to recognise the right
bytes; catalog.py adds the local models and turns settings into verified paths.
Verification is a hash over the file (SHA-256, or the git blob id Coral's files are published
under); a `<file>.verified` sidecar remembers a passed check (with the file's
size and mtime) so opening a model stays cheap, and records the SHA-256 of
blob-pinned files as OFFICIAL_SOURCES.md asks. Downloading lives in fetch.py.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.resources
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import msgspec

from edged import paths
from edged.errors import ConfigError, DataError, UnavailableError

log = logging.getLogger(__name__)

VARIANTS = ("cpu", "edgetpu", "raw")
SAMPLES = "samples"

ModelKind = Literal["detector", "classifier", "segmenter"]
# What a variant's outputs are (manifest `output`): SSD detector heads, a classifier's score vector, or a
# segmenter's per-pixel class ids / per-pixel class scores.
OutputKind = Literal["postprocess", "raw_ssd", "scores", "class_map", "pixel_scores"]


class FileEntry(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One downloadable file: its name in the data dir (and in mirrors), official URL and pin."""

    file: str
    url: str | None = None
    sha256: str | None = None
    git_blob: str | None = None
    size: int | None = None
    note: str | None = None


class Variant(FileEntry, kw_only=True):
    """A model file for one backend; raw SSD variants bring their anchors and decode parameters."""

    output: OutputKind = "postprocess"
    anchors: FileEntry | None = None
    decode: FileEntry | None = None

    def files(self) -> list[FileEntry]:
        return [self, *(entry for entry in (self.anchors, self.decode) if entry is not None)]


class ModelEntry(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    title: str
    kind: ModelKind = "detector"
    labels: str
    labels_sha256: str | None = None  # a local model's labels file; built-in labels ship in the package
    input_size: tuple[int, int]
    cpu: Variant | None = None
    edgetpu: Variant | None = None
    raw: Variant | None = None

    def variants(self) -> dict[str, Variant]:
        return {name: v for name in VARIANTS if (v := getattr(self, name)) is not None}


class SampleSet(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    title: str
    files: list[FileEntry]


class Manifest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    default_model: str
    default_classifier: str
    default_segmenter: str
    models: dict[str, ModelEntry]
    samples: SampleSet

    def model(self, name: str) -> ModelEntry:
        try:
            return self.models[name]
        except KeyError:
            raise ConfigError(f"unknown model {name!r} (known: {', '.join(self.models)})") from None

    def default_for(self, kind: ModelKind) -> str:
        """The model a command runs when no --model is given."""
        return {"detector": self.default_model, "classifier": self.default_classifier,
                "segmenter": self.default_segmenter}[kind]


def load_manifest() -> Manifest:
    """The manifest shipped with this edged version."""
    data = importlib.resources.files("edged._models").joinpath("manifest.toml").read_bytes()
    return msgspec.toml.decode(data, type=Manifest)


def packaged_labels(name: str) -> Path:
    resource = importlib.resources.files("edged._models").joinpath(name)
    return Path(str(resource))


# ---- integrity ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Digests:
    sha256: str
    git_blob: str
    size: int


def digest_file(path: Path) -> Digests:
    """SHA-256 and git blob id of a file in one pass (the blob header needs the size, known from stat)."""
    size = path.stat().st_size
    sha256, blob = hashlib.sha256(), hashlib.sha1(b"blob %d\0" % size)
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            sha256.update(chunk)
            blob.update(chunk)
    return Digests(sha256.hexdigest(), blob.hexdigest(), size)


def mismatch(entry: FileEntry, found: Digests) -> str | None:
    """None when `found` satisfies the entry's pins, else one line naming expected and actual digests."""
    if entry.sha256 and entry.sha256 != found.sha256:
        return f"sha256 {found.sha256} but the manifest pins sha256 {entry.sha256}"
    if entry.git_blob and entry.git_blob != found.git_blob:
        return f"git blob {found.git_blob} but the manifest pins git blob {entry.git_blob}"
    return None


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def record_verified(path: Path, found: Digests) -> bool:
    """Remember a passed check in a sidecar readable by all (0644, whatever the umask: the unit's
    UMask=0077 must not hide it from `edged models list` run by an admin).

    Best effort: in a read-only or full data dir the file stays verified in memory, one line says so
    and the next start hashes it again; returns whether the marker was written."""
    stat = path.stat()
    record = {"sha256": found.sha256, "git_blob": found.git_blob, "size": stat.st_size,
              "mtime_ns": stat.st_mtime_ns}
    sidecar = _sidecar(path)
    temporary = sidecar.with_name(f".{sidecar.name}.{os.getpid()}")
    try:
        with os.fdopen(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), "w") as handle:
            os.fchmod(handle.fileno(), 0o644)
            handle.write(json.dumps(record) + "\n")
        os.replace(temporary, sidecar)
    except OSError as exc:
        with contextlib.suppress(OSError):
            temporary.unlink()
        log.warning("%s verified, but no marker can be written beside it (%s): it is hashed again at the "
                    "next start", path, paths.write_problem(exc))
        return False
    return True


def file_state(path: Path, entry: FileEntry) -> Literal["missing", "verified", "mismatch"]:
    """Check a local file against its pin, trusting a fresh sidecar instead of re-hashing."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return "missing"
    try:
        record = json.loads(_sidecar(path).read_text())
        if record["size"] == stat.st_size and record["mtime_ns"] == stat.st_mtime_ns and mismatch(
                entry, Digests(record["sha256"], record["git_blob"], record["size"])) is None:
            return "verified"
    except (OSError, ValueError, KeyError, TypeError):
        pass
    found = digest_file(path)
    if mismatch(entry, found) is not None:
        return "mismatch"
    record_verified(path, found)
    return "verified"


def verified_path(entry: FileEntry, directory: Path, *, fetch_hint: str) -> Path:
    """The local path of a manifest file, raising Unavailable (absent) or Data (wrong bytes) errors."""
    path = directory / entry.file
    state = file_state(path, entry)
    if state == "missing":
        raise UnavailableError(f"{entry.file} is not in {directory}: run `{fetch_hint}`")
    if state == "mismatch":
        problem = mismatch(entry, digest_file(path))
        raise DataError(f"{path} is corrupt or not the pinned file: {problem}; run `{fetch_hint}` to replace it")
    return path
