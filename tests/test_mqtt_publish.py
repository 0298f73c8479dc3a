"""The Publisher against a real mosquitto on [::1]: topics, payloads, modes, MQTT 5 properties, drops."""

from __future__ import annotations

import time
from pathlib import Path

import msgspec
import numpy as np
import pytest
from PIL import Image

from edged.publish.payloads import CameraStats, InferenceMs, Stats
from edged.publish.publisher import Publisher
from edged.publish.settings import MqttSettings, PublishSettings
from edged.types import Box, Detection, Frame
from tests.fixtures.broker import Subscriber, assert_valid_payloads

IMAGES = Path(__file__).resolve().parents[1] / ".." / "shared" / "images"


def person(score: float = 0.9) -> Detection:
    return Detection(label="person", class_id=0, score=score, box=Box(xmin=0.1, ymin=0.2, xmax=0.4, ymax=0.9))


def car() -> Detection:
    return Detection(label="car", class_id=2, score=0.7, box=Box(xmin=0.5, ymin=0.5, xmax=0.9, ymax=0.8))


def frame(seq: int, image: np.ndarray | None = None) -> Frame:
    return Frame(seq=seq, source="test", width=640, height=480, captured_ns=time.monotonic_ns(),
                 captured_at=time.time(), image=image)


def settings(broker, **mqtt) -> MqttSettings:
    mqtt.setdefault("reconnect_min_seconds", 0.2)
    mqtt.setdefault("reconnect_max_seconds", 1.0)
    return MqttSettings(brokers=[f"mqtt://[::1]:{broker.port}"], **mqtt)


def started(broker, publish: PublishSettings | None = None, device: str = "pi1", **mqtt) -> Publisher:
    publisher = Publisher(settings(broker, **mqtt), publish or PublishSettings(), device_id=device, version="1.2.3")
    publisher.start(backend="cpu:test", model="ssd-test")
    assert publisher.wait_connected(10), publisher.last_error
    return publisher


def publish(publisher: Publisher, seq: int, detections: list[Detection], camera: str = "front", **kwargs) -> None:
    publisher.publish_frame(camera, frame(seq, **kwargs), detections, inference_ms=11.5, backend="cpu:test",
                            model="ssd-test")


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_publish_over_ipv6_loopback(mosquitto, protocol):
    broker = mosquitto()
    sub = Subscriber("::1", broker.port, ("edged/#",), protocol=protocol)
    publisher = started(broker, protocol=protocol)
    publish(publisher, 1, [person(), person(0.8), car()])
    publish(publisher, 2, [person()])
    publish(publisher, 3, [])
    publisher.publish_stats(Stats(state="online", backend="cpu:test", model="ssd-test", uptime_s=3.5, fps=4.9,
                                  inference_ms=InferenceMs(p50=11.0, p95=14.0), frames_processed=3,
                                  cameras={"front": CameraStats(fps=4.9)}))
    sub.wait_topic("edged/pi1/stats")
    sub.wait_for(lambda ms: [m.payload for m in ms if m.topic == "edged/pi1/front/person"][-1:] == [b"0"])
    publisher.stop()
    messages = sub.wait_for(lambda ms: any(m.topic == "edged/pi1/status" and b"offline" in m.payload for m in ms))
    sub.stop()

    status = sub.on("edged/pi1/status")
    assert status[0].json()["state"] == "online" and status[-1].json()["state"] == "offline"
    assert set(status[0].json()) == {"state", "version", "backend", "model", "since", "run_id",
                                     "accelerators"}
    assert status[0].json()["version"] == "1.2.3" and status[0].json()["since"].endswith("Z")
    detections = [m.json() for m in sub.on("edged/pi1/front/detections")]
    assert [d["seq"] for d in detections] == [1, 2, 3]  # every frame with detections + the first empty one
    assert [len(d["detections"]) for d in detections] == [3, 1, 0]
    assert detections[0]["detections"][2] == {"label": "car", "class_id": 2, "score": 0.7,
                                              "box": {"xmin": 0.5, "ymin": 0.5, "xmax": 0.9, "ymax": 0.8}}
    assert detections[0]["frame"] == {"width": 640, "height": 480} and detections[0]["device"] == "pi1"
    person_counts = [int(m.payload) for m in sub.on("edged/pi1/front/person")]
    assert person_counts[:3] == [2, 1, 0] and set(person_counts[3:]) <= {0}  # re-sent on connect: still 0
    assert [int(m.payload) for m in sub.on("edged/pi1/front/car")][:2] == [1, 0]
    stats = sub.on("edged/pi1/stats")[0].json()
    assert stats["device"] == "pi1" and stats["publish_dropped"] == 0 and stats["fps"] == 4.9
    assert stats["cameras"]["front"]["fps"] == 4.9 and stats["published_at"].endswith("Z")
    assert assert_valid_payloads(messages) == len(messages)
    if protocol == "5":
        props = sub.on("edged/pi1/front/detections")[0].properties
        assert props["ContentType"] == "application/json"
        assert props["UserProperty"] == [("schema", "edged/detections/v1")]
        assert 0 < props["MessageExpiryInterval"] <= 300
        assert sub.on("edged/pi1/status")[0].properties["UserProperty"] == [("schema", "edged/status/v1")]
        assert "MessageExpiryInterval" not in sub.on("edged/pi1/status")[0].properties  # retained state stays


