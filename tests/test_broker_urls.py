"""Broker URLs: what is accepted, what paho is given, and one clear ConfigError for everything else."""

from __future__ import annotations

import socket

import pytest

from edged.errors import ConfigError
from edged.publish.brokers import BrokerRotation, check_brokers, parse_broker_url, resolve, strip_zone


def loopback_iface() -> str:
    return socket.if_indextoname(1)


@pytest.mark.parametrize(("url", "host", "port", "tls"), [
    ("mqtt://[::1]:1883", "::1", 1883, False),
    ("mqtt://[::1]", "::1", 1883, False),
    ("mqtts://[2001:db8::10]", "2001:db8::10", 8883, True),
    ("mqtts://[2001:db8::10]:9999/", "2001:db8::10", 9999, True),
    ("mqtt://[fe80::1%25eth0]:1883", "fe80::1%eth0", 1883, False),
    ("mqtt://[fe80::1%eth0]:1883", "fe80::1%eth0", 1883, False),
    ("mqtt://[fe80::1%252]:1883", "fe80::1%2", 1883, False),
    ("MQTT://192.0.2.7:1884", "192.0.2.7", 1884, False),
    ("mqtt://broker.example.org", "broker.example.org", 1883, False),
])
def test_valid_urls_give_paho_a_bare_host(url, host, port, tls):
    broker = parse_broker_url(url)
    assert (broker.host, broker.port, broker.tls) == (host, port, tls)
    assert "[" not in broker.host  # paho passes it to socket.create_connection as it is


@pytest.mark.parametrize(("url", "complaint"), [
    ("[::1]:1883", "malformed broker URL"),
    ("mqtt//[::1]:1883", "malformed broker URL"),
    ("http://[::1]:1883", "unknown scheme 'http'"),
    ("ws://[::1]:9001", "unknown scheme 'ws'"),
    ("mqtt://[::1:1883", "missing `]`"),
    ("mqtt://::1:1883", "IPv6 addresses go in brackets"),
    ("mqtt://[::1]:0", "port '0' is not 1-65535"),
    ("mqtt://[::1]:70000", "port '70000'"),
    ("mqtt://[::1]:x", "port 'x'"),
    ("mqtt://[::1]1883", "expected `:PORT`"),
    ("mqtt://[2001:db8::zz]", "is not an IPv6 address"),
    ("mqtt://[fe80::1]:1883", "link-local broker address fe80::1 needs a zone"),
    ("mqtt://[2001:db8::1%25eth0]", "only valid on a link-local address"),
    ("mqtt://user:secret@[::1]:1883", "contains credentials"),
    ("mqtt://[::1]:1883/topic", "must not have a path"),
    ("mqtt://bad_host!:1883", "is not a host name or address"),
])
def test_bad_urls_are_one_clear_config_error(url, complaint):
    with pytest.raises(ConfigError) as caught:
        parse_broker_url(url)
    message = str(caught.value)
    assert complaint in message and "\n" not in message
    assert caught.value.exit_code == 78
    assert "secret" not in message or "credentials" in message


def test_check_brokers_rejects_what_needs_the_system():
    with pytest.raises(ConfigError, match=r"cannot resolve broker host 'no-such-broker.invalid'"):
        check_brokers(["mqtt://no-such-broker.invalid:1883"], "any")
    with pytest.raises(ConfigError, match=r"zone %nosuchif0 .*no such network interface"):
        check_brokers(["mqtt://[fe80::1%25nosuchif0]:1883"], "any")
    with pytest.raises(ConfigError, match=r"IPv4 address but mqtt.address_family is 'ipv6'"):
        check_brokers(["mqtt://192.0.2.1:1883"], "ipv6")
    with pytest.raises(ConfigError, match=r"IPv6 address but mqtt.address_family is 'ipv4'"):
        check_brokers(["mqtt://[::1]:1883"], "ipv4")
    with pytest.raises(ConfigError, match="mixes mqtt:// and mqtts://"):
        check_brokers(["mqtts://[::1]:8883", "mqtt://[::1]:1883"], "any")
    with pytest.raises(ConfigError, match=r"mqtt.brokers\[1\]: unknown scheme"):
        check_brokers(["mqtt://[::1]:1883", "tcp://[::1]:1883"], "any")


def test_zone_by_interface_name_or_index_is_checked_and_kept():
    name = loopback_iface()
    brokers = check_brokers([f"mqtt://[fe80::1%25{name}]:1883", "mqtt://[fe80::2%251]:1883"], "ipv6")
    assert [b.host for b in brokers] == [f"fe80::1%{name}", "fe80::2%1"]
    assert strip_zone(brokers[0].host) == "fe80::1"


def test_rotation_goes_through_every_url_in_order_and_wraps():
    brokers = check_brokers(["mqtt://[2001:db8::1]:1883", "mqtt://[2001:db8::2]:1884", "mqtt://192.0.2.3"], "any")
    rotation = BrokerRotation(brokers, "any")
    seen = [rotation.current.address]
    for _ in range(3):
        seen.append(rotation.advance().address)
    assert seen == ["2001:db8::1", "2001:db8::2", "192.0.2.3", "2001:db8::1"]
    assert str(rotation.current) == "mqtt://[2001:db8::1]:1883"
    assert rotation.count_targets() == 3


def test_host_name_resolution_respects_the_address_family():
    # `localhost` resolves through /etc/hosts on most machines (a bare debootstrap root has no such
    # file); which families it has differs. Asked of the C library, not of edged.
    try:
        socket.getaddrinfo("localhost", 1883, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        pytest.skip(f"`localhost` does not resolve on this machine ({exc}): no /etc/hosts entry for it")
    v4 = resolve(parse_broker_url("mqtt://localhost:1883"), "ipv4")
    assert v4 and all(":" not in address for address in v4)
    try:
        v6 = resolve(parse_broker_url("mqtt://localhost:1883"), "ipv6")
    except socket.gaierror:
        v6 = []
    assert all(":" in address for address in v6)
    both = resolve(parse_broker_url("mqtt://localhost:1883"), "any")
    assert both == sorted(both, key=lambda a: ":" not in a)  # IPv6 (AAAA) first
