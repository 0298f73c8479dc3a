"""The Publisher: what the daemon calls to put status, detections, counts, stats and snapshots on MQTT.

Two kinds of messages, handled differently on purpose:
- history (detections, stats): queued by paho while the broker is away (QoS>=1,
  up to `queue_limit`; beyond that, and QoS 0 while offline, dropped and counted);
- state (retained status and per-label counts): only the latest value matters,
  so it is sent when connected and re-sent on every connect — immediately, and
  once more a second later so it lands after anything paho re-sends from before
  the disconnect. Retained state is therefore never left stale by an outage.
The Last Will publishes a retained `offline`. `stop()` publishes `offline` itself
and, when the broker does not confirm it in time, ends the session so that the
broker publishes the Will instead: a clean stop never leaves a retained `online`.
`health()` tells the daemon's watchdog whether this stage still works.
It hands the same topics over to a successor on reload (`stop(handover=True)`) without an
`offline` in between. Every status, detections and stats payload carries the daemon's `run_id`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Collection, Iterable, Mapping

import msgspec
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edged.errors import ConfigError
from edged.publish import thermal
from edged.publish.cadence import CameraCadence
from edged.publish.connection import Connection, Will
from edged.publish.delivery import DeliveryWatch, stall_limit
from edged.publish.events import EventPublisher
from edged.publish.homeassistant import Announcer, Discovery
from edged.publish.payloads import (SCHEMA_VERSION, DetectionsPayload, FrameSize, MqttLink, State, Stats,
                                    StatusPayload, encode, iso_utc)
from edged.publish.segments import SegmentPublisher
from edged.publish.settings import MqttSettings, PublishSettings
from edged.publish.topics import Topics, check_camera, check_level, check_room, check_topic_name
from edged.segment.areas import Segmented
from edged.track.events import TrackUpdate
from edged.types import Detection, Frame, Subclass

log = logging.getLogger("edged.mqtt")
REPUBLISH_DELAY_S = 1.0
#: MQTT 5 Maximum Packet Size asked of the broker: edged only subscribes to Home Assistant's status
#: (`online`/`offline`), so anything near this size is not for it; the broker drops it for edged alone.
INBOUND_PACKET_BYTES = 64 * 1024


def edged_schema(kind: str) -> str:
    return f"edged/{kind}/v{SCHEMA_VERSION}"


class Publisher:
    """Publishes one device's topics; the constructor checks every setting before anything is sent."""

    def __init__(self, mqtt_settings: MqttSettings, publish: PublishSettings, *, device_id: str, version: str,
                 environ: dict[str, str] | None = None, cameras: Iterable[str] = (), run_id: str = "",
                 subclass_counts: Mapping[str, Collection[str]] | None = None):
        """`subclass_counts`: camera → the labels whose second-stage subclasses are counted."""
        check_level(device_id, "device id")
        self._topics = Topics(publish.topic_prefix, device_id)
        check_topic_name(publish.homeassistant.prefix, "publish.homeassistant.prefix")
        client_id = mqtt_settings.client_id.replace("{device_id}", device_id)
        if "{" in client_id or len(client_id.encode()) > 65535:
            raise ConfigError(f"mqtt.client_id {mqtt_settings.client_id!r}: only {{device_id}} may be substituted")
        self._settings = publish
        self._device_id = device_id
        self._version = version
        self._run_id = run_id
        self._homeassistant: Announcer | None = None
        if publish.homeassistant.enabled:
            discovery = Discovery(publish.homeassistant, self._topics, device_id=device_id, version=version)
            self._homeassistant = Announcer(discovery, self._send_config, reannounce=self._reannounce)
        for camera in cameras:
            self.check_camera(camera)
        self._connection = Connection(mqtt_settings, client_id=client_id, persistent=True, environ=environ,
                                      max_packet_bytes=INBOUND_PACKET_BYTES)
        self._connection.on_connected = self._on_connected
        self._client = self._connection.client
        self._client.max_queued_messages_set(mqtt_settings.queue_limit)
        self._client.on_publish = self._on_publish
        self._qos = mqtt_settings.qos
        self._state_qos = max(1, mqtt_settings.qos)
        self._expiry = mqtt_settings.message_expiry_seconds
        self._lock = threading.Lock()
        self._status = StatusPayload(state="offline", version=version, backend="", model="", since=None,
                                     run_id=run_id)
        self._cameras: dict[str, CameraCadence] = {}
        self._dropped = 0
        self._dropping = False
        self._timer: threading.Timer | None = None
        self._started = False
        self._to_jpeg = None
        self._delivery = DeliveryWatch()
        self._events = EventPublisher(publish.events, self._topics, device_id=device_id,
                                      send=self._send_tracking, announcer=self._homeassistant,
                                      initial_labels=publish.homeassistant.labels)
        self._segments = SegmentPublisher(self._topics, device_id=device_id, run_id=run_id,
                                          send=self._send_tracking, announcer=self._homeassistant,
                                          quality=publish.snapshot.quality)
        self._subclass_counts = {camera: frozenset(labels)
                                 for camera, labels in (subclass_counts or {}).items()}

    @property
    def topics(self) -> Topics:
        return self._topics

    @property
    def connected(self) -> bool:
        return self._connection.connected.is_set()

    @property
    def dropped(self) -> int:
        """Messages given up: queue full, or QoS 0 while disconnected."""
        return self._dropped

    @property
    def last_error(self) -> str | None:
        return self._connection.last_error

    @property
    def link(self) -> str:
        """The broker link for systemd's STATUS line: `MQTT up`, `no broker (…)`, `MQTT rejected (…)`."""
        return self._connection.report.status_text()

    def link_stats(self) -> MqttLink:
        """The `mqtt` block of stats: link state, last error, connects, failed attempts, silent rejections."""
        return self._connection.report.snapshot()

    def wait_connected(self, timeout: float) -> bool:
        return self._connection.wait_connected(timeout)

    def check_camera(self, camera: str) -> str:
        """A camera name must be one topic level, and its longest topic must fit MQTT's limit."""
        check_camera(camera)
        longest = max(self._topics.longest(camera),
                      self._homeassistant.discovery.longest(camera) if self._homeassistant else 0)
        return check_room(camera, longest, self._topics.prefix)

    def health(self) -> str | None:
        """None while this stage works; else one line saying why it does not, for the daemon's watchdog:
        paho's network thread died, or the broker confirmed nothing for too long while connected (see
        edged/publish/delivery.py for the limit). No broker at all is *not* unhealthy: a restart cannot
        make one appear, and edged keeps trying."""
        problem = self._connection.thread_problem()
        if problem is not None or not self._started or not self.connected:
            return problem
        stalled, limit = self._delivery.stalled_for(), stall_limit(self._client.keepalive)
        if stalled > limit:
            return (f"MQTT {self._connection.target} confirmed nothing for {stalled:.0f} s while connected "
                    f"(limit {limit:.0f} s = 2 x keepalive + margin): the session is stuck")
        return None

    def _properties(self, schema: str | None, *, expires: bool, content_type: str = "application/json"):
        if not self._connection.v5:
            return None
        properties = Properties(PacketTypes.PUBLISH)
        properties.ContentType = content_type
        if schema:
            properties.UserProperty = [("schema", schema)]
        if expires and self._expiry:
            properties.MessageExpiryInterval = self._expiry
        return properties

    def start(self, *, backend: str, model: str, state: State = "online",
              accelerators: list[str] | None = None) -> None:
        """Set the Last Will and connect in the background (a broker down at boot is retried).

        `state` is what the first status says: a daemon that starts already degraded (Edge TPU
        failing in `auto`) must not announce `online` for the moment before it corrects itself.
        """
        with self._lock:
            self._status = StatusPayload(state=state, version=self._version, backend=backend, model=model,
                                         since=iso_utc(time.time()), run_id=self._run_id,
                                         accelerators=list(accelerators or []))
        will = msgspec.structs.replace(self._status, state="offline", since=None)
        self._connection.set_will(Will(self._topics.status, encode(will), self._state_qos, True,
                                       self._properties(edged_schema("status"), expires=False)))
        self._started = True
        self._connection.start()
        log.info("MQTT publishing to %s under %s/", self._connection.target, self._topics.prefix)

    def set_state(self, state: State, *, backend: str, model: str,
                  accelerators: list[str] | None = None) -> None:
        """online/degraded, with the backend actually in use; published at once when it changed."""
        with self._lock:
            old = self._status
            since = old.since if state == old.state else iso_utc(time.time())
            attached = old.accelerators if accelerators is None else list(accelerators)
            self._status = StatusPayload(state=state, version=self._version, backend=backend, model=model,
                                         since=since, run_id=self._run_id, accelerators=attached)
            changed = self._status != old
        if changed and self.connected:
            self._send_status()

    def _send_status(self) -> mqtt.MQTTMessageInfo:
        with self._lock:
            payload = encode(self._status)
        return self._send(self._topics.status, payload, qos=self._state_qos, retain=True,
                          properties=self._properties(edged_schema("status"), expires=False))

    def _send(self, topic: str, payload: bytes, *, qos: int, retain: bool = False,
              properties: Properties | None = None) -> mqtt.MQTTMessageInfo:
        info = self._client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        lost = info.rc == mqtt.MQTT_ERR_QUEUE_SIZE or (info.rc == mqtt.MQTT_ERR_NO_CONN and qos == 0)
        if lost:
            with self._lock:
                self._dropped += 1
            if not self._dropping:
                self._dropping = True
                log.warning("MQTT dropping messages (%s): broker unreachable for too long; see publish_dropped",
                            "queue full" if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE else "QoS 0 while disconnected")
        else:
            self._delivery.sent()
            if self._dropping and self.connected:
                self._dropping = False
        return info

    def _on_publish(self, client: mqtt.Client, userdata: object, mid: int, reason: mqtt.ReasonCode,
                    properties: Properties | None) -> None:
        self._delivery.confirm()

    def publish_frame(self, camera: str, frame: Frame, detections: list[Detection], *, inference_ms: float,
                      backend: str, model: str, captions: list[str] | None = None) -> None:
        """Detections (per the mode), changed per-label counts, HA sensors for new labels, snapshot."""
        now, mono = time.time(), time.monotonic()
        counts = Counter(detection.label for detection in detections)
        counted = self._subclass_counts.get(camera, frozenset())
        subclasses = Counter((d.label, d.subclass.label) for d in detections
                             if d.subclass is not None and d.label in counted)
        connected = self.connected
        with self._lock:
            state = self._cameras.get(camera)
            if state is None:
                self.check_camera(camera)
                state = self._cameras[camera] = CameraCadence()
            previous = dict(state.counts)
            changes = state.count_changes(counts)
            subclass_changes = state.subclass_changes(subclasses)
            send_detections = state.wants_detections(self._settings.detections, counts, mono)
            snapshot = (connected and frame.image is not None
                        and state.wants_snapshot(self._settings.snapshot, counts, previous, mono))
        if send_detections:
            payload = DetectionsPayload(
                device=self._device_id, run_id=self._run_id, camera=camera, seq=frame.seq,
                captured_at=iso_utc(frame.captured_at),
                published_at=iso_utc(now), backend=backend, model=model, inference_ms=round(inference_ms, 3),
                frame=FrameSize(frame.width, frame.height), detections=list(detections))
            self._send(self._topics.detections(camera), encode(payload), qos=self._qos,
                       properties=self._properties(edged_schema("detections"), expires=True))
        if connected:
            for label, count in changes.items():
                self._send_count(camera, label, count)
            for (label, subclass), count in subclass_changes.items():
                self._send_count(camera, label, count, subclass)
            if self._homeassistant is not None:
                self._homeassistant.send(self._homeassistant.new_sensors(camera, list(counts)))
                self._homeassistant.send(self._homeassistant.new_subclass_sensors(camera, list(subclasses)))
            if snapshot:
                self._send_snapshot(camera, frame, detections, captions)

    def publish_tracking(self, camera: str, frame: Frame | None, update: TrackUpdate,
                         subclasses: Mapping[int, Subclass] | None = None) -> None:
        """Events, best snapshots, zone occupancy (edged/publish/events.py); frame None when stopping.
        `subclasses`: track id → its second-stage subclass, carried by its events."""
        self._events.publish(camera, update, frame, connected=self.connected, subclasses=subclasses)

    def publish_segments(self, camera: str, frame: Frame, segmented: Segmented, *, min_change: float = 0.01,
                         snapshot: bool = True) -> None:
        """`…/segments`, changed zone coverage, the overlay snapshot (edged/publish/segments.py)."""
        self._segments.publish(camera, frame, segmented, connected=self.connected, min_change=min_change,
                               snapshot=snapshot)

    def _send_tracking(self, topic: str, payload: bytes, *, retain: bool, kind: str | None,
                       content_type: str = "application/json", user: tuple[tuple[str, str], ...] = ()) -> None:
        properties = self._properties(edged_schema(kind) if kind else None, expires=False,
                                      content_type=content_type)
        if properties is not None and user:
            properties.UserProperty = list(user)  # paho appends to any user property already set
        self._send(topic, payload, qos=self._state_qos, retain=retain, properties=properties)

    def _send_count(self, camera: str, label: str, count: int, subclass: str | None = None) -> None:
        topic = self._topics.count(camera, label) if subclass is None else \
            self._topics.subclass_count(camera, label, subclass)
        self._send(topic, str(count).encode(), qos=self._state_qos, retain=True,
                   properties=self._properties(edged_schema("count"), expires=False))

    def _send_config(self, topic: str, config: bytes) -> None:
        assert self._homeassistant is not None
        self._send(topic, config, qos=self._state_qos, retain=True,
                   properties=self._properties(self._homeassistant.discovery.schema(topic), expires=False))

    def _send_snapshot(self, camera: str, frame: Frame, detections: list[Detection],
                       captions: list[str] | None = None) -> None:
        if self._to_jpeg is None:
            from edged.annotate import to_jpeg  # Pillow drawing: only loaded when snapshots are on
            self._to_jpeg = to_jpeg
        jpeg = self._to_jpeg(frame.image, detections, quality=self._settings.snapshot.quality,
                             captions=captions)
        self._send(self._topics.snapshot(camera), jpeg, qos=self._state_qos, retain=True,
                   properties=self._properties(None, expires=False, content_type="image/jpeg"))

    def publish_stats(self, stats: Stats) -> None:
        """Adds what the publisher knows (device, publish_dropped, the broker link, time, temperatures)."""
        stats = msgspec.structs.replace(
            stats, device=self._device_id, run_id=self._run_id, publish_dropped=self._dropped,
            mqtt=self.link_stats(), published_at=iso_utc(time.time()),
            cpu_temp_c=stats.cpu_temp_c if stats.cpu_temp_c is not None else thermal.cpu_temp_c(),
            tpu_temp_c=stats.tpu_temp_c if stats.tpu_temp_c is not None else thermal.tpu_temp_c())
        self._send(self._topics.stats, encode(stats), qos=self._qos,
                   properties=self._properties(edged_schema("stats"), expires=True))

    def _on_connected(self) -> None:
        """In paho's thread, after every CONNACK: status online (since now), all counts, HA configs."""
        self._delivery.connected()
        with self._lock:
            if self._status.state != "offline":
                self._status = msgspec.structs.replace(self._status, since=iso_utc(time.time()))
        self._send_state()
        if self._homeassistant is not None:
            self._homeassistant.on_connected(self._client)
        timer = threading.Timer(REPUBLISH_DELAY_S, self._republish_state)
        timer.daemon = True
        if self._timer is not None:
            self._timer.cancel()
        self._timer = timer
        timer.start()

    def _republish_state(self) -> None:
        if self.connected:
            self._send_state()

    def _send_state(self) -> None:
        self._send_status()
        with self._lock:
            counts = [(camera, label, count, None) for camera, state in self._cameras.items()
                      for label, count in state.counts.items()]
            counts += [(camera, label, count, subclass) for camera, state in self._cameras.items()
                       for (label, subclass), count in state.subclasses.items()]
        for camera, label, count, subclass in counts:
            self._send_count(camera, label, count, subclass)
        for topic, payload, kind in [*self._events.state_messages(), *self._segments.state_messages()]:
            self._send_tracking(topic, payload, retain=True, kind=kind)

    def _reannounce(self) -> None:
        if self.connected and self._homeassistant is not None:
            self._homeassistant.announce()
            self._republish_state()

    def stop(self, timeout: float = 3.0, *, handover: bool = False) -> None:
        """Publish retained offline and wait until it (and so everything before it) is confirmed, then
        disconnect; unconfirmed, end the session so that the broker publishes the Last Will instead.

        `handover`: a successor takes over the same status topic at once (a reload that changed
        `[publish]`): re-send the current status instead, so subscribers never see an `offline` flap."""
        if self._timer is not None:
            self._timer.cancel()
        if self._homeassistant is not None:
            self._homeassistant.stop()
        if not self._started:
            return
        self._started = False
        deadline = time.monotonic() + timeout
        with self._lock:
            if not handover:
                self._status = msgspec.structs.replace(self._status, state="offline",
                                                       since=iso_utc(time.time()))
        confirmed = False
        if self.connected:
            info = self._send_status()
            try:
                info.wait_for_publish(timeout)
                confirmed = info.is_published()
            except (RuntimeError, ValueError) as exc:
                log.warning("MQTT offline status not sent: %s", exc)
            if not confirmed:
                log.warning("MQTT offline status not confirmed within %.1f s: ending the session so that the "
                            "broker publishes the Last Will (offline)", timeout)
        else:
            log.warning("MQTT stopping while disconnected: queued messages are lost; the broker publishes "
                        "the Last Will (offline) when it notices the lost connection")
        self._connection.stop(with_will=not confirmed, timeout=max(0.5, deadline - time.monotonic()))
