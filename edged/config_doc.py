"""The documented example config, rendered from the config Structs themselves.

Every field's title, description and default come from its
`Annotated[..., msgspec.Meta(title=…, description=…)]`, so the example can
never drift from the code: `edged config example` prints it and
deploy/edged.example.toml is that output (a test keeps the two identical and
checks the file decodes to the defaults). Keys whose default is "unset" (None)
cannot be written in TOML; they appear commented out.
"""

from __future__ import annotations

import json
import textwrap
from typing import Any

import msgspec
from msgspec import inspect as mi

from edged.config import Config

WIDTH = 100
HEADER = """\
# edged configuration: every key with its default. Copy to /etc/edged/edged.toml, keep what you change.
# Check a file with `edged config check FILE`; reload a running daemon with `systemctl reload edged`
# (SIGHUP: a bad new file is refused and the running configuration kept).
# Regenerate this file with `edged config example`.
"""


def _comment(text: str) -> list[str]:
    return textwrap.wrap(text, WIDTH - 2, initial_indent="# ", subsequent_indent="# ",
                         break_on_hyphens=False, break_long_words=False)


def toml_value(value: Any) -> str:
    """A default as TOML: strings and lists of strings in JSON form are valid TOML basic strings/arrays."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no TOML form for {value!r}")


def _unwrap(kind: mi.Type) -> tuple[mi.Type, dict[str, Any]]:
    if isinstance(kind, mi.Metadata):
        return kind.type, dict(kind.extra_json_schema or {})
    return kind, {}


def _choices(kind: mi.Type) -> list[Any]:
    """The allowed values of a Literal (or Literal | None) field; [] for open types."""
    if isinstance(kind, mi.LiteralType):
        return list(kind.values)
    literal_or_none = (mi.LiteralType, mi.NoneType)
    if isinstance(kind, mi.UnionType) and all(isinstance(t, literal_or_none) for t in kind.types):
        return [v for t in kind.types if isinstance(t, mi.LiteralType) for v in t.values]
    return []


def _describe(name: str, kind: mi.Type, doc: dict[str, Any], value: Any) -> list[str]:
    text = doc.get("title", name)
    if doc.get("description"):
        text += f": {doc['description']}"
    choices = _choices(kind)
    if choices:
        text += f" One of: {', '.join(toml_value(c) for c in choices)}."
    lines = _comment(text)
    lines.append(f"# {name} =    (unset by default)" if value is None else f"{name} = {toml_value(value)}")
    return lines


def _table(header: str, struct: msgspec.Struct, kind: mi.StructType, doc: dict[str, Any]) -> list[str]:
    lines = [""]
    lines += _comment(f"{doc.get('title', header)}: {doc['description']}") if doc.get("description") else []
    lines.append(header)
    nested: list[tuple[str, msgspec.Struct, mi.StructType, dict[str, Any]]] = []
    examples: list[tuple[str, mi.StructType, dict[str, Any], list]] = []  # arrays of tables (zones)
    optionals: list[tuple[str, mi.StructType, dict[str, Any]]] = []  # tables absent by default
    for field in kind.fields:
        field_kind, field_doc = _unwrap(field.type)
        value = getattr(struct, field.name)
        if isinstance(field_kind, mi.StructType):
            nested.append((field.name, value, field_kind, field_doc))
            continue
        if isinstance(field_kind, mi.ListType) and isinstance(field_kind.item_type, mi.StructType):
            examples.append((field.name, field_kind.item_type, field_doc, value))
            continue
        optional = _optional_table(field_kind)
        if optional is not None:  # a table that is off unless present ([cameras.segment])
            if value is None:
                optionals.append((field.name, optional, field_doc))
            else:
                nested.append((field.name, value, optional, field_doc))
            continue
        lines.append("")
        lines += _describe(field.name, field_kind, field_doc, msgspec.to_builtins(value))
    path = header.strip("[]")
    for name, value, field_kind, field_doc in nested:
        lines += _table(f"[{path}.{name}]", value, field_kind, field_doc)
    for name, item_kind, field_doc, items in examples:
        for item in items:
            lines += _table(f"[[{path}.{name}]]", item, item_kind, field_doc)
        if not items:
            lines += _commented_example(f"[[{path}.{name}]]", item_kind, field_doc)
    for name, item_kind, field_doc in optionals:
        lines += _commented_example(f"[{path}.{name}]", item_kind, field_doc)
    return lines


def _optional_table(kind: mi.Type) -> mi.StructType | None:
    """The table of a `Struct | None` field, else None."""
    if isinstance(kind, mi.UnionType) and len(kind.types) == 2 and any(isinstance(t, mi.NoneType)
                                                                          for t in kind.types):
        table = next(t for t in kind.types if not isinstance(t, mi.NoneType))
        return table if isinstance(table, mi.StructType) else None
    return None


def _commented_example(header: str, kind: mi.StructType, doc: dict[str, Any]) -> list[str]:
    """An array of tables that is empty by default (zones), or a table absent by default (a camera's
    segmenter): every key shown commented out, with its default or, for required keys, the example its
    field documents."""
    lines = [""] + _comment(f"{doc.get('title', header)}: {doc.get('description', '')} None by default; "
                            "an example:")
    lines.append(f"# {header}")
    for field in kind.fields:
        field_kind, field_doc = _unwrap(field.type)
        if field.required:
            value = field_doc["examples"][0]
        else:
            value = field.default if field.default is not mi.NODEFAULT else field.default_factory()
        described = _describe(field.name, field_kind, field_doc, msgspec.to_builtins(value))
        lines += ["#", *described[:-1], f"# {described[-1]}"]
    return lines


def render_example(config: Config | None = None) -> str:
    """The annotated TOML of `config` (default: the built-in defaults)."""
    config = config or Config()
    root = mi.type_info(Config)
    assert isinstance(root, mi.StructType)
    lines = HEADER.rstrip("\n").splitlines()
    for field in root.fields:
        kind, doc = _unwrap(field.type)
        value = getattr(config, field.name)
        if isinstance(kind, mi.StructType):
            lines += _table(f"[{field.name}]", value, kind, doc)
        elif isinstance(kind, mi.ListType) and isinstance(kind.item_type, mi.StructType):
            for item in value:
                lines += _table(f"[[{field.name}]]", item, kind.item_type, doc)
        else:
            raise TypeError(f"config field {field.name} is neither a table nor an array of tables")
    return "\n".join(lines) + "\n"
