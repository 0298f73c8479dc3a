"""Publisher, broker and subscriber each in its own IPv6-only network namespace (no IPv4 at all).

The publisher runs as a subprocess in its namespace (tests/fixtures/publisher_proc.py);
the subscriber is mosquitto_sub, a second real client implementation.
Covers the global (ULA) address, a link-local address with its %zone, a host name
that only has an AAAA record, and TLS verified against a link-local address.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fixtures.broker import REPO, Received, assert_valid_payloads, make_pki

pytestmark = pytest.mark.netns
FRAMES = 6


def run_publisher(host, mqtt: dict, connect_timeout: float = 10, timeout: float = 40) -> subprocess.CompletedProcess:
    spec = {"mqtt": {"reconnect_min_seconds": 0.2, "reconnect_max_seconds": 1, **mqtt}, "frames": FRAMES,
            "connect_timeout": connect_timeout}
    return host.run([sys.executable, "-m", "tests.fixtures.publisher_proc", json.dumps(spec)], cwd=REPO,
                    check=False, timeout=timeout)


class NetnsSubscriber:
    """mosquitto_sub in a namespace; output parsed from its %J JSON lines."""

    def __init__(self, host, broker, address: str, port: int = 1883, extra: tuple[str, ...] = ()):
        self.broker = broker
        self.process = host.popen(["mosquitto_sub", "-h", address, "-p", str(port), "-i", f"sub-{host.name}",
                                   "-t", "edged/#", "-q", "1", "-F", "%J", *extra],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 10
        while f"as sub-{host.name}" not in broker.log_tail():
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise TimeoutError(f"mosquitto_sub did not connect: {broker.log_tail()[-500:]}")
            time.sleep(0.05)
        time.sleep(0.3)  # connected; let its SUBSCRIBE land

    def finish(self) -> list[Received]:
        time.sleep(0.5)
        self.process.terminate()
        out, err = self.process.communicate(timeout=10)
        messages = []
        for line in out.splitlines():
            record = json.loads(line)
            payload = record["payload"]
            raw = payload if isinstance(payload, str) else json.dumps(payload)
            messages.append(Received(record["topic"], raw.encode(), bool(record["retain"]), record["qos"]))
        return messages


def check_delivery(messages: list[Received]) -> None:
    detections = [json.loads(m.payload)["seq"] for m in messages if m.topic == "edged/pi1/cam0/detections"]
    assert detections == list(range(FRAMES))
    states = [json.loads(m.payload)["state"] for m in messages if m.topic == "edged/pi1/status"]
    assert states[0] == "online" and states[-1] == "offline"
    assert assert_valid_payloads(messages) == len(messages)


@pytest.fixture
def lan3(ipv6_lan):
    broker, pi, watcher = (ipv6_lan.add_host(name) for name in ("broker", "pi", "sub"))
    for host in (broker, pi, watcher):
        assert host.run(["ip", "-4", "-o", "addr", "show"]).stdout.strip() == ""  # IPv6 only
    return broker, pi, watcher


@pytest.mark.parametrize("address", ["global", "link-local"])
def test_publish_across_ipv6_only_namespaces(mosquitto, lan3, address):
    broker_host, pi, watcher = lan3
    broker = mosquitto(host=broker_host, port=1883)
    url = (f"mqtt://[{broker_host.address}]:1883" if address == "global"
           else f"mqtt://[{broker_host.link_local}%25lan0]:1883")  # lan0 is the interface in the pi's namespace
    sub = NetnsSubscriber(watcher, broker, broker_host.address)
    result = run_publisher(pi, {"brokers": [url]})
    assert result.returncode == 0 and "stopped" in result.stdout, result.stderr
    check_delivery(sub.finish())
    peer = pi.address if address == "global" else pi.link_local
    assert f"New client connected from {peer}" in broker.log_tail()


def test_host_name_with_only_an_aaaa_record(mosquitto, lan3):
    if not Path("/etc/hosts").is_file():  # a bare debootstrap root has none
        pytest.skip("`ip netns exec` can give a namespace its own hosts file only over an existing /etc/hosts")
    broker_host, pi, watcher = lan3
    broker = mosquitto(host=broker_host, port=1883)
    hosts_dir = Path("/etc/netns") / pi.netns  # `ip netns exec` bind-mounts these files over /etc
    hosts_dir.mkdir(parents=True, exist_ok=True)
    try:
        (hosts_dir / "hosts").write_text(f"{broker_host.address} broker.lan\n")
        sub = NetnsSubscriber(watcher, broker, broker_host.address)
        result = run_publisher(pi, {"brokers": ["mqtt://broker.lan:1883"], "address_family": "any"})
        assert result.returncode == 0, result.stderr
        check_delivery(sub.finish())
        assert f"mqtt://broker.lan:1883 ([{broker_host.address}])" in result.stderr
        # No A record: with address_family ipv4 the IPv6 address must not be used.
        refused = run_publisher(pi, {"brokers": ["mqtt://broker.lan:1883"], "address_family": "ipv4"},
                                connect_timeout=3)
        assert refused.returncode == 3, refused.stderr
        assert "not-connected mqtt://broker.lan:1883" in refused.stdout
    finally:
        shutil.rmtree(hosts_dir, ignore_errors=True)


def test_tls_to_a_link_local_broker_verifies_the_address(mosquitto, lan3, tmp_path):
    broker_host, pi, watcher = lan3
    pki = make_pki(tmp_path / "pki", [f"IP:{broker_host.link_local}", f"IP:{broker_host.address}"])
    broker = mosquitto(host=broker_host, port=1883, tls=pki.server_tls(port=8883))
    url = f"mqtts://[{broker_host.link_local}%25lan0]:8883"
    # mosquitto_sub 2.0.11 fails its TLS handshake to a zoned link-local address (observed here:
    # "tlsv1 alert internal error"), so the watcher uses the broker's global address.
    sub = NetnsSubscriber(watcher, broker, broker_host.address, 8883, ("--cafile", str(pki.ca)))
    result = run_publisher(pi, {"brokers": [url], "tls": {"ca_file": str(pki.ca)}})
    assert result.returncode == 0, result.stderr
    check_delivery(sub.finish())
    assert "WITHOUT certificate verification" not in result.stderr

    # The same broker under a certificate that does not name this address: refused, never sent in plaintext.
    other = make_pki(tmp_path / "other", [f"IP:{broker_host.address}"])
    broker.stop()
    broker.tls = other.server_tls(port=8883)
    broker.start()
    failed = run_publisher(pi, {"brokers": [url], "tls": {"ca_file": str(other.ca)}}, connect_timeout=3)
    assert failed.returncode == 3
    assert "TLS certificate verification failed" in failed.stderr and "IP address mismatch" in failed.stderr
