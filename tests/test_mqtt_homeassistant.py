"""Home Assistant discovery against a real mosquitto: the same MQTT 5 properties as every other JSON
message, unique ids that tell punctuation apart, and an inbound flood that cannot starve detections."""

from __future__ import annotations

import logging
import subprocess
import time
from pathlib import Path

import msgspec
import paho.mqtt.client as mqtt

from edged.publish.payloads import Stats
from edged.publish.publisher import INBOUND_PACKET_BYTES, Publisher
from edged.publish.settings import MqttSettings, PublishSettings
from tests.fixtures.broker import Subscriber
from tests.fixtures.publisher_proc import PERSON, frame

HA = msgspec.convert({"homeassistant": {"enabled": True, "labels": ["person", "traffic light"]}},
                     PublishSettings)


def started(broker, device: str = "pi1", **mqtt_settings) -> Publisher:
    publisher = Publisher(MqttSettings(brokers=[f"mqtt://[::1]:{broker.port}"], **mqtt_settings), HA,
                          device_id=device, version="1.0")
    publisher.start(backend="cpu:test", model="m")
    assert publisher.wait_connected(10), publisher.last_error
    return publisher


def test_discovery_carries_the_same_mqtt5_properties_as_every_json_message(mosquitto):
    broker = mosquitto()
    sub = Subscriber("::1", broker.port, ("#",))
    publisher = started(broker)
    publisher.publish_frame("front", frame(1), [PERSON], inference_ms=5.0, backend="cpu:test", model="m")
    config_topic = "homeassistant/sensor/edged_pi1/front_person/config"
    messages = sub.wait_for(lambda ms: {config_topic, "edged/pi1/status", "edged/pi1/front/person"}
                            <= {m.topic for m in ms} and sum(m.topic.endswith("/config") for m in ms) >= 4)
    publisher.stop()
    sub.stop()
    by_topic = {m.topic: m for m in messages}
    json_messages = [by_topic[t] for t in ("edged/pi1/status", "edged/pi1/front/person", config_topic)]
    for message in json_messages:
        assert message.properties["ContentType"] == "application/json", message.topic
        assert [key for key, _ in message.properties["UserProperty"]] == ["schema"], message.topic
        assert "MessageExpiryInterval" not in message.properties  # retained state never expires
    assert by_topic[config_topic].properties["UserProperty"] == [("schema", "homeassistant/sensor")]
    configs = [m for m in messages if m.topic.startswith("homeassistant/")]
    assert len(configs) >= 4 and all(m.properties["ContentType"] == "application/json" for m in configs)


def test_unique_ids_tell_punctuation_apart_and_keep_plain_ids(mosquitto):
    broker = mosquitto()
    sub = Subscriber("::1", broker.port, ("homeassistant/#",))
    publishers = [started(broker, device) for device in ("pi_door", "pi.door")]
    for publisher in publishers:
        publisher.publish_frame("front", frame(1), [PERSON], inference_ms=5.0, backend="cpu:test", model="m")
    messages = sub.wait_for(lambda ms: len({m.json()["unique_id"] for m in ms}) >= 8)  # 4 sensors x 2 devices
    for publisher in publishers:
        publisher.stop()
    sub.stop()
    configs = {m.json()["unique_id"]: m.json() for m in messages}
    plain = {uid for uid, config in configs.items() if config["device"]["name"] == "edged pi_door"}
    dotted = {uid for uid, config in configs.items() if config["device"]["name"] == "edged pi.door"}
    assert plain == {"edged_pi_door_fps", "edged_pi_door_backend", "edged_pi_door_front_person",
                     "edged_pi_door_front_traffic_light"}  # plain names: the ids Home Assistant already has
    assert len(dotted) == 4 and not plain & dotted
    assert all(uid.startswith("edged_pi_door_") for uid in dotted)  # still readable, plus a short hash


def peak_rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/self/status")


def test_an_inbound_flood_neither_grows_memory_nor_starves_detections(mosquitto, caplog, tmp_path):
    """What the probe did: a 200 MB message on homeassistant/status (here 50 MB) and 200 `online`s while
    detections flow, with a queue small enough that answering every `online` would overflow it."""
    caplog.set_level(logging.DEBUG, logger="edged.mqtt")
    broker = mosquitto()
    sub = Subscriber("::1", broker.port, ("edged/pi1/front/detections", "homeassistant/sensor/#"))
    publisher = started(broker, queue_limit=60)
    publisher.publish_frame("front", frame(0), [PERSON], inference_ms=5.0, backend="cpu:test", model="m")
    sub.wait_topic("homeassistant/sensor/edged_pi1/fps/config")
    announced_before = len(sub.on("homeassistant/sensor/edged_pi1/fps/config"))

    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM: measure only what follows
    rss_before = peak_rss_bytes()
    big = tmp_path / "big"
    with big.open("wb") as file:  # 50 MB without holding them here
        file.write(b"online")
        file.truncate(50_000_006)
    subprocess.run(["mosquitto_pub", "-h", "::1", "-p", str(broker.port), "-t", "homeassistant/status",
                    "-q", "1", "-f", str(big)], check=True, timeout=60)
    flooder = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    flooder.connect("::1", broker.port)
    flooder.loop_start()
    frames = 100
    for seq in range(1, frames + 1):
        flooder.publish("homeassistant/status", b"online", qos=1)
        flooder.publish("homeassistant/status", b"online", qos=1)
        publisher.publish_frame("front", frame(seq), [PERSON], inference_ms=5, backend="cpu:test", model="m")
        time.sleep(0.01)  # 100 fps: the queue holds its detections, not 7 re-announcements per `online`
    flooder.publish("homeassistant/status", b"not a status", qos=1).wait_for_publish(5)
    received = sub.wait_for(lambda ms: sum(m.topic.endswith("/detections") for m in ms) >= frames + 1,
                            timeout=30)
    publisher.publish_stats(Stats())
    time.sleep(0.5)
    grown = peak_rss_bytes() - rss_before
    flooder.loop_stop()
    publisher.stop()
    sub.stop()

    seqs = sorted(m.json()["seq"] for m in received if m.topic.endswith("/detections"))
    assert seqs == list(range(frames + 1)) and publisher.dropped == 0
    reannounced = len(sub.on("homeassistant/sensor/edged_pi1/fps/config")) - announced_before
    assert reannounced <= 1  # 200 `online`s within the debounce window: one announcement at most
    assert grown < 25_000_000, f"peak RSS grew {grown / 1e6:.0f} MB: the 50 MB message reached edged"
    assert not any("50000006 bytes" in r.message for r in caplog.records)  # the broker kept it from us
    assert any("ignored 12 bytes on homeassistant/status" in r.message for r in caplog.records)
    assert INBOUND_PACKET_BYTES < 50_000_000
