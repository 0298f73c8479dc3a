"""MqttSettings (how to reach the broker) and PublishSettings (what to publish on it).

They are the `[mqtt]` and `[publish]` sections of the config file and the
options of `edged watch`, so a setting means the same thing everywhere. Every
field documents itself (title + description) so `edged config` can print them,
and msgspec's decode errors name the key path ("at `$.mqtt.qos`").
Passwords never appear here: only the file or systemd credential holding one.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from edged.fields import documented

DEFAULT_BROKER = "mqtt://[::1]:1883"
UINT32_MAX = 2**32 - 1  # MQTT 5 Four Byte Integer properties (expiry intervals)
MAX_WAIT_SECONDS = 3600.0  # a wait over an hour is a typo; paho's socket timeouts need finite ones


class TlsSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """How an `mqtts://` broker is authenticated and how edged authenticates to it."""

    ca_file: Annotated[str | None, documented(
        "CA file", "PEM file of the certificate authorities that sign the broker's certificate; "
        "default: the system's CA store.")] = None
    cert_file: Annotated[str | None, documented(
        "Client certificate", "PEM client certificate (chain) for brokers that authenticate clients by "
        "certificate; needs `key_file` unless the key is in the same file.")] = None
    key_file: Annotated[str | None, documented(
        "Client key", "PEM private key of `cert_file`.")] = None
    fingerprint_sha256: Annotated[str | None, documented(
        "Pinned certificate", "SHA-256 fingerprint of the broker's certificate (hex, colons allowed, as "
        "`openssl x509 -noout -fingerprint -sha256` prints it). Checked after the TLS handshake and before "
        "any MQTT byte (credentials included) is sent. Without `ca_file` it replaces the CA check, so "
        "a self-signed broker certificate works.")] = None
    insecure: Annotated[bool, documented(
        "Skip verification", "Accept any broker certificate. Traffic is encrypted but not authenticated; "
        "a warning is logged at every connect. Prefer `ca_file` or `fingerprint_sha256`.")] = False


class MqttSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The broker connection: addresses, protocol, security, queueing."""

    brokers: Annotated[list[str], documented(
        "Brokers", "Broker URLs tried in order (failover): `mqtt://host:1883`, `mqtts://host:8883`, "
        "`mqtt://[2001:db8::10]:1883`, link-local `mqtt://[fe80::1%25eth0]:1883` (a raw `%eth0` works too). "
        "All must use the same scheme: there is no fallback from TLS to plaintext.",
        min_length=1)] = msgspec.field(default_factory=lambda: [DEFAULT_BROKER])
    protocol: Annotated[Literal["3.1.1", "5"], documented(
        "MQTT version", "MQTT 5 adds content type, message expiry and a schema-version user property "
        "to every message.")] = "5"
    qos: Annotated[Literal[0, 1, 2], documented(
        "QoS", "Quality of service of every message. QoS 0 messages are dropped while disconnected; "
        "QoS 1 and 2 wait in the queue (`queue_limit`).")] = 1
    client_id: Annotated[str, documented(
        "Client id", "MQTT client id; `{device_id}` is replaced. Must be unique on the broker: the "
        "persistent session is keyed by it.")] = "edged-{device_id}"
    keepalive_seconds: Annotated[int, documented(
        "Keepalive", "Seconds between pings when idle; the broker publishes the Last Will "
        "(status offline) after 1.5 times this without a word from edged.", ge=5, le=65535)] = 30
    address_family: Annotated[Literal["any", "ipv6", "ipv4"], documented(
        "Address family", "For broker host names: `any` tries IPv6 (AAAA) addresses first, then IPv4; "
        "`ipv6` or `ipv4` use only that family.")] = "any"
    tls: Annotated[TlsSettings, documented(
        "TLS", "Certificates for `mqtts://` brokers.")] = msgspec.field(default_factory=TlsSettings)
    username: Annotated[str | None, documented(
        "Username", "MQTT username; the password comes from `password_file` or the systemd credential "
        "`password_credential`, never from the config or the command line.")] = None
    password_file: Annotated[str | None, documented(
        "Password file", "File holding the MQTT password (one line; must not be readable by group or "
        "others).")] = None
    password_credential: Annotated[str, documented(
        "Password credential", "Name of the systemd credential (`LoadCredential=NAME:PATH`) read from "
        "$CREDENTIALS_DIRECTORY when `password_file` is not set.")] = "mqtt-password"
    queue_limit: Annotated[int, documented(
        "Queue limit", "QoS 1/2 messages kept in RAM while the broker is unreachable (paho's queue). "
        "Drop policy: when it is full, new messages are refused and counted (`publish_dropped` in "
        "stats); status and per-label counts are re-sent on every connect, so the retained state is "
        "never stale. For durability beyond RAM bridge a local mosquitto (deploy/mosquitto).",
        ge=1)] = 1000
    message_expiry_seconds: Annotated[int, documented(
        "Message expiry", "MQTT 5: brokers drop detections and stats older than this instead of "
        "delivering stale ones; 0 = never. At most 4294967295 (a 32-bit MQTT property).",
        ge=0, le=UINT32_MAX)] = 300
    session_expiry_seconds: Annotated[int, documented(
        "Session expiry", "MQTT 5: how long the broker keeps edged's session after a disconnect "
        "(MQTT 3.1.1 sessions never expire). At most 4294967295, which MQTT 5 reads as never.",
        ge=0, le=UINT32_MAX)] = 3600
    reconnect_min_seconds: Annotated[float, documented(
        "Reconnect delay", "First wait before reconnecting; doubles after each failure up to "
        "`reconnect_max_seconds`. Each wait is drawn between half and all of that (jitter), so devices "
        "that lost their broker together do not reconnect in lockstep.", gt=0, le=MAX_WAIT_SECONDS)] = 1.0
    reconnect_max_seconds: Annotated[float, documented(
        "Reconnect delay cap", "Longest wait between reconnect attempts: after an outage of any length "
        "edged is back at most this long after the broker.", gt=0, le=MAX_WAIT_SECONDS)] = 10.0
    connect_timeout_seconds: Annotated[float, documented(
        "Connect timeout", "Time allowed for TCP + TLS setup of one attempt.", gt=0,
        le=MAX_WAIT_SECONDS)] = 5.0


class DetectionsSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """When `…/<camera>/detections` messages go out."""

    mode: Annotated[Literal["every_frame", "on_change", "rate_limited"], documented(
        "Mode", "`every_frame`: each frame with detections, plus the first empty one after them; "
        "`on_change`: when the per-label counts change; `rate_limited`: like every_frame but at most "
        "`max_per_second`.")] = "every_frame"
    max_per_second: Annotated[float, documented(
        "Rate limit", "Messages per second per camera in `rate_limited` mode.", gt=0)] = 2.0


class SnapshotSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Retained annotated JPEG on `…/<camera>/snapshot`."""

    labels: Annotated[list[str], documented(
        "Labels", "Publish a snapshot when one of these labels appears; empty = no snapshots.")] = \
        msgspec.field(default_factory=list)
    min_interval_seconds: Annotated[float, documented(
        "Minimum interval", "At most one snapshot per camera in this many seconds.", ge=0)] = 10.0
    quality: Annotated[int, documented("JPEG quality", "1-95.", ge=1, le=95)] = 80


class EventsSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """What goes with tracked-object events (`[tracking]`): their best snapshots."""

    snapshots: Annotated[bool, documented(
        "Best snapshots", "Keep each event's best picture (highest score weighted by box size, not cut off "
        "by the frame's edge), annotated with the tracked box and id, and publish it retained on "
        "`…/<camera>/events/snapshot` when the event ends. Held as JPEG: one per live event.")] = True
    snapshot_on_new: Annotated[bool, documented(
        "Snapshot on new", "Also publish the first snapshot when an event starts.")] = False
    quality: Annotated[int, documented("JPEG quality", "1-95.", ge=1, le=95)] = 80
    save_dir: Annotated[str | None, documented(
        "Save directory", "Also save each event's best snapshot as `<dir>/<camera>/<event id>.jpg`; the "
        "oldest files are deleted beyond `save_quota_mb`.")] = None
    save_quota_mb: Annotated[float, documented(
        "Save quota", "Most megabytes of saved snapshots kept in `save_dir`.", gt=0)] = 200.0


class HomeAssistantSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Home Assistant MQTT discovery: one sensor per camera and label."""

    enabled: Annotated[bool, documented(
        "Enabled", "Announce sensors to Home Assistant (retained config messages).")] = False
    prefix: Annotated[str, documented(
        "Discovery prefix", "Home Assistant's discovery prefix: one or more topic levels, without "
        "wildcards (`+`, `#`), empty levels or control characters.")] = "homeassistant"
    labels: Annotated[list[str], documented(
        "Labels announced up front", "Sensors created for every camera before the label is first seen; "
        "other labels get a sensor when they first appear.")] = msgspec.field(default_factory=lambda: ["person"])


class PublishSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """What is published and how often."""

    topic_prefix: Annotated[str, documented(
        "Topic prefix", "Prefix of every topic; must contain `{device_id}` as a whole level. Levels: "
        "no `+`, `#`, spaces or control characters.")] = \
        "edged/{device_id}"
    detections: Annotated[DetectionsSettings, documented(
        "Detections", "When per-frame detection messages are sent.")] = \
        msgspec.field(default_factory=DetectionsSettings)
    stats_interval_seconds: Annotated[float, documented(
        "Stats interval", "Seconds between `…/stats` messages.", gt=0)] = 30.0
    snapshot: Annotated[SnapshotSettings, documented(
        "Snapshots", "Annotated JPEG snapshots.")] = msgspec.field(default_factory=SnapshotSettings)
    events: Annotated[EventsSettings, documented(
        "Events", "Snapshots of tracked-object events.")] = msgspec.field(default_factory=EventsSettings)
    homeassistant: Annotated[HomeAssistantSettings, documented(
        "Home Assistant", "MQTT discovery.")] = msgspec.field(default_factory=HomeAssistantSettings)
