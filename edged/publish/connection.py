"""One configured paho client: URLs, TLS, credentials, session, reconnect and failover, shared by
the Publisher and `edged watch`.

paho does the protocol, the reconnect loop and the QoS>=1 queue; this module
adds what paho lacks: a failover list (on a failed attempt the next
address/URL is given to paho with `connect_async`, which paho 2.2 allows from
its callbacks), verification of link-local TLS brokers (tls.BrokerContext),
jittered reconnect waits, and a readable account of every failed attempt
(link.LinkReport) — including a broker that closes the connection after
CONNECT without a CONNACK, which paho reports as nothing at all.
Everything that can be wrong in the settings is checked in the constructor,
so a bad URL, certificate or password file is a ConfigError before any byte is sent.

No automatic fallback from MQTT 5 to 3.1.1: a connection closed before CONNACK
is as likely a restarting broker, a proxy or an attacker cutting the link as a
3.1.1-only broker, and falling back would silently drop message expiry, the
packet size limit and the MQTT 5 properties subscribers rely on. edged says
what happened and that `mqtt.protocol = "3.1.1"` is the fix; it changes nothing.
"""

from __future__ import annotations

import logging
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edged.errors import ConfigError, UnavailableError
from edged.publish.brokers import BrokerRotation, Target, check_brokers
from edged.publish.credentials import load_credentials
from edged.publish.link import Backoff, LinkReport, describe_error
from edged.publish.settings import MqttSettings
from edged.publish.tls import build_context
from edged.publish.topics import has_forbidden_characters, shown

log = logging.getLogger("edged.mqtt")


@dataclass(frozen=True)
class Will:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    properties: Properties | None = None


def _unix_socketpair() -> tuple[socket.socket, socket.socket]:
    pair = socket.socketpair()
    for end in pair:
        end.setblocking(False)
    return pair


def use_unix_wakeup_socketpair() -> None:
    """Make paho's network thread work on hosts without IPv4.

    paho-mqtt 2.2's loop_start() wakes its select() through a TCP connection
    to 127.0.0.1 (`_socketpair_compat`, written for Windows); on an IPv6-only
    host — no IPv4 loopback address — it fails with EADDRNOTAVAIL before any
    broker is contacted. On POSIX an AF_UNIX socketpair does the same job
    without any address. Idempotent; the replacement is only ever this one.
    """
    if hasattr(socket, "AF_UNIX") and getattr(mqtt, "_socketpair_compat", None) is not _unix_socketpair:
        mqtt._socketpair_compat = _unix_socketpair


