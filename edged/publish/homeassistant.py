"""Home Assistant MQTT discovery: retained sensor configs so HA creates the entities by itself.

One sensor per camera and label (state = the retained count topic), plus
device-wide fps and backend sensors read from `…/stats` and `…/status`. With
tracking: per camera an `event` entity (event types new, update, end; the
event's id, label and zones as attributes), per zone an occupancy
binary_sensor, and per zone and label an occupancy binary_sensor and a count
sensor. With a second stage counted by subclass, a count sensor per label and
subclass; with a segmenter, a coverage sensor (%) per zone and label. Keys
follow Home Assistant's MQTT discovery schemas (sensor, binary_sensor, event).
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
from edged.track.settings import ZONE_NAME_MAX

log = logging.getLogger("edged.mqtt")
_PLAIN_ID = re.compile(r"^[A-Za-z0-9_-]+$")
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
_ID_HASH_CHARS = 8
AVAILABILITY_TEMPLATE = "{{ 'online' if value_json.state in ('online', 'degraded') else 'offline' }}"
REANNOUNCE_SECONDS = 10.0
#: The only payloads HA's birth and last-will messages carry; anything else on its status topic is ignored.
HA_STATUS_PAYLOADS = (b"online", b"offline")
# HA's event entity wants a JSON object with `event_type`; the rest become the entity's attributes.
EVENT_TEMPLATE = ("{{ {'event_type': value_json.type, 'id': value_json.id, 'label': value_json.label, "
                  "'zones': value_json.zones, 'entered_zones': value_json.entered_zones, "
                  "'best_score': value_json.best_score, 'reason': value_json.reason} | to_json }}")


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


def zone_id(camera: str, zone: str) -> str:
    """Per camera and zone: the object id of the zone's flag, and the stem of its per-label entities."""
    return f"{id_part(camera)}_zone_{id_part(zone)}"


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
        self._event_cameras: set[str] = set()
        self._zones: set[tuple[str, str]] = set()
        self._zone_labels: set[tuple[str, str, str]] = set()
        self._subclasses: set[tuple[str, str, str]] = set()
        self._coverage: set[tuple[str, str, str]] = set()

    @property
    def status_topic(self) -> str:
        """Where Home Assistant says `online` after it (re)starts."""
        return f"{self.settings.prefix}/status"

    def schema(self, topic: str) -> str:
        """The MQTT 5 `schema` user property of a config: HA's discovery format for its component
        (`<prefix>/<component>/<node>/<object>/config`)."""
        return f"homeassistant/{topic.split('/')[-4]}"

    def config_topic(self, object_id_: str, component: str = "sensor") -> str:
        return f"{self.settings.prefix}/{component}/{self.node_id}/{object_id_}/config"

    def longest(self, camera: str) -> int:
        """Bytes of the longest config topic this camera can get: a zone × label entity with the longest
        zone name and label, or a label × subclass count (for the config-time check)."""
        label_id = "x" * (LABEL_LEVEL_MAX_BYTES + 1 + _ID_HASH_CHARS)
        zone = "x" * (ZONE_NAME_MAX + 1 + _ID_HASH_CHARS)
        zone_label = self.config_topic(f"{zone_id(camera, zone)}_{label_id}_coverage", "binary_sensor")
        subclass = self.config_topic(f"{id_part(camera)}_{label_id}_{label_id}")
        return max(topic_bytes(zone_label), topic_bytes(subclass))

    def _common(self) -> dict:
        return {
            "availability": [{"topic": self.topics.status, "value_template": AVAILABILITY_TEMPLATE}],
            "device": {"identifiers": [self.node_id], "name": f"edged {self.device_id}",
                       "manufacturer": "edged", "model": "edged detector", "sw_version": self.version},
            "origin": {"name": "edged", "sw_version": self.version},
        }

    def _message(self, object_id_: str, config: dict, component: str = "sensor") -> tuple[str, bytes]:
        payload = {**config, "unique_id": f"{self.node_id}_{object_id_}", **self._common()}
        return self.config_topic(object_id_, component), json.dumps(payload, separators=(",", ":")).encode()

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

    def event_entity(self, camera: str) -> tuple[str, bytes]:
        return self._message(f"{id_part(camera)}_events", {
            "name": f"{camera} events", "state_topic": self.topics.events(camera),
            "event_types": ["new", "update", "end"], "value_template": EVENT_TEMPLATE,
            "icon": "mdi:motion-sensor"}, "event")

    def zone_occupied(self, camera: str, zone: str) -> tuple[str, bytes]:
        return self._message(zone_id(camera, zone), {
            "name": f"{camera} {zone} occupied", "state_topic": self.topics.occupied(camera, zone),
            "payload_on": "true", "payload_off": "false", "device_class": "occupancy"}, "binary_sensor")

    def zone_label_entities(self, camera: str, zone: str, label: str) -> list[tuple[str, bytes]]:
        """A binary_sensor (someone of that label is in the zone) and a sensor (how many)."""
        object_id_ = f"{zone_id(camera, zone)}_{id_part(label_level(label))}"
        topic = self.topics.zone_count(camera, zone, label)
        return [
            self._message(object_id_, {
                "name": f"{camera} {zone} {label}", "state_topic": topic, "device_class": "occupancy",
                "value_template": "{{ 'ON' if value | int(0) > 0 else 'OFF' }}"}, "binary_sensor"),
            self._message(f"{object_id_}_count", {
                "name": f"{camera} {zone} {label} count", "state_topic": topic, "state_class": "measurement",
                "icon": "mdi:counter"}),
        ]

    def subclass_sensor(self, camera: str, label: str, subclass: str) -> tuple[str, bytes]:
        return self._message(f"{object_id(camera, label)}_{id_part(label_level(subclass))}", {
            "name": f"{camera} {label} {subclass}",
            "state_topic": self.topics.subclass_count(camera, label, subclass),
            "state_class": "measurement", "icon": "mdi:eye"})

    def coverage_sensor(self, camera: str, zone: str, label: str) -> tuple[str, bytes]:
        return self._message(f"{zone_id(camera, zone)}_{id_part(label_level(label))}_coverage", {
            "name": f"{camera} {zone} {label} coverage",
            "state_topic": self.topics.coverage(camera, zone, label),
            "unit_of_measurement": "%", "value_template": "{{ (value | float(0) * 100) | round(1) }}",
            "state_class": "measurement", "icon": "mdi:texture-box"})

    def new_subclass_sensors(self, camera: str, pairs: list[tuple[str, str]]) -> list[tuple[str, bytes]]:
        """Configs for (label, subclass) count sensors not announced yet."""
        fresh = [(camera, label, sub) for label, sub in dict.fromkeys(pairs)
                 if (camera, label, sub) not in self._subclasses]
        self._subclasses.update(fresh)
        return [self.subclass_sensor(*key) for key in fresh]

    def new_coverage_sensors(self, camera: str, pairs: list[tuple[str, str]]) -> list[tuple[str, bytes]]:
        """Configs for (zone, label) coverage sensors not announced yet."""
        fresh = [(camera, zone, label) for zone, label in dict.fromkeys(pairs)
                 if (camera, zone, label) not in self._coverage]
        self._coverage.update(fresh)
        return [self.coverage_sensor(*key) for key in fresh]

    def new_tracking_entities(self, camera: str, zones: dict[str, list[str]]) -> list[tuple[str, bytes]]:
        """Configs not announced yet: the camera's event entity, each zone's flag, each zone and label
        (`zones`: zone → labels, the announced-up-front labels are added)."""
        messages = []
        if camera not in self._event_cameras:
            self._event_cameras.add(camera)
            messages.append(self.event_entity(camera))
        for zone, labels in zones.items():
            if (camera, zone) not in self._zones:
                self._zones.add((camera, zone))
                messages.append(self.zone_occupied(camera, zone))
            for label in dict.fromkeys([*self.settings.labels, *labels]):
                if (camera, zone, label) not in self._zone_labels:
                    self._zone_labels.add((camera, zone, label))
                    messages += self.zone_label_entities(camera, zone, label)
        return messages

    def all_sensors(self) -> list[tuple[str, bytes]]:
        """Everything announced so far, for HA's restart and for every reconnect."""
        return [*self.device_sensors(), *(self.label_sensor(c, l) for c, l in sorted(self._announced)),
                *(self.event_entity(c) for c in sorted(self._event_cameras)),
                *(self.zone_occupied(c, z) for c, z in sorted(self._zones)),
                *(message for camera, zone, label in sorted(self._zone_labels)
                  for message in self.zone_label_entities(camera, zone, label)),
                *(self.subclass_sensor(*key) for key in sorted(self._subclasses)),
                *(self.coverage_sensor(*key) for key in sorted(self._coverage))]


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

    def new_tracking_entities(self, camera: str, zones: dict[str, list[str]]) -> list[tuple[str, bytes]]:
        with self._lock:
            return self.discovery.new_tracking_entities(camera, zones)

    def new_subclass_sensors(self, camera: str, pairs: list[tuple[str, str]]) -> list[tuple[str, bytes]]:
        with self._lock:
            return self.discovery.new_subclass_sensors(camera, pairs)

    def new_coverage_sensors(self, camera: str, pairs: list[tuple[str, str]]) -> list[tuple[str, bytes]]:
        with self._lock:
            return self.discovery.new_coverage_sensors(camera, pairs)

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
