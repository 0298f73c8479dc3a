"""Add and remove local models: files copied into `<models dir>/local/`, pinned in `models.local.toml`.

Stored names carry the first 12 hex digits of the file's SHA-256
(`doorbell-1a2b3c4d5e6f.tflite`): a replacement is written beside the files in
use, the manifest switches to it in one atomic rename, and only then are the
old files deleted — a power cut at any step leaves the old model or the new
one, never a manifest pinning bytes that are not there. Names are never
those of a built-in model (a config naming a zoo model must get the zoo's
bytes). Adding the same files again changes nothing (or puts back a stored
copy that no longer matches its pin), so a fleet tool can run it on every
deploy. A read-only or full data dir is one line, exit 73.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import msgspec

from edged import paths
from edged.dataset.atomic import sync_directory, write_atomic
from edged.detect.catalog import LocalManifest, load_local, local_files_dir, local_manifest_path
from edged.detect.models import (
    FileEntry,
    ModelEntry,
    Variant,
    digest_file,
    file_state,
    load_manifest,
    record_verified,
)
from edged.errors import EX_USAGE, CantCreateError, DataError, EdgedError
from edged.local_models.toml_writer import render
from edged.local_models.vetting import Submission, Vetted

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
RESERVED = {"samples"}  # `edged models fetch samples` means the sample photos
LOCK = ".models.local.lock"
PIN_DIGITS = 12

Outcome = Literal["added", "replaced", "repaired", "unchanged"]


@dataclass(frozen=True)
class Added:
    outcome: Outcome
    entry: ModelEntry
    directory: Path


def check_name(name: str) -> None:
    """A usage error (exit 2) for a name that cannot be a local model's."""
    if not NAME.match(name) or name in RESERVED:
        raise EdgedError(f"model name {name!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a "
                         "letter or digit (and not `samples`)", exit_code=EX_USAGE)
    if name in load_manifest().models:
        raise EdgedError(f"{name} is a built-in model: choose another name (a local model never shadows "
                         "the manifest's, so a config naming it always gets the pinned zoo files)",
                         exit_code=EX_USAGE)


def add(name: str, submission: Submission, vetted: Vetted, models_dir: Path, *, title: str | None = None,
        replace: bool = False) -> Added:
    """Copy the vetted files in and record them; `unchanged` when the same files are already there."""
    check_name(name)
    sources = _sources(name, submission)
    entry = _entry(name, submission, vetted, sources, title)
    directory = local_files_dir(models_dir)
    with _writing(models_dir):
        manifest = load_local(models_dir)
        old = manifest.models.get(name)
        if old is not None and title is None:  # no --title: keep the one it has
            entry = msgspec.structs.replace(entry, title=old.title)
        same = old is not None and _same(old, entry)
        if old is not None and same and _intact(old, directory):
            return Added("unchanged", old, directory)
        if old is not None and not same and not replace:
            raise EdgedError(f"a local model {name} already exists with other files or settings: add "
                             f"--replace to replace it, or `edged models remove {name}` first",
                             exit_code=EX_USAGE)
        kept = _files(old) if old is not None else set()
        try:
            with _disk_errors(directory):
                directory.mkdir(parents=True, exist_ok=True)
            for source, pin in sources:
                _copy_verified(source, directory / pin.file, pin)
            _save(models_dir, LocalManifest(models={**manifest.models, name: entry}))
        except BaseException:
            _delete(_files(entry) - kept, directory)  # what this attempt brought; the old model stays whole
            raise
        _delete(kept - _files(entry), directory)
    return Added("added" if old is None else "repaired" if same else "replaced", entry, directory)


def remove(name: str, models_dir: Path) -> bool:
    """Forget a local model and delete its files; False when there is none of that name."""
    if name in load_manifest().models:
        raise EdgedError(f"{name} is a built-in model: only local models can be removed", exit_code=EX_USAGE)
    with _writing(models_dir):
        manifest = load_local(models_dir)
        old = manifest.models.get(name)
        if old is None:
            return False
        _save(models_dir, LocalManifest(models={k: v for k, v in manifest.models.items() if k != name}))
        _delete(_files(old), local_files_dir(models_dir))
    return True


