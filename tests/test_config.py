"""The config file: defaults, the documented example, strict decoding with key paths, flag overrides."""

from __future__ import annotations

import math
import re
import socket
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest
from msgspec import inspect as mi

from edged import config as config_module
from edged.config import CameraConfig, Config, load_config, parse_config, with_overrides
from edged.config_doc import render_example
from edged.errors import EX_CONFIG, ConfigError

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "deploy" / "edged.example.toml"


def test_defaults_run_the_sample_photos_on_auto_against_the_local_broker():
    config = Config()
    assert config.cameras == [CameraConfig(name="cam0", source="samples", fps="auto")]
    assert config.detector.backend == "auto" and config.detector.threads == 1
    assert config.mqtt.brokers == ["mqtt://[::1]:1883"]
    assert config.device_id == socket.gethostname()
    assert config.service.private_broker and config.service.cpu_standby


def test_no_file_at_the_default_path_means_the_defaults(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(config_module, "DEFAULT_PATH", tmp_path / "absent.toml")
    assert load_config(None) == Config()
    with pytest.raises(ConfigError, match="absent.toml: no such config file"):
        load_config(tmp_path / "absent.toml")  # named explicitly: an error


def test_example_file_is_the_rendered_defaults_and_decodes_to_them():
    text = EXAMPLE.read_text()
    assert text == render_example(), "regenerate with: edged config example > deploy/edged.example.toml"
    assert load_config(EXAMPLE) == Config()


def field_paths(kind: mi.Type, prefix: str = "") -> list[str]:
    """Every leaf key of the config, as dotted paths (cameras items under `cameras`)."""
    if isinstance(kind, mi.Metadata):
        kind = kind.type
    if isinstance(kind, mi.ListType) and isinstance(kind.item_type, mi.StructType):
        kind = kind.item_type
    if isinstance(kind, mi.UnionType):  # an optional table ([cameras.segment]): its keys
        kind = next((t for t in kind.types if isinstance(t, mi.StructType)), kind)
    if not isinstance(kind, mi.StructType):
        return [prefix]
    return [path for field in kind.fields
            for path in field_paths(field.type, f"{prefix}.{field.name}".lstrip("."))]


def test_every_config_key_appears_in_the_example():
    text = EXAMPLE.read_text()
    paths = field_paths(mi.type_info(Config))
    assert len(paths) > 60
    tables: dict[str, list[str]] = {}
    current = ""
    for line in text.splitlines():
        if line.startswith(("[", "# [")):  # tables empty by default (zones) are shown commented out
            current = line.removeprefix("# ").strip("[]")
        elif key := re.match(r"^(\w+) = |^# (\w+) =    \(unset by default\)$|^# (\w+) = ", line):
            tables.setdefault(current, []).append(key.group(1) or key.group(2) or key.group(3))
    for path in paths:
        table, _, key = path.rpartition(".")
        assert key in tables.get(table, []), f"{path} is missing from {EXAMPLE.name}"


@pytest.mark.parametrize("text, message", [
    ("[mqtt]\nqoss = 1\n", "edged.toml: mqtt: unknown key `qoss`"),
    ("[camera]\nname = 'x'\n", "edged.toml: unknown key `camera`"),
    ("[detector]\nthreads = 'two'\n", "edged.toml: detector.threads: Expected `int`, got `str`"),
    ("[[cameras]]\nfps = 'fast'\n", "edged.toml: cameras[0].fps: Invalid enum value 'fast'"),
    ("[[cameras]]\nfps = -1\n", "edged.toml: cameras[0].fps: Expected `float` >= 0.0"),
    ("[[cameras]]\nname = 'front/door'\n", "edged.toml: cameras[0].name: Expected `str` matching regex"),
    ("[[cameras]]\nname = 'a'\n[[cameras]]\nname = 'a'\n",
     "edged.toml: cameras: camera name `a` is used twice"),
    ("cameras = []\n", "edged.toml: cameras: Expected `array` of length >= 1"),
    ("[publish.detections]\nmode = 'sometimes'\n", "edged.toml: publish.detections.mode: Invalid enum value"),
    ("[service]\nreconnect_initial_seconds = 5.0\nreconnect_max_seconds = 1.0\n",
     "edged.toml: service.reconnect_max_seconds: must be at least"),
    ("[record]\nuncertain_min = 0.7\n", "edged.toml: record.uncertain_max: must be above `uncertain_min`"),
    ("[[cameras]]\n[cameras.record]\nuncertain_max = 0.2\n",
     "edged.toml: cameras[0].record.uncertain_max: must be above `uncertain_min`"),
    ("[[cameras]]\n[cameras.record]\npolicies = ['often']\n",
     "edged.toml: cameras[0].record.policies[0]: Invalid enum value 'often'"),
    ("[detector\n", "edged.toml: not valid TOML"),
])
def test_bad_files_name_the_key_path_and_what_was_expected(text: str, message: str):
    with pytest.raises(ConfigError) as error:
        parse_config(text, "edged.toml")
    assert str(error.value).startswith(message), str(error.value)
    assert error.value.exit_code == EX_CONFIG


def test_a_partial_file_keeps_every_other_default():
    config = parse_config('[detector]\nthreshold = 0.6\n[[cameras]]\nname = "door"\nsource = "/dev/video0"\n')
    assert config.detector.threshold == 0.6
    assert msgspec.structs.replace(config.detector, threshold=0.5) == Config().detector
    assert config.cameras == [CameraConfig(name="door", source="/dev/video0")]


def test_flags_override_the_file():
    config = parse_config('[[cameras]]\nname = "front"\nfps = 4\n[[cameras]]\nname = "back"\n')
    flags = with_overrides(config, source="rtsp://[2001:db8::5]/s", broker="mqtt://[2001:db8::10]:1883",
                           backend="cpu", model="ssd_mobilenet_v1_coco_quant", device_id="pi-7")
    assert flags.cameras == [CameraConfig(name="front", source="rtsp://[2001:db8::5]/s", fps=4.0)]
    assert flags.mqtt.brokers == ["mqtt://[2001:db8::10]:1883"]
    assert flags.detector.backend == "cpu" and flags.device_id == "pi-7"
    assert with_overrides(config, camera="back").cameras == [CameraConfig(name="back")]
    assert with_overrides(config, source="/srv/x.mp4", camera="garage").cameras[0].name == "garage"
    with pytest.raises(ConfigError,
                       match="--camera side: no such camera in the config .cameras: front, back."):
        with_overrides(config, camera="side")
    with pytest.raises(ConfigError, match="command line: cameras\\[0\\].name"):
        with_overrides(config, source="samples", camera="a/b")


def edged(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edged", *args], cwd=REPO, capture_output=True, text=True)


def test_config_check_command(tmp_path: Path):
    good = edged("config", "check", str(EXAMPLE))
    assert good.returncode == 0 and "OK" in good.stdout
    bad = tmp_path / "edged.toml"
    bad.write_text('[[cameras]]\nsource = "nothing-here"\n')
    result = edged("config", "check", str(bad))
    assert result.returncode == EX_CONFIG
    assert result.stderr.strip() == (
        f"edged config: error: {bad}: cameras[0].source: camera cam0: source 'nothing-here' is not an "
        "existing path and not a picamera2:N, /dev/videoN, stream URL, video or image file name")
    bad.write_text('[mqtt]\nbrokers = ["mqtt://[fe80::1]:1883"]\n')  # link-local needs its %zone
    broker = edged("config", "check", str(bad))
    assert broker.returncode == EX_CONFIG and f"{bad}: mqtt.brokers" in broker.stderr
    assert edged("config", "example").stdout == EXAMPLE.read_text()
    shown = edged("config", "show", str(EXAMPLE))
    assert shown.returncode == 0 and parse_config(shown.stdout) == Config()


def float_paths(kind: mi.Type, prefix: str = "") -> list[str]:
    """Every config key holding a float (alone or in a union), as `section.key` / `cameras[0].key`."""
    if isinstance(kind, mi.Metadata):
        kind = kind.type
    if isinstance(kind, mi.FloatType):
        return [prefix]
    if isinstance(kind, mi.UnionType):
        return next((found for member in kind.types if (found := float_paths(member, prefix))), [])
    if isinstance(kind, mi.ListType):
        return float_paths(kind.item_type, f"{prefix}[0]")
    if isinstance(kind, mi.StructType):
        return [path for field in kind.fields
                for path in float_paths(field.type, f"{prefix}.{field.name}".lstrip("."))]
    return []


def toml_setting(path: str, value: str) -> str:
    """`cameras[0].zones[0].min_score`, "inf" → "[[cameras]]\\n[[cameras.zones]]\\n…min_score = inf\\n".

    Tables along the path get their own headers (arrays of tables with `[[…]]`); a table that needs
    fields of its own to be valid gets them from REQUIRED, so only the float under test is wrong.
    """
    *tables, key = path.split(".")
    lines, prefix = [], []
    for table in tables:
        name = table.removesuffix("[0]")
        prefix.append(name)
        dotted = ".".join(prefix)
        lines.append(f"[[{dotted}]]" if table.endswith("[0]") else f"[{dotted}]")
        lines.extend(REQUIRED.get(dotted, []))
    return "\n".join([*lines, f"{key} = {value}", ""])


REQUIRED = {"cameras.zones": ['name = "drive"', "polygon = [[0, 0], [1, 0], [1, 1]]"],
            "cameras.classify": ['label = "bird"', 'model = "mobilenet_v2_1.0_224_inat_bird_quant"']}


FLOAT_KEYS = float_paths(mi.type_info(Config))


def test_the_float_keys_are_found():
    assert {"service.frame_timeout_seconds", "cameras[0].fps", "publish.detections.max_per_second",
            "mqtt.reconnect_max_seconds", "detector.threshold"} <= set(FLOAT_KEYS)


@pytest.mark.parametrize("value", ["inf", "-inf", "nan"])
def test_every_float_key_refuses_values_that_are_not_finite(value: str):
    """Present keys and any added later: no float anywhere in the config may be inf or nan."""
    for path in FLOAT_KEYS:
        with pytest.raises(ConfigError) as error:
            parse_config(toml_setting(path, value), "edged.toml")
        assert str(error.value).startswith(f"edged.toml: {path}: "), (path, str(error.value))


def test_non_finite_names_the_first_path_in_nested_values():
    from edged.config import non_finite

    path, value = non_finite({"a": [1.0, {"b": float("nan")}], "c": float("inf")})
    assert path == "a[1].b" and math.isnan(value)
    assert non_finite(Config()) is None
    with pytest.raises(msgspec.ValidationError, match=r"finite number, not inf - at `\$.cameras\[0\].fps`"):
        msgspec.convert({"cameras": [{"fps": float("inf")}]}, type=Config)  # what with_overrides re-validates


def test_config_check_and_run_share_one_preflight(tmp_path: Path):
    """The same file is refused by both with the same line (run after its own start-up logging)."""
    config = tmp_path / "edged.toml"
    config.write_text('[detector]\nallow_labels = ["persn"]\n')
    check = edged("config", "check", str(config))
    run = edged("run", "--config", str(config), "--backend", "cpu")
    line = f"{config}: detector.allow_labels: unknown label(s) 'persn' (not in coco_labels.txt)"
    assert check.returncode == run.returncode == EX_CONFIG
    assert check.stderr.strip() == f"edged config: error: {line}"
    assert run.stderr.strip().splitlines()[-1] == f"edged run: error: {line}"
