"""A segmenter's results on MQTT against a real mosquitto: `…/segments`, retained zone coverage, the overlay,
Home Assistant sensors; and a second stage's subclass in detections, events and counts.

The segmentation is DeepLab's on bird_segmentation.bmp (bird 21.2 % of the picture, zoo README); the
zones are halves of the picture, so what they report can be checked against the class map itself.
"""

from __future__ import annotations

import io
from pathlib import Path

import msgspec
import numpy as np
import pytest
from PIL import Image

from edged.detect.segmentation import class_shares
from edged.detect.segmenter import Segmenter
from edged.detect.settings import ModelSettings
from edged.publish.publisher import Publisher
from edged.publish.settings import MqttSettings, PublishSettings
from edged.segment.areas import Segmented, ZoneAreas
from edged.track.events import CameraTracker
from edged.track.settings import TrackingSettings, ZoneSettings
from edged.types import Box, Detection, Frame, Subclass
from tests.fixtures.broker import Subscriber, assert_valid_payloads

LEFT = ZoneSettings(name="left", polygon=[(0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0)])
RIGHT = ZoneSettings(name="right", polygon=[(0.5, 0.0), (1.0, 0.0), (1.0, 1.0), (0.5, 1.0)])


@pytest.fixture(scope="module")
def bird_scene(zoo_data_dir: Path, zoo_images: Path):
    image = np.asarray(Image.open(zoo_images / "bird_segmentation.bmp").convert("RGB"))
    with Segmenter.open(ModelSettings(model="deeplabv3_mnv2_pascal_quant", backend="cpu")) as segmenter:
        result = segmenter.segment(image)
        labels = segmenter.labels
    return image, result, labels


def started(broker, publish: PublishSettings, **kwargs) -> Publisher:
    mqtt = MqttSettings(brokers=[f"mqtt://[::1]:{broker.port}"], reconnect_min_seconds=0.2)
    publisher = Publisher(mqtt, publish, device_id="pi1", version="1.2.3", **kwargs)
    publisher.start(backend="cpu:test", model="m")
    assert publisher.wait_connected(10), publisher.last_error
    return publisher


def frame_of(image: np.ndarray, seq: int = 1) -> Frame:
    return Frame(seq=seq, source="garden", width=image.shape[1], height=image.shape[0], captured_ns=seq,
                 captured_at=1_800_000_000.0 + seq, image=image)


def test_segments_coverage_and_overlay_reach_a_subscriber(mosquitto, bird_scene):
    image, result, labels = bird_scene
    broker = mosquitto()
    sub = Subscriber("::1", broker.port, ("#",))
    publisher = started(broker, msgspec.convert({"homeassistant": {"enabled": True}}, PublishSettings))
    areas = ZoneAreas([LEFT, RIGHT])
    whole, zones = areas.measure(result.ids, labels)
    segmented = Segmented(whole, zones, result.ids, labels, result.inference_ms, result.backend, "deeplab")
    publisher.publish_segments("garden", frame_of(image), segmented)
    message = sub.wait_topic("edged/pi1/garden/segments")[0]
    sub.wait_topic("edged/pi1/garden/zones/right/coverage/bird")
    sub.wait_topic("edged/pi1/garden/segments/snapshot")
    sub.wait_for(lambda ms: any("coverage" in m.topic and m.topic.startswith("homeassistant/") for m in ms))
    publisher.stop()
    sub.stop()
    payload = message.json()
    assert not message.retain and message.properties["UserProperty"] == [("schema", "edged/segments/v1")]
    assert sum(payload["areas"].values()) == pytest.approx(1.0, abs=1e-3)
    assert payload["areas"]["bird"] == pytest.approx(0.212, abs=0.01)
    half = image.shape[1] // 2  # 513 columns: centres of columns 0..255 are left of 0.5, 256.. right
    for zone, columns in (("left", slice(0, half)), ("right", slice(half, None))):
        expected = class_shares(result.ids[:, columns], labels)
        assert payload["zones"][zone] == pytest.approx(expected, abs=1e-4)  # exact up to rounding
        assert sum(payload["zones"][zone].values()) == pytest.approx(1.0, abs=1e-3)
        coverage = sub.on(f"edged/pi1/garden/zones/{zone}/coverage/bird")[-1]
        assert float(coverage.payload) == pytest.approx(expected["bird"], abs=1e-4)
    overlay = sub.on("edged/pi1/garden/segments/snapshot")[-1]
    assert overlay.properties["ContentType"] == "image/jpeg"
    with Image.open(io.BytesIO(overlay.payload)) as picture:
        assert picture.size == (image.shape[1], image.shape[0])
    config = next(m.json() for m in sub.messages
                  if m.topic == "homeassistant/sensor/edged_pi1/garden_zone_right_bird_coverage/config")
    assert config["state_topic"] == "edged/pi1/garden/zones/right/coverage/bird" and config[
        "unit_of_measurement"] == "%"
    assert assert_valid_payloads(sub.messages) >= 5


