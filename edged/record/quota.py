"""The dataset's disk quota: what it occupies, what it may occupy, and oldest-first rotation to stay below.

The limit is the smaller of `quota_mb` and `quota_percent` of the space the
filesystem leaves the dataset (its own files plus the free space, re-read
before every write), so a disk that other programs fill makes the dataset
shrink instead of running the SD card full. Sizes count whole filesystem
blocks, like `du`. Room is made before a frame is written, from its encoded
size, so the directory never exceeds the limit, not even for a moment.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from edged.dataset.layout import IMAGE_SUFFIX, remove_frame, sidecars, sweep_orphans


@dataclass(frozen=True)
class StoredFrameFiles:
    image: Path
    sidecar: Path
    size: int  # allocated bytes of both files


class DiskQuota:
    def __init__(self, root: Path, quota_bytes: int, percent: float) -> None:
        self.root = root
        self.quota_bytes = quota_bytes
        self.percent = percent
        self.used = 0  # allocated bytes of every file under root
        self.block = 4096
        self._frames: OrderedDict[str, StoredFrameFiles] = OrderedDict()  # oldest first

    def allocated(self, size: int) -> int:
        return -(-size // self.block) * self.block

    def _on_disk(self, path: Path) -> int:
        info = path.stat()
        return max(self.allocated(info.st_size), info.st_blocks * 512)

    def scan(self) -> int:
        """Index what is already there (oldest first by sidecar time); returns the orphans swept away."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.block = max(512, os.statvfs(self.root).f_frsize)
        swept = len(sweep_orphans(self.root))
        found = []
        for sidecar in sidecars(self.root):
            image = sidecar.with_suffix(IMAGE_SUFFIX)
            if image.exists():
                found.append((sidecar.stat().st_mtime_ns, sidecar, image))
        found.sort()
        self._frames.clear()
        for _, sidecar, image in found:
            size = self._on_disk(image) + self._on_disk(sidecar)
            self._frames[self.key(image)] = StoredFrameFiles(image, sidecar, size)
        self.used = sum(self._on_disk(p) for p in self.root.rglob("*") if p.is_file())
        return swept

    def key(self, image: Path) -> str:
        return f"{image.parent.name}/{image.stem}"

    @property
    def frames(self) -> int:
        return len(self._frames)

    def limit(self) -> int:
        info = os.statvfs(self.root)
        share = self.percent / 100.0 * (self.used + info.f_bavail * info.f_frsize)
        return int(min(self.quota_bytes, share))

    def make_room(self, needed: int) -> list[str] | None:
        """Delete the oldest frames until `needed` more bytes fit: the deleted keys (None: it cannot fit)."""
        limit = self.limit()
        if needed > limit:
            return None
        deleted = []
        while self.used + needed > limit and self._frames:
            key, files = self._frames.popitem(last=False)
            remove_frame(files.image, files.sidecar)
            self.used -= files.size
            deleted.append(key)
        return deleted if self.used + needed <= limit else None

    def added(self, image: Path, sidecar: Path, estimate: int) -> None:
        """A frame was written: count what it really takes (at least the estimate room was made for)."""
        size = max(estimate, self._on_disk(image) + self._on_disk(sidecar))
        self._frames[self.key(image)] = StoredFrameFiles(image, sidecar, size)
        self.used += size

    def remove(self, key: str) -> bool:
        files = self._frames.pop(key, None)
        if files is None:
            return False
        remove_frame(files.image, files.sidecar)
        self.used -= files.size
        return True
