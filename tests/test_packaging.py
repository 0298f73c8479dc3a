"""The wheel carries every package of edged: a stage folder missing from pyproject's list works in the
editable checkout the tests use, and fails with ImportError on every device that installs the wheel."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_listed_in_pyproject():
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {".".join(init.parent.relative_to(REPO).parts) for init in (REPO / "edged").rglob("__init__.py")}
    assert folders - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
    assert "edged._models" in listed  # the manifest and label files, from models/
