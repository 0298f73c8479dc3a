"""The local manifest as TOML, laid out like models/manifest.toml: a table per model, a sub-table per variant.

msgspec reads TOML but writes it only through tomli_w; the manifest is a fixed,
small shape (strings, integers, a pair of integers, inline file tables), so it is
written here and decoded back before it is saved: what edged writes is always
what it will read.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec

from edged.detect.catalog import LocalManifest

HEADER = """\
# edged local models: written by `edged models add` / `edged models remove`; edit with those commands.
# Same schema as the built-in models/manifest.toml; files are in local/ beside this file, pinned by SHA-256
# (the labels file too: `labels_sha256`). A file that no longer matches its pin is refused (exit 65).
"""
VARIANT_TABLES = ("cpu", "edgetpu", "raw")


def render(manifest: LocalManifest) -> str:
    """TOML text that decodes to exactly `manifest` (checked)."""
    lines = [HEADER]
    for name, entry in manifest.models.items():
        data = _present(msgspec.to_builtins(entry))
        lines.append(f"[models.{_string(name)}]")
        lines += [f"{key} = {_value(value)}" for key, value in data.items() if key not in VARIANT_TABLES]
        for variant in VARIANT_TABLES:
            if variant in data:
                lines.append(f"\n[models.{_string(name)}.{variant}]")
                lines += [f"{key} = {_value(value)}" for key, value in data[variant].items()]
        lines.append("")
    text = "\n".join(lines)
    if msgspec.toml.decode(text.encode(), type=LocalManifest) != manifest:
        raise AssertionError("the local manifest does not read back as written")
    return text


def _present(data: dict[str, Any]) -> dict[str, Any]:
    """Without unset (None) keys, at every level: TOML has no null."""
    return {key: _present(value) if isinstance(value, dict) else value
            for key, value in data.items() if value is not None}


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{key} = {_value(item)}" for key, item in value.items()) + " }"
    raise TypeError(f"no TOML form for {value!r}")


def _string(text: str) -> str:
    """A TOML basic string: JSON's escapes are TOML's, and DEL (allowed by JSON) is escaped too."""
    return json.dumps(text, ensure_ascii=True).replace("\x7f", "\\u007f")
