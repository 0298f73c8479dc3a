"""The tracking stage on scripted detections: ids, labels, dips, occlusions, zones, stationary, events.

Pure logic with the real classes: each scene is a list of per-frame detections
at known capture times, and the assertions are what a subscriber would see
(event types and order, ids, zones entered, counts).
"""

from __future__ import annotations

import pytest

from edged.config import parse_config
from edged.errors import ConfigError
from edged.track.events import CameraTracker, Event, shot_quality
from edged.track.settings import TrackingSettings, ZoneSettings
from edged.track.tracker import Tracker
from edged.track.zones import crossing_edges, inside
from edged.types import Box, Detection

FPS = 5.0


def person(x: float, y: float = 0.5, score: float = 0.8, label: str = "person", w: float = 0.1,
           h: float = 0.3) -> Detection:
    return Detection(label, 0, score, Box(x - w / 2, y - h / 2, x + w / 2, y + h / 2))


def run(tracker: CameraTracker, frames: list[list[Detection]], fps: float = FPS, start: float = 0.0
        ) -> list[Event]:
    events = []
    for index, detections in enumerate(frames):
        t = start + index / fps
        events += tracker.update(t, 1_700_000_000 + t, detections).events
    return events


def walk(x0: float, x1: float, frames: int, **kwargs) -> list[Detection]:
    return [person(x0 + (x1 - x0) * i / (frames - 1), **kwargs) for i in range(frames)]


def ids_per_frame(tracker: Tracker, frames: list[list[Detection]], fps: float = FPS) -> list[list[int]]:
    seen = []
    for index, detections in enumerate(frames):
        tracker.update(index / fps, detections)
        seen.append(sorted(t.id for t in tracker.tracks if t.confirmed and t.matched))
    return seen


def test_two_people_crossing_keep_their_ids():
    left = walk(0.1, 0.9, 30)
    right = walk(0.9, 0.1, 30, y=0.55)
    seen = ids_per_frame(Tracker(TrackingSettings()), [[a, b] for a, b in zip(left, right)])
    assert seen[-1] == [1, 2] and all(ids == [1, 2] for ids in seen[2:])
    tracker = Tracker(TrackingSettings())
    ids_per_frame(tracker, [[a, b] for a, b in zip(left[:5], right[:5])])
    started_left = {t.id for t in tracker.tracks if t.box.xmin < 0.5}
    ids_per_frame(tracker, [[a, b] for a, b in zip(left[5:], right[5:])])
    ended_right = {t.id for t in tracker.tracks if t.box.xmin > 0.5}
    assert len(started_left) == 1 and started_left == ended_right  # each id followed its own person across


def test_a_cat_never_continues_a_persons_track():
    frames = [[person(0.5)]] * 5 + [[person(0.5, label="cat")]] * 5
    tracker = CameraTracker(TrackingSettings(lost_seconds=10))
    events = run(tracker, frames)
    news = [e for e in events if e.type == "new"]
    assert [(e.label, e.track_id) for e in news] == [("person", 1), ("cat", 2)]


def test_a_one_frame_false_positive_never_becomes_an_event():
    frames = [[person(0.2)], [], [], [person(0.7, score=0.9)], [], [], []]
    assert run(CameraTracker(TrackingSettings(min_hits=2)), frames) == []


def test_a_score_dip_and_an_occlusion_keep_the_same_id():
    xs = walk(0.1, 0.9, 40)
    frames = [[d] for d in xs[:10]]
    frames += [[person(d.box.xmin + 0.05, score=0.35)] for d in xs[10:15]]  # dip below high_score
    frames += [[] for _ in xs[15:20]]  # occluded for a second
    frames += [[d] for d in xs[20:]]
    events = run(CameraTracker(TrackingSettings()), frames)
    assert [e.type for e in events] == ["new"]
    assert events[0].track_id == 1


def test_timing_comes_from_capture_times_paced_stalled_or_replayed():
    settings = TrackingSettings(lost_seconds=2.0)
    for fps in (2.0, 5.0, 25.0):
        seen = ids_per_frame(Tracker(settings), [[d] for d in walk(0.1, 0.9, int(4 * fps))], fps=fps)
        assert {i for ids in seen for i in ids} == {1}, fps
    tracker = CameraTracker(settings)
    events = run(tracker, [[person(0.5)]] * 5)
    events += tracker.update(1.5 + 1.9, 1_700_000_003.4, [person(0.5)]).events  # stalled 1.9 s: same object
    events += tracker.update(3.4 + 2.5, 1_700_000_005.9, []).events  # stalled 2.5 s: gone
    assert [(e.type, e.reason) for e in events] == [("new", None), ("end", "lost")]


