"""Where edged keeps fetched files, so every command and the service agree without configuration.

Order: $EDGED_DATA_DIR (explicit), $STATE_DIRECTORY (set by systemd's StateDirectory=),
/var/lib/edged when running as root, else the XDG data home of the user.
"""

from __future__ import annotations

import os
from pathlib import Path


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
