"""Download manifest files from mirrors or their official URL, verify them, and replace atomically.

Mirrors come first (a directory or an http(s) URL holding files by name), in
order, then the official URL — so air-gapped fleets and the tests never need the
internet, and a device with internet needs no configuration. Every download
goes to a temporary file in the destination directory and only an `os.replace`
of a verified file touches the real name: a partial, interrupted or tampered
download can never replace a good file. A destination that cannot be written
(disk full, read-only data dir) is a CantCreateError (exit 73) at once: it is
not a source's fault, and no other source would do better.
"""

from __future__ import annotations

import http.client
import os
import re
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import BinaryIO, TextIO

from edged import paths
from edged.detect.models import SAMPLES, FileEntry, digest_file, file_state, load_manifest, mismatch, record_verified
from edged.errors import ConfigError, DataError, UnavailableError

CHUNK = 1 << 16
TIMEOUT_SECONDS = 30


def mirrors_from_env() -> list[str]:
    """$EDGED_MIRROR: a colon-separated list of mirrors, directories or URLs.

    URLs carry colons of their own (scheme, port, IPv6 literal), so a colon only
    separates entries where the next one starts like a path or a URL.
    """
    value = os.environ.get("EDGED_MIRROR", "")
    return [part for part in re.split(r":(?=/(?!/)|https?://|\.{1,2}/|~)", value) if part]


def sources(entry: FileEntry, mirrors: Sequence[str], *, offline: bool = False) -> list[str]:
    """Where to look for a file, in order: each mirror, then the official URL (unless offline).

    A directory mirror may keep files one folder down (a copy of a tree sorted
    by topic, like shared/models with its zoo/ folder): after its top level,
    the file is looked for in each immediate subfolder that has it, in name
    order. Any copy found is only a candidate — it still has to match the pin.
    An http(s) mirror cannot be listed, so it is asked for the file by name only.
    """
    found = []
    for mirror in mirrors:
        if mirror.startswith(("http://", "https://")):
            found.append(mirror.rstrip("/") + "/" + urllib.parse.quote(entry.file))
        else:
            found.append(str(Path(mirror) / entry.file))
            found += [str(copy) for copy in _one_folder_down(Path(mirror), entry.file)]
    if entry.url and not offline:
        found.append(entry.url)
    return found


def _one_folder_down(mirror: Path, name: str) -> list[Path]:
    try:
        folders = sorted(child for child in mirror.iterdir() if child.is_dir())
    except OSError:  # missing or unreadable mirror: its top-level path reports the reason
        return []
    return [folder / name for folder in folders if (folder / name).is_file()]


class Progress:
    """Download progress on stderr: a redrawn bar on a terminal; otherwise (logs) a line per quarter of
    files of a megabyte or more."""

    def __init__(self, name: str, total: int | None, stream: TextIO | None = None):
        self.name, self.total, self.done = name, total, 0
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self._last_quarter = 0

    def update(self, count: int) -> None:
        self.done += count
        if not self.total:
            return
        fraction = min(1.0, self.done / self.total)
        if self.tty:
            bar = "#" * int(fraction * 30)
            self.stream.write(f"\r{self.name} [{bar:<30}] {fraction:4.0%} {self.done / 1e6:.1f}/{self.total / 1e6:.1f} MB")
            self.stream.flush()
        elif self.total >= 1_000_000 and int(fraction * 4) > self._last_quarter:
            self._last_quarter = int(fraction * 4)
            self.stream.write(f"{self.name}: {fraction:.0%} of {self.total / 1e6:.1f} MB\n")

    def finish(self) -> None:
        if self.tty and self.total:
            self.stream.write("\n")


def fetch_file(entry: FileEntry, directory: Path, mirrors: Sequence[str], *, offline: bool = False,
               progress_stream: TextIO | None = None) -> tuple[Path, str]:
    """Make `directory/entry.file` the verified file; returns (path, where it came from or "present").

    Raises DataError when sources only offered wrong bytes (naming both digests),
    UnavailableError when no source had the file at all, CantCreateError when `directory` cannot be written.
    """
    target = directory / entry.file
    if file_state(target, entry) == "verified":
        return target, "present"
    paths.make_dir(directory)
    problems: list[str] = []
    wrong_bytes: list[str] = []
    for source in sources(entry, mirrors, offline=offline):
        try:
            _download_verified(entry, source, target, progress_stream)
            return target, source
        except DataError as exc:
            wrong_bytes.append(str(exc))
        except (OSError, http.client.HTTPException, ValueError) as exc:  # URLError is an OSError
            problems.append(f"{source}: {_reason(exc)}")
    if wrong_bytes:
        raise DataError(wrong_bytes[0] + (f" (and {len(wrong_bytes) - 1} more source(s))" if len(wrong_bytes) > 1
                                          else ""))
    if not problems:
        raise UnavailableError(f"{entry.file}: no mirror given and no official URL (use --mirror DIR|URL)")
    raise UnavailableError(f"{entry.file}: not found in any source ({'; '.join(problems)})")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if isinstance(exc, http.client.IncompleteRead):
        return f"interrupted after {len(exc.partial)} bytes"
    return " ".join(str(exc).split()) or type(exc).__name__


