"""Zone geometry: is a box's anchor point inside a polygon, and is a polygon simple (no crossing edges).

Pure Python on a handful of corners: a zone test per tracked object and frame
costs a few microseconds, far less than importing a geometry library would.
Coordinates are normalized to the picture (0..1), like detection boxes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from edged.types import Box

if TYPE_CHECKING:
    from edged.track.settings import ZoneSettings

Point = tuple[float, float]


def _orientation(a: Point, b: Point, c: Point) -> float:
    return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])


def _on_segment(a: Point, b: Point, p: Point) -> bool:
    return min(a[0], b[0]) <= p[0] <= max(a[0], b[0]) and min(a[1], b[1]) <= p[1] <= max(a[1], b[1])


def segments_intersect(a: Point, b: Point, c: Point, d: Point) -> bool:
    """Closed segments ab and cd share a point (touching or collinear overlap included)."""
    o1, o2 = _orientation(a, b, c), _orientation(a, b, d)
    o3, o4 = _orientation(c, d, a), _orientation(c, d, b)
    if ((o1 > 0) != (o2 > 0) and o1 != 0 and o2 != 0) and ((o3 > 0) != (o4 > 0) and o3 != 0 and o4 != 0):
        return True
    return ((o1 == 0 and _on_segment(a, b, c)) or (o2 == 0 and _on_segment(a, b, d))
            or (o3 == 0 and _on_segment(c, d, a)) or (o4 == 0 and _on_segment(c, d, b)))


def crossing_edges(polygon: Sequence[Point]) -> tuple[int, int] | None:
    """The first pair of edges (indices) that touch although they are not neighbours; None: a simple polygon.

    Edge i runs from corner i to corner i+1 (the last one back to corner 0).
    A repeated corner or a zero-area polygon counts as crossing too.
    """
    n = len(polygon)
    if n < 3:
        return None
    edges = [(polygon[i], polygon[(i + 1) % n]) for i in range(n)]
    for i in range(n):
        if edges[i][0] == edges[i][1]:
            return (i, (i + 1) % n)
        for j in range(i + 1, n):
            if j == i + 1 or (i == 0 and j == n - 1):
                continue  # neighbours share a corner by construction
            if segments_intersect(*edges[i], *edges[j]):
                return (i, j)
    if all(abs(_orientation(polygon[0], polygon[1], corner)) < 1e-12 for corner in polygon[2:]):
        return (0, n - 1)  # no area: every corner on one line
    return None


def inside(polygon: Sequence[Point], point: Point) -> bool:
    """Even-odd ray casting; a point exactly on the boundary may land either way."""
    x, y = point
    result = False
    j = len(polygon) - 1
    for i in range(len(polygon)):
        xi, yi = polygon[i]
        xj, yj = polygon[j]
        if (yi > y) != (yj > y) and x < (xj - xi) * (y - yi) / (yj - yi) + xi:
            result = not result
        j = i
    return result


def anchor(box: Box, where: str) -> Point:
    x = (box.xmin + box.xmax) / 2
    if where == "center":
        return (x, (box.ymin + box.ymax) / 2)
    if where == "top_center":
        return (x, box.ymin)
    return (x, box.ymax)


class Zone:
    """One configured zone: its polygon and the filters an object must pass to count in it."""

    def __init__(self, settings: ZoneSettings) -> None:
        self.name = settings.name
        self.settings = settings
        self.polygon = [tuple(corner) for corner in settings.polygon]
        xs = [corner[0] for corner in self.polygon]
        ys = [corner[1] for corner in self.polygon]
        self._bounds = (min(xs), min(ys), max(xs), max(ys))
        self._labels = frozenset(settings.labels)

    def contains(self, label: str, best_score: float, box: Box) -> bool:
        settings = self.settings
        if self._labels and label not in self._labels:
            return False
        if best_score < settings.min_score or box.area < settings.min_area:
            return False
        x, y = anchor(box, settings.point)
        x0, y0, x1, y1 = self._bounds
        return x0 <= x <= x1 and y0 <= y <= y1 and inside(self.polygon, (x, y))