def test_retained_state_is_what_a_late_subscriber_sees(mosquitto):
    broker = mosquitto()
    publisher = started(broker)
    publish(publisher, 1, [person(), person()])
    publish(publisher, 2, [person()])
    publisher.set_state("degraded", backend="cpu:fallback", model="ssd-test")
    time.sleep(0.3)
    late = Subscriber("::1", broker.port, ("edged/#",))
    messages = late.wait_for(lambda ms: {m.topic for m in ms} >= {"edged/pi1/status", "edged/pi1/front/person"})
    publisher.stop()
    late.stop()
    retained = {m.topic: m for m in messages if m.retain}
    assert retained["edged/pi1/front/person"].payload == b"1"
    assert retained["edged/pi1/status"].json()["state"] == "degraded"
    assert retained["edged/pi1/status"].json()["backend"] == "cpu:fallback"
    assert "edged/pi1/front/detections" not in retained
    assert assert_valid_payloads(messages) >= 2


SCENES = [[person()], [person()], [person(), person()], [car()], [person(), car()], [], [], [], [], []]


@pytest.mark.parametrize(("mode", "expected"), [
    ("every_frame", [0, 1, 2, 3, 4, 5]),  # frames with detections + the first empty one after them
    ("on_change", [0, 2, 3, 4, 5]),  # when the per-label counts change
])
def test_detection_modes(mosquitto, mode, expected):
    broker = mosquitto()
    sub = Subscriber("::1", broker.port, ("edged/pi1/front/detections",))
    publisher = started(broker, msgspec.convert({"detections": {"mode": mode}}, PublishSettings))
    for seq, scene in enumerate(SCENES):
        publish(publisher, seq, scene)
    publisher.stop()
    got = sub.wait_topic("edged/pi1/front/detections", len(expected))
    time.sleep(0.3)
    sub.stop()
    assert [m.json()["seq"] for m in sub.on("edged/pi1/front/detections")] == expected
    assert assert_valid_payloads(got) == len(got)


def test_rate_limited_mode_sends_at_most_n_per_second_and_still_clears(mosquitto):
    broker = mosquitto()
    sub = Subscriber("::1", broker.port, ("edged/pi1/front/detections",))
    publisher = started(broker, msgspec.convert({"detections": {"mode": "rate_limited", "max_per_second": 2}},
                                                PublishSettings))
    for seq in range(5):
        publish(publisher, seq, [person()])  # within 0.5 s: only the first goes out
    time.sleep(0.55)
    publish(publisher, 5, [person()])
    publish(publisher, 6, [])  # too soon after 5
    time.sleep(0.55)
    publish(publisher, 7, [])  # the "cleared" message, once the window allows
    publish(publisher, 8, [])
    publisher.stop()
    sub.wait_topic("edged/pi1/front/detections", 3)
    time.sleep(0.3)
    sub.stop()
    assert [m.json()["seq"] for m in sub.on("edged/pi1/front/detections")] == [0, 5, 7]


def test_snapshot_when_a_chosen_label_appears_rate_limited(mosquitto):
    photo = sorted(p for p in IMAGES.glob("*.jpg"))
    if not photo:
        pytest.skip(f"no photos in {IMAGES}")
    image = np.asarray(Image.open(photo[0]).convert("RGB"))
    broker = mosquitto()
    sub = Subscriber("::1", broker.port, ("edged/pi1/front/snapshot",))
    publisher = started(broker, msgspec.convert({"snapshot": {"labels": ["person"], "min_interval_seconds": 60}},
                                                PublishSettings))
    publish(publisher, 1, [car()], image=image)  # not a chosen label
    publish(publisher, 2, [person()], image=image)  # person appears: snapshot
    publish(publisher, 3, [], image=image)
    publish(publisher, 4, [person()], image=image)  # appears again, but within min_interval
    publisher.stop()
    snapshots = sub.wait_topic("edged/pi1/front/snapshot")
    time.sleep(0.3)
    sub.stop()
    assert len(sub.on("edged/pi1/front/snapshot")) == 1
    jpeg = snapshots[0].payload
    assert jpeg[:2] == b"\xff\xd8" and len(jpeg) > 5000
    assert snapshots[0].properties["ContentType"] == "image/jpeg"
    decoded = Image.open(__import__("io").BytesIO(jpeg))
    assert decoded.size == (image.shape[1], image.shape[0])


