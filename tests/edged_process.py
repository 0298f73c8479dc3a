"""`edged run` as a real subprocess for tests: its log lines, its systemd notifications, its process tree."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


class NotifyListener:
    """A unix datagram socket standing in for systemd's NOTIFY_SOCKET; records (monotonic time, message)."""

    def __init__(self, directory: Path) -> None:
        self.path = str(directory / "notify.sock")
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(self.path)
        self._sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._closed:
            try:
                data = self._sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                self.messages.append((time.monotonic(), data.decode()))

    def lines(self, since: float = 0.0) -> list[str]:
        """Every KEY=value line received after `since`, in order."""
        with self._lock:
            return [line for t, message in self.messages if t >= since for line in message.splitlines()]

    def count(self, line: str, since: float = 0.0) -> int:
        return sum(1 for received in self.lines(since) if received == line)

    def wait_for(self, line: str, count: int = 1, timeout: float = 20.0, since: float = 0.0) -> None:
        deadline = time.monotonic() + timeout
        while self.count(line, since) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{line!r} x{count} not received in {timeout} s; got {self.lines()[-10:]}")
            time.sleep(0.02)

    def close(self) -> None:
        self._closed = True
        self._thread.join(1)
        self._sock.close()


class EdgedRun:
    """`python -m edged run ARGS` with its stderr collected line by line."""

    def __init__(self, args: list[str], *, data_dir: Path, notify: NotifyListener | None = None,
                 watchdog_usec: int | None = None, env: dict[str, str] | None = None,
                 command: list[str] | None = None) -> None:
        """`command`: what runs instead of `python -m edged run` (a wrapper ending in `… run`)."""
        environment = {**os.environ, "EDGED_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1", **(env or {})}
        for key in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM"):
            environment.pop(key, None)
        if notify is not None:
            environment["NOTIFY_SOCKET"] = notify.path
        if watchdog_usec is not None:
            environment["WATCHDOG_USEC"] = str(watchdog_usec)
        self.started = time.monotonic()
        command = command or [sys.executable, "-m", "edged", "run"]
        self.process = subprocess.Popen([*command, *args], cwd=REPO,
                                        env=environment, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
        self.log: list[str] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._lock:
                self.log.append(line.rstrip("\n"))

    @property
    def text(self) -> str:
        with self._lock:
            return "\n".join(self.log)

    def wait_log(self, pattern: str, timeout: float = 20.0, count: int = 1) -> list[re.Match]:
        deadline = time.monotonic() + timeout
        while True:
            matches = list(re.finditer(pattern, self.text))
            if len(matches) >= count:
                return matches
            if self.process.poll() is not None:
                self._reader.join(2)
                matches = list(re.finditer(pattern, self.text))
                if len(matches) >= count:
                    return matches
                raise AssertionError(f"edged exited ({self.process.returncode}) before logging {pattern!r}:\n"
                                     f"{self.text[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} not logged in {timeout} s:\n{self.text[-3000:]}")
            time.sleep(0.05)

    def worker_pid(self, backend_prefix: str, nth: int = 1) -> int:
        """The pid of the nth inference worker started on a backend (from the daemon's log line)."""
        matches = self.wait_log(rf"inference worker pid (\d+): {re.escape(backend_prefix)}", count=nth)
        return int(matches[nth - 1].group(1))

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float = 10.0) -> int:
        code = self.process.wait(timeout)
        self._reader.join(2)
        return code

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(2)


def broker_url(broker) -> str:
    return f"mqtt://[::1]:{broker.port}"
