"""The topic tree: `<prefix>/status`, `<prefix>/stats`, `<prefix>/<camera>/{detections,snapshot,<label>}`.

One class builds topics for the publisher and parses them back for `edged
watch`, so both always agree. The prefix is a template with `{device_id}` as
one whole level ("edged/{device_id}" by default) so a subscriber can watch
every device with a `+` in that place.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from edged.errors import ConfigError

DEVICE_PLACEHOLDER = "{device_id}"
RESERVED_CAMERA_LEVELS = {"detections", "snapshot"}
_UNSAFE = re.compile(r"[/+#\s\x00]+")


def label_level(label: str) -> str:
    """A label as one topic level: `traffic light` → `traffic_light` (no `/`, `+`, `#` or spaces)."""
    return _UNSAFE.sub("_", label.strip()) or "_"


def check_level(value: str, what: str) -> str:
    """Names that become one topic level (device id, camera) must be usable as they are."""
    if not value or _UNSAFE.search(value) or value.startswith("$"):
        raise ConfigError(f"{what} {value!r} cannot be an MQTT topic level: use letters, digits, `-`, `_` or `.`, "
                          "without `/`, `+`, `#`, spaces or a leading `$`")
    return value


def check_prefix_template(template: str, what: str = "publish.topic_prefix") -> str:
    levels = template.split("/")
    if levels.count(DEVICE_PLACEHOLDER) != 1 or template.count("{") != 1:
        raise ConfigError(f"{what} {template!r} must contain {DEVICE_PLACEHOLDER} exactly once, as a whole level")
    for level in levels:
        if level != DEVICE_PLACEHOLDER:
            check_level(level, f"{what} level")
    return template


@dataclass(frozen=True)
class Parsed:
    """What a topic under the prefix means: `kind` is status, stats, detections, snapshot or count."""

    device: str
    kind: str
    camera: str | None = None
    label: str | None = None


class Topics:
    """Topics of one device (publisher) or of all devices matching a template (watch, with device `+`)."""

    def __init__(self, template: str, device_id: str):
        check_prefix_template(template)
        if device_id != "+":
            check_level(device_id, "device id")
        self.template = template
        self.device_id = device_id
        self.prefix = template.replace(DEVICE_PLACEHOLDER, device_id)
        self._device_index = template.split("/").index(DEVICE_PLACEHOLDER)

    @property
    def status(self) -> str:
        return f"{self.prefix}/status"

    @property
    def stats(self) -> str:
        return f"{self.prefix}/stats"

    @property
    def everything(self) -> str:
        return f"{self.prefix}/#"

    def detections(self, camera: str) -> str:
        return f"{self.prefix}/{camera}/detections"

    def snapshot(self, camera: str) -> str:
        return f"{self.prefix}/{camera}/snapshot"

    def count(self, camera: str, label: str) -> str:
        return f"{self.prefix}/{camera}/{label_level(label)}"

    def parse(self, topic: str) -> Parsed | None:
        """Meaning of a topic below the prefix; None for anything else (other apps' topics)."""
        levels = topic.split("/")
        prefix_levels = self.template.split("/")
        if len(levels) <= len(prefix_levels):
            return None
        for want, got in zip(prefix_levels, levels):
            if want != DEVICE_PLACEHOLDER and want != got:
                return None
        device = levels[self._device_index]
        if self.device_id != "+" and device != self.device_id:
            return None
        rest = levels[len(prefix_levels):]
        if len(rest) == 1 and rest[0] in ("status", "stats"):
            return Parsed(device, rest[0])
        if len(rest) == 2:
            camera, leaf = rest
            if leaf in RESERVED_CAMERA_LEVELS:
                return Parsed(device, leaf, camera=camera)
            return Parsed(device, "count", camera=camera, label=leaf)
        return None


def check_camera(camera: str) -> str:
    check_level(camera, "camera name")
    if camera in ("status", "stats"):
        raise ConfigError(f"camera name {camera!r} is reserved for the device's own topics")
    return camera
