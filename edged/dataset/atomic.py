"""Files that appear whole or not at all: write a hidden temporary file, fsync, rename, fsync the directory.

A power cut on an SD card then leaves either the old state or the complete new
file, plus at worst a `.<name>.tmp` that the next start sweeps away.
"""

from __future__ import annotations

import os
from pathlib import Path

TEMP_SUFFIX = ".tmp"


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that a crash leaves either the old state or the whole file, never a part."""
    temporary = path.with_name(f".{path.name}{TEMP_SUFFIX}")
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def sync_directory(directory: Path) -> None:
    """Make renames in `directory` durable (the rename itself lives in the directory's data)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
