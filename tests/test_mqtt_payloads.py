"""Payload schemas are what the code emits; topics build and parse back; temperatures come from sysfs."""

from __future__ import annotations

import json

import jsonschema
import msgspec
import pytest

from edged.errors import ConfigError
from edged.publish import thermal
from edged.publish.payloads import (SCHEMA_DIR, DetectionsPayload, FrameSize, Stats, StatusPayload, encode,
                                    schema_documents, schema_text)
from edged.publish.topics import Parsed, Topics, check_prefix_template, label_level
from edged.types import Box, Detection


def test_committed_schemas_are_what_the_code_generates():
    documents = schema_documents()
    assert sorted(documents) == sorted(path.name for path in SCHEMA_DIR.glob("*.json"))
    for name, document in documents.items():
        committed = (SCHEMA_DIR / name).read_text()
        assert committed == schema_text(document), f"{name} is stale: run python -m edged.publish.payloads"
        jsonschema.Draft202012Validator.check_schema(json.loads(committed))


def validator(name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads((SCHEMA_DIR / name).read_text()))


def test_emitted_payloads_validate_and_broken_ones_do_not():
    detection = Detection(label="cat", class_id=16, score=0.5, box=Box(xmin=0, ymin=0, xmax=1, ymax=1))
    payload = json.loads(encode(DetectionsPayload(
        device="d", camera="c", seq=1, captured_at="2026-01-01T00:00:00.000000Z",
        published_at="2026-01-01T00:00:00.100000Z", backend="cpu", model="m", inference_ms=1.0,
        frame=FrameSize(10, 10), detections=[detection])))
    validator("detections.v1.json").validate(payload)
    for broken in ({**payload, "v": 2}, {k: v for k, v in payload.items() if k != "seq"},
                   {**payload, "detections": [{"label": "cat"}]}):
        assert not validator("detections.v1.json").is_valid(broken)
    status = json.loads(encode(StatusPayload(state="online", version="1", backend="b", model="m", since=None)))
    validator("status.v1.json").validate(status)
    assert not validator("status.v1.json").is_valid({**status, "state": "sleeping"})
    validator("stats.v1.json").validate(json.loads(encode(Stats())))
    validator("count.v1.json").validate(3)
    assert not validator("count.v1.json").is_valid(-1)


def test_status_has_exactly_the_contract_keys():
    status = msgspec.json.decode(encode(StatusPayload(state="degraded", version="1", backend="cpu", model="m",
                                                      since="2026-01-01T00:00:00.000000Z")))
    assert list(status) == ["state", "version", "backend", "model", "since", "run_id", "accelerators"]


def test_topics_build_and_parse_back():
    topics = Topics("site/{device_id}/edged", "pi1")
    assert topics.status == "site/pi1/edged/status"
    assert topics.count("front", "traffic light") == "site/pi1/edged/front/traffic_light"
    assert label_level("a/b+#c") == "a_b_c"
    every = Topics("site/{device_id}/edged", "+")
    assert every.everything == "site/+/edged/#"
    assert every.parse("site/pi2/edged/front/person") == Parsed("pi2", "count", "front", "person")
    assert every.parse("site/pi2/edged/front/detections") == Parsed("pi2", "detections", "front")
    assert every.parse("site/pi2/edged/stats") == Parsed("pi2", "stats")
    assert every.parse("site/pi2/other/stats") is None and every.parse("site/pi2/edged/bridge") is None
    assert topics.parse("site/pi2/edged/status") is None  # another device


@pytest.mark.parametrize("template", ["edged", "edged/{device_id}/{device_id}", "edged/x{device_id}",
                                      "edged/#/{device_id}", "edged/{device}"])
def test_bad_prefix_templates(template):
    with pytest.raises(ConfigError, match="publish.topic_prefix"):
        check_prefix_template(template)


def test_temperatures_from_sysfs(tmp_path):
    thermal_root, apex_root = tmp_path / "thermal", tmp_path / "apex"
    for index, (kind, millidegrees) in enumerate([("gpu-thermal", 61000), ("cpu-thermal", 48312)]):
        zone = thermal_root / f"thermal_zone{index}"
        zone.mkdir(parents=True)
        (zone / "type").write_text(kind + "\n")
        (zone / "temp").write_text(f"{millidegrees}\n")
    assert thermal.cpu_temp_c(thermal_root) == 48.3
    assert thermal.tpu_temp_c(apex_root) is None  # a USB Accelerator exposes none
    for index, millidegrees in enumerate([41250, 44000]):
        (apex_root / f"apex_{index}").mkdir(parents=True)
        (apex_root / f"apex_{index}" / "temp").write_text(f"{millidegrees}\n")
    assert thermal.tpu_temp_c(apex_root) == 44.0
