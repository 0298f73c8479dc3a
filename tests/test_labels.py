"""Label files from model authors can never put control characters into a topic; a BOM is not a label."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edged.detect.labels import fit_labels, read_labels
from edged.errors import DataError

COCO = Path(__file__).parents[1] / "models" / "coco_labels.txt"


def test_a_byte_order_mark_reads_as_if_it_were_not_there(tmp_path):
    marked = tmp_path / "labels.txt"
    marked.write_bytes(b"\xef\xbb\xbf" + COCO.read_bytes())
    assert read_labels(marked) == read_labels(COCO)
    assert read_labels(marked)[0] == "person"


def test_control_characters_are_replaced_with_one_warning_naming_file_and_lines(tmp_path, caplog):
    poisoned = tmp_path / "labels.txt"
    poisoned.write_text("person\r\nbi\x00cycle\n\x1b]0;owned\x07car\ntab\tbed\n\x7f\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="edged.detect"):
        labels = read_labels(poisoned)
    assert labels == ["person", "bi\ufffdcycle", "\ufffd]0;owned\ufffdcar", "tab\ufffdbed", "\ufffd"]
    assert [r.getMessage() for r in caplog.records] == [
        f"labels file {poisoned}: control characters replaced by U+FFFD on line 2, 3, 4, 5"]


def test_a_poisoned_label_reaches_detect_output_sanitized(fetched_data_dir, tmp_path):
    labels = COCO.read_text().splitlines()
    labels[16] = "c\x1b[2Jat"  # class 16 is "cat"; ESC [2J clears a terminal
    poisoned = tmp_path / "labels.txt"
    poisoned.write_text("\n".join(labels) + "\n")
    env = {**os.environ, "EDGED_DATA_DIR": str(fetched_data_dir)}
    result = subprocess.run([sys.executable, "-m", "edged", "detect", "--json", "--backend", "cpu",
                             "--labels", str(poisoned), str(fetched_data_dir / "samples" / "cat.bmp")],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["detections"][0]["label"] == "c\ufffd[2Jat"
    warnings = [line for line in result.stderr.splitlines() if line.startswith("WARNING")]
    assert len(warnings) == 1 and str(poisoned) in warnings[0] and "line 17" in warnings[0]


def test_fit_labels_to_the_classes_a_model_scores(tmp_path):
    path = tmp_path / "labels.txt"
    assert fit_labels(["a", "b", "c"], 3, path, "m") == (["a", "b", "c"], 0)
    assert fit_labels(["a", "b"], 3, path, "m") == (["a", "b"], 1)  # column 0: unlabelled background
    assert fit_labels(["a", "b", "", "a note", "on two lines"], 2, path, "m") == (["a", "b"], 0)
    with pytest.raises(DataError, match="has 5 labels but m scores 3 classes"):
        fit_labels(["a", "b", "c", "d", "e"], 3, path, "m")
