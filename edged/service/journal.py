"""Logging that suits where the daemon runs: journald fields under systemd, plain lines in a terminal.

Under systemd (stderr is the journal stream named by $JOURNAL_STREAM) the
records go through systemd-python's JournalHandler when it is installed, so
`journalctl -o verbose` shows LOGGER, CODE_*, EDGED_DEVICE, EDGED_VERSION and
whatever `extra={"CAMERA": …}` a call adds; without systemd-python they go to
stderr with sd-daemon(3) `<N>` priority prefixes, which journald understands.
In a terminal they are plain timestamped lines.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import TextIO

from edged import __version__

#: syslog priorities of the logging levels (sd-daemon(3) prefixes).
PRIORITIES = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


def stderr_is_journal(stream: TextIO | None = None, environ: Mapping[str, str] | None = None) -> bool:
    """True when stderr is connected to journald ($JOURNAL_STREAM = "device:inode" of that file)."""
    env = os.environ if environ is None else environ
    expected = env.get("JOURNAL_STREAM", "")
    if not expected:
        return False
    try:
        st = os.fstat((stream or sys.stderr).fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return expected == f"{st.st_dev}:{st.st_ino}"


class PriorityFormatter(logging.Formatter):
    """`<6>edged.service.daemon: message` — journald strips the prefix and keeps the priority."""

    def format(self, record: logging.LogRecord) -> str:
        priority = PRIORITIES.get(record.levelno, 6 if record.levelno < logging.WARNING else 3)
        text = super().format(record)
        return "\n".join(f"<{priority}>{line}" for line in text.splitlines())


def make_handler(*, device_id: str, stream: TextIO | None = None,
                 environ: Mapping[str, str] | None = None) -> logging.Handler:
    """The handler for this environment (see the module docstring)."""
    if stderr_is_journal(stream, environ):
        try:
            from systemd.journal import JournalHandler
        except ImportError:
            handler: logging.Handler = logging.StreamHandler(stream or sys.stderr)
            handler.setFormatter(PriorityFormatter("%(name)s: %(message)s"))
            return handler
        return JournalHandler(SYSLOG_IDENTIFIER="edged", EDGED_DEVICE=device_id, EDGED_VERSION=__version__)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    return handler


def setup_logging(level: str, *, device_id: str, stream: TextIO | None = None,
                  environ: Mapping[str, str] | None = None) -> logging.Handler:
    """Replace the root logger's handlers (the CLI's basicConfig) with the right one for this environment."""
    handler = make_handler(device_id=device_id, stream=stream, environ=environ)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    return handler