class Connection:
    """A paho client that knows which broker it is on and why the last attempt failed."""

    def __init__(self, settings: MqttSettings, *, client_id: str, persistent: bool = True,
                 environ: dict[str, str] | None = None, max_packet_bytes: int | None = None):
        """`max_packet_bytes`: the MQTT 5 Maximum Packet Size asked of the broker (it then drops, for this
        client only, any message that would not fit: an inbound flood cannot grow edged's memory)."""
        self.settings = settings
        brokers = check_brokers(settings.brokers, settings.address_family)
        self._context = build_context(settings.tls, use_tls=brokers[0].tls)
        credentials = load_credentials(settings, environ)
        if persistent and not client_id:
            raise ConfigError("mqtt.client_id is empty: a persistent session needs a client id")
        for value, key in ((client_id, "mqtt.client_id"), (credentials.username or "", "mqtt.username")):
            if has_forbidden_characters(value):
                raise ConfigError(f"{key} {shown(value)} contains control characters: brokers drop the "
                                  "connection of a client that sends them")
        self.rotation = BrokerRotation(brokers, settings.address_family)
        self.v5 = settings.protocol == "5"
        self._persistent = persistent
        self._max_packet_bytes = max_packet_bytes
        use_unix_wakeup_socketpair()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=None if self.v5 else not persistent,
            protocol=mqtt.MQTTv5 if self.v5 else mqtt.MQTTv311,
        )
        self.backoff = Backoff(settings.reconnect_min_seconds, settings.reconnect_max_seconds)
        self._wait_next(self.backoff.next_wait())
        self.client.connect_timeout = settings.connect_timeout_seconds
        if self._context is not None:
            self.client.tls_set_context(self._context)
        if credentials.username is not None:
            self.client.username_pw_set(credentials.username, credentials.password)
        self.client.on_pre_connect = self._on_pre_connect
        self.client.on_connect = self._on_connect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_disconnect = self._on_disconnect
        self.on_connected: Callable[[], None] = lambda: None
        self.connected = threading.Event()
        self.report = LinkReport(log)
        self.last_exception: BaseException | None = None
        self.refused: str | None = None  # the broker answered CONNECT with a refusal
        self.closed_early: str | None = None  # the broker closed the connection before any CONNACK
        self._connack = False
        self._stopping = False
        self._thread: threading.Thread | None = None

    @property
    def target(self) -> Target:
        return self.rotation.current

    @property
    def last_error(self) -> str | None:
        return self.report.last_error

    @property
    def protocol_name(self) -> str:
        return "MQTT 5" if self.v5 else "MQTT 3.1.1"

    def set_will(self, will: Will) -> None:
        self.client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain,
                             properties=will.properties if self.v5 else None)

    def _wait_next(self, seconds: float) -> None:
        # With min == max and paho's delay reset, paho's next reconnect wait is exactly `seconds`
        # (reconnect_delay_set's documented behaviour); paho only sleeps, so fractions work.
        self.client.reconnect_delay_set(seconds, seconds)  # type: ignore[arg-type]

    def _connect_properties(self) -> Properties | None:
        if not self.v5:
            return None
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = self.settings.session_expiry_seconds if self._persistent else 0
        if self._max_packet_bytes:
            properties.MaximumPacketSize = self._max_packet_bytes
        return properties

    def _point_at(self, target: Target) -> None:
        if self._context is not None:
            self._context.verify_names[target.address] = target.verify_name
        # First connect of this process starts a clean session (paho's RAM queue is all we have),
        # later ones resume it so the broker keeps what it holds for us across outages.
        clean_start = mqtt.MQTT_CLEAN_START_FIRST_ONLY if self._persistent else True
        # Binding the source to the family's wildcard makes paho's own resolution (used when a name could
        # not be resolved in advance) skip addresses of the other family.
        source = {"ipv6": "::", "ipv4": "0.0.0.0"}.get(self.settings.address_family, "")
        self.client.connect_async(target.address, target.broker.port, self.settings.keepalive_seconds,
                                  bind_address=source, clean_start=clean_start,
                                  properties=self._connect_properties())

    def start(self) -> None:
        """Connect in the background and keep reconnecting (the broker may be down at boot)."""
        self._point_at(self.rotation.current)
        self.client.loop_start()
        self._thread = getattr(self.client, "_thread", None)  # paho keeps its network thread there

    def connect_now(self) -> None:
        """Connect to the first broker that answers, then run the loop (for interactive tools).

        A certificate that fails verification is a ConfigError at once; when no
        broker can be reached, UnavailableError lists why for each.
        """
        failures = []
        for _ in range(self.rotation.count_targets()):
            target = self.rotation.current
            self._point_at(target)
            try:
                self.client.reconnect()
            except ssl.SSLCertVerificationError as exc:
                raise ConfigError(f"{target}: {describe_error(exc)}") from None
            except OSError as exc:
                failures.append(f"{target}: {describe_error(exc)}")
                self.rotation.advance()
                continue
            self.client.loop_start()
            self._thread = getattr(self.client, "_thread", None)
            return
        raise UnavailableError("cannot reach the broker: " + "; ".join(failures))

    def wait_connected(self, timeout: float) -> bool:
        """True once the broker accepted the connection; False on timeout, a refusal or an early close."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.connected.wait(0.05):
                return True
            if self.refused or self.closed_early:
                return False
        return self.connected.is_set()

    def thread_problem(self) -> str | None:
        """Why paho's network thread cannot be relied on, or None: it died (an exception in a callback or
        in paho), so nothing would be sent or reconnected any more."""
        if self._thread is not None and not self._thread.is_alive() and not self._stopping:
            return "MQTT network thread died (see the traceback above in the log)"
        return None

    def stop(self, *, with_will: bool = False, timeout: float = 5.0) -> None:
        """Disconnect. `with_will`: end the session so that the broker publishes the Last Will — for a
        stop whose own `offline` was not confirmed, since a normal DISCONNECT discards the Will."""
        self._stopping = True
        if with_will and self.connected.is_set() and self.v5:
            self.client.disconnect(ReasonCode(PacketTypes.DISCONNECT, "Disconnect with will message"))
        elif with_will and self.connected.is_set():
            self._close_socket()  # 3.1.1 has no such DISCONNECT: an unannounced close publishes the Will
            self.client.disconnect()
        else:
            self.client.disconnect()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        if self._thread is None or not self._thread.is_alive():
            self.client.loop_stop()

    def _close_socket(self) -> None:
        sock = self.client.socket()
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # -- paho callbacks, in paho's network thread -----------------------------------------------------
    def _on_pre_connect(self, client: mqtt.Client, userdata: object) -> None:
        self._connack = False
        self.report.attempt(str(self.rotation.current))

    def _failover(self) -> None:
        """Give paho the next address/URL for its next attempt, and the jittered wait before it."""
        if self._stopping:
            return
        before = self.rotation.current
        after = self.rotation.advance()
        if after != before:
            log.debug("MQTT failover to %s", after)
            self._point_at(after)
        self._wait_next(self.backoff.next_wait())

    def _on_connect_fail(self, client: mqtt.Client, userdata: object) -> None:
        # paho 2.2 calls this from inside its `except OSError:` block: the exception is still current.
        exc = sys.exc_info()[1]
        self.last_exception = exc
        self.report.failed(str(self.rotation.current), describe_error(exc), state="no_broker",
                           error=isinstance(exc, ssl.SSLError))
        self._failover()

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: mqtt.ConnectFlags,
                    reason: mqtt.ReasonCode, properties: Properties | None) -> None:
        self._connack = True
        if reason.is_failure:
            why = f"broker refused the connection: {reason.getName()}"
            self.refused = f"{self.rotation.current}: {why}"
            self.report.failed(str(self.rotation.current), why, state="rejected", error=True)
            return
        self.refused = self.closed_early = None
        self.backoff.reset()
        self.report.connected(str(self.rotation.current))
        if self.settings.tls.insecure:
            log.warning("MQTT connected to %s WITHOUT certificate verification (mqtt.tls.insecure): "
                        "the broker is not authenticated", self.rotation.current)
        else:
            log.info("MQTT connected to %s%s", self.rotation.current,
                     " (session resumed)" if flags.session_present else "")
        self.on_connected()  # before `connected` is set: the birth messages go out first
        self.connected.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: object, flags: mqtt.DisconnectFlags,
                       reason: mqtt.ReasonCode, properties: Properties | None) -> None:
        was_connected = self.connected.is_set()
        self.connected.clear()
        if self._stopping:
            return
        if was_connected:
            self.report.disconnected()
            log.warning("MQTT disconnected from %s: %s; reconnecting", self.rotation.current, reason.getName())
            self._wait_next(self.backoff.next_wait())
            return
        if not self._connack:
            self._closed_before_connack(reason)
        self._failover()

    def _closed_before_connack(self, reason: mqtt.ReasonCode) -> None:
        if reason.getName() == "Keep alive timeout":
            what = f"no CONNACK within {self.client.keepalive} s of the {self.protocol_name} CONNECT"
        else:
            what = (f"the broker closed the connection after the {self.protocol_name} CONNECT "
                    "without a CONNACK")
        hint = "; see the broker's log (client id, limits, ACLs)"
        if self.v5:
            hint = ('; if it only speaks MQTT 3.1.1, set mqtt.protocol = "3.1.1" '
                    "(edged watch: --protocol 3.1.1)")
        self.closed_early = f"{self.rotation.current}: {what}{hint}"
        self.report.failed(str(self.rotation.current), what + hint, state="rejected",
                           closed_before_connack=True)
