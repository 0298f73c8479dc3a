"""Home Assistant MQTT discovery: retained sensor configs so HA creates the entities by itself.

One sensor per camera and label (state = the retained count topic), plus
device-wide fps and backend sensors read from `…/stats` and `…/status`.
Availability follows the retained `…/status` (degraded still counts as
available: detections keep coming, on the CPU). HA announces itself on
`<prefix>/status` when it starts; the publisher then sends every config again,
at most once per REANNOUNCE_SECONDS: that topic is writable by any client, and
answering each `online` at once let a flood of them fill the queue meant for
detections.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt

from edged.publish.settings import HomeAssistantSettings
from edged.publish.topics import LABEL_LEVEL_MAX_BYTES, Topics, check_topic_name, label_level, topic_bytes

log = logging.getLogger("edged.mqtt")
_PLAIN_ID = re.compile(r"^[A-Za-z0-9_-]+$")
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
_ID_HASH_CHARS = 8
AVAILABILITY_TEMPLATE = "{{ 'online' if value_json.state in ('online', 'degraded') else 'offline' }}"
COMPONENT = "sensor"
REANNOUNCE_SECONDS = 10.0
#: The only payloads HA's birth and last-will messages carry; anything else on its status topic is ignored.
HA_STATUS_PAYLOADS = (b"online", b"offline")


def id_part(name: str) -> str:
    """One name inside a unique_id / object id (HA allows `[A-Za-z0-9_-]`).

    Plain names stay as they are (the ids HA already knows); any other name is
    escaped and ends in a short hash of itself, so names that differ only in
    punctuation (`pi.door`, `pi_door`) get different ids.
    """
    if _PLAIN_ID.match(name):
        return name
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:_ID_HASH_CHARS]
    return f"{_ID_UNSAFE.sub('_', name)}_{digest}"


def object_id(camera: str, label: str) -> str:
    """Per camera and label; the label as its count topic level shows it (same topic, same sensor)."""
    return f"{id_part(camera)}_{id_part(label_level(label))}"


class Discovery:
    """Builds discovery messages and remembers which sensors were announced."""

    def __init__(self, settings: HomeAssistantSettings, topics: Topics, *, device_id: str, version: str):
        check_topic_name(settings.prefix, "publish.homeassistant.prefix")
        self.settings = settings
        self.topics = topics
        self.device_id = device_id
        self.version = version
        self.node_id = f"edged_{id_part(device_id)}"
        self._announced: set[tuple[str, str]] = set()

    @property
    def status_topic(self) -> str:
        """Where Home Assistant says `online` after it (re)starts."""
        return f"{self.settings.prefix}/status"

    @property
    def schema(self) -> str:
        """The MQTT 5 `schema` user property of the configs: HA's discovery format for the component."""
        return f"homeassistant/{COMPONENT}"

    def config_topic(self, object_id_: str) -> str:
        return f"{self.settings.prefix}/{COMPONENT}/{self.node_id}/{object_id_}/config"

    def longest(self, camera: str) -> int:
        """Bytes of the longest config topic a label can give this camera (for the config-time check)."""
        label_id = "x" * (LABEL_LEVEL_MAX_BYTES + 1 + _ID_HASH_CHARS)
        return topic_bytes(self.config_topic(f"{id_part(camera)}_{label_id}"))

    def _common(self) -> dict:
        return {
            "availability": [{"topic": self.topics.status, "value_template": AVAILABILITY_TEMPLATE}],
            "device": {"identifiers": [self.node_id], "name": f"edged {self.device_id}",
                       "manufacturer": "edged", "model": "edged detector", "sw_version": self.version},
            "origin": {"name": "edged", "sw_version": self.version},
        }

    def _message(self, object_id_: str, config: dict) -> tuple[str, bytes]:
        payload = {**config, "unique_id": f"{self.node_id}_{object_id_}", **self._common()}
        return self.config_topic(object_id_), json.dumps(payload, separators=(",", ":")).encode()

    def device_sensors(self) -> list[tuple[str, bytes]]:
        return [
            self._message("fps", {"name": "Frames per second", "state_topic": self.topics.stats,
                                  "value_template": "{{ value_json.fps }}", "unit_of_measurement": "fps",
                                  "state_class": "measurement", "entity_category": "diagnostic"}),
            self._message("backend", {"name": "Backend", "state_topic": self.topics.status,
                                      "value_template": "{{ value_json.backend }}",
                                      "entity_category": "diagnostic"}),
        ]

    def label_sensor(self, camera: str, label: str) -> tuple[str, bytes]:
        return self._message(object_id(camera, label), {
            "name": f"{camera} {label}", "state_topic": self.topics.count(camera, label),
            "state_class": "measurement", "icon": "mdi:eye"})

    def new_sensors(self, camera: str, labels: list[str]) -> list[tuple[str, bytes]]:
        """Configs for sensors not announced yet: the configured labels on a camera's first frame, then
        each label the first time it is seen there."""
        wanted = [*self.settings.labels, *labels]
        messages = []
        for label in dict.fromkeys(wanted):
            if (camera, label) not in self._announced:
                self._announced.add((camera, label))
                messages.append(self.label_sensor(camera, label))
        return messages

    def all_sensors(self) -> list[tuple[str, bytes]]:
        """Everything announced so far, for HA's restart and for every reconnect."""
        labels = [self.label_sensor(camera, label) for camera, label in sorted(self._announced)]
        return [*self.device_sensors(), *labels]