def test_live_tracks_are_capped():
    crowd = [[person(0.05 + 0.09 * i, y=0.2 + 0.05 * (i % 3), w=0.05, h=0.1) for i in range(10)]] * 4
    tracker = CameraTracker(TrackingSettings(max_tracks=4))
    run(tracker, crowd)
    assert len(tracker.tracker.tracks) == 4 and len(tracker.objects()) == 4


LEFT = ZoneSettings(name="path", polygon=[(0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0)])
RIGHT = ZoneSettings(name="door", polygon=[(0.6, 0.0), (1.0, 0.0), (1.0, 1.0), (0.6, 1.0)], labels=["person"])


def test_zones_are_entered_and_left_in_order_and_counted():
    tracker = CameraTracker(TrackingSettings(update_interval_seconds=0.0, lost_seconds=1.0), [LEFT, RIGHT])
    counts = []
    events = []
    for index, d in enumerate(walk(0.1, 0.9, 25) + [None] * 8):
        update = tracker.update(index / FPS, index / FPS, [d] if d else [])
        events += update.events
        counts.append((update.zone_counts["path"]["person"], update.zone_counts["door"]["person"]))
    assert [(e.type, e.zones, e.changed) for e in events] == [
        ("new", ("path",), ()),
        ("update", (), ("zones",)),
        ("update", ("door",), ("zones",)),
        ("end", ("door",), ()),
    ]
    assert events[-1].entered_zones == ("path", "door") and events[-1].reason == "lost"
    assert (1, 0) in counts and (0, 1) in counts and counts[-1] == (0, 0)


def test_zone_filters_and_anchor_point():
    tall = person(0.3, y=0.45, h=0.5)  # bottom centre at y 0.7, centre at 0.45
    lower = ZoneSettings(name="lawn", polygon=[(0, 0.6), (1, 0.6), (1, 1), (0, 1)])
    by_centre = ZoneSettings(name="lawn_centre", polygon=[(0, 0.6), (1, 0.6), (1, 1), (0, 1)], point="center")
    cats_only = ZoneSettings(name="cats", polygon=[(0, 0), (1, 0), (1, 1), (0, 1)], labels=["cat"])
    big_only = ZoneSettings(name="big", polygon=[(0, 0), (1, 0), (1, 1), (0, 1)], min_area=0.1)
    sure_only = ZoneSettings(name="sure", polygon=[(0, 0), (1, 0), (1, 1), (0, 1)], min_score=0.9)
    tracker = CameraTracker(TrackingSettings(), [lower, by_centre, cats_only, big_only, sure_only])
    events = run(tracker, [[tall]] * 3)
    assert events[0].zones == ("lawn",)


def test_a_still_object_becomes_stationary_once_without_an_update_storm():
    settings = TrackingSettings(stationary_seconds=2.0, update_interval_seconds=0.0)
    tracker = CameraTracker(settings, [LEFT])
    jitter = [0.0, 0.004, -0.003, 0.002, -0.004]
    frames = [[person(0.3 + jitter[i % 5], score=0.6 + 0.01 * (i % 7))] for i in range(60)]  # 12 s parked
    events = run(tracker, frames)
    assert [(e.type, e.changed, e.stationary) for e in events] == [
        ("new", (), False), ("update", ("stationary",), True)]
    moving = run(tracker, [[d] for d in walk(0.3, 0.45, 5)], start=12.0)
    assert [(e.type, "stationary" in e.changed, e.stationary) for e in moving] == [("update", True, False)]


def test_updates_are_rate_limited_and_combined():
    tracker = CameraTracker(TrackingSettings(update_interval_seconds=5.0), [LEFT, RIGHT])
    events = run(tracker, [[d] for d in walk(0.1, 0.9, 20)] + [[person(0.9)]] * 15)
    updates = [e for e in events if e.type == "update"]
    assert len(updates) == 1 and updates[0].zones == ("door",) and "zones" in updates[0].changed


def test_best_score_updates_need_the_margin():
    tracker = CameraTracker(TrackingSettings(update_interval_seconds=0.0, best_score_margin=0.1))
    scores = [0.6, 0.6, 0.6, 0.65, 0.68, 0.75, 0.76, 0.9]
    events = run(tracker, [[person(0.5, score=s)] for s in scores])
    assert [(e.type, e.best_score) for e in events] == [("new", 0.6), ("update", 0.75), ("update", 0.9)]


