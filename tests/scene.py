"""A small test scene built from the sample photos: a person crossing two zones, a cat sitting still, a gap.

Crops of squat.bmp (person) and cat.bmp (cat) are pasted on a plain
background, one JPEG per frame, so `edged run --source DIR` plays it as a
camera at the configured fps. Boxes are those the model finds in the full
photos (shared/images/expected_detections.json), cut with a margin.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image

WIDTH, HEIGHT = 480, 300
PERSON_CROP = (0.17, 0.17, 0.78, 1.0)  # xmin ymin xmax ymax of squat.bmp's person, with a margin
CAT_CROP = (0.05, 0.09, 0.75, 1.0)  # cat.bmp's cat


@dataclass(frozen=True)
class Scene:
    directory: Path
    frames: int
    walk_frames: int  # frames with the person (and the cat); then an empty gap
    fps: float


def _crop(path: Path, box: tuple[float, float, float, float], height: int) -> Image.Image:
    image = Image.open(path).convert("RGB")
    w, h = image.size
    crop = image.crop((round(box[0] * w), round(box[1] * h), round(box[2] * w), round(box[3] * h)))
    return crop.resize((round(crop.width * height / crop.height), height), Image.BILINEAR)


def build(directory: Path, images: Path, *, walk_frames: int = 20, gap_frames: int = 12, fps: float = 5.0
          ) -> Scene:
    """Frames 1..walk_frames: the person walks from the left edge to the right one along the bottom, the cat
    sits at the top right; then `gap_frames` empty frames."""
    directory.mkdir(parents=True, exist_ok=True)
    person = _crop(images / "squat.bmp", PERSON_CROP, 150)
    cat = _crop(images / "cat.bmp", CAT_CROP, 120)
    background = Image.new("RGB", (WIDTH, HEIGHT), (118, 122, 116))
    for index in range(walk_frames + gap_frames):
        frame = background.copy()
        if index < walk_frames:
            frame.paste(cat, (WIDTH - cat.width - 20, 10))
            x = round(10 + (WIDTH - person.width - 20) * index / (walk_frames - 1))
            frame.paste(person, (x, HEIGHT - person.height - 5))
        frame.save(directory / f"{index + 1:04d}.jpg", quality=92)
    return Scene(directory, walk_frames + gap_frames, walk_frames, fps)
