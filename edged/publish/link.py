"""What edged knows about its broker link: reconnect waits, failure counts, and the log lines about them.

paho reconnects by itself but says nothing about why an attempt failed, and a
broker that closes the connection right after CONNECT (an MQTT 3.1.1-only
broker given MQTT 5) looks to it like any lost connection. The Connection
feeds every attempt's outcome here; this module turns them into:
- `Backoff`: the wait before the next attempt, exponential with jitter, so a
  long outage is still probed every few seconds and a fleet that lost its
  broker together does not come back in lockstep;
- `LinkReport`: one log line per new failure reason, a short reminder every
  REMINDER_SECONDS while there is no session (an outage never goes silent, and
  never floods the journal), the state for systemd's STATUS line, and the
  counters of the `mqtt` block in stats.
"""

from __future__ import annotations

import logging
import random
import socket
import ssl
import threading
import time

from edged.publish.payloads import LinkState, MqttLink
from edged.publish.tls import describe_tls_error

REMINDER_SECONDS = 60.0


def describe_error(exc: BaseException | None) -> str:
    """One readable phrase for the exception of a failed connection attempt."""
    if exc is None:
        return "connection failed"
    if isinstance(exc, ssl.SSLError):
        return describe_tls_error(exc)
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve host: {exc.strerror}"
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[:1].lower() + exc.strerror[1:]  # "Connection refused" → "connection refused"
    return str(exc) or type(exc).__name__


class Backoff:
    """Waits between attempts: the base doubles from `first` up to `cap`; each wait is drawn between half
    the base and the base ("equal jitter": never shorter than half, so the broker is not hammered)."""

    def __init__(self, first: float, cap: float, rng: random.Random | None = None):
        self.first = first
        self.cap = cap
        self._rng = rng or random.Random()
        self._base = 0.0

    def reset(self) -> None:
        """A session came up: the next outage starts again from `first`."""
        self._base = 0.0

    def next_wait(self) -> float:
        self._base = min(self.cap, self.first if self._base == 0.0 else self._base * 2)
        return self._rng.uniform(self._base / 2, self._base)


class LinkReport:
    """Outcomes of connection attempts → state, counters and rate-limited log lines (thread-safe)."""

    def __init__(self, log: logging.Logger, *, reminder_seconds: float | None = None):
        self._log = log
        self._reminder = REMINDER_SECONDS if reminder_seconds is None else reminder_seconds
        self._lock = threading.Lock()
        self.state: LinkState = "connecting"
        self.broker = ""
        self.last_error: str | None = None
        self.connects = 0
        self.failed_attempts = 0
        self.closed_before_connack = 0
        self._reported: set[str] = set()
        self._down_since = time.monotonic()
        self._logged_at = float("-inf")
        self._failures_since_up = 0

    def attempt(self, broker: str) -> None:
        with self._lock:
            self.broker = broker

    def failed(self, broker: str, reason: str, *, state: LinkState, error: bool = False,
               closed_before_connack: bool = False) -> None:
        """An attempt ended without a session. New reasons are logged at once; repeats at debug level,
        plus a reminder when the last line is REMINDER_SECONDS old."""
        message = f"{broker}: {reason}"
        now = time.monotonic()
        with self._lock:
            self.state, self.broker, self.last_error = state, broker, message
            self.failed_attempts += 1
            self._failures_since_up += 1
            self.closed_before_connack += closed_before_connack
            new = message not in self._reported
            self._reported.add(message)
            remind = not new and now - self._logged_at >= self._reminder
            if new or remind:
                self._logged_at = now
            down_for, failures = now - self._down_since, self._failures_since_up
        if new:
            self._log.log(logging.ERROR if error else logging.WARNING, "MQTT %s", message)
        elif remind:
            self._log.warning("MQTT still no broker session after %s (%d failed attempts); last: %s",
                              _duration(down_for), failures, message)
        else:
            self._log.debug("MQTT still failing: %s", message)

    def connected(self, broker: str) -> None:
        with self._lock:
            self.state, self.broker, self.last_error = "connected", broker, None
            self.connects += 1
            self._reported.clear()
            self._failures_since_up = 0

    def disconnected(self) -> None:
        """A session was lost: an outage starts (reminders count from here)."""
        with self._lock:
            if self.state == "connected":
                self.state = "connecting"
                self._down_since = time.monotonic()
                self._logged_at = time.monotonic()

    def status_text(self) -> str:
        """For systemd's STATUS line: `MQTT up`, `MQTT connecting`, `no broker (…)` or `MQTT rejected (…)`."""
        with self._lock:
            state, error = self.state, self.last_error
        if state == "connected":
            return "MQTT up"
        if state == "connecting" or error is None:
            return "MQTT connecting"
        return f"no broker ({error})" if state == "no_broker" else f"MQTT rejected ({error})"

    def snapshot(self) -> MqttLink:
        with self._lock:
            return MqttLink(state=self.state, broker=self.broker, last_error=self.last_error,
                            connects=self.connects, failed_attempts=self.failed_attempts,
                            closed_before_connack=self.closed_before_connack)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
