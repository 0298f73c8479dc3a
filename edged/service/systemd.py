"""systemd's notify protocol, spoken directly: READY, STATUS, STOPPING, RELOADING and the watchdog.

The protocol is one datagram per message on the unix socket named by
$NOTIFY_SOCKET (a leading "@" means the abstract namespace), so a dozen lines
replace a compiled dependency; outside systemd every call is a no-op.
The watchdog is fed only with proof of progress — a frame that went all the
way through the pipeline, or a capture loop visibly retrying a failed camera —
never by a timer thread, so a wedged pipeline stops the pings and systemd
restarts the service (WatchdogSec=, Restart=on-failure). Progress alone is not
enough: the daemon's main loop must also have found every stage alive within
the last few seconds (`vouch`), so a dead stage, or a main loop that is itself
stuck, stops the pings even while some other thread still makes progress.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Mapping

log = logging.getLogger(__name__)


class Notifier:
    """Sends sd_notify(3) messages to the service manager that started this process, if any."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        self.address = "\0" + address[1:] if address.startswith("@") else address
        usec = env.get("WATCHDOG_USEC", "")
        for_us = env.get("WATCHDOG_PID", str(os.getpid())) == str(os.getpid())
        self.watchdog_seconds = int(usec) / 1e6 if usec.isdigit() and int(usec) > 0 and for_us else 0.0

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def notify(self, message: str) -> bool:
        """Send one message ("KEY=value" lines); False when not under systemd or the socket is gone."""
        if not self.address:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(self.address)
                sock.sendall(message.encode())
        except OSError as exc:
            log.debug("sd_notify %r failed: %s", message, exc)
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.notify(f"READY=1\nSTATUS={status}")

    def status(self, status: str) -> bool:
        return self.notify(f"STATUS={status}")

    def reloading(self) -> bool:
        now_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify(f"RELOADING=1\nMONOTONIC_USEC={now_usec}")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")


class Watchdog:
    """WATCHDOG=1 on proof of progress, at most once every half WatchdogSec."""

    def __init__(self, notifier: Notifier, vouch_seconds: float = 3.0) -> None:
        self._notifier = notifier
        self.interval = notifier.watchdog_seconds / 2
        self.vouch_seconds = vouch_seconds
        self._last = 0.0
        self._lock = threading.Lock()
        self._armed = False
        self._vouched_until = 0.0
        self.pings = 0

    @property
    def enabled(self) -> bool:
        return self.interval > 0 and self._notifier.enabled

    def arm(self) -> None:
        """Start pinging on progress; called once READY=1 is sent (systemd ignores earlier pings anyway)."""
        self.vouch()
        self._armed = True

    def vouch(self) -> None:
        """The main loop found every stage alive: progress may be reported for the next `vouch_seconds`."""
        self._vouched_until = time.monotonic() + self.vouch_seconds

    def withdraw(self) -> None:
        """A stage is dead: no more pings, whatever progress the others make."""
        self._vouched_until = 0.0

    def kick(self) -> bool:
        """Call when a frame completed the pipeline (or a failed source's retry loop ran); True if pinged."""
        if not (self._armed and self.enabled):
            return False
        now = time.monotonic()
        if now > self._vouched_until:
            return False
        with self._lock:
            if now - self._last < self.interval:
                return False
            self._last = now
        if self._notifier.notify("WATCHDOG=1"):
            self.pings += 1
            return True
        return False
