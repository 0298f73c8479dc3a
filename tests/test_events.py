"""Tracking end to end: `edged run` on a scene built from the sample photos, zones configured, a real
mosquitto, and a subscriber that counts exactly what it receives (events, zone counts, snapshots)."""

from __future__ import annotations

import io
import json
import signal
from pathlib import Path

import pytest
from PIL import Image

from edged.errors import EX_CONFIG
from tests.edged_process import EdgedRun, NotifyListener, broker_url
from tests.fixtures.broker import Received, Subscriber, assert_valid_payloads
from tests.scene import Scene, build

PREFIX = "edged/pi-scene/yard"
CONFIG = """
[device]
id = "pi-scene"

[detector]
backend = "cpu"

[tracking]
labels = ["person", "cat"]
lost_seconds = 1.0
stationary_seconds = 1.5

[[cameras]]
name = "yard"
source = "{source}"
fps = {fps}

[[cameras.zones]]
name = "left"
polygon = [[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.0, 1.0]]

[[cameras.zones]]
name = "right"
polygon = [[0.5, 0.0], [1.0, 0.0], [1.0, 1.0], [0.5, 1.0]]
"""


@pytest.fixture
def scene(tmp_path: Path, image_mirror: Path) -> Scene:
    return build(tmp_path / "scene", image_mirror)


@pytest.fixture
def notify(tmp_path: Path):
    listener = NotifyListener(tmp_path)
    yield listener
    listener.close()


def start(tmp_path: Path, scene: Scene, broker, data_dir: Path, notify: NotifyListener) -> EdgedRun:
    config = tmp_path / "edged.toml"
    config.write_text(CONFIG.format(source=scene.directory, fps=scene.fps))
    return EdgedRun(["--config", str(config), "--broker", broker_url(broker)], data_dir=data_dir,
                    notify=notify)


def events(messages: list[Received]) -> list[dict]:
    return [m.json() for m in messages if m.topic == f"{PREFIX}/events"]


def retained(subscriber: Subscriber, topic: str) -> bytes | None:
    found = subscriber.on(topic)
    return found[-1].payload if found else None


def test_a_subscriber_sees_each_object_once_with_its_zones_stationary_state_end_and_snapshot(
        tmp_path: Path, scene: Scene, mosquitto, fetched_data_dir: Path, notify):
    broker = mosquitto()
    subscriber = Subscriber("::1", broker.port, ("edged/#",))
    run = start(tmp_path, scene, broker, fetched_data_dir, notify)
    try:
        subscriber.wait_for(lambda ms: sum(e["type"] == "end" for e in events(ms)) >= 2, timeout=40)
        run.signal(signal.SIGTERM)
        assert run.wait(timeout=10) == 0
    finally:
        run.stop()
        subscriber.stop()
    received = events(subscriber.messages)
    news = [e for e in received if e["type"] == "new"]
    first = {e["label"]: e["id"] for e in news[:2]}
    assert sorted(first) == ["cat", "person"] and len(set(first.values())) == 2
    person = [e for e in received if e["id"] == first["person"]]
    cat = [e for e in received if e["id"] == first["cat"]]
    for story in (person, cat):  # exactly one new and one end per object, in that order
        assert [e["type"] for e in story].count("new") == 1 and [e["type"] for e in story].count("end") == 1
        assert story[0]["type"] == "new" and story[-1]["type"] == "end"

    assert [e["type"] for e in person][0] == "new" and [e["type"] for e in person][-1] == "end"
    assert person[0]["zones"] == ["left"] and person[-1]["entered_zones"] == ["left", "right"]
    zone_steps = [e["zones"] for e in person if e["type"] == "new" or "zones" in e["changed"]]
    assert zone_steps == [["left"], ["right"]]
    assert person[-1]["reason"] == "lost" and len(person) <= 5

    assert cat[0]["zones"] == ["right"] and cat[-1]["type"] == "end" and cat[-1]["reason"] == "lost"
    updates = [e for e in cat if e["type"] == "update"]
    assert [e["stationary"] for e in updates][-1:] == [True] and len(updates) <= 2  # marked, no storm
    assert sum("stationary" in e["changed"] for e in updates) == 1

    ends = {e["id"]: e for e in received if e["type"] == "end"}
    snapshots = [m for m in subscriber.messages if m.topic == f"{PREFIX}/events/snapshot"]
    shot_ids = {dict(m.properties["UserProperty"])["event_id"]: m for m in snapshots}
    for event_id in first.values():
        assert ends[event_id]["snapshot_at"] is not None
        shot = shot_ids[event_id]
        assert shot.retain is False or shot.retain is True  # received live or as the retained copy
        with Image.open(io.BytesIO(shot.payload)) as picture:
            assert picture.format == "JPEG" and picture.size == (480, 300)

    for zone, label in (("left", "person"), ("right", "person"), ("right", "cat")):
        counts = [int(m.payload) for m in subscriber.on(f"{PREFIX}/zones/{zone}/{label}")]
        assert 1 in counts and counts[-1] == 0, (zone, label, counts)
    for zone in ("left", "right"):
        flags = [json.loads(m.payload) for m in subscriber.on(f"{PREFIX}/zones/{zone}")]
        assert True in flags and flags[-1] is False
    assert assert_valid_payloads(subscriber.messages) > 10


