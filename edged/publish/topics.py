"""The topic tree: `<prefix>/status`, `<prefix>/stats`, `<prefix>/<camera>/{detections,snapshot,<label>}`,
with a second-stage classifier `…/<camera>/<label>/<subclass>` (count), with tracking
`<prefix>/<camera>/events`, `…/events/snapshot`, `…/zones/<zone>` (occupied) and `…/zones/<zone>/<label>`
(count), and with a segmenter `…/<camera>/segments`, `…/segments/snapshot` and
`…/zones/<zone>/coverage/<label>` (share of the zone).

One class builds topics for the publisher and parses them back for `edged
watch`, so both always agree. The prefix is a template with `{device_id}` as
one whole level ("edged/{device_id}" by default) so a subscriber can watch
every device with a `+` in that place.

A topic a broker rejects does not fail one message: mosquitto drops the whole
connection ("malformed packet"), edged reconnects, re-sends its retained state
and is dropped again, forever. So every name that becomes a topic level is
checked (device id, prefix, camera: at config time, exit 78) or mapped
(labels, which come from model files) against what brokers refuse: control
characters (C0, DEL, C1), Unicode non-characters, and topics over 65,535 bytes.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from edged.errors import ConfigError

DEVICE_PLACEHOLDER = "{device_id}"
RESERVED_CAMERA_LEVELS = {"detections", "snapshot", "events", "zones", "segments"}
TOPIC_MAX_BYTES = 65535  # MQTT: a topic is a UTF-8 string with a 16-bit length
LABEL_LEVEL_MAX_BYTES = 128  # longer labels are cut (with a hash) so topic room can be checked at config time
# Room kept below each camera level for what edged builds there: a label level (at most
# LABEL_LEVEL_MAX_BYTES) today, deeper kinds with names of their own (zones, events) tomorrow. A camera
# name that leaves less is refused at config time instead of failing a publish later.
SUBTOPIC_RESERVE_BYTES = 1024

# What mosquitto refuses in a UTF-8 string (checked against mosquitto 2.0: each drops the connection):
# C0 controls, DEL, C1 controls, surrogates (not encodable), and the Unicode non-characters.
_NONCHARACTERS = "".join(chr(plane << 16 | 0xFFFE) + chr(plane << 16 | 0xFFFF) for plane in range(17))
FORBIDDEN_CHARACTERS = "\x00-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef" + _NONCHARACTERS
_FORBIDDEN = re.compile(f"[{FORBIDDEN_CHARACTERS}]")
_UNSAFE = re.compile(rf"[/+#\s{FORBIDDEN_CHARACTERS}]+")


def shown(value: str, limit: int = 40) -> str:
    """A name as an error message shows it: escaped, and cut when long (65,000 characters stay one line)."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}… ({len(value.encode('utf-8', 'surrogatepass'))} bytes)"


def has_forbidden_characters(value: str) -> bool:
    """Control characters or non-characters: a broker drops the connection of a client that sends them."""
    return _FORBIDDEN.search(value) is not None


