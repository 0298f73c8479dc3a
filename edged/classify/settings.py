"""ClassifySettings: one `[[cameras.classify]]` table — which detections get a second look, by which model."""

from __future__ import annotations

from typing import Annotated

import msgspec

from edged.fields import documented


class ClassifySettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """A classifier run on the crops of one detected label (e.g. `bird` → the bird's species)."""

    label: Annotated[str, documented(
        "Label", "Detections with this label (of the detector's labels) are classified.",
        min_length=1, examples=["bird"])]
    model: Annotated[str, documented(
        "Classifier", "A classifier of the model manifest (`edged models list`), run in the detector's "
        "worker on the same backend (its Edge TPU build on an Edge TPU).",
        min_length=1, examples=["mobilenet_v2_1.0_224_inat_bird_quant"])]
    margin: Annotated[float, documented(
        "Margin", "The box is grown by this fraction of its width and height on each side before it is "
        "cut out (context helps the classifier).", ge=0.0, le=1.0)] = 0.1
    min_crop_pixels: Annotated[int, documented(
        "Minimum crop size", "Boxes narrower or lower than this many pixels of the camera's picture are not "
        "classified: a classifier guesses on a few pixels.", ge=1)] = 32
    interval_seconds: Annotated[float, documented(
        "Per-track interval", "With tracking on, each tracked object is classified at most once per this "
        "many seconds and carries its last subclass in between.", ge=0.0)] = 10.0
    max_per_frame: Annotated[int, documented(
        "Crops per frame", "At most this many detections of the label are classified per frame (the best "
        "scores first); without tracking every frame classifies again.", ge=1, le=100)] = 2
    min_score: Annotated[float, documented(
        "Minimum score", "A subclass scoring less is not reported.", ge=0.0, le=1.0)] = 0.0
    counts_by_subclass: Annotated[bool, documented(
        "Counts by subclass", "Also publish retained counts per subclass on `…/<camera>/<label>/<subclass>` "
        "(with a Home Assistant sensor each when discovery is on).")] = False
