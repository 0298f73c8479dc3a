"""Label files: one label per line, line index = class id, read so that a bad file can never poison a topic.

Labels come from model authors' files and end up as MQTT topic levels and Home
Assistant names, so they are cleaned here, once, where they enter: a UTF-8
byte-order mark is not part of the first label, and control characters
(U+0000–U+001F, U+007F), which make brokers drop the session, are replaced.
`fit_labels` matches a file to the number of classes a model scores.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from edged.errors import DataError, NoInputError

log = logging.getLogger(__name__)

# C0 controls and DEL: brokers drop a session whose topic carries one.
_CONTROL = re.compile("[\x00-\x1f\x7f]")
REPLACEMENT = "\ufffd"


def read_labels(path: Path) -> list[str]:
    """One label per line, line index = class id (blank lines keep their place: ids must not shift).

    A UTF-8 byte-order mark is not part of the first label. Control characters
    left inside a label after trimming are replaced by U+FFFD, with one warning
    naming the file and the lines, so a model's label file can never put them
    into a topic.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise NoInputError(f"labels file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"labels file {path} cannot be read ({exc})") from None
    labels = [line.strip() for line in text.rstrip("\n").split("\n")]
    poisoned = [number for number, label in enumerate(labels, start=1) if _CONTROL.search(label)]
    if poisoned:
        more = f" and {len(poisoned) - 10} more" if len(poisoned) > 10 else ""
        shown = ", ".join(map(str, poisoned[:10])) + more
        log.warning("labels file %s: control characters replaced by U+FFFD on line %s", path, shown)
        labels = [_CONTROL.sub(REPLACEMENT, label) for label in labels]
    return labels


def fit_labels(labels: list[str], classes: int, path: Path, model: str) -> tuple[list[str], int]:
    """(labels, offset) for a model scoring `classes` classes; offset 1: column 0 is an unlabelled background.

    A file may go on past the classes after a blank line (a note, as in Coral's
    pascal_voc_segmentation_labels.txt); anything else of the wrong length is a DataError.
    """
    if len(labels) == classes:
        return labels, 0
    if len(labels) == classes - 1:
        return labels, 1
    if len(labels) > classes and labels[classes] == "":
        return labels[:classes], 0
    raise DataError(f"labels file {path} has {len(labels)} labels but {model} scores {classes} classes")