class Debounce:
    """Runs `action` at most once per `interval`: at once when the last run is old enough, otherwise once
    at the end of the interval, however many requests came meanwhile (the last `online` is still answered)."""

    def __init__(self, action: Callable[[], None], interval: float = REANNOUNCE_SECONDS):
        self._action = action
        self._interval = interval
        self._lock = threading.Lock()
        self._last = float("-inf")
        self._timer: threading.Timer | None = None
        self.suppressed = 0  # requests folded into an earlier or a later run

    def ran(self) -> None:
        """The action just ran by other means (on connect): the interval starts now."""
        with self._lock:
            self._last = time.monotonic()

    def request(self) -> bool:
        """True when the action runs now; otherwise it is (or already was) scheduled."""
        with self._lock:
            wait = self._last + self._interval - time.monotonic()
            if wait <= 0 and self._timer is None:
                self._last = time.monotonic()
                run_now = True
            else:
                run_now = False
                self.suppressed += 1
                if self._timer is None:
                    self._timer = threading.Timer(max(wait, 0.0), self._run_later)
                    self._timer.daemon = True
                    self._timer.start()
        if run_now:
            self._action()
        return run_now

    def _run_later(self) -> None:
        with self._lock:
            self._timer = None
            self._last = time.monotonic()
        self._action()

    def cancel(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None


class Announcer:
    """Discovery on the wire: configs go out through the publisher's `send`; on every connect it subscribes
    to HA's status and announces everything; HA's birth message (`online`) is answered, debounced."""

    def __init__(self, discovery: Discovery, send: Callable[[str, bytes], None], *,
                 reannounce: Callable[[], None]):
        """`reannounce`: the publisher's answer to HA's restart (configs again, then the retained state)."""
        self.discovery = discovery
        self._send = send
        self._lock = threading.Lock()
        self._debounce = Debounce(reannounce)

    def new_sensors(self, camera: str, labels: list[str]) -> list[tuple[str, bytes]]:
        with self._lock:
            return self.discovery.new_sensors(camera, labels)

    def send(self, messages: list[tuple[str, bytes]]) -> None:
        for topic, config in messages:
            self._send(topic, config)

    def announce(self) -> None:
        with self._lock:
            messages = self.discovery.all_sensors()
        self.send(messages)

    def on_connected(self, client: mqtt.Client) -> None:
        """In paho's thread, after every CONNACK."""
        client.subscribe(self.discovery.status_topic, qos=1)
        client.message_callback_add(self.discovery.status_topic, self._on_status)
        self.announce()
        self._debounce.ran()

    def _on_status(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        """HA's birth message: announce again — only for its documented payload, and debounced."""
        if message.payload not in HA_STATUS_PAYLOADS:
            log.debug("ignored %d bytes on %s: not a Home Assistant status", len(message.payload),
                      message.topic)
        elif message.payload == b"online" and self._debounce.request():
            log.info("Home Assistant (re)started: announcing sensors again")

    def stop(self) -> None:
        self._debounce.cancel()
