"""What MQTT and brokers refuse is refused at config time (exit 78, one line), or mapped when it comes
from a model's labels: 32-bit properties, finite waits, wildcards and control characters in names,
topics over 65,535 bytes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edged.errors import EX_CONFIG
from edged.publish.payloads import Stats
from edged.publish.publisher import Publisher
from edged.publish.settings import MqttSettings, PublishSettings
from edged.publish.topics import LABEL_LEVEL_MAX_BYTES, label_level
from edged.types import Box, Detection
from tests.edged_process import REPO
from tests.fixtures.broker import Subscriber
from tests.fixtures.publisher_proc import frame

LONG_CAMERA = "c" * 65000

# (config text, phrase the one line must contain); TOML "\u0001" is the control character itself.
BAD_CONFIGS = [
    ("[mqtt]\nsession_expiry_seconds = 4294967296\n",
     "mqtt.session_expiry_seconds: Expected `int` <= 4294967295"),
    ("[mqtt]\nmessage_expiry_seconds = 4294967296\n",
     "mqtt.message_expiry_seconds: Expected `int` <= 4294967295"),
    ("[mqtt]\nreconnect_max_seconds = inf\n", "mqtt.reconnect_max_seconds: Expected `float` <= 3600.0"),
    ("[mqtt]\nreconnect_min_seconds = nan\n", "mqtt.reconnect_min_seconds: Expected `float`"),
    ("[mqtt]\nconnect_timeout_seconds = inf\n", "mqtt.connect_timeout_seconds: Expected `float` <= 3600.0"),
    ("[mqtt]\nkeepalive_seconds = 70000\n", "mqtt.keepalive_seconds: Expected `int` <= 65535"),
    ('[publish.homeassistant]\nprefix = "home/#"\n',
     "publish.homeassistant.prefix 'home/#' is not a usable MQTT topic"),
    ('[publish.homeassistant]\nprefix = "home//assistant"\n',
     "publish.homeassistant.prefix 'home//assistant'"),
    ('[publish.homeassistant]\nprefix = "home\\u0007"\n', "publish.homeassistant.prefix 'home\\x07'"),
    ('[device]\nid = "pi\\u0001door"\n', "device id 'pi\\x01door' cannot be an MQTT topic level"),
    ('[device]\nid = "pi\\u0085door"\n', "device.id: Expected `str` matching regex"),  # NEL is whitespace too
    ('[publish]\ntopic_prefix = "edged\\u007f/{device_id}"\n', "publish.topic_prefix level 'edged\\x7f'"),
    ('[mqtt]\nusername = "a\\u0000b"\n', "mqtt.username 'a\\x00b' contains control characters"),
    ('[mqtt]\nclient_id = "edged-\\u001b-{device_id}"\n',
     "mqtt.client_id 'edged-\\x1b-pi1' contains control"),
    (f'[[cameras]]\nname = "{LONG_CAMERA}"\n', "camera name 'cccccccccccccccccccccccccccccccccccccccc'… "
     "(65000 bytes) is too long: topics under 'edged/pi1' would reach 66035 bytes"),
]


def edged(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edged", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=60, env={**os.environ, "EDGED_DATA_DIR": str(data_dir)})


def assert_one_line(result: subprocess.CompletedProcess[str], command: str, phrase: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == EX_CONFIG, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and len(lines) == 1, result.stderr[-2000:]
    assert lines[0].startswith(f"edged {command}: error: ") and phrase in lines[0], lines[0]
    assert len(lines[0]) < 400  # a 65,000-character name is shown cut


@pytest.mark.parametrize(("text", "phrase"), BAD_CONFIGS, ids=[phrase[:40] for _, phrase in BAD_CONFIGS])
def test_config_check_refuses_what_mqtt_cannot_carry(tmp_path: Path, text: str, phrase: str):
    config = tmp_path / "edged.toml"
    config.write_text('[device]\nid = "pi1"\n' + text if not text.startswith("[device]") else text)
    assert_one_line(edged("config", "check", str(config), data_dir=tmp_path), "config", phrase)


@pytest.mark.parametrize("row", [0, 2, len(BAD_CONFIGS) - 1])
def test_run_refuses_the_same_before_starting(tmp_path: Path, row: int):
    text, phrase = BAD_CONFIGS[row]
    config = tmp_path / "edged.toml"
    config.write_text('[device]\nid = "pi1"\n' + text)
    assert_one_line(edged("run", "--config", str(config), data_dir=tmp_path), "run", phrase)


def test_labels_become_topic_levels_a_broker_accepts():
    assert [label_level(label) for label in ("person", "traffic light", "hair drier", " car ")] == \
        ["person", "traffic_light", "hair_drier", "car"]  # today's levels for plain labels
    hostile = ["a\x00b", "esc\x1b[2J", "del\x7f", "c1\x85x", "nonchar\ufdd0", "plane\U0001fffe", "a/b+c#d"]
    for label in hostile:
        level = label_level(label)
        assert level.isprintable() and not set(level) & set("/+#"), (label, level)
    long_a, long_b = "a" * 70000, "a" * 69999 + "b"
    assert len(label_level(long_a).encode()) == LABEL_LEVEL_MAX_BYTES
    assert label_level(long_a) != label_level(long_b)  # cut, but told apart by the hash


def test_hostile_labels_from_a_model_never_cost_the_session(mosquitto):
    """Each of these made mosquitto drop the connection (and edged reconnect forever) before labels were
    mapped; now every count arrives and the first session is the only one."""
    broker = mosquitto()
    sub = Subscriber("::1", broker.port, ("edged/#",))
    publisher = Publisher(MqttSettings(brokers=[f"mqtt://[::1]:{broker.port}"]), PublishSettings(),
                          device_id="pi1", version="1.0")
    publisher.start(backend="cpu:test", model="m")
    assert publisher.wait_connected(10)
    labels = ["bell\x07", "esc\x1b]0;title\x07", "c1\x9b", "nonchar\uffff", "x" * 70000, "person"]
    box = Box(xmin=0.1, ymin=0.1, xmax=0.2, ymax=0.2)
    detections = [Detection(label=label, class_id=i, score=0.9, box=box) for i, label in enumerate(labels)]
    publisher.publish_frame("front", frame(1), detections, inference_ms=5.0, backend="cpu:test", model="m")
    publisher.publish_stats(Stats())
    topics = {publisher.topics.count("front", label) for label in labels}
    messages = sub.wait_for(lambda ms: topics | {"edged/pi1/stats"} <= {m.topic for m in ms})
    time.sleep(0.3)
    publisher.stop()
    sub.stop()
    assert {m.topic for m in messages if m.topic in topics and m.payload == b"1"} == topics
    link = next(m for m in messages if m.topic == "edged/pi1/stats").json()["mqtt"]
    assert link["state"] == "connected" and link["connects"] == 1 and link["failed_attempts"] == 0