def test_coverage_is_retained_only_when_it_moved_and_comes_back_on_reconnect(mosquitto, bird_scene):
    image, result, labels = bird_scene
    broker = mosquitto()
    publisher = started(broker, PublishSettings())
    areas = ZoneAreas([RIGHT])
    empty = np.zeros_like(result.ids)
    for ids in (result.ids, result.ids, empty):  # same picture twice, then the bird flew off
        whole, zones = areas.measure(ids, labels)
        publisher.publish_segments("garden", frame_of(image), Segmented(whole, zones, ids, labels, 1.0, "cpu",
                                                                        "deeplab"), snapshot=False)
    late = Subscriber("::1", broker.port, ("edged/pi1/garden/zones/#",))  # joins later: gets the retained
    got = late.wait_topic("edged/pi1/garden/zones/right/coverage/bird")
    late.stop()
    publisher.stop()
    assert got[-1].payload == b"0" and got[-1].retain
    assert {m.topic.rsplit("/", 1)[1]: m.payload for m in late.messages} == {"bird": b"0", "background": b"1"}


def test_subclass_counts_and_events_carry_the_second_stages_answer(mosquitto):
    broker = mosquitto()
    sub = Subscriber("::1", broker.port, ("#",))
    publisher = started(broker, msgspec.convert({"homeassistant": {"enabled": True}}, PublishSettings),
                        subclass_counts={"garden": ["bird"]})
    macaw = Subclass("Ara macao (Scarlet Macaw)", 0.81)
    tracker = CameraTracker(TrackingSettings(min_hits=1, lost_seconds=0.5))
    for step, present in enumerate([True, True, False, False, False]):
        detections = [Detection("bird", 15, 0.8, Box(0.1, 0.1, 0.6, 0.9), macaw)] if present else []
        frame = Frame(seq=step, source="garden", width=640, height=480, captured_ns=int(step * 0.3e9),
                      captured_at=1_800_000_000 + step * 0.3)
        update = tracker.update(step * 0.3, frame.captured_at, detections)
        publisher.publish_frame("garden", frame, detections, inference_ms=1.0, backend="cpu", model="m")
        publisher.publish_tracking("garden", frame, update, subclasses={1: macaw})
    topic = "edged/pi1/garden/bird/Ara_macao_(Scarlet_Macaw)"
    sub.wait_for(lambda ms: [m.payload for m in ms if m.topic == topic] == [b"1", b"0"])
    sub.wait_for(lambda ms: any(m.topic.endswith("/events") and m.json()["type"] == "end" for m in ms))
    publisher.stop()
    sub.stop()
    detections = sub.on("edged/pi1/garden/detections")
    assert detections[0].json()["detections"][0]["subclass"] == {"label": macaw.label, "score": 0.81}
    assert "subclass" not in detections[-1].payload.decode()  # the empty frame after them
    events = [m.json() for m in sub.on("edged/pi1/garden/events")]
    assert [e["type"] for e in events] == ["new", "end"] and all(e["subclass"]["label"] == macaw.label
                                                                 for e in events)
    object_id = "garden_bird_Ara_macao__Scarlet_Macaw__6865301f"  # escaped for an id, with a hash of itself
    config = next(m.json() for m in sub.messages
                  if m.topic == f"homeassistant/sensor/edged_pi1/{object_id}/config")
    assert config["state_topic"] == topic and config["name"] == f"garden bird {macaw.label}"
    assert assert_valid_payloads(sub.messages) >= 6
