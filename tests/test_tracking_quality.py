"""A floor on tracking quality: TUD-Campus through `edged track`, scored by py-motmetrics.

The detections are the fixed-seed simulation of tests/tracking_sim.py on the
ground truth py-motmetrics ships. Measured with the default [tracking]
settings when this test was written: MOTA 0.894, IDF1 0.945, 0 ID switches
(tests/benchmarks/bench_tracking.py prints the full table against norfair
and ByteTrack). The floors are those minus a small margin (0.03 on MOTA and
IDF1, 2 switches), so noise in a refactor passes and a real regression fails.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.edged_process import REPO

MOTA_FLOOR = 0.864
IDF1_FLOOR = 0.915
SWITCHES_CEILING = 2

pytest.importorskip("motmetrics", reason="py-motmetrics (test extra) ships the ground truth and the metrics")


def test_tud_campus_stays_above_the_floor(tmp_path: Path):
    from tests import tracking_sim as sim

    sequence = sim.load("TUD-Campus")
    detections = tmp_path / "det.txt"
    detections.write_text("".join(
        f"{frame},-1,{x0:.3f},{y0:.3f},{x1 - x0:.3f},{y1 - y0:.3f},{score:.4f},-1,-1,-1\n"
        for frame, found in sorted(sequence.detections.items()) for (x0, y0, x1, y1), score in found))
    result = subprocess.run([sys.executable, "-m", "edged", "track", str(detections), "--fps", str(sim.FPS)],
                            cwd=REPO, capture_output=True, text=True, timeout=60, check=True)
    rows = []
    for line in result.stdout.splitlines():
        frame, ident, x, y, w, h, score = line.split(",")[:7]
        rows.append((int(frame), int(ident), float(x), float(y), float(x) + float(w), float(y) + float(h),
                     float(score)))
    measured = sim.metrics(sequence, rows)
    print(f"TUD-Campus: MOTA {measured['mota']:.3f} IDF1 {measured['idf1']:.3f} "
          f"ID switches {measured['num_switches']:.0f}")
    assert measured["mota"] >= MOTA_FLOOR
    assert measured["idf1"] >= IDF1_FLOOR
    assert measured["num_switches"] <= SWITCHES_CEILING
