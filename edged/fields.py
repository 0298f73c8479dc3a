"""One helper for self-documenting settings fields, shared by every stage's settings Struct.

`Annotated[T, documented("Title", "What it does and why")]` gives each config
key the title and description that `edged config example` prints and that the
JSON Schema of the config carries; constraints (`ge=`, `le=`, …) go to msgspec.
"""

from __future__ import annotations

import msgspec


def documented(title: str, description: str, **constraints) -> msgspec.Meta:
    return msgspec.Meta(title=title, description=description, **constraints)
