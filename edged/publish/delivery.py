"""Is the broker confirming what edged publishes? The publisher's half of the watchdog's question.

paho calls `on_publish` when a message is done: PUBACK (QoS 1), PUBCOMP (QoS 2),
or, for QoS 0, when it was written to the socket. A session that paho believes
is up but that confirms nothing, while messages wait, is stuck — a broker that
still answers pings but not publishes, or paho's thread blocked in a callback.

How long is too long: paho closes a silent connection by itself (it pings after
`keepalive` seconds without a byte from the broker and gives up after another
`keepalive`), so a dead link never looks connected for more than
2 × keepalive, plus paho's one-second loop. Waiting STALL_MARGIN_SECONDS beyond
that means the stall is not one paho is about to notice; restarting edged is
then the remedy (default keepalive 30 s: 65 s).
"""

from __future__ import annotations

import threading
import time

STALL_MARGIN_SECONDS = 5.0


def stall_limit(keepalive_seconds: float) -> float:
    return 2 * keepalive_seconds + STALL_MARGIN_SECONDS


class DeliveryWatch:
    """Tracks the oldest publish not followed by any confirmation (thread-safe, constant memory)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting_since: float | None = None
        self._connected_at = time.monotonic()
        self.confirmed = 0

    def sent(self) -> None:
        """paho accepted a message (sent, or queued until the next connect)."""
        with self._lock:
            if self._waiting_since is None:
                self._waiting_since = time.monotonic()

    def confirm(self) -> None:
        """paho's on_publish: the broker (or, for QoS 0, the socket) took a message; the link works."""
        with self._lock:
            self._waiting_since = None
            self.confirmed += 1

    def connected(self) -> None:
        """A session (re)started: what was queued during the outage is only now on its way."""
        with self._lock:
            self._connected_at = time.monotonic()

    def stalled_for(self) -> float:
        """Seconds a message has waited for a confirmation while connected (0 when nothing waits)."""
        with self._lock:
            if self._waiting_since is None:
                return 0.0
            return time.monotonic() - max(self._waiting_since, self._connected_at)
