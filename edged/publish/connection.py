"""One configured paho client: URLs, TLS, credentials, session, reconnect and failover, shared by
the Publisher and `edged watch`.

paho does the protocol, the reconnect loop with backoff and the QoS>=1 queue;
this module adds what paho lacks: a failover list (on a failed attempt the next
address/URL is given to paho with `connect_async`, which paho 2.2 allows from
`on_connect_fail`), verification of link-local TLS brokers (tls.BrokerContext),
and one readable log line per failure reason instead of silence.
Everything that can be wrong in the settings is checked in the constructor,
so a bad URL, certificate or password file is a ConfigError before any byte is sent.
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

from edged.errors import ConfigError, UnavailableError
from edged.publish.brokers import BrokerRotation, Target, check_brokers
from edged.publish.credentials import load_credentials
from edged.publish.settings import MqttSettings
from edged.publish.tls import build_context, describe_tls_error

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


def describe_error(exc: BaseException | None) -> str:
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


class Connection:
    """A paho client that knows which broker it is on and why the last attempt failed."""

    def __init__(self, settings: MqttSettings, *, client_id: str, persistent: bool = True,
                 environ: dict[str, str] | None = None):
        self.settings = settings
        brokers = check_brokers(settings.brokers, settings.address_family)
        self._context = build_context(settings.tls, use_tls=brokers[0].tls)
        credentials = load_credentials(settings, environ)
        if persistent and not client_id:
            raise ConfigError("mqtt.client_id is empty: a persistent session needs a client id")
        self.rotation = BrokerRotation(brokers, settings.address_family)
        self.v5 = settings.protocol == "5"
        self._persistent = persistent
        use_unix_wakeup_socketpair()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=None if self.v5 else not persistent,
            protocol=mqtt.MQTTv5 if self.v5 else mqtt.MQTTv311,
        )
        # paho types these as int but only multiplies and sleeps: sub-second delays work (tests use them)
        self.client.reconnect_delay_set(settings.reconnect_min_seconds,  # type: ignore[arg-type]
                                        settings.reconnect_max_seconds)  # type: ignore[arg-type]
        self.client.connect_timeout = settings.connect_timeout_seconds
        if self._context is not None:
            self.client.tls_set_context(self._context)
        if credentials.username is not None:
            self.client.username_pw_set(credentials.username, credentials.password)
        self.client.on_connect = self._on_connect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_disconnect = self._on_disconnect
        self.on_connected: Callable[[], None] = lambda: None
        self.connected = threading.Event()
        self.last_error: str | None = None
        self.last_exception: BaseException | None = None
        self.refused: str | None = None
        self._reported: tuple[Target, str] | None = None
        self._stopping = False

    @property
    def target(self) -> Target:
        return self.rotation.current

    def set_will(self, will: Will) -> None:
        self.client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain,
                             properties=will.properties if self.v5 else None)

    def _connect_properties(self) -> Properties | None:
        if not self.v5:
            return None
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = self.settings.session_expiry_seconds if self._persistent else 0
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
            return
        raise UnavailableError("cannot reach the broker: " + "; ".join(failures))

    def wait_connected(self, timeout: float) -> bool:
        """True once the broker accepted the connection; False on timeout or a refused login."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.connected.wait(0.05):
                return True
            if self.refused:
                return False
        return self.connected.is_set()

    def stop(self) -> None:
        self._stopping = True
        self.client.disconnect()
        self.client.loop_stop()

    def _report(self, reason: str, *, error: bool = False) -> None:
        """One line per new (broker, reason); repeats go to debug so a long outage does not flood the journal."""
        key = (self.rotation.current, reason)
        self.last_error = f"{self.rotation.current}: {reason}"
        if key == self._reported:
            log.debug("still failing: %s", self.last_error)
            return
        self._reported = key
        log.log(logging.ERROR if error else logging.WARNING, "MQTT %s", self.last_error)

    def _on_connect_fail(self, client: mqtt.Client, userdata: object) -> None:
        # paho 2.2 calls this from inside its `except OSError:` block: the exception is still current.
        exc = sys.exc_info()[1]
        self.last_exception = exc
        self._report(describe_error(exc), error=isinstance(exc, ssl.SSLError))
        if self._stopping:
            return
        before = self.rotation.current
        after = self.rotation.advance()
        if after != before:
            log.debug("MQTT failover to %s", after)
            self._point_at(after)

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: mqtt.ConnectFlags,
                    reason: mqtt.ReasonCode, properties: Properties | None) -> None:
        if reason.is_failure:
            self.refused = f"{self.rotation.current}: broker refused the connection: {reason.getName()}"
            self._report(f"broker refused the connection: {reason.getName()}", error=True)
            return
        self.refused = None
        self._reported = None
        self.last_error = None
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
        if was_connected and not self._stopping:
            log.warning("MQTT disconnected from %s: %s; reconnecting", self.rotation.current, reason.getName())
