"""The MQTT password: from a private file or a systemd credential, never from argv or the config.

Command lines are visible to every user (`ps`), config files get copied and
pasted; so edged takes only the *location* of the password. systemd's
`LoadCredential=mqtt-password:/etc/edged/mqtt-password` puts a copy in
$CREDENTIALS_DIRECTORY readable only by the service. The password is never
logged and never part of an error message.
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from edged.errors import ConfigError
from edged.publish.settings import MqttSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Credentials:
    username: str | None
    password: str | None = field(default=None, repr=False)

    @property
    def source(self) -> str:
        return "none" if self.username is None else ("password" if self.password else "username only")


def _read_password(path: Path, key: str, *, check_mode: bool) -> str:
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"{key}: {path}: no such file") from None
    except PermissionError:
        raise ConfigError(f"{key}: {path}: not accessible by this user") from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{key}: {path}: not a regular file")
    if check_mode and info.st_mode & 0o077:
        raise ConfigError(f"{key}: {path} has mode {stat.S_IMODE(info.st_mode):04o} but holds a password: "
                          f"make it private (chmod 600 {path}) or use systemd's LoadCredential=")
    try:
        text = path.read_text(encoding="utf-8")
    except PermissionError:
        raise ConfigError(f"{key}: {path}: not readable by this user") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{key}: {path}: not UTF-8 text") from None
    password = text.rstrip("\r\n")
    if not password:
        raise ConfigError(f"{key}: {path} is empty")
    if "\n" in password:
        raise ConfigError(f"{key}: {path} has more than one line; it must hold only the password")
    return password


def load_credentials(settings: MqttSettings, environ: dict[str, str] | None = None) -> Credentials:
    """Username and password per the settings; ConfigError if a named file is missing or too open."""
    environ = dict(os.environ) if environ is None else environ
    if settings.password_file:
        if not settings.username:
            raise ConfigError("mqtt.password_file is set but mqtt.username is empty")
        path = Path(settings.password_file).expanduser()
        return Credentials(settings.username, _read_password(path, "mqtt.password_file", check_mode=True))
    directory = environ.get("CREDENTIALS_DIRECTORY")
    if directory and settings.password_credential:
        path = Path(directory) / settings.password_credential
        if path.exists():
            if not settings.username:
                log.debug("credential %s present but mqtt.username is empty: not used", settings.password_credential)
                return Credentials(None)
            # systemd owns the credentials directory and its modes; no mode check here.
            password = _read_password(path, f"credential {settings.password_credential}", check_mode=False)
            return Credentials(settings.username, password)
    return Credentials(settings.username or None)