def label_level(label: str) -> str:
    """A label as one topic level: `traffic light` → `traffic_light`.

    Labels come from model files, not from the config, so they are mapped rather
    than refused: `/`, `+`, `#`, spaces and control characters become `_`, and a
    label longer than LABEL_LEVEL_MAX_BYTES is cut and ends in a short hash of
    the whole label, so no label can make a topic the broker rejects. A label
    named like a reserved level (`events`, `zones`, …) gets a trailing `_` so it
    never collides with it.
    """
    level = _UNSAFE.sub("_", label.strip()) or "_"
    if level in RESERVED_CAMERA_LEVELS:
        return f"{level}_"
    if len(level.encode()) <= LABEL_LEVEL_MAX_BYTES:
        return level
    digest = hashlib.sha256(label.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    cut = level.encode()[:LABEL_LEVEL_MAX_BYTES - len(digest) - 1].decode("utf-8", "ignore")
    return f"{cut}~{digest}"


def check_level(value: str, what: str) -> str:
    """Names that become one topic level (device id, camera) must be usable as they are."""
    if not value or _UNSAFE.search(value) or value.startswith("$"):
        raise ConfigError(f"{what} {shown(value)} cannot be an MQTT topic level: use letters, digits, `-`, "
                          "`_` or `.`, without `/`, `+`, `#`, spaces, control characters or a leading `$`")
    return value


def check_topic_name(value: str, what: str) -> str:
    """A fixed topic part of several levels (Home Assistant's discovery prefix): no wildcards, no empty
    level, nothing a broker refuses."""
    levels = value.split("/")
    if not value or "" in levels or "+" in value or "#" in value or value.startswith("$") \
            or has_forbidden_characters(value):
        raise ConfigError(f"{what} {shown(value)} is not a usable MQTT topic: it must have no empty level, "
                          "no `+` or `#` (wildcards), no control characters and no leading `$`")
    return value


def check_prefix_template(template: str, what: str = "publish.topic_prefix") -> str:
    levels = template.split("/")
    if levels.count(DEVICE_PLACEHOLDER) != 1 or template.count("{") != 1:
        raise ConfigError(f"{what} {shown(template)} must contain {DEVICE_PLACEHOLDER} exactly once, "
                          "as a whole level")
    for level in levels:
        if level != DEVICE_PLACEHOLDER:
            check_level(level, f"{what} level")
    return template


def topic_bytes(*parts: str) -> int:
    """Length on the wire of the topic these levels make."""
    return len("/".join(parts).encode("utf-8", "surrogatepass"))


@dataclass(frozen=True)
class Parsed:
    """What a topic under the prefix means: `kind` is status, stats, detections, snapshot, count, events,
    event_snapshot, occupied (a zone's flag), zone_count, subclass_count, segments, segments_snapshot or
    coverage (a zone's share of a label)."""

    device: str
    kind: str
    camera: str | None = None
    label: str | None = None
    zone: str | None = None
    subclass: str | None = None


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
        if self.longest("c") > TOPIC_MAX_BYTES:
            raise ConfigError(f"topic prefix {shown(self.prefix)} (publish.topic_prefix with device id "
                              f"{shown(device_id)}) leaves no room under MQTT's {TOPIC_MAX_BYTES}-byte "
                              "topic limit")

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

    def longest(self, camera: str) -> int:
        """Bytes of the longest topic edged may build for this camera (SUBTOPIC_RESERVE_BYTES below it)."""
        return topic_bytes(self.prefix, camera, "x" * SUBTOPIC_RESERVE_BYTES)

    def events(self, camera: str) -> str:
        return f"{self.prefix}/{camera}/events"

    def event_snapshot(self, camera: str) -> str:
        return f"{self.prefix}/{camera}/events/snapshot"

    def occupied(self, camera: str, zone: str) -> str:
        return f"{self.prefix}/{camera}/zones/{zone}"

    def zone_count(self, camera: str, zone: str, label: str) -> str:
        return f"{self.prefix}/{camera}/zones/{zone}/{label_level(label)}"

    def subclass_count(self, camera: str, label: str, subclass: str) -> str:
        """How many objects of `label` the second stage calls `subclass` (`…/cam0/bird/Ara_macao_…`)."""
        return f"{self.prefix}/{camera}/{label_level(label)}/{label_level(subclass)}"

    def segments(self, camera: str) -> str:
        return f"{self.prefix}/{camera}/segments"

    def segments_snapshot(self, camera: str) -> str:
        return f"{self.prefix}/{camera}/segments/snapshot"

    def coverage(self, camera: str, zone: str, label: str) -> str:
        return f"{self.prefix}/{camera}/zones/{zone}/coverage/{label_level(label)}"

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
        if rest[1:] == ["events", "snapshot"]:
            return Parsed(device, "event_snapshot", camera=rest[0])
        if rest[1:] == ["segments", "snapshot"]:
            return Parsed(device, "segments_snapshot", camera=rest[0])
        if len(rest) == 3 and rest[1] == "zones":
            return Parsed(device, "occupied", camera=rest[0], zone=rest[2])
        if len(rest) == 3 and rest[1] not in RESERVED_CAMERA_LEVELS:
            return Parsed(device, "subclass_count", camera=rest[0], label=rest[1], subclass=rest[2])
        if len(rest) == 4 and rest[1] == "zones":
            return Parsed(device, "zone_count", camera=rest[0], zone=rest[2], label=rest[3])
        if len(rest) == 5 and rest[1] == "zones" and rest[3] == "coverage":
            return Parsed(device, "coverage", camera=rest[0], zone=rest[2], label=rest[4])
        return None


def check_camera(camera: str) -> str:
    check_level(camera, "camera name")
    if camera in ("status", "stats"):
        raise ConfigError(f"camera name {camera!r} is reserved for the device's own topics")
    return camera


def check_room(camera: str, longest: int, prefix: str) -> str:
    """A camera name whose longest topic would pass MQTT's limit: a config error, not a failure per frame."""
    if longest > TOPIC_MAX_BYTES:
        over = longest - TOPIC_MAX_BYTES
        raise ConfigError(f"camera name {shown(camera)} is too long: topics under {shown(prefix)} would "
                          f"reach {longest} bytes, over MQTT's {TOPIC_MAX_BYTES}-byte limit (shorten it by "
                          f"at least {over} bytes)")
    return camera
