"""One MQTT session opened and closed the way `edged run` would open it, for `edged doctor`.

A TCP connect proves little: an MQTT 3.1.1-only broker accepts it and then
closes the connection on edged's MQTT 5 CONNECT, and a wrong password or
certificate only shows in the CONNACK. So doctor opens a real session with the
daemon's own settings (protocol, TLS, credentials) under its own client id
(never the daemon's: that would take over its session), with a clean session
and no Will, and closes it at once.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import msgspec

from edged.errors import EdgedError
from edged.publish.connection import Connection
from edged.publish.settings import MqttSettings


@dataclass(frozen=True)
class SessionProbe:
    ok: bool | None  # None: not tried (the password is only visible to the service)
    message: str


def credential_hidden(settings: MqttSettings, environ: dict[str, str]) -> bool:
    """The password is a systemd credential, which only the service itself can read."""
    if not settings.username or settings.password_file:
        return False
    directory = environ.get("CREDENTIALS_DIRECTORY")
    return not (directory and (Path(directory) / settings.password_credential).exists())


def probe_session(settings: MqttSettings, url: str, *, timeout: float = 5.0,
                  environ: dict[str, str] | None = None) -> SessionProbe:
    environ = dict(os.environ) if environ is None else environ
    settings = msgspec.structs.replace(settings, brokers=[url])
    protocol = "MQTT 5" if settings.protocol == "5" else "MQTT 3.1.1"
    if credential_hidden(settings, environ):
        return SessionProbe(None, f"login not checked: the password is the systemd credential "
                                  f"`{settings.password_credential}`, readable by the service only")
    link_log = logging.getLogger("edged.mqtt")
    link_log.disabled = True  # the outcome is doctor's own line
    try:
        connection = Connection(settings, client_id=f"edged-doctor-{os.getpid()}", persistent=False,
                                environ=environ)
        connection.connect_now()
    except EdgedError as exc:
        link_log.disabled = False
        return SessionProbe(False, str(exc))
    try:
        if connection.wait_connected(timeout):
            return SessionProbe(True, f"{protocol} session accepted")
        return SessionProbe(False, connection.refused or connection.closed_early
                            or f"no CONNACK within {timeout:g} s of the {protocol} CONNECT")
    finally:
        connection.stop(timeout=1.0)
        link_log.disabled = False