def test_best_shot_prefers_big_confident_boxes_away_from_the_edge():
    tracker = CameraTracker(TrackingSettings(min_hits=1))
    shots = []
    frames = [person(0.5, w=0.1, score=0.6), person(0.5, w=0.2, score=0.7), person(0.5, w=0.2, score=0.65)]
    for index, detection in enumerate(frames):
        shots += [(index, s.track_id) for s in tracker.update(index, index, [detection]).best_shots]
    assert shots == [(0, 1), (1, 1)]
    whole = person(0.5, w=0.2, score=0.6).box
    cut_off = person(0.5, y=0.7, w=0.3, h=0.6, score=0.95).box  # bigger and surer, but cut by the edge
    assert shot_quality(0.6, whole) > shot_quality(0.95, cut_off)


def test_close_ends_every_open_event_with_the_reason_and_ids_are_unique_across_restarts():
    ids = set()
    for _ in range(3):  # three runs of the daemon
        tracker = CameraTracker(TrackingSettings())
        news = [e for e in run(tracker, [[person(0.2), person(0.7, label="dog")]] * 4) if e.type == "new"]
        ends = tracker.close("stopped")
        assert {e.id for e in ends} == {e.id for e in news} and {e.reason for e in ends} == {"stopped"}
        ids |= {e.id for e in news}
        assert tracker.close("stopped") == []
    assert len(ids) == 6


def test_polygon_geometry():
    square = [(0.1, 0.1), (0.9, 0.1), (0.9, 0.9), (0.1, 0.9)]
    assert crossing_edges(square) is None
    assert crossing_edges([(0.1, 0.1), (0.9, 0.9), (0.9, 0.1), (0.1, 0.9)]) == (0, 2)  # a bow tie
    assert crossing_edges([(0.1, 0.1), (0.5, 0.5), (0.9, 0.9)]) is not None  # flat
    assert inside(square, (0.5, 0.5)) and not inside(square, (0.95, 0.5))
    concave = [(0, 0), (1, 0), (1, 1), (0.5, 0.3), (0, 1)]
    assert inside(concave, (0.2, 0.4)) and not inside(concave, (0.5, 0.6))


ZONE = '[[cameras]]\nname = "front"\n[[cameras.zones]]\nname = "{name}"\npolygon = {polygon}\n'


@pytest.mark.parametrize("text, message", [
    (ZONE.format(name="drive", polygon="[[0, 0], [1, 0]]"),
     "edged.toml: cameras[0].zones[0].polygon: Expected `array` of length >= 3"),
    (ZONE.format(name="drive", polygon="[[0, 0], [1, 1], [1, 0], [0, 1]]"),
     "edged.toml: cameras[0].zones[0]: polygon of zone `drive` crosses itself (edge 1 crosses edge 3"),
    (ZONE.format(name="drive", polygon="[[0, 0], [1.2, 0], [1, 1]]"),
     "edged.toml: cameras[0].zones[0].polygon[1][0]: Expected `float` <= 1.0"),
    (ZONE.format(name="a/b", polygon="[[0, 0], [1, 0], [1, 1]]"),
     "edged.toml: cameras[0].zones[0].name: Expected `str` matching regex"),
    (ZONE.format(name="a", polygon="[[0, 0], [1, 0], [1, 1]]") + '[[cameras.zones]]\nname = "a"\n'
     'polygon = [[0, 0], [1, 0], [1, 1]]\n', "edged.toml: cameras[0].zones: zone name `a` is used twice"),
    ('[tracking]\nlow_score = 0.6\n', "edged.toml: tracking: low_score must not be above high_score"),
    ('[[cameras]]\ntracking = { min_hits = "two" }\n',
     "edged.toml: cameras[0].tracking.min_hits: Expected `int`, got `str`"),
    ('[[cameras]]\ntracking = { lost = 3 }\n', "edged.toml: cameras[0].tracking: unknown key `lost`"),
])
def test_bad_tracking_config_names_the_key_path(text: str, message: str):
    with pytest.raises(ConfigError) as error:
        parse_config(text, "edged.toml")
    assert str(error.value).startswith(message), str(error.value)
    assert "\n" not in str(error.value)


def test_camera_overrides_apply_on_top_of_the_tracking_table():
    config = parse_config('[tracking]\nlost_seconds = 4.0\n[[cameras]]\nname = "a"\n'
                          'tracking = { min_hits = 5 }\n[[cameras]]\nname = "b"\n')
    assert (config.tracking_for("a").lost_seconds, config.tracking_for("a").min_hits) == (4.0, 5)
    assert config.tracking_for("b") == config.tracking
