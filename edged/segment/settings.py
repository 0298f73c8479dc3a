"""SegmentSettings: the `[cameras.segment]` table — a segmenter instead of, or beside, the detector."""

from __future__ import annotations

from typing import Annotated

import msgspec

from edged.fields import documented


class SegmentSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """Per-class area shares of this camera's picture, whole and per `[[cameras.zones]]` zone."""

    model: Annotated[str, documented(
        "Segmenter", "A segmenter of the model manifest (`edged models list`), run in an inference worker "
        "on the detector's backend.", min_length=1)] = "deeplabv3_mnv2_pascal_quant"
    interval_seconds: Annotated[float, documented(
        "Interval", "At most one segmentation per this many seconds of capture time (DeepLab takes about "
        "ten times a detection on the CPU); 0: every frame.", ge=0.0)] = 5.0
    detect: Annotated[bool, documented(
        "Detector too", "false: this camera runs only the segmenter (no detections, counts or tracking "
        "for it).")] = True
    snapshot: Annotated[bool, documented(
        "Overlay snapshot", "Publish the picture with the classes tinted, retained on "
        "`…/<camera>/segments/snapshot`, with each segmentation.")] = True
    min_change: Annotated[float, documented(
        "Coverage change", "A zone's retained coverage of a label is published again only when it moved by "
        "at least this much (a share of the zone).", ge=0.0, le=1.0)] = 0.01
