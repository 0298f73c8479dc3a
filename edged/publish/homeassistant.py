"""Home Assistant MQTT discovery: retained sensor configs so HA creates the entities by itself.

One sensor per camera and label (state = the retained count topic), plus
device-wide fps and backend sensors read from `…/stats` and `…/status`.
Availability follows the retained `…/status` (degraded still counts as
available: detections keep coming, on the CPU). HA announces itself on
`<prefix>/status` when it starts; the publisher then sends every config again.
"""

from __future__ import annotations

import json
import re

from edged.publish.settings import HomeAssistantSettings
from edged.publish.topics import Topics, label_level

_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
AVAILABILITY_TEMPLATE = "{{ 'online' if value_json.state in ('online', 'degraded') else 'offline' }}"


def _object_id(*parts: str) -> str:
    return "_".join(_ID_UNSAFE.sub("_", part) for part in parts)


class Discovery:
    """Builds discovery messages and remembers which sensors were announced."""

    def __init__(self, settings: HomeAssistantSettings, topics: Topics, *, device_id: str, version: str):
        self.settings = settings
        self.topics = topics
        self.device_id = device_id
        self.version = version
        self.node_id = _object_id("edged", device_id)
        self._announced: set[tuple[str, str]] = set()

    @property
    def status_topic(self) -> str:
        """Where Home Assistant says `online` after it (re)starts."""
        return f"{self.settings.prefix}/status"

    def _common(self) -> dict:
        return {
            "availability": [{"topic": self.topics.status, "value_template": AVAILABILITY_TEMPLATE}],
            "device": {"identifiers": [self.node_id], "name": f"edged {self.device_id}",
                       "manufacturer": "edged", "model": "edged detector", "sw_version": self.version},
            "origin": {"name": "edged", "sw_version": self.version},
        }

    def _message(self, object_id: str, config: dict) -> tuple[str, bytes]:
        topic = f"{self.settings.prefix}/sensor/{self.node_id}/{object_id}/config"
        payload = {**config, "unique_id": f"{self.node_id}_{object_id}", **self._common()}
        return topic, json.dumps(payload, separators=(",", ":")).encode()

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
        return self._message(_object_id(camera, label_level(label)), {
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
        return [*self.device_sensors(), *(self.label_sensor(c, l) for c, l in sorted(self._announced))]
