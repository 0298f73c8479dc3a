"""The package imports anywhere and the CLI answers --help without any optional library loaded."""

import subprocess
import sys

from edged.cli import COMMANDS

HEAVY = ["ai_edge_litert", "tflite_runtime", "tensorflow", "paho", "picamera2", "cv2", "systemd", "pycoral",
         "pycocotools"]


def test_import_and_help_load_no_optional_library():
    code = (
        "import sys, edged, edged.cli\n"
        "edged.cli.build_parser()\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_every_command_has_help():
    for name in COMMANDS:
        result = subprocess.run([sys.executable, "-m", "edged", name, "--help"], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        assert f"usage: edged {name}" in result.stdout
