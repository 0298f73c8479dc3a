"""`edged bench --json` runs end to end and reports every number it promises. Their values are not judged
here: speed is measured by benchmarks, never asserted in tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.edged_process import REPO

KEYS = {"invoke_fps", "pipeline_fps", "ratio", "latency_ms", "nms_ms", "rss_mb", "ready_s", "backend",
        "runtime", "workers", "threads", "busy", "protocol_ratio", "host_cpu_ms", "daemon_invoke_ms"}


def test_bench_json_reports_every_measurement(fetched_data_dir: Path):
    argv = [sys.executable, "-m", "edged", "bench", "--json", "--backend", "cpu", "--seconds", "2",
            "--workers", "2"]
    result = subprocess.run(argv, cwd=REPO, env={**os.environ, "EDGED_DATA_DIR": str(fetched_data_dir)},
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert KEYS <= set(report)
    assert set(report["latency_ms"]) == {"p50", "p95", "p99"}
    assert report["backend"].startswith("cpu:")
    assert any(name in report["runtime"] for name in ("litert", "tflite", "tensorflow"))
    assert report["frames"] > 0  # the subscriber really received detections from the daemon
    for key in ("invoke_fps", "pipeline_fps", "ratio", "rss_mb", "ready_s", "nms_ms", "protocol_ratio",
                "host_cpu_ms"):
        assert report[key] > 0, key
    assert report["workers"] == 2 and len(report["busy"]) == 2  # one busy fraction per worker
    assert all(0 < busy <= 1 for busy in report["busy"])
    assert report["latency_ms"]["p50"] <= report["latency_ms"]["p95"] <= report["latency_ms"]["p99"]
    assert report["nms_raw_ms"] is not None  # the fixture fetched the raw variant too
