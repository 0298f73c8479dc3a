"""A class map → the shares of the whole picture and of each zone (each zone's mask made once per size).

Zones are the tracking zones (`[[cameras.zones]]`), rasterized by
edged.detect.segmentation.zone_mask: a pixel belongs to a zone when its centre
is inside, so the shares are exact. A camera's picture size rarely changes, so
the masks are kept per size and rebuilt only when it does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edged.detect.segmentation import class_shares, zone_mask, zone_shares
from edged.track.settings import ZoneSettings

DECIMALS = 4  # shares on the wire: 0.01 % steps, enough for any zone a person draws


class ZoneAreas:
    """One camera's zones, measured on class maps at the picture's own size."""

    def __init__(self, zones: Sequence[ZoneSettings]) -> None:
        self._polygons = {zone.name: [tuple(corner) for corner in zone.polygon] for zone in zones}
        self._masks: dict[str, np.ndarray] = {}
        self._size: tuple[int, int] | None = None

    def masks(self, width: int, height: int) -> dict[str, np.ndarray]:
        if self._size != (width, height):
            self._masks = {name: zone_mask(polygon, width, height)
                           for name, polygon in self._polygons.items()}
            self._size = (width, height)
        return self._masks

    def measure(self, ids: np.ndarray, labels: Sequence[str]
                ) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
        """(label → share of the picture, zone → label → share of the zone), rounded, largest first."""
        height, width = ids.shape
        whole = rounded(class_shares(ids, labels))
        zones = {name: rounded(shares) for name, shares in zone_shares(ids, self.masks(width, height),
                                                                         labels).items()}
        return whole, zones


def rounded(shares: dict[str, float]) -> dict[str, float]:
    return {label: round(share, DECIMALS) for label, share in shares.items()}


@dataclass(frozen=True)
class Segmented:
    """One frame's segmentation as the publisher needs it: the shares, and the class map for the overlay."""

    areas: dict[str, float]  # label → share of the picture
    zones: dict[str, dict[str, float]]  # zone → label → share of the zone
    ids: np.ndarray  # class map at the picture's size
    labels: Sequence[str]
    inference_ms: float
    backend: str
    model: str
