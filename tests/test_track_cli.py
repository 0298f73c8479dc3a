"""`edged track`: MOTChallenge detections in, MOTChallenge tracks out; bad input: one line, an exit code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edged.errors import EX_CONFIG, EX_DATAERR, EX_NOINPUT, EX_USAGE
from tests.edged_process import REPO


def edged_track(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edged", "track", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=60)


def two_walkers(path: Path, frames: int = 20) -> Path:
    """Two people walking towards each other in pixels, ids scrambled (edged must ignore them), one missing
    frame each, plus a one-frame false positive."""
    lines = []
    for frame in range(1, frames + 1):
        if frame != 7:
            lines.append(f"{frame},99,{100 + 12 * frame},200,50,120,0.9,-1,-1,-1")
        if frame != 12:
            lines.append(f"{frame},-1,{500 - 12 * frame},210,50,120,0.8,-1,-1,-1")
    lines.append("10,5,20,20,40,40,0.95,-1,-1,-1")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_tracks_come_out_in_motchallenge_format_with_stable_ids(tmp_path: Path):
    result = edged_track(str(two_walkers(tmp_path / "det.txt")), "--fps", "10")
    assert result.returncode == 0, result.stderr
    rows = [line.split(",") for line in result.stdout.splitlines()]
    assert all(len(row) == 10 and row[7:] == ["-1", "-1", "-1"] for row in rows)
    ids_by_frame: dict[int, set[int]] = {}
    for row in rows:
        ids_by_frame.setdefault(int(row[0]), set()).add(int(row[1]))
    assert {i for ids in ids_by_frame.values() for i in ids} == {1, 2}  # the false positive got no track
    assert ids_by_frame[20] == {1, 2} and ids_by_frame[7] == {2}  # frame 7 misses walker 1: not reported
    walker = [row for row in rows if int(row[0]) == 20 and float(row[2]) > 300]
    first = [row for row in rows if int(row[0]) == 3 and float(row[2]) < 200]
    assert walker[0][1] == first[0][1]  # the left walker kept its id while crossing the other one
    assert abs(float(walker[0][4]) - 50) < 5 and abs(float(walker[0][5]) - 120) < 5


def test_settings_come_from_the_config(tmp_path: Path):
    detections = two_walkers(tmp_path / "det.txt")
    config = tmp_path / "edged.toml"
    config.write_text("[tracking]\nmin_hits = 1\n")
    eager = edged_track(str(detections), "--config", str(config))
    assert eager.returncode == 0 and any(line.startswith("10,3,") for line in eager.stdout.splitlines())


@pytest.mark.parametrize("content, code, fragment", [
    ("1,1,10,10,20\n", EX_DATAERR, "det.txt:1: expected at least 7 comma-separated fields"),
    ("1,1,10,10,20,20,0.9\n2,1,ten,10,20,20,0.9\n", EX_DATAERR, "det.txt:2: frame, x, y, w, h and score"),
    ("0,1,10,10,20,20,0.9\n", EX_DATAERR, "det.txt:1: frame must be a whole number from 1"),
    ("1,1,10,10,0,20,0.9\n", EX_DATAERR, "det.txt:1: box width and height must be positive"),
])
def test_bad_detection_files_are_one_line_and_exit_65(tmp_path: Path, content: str, code: int, fragment: str):
    path = tmp_path / "det.txt"
    path.write_text(content)
    result = edged_track(str(path))
    assert result.returncode == code and result.stdout == ""
    assert result.stderr.count("\n") == 1 and fragment in result.stderr, result.stderr
    assert result.stderr.startswith("edged track: error: ")


def test_missing_file_bad_config_and_bad_fps(tmp_path: Path):
    missing = edged_track(str(tmp_path / "absent.txt"))
    assert missing.returncode == EX_NOINPUT and "absent.txt: no such detections file" in missing.stderr
    config = tmp_path / "edged.toml"
    config.write_text("[tracking]\nmin_hits = 0\n")
    bad = edged_track(str(two_walkers(tmp_path / "det.txt")), "--config", str(config))
    assert bad.returncode == EX_CONFIG and "tracking.min_hits: Expected `int` >= 1" in bad.stderr
    assert bad.stderr.count("\n") == 1
    fps = edged_track(str(tmp_path / "det.txt"), "--fps", "0")
    assert fps.returncode == EX_USAGE and "--fps: must be above 0" in fps.stderr