class _Output:
    """The temporary file a download goes into: a failed write is the destination's fault."""

    def __init__(self, handle: BinaryIO, directory: Path) -> None:
        self._handle = handle
        self._directory = directory

    def write(self, chunk: bytes) -> None:
        try:
            self._handle.write(chunk)
        except OSError as exc:
            raise paths.cannot_write(self._directory, exc) from None

    def finish(self) -> None:
        """Flush and fsync: on a full disk, this is where a buffered write fails."""
        try:
            self._handle.flush()
            os.fsync(self._handle.fileno())
        except OSError as exc:
            raise paths.cannot_write(self._directory, exc) from None


def _download_verified(entry: FileEntry, source: str, target: Path, progress_stream: TextIO | None) -> None:
    """Copy one source into a temporary sibling of `target`, verify, then os.replace; never leave a partial."""
    try:
        handle, temporary_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    except OSError as exc:
        raise paths.cannot_write(target.parent, exc) from None
    temporary = Path(temporary_name)
    try:
        with os.fdopen(handle, "wb") as handle_file:
            out = _Output(handle_file, target.parent)
            expected = _copy(source, out, Progress(entry.file, entry.size, progress_stream))
            out.finish()
        found = digest_file(temporary)
        if expected is not None and found.size != expected:
            raise OSError(f"interrupted: got {found.size} of {expected} bytes")
        if problem := mismatch(entry, found):
            raise DataError(f"{entry.file} from {source} has {problem}; the file was not replaced")
        try:
            os.chmod(temporary, 0o644)
            os.replace(temporary, target)
        except OSError as exc:
            raise paths.cannot_write(target.parent, exc) from None
        record_verified(target, found)
    finally:
        try:
            temporary.unlink(missing_ok=True)
        except OSError:  # a read-only directory never had the temporary file in the first place
            pass


def _copy(source: str, out: _Output, progress: Progress) -> int | None:
    """Stream `source` into `out`; returns the size the source announced (None if unknown)."""
    try:
        if source.startswith(("http://", "https://")):
            with urllib.request.urlopen(source, timeout=TIMEOUT_SECONDS) as response:
                length = response.headers.get("Content-Length")
                announced = int(length) if length and length.isdigit() else None
                progress.total = progress.total or announced
                _stream(response, out, progress)
                return announced
        with open(source, "rb") as src:
            announced = os.fstat(src.fileno()).st_size
            progress.total = progress.total or announced
            _stream(src, out, progress)
            return announced
    finally:
        progress.finish()


def _stream(src: BinaryIO, out: _Output, progress: Progress) -> None:
    while chunk := src.read(CHUNK):
        out.write(chunk)
        progress.update(len(chunk))


def plan(names: Sequence[str], variants: Sequence[str], *, models_dir: Path, samples_dir: Path,
         strict: bool = False) -> list[tuple[str, FileEntry, Path]]:
    """(what, file entry, destination dir) for manifest names ("samples" = the sample photos).

    A variant a model does not have is skipped when the variants are defaults,
    and is a ConfigError when `strict` (the user asked for it: `--variant raw`).
    """
    manifest = load_manifest()
    steps: list[tuple[str, FileEntry, Path]] = []
    for name in names:
        if name == SAMPLES:
            steps += [(SAMPLES, entry, samples_dir) for entry in manifest.samples.files]
            continue
        model = manifest.model(name)
        for variant_name in variants:
            variant = model.variants().get(variant_name)
            if variant is None:
                if strict:
                    raise ConfigError(f"model {name} has no {variant_name} variant "
                                      f"(it has: {', '.join(model.variants())})")
                continue
            steps += [(f"{name} {variant_name}", entry, models_dir) for entry in variant.files()]
    return steps
