"""The inference worker's process as the parent sees it: a fresh interpreter, its pid, its exit, how it ended.

Started with subprocess (not multiprocessing, whose spawn start adds a
resource-tracker process) on one end of a socketpair; a pidfd (Linux 5.3+)
becomes readable the moment it exits, so a reader waiting on its socket and
its pidfd notices a death at once.
"""

from __future__ import annotations

import os
import signal
import subprocess


class ChildProcess:
    """The worker process: its pid, a descriptor that becomes readable when it exits, its exit code."""

    def __init__(self, argv: list[str], keep_fd: int) -> None:
        self._popen = subprocess.Popen(argv, pass_fds=(keep_fd,), stdin=subprocess.DEVNULL)
        self.pid = self._popen.pid
        try:
            self.sentinel: int | None = os.pidfd_open(self.pid)
        except (AttributeError, OSError):  # before Linux 5.3: its socket closing is the only sign
            self.sentinel = None

    @property
    def exitcode(self) -> int | None:
        """None while it runs; negative: killed by that signal (as multiprocessing reports it)."""
        return self._popen.poll()

    def join(self, timeout: float) -> None:
        try:
            self._popen.wait(timeout)
        except subprocess.TimeoutExpired:
            pass

    def kill(self) -> None:
        self._popen.kill()

    def release(self) -> None:
        if self.sentinel is not None:
            os.close(self.sentinel)
            self.sentinel = None


def describe_exit(code: int | None) -> str:
    """multiprocessing's exit code → "killed by SIGABRT" / "exit status 1"."""
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"
