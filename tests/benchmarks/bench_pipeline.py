"""Benchmark: the whole daemon against bare invoke() (`edged bench`), checked against the issue's targets.

Run: `python tests/benchmarks/bench_pipeline.py [--seconds N] [--mirror DIR ...]`. Not collected by pytest.
Fetches the default model and the sample photos from the shared mirrors into a
temporary data dir, runs `edged bench --json --backend cpu` (private mosquitto
on [::1]) and prints each number next to its target. Targets (CPU backend,
1 thread): ratio >= 0.95; latency p50 <= bare invoke median + 5 ms;
RSS <= 150 MB; READY <= 2 s. It reports; it does not fail on a slow machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--mirror", action="append",
                        default=[str(SHARED / "models"), str(SHARED / "images")])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edged-bench-data-") as data:
        env = {**os.environ, "EDGED_DATA_DIR": data}
        fetch = [sys.executable, "-m", "edged", "models", "fetch", "--offline", "--variant", "cpu",
                 "--variant", "raw"]
        for mirror in args.mirror:
            fetch += ["--mirror", mirror]
        subprocess.run(fetch, cwd=REPO, env=env, check=True, capture_output=True)
        out = subprocess.run([sys.executable, "-m", "edged", "bench", "--json", "--backend", "cpu",
                              "--seconds", str(args.seconds)], cwd=REPO, env=env, check=True,
                             capture_output=True, text=True).stdout
    result = json.loads(out)
    checks = [
        ("pipeline/invoke ratio", result["ratio"], ">= 0.95", result["ratio"] >= 0.95),
        ("latency p50 - invoke median (ms)", round(result["latency_ms"]["p50"] - result["invoke_ms"], 2),
         "<= 5", result["latency_ms"]["p50"] <= result["invoke_ms"] + 5),
        ("peak RSS (MiB)", result["rss_mb"], "<= 150", result["rss_mb"] <= 150),
        ("time to READY (s)", result["ready_s"], "<= 2", result["ready_s"] <= 2),
    ]
    print(f"machine: {result['machine']}")
    print(f"backend: {result['backend']} ({result['runtime']}); bare invoke {result['invoke_fps']} fps "
          f"(median {result['invoke_ms']} ms, {result['daemon_invoke_ms']} ms inside the daemon); "
          f"pipeline {result['pipeline_fps']} fps; latency {result['latency_ms']}; "
          f"postprocess {result['nms_ms']} ms, raw decode+NMS {result['nms_raw_ms']} ms")
    for name, value, target, met in checks:
        print(f"  {name:<34} {value!s:>8}  target {target:<7} {'met' if met else 'NOT MET'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
