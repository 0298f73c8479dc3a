"""The durability pattern: a local mosquitto rendered from deploy/mosquitto/bridge.conf.j2, bridged
over TLS to an upstream broker that goes away for more than 10 s; nothing is lost upstream."""

from __future__ import annotations

import json
import shutil
import time

import jinja2

from edged.publish.mosquitto import free_port
from edged.publish.publisher import Publisher
from edged.publish.settings import MqttSettings, PublishSettings
from tests.fixtures.broker import REPO, Subscriber, assert_valid_payloads, make_pki
from tests.fixtures.publisher_proc import PERSON, frame

TEMPLATE = REPO / "deploy" / "mosquitto" / "bridge.conf.j2"
BRIDGE_STATE = "$SYS/broker/connection/edged-bridge-pi1/state"
OUTAGE_S = 10.5


def render(**variables) -> str:
    environment = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return environment.from_string(TEMPLATE.read_text()).render(**variables)


def test_template_renders_ipv6_addresses_for_mosquitto():
    text = render(edged_device_id="pi7", edged_topic_prefix="site/{device_id}",
                  edged_mqtt_brokers=["mqtts://[2001:db8::10]:8884", "mqtts://[fe80::1%25eth0]",
                                      "mqtts://broker.example.org"],
                  edged_mqtt_username="edge", edged_mqtt_password="pw", edged_mqtt_tls_ca_file="ca.pem",
                  edged_mqtt_tls_cert_file="client.pem")
    lines = text.splitlines()
    assert "address 2001:db8::10:8884 fe80::1%eth0:8883 broker.example.org:8883" in lines
    assert "topic site/pi7/# out 1" in lines
    assert "notification_topic $SYS/broker/connection/edged-bridge-pi7/state" in lines
    assert "bridge_cafile /etc/mosquitto/certs/edged-bridge-ca.crt" in lines
    assert "bridge_keyfile /etc/mosquitto/certs/edged-bridge-client.key" in lines
    assert "remote_username edge" in lines and "remote_password pw" in lines
    plain = render(edged_device_id="pi7", edged_mqtt_brokers=["mqtt://[::1]"]).splitlines()
    assert "address ::1:1883" in plain and not any(line.startswith(("bridge_ca", "bridge_cert")) for line in plain)


def test_bridge_keeps_everything_while_upstream_is_down(mosquitto, tmp_path, capsys):
    pki = make_pki(tmp_path / "pki", ["IP:::1"])
    certs = tmp_path / "certs"
    certs.mkdir()
    shutil.copy(pki.ca, certs / "edged-bridge-ca.crt")
    upstream = mosquitto(persistence=True, tls=pki.server_tls())
    local_port = free_port()
    local = mosquitto(persistence=True, port=local_port, config_text=render(
        edged_device_id="pi1", edged_mqtt_brokers=[f"mqtts://[::1]:{upstream.tls_port}"],
        edged_mqtt_tls_ca_file=str(pki.ca), edged_mosquitto_cert_dir=str(certs),
        edged_mosquitto_listener=f"{local_port} ::1", edged_mosquitto_restart_timeout="1 2"))
    topic = "edged/pi1/cam0/detections"
    fleet = Subscriber("::1", upstream.port, ("edged/pi1/#",), client_id="fleet-subscriber", persistent=True)
    watch_bridge = Subscriber("::1", upstream.port, (BRIDGE_STATE,))
    watch_bridge.wait_for(lambda ms: any(m.payload == b"1" for m in ms))
    watch_bridge.stop()

    publisher = Publisher(MqttSettings(brokers=[f"mqtt://[::1]:{local_port}"], reconnect_min_seconds=0.5,
                                       reconnect_max_seconds=2.0), PublishSettings(), device_id="pi1", version="1.0")
    publisher.start(backend="cpu:test", model="m")
    assert publisher.wait_connected(10)
    seq = 0
    for seq in range(5):
        publisher.publish_frame("cam0", frame(seq), [PERSON], inference_ms=5.0, backend="cpu:test", model="m")
    fleet.wait_topic(topic, 5)

    upstream.stop()
    down_at = time.monotonic()
    while time.monotonic() - down_at < OUTAGE_S:
        seq += 1
        publisher.publish_frame("cam0", frame(seq), [PERSON], inference_ms=5.0, backend="cpu:test", model="m")
        time.sleep(0.2)
    assert publisher.connected  # edged never noticed: its broker is the local one
    upstream.start()
    up_at = time.monotonic()
    total = seq + 1
    messages = fleet.wait_for(lambda ms: {json.loads(m.payload)["seq"] for m in ms if m.topic == topic}
                              >= set(range(total)), timeout=40)
    caught_up_s = time.monotonic() - up_at
    publisher.stop()
    fleet.stop()
    seqs = [json.loads(m.payload)["seq"] for m in messages if m.topic == topic]
    assert set(seqs) == set(range(total))
    assert publisher.dropped == 0
    assert assert_valid_payloads(messages) == len(messages)
    with capsys.disabled():
        print(f"\n[bridge] upstream down {up_at - down_at:.1f} s, {total} messages, all {len(set(seqs))} upstream "
              f"{caught_up_s:.1f} s after it came back ({len(seqs) - len(set(seqs))} duplicates)")

    # A restart of the local broker must leave the fleet's retained bridge state at "1", not at a stale "0".
    local.stop()
    local.start()
    time.sleep(3)
    late = Subscriber("::1", upstream.port, (BRIDGE_STATE,))
    states = late.wait_for(lambda ms: bool(ms), timeout=10)
    time.sleep(1)
    late.stop()
    assert [m.payload for m in late.messages][-1:] == [b"1"], states