def test_a_restart_reuses_no_event_id_and_retained_counts_are_right(tmp_path: Path, scene: Scene, mosquitto,
                                                                   fetched_data_dir: Path, notify):
    broker = mosquitto()
    subscriber = Subscriber("::1", broker.port, ("edged/#",))
    try:
        run = start(tmp_path, scene, broker, fetched_data_dir, notify)
        subscriber.wait_for(lambda ms: sum(e["type"] == "new" for e in events(ms)) >= 2, timeout=40)
        run.signal(signal.SIGTERM)  # in the middle of the walk: both events are open
        assert run.wait(timeout=10) == 0
        before = events(subscriber.messages)
        stopped = [e for e in before if e["type"] == "end"]
        assert {e["reason"] for e in stopped} == {"stopped"} and len(stopped) == 2
        assert retained(subscriber, f"{PREFIX}/zones/right/cat") == b"0"

        run = start(tmp_path, scene, broker, fetched_data_dir, notify)
        subscriber.wait_for(lambda ms: sum(e["type"] == "new" for e in events(ms)) >= 4, timeout=40)
        late = Subscriber("::1", broker.port, (f"{PREFIX}/zones/#",))  # a subscriber connecting now
        try:
            late.wait_for(lambda ms: any(m.topic.endswith("/right/cat") and m.payload == b"1" for m in ms),
                          timeout=10)
            assert retained(late, f"{PREFIX}/zones/right") == b"true"
        finally:
            late.stop()
        run.signal(signal.SIGTERM)
        assert run.wait(timeout=10) == 0
    finally:
        subscriber.stop()
    ids = [e["id"] for e in events(subscriber.messages) if e["type"] == "new"]
    assert len(ids) == len(set(ids)) >= 4


@pytest.mark.parametrize("zone, message", [
    ('name = "a"\npolygon = [[0.1, 0.1], [0.9, 0.1]]',
     "cameras[0].zones[0].polygon: Expected `array` of length >= 3"),
    ('name = "a"\npolygon = [[0.1, 0.1], [0.9, 0.9], [0.9, 0.1], [0.1, 0.9]]',
     "cameras[0].zones[0]: polygon of zone `a` crosses itself"),
    ('name = "a"\npolygon = [[0.1, 0.1], [1.5, 0.1], [0.5, 0.9]]',
     "cameras[0].zones[0].polygon[1][0]: Expected `float` <= 1.0"),
    ('name = "a"\npolygon = [[0.1, 0.1], [0.9, 0.1], [0.5, 0.9]]\nlabels = ["persn"]',
     "cameras[0].zones[0].labels: unknown label 'persn'"),
])
def test_bad_zones_stop_edged_run_with_one_line_and_exit_78(tmp_path: Path, fetched_data_dir: Path, zone: str,
                                                            message: str, notify):
    config = tmp_path / "edged.toml"
    config.write_text(f'[[cameras]]\nname = "yard"\nsource = "samples"\n[[cameras.zones]]\n{zone}\n')
    run = EdgedRun(["--config", str(config), "--backend", "cpu", "--broker", "mqtt://[::1]:1"],
                   data_dir=fetched_data_dir, notify=notify)
    assert run.wait(timeout=30) == EX_CONFIG
    errors = [line for line in run.log if "error" in line]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in run.text, run.text
