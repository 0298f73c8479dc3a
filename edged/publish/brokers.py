"""Broker URLs → addresses paho can connect to, in failover order.

paho hands its host string straight to socket.create_connection, so it needs
IPv6 literals without brackets and link-local addresses with their `%zone`;
users write URLs (`mqtt://[fe80::1%25eth0]:1883`). This module parses and
checks those URLs once, at start (bad ones are configuration errors, exit 78),
and resolves host names itself so that `address_family` decides between AAAA
and A records and every address of a name is tried before the next URL.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
from dataclasses import dataclass

from edged.errors import ConfigError

log = logging.getLogger(__name__)

SCHEMES = {"mqtt": 1883, "mqtts": 8883}
_URL = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<authority>[^/?#]*)(?P<rest>.*)$")
_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62}))*\.?$")
_FAMILIES = {"any": socket.AF_UNSPEC, "ipv6": socket.AF_INET6, "ipv4": socket.AF_INET}


@dataclass(frozen=True)
class BrokerUrl:
    """One parsed broker URL; `host` has no brackets and a decoded zone (`fe80::1%eth0`)."""

    url: str
    scheme: str
    host: str
    port: int
    is_ip: bool

    @property
    def tls(self) -> bool:
        return self.scheme == "mqtts"

    @property
    def display(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


@dataclass(frozen=True)
class Target:
    """One connection attempt: paho connects to `address`; TLS verifies `verify_name`."""

    broker: BrokerUrl
    address: str
    verify_name: str

    def __str__(self) -> str:
        if self.broker.is_ip or self.address == self.broker.host:
            return self.broker.display
        shown = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.broker.display} ({shown})"


def strip_zone(host: str) -> str:
    return host.split("%", 1)[0]


def parse_broker_url(url: str, where: str = "mqtt.brokers") -> BrokerUrl:
    """Parse and check one URL; every problem is a ConfigError naming the URL and what is wrong."""
    match = _URL.match(url.strip())
    if not match:
        raise ConfigError(f"{where}: malformed broker URL {url!r}: expected mqtt://HOST:PORT or mqtts://HOST:PORT")
    scheme = match["scheme"].lower()
    if scheme not in SCHEMES:
        raise ConfigError(f"{where}: unknown scheme {scheme!r} in {url!r}: use mqtt:// or mqtts://")
    authority, rest = match["authority"], match["rest"]
    if rest not in ("", "/"):
        raise ConfigError(f"{where}: broker URL {url!r} must not have a path, query or fragment")
    if "@" in authority:
        raise ConfigError(f"{where}: broker URL {url!r} contains credentials: set mqtt.username and "
                          "mqtt.password_file (or the systemd credential) instead")
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            raise ConfigError(f"{where}: malformed broker URL {url!r}: missing `]` after the IPv6 address")
        host, port_text = authority[1:end].replace("%25", "%"), authority[end + 1:]
        if port_text and not port_text.startswith(":"):
            raise ConfigError(f"{where}: malformed broker URL {url!r}: expected `:PORT` after `]`")
        port_text = port_text[1:]
        _check_ipv6_literal(host, url, where)
        is_ip = True
    else:
        host, _, port_text = authority.partition(":")
        if ":" in port_text:
            raise ConfigError(f"{where}: IPv6 addresses go in brackets: {scheme}://[{authority}]")
        is_ip = _is_ipv4(host)
        if not is_ip and not _HOSTNAME.match(host):
            raise ConfigError(f"{where}: malformed broker URL {url!r}: {host!r} is not a host name or address")
    port = SCHEMES[scheme]
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ConfigError(f"{where}: malformed broker URL {url!r}: port {port_text!r} is not 1-65535")
        port = int(port_text)
    return BrokerUrl(url=url, scheme=scheme, host=host, port=port, is_ip=is_ip)


def _is_ipv4(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return True


def _check_ipv6_literal(host: str, url: str, where: str) -> None:
    try:
        address = ipaddress.IPv6Address(host)
    except ValueError:
        raise ConfigError(f"{where}: malformed broker URL {url!r}: {host!r} is not an IPv6 address") from None
    if address.is_link_local and not address.scope_id:
        raise ConfigError(f"{where}: link-local broker address {host} needs a zone (the interface it is on), "
                          f"e.g. mqtt://[{host}%25eth0]:1883")
    if address.scope_id and not address.is_link_local:
        raise ConfigError(f"{where}: zone %{address.scope_id} in {url!r} is only valid on a link-local address")


def check_brokers(urls: list[str], family: str) -> list[BrokerUrl]:
    """Parse every URL and check what can be checked before connecting (names, zones, families)."""
    if not urls:
        raise ConfigError("mqtt.brokers is empty: give at least one broker URL")
    brokers = [parse_broker_url(url, f"mqtt.brokers[{i}]") for i, url in enumerate(urls)]
    if len({broker.scheme for broker in brokers}) > 1:
        raise ConfigError("mqtt.brokers mixes mqtt:// and mqtts://: all brokers must use TLS or none "
                          "(edged never falls back to plaintext)")
    for i, broker in enumerate(brokers):
        where = f"mqtt.brokers[{i}]"
        if broker.is_ip:
            _check_literal(broker, family, where)
        else:
            try:
                resolve(broker, family)
            except socket.gaierror as exc:
                if exc.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)):
                    kind = {"ipv6": " (IPv6, AAAA)", "ipv4": " (IPv4, A)"}.get(family, "")
                    raise ConfigError(f"{where}: cannot resolve broker host {broker.host!r}{kind}: "
                                      f"{exc.strerror}") from None
                log.warning("%s: cannot resolve %s now (%s); will keep trying", where, broker.host, exc.strerror)
    return brokers


def _check_literal(broker: BrokerUrl, family: str, where: str) -> None:
    version = ipaddress.ip_address(broker.host).version
    if family == "ipv6" and version == 4 or family == "ipv4" and version == 6:
        raise ConfigError(f"{where}: {broker.display} is an IPv{version} address but mqtt.address_family "
                          f"is {family!r}")
    zone = broker.host.partition("%")[2]
    if zone and not zone.isdigit():
        try:
            socket.if_nametoindex(zone)
        except OSError:
            raise ConfigError(f"{where}: zone %{zone} of {broker.display}: no such network interface") from None


def resolve(broker: BrokerUrl, family: str) -> list[str]:
    """Addresses to try for one broker, IPv6 first when the family is `any`."""
    if broker.is_ip:
        return [broker.host]
    infos = socket.getaddrinfo(broker.host, broker.port, _FAMILIES[family], socket.SOCK_STREAM)
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    return sorted(addresses, key=lambda address: ":" not in address)


class BrokerRotation:
    """Failover order: each address of the current URL, then the next URL, wrapping around.

    Names are resolved again each time the rotation reaches them (DNS may
    change while the daemon runs). A name that cannot be resolved right now is
    handed to paho as it is: its connect attempt fails, is logged, and the
    rotation moves on.
    """

    def __init__(self, brokers: list[BrokerUrl], family: str):
        self._brokers = brokers
        self._family = family
        # (broker index, its targets, target index) replaced as one value: paho's thread advances
        # while other threads read `current` (for log lines), without a lock.
        self._position: tuple[int, list[Target], int] = (0, self._targets_for(brokers[0]), 0)

    @property
    def current(self) -> Target:
        _, targets, index = self._position
        return targets[index]

    @property
    def size(self) -> int:
        return len(self._brokers)

    def count_targets(self) -> int:
        """How many attempts one round over every URL and address takes."""
        return sum(len(self._targets_for(broker)) for broker in self._brokers)

    def advance(self) -> Target:
        """Move on after a failed attempt."""
        broker_index, targets, index = self._position
        if index + 1 < len(targets):
            self._position = (broker_index, targets, index + 1)
        else:
            broker_index = (broker_index + 1) % len(self._brokers)
            self._position = (broker_index, self._targets_for(self._brokers[broker_index]), 0)
        return self.current

    def _targets_for(self, broker: BrokerUrl) -> list[Target]:
        verify_name = strip_zone(broker.host)
        try:
            addresses = resolve(broker, self._family) or [broker.host]
        except OSError as exc:
            log.debug("cannot resolve %s: %s", broker.host, exc)
            addresses = [broker.host]
        return [Target(broker, address, verify_name) for address in addresses]
