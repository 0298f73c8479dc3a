"""First and best frame per tracked object: which stored frames a better one makes redundant.

A frame kept only because it was the best so far of some tracks is dropped
once each of those tracks has a better frame; the first frame of a track, or a
frame another policy kept, stays. Pointers to the best frames are bounded:
beyond REMEMBERED_TRACKS the oldest tracks are forgotten and keep their files.
"""

from __future__ import annotations

from collections import OrderedDict

from edged.record.policy import Decision

REMEMBERED_TRACKS = 4096


class BestFrames:
    def __init__(self, limit: int = REMEMBERED_TRACKS) -> None:
        self._limit = limit
        self._best: OrderedDict[tuple[str, str], str] = OrderedDict()  # (camera, track) → frame key
        self._replaceable: dict[str, set[str]] = {}  # frame key → tracks it is (only) the best frame of

    def saved(self, camera: str, key: str, decision: Decision) -> list[str]:
        """Note a stored frame; returns the keys of frames it made redundant (to delete)."""
        if decision.reasons == ("new_object",) and not decision.first_of and decision.best_of:
            self._replaceable[key] = set(decision.best_of)
        redundant = []
        for track in decision.best_of:
            previous = self._best.pop((camera, track), None)
            self._best[(camera, track)] = key
            if previous is not None and self._release(previous, track):
                redundant.append(previous)
        while len(self._best) > self._limit:
            (_, track), old = self._best.popitem(last=False)
            self._release(old, track)  # forgotten, not redundant: the file stays
        return redundant

    def forget(self, key: str) -> None:
        """The frame is gone (rotated away)."""
        self._replaceable.pop(key, None)

    def _release(self, key: str, track: str) -> bool:
        """`key` is no longer `track`'s best; True when nothing else holds it."""
        holders = self._replaceable.get(key)
        if holders is None:
            return False
        holders.discard(track)
        if holders:
            return False
        del self._replaceable[key]
        return True
