"""The Publisher: what the daemon calls to put status, detections, counts, stats and snapshots on MQTT.

Two kinds of messages, handled differently on purpose:
- history (detections, stats): queued by paho while the broker is away (QoS>=1,
  up to `queue_limit`; beyond that, and QoS 0 while offline, dropped and counted);
- state (retained status and per-label counts): only the latest value matters,
  so it is sent when connected and re-sent on every connect — immediately, and
  once more a second later so it lands after anything paho re-sends from before
  the disconnect. Retained state is therefore never left stale by an outage.
The Last Will publishes a retained `offline`; `stop()` publishes it itself.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter

import msgspec
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edged.errors import ConfigError
from edged.publish import thermal
from edged.publish.cadence import CameraCadence
from edged.publish.connection import Connection, Will
from edged.publish.homeassistant import Discovery
from edged.publish.payloads import (SCHEMA_VERSION, DetectionsPayload, FrameSize, State, Stats, StatusPayload,
                                    encode, iso_utc)
from edged.publish.settings import MqttSettings, PublishSettings
from edged.publish.topics import Topics, check_camera, check_level
from edged.types import Detection, Frame

log = logging.getLogger("edged.mqtt")
REPUBLISH_DELAY_S = 1.0


class Publisher:
    """Publishes one device's topics; the constructor checks every setting before anything is sent."""

    def __init__(self, mqtt_settings: MqttSettings, publish: PublishSettings, *, device_id: str, version: str,
                 environ: dict[str, str] | None = None):
        check_level(device_id, "device id")
        self._topics = Topics(publish.topic_prefix, device_id)
        client_id = mqtt_settings.client_id.replace("{device_id}", device_id)
        if "{" in client_id or len(client_id.encode()) > 65535:
            raise ConfigError(f"mqtt.client_id {mqtt_settings.client_id!r}: only {{device_id}} may be substituted")
        self._settings = publish
        self._device_id = device_id
        self._version = version
        self._connection = Connection(mqtt_settings, client_id=client_id, persistent=True, environ=environ)
        self._connection.on_connected = self._on_connected
        self._client = self._connection.client
        self._client.max_queued_messages_set(mqtt_settings.queue_limit)
        self._qos = mqtt_settings.qos
        self._state_qos = max(1, mqtt_settings.qos)
        self._expiry = mqtt_settings.message_expiry_seconds
        self._lock = threading.Lock()
        self._status = StatusPayload(state="offline", version=version, backend="", model="", since=None)
        self._cameras: dict[str, CameraCadence] = {}
        self._dropped = 0
        self._dropping = False
        self._timer: threading.Timer | None = None
        self._started = False
        self._to_jpeg = None
        self._discovery = (Discovery(publish.homeassistant, self._topics, device_id=device_id, version=version)
                           if publish.homeassistant.enabled else None)

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

    def wait_connected(self, timeout: float) -> bool:
        return self._connection.wait_connected(timeout)

    def _properties(self, kind: str | None, *, expires: bool, content_type: str = "application/json"):
        if not self._connection.v5:
            return None
        properties = Properties(PacketTypes.PUBLISH)
        properties.ContentType = content_type
        if kind:
            properties.UserProperty = [("schema", f"edged/{kind}/v{SCHEMA_VERSION}")]
        if expires and self._expiry:
            properties.MessageExpiryInterval = self._expiry
        return properties

    def start(self, *, backend: str, model: str, state: State = "online") -> None:
        """Set the Last Will and connect in the background (a broker down at boot is retried).

        `state` is what the first status says: a daemon that starts already degraded (Edge TPU
        missing in `auto`) must not announce `online` for the moment before it corrects itself.
        """
        with self._lock:
            self._status = StatusPayload(state=state, version=self._version, backend=backend, model=model,
                                         since=iso_utc(time.time()))
        will = msgspec.structs.replace(self._status, state="offline", since=None)
        self._connection.set_will(Will(self._topics.status, encode(will), self._state_qos, True,
                                       self._properties("status", expires=False)))
        self._started = True
        self._connection.start()
        log.info("MQTT publishing to %s under %s/", self._connection.target, self._topics.prefix)

    def set_state(self, state: State, *, backend: str, model: str) -> None:
        """online/degraded, with the backend actually in use; published at once when it changed."""
        with self._lock:
            old = self._status
            since = old.since if state == old.state else iso_utc(time.time())
            self._status = StatusPayload(state=state, version=self._version, backend=backend, model=model,
                                         since=since)
            changed = self._status != old
        if changed and self.connected:
            self._send_status()

    def _send_status(self) -> mqtt.MQTTMessageInfo:
        with self._lock:
            payload = encode(self._status)
        return self._send(self._topics.status, payload, qos=self._state_qos, retain=True,
                          properties=self._properties("status", expires=False))

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
        elif self._dropping and self.connected:
            self._dropping = False
        return info

    def publish_frame(self, camera: str, frame: Frame, detections: list[Detection], *, inference_ms: float,
                      backend: str, model: str) -> None:
        """Detections (per the mode), changed per-label counts, HA sensors for new labels, snapshot."""
        now, mono = time.time(), time.monotonic()
        counts = Counter(detection.label for detection in detections)
        connected = self.connected
        with self._lock:
            state = self._cameras.get(camera)
            if state is None:
                check_camera(camera)
                state = self._cameras[camera] = CameraCadence()
            previous = dict(state.counts)
            changes = state.count_changes(counts)
            send_detections = state.wants_detections(self._settings.detections, counts, mono)
            snapshot = (connected and frame.image is not None
                        and state.wants_snapshot(self._settings.snapshot, counts, previous, mono))
            sensors = (self._discovery.new_sensors(camera, list(counts))
                       if connected and self._discovery is not None else [])
        if send_detections:
            payload = DetectionsPayload(
                device=self._device_id, camera=camera, seq=frame.seq, captured_at=iso_utc(frame.captured_at),
                published_at=iso_utc(now), backend=backend, model=model, inference_ms=round(inference_ms, 3),
                frame=FrameSize(frame.width, frame.height), detections=list(detections))
            self._send(self._topics.detections(camera), encode(payload), qos=self._qos,
                       properties=self._properties("detections", expires=True))
        if connected:
            for label, count in changes.items():
                self._send_count(camera, label, count)
            for topic, config in sensors:
                self._send(topic, config, qos=self._state_qos, retain=True)
            if snapshot:
                self._send_snapshot(camera, frame, detections)

    def _send_count(self, camera: str, label: str, count: int) -> None:
        self._send(self._topics.count(camera, label), str(count).encode(), qos=self._state_qos, retain=True,
                   properties=self._properties("count", expires=False))

    def _send_snapshot(self, camera: str, frame: Frame, detections: list[Detection]) -> None:
        if self._to_jpeg is None:
            from edged.annotate import to_jpeg  # Pillow drawing: only loaded when snapshots are on
            self._to_jpeg = to_jpeg
        jpeg = self._to_jpeg(frame.image, detections, quality=self._settings.snapshot.quality)
        self._send(self._topics.snapshot(camera), jpeg, qos=self._state_qos, retain=True,
                   properties=self._properties(None, expires=False, content_type="image/jpeg"))

    def publish_stats(self, stats: Stats) -> None:
        """Adds what the publisher knows (device, publish_dropped, time, temperatures) and sends it."""
        stats = msgspec.structs.replace(
            stats, device=self._device_id, publish_dropped=self._dropped, published_at=iso_utc(time.time()),
            cpu_temp_c=stats.cpu_temp_c if stats.cpu_temp_c is not None else thermal.cpu_temp_c(),
            tpu_temp_c=stats.tpu_temp_c if stats.tpu_temp_c is not None else thermal.tpu_temp_c())
        self._send(self._topics.stats, encode(stats), qos=self._qos,
                   properties=self._properties("stats", expires=True))

    def _on_connected(self) -> None:
        """In paho's thread, after every CONNACK: status online (since now), all counts, HA configs."""
        with self._lock:
            if self._status.state != "offline":
                self._status = msgspec.structs.replace(self._status, since=iso_utc(time.time()))
        self._send_state()
        if self._discovery is not None:
            self._client.subscribe(self._discovery.status_topic, qos=1)
            self._client.message_callback_add(self._discovery.status_topic, self._on_homeassistant_status)
            self._announce()
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
            counts = [(camera, label, count) for camera, state in self._cameras.items()
                      for label, count in state.counts.items()]
        for camera, label, count in counts:
            self._send_count(camera, label, count)

    def _announce(self) -> None:
        assert self._discovery is not None
        with self._lock:
            messages = self._discovery.all_sensors()
        for topic, config in messages:
            self._send(topic, config, qos=self._state_qos, retain=True)

    def _on_homeassistant_status(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        if message.payload.strip().lower() == b"online":
            log.info("Home Assistant (re)started: announcing sensors again")
            self._announce()
            self._republish_state()

    def stop(self, timeout: float = 3.0) -> None:
        """Publish retained offline, wait until it (and so everything before it) is delivered, disconnect."""
        if self._timer is not None:
            self._timer.cancel()
        if not self._started:
            return
        self._started = False
        with self._lock:
            self._status = msgspec.structs.replace(self._status, state="offline", since=iso_utc(time.time()))
        if self.connected:
            info = self._send_status()
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError) as exc:
                log.warning("MQTT offline status not delivered: %s", exc)
        else:
            log.warning("MQTT stopping while disconnected: queued messages are lost; the broker will publish "
                        "the Last Will (offline)")
        self._connection.stop()
