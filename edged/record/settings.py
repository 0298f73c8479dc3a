"""RecordSettings: the `[record]` table — which frames become a dataset, where, and how much disk it may take.

A camera can override the what-and-when part in its own table
(`[cameras.record]`, RecordOverride): unset keys there inherit `[record]`.
Where the dataset lives and its quota stay global: one directory, one limit.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from edged.fields import documented

Policy = Literal["uncertain", "new_object", "interval"]

Fraction = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
Seconds = Annotated[float, msgspec.Meta(ge=0.0)]
Quality = Annotated[int, msgspec.Meta(ge=1, le=95)]


class RecordSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Keep frames with the model's detections as annotations: a dataset to retrain on, made on the device."""

    enabled: Annotated[bool, documented(
        "Record", "Keep frames as a dataset (per camera: `[cameras.record] enabled`).")] = False
    directory: Annotated[str, documented(
        "Directory", "Where the dataset is written (`edged dataset` reads it); empty: `dataset/` in the data "
        "directory (/var/lib/edged under systemd).")] = ""
    policies: Annotated[list[Policy], documented(
        "Policies", "Why a frame is kept; a frame is kept when any of them says so. `uncertain`: a detection "
        "scores in the uncertain band (what a retrained model learns most from); `new_object`: the first and "
        "the best frame of each tracked object (needs tracking); `interval`: one frame every "
        "`interval_seconds`, with or without detections.")] = \
        msgspec.field(default_factory=lambda: ["uncertain", "new_object"])
    uncertain_min: Annotated[Fraction, documented(
        "Uncertain from", "Lowest score of the uncertain band (the detector's threshold must not be higher "
        "for these detections to exist).")] = 0.3
    uncertain_max: Annotated[Fraction, documented(
        "Uncertain below", "Scores from this on are confident, not uncertain.")] = 0.6
    uncertain_gap_seconds: Annotated[Seconds, documented(
        "Uncertain gap", "At most one `uncertain` frame per camera this often: a scene that stays uncertain "
        "gives a few examples, not one per frame.")] = 10.0
    interval_seconds: Annotated[Seconds, documented(
        "Interval", "With the `interval` policy: keep one frame every this many seconds per camera.")] = 60.0
    labels: Annotated[list[str], documented(
        "Labels", "Only detections of these labels make `uncertain` and `new_object` keep a frame; empty: "
        "all. A kept frame still carries every detection (a missing box would teach a model to miss it).")] \
        = []
    jpeg_quality: Annotated[Quality, documented(
        "JPEG quality", "Quality of the stored pictures (1-95).")] = 90
    quota_mb: Annotated[float, documented(
        "Quota (MB)", "The dataset never takes more than this; the oldest frames are deleted to make room.",
        gt=0.0)] = 1024.0
    quota_percent: Annotated[float, documented(
        "Quota (% of disk)", "Nor more than this share of the space the filesystem leaves it (its own files "
        "plus free space), so recording never fills the SD card.", gt=0.0, le=100.0)] = 10.0
    queue_size: Annotated[int, documented(
        "Queue", "Frames waiting to be encoded and written; when full, further frames are dropped and "
        "counted (recording never slows the pipeline).", ge=1, le=64)] = 4

    def __post_init__(self) -> None:
        if self.uncertain_min >= self.uncertain_max:
            raise ValueError("must be above `uncertain_min` - at `$.uncertain_max`")


class RecordOverride(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One camera's `[cameras.record]`: what it changes of `[record]` (unset keys inherit)."""

    enabled: Annotated[bool | None, documented(
        "Record", "Record this camera; default: `[record] enabled`.")] = None
    policies: Annotated[list[Policy] | None, documented("Policies", "Default: `[record] policies`.")] = None
    uncertain_min: Annotated[Fraction | None, documented("Uncertain from", "Default: `[record]`'s.")] = None
    uncertain_max: Annotated[Fraction | None, documented("Uncertain below", "Default: `[record]`'s.")] = None
    uncertain_gap_seconds: Annotated[Seconds | None, documented(
        "Uncertain gap", "Default: `[record]`'s.")] = None
    interval_seconds: Annotated[Seconds | None, documented("Interval", "Default: `[record]`'s.")] = None
    labels: Annotated[list[str] | None, documented("Labels", "Default: `[record] labels`.")] = None
    jpeg_quality: Annotated[Quality | None, documented("JPEG quality", "Default: `[record]`'s.")] = None

    def apply(self, base: RecordSettings) -> RecordSettings:
        """`base` with this camera's keys in place; ValidationError naming the key if they contradict."""
        changes = {name: value for name in self.__struct_fields__
                   if (value := getattr(self, name)) is not None}
        return msgspec.convert({**msgspec.to_builtins(base), **changes}, RecordSettings)
