"""The daemon's configuration: one TOML file, strictly typed, every key with a documented default.

Sections: `[device]`, `[detector]` (DetectorSettings), `[mqtt]` (MqttSettings),
`[publish]` (PublishSettings), `[tracking]` (TrackingSettings), `[record]`
(RecordSettings), `[[cameras]]` (with `[cameras.tracking]` and `[cameras.record]`
overrides and `[[cameras.zones]]`) and `[service]`. msgspec decodes
the file straight into these Structs, so a wrong type or an unknown key is
rejected with its key path ("edged.toml: cameras[0].fps: Expected `float`…");
a file that does not exist where `--config` points is an error too, but with
no `--config` and no /etc/edged/edged.toml the embedded defaults run as they
are. Command-line flags override file values (`with_overrides`).

Every float in every section must be finite: `inf` and `nan` pass a `gt=0`
bound but break timers, sleeps and protocol fields long after start, killing
a thread while the daemon looks healthy. `Config.__post_init__` walks the
whole decoded tree (`non_finite`), so a key added later is covered too.
"""

from __future__ import annotations

import math
import re
import socket
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from edged.classify.settings import ClassifySettings
from edged.detect.settings import DetectorSettings
from edged.errors import ConfigError
from edged.fields import documented
from edged.publish.settings import MqttSettings, PublishSettings
from edged.record.settings import RecordOverride, RecordSettings
from edged.segment.settings import SegmentSettings
from edged.track.settings import TrackingSettings, ZoneSettings

DEFAULT_PATH = Path("/etc/edged/edged.toml")
CAMERA_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"  # one MQTT topic level, no wildcards or separators


class DeviceConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Who this device is on the broker."""

    id: Annotated[str, documented(
        "Device id", "Names the device in topics (`edged/<id>/…`) and payloads; empty: the host name.",
        pattern=r"^[^/#+\s]*$")] = ""


class CameraConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One camera: where frames come from and how fast they are taken."""

    name: Annotated[str, documented(
        "Name", "Topic level of this camera (`edged/<device>/<name>/detections`).",
        pattern=CAMERA_NAME)] = "cam0"
    source: Annotated[str, documented(
        "Source", "`samples` (the photos `edged models fetch` fetches), `picamera2:N`, `/dev/videoN`, "
        "`rtsp://…`, `http(s)://…`, a video file, an image file, a directory of images or a glob.")] = \
        "samples"
    fps: Annotated[Annotated[float, msgspec.Meta(ge=0.0)] | Literal["auto"], documented(
        "Frame-rate cap", "At most this many frames per second go to inference; 0: no cap (files are then "
        "read as fast as inference takes them). `auto`: 2 for images, a video file's own rate, no cap for "
        "cameras and streams.")] = "auto"
    width: Annotated[int, documented(
        "Capture width", "Requested capture width for picamera2's main stream and V4L2 webcams; 0: the "
        "device default (1280x720 for picamera2).", ge=0)] = 0
    height: Annotated[int, documented(
        "Capture height", "Requested capture height; 0: the device default.", ge=0)] = 0
    resize: Annotated[Literal["default", "stretch", "letterbox"], documented(
        "Resize", "How frames are fitted to the model input; `default`: the detector's `resize`. "
        "picamera2's lores stream is always scaled by the ISP (stretch).")] = "default"
    snapshot: Annotated[Literal["main", "lores", "none"], documented(
        "Snapshot stream", "Picture kept for snapshots: `main` (full resolution), `lores` (the model-sized "
        "picamera2 stream) or `none` (no snapshots; saves a copy per frame).")] = "main"
    timeout_seconds: Annotated[float, documented(
        "Stream timeout", "Open and read timeout of network streams; a stream silent this long is "
        "reconnected.", gt=0.0)] = 10.0
    tracking: Annotated[dict[str, Any], documented(
        "Tracking overrides", "Any `[tracking]` key, for this camera only (e.g. `enabled = false`, "
        "`lost_seconds = 5`).")] = {}
    zones: Annotated[list[ZoneSettings], documented(
        "Zones", "`[[cameras.zones]]` tables: named polygons whose occupancy is counted and whose entering "
        "and leaving are events.")] = []
    record: Annotated[RecordOverride, documented(
        "Recording overrides", "What this camera changes of `[record]` (e.g. `enabled = true`, "
        "`labels = [\"person\"]`); unset keys inherit it.")] = msgspec.field(default_factory=RecordOverride)
    classify: Annotated[list[ClassifySettings], documented(
        "Second stage", "`[[cameras.classify]]` tables: a classifier run on the crops of detections of one "
        "label (a `bird` → its species); the result is the detection's `subclass`.")] = []
    segment: Annotated[SegmentSettings | None, documented(
        "Segmenter", "`[cameras.segment]`: per-class area shares of the picture and of each zone on "
        "`…/<camera>/segments`, instead of or beside the detector.")] = None


class ServiceConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """How the daemon runs: logging, supervision of the worker and the sources."""

    log_level: Annotated[Literal["debug", "info", "warning", "error"], documented(
        "Log level", "Messages below this level are not logged.")] = "info"
    frame_timeout_seconds: Annotated[float, documented(
        "Frame timeout", "An inference worker with no answer for this long is killed and replaced (under a "
        "systemd watchdog at most a third of WatchdogSec).", gt=0.0)] = 5.0
    cpu_standby: Annotated[bool, documented(
        "CPU standby", "While on the Edge TPU in `auto`, keep a loaded CPU worker ready so a TPU failure "
        "costs one frame (a second worker process, about 65 MB resident).")] = True
    reconnect_initial_seconds: Annotated[float, documented(
        "Reconnect delay", "First wait before reopening a failed source; doubles after each failure.",
        gt=0.0)] = 0.5
    reconnect_max_seconds: Annotated[float, documented(
        "Reconnect delay cap", "Longest wait between attempts to reopen a failed source.", gt=0.0)] = 30.0
    status_interval_seconds: Annotated[float, documented(
        "Status interval", "Seconds between systemd STATUS= updates (fps, backend).", gt=0.0)] = 5.0
    max_image_megapixels: Annotated[float, documented(
        "Picture size limit", "Image files larger than this (width x height, in millions of pixels) are "
        "skipped with one warning instead of decoded: a decoded picture takes 3 bytes per pixel, so a "
        "12000x12000 PNG would need over 400 MB. Read from the file header, before decoding.",
        gt=0.0)] = 50.0
    private_broker: Annotated[bool, documented(
        "Private broker", "When the broker is the default mqtt://[::1]:1883 and nothing listens there, "
        "start a private mosquitto on [::1]:1883 for the daemon's lifetime.")] = True


class Config(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The whole file."""

    device: Annotated[DeviceConfig, documented("Device", "Identity.")] = \
        msgspec.field(default_factory=DeviceConfig)
    detector: Annotated[DetectorSettings, documented("Detector", "Model, backend, postprocessing.")] = \
        msgspec.field(default_factory=DetectorSettings)
    mqtt: Annotated[MqttSettings, documented("MQTT", "Broker connection.")] = \
        msgspec.field(default_factory=MqttSettings)
    publish: Annotated[PublishSettings, documented("Publish", "Topics and what goes on them.")] = \
        msgspec.field(default_factory=PublishSettings)
    tracking: Annotated[TrackingSettings, documented(
        "Tracking", "Object tracking, zones and events, for every camera (`[cameras.tracking]` overrides "
        "per camera).")] = \
        msgspec.field(default_factory=TrackingSettings)
    record: Annotated[RecordSettings, documented(
        "Recording", "Frames kept with the model's detections as a dataset to retrain on, for every camera "
        "(`[cameras.record]` overrides per camera); off by default.")] = \
        msgspec.field(default_factory=RecordSettings)
    cameras: Annotated[list[CameraConfig], documented("Cameras", "One `[[cameras]]` table per camera.",
                                                  min_length=1)] = \
        msgspec.field(default_factory=lambda: [CameraConfig()])
    service: Annotated[ServiceConfig, documented("Service", "Supervision and logging.")] = \
        msgspec.field(default_factory=ServiceConfig)

    @property
    def device_id(self) -> str:
        return self.device.id or socket.gethostname()

    def __post_init__(self) -> None:
        names = [camera.name for camera in self.cameras]
        duplicate = next((name for name in names if names.count(name) > 1), None)
        if duplicate is not None:
            raise ValueError(f"camera name `{duplicate}` is used twice - at `$.cameras`")
        found = non_finite(self)
        if found is not None:
            path, value = found
            raise ValueError(f"must be a finite number, not {value} - at `$.{path}`")
        for index, camera in enumerate(self.cameras):
            zone_names = [zone.name for zone in camera.zones]
            twice = next((name for name in zone_names if zone_names.count(name) > 1), None)
            if twice is not None:
                raise ValueError(f"zone name `{twice}` is used twice - at `$.cameras[{index}].zones`")
            self._camera_tracking(index)
            self._camera_record(index)
            labels = [entry.label for entry in camera.classify]
            again = next((label for label in labels if labels.count(label) > 1), None)
            if again is not None:
                raise ValueError(f"label `{again}` is classified twice - at `$.cameras[{index}].classify`")
        if self.service.reconnect_max_seconds < self.service.reconnect_initial_seconds:
            raise ValueError(
                "must be at least `reconnect_initial_seconds` - at `$.service.reconnect_max_seconds`")

    def _camera_tracking(self, index: int) -> TrackingSettings:
        overrides = self.cameras[index].tracking
        if not overrides:
            return self.tracking
        try:
            return msgspec.convert({**msgspec.to_builtins(self.tracking), **overrides}, type=TrackingSettings)
        except msgspec.ValidationError as exc:
            match = _KEY_PATH.match(str(exc))
            assert match is not None
            raise ValueError(f"{match.group('message')} - at `$.cameras[{index}].tracking"
                             f"{match.group('path') or ''}`") from None

    def _camera_record(self, index: int) -> RecordSettings:
        try:
            return self.cameras[index].record.apply(self.record)
        except msgspec.ValidationError as exc:
            message, path = _split(str(exc))
            raise ValueError(f"{message} - at `$.cameras[{index}].record{path}`") from None

    def record_for(self, camera: str) -> RecordSettings:
        """The `[record]` settings with this camera's `[cameras.record]` keys in place."""
        index = next(i for i, c in enumerate(self.cameras) if c.name == camera)
        return self._camera_record(index)

    def tracking_for(self, camera: str) -> TrackingSettings:
        """The `[tracking]` settings with this camera's overrides applied."""
        index = next(i for i, c in enumerate(self.cameras) if c.name == camera)
        return self._camera_tracking(index)


def non_finite(value: object, path: str = "") -> tuple[str, float] | None:
    """The first float under `value` that is inf or nan, with its key path (`cameras[1].fps`); else None."""
    if isinstance(value, float):
        return None if math.isfinite(value) else (path, value)
    if isinstance(value, msgspec.Struct):
        children = [(f"{path}.{name}" if path else name, getattr(value, name))
                    for name in value.__struct_fields__]
    elif isinstance(value, (list, tuple)):
        children = [(f"{path}[{index}]", item) for index, item in enumerate(value)]
    elif isinstance(value, dict):
        children = [(f"{path}.{key}" if path else str(key), item) for key, item in value.items()]
    else:
        return None
    return next((found for child, item in children if (found := non_finite(item, child)) is not None), None)


_KEY_PATH = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)


