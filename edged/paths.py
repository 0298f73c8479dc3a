"""Where edged keeps fetched files, so every command and the service agree without configuration.

Order: $EDGED_DATA_DIR (explicit), $STATE_DIRECTORY (set by systemd's StateDirectory=),
/var/lib/edged when running as root, else the XDG data home of the user.
The data dir may be read-only (an SD card remounted read-only) or full: what
writes there says so in one line with exit 73 (`cannot_write`).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from edged.errors import CantCreateError

# What a person does something about, for the errno values writing a file commonly fails with.
_WRITE_PROBLEMS = {errno.ENOSPC: "disk full", errno.EDQUOT: "disk quota exceeded",
                   errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
                   errno.EPERM: "permission denied"}


def data_dir() -> Path:
    if explicit := os.environ.get("EDGED_DATA_DIR"):
        return Path(explicit)
    if state := os.environ.get("STATE_DIRECTORY"):
        return Path(state.split(":")[0])
    if os.geteuid() == 0:
        return Path("/var/lib/edged")
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg) / "edged"


def models_dir() -> Path:
    """Fetched model files (`edged models fetch`)."""
    return data_dir() / "models"


def samples_dir() -> Path:
    """Fetched sample photos: the embedded default source of `edged run`."""
    return data_dir() / "samples"


def dataset_dir() -> Path:
    """Recorded frames (`[record]`), unless `[record] directory` says otherwise."""
    return data_dir() / "dataset"


def write_problem(exc: OSError) -> str:
    """"disk full", "read-only file system", … for an OSError raised while writing."""
    return _WRITE_PROBLEMS.get(exc.errno or 0) or (exc.strerror or str(exc)).lower()


def cannot_write(where: Path, exc: OSError) -> CantCreateError:
    """The one-line error (exit 73) for an output that cannot be written in `where`."""
    return CantCreateError(f"cannot write in {where}: {write_problem(exc)}")


def make_dir(path: Path) -> None:
    """mkdir -p, or CantCreateError naming the directory and why."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise cannot_write(path, exc) from None
