"""Nothing lost when the broker goes away: restart mid-stream, publisher SIGKILL (Last Will)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

from edged.publish.publisher import Publisher
from edged.publish.settings import MqttSettings, PublishSettings
from tests.fixtures.broker import REPO, Subscriber, assert_valid_payloads
from tests.fixtures.publisher_proc import PERSON, frame

OUTAGE_S = 10.5


def test_broker_restart_loses_no_qos1_message(mosquitto, capsys):
    broker = mosquitto(persistence=True)
    topic = "edged/pi1/cam0/detections"
    sub = Subscriber("::1", broker.port, (topic,), client_id="outage-subscriber", persistent=True)
    publisher = Publisher(MqttSettings(brokers=[f"mqtt://[::1]:{broker.port}"], reconnect_min_seconds=0.5,
                                       reconnect_max_seconds=2.0, queue_limit=1000),
                          PublishSettings(), device_id="pi1", version="1.0")
    publisher.start(backend="cpu:test", model="m")
    assert publisher.wait_connected(10)

    def send(seq: int) -> None:
        publisher.publish_frame("cam0", frame(seq), [PERSON], inference_ms=5.0, backend="cpu:test", model="m")

    seq = 0
    for seq in range(5):
        send(seq)
    sub.wait_topic(topic, 5)

    broker.stop()  # SIGTERM: mosquitto saves the subscriber's session to disk
    down_at = time.monotonic()
    during = 0
    while time.monotonic() - down_at < OUTAGE_S:
        seq += 1
        send(seq)
        during += 1
        time.sleep(0.2)
    assert not publisher.connected
    broker.start()
    up_at = time.monotonic()
    assert publisher.wait_connected(15)
    reconnect_s = time.monotonic() - up_at
    for _ in range(5):
        seq += 1
        send(seq)
    total = seq + 1
    messages = sub.wait_for(lambda ms: {json.loads(m.payload)["seq"] for m in ms if m.topic == topic}
                            >= set(range(total)), timeout=30)
    publisher.stop()
    sub.stop()
    seqs = [json.loads(m.payload)["seq"] for m in messages if m.topic == topic]
    assert set(seqs) == set(range(total))  # nothing missing; MQTT's at-least-once may repeat some
    assert publisher.dropped == 0
    assert assert_valid_payloads(messages) == len(messages)
    with capsys.disabled():
        print(f"\n[outage] broker down {up_at - down_at:.1f} s, {during} QoS-1 messages published meanwhile, "
              f"{total} sent, {len(seqs)} received ({len(seqs) - len(set(seqs))} duplicates), "
              f"publisher reconnected {reconnect_s:.1f} s after the broker came back")


def test_publisher_killed_leaves_retained_offline(mosquitto):
    broker = mosquitto()
    spec = {"mqtt": {"brokers": [f"mqtt://[::1]:{broker.port}"]}, "device": "pi9", "frames": 3, "hold": True}
    process = subprocess.Popen([sys.executable, "-m", "tests.fixtures.publisher_proc", json.dumps(spec)], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "connected", process.stderr.read()
        assert process.stdout.readline().strip() == "published 3"
        watcher = Subscriber("::1", broker.port, ("edged/pi9/status",))
        online = watcher.wait_topic("edged/pi9/status")[0].json()
        assert online["state"] == "online" and online["version"] == "0.0.0-test"
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        watcher.wait_for(lambda ms: any(m.json()["state"] == "offline" for m in ms))
        watcher.stop()
    finally:
        process.kill()
        process.wait()
        process.stdout.close()
        process.stderr.close()
    late = Subscriber("::1", broker.port, ("edged/pi9/#",))
    retained = late.wait_topic("edged/pi9/status")
    late.stop()
    status = retained[0]
    assert status.retain and status.json() == {"state": "offline", "version": "0.0.0-test", "backend": "cpu:test",
                                               "model": "test-model", "since": None, "run_id": "",
                                               "accelerators": []}
    assert assert_valid_payloads(retained) == len(retained)