def _sources(name: str, submission: Submission) -> list[tuple[Path, FileEntry]]:
    """(source file, its pin under its stored name) for every file given."""
    suffixes = [(submission.file, ".tflite"), (submission.edgetpu, "_edgetpu.tflite"),
                (submission.labels, ".labels.txt"), (submission.anchors, ".anchors.npy")]
    pinned = []
    for source, suffix in suffixes:
        if source is not None:
            found = digest_file(source)
            pinned.append((source, FileEntry(file=f"{name}-{found.sha256[:PIN_DIGITS]}{suffix}",
                                             sha256=found.sha256, size=found.size)))
    return pinned


def _entry(name: str, submission: Submission, vetted: Vetted, sources: list[tuple[Path, FileEntry]],
           title: str | None) -> ModelEntry:
    pins = {source: pin for source, pin in sources}
    cpu, labels = pins[submission.file], pins[submission.labels]
    anchors = pins.get(submission.anchors) if submission.anchors else None
    variants = {"cpu": Variant(file=cpu.file, sha256=cpu.sha256, size=cpu.size, output=vetted.output,
                               note=_note(submission.file), anchors=anchors)}
    if submission.edgetpu is not None:
        tpu = pins[submission.edgetpu]
        variants["edgetpu"] = Variant(file=tpu.file, sha256=tpu.sha256, size=tpu.size, output=vetted.output,
                                      note=_note(submission.edgetpu))
    return ModelEntry(title=title or f"{name}: your own {vetted.kind}",
                      kind=vetted.kind, labels=labels.file, labels_sha256=labels.sha256,
                      input_size=vetted.input_size, **variants)


def _note(source: Path) -> str:
    return f"added with `edged models add` from {source.resolve()}"


def _same(old: ModelEntry, new: ModelEntry) -> bool:
    """Equal but for the notes (where the files were added from)."""
    def bare(entry: ModelEntry) -> dict:
        data = msgspec.to_builtins(entry)
        for variant in ("cpu", "edgetpu", "raw"):
            if isinstance(data.get(variant), dict):
                data[variant].pop("note", None)
        return data
    return bare(old) == bare(new)


def pins(entry: ModelEntry) -> list[FileEntry]:
    """Every file of a local model with its pin: labels first, then each variant's files."""
    found = [FileEntry(file=entry.labels, sha256=entry.labels_sha256)]
    for variant in entry.variants().values():
        found += variant.files()
    return found


def _files(entry: ModelEntry) -> set[str]:
    return {pin.file for pin in pins(entry)}


def _intact(entry: ModelEntry, directory: Path) -> bool:
    return all(file_state(directory / pin.file, pin) == "verified" for pin in pins(entry))


def _copy_verified(source: Path, target: Path, pin: FileEntry) -> None:
    """Copy through a hidden temporary file, check it against the pin taken at vetting, rename into place."""
    if file_state(target, pin) == "verified":
        return
    temporary = target.with_name(f".{target.name}.part")
    try:
        with _disk_errors(target):
            shutil.copyfile(source, temporary)
            with temporary.open("rb+") as handle:
                os.fsync(handle.fileno())
        found = digest_file(temporary)
        if found.sha256 != pin.sha256:
            raise DataError(f"{source} changed while it was being added (sha256 {found.sha256}, vetted as "
                            f"{pin.sha256}); nothing was added")
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
        record_verified(target, found)
    finally:
        temporary.unlink(missing_ok=True)


def _save(models_dir: Path, manifest: LocalManifest) -> None:
    path = local_manifest_path(models_dir)
    with _disk_errors(path):
        write_atomic(path, render(manifest).encode())
        sync_directory(path.parent)


def _delete(files: set[str], directory: Path) -> None:
    for name in files:
        for path in (directory / name, directory / f"{name}.verified"):
            path.unlink(missing_ok=True)


@contextmanager
def _writing(models_dir: Path) -> Iterator[None]:
    """One writer at a time: two `models add` at once must not lose each other's entry."""
    with _disk_errors(models_dir):
        models_dir.mkdir(parents=True, exist_ok=True)
        lock = os.open(models_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
    finally:
        os.close(lock)


@contextmanager
def _disk_errors(path: Path) -> Iterator[None]:
    """A read-only, forbidden or full data dir as one line (exit 73) naming the path and why."""
    try:
        yield
    except OSError as exc:
        raise CantCreateError(f"cannot write {path}: {paths.write_problem(exc)}; nothing was added (the data "
                              "dir must be writable by this user and have room; EDGED_DATA_DIR selects "
                              "another)") from None