def test_home_assistant_discovery_and_reannounce(mosquitto):
    broker = mosquitto()
    sub = Subscriber("::1", broker.port, ("homeassistant/#",))
    publisher = started(broker, msgspec.convert({"homeassistant": {"enabled": True, "labels": ["person"]}},
                                                PublishSettings))
    publish(publisher, 1, [car()])
    configs = sub.wait_for(lambda ms: {m.topic for m in ms} >= {
        "homeassistant/sensor/edged_pi1/front_person/config", "homeassistant/sensor/edged_pi1/front_car/config"})
    config = next(m for m in configs if m.topic.endswith("front_car/config")).json()
    assert config["state_topic"] == "edged/pi1/front/car" and config["unique_id"] == "edged_pi1_front_car"
    assert config["availability"][0]["topic"] == "edged/pi1/status"
    assert config["device"]["identifiers"] == ["edged_pi1"] and config["device"]["sw_version"] == "1.2.3"
    before = len(sub.on("homeassistant/sensor/edged_pi1/front_car/config"))
    sub.client.publish("homeassistant/status", b"online", qos=1)  # Home Assistant restarted
    sub.wait_topic("homeassistant/sensor/edged_pi1/front_car/config", before + 1)
    late = Subscriber("::1", broker.port, ("homeassistant/#",))
    retained = late.wait_for(lambda ms: len(ms) >= 4)  # person, car, fps, backend
    assert all(m.retain for m in retained)
    assert {m.topic.split("/")[3] for m in retained} == {"front_person", "front_car", "fps", "backend"}
    publisher.stop()
    sub.stop()
    late.stop()


def test_drops_are_counted_queue_bound_and_qos0(mosquitto):
    broker = mosquitto()
    publisher = started(broker, queue_limit=5)
    broker.stop()
    deadline = time.monotonic() + 10
    while publisher.connected and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not publisher.connected
    for seq in range(8):
        publish(publisher, seq, [person()])  # QoS 1: 5 wait in paho's queue, 3 refused
    assert publisher.dropped == 3
    publisher.stop(timeout=0.2)

    broker.start()
    qos0 = started(broker, qos=0, device="pi2")
    broker.stop()
    while qos0.connected:
        time.sleep(0.05)
    publish(qos0, 1, [person()])
    assert qos0.dropped == 1
    qos0.stop(timeout=0.2)


def test_failover_to_the_next_broker_keeps_the_queue(mosquitto):
    first, second = mosquitto(), mosquitto()
    on_second = Subscriber("::1", second.port, ("edged/#",))
    settings = MqttSettings(brokers=[f"mqtt://[::1]:{first.port}", f"mqtt://[::1]:{second.port}"],
                            reconnect_min_seconds=0.2, reconnect_max_seconds=0.5)
    publisher = Publisher(settings, PublishSettings(), device_id="pi1", version="1.0")
    publisher.start(backend="cpu", model="m")
    assert publisher.wait_connected(10)
    assert "as edged-pi1 " in first.log_tail() and "as edged-pi1 " not in second.log_tail()
    first.stop()
    for seq in range(10):  # published while edged moves from the first broker to the second
        publish(publisher, seq, [person()])
    messages = on_second.wait_for(lambda ms: len([m for m in ms if m.topic.endswith("/detections")]) >= 10)
    publisher.stop()
    on_second.stop()
    assert sorted({m.json()["seq"] for m in messages if m.topic.endswith("/detections")}) == list(range(10))
    assert any(m.topic == "edged/pi1/status" and m.json()["state"] == "online" for m in messages)
    assert publisher.dropped == 0


def test_qos2_is_delivered_exactly_once(mosquitto):
    broker = mosquitto()
    sub = Subscriber("::1", broker.port, ("edged/pi1/front/detections",), qos=2)
    publisher = started(broker, qos=2)
    for seq in range(20):
        publish(publisher, seq, [person()])
    publisher.stop()
    messages = sub.wait_topic("edged/pi1/front/detections", 20)
    time.sleep(0.3)
    sub.stop()
    assert [m.json()["seq"] for m in sub.on("edged/pi1/front/detections")] == list(range(20))
    assert {m.qos for m in messages} == {2}
