"""TrackingSettings (the `[tracking]` table, per-camera overridable) and ZoneSettings (`[[cameras.zones]]`).

Every field documents itself for `edged config`; msgspec validates ranges and
shapes with the key path, and the __post_init__ checks add what a type cannot
say (a self-intersecting polygon, low_score above high_score).
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from edged.fields import documented
from edged.track.zones import crossing_edges

ZONE_NAME_MAX = 64  # keeps every zone topic and Home Assistant id within the room kept below a camera
ZONE_NAME = rf"^[A-Za-z0-9][A-Za-z0-9_.-]{{0,{ZONE_NAME_MAX - 1}}}$"  # one topic level under `…/<camera>/zones/`
Unit = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]


class TrackingSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """How detections become tracked objects and when events are sent."""

    enabled: Annotated[bool, documented(
        "Enabled", "Track objects, keep zone occupancy and publish events on `…/<camera>/events`.")] = True
    labels: Annotated[list[str], documented(
        "Labels", "Track only these labels; empty: every label the detector reports.")] = []
    lost_seconds: Annotated[float, documented(
        "Lost after", "A track not seen for this long (capture time) ends, and so does its event; until then "
        "it survives missed frames and occlusions.", gt=0.0)] = 2.0
    min_hits: Annotated[int, documented(
        "Confirmation", "Frames a new object must be seen in (missing at most one in between, and "
        "once with at least `high_score`) before it becomes a track with an event: a one-frame false "
        "positive never does.", ge=1, le=100)] = 2
    high_score: Annotated[float, documented(
        "High score", "Detections at least this good are matched first; a new object needs one to "
        "be confirmed.", ge=0.0, le=1.0)] = 0.5
    low_score: Annotated[float, documented(
        "Low score", "Detections between this and `high_score` only keep existing tracks alive through a dip "
        "(ByteTrack's second stage); the detector reports down to this score while tracking is on, "
        "`…/detections` still only above `detector.threshold`.", ge=0.0, le=1.0)] = 0.3
    match_iou: Annotated[float, documented(
        "Match IoU", "Least overlap between a track's predicted box and a high-score detection to match.",
        gt=0.0, le=1.0)] = 0.3
    low_match_iou: Annotated[float, documented(
        "Low-score match IoU", "Least overlap for a low-score detection to keep a track alive (stricter, "
        "since low scores are often false positives).", gt=0.0, le=1.0)] = 0.5
    max_tracks: Annotated[int, documented(
        "Track cap", "Live tracks per camera (bounds memory and cost); at the cap the longest-lost track "
        "makes room, else new objects wait.", ge=1, le=1000)] = 50
    stationary_tolerance: Annotated[float, documented(
        "Stationary tolerance", "A box whose centre stays within this fraction of its size counts as not "
        "moving (a shadow or detector jitter does not wake a parked car).", ge=0.0, le=5.0)] = 0.15
    stationary_seconds: Annotated[float, documented(
        "Stationary after", "Seconds without moving before a track is marked stationary; its zones are then "
        "frozen until it moves.", gt=0.0)] = 10.0
    update_interval_seconds: Annotated[float, documented(
        "Update interval", "At most one `update` event per object in this many seconds; changes in between "
        "are combined into the next one.", ge=0.0)] = 1.0
    best_score_margin: Annotated[float, documented(
        "Best-score margin", "A better score is worth an `update` only when it beats the last announced best "
        "by this much.", ge=0.0, le=1.0)] = 0.05

    def __post_init__(self) -> None:
        if self.low_score > self.high_score:
            raise ValueError("low_score must not be above high_score")


class ZoneSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """A named area of one camera's picture, in coordinates that survive a resolution change."""

    name: Annotated[str, documented(
        "Name", "Topic level of the zone (`…/<camera>/zones/<name>/<label>`).", pattern=ZONE_NAME,
        examples=["driveway"])]
    polygon: Annotated[list[tuple[Unit, Unit]], documented(
        "Polygon", "Corners `[[x, y], …]` normalized to the picture (0..1, origin top left), at least 3, "
        "edges must not cross.", min_length=3, examples=[[[0.0, 0.55], [0.6, 0.55], [0.6, 1.0], [0.0, 1.0]]])]
    labels: Annotated[list[str], documented(
        "Labels", "Only these labels count in the zone; empty: every tracked label.")] = []
    min_score: Annotated[float, documented(
        "Minimum score", "An object counts in the zone only once its best score reached this.",
        ge=0.0, le=1.0)] = 0.0
    min_area: Annotated[float, documented(
        "Minimum area", "Smallest box (fraction of the picture) that counts in the zone.",
        ge=0.0, le=1.0)] = 0.0
    point: Annotated[Literal["bottom_center", "center", "top_center"], documented(
        "Anchor point", "Which point of the box must be inside: `bottom_center` (feet, wheels), `center` or "
        "`top_center`.")] = "bottom_center"

    def __post_init__(self) -> None:
        crossing = crossing_edges(self.polygon)
        if crossing is not None:
            first, second = crossing
            raise ValueError(f"polygon of zone `{self.name}` crosses itself (edge {first + 1} crosses edge "
                             f"{second + 1}; corners must go around the area in order)")
