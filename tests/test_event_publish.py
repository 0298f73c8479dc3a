"""The MQTT side of tracking against a real mosquitto: Home Assistant entities, snapshots on new, saving.

The tracker runs for real on scripted detections; a real Publisher sends what
it says. Home Assistant's own discovery schemas are used when the installed
Home Assistant runs on this Python (2024.4+ needs 3.12); the payloads are
always checked against the keys Home Assistant documents for MQTT discovery.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import jinja2
import msgspec
import numpy as np
import pytest
from PIL import Image

from edged.publish.publisher import Publisher
from edged.publish.settings import MqttSettings, PublishSettings
from edged.track.events import CameraTracker
from edged.track.settings import TrackingSettings, ZoneSettings
from edged.types import Box, Detection, Frame
from tests.fixtures.broker import Subscriber

# Keys of Home Assistant's MQTT discovery schemas (homeassistant/components/mqtt: MQTT_RO_SCHEMA, the entity
# common schema and availability, plus each platform's own), as its MQTT integration documents them.
COMMON = {"availability", "availability_mode", "availability_template", "availability_topic", "device",
          "enabled_by_default", "encoding", "entity_category", "entity_picture", "icon",
          "json_attributes_template", "json_attributes_topic", "name", "object_id", "default_entity_id",
          "origin", "qos", "state_topic", "unique_id", "value_template"}
PLATFORM_KEYS = {
    "sensor": COMMON | {"device_class", "expire_after", "force_update", "last_reset_value_template",
                        "options", "suggested_display_precision", "state_class", "unit_of_measurement"},
    "binary_sensor": COMMON | {"device_class", "expire_after", "force_update", "off_delay", "payload_off",
                               "payload_on"},
    "event": COMMON | {"device_class", "event_types"},
}
REQUIRED = {"sensor": {"state_topic"}, "binary_sensor": {"state_topic"},
            "event": {"state_topic", "event_types"}}
ZONES = [ZoneSettings(name="drive", polygon=[(0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0)]),
         ZoneSettings(name="porch", polygon=[(0.5, 0.0), (1.0, 0.0), (1.0, 1.0), (0.5, 1.0)])]


def render(template: str, payload: bytes) -> str:
    """A discovery template the way Home Assistant renders it (`value`, `value_json`, its to_json filter)."""
    environment = jinja2.Environment()
    environment.filters["to_json"] = json.dumps
    try:
        value_json = json.loads(payload)
    except ValueError:
        value_json = None
    return environment.from_string(template).render(value=payload.decode(), value_json=value_json)


def walker(x: float) -> Detection:
    return Detection("person", 0, 0.8, Box(x - 0.05, 0.5, x + 0.05, 0.9))


def run_scene(publisher: Publisher, tracker: CameraTracker, image: np.ndarray | None = None) -> None:
    for index, x in enumerate([0.2, 0.25, 0.3, 0.35, 0.45, 0.55, 0.65, 0.75] + [None] * 8):
        t = index * 0.2
        frame = Frame(seq=index, source="front", width=64, height=48, captured_ns=int(t * 1e9),
                      captured_at=1_800_000_000 + t, image=image)
        update = tracker.update(t, frame.captured_at, [walker(x)] if x else [])
        publisher.publish_tracking("front", frame, update)


def started(broker, publish: PublishSettings) -> Publisher:
    mqtt = MqttSettings(brokers=[f"mqtt://[::1]:{broker.port}"], reconnect_min_seconds=0.2)
    publisher = Publisher(mqtt, publish, device_id="pi1", version="1.2.3")
    publisher.start(backend="cpu:test", model="m")
    assert publisher.wait_connected(10), publisher.last_error
    return publisher


def test_home_assistant_gets_an_event_entity_and_zone_occupancy_entities(mosquitto):
    broker = mosquitto()
    sub = Subscriber("::1", broker.port, ("#",))
    publisher = started(broker, msgspec.convert({"homeassistant": {"enabled": True}}, PublishSettings))
    run_scene(publisher, CameraTracker(TrackingSettings(lost_seconds=0.6), ZONES))
    sub.wait_for(lambda ms: any(m.topic.endswith("/front/events") and m.json()["type"] == "end" for m in ms))
    publisher.stop()
    sub.stop()
    configs = {m.topic: m.json() for m in sub.messages if m.topic.startswith("homeassistant/")}
    node = "homeassistant/{}/edged_pi1/{}/config"
    expected = {node.format("event", "front_events"), node.format("binary_sensor", "front_zone_drive"),
                *(node.format(platform, f"front_zone_{zone}_person{suffix}") for zone in ("drive", "porch")
                  for platform, suffix in (("binary_sensor", ""), ("sensor", "_count")))}
    assert expected <= set(configs)
    for topic, config in configs.items():
        platform = topic.split("/")[1]
        assert set(config) <= PLATFORM_KEYS[platform], (topic, set(config) - PLATFORM_KEYS[platform])
        assert REQUIRED[platform] <= set(config), topic
    messages = {m.topic: m for m in sub.messages}
    events = [m for m in sub.messages if m.topic == "edged/pi1/front/events"]
    event_entity = configs[node.format("event", "front_events")]
    for message in events:  # every event renders to what HA's event entity wants
        rendered = json.loads(render(event_entity["value_template"], message.payload))
        assert rendered["event_type"] in event_entity["event_types"]
        assert rendered["id"] == message.json()["id"]
    occupancy = configs[node.format("binary_sensor", "front_zone_porch_person")]
    counts = [m.payload for m in sub.messages if m.topic == occupancy["state_topic"]]
    assert [render(occupancy["value_template"], c) for c in counts] == ["OFF", "ON", "OFF"]
    flag = configs[node.format("binary_sensor", "front_zone_drive")]
    assert messages[flag["state_topic"]].payload == flag["payload_off"].encode()


def test_home_assistants_own_schemas_accept_the_configs(mosquitto):
    schemas = pytest.importorskip("homeassistant.components.mqtt.event",
                                  reason="Home Assistant (2024.4+ needs Python 3.12) is not installed here")
    from homeassistant.components.mqtt import binary_sensor, sensor

    broker = mosquitto()
    sub = Subscriber("::1", broker.port, ("homeassistant/#",))
    publisher = started(broker, msgspec.convert({"homeassistant": {"enabled": True}}, PublishSettings))
    run_scene(publisher, CameraTracker(TrackingSettings(lost_seconds=0.6), ZONES))
    time.sleep(1)
    publisher.stop()
    sub.stop()
    modules = {"event": schemas, "binary_sensor": binary_sensor, "sensor": sensor}
    for message in sub.messages:
        modules[message.topic.split("/")[1]].DISCOVERY_SCHEMA(message.json())


def test_snapshot_on_new_and_end_carry_the_event_id_and_saving_keeps_the_quota(mosquitto, tmp_path: Path,
                                                                               image_mirror: Path):
    broker = mosquitto()
    sub = Subscriber("::1", broker.port, ("edged/#",))
    image = np.asarray(Image.open(image_mirror / "squat.bmp").convert("RGB"))
    saved = tmp_path / "events"
    publish = msgspec.convert({"events": {"snapshot_on_new": True, "save_dir": str(saved),
                                          "save_quota_mb": 0.000001}}, PublishSettings)
    publisher = started(broker, publish)
    tracker = CameraTracker(TrackingSettings(lost_seconds=0.6), ZONES)
    run_scene(publisher, tracker, image)
    run_scene(publisher, tracker, image)  # a second person later: a second event
    sub.wait_for(lambda ms: sum(m.topic.endswith("/events") and m.json()["type"] == "end" for m in ms) >= 2)
    publisher.stop()
    sub.stop()
    events = [m.json() for m in sub.messages if m.topic == "edged/pi1/front/events"]
    shots = [m for m in sub.messages if m.topic == "edged/pi1/front/events/snapshot"]
    ids = [e["id"] for e in events if e["type"] == "new"]
    assert len(ids) == 2 and [dict(m.properties["UserProperty"])["event_id"] for m in shots] == [
        ids[0], ids[0], ids[1], ids[1]]  # on new, then the best one at the end
    assert all(m.retain is False and m.properties["ContentType"] == "image/jpeg" for m in shots)
    with Image.open(io.BytesIO(shots[-1].payload)) as picture:
        assert picture.size == (image.shape[1], image.shape[0])
    assert [p.name for p in saved.glob("*/*.jpg")] == [f"{ids[1]}.jpg"]  # the quota left only the newest


def test_tracking_topics_parse_back_and_labels_never_collide_with_them():
    from edged.publish.topics import Parsed, Topics

    topics = Topics("edged/{device_id}", "+")
    assert topics.parse("edged/pi1/front/events") == Parsed("pi1", "events", "front")
    assert topics.parse("edged/pi1/front/events/snapshot") == Parsed("pi1", "event_snapshot", "front")
    assert topics.parse("edged/pi1/front/zones/drive") == Parsed("pi1", "occupied", "front", zone="drive")
    assert topics.parse("edged/pi1/front/zones/drive/person") == Parsed(
        "pi1", "zone_count", "front", "person", "drive")
    mine = Topics("edged/{device_id}", "pi1")
    for label in ("events", "zones", "snapshot", "detections"):  # a custom model's label named like a level
        assert topics.parse(mine.count("front", label)) == Parsed("pi1", "count", "front", f"{label}_")


def test_camera_snapshots_caption_tracked_objects_with_their_id():
    from edged.service.tracking import captions

    tracker = CameraTracker(TrackingSettings(min_hits=2))
    stray = Detection("cat", 16, 0.6, Box(0.7, 0.1, 0.8, 0.2))
    update = tracker.update(0.0, 0.0, [walker(0.3)])
    assert captions([walker(0.3)], update) == ["person 80%"]  # not confirmed yet: no id
    frame = [walker(0.32), stray]
    update = tracker.update(0.2, 0.2, frame)
    assert captions(frame, update) == ["person #1 80%", "cat 60%"]