def _split(text: str) -> tuple[str, str]:
    """msgspec's message and key path (`.mqtt.qos`); a path a nested __post_init__ put into its own
    message ("… - at `$.uncertain_max` - at `$.record`") is joined on: `.record.uncertain_max`."""
    match = _KEY_PATH.match(text)
    assert match is not None
    message, path = match.group("message"), match.group("path") or ""
    inner = _KEY_PATH.match(message)
    if inner is not None and inner.group("path"):
        message, path = inner.group("message"), path + inner.group("path")
    return message, path


def _explain(where: str, exc: Exception) -> ConfigError:
    """msgspec's "Expected `int`, got `str` - at `$.mqtt.qos`" → "FILE: mqtt.qos: Expected `int`, …"."""
    message, path = _split(str(exc))
    path = path.lstrip(".")
    message = message.replace("Object contains unknown field", "unknown key")
    return ConfigError(f"{where}: {path + ': ' if path else ''}{message}")


def parse_config(data: bytes | str, where: str = "<config>") -> Config:
    """TOML text → Config; ConfigError naming `where`, the key path and what was expected."""
    try:
        return msgspec.toml.decode(data, type=Config)
    except msgspec.ValidationError as exc:
        raise _explain(where, exc) from None
    except msgspec.DecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML ({exc})") from None


def load_config(path: Path | str | None = None) -> Config:
    """Read the config file; None: DEFAULT_PATH if it exists, else the embedded defaults."""
    if path is None:
        if not DEFAULT_PATH.exists():
            return Config()
        path = DEFAULT_PATH
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror})") from None
    return parse_config(data, str(path))


def with_overrides(config: Config, *, source: str | None = None, broker: str | None = None,
                   model: str | None = None, backend: str | None = None, device_id: str | None = None,
                   camera: str | None = None) -> Config:
    """Apply `edged run` flags on top of the file (or defaults): a one-line run needs no file.

    `--source` replaces the cameras with one camera (named by `--camera`, else the
    first configured camera's name); `--camera` alone selects one configured camera.
    """
    replace = msgspec.structs.replace
    if model is not None:
        config = replace(config, detector=replace(config.detector, model=model))
    if backend is not None:
        config = replace(config, detector=replace(config.detector, backend=backend))
    if broker is not None:
        config = replace(config, mqtt=replace(config.mqtt, brokers=[broker]))
    if device_id is not None:
        config = replace(config, device=replace(config.device, id=device_id))
    if source is not None:
        base = next((c for c in config.cameras if c.name == camera), config.cameras[0])
        config = replace(config, cameras=[replace(base, name=camera or base.name, source=source)])
    elif camera is not None:
        chosen = [c for c in config.cameras if c.name == camera]
        if not chosen:
            known = ", ".join(c.name for c in config.cameras)
            raise ConfigError(f"--camera {camera}: no such camera in the config (cameras: {known})")
        config = replace(config, cameras=chosen)
    try:  # re-validate what the flags changed (camera name pattern, device id)
        return msgspec.convert(msgspec.to_builtins(config), type=Config)
    except msgspec.ValidationError as exc:
        raise _explain("command line", exc) from None
