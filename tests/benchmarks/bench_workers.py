"""Benchmark: how to spend the cores — 1 worker x 1 thread, 1 worker x 2 threads, 2 workers x 1 thread.

Run: `python tests/benchmarks/bench_workers.py [--seconds N] [--rounds N] [--mirror DIR ...]`. Not
collected by pytest. Each layout is one `edged bench --json --backend cpu` (the
real daemon on the sample photos, unpaced, against a private mosquitto); the
layouts are run in turn, `--rounds` times, so load that drifts hits them alike.
Printed: pipeline fps, each worker's busy fraction, the host CPU per frame, the
load average, and the fps of each layout against 1 x 1 in the same round.
Target (issue 9): on 2 cores, 2 workers deliver >= 1.5x the fps of one 1-thread
worker.
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
LAYOUTS = [(1, 1), (1, 2), (2, 1)]  # (workers, threads)


def bench(env: dict[str, str], seconds: float, workers: int, threads: int) -> dict:
    out = subprocess.run([sys.executable, "-m", "edged", "bench", "--json", "--backend", "cpu",
                          "--seconds", str(seconds), "--workers", str(workers), "--threads", str(threads)],
                         cwd=REPO, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--mirror", action="append", default=[str(SHARED / "models"), str(SHARED / "images")])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edged-bench-data-") as data:
        env = {**os.environ, "EDGED_DATA_DIR": data}
        fetch = [sys.executable, "-m", "edged", "models", "fetch", "--offline", "--variant", "cpu"]
        for mirror in args.mirror:
            fetch += ["--mirror", mirror]
        subprocess.run(fetch, cwd=REPO, env=env, check=True, capture_output=True)
        print(f"{'round':>5} {'layout':>14} {'fps':>7} {'vs 1x1':>7} {'busy':>14} {'host CPU ms':>11} "
              f"{'load':>11}")
        for round_ in range(1, args.rounds + 1):
            baseline = None
            for workers, threads in LAYOUTS:
                result = bench(env, args.seconds, workers, threads)
                baseline = baseline or result["pipeline_fps"]
                versus = result["pipeline_fps"] / baseline
                load = result["load_avg"]
                busy = "/".join(f"{b:.2f}" for b in result["busy"])
                print(f"{round_:>5} {f'{workers} x {threads} thr':>14} {result['pipeline_fps']:>7.1f} "
                      f"{versus:>6.2f}x {busy:>14} {result['host_cpu_ms']:>11.2f} "
                      f"{load[0]:>5.2f}→{load[1]:.2f}"
                      + (f"  target >= 1.5x: {'met' if versus >= 1.5 else 'NOT MET'}"
                         if workers == 2 else ""))
        print(f"machine: {result['machine']}; backend {result['backend']} ({result['runtime']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
