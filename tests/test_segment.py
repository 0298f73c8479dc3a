"""`edged segment` and its postprocess: DeepLab's map agrees with the ground truth, shares are exact.

Reference (shared/models/zoo/README.md): on bird_segmentation.bmp DeepLab gives
background 78.8 % and bird 21.2 % of the pixels; 97.9 % agree with the mask.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edged.annotate import overlay_segments, voc_palette
from edged.detect.segmentation import class_map, class_shares, to_picture, zone_mask, zone_shares
from edged.detect.segmenter import Segmenter
from edged.detect.settings import ModelSettings
from edged.types import Geometry

DEEPLAB = "deeplabv3_mnv2_pascal_quant"
BIRD = 3  # PASCAL VOC class id


def edged(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "EDGED_DATA_DIR": str(data_dir)}
    return subprocess.run([sys.executable, "-m", "edged", *args], capture_output=True, text=True, env=env,
                          timeout=120)


@pytest.fixture(scope="module")
def bird(zoo_images: Path) -> np.ndarray:
    return np.asarray(Image.open(zoo_images / "bird_segmentation.bmp").convert("RGB"))


def test_deeplab_agrees_with_the_ground_truth_mask(zoo_data_dir, zoo_images, bird):
    truth = np.asarray(Image.open(zoo_images / "bird_segmentation_mask.bmp"))  # palette index = class id
    with Segmenter.open(ModelSettings(model=DEEPLAB, backend="cpu")) as segmenter:
        result = segmenter.segment(bird)
        assert segmenter.labels[BIRD] == "bird"
        assert len(segmenter.labels) == 21  # the note at the end of the labels file is no label
    assert result.ids.shape == truth.shape == bird.shape[:2]
    assert (result.ids == truth).mean() >= 0.97
    assert list(result.areas) == ["background", "bird"]
    assert result.areas["bird"] == pytest.approx(0.212, abs=0.01)


def test_json_areas_are_shares_of_all_pixels(zoo_data_dir, zoo_images, image_mirror):
    pictures = [str(zoo_images / "bird_segmentation.bmp"), str(image_mirror / "pets.jpg")]
    result = edged("segment", "--json", "--backend", "cpu", *pictures, data_dir=zoo_data_dir)
    assert result.returncode == 0, result.stderr
    records = {Path(r["image"]).name: r for r in map(json.loads, result.stdout.splitlines())}
    assert set(records["pets.jpg"]) == {"image", "model", "backend", "inference_ms", "areas"}
    for record in records.values():
        assert record["model"] == DEEPLAB and record["backend"].startswith("cpu:")
        assert sum(record["areas"].values()) == pytest.approx(1.0, abs=1e-9)
        assert list(record["areas"].values()) == sorted(record["areas"].values(), reverse=True)
    assert records["bird_segmentation.bmp"]["areas"]["bird"] == pytest.approx(0.212, abs=0.01)
    assert records["pets.jpg"]["areas"]["dog"] == pytest.approx(0.152, abs=0.01)


def test_annotate_tints_the_bird_and_leaves_the_background(zoo_data_dir, zoo_images, bird, tmp_path):
    out = tmp_path / "overlay.png"
    picture = str(zoo_images / "bird_segmentation.bmp")
    result = edged("segment", "--backend", "cpu", "--annotate", str(out), picture, data_dir=zoo_data_dir)
    assert result.returncode == 0, result.stderr
    assert "bird" in result.stdout
    overlay = np.asarray(Image.open(out).convert("RGB")).astype(int)
    truth = np.asarray(Image.open(zoo_images / "bird_segmentation_mask.bmp"))
    lower = slice(bird.shape[0] // 2, None)  # below the legend in the top-left corner
    background, birds = truth[lower] == 0, truth[lower] == BIRD
    changed = np.abs(overlay[lower] - bird[lower].astype(int)).sum(axis=2) > 0
    assert changed[birds].mean() > 0.9 and changed[background].mean() < 0.05


def test_overlay_uses_the_voc_palette():
    assert voc_palette(4).tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0]]
    picture = np.full((4, 4, 3), 200, dtype=np.uint8)
    ids = np.zeros((4, 4), dtype=np.uint8)
    ids[3, 3] = BIRD
    tinted = np.asarray(overlay_segments(picture, ids, [], opacity=1.0))
    assert tinted[3, 3].tolist() == [128, 128, 0]


def test_class_map_from_ids_or_per_pixel_scores():
    ids = np.array([[[0, 1], [2, 300]]], dtype=np.int64)
    assert class_map(ids).dtype == np.int32 and class_map(ids).tolist() == [[0, 1], [2, 300]]
    scores = np.zeros((1, 2, 2, 3), dtype=np.uint8)
    scores[0, 0, 1, 2] = scores[0, 1, 0, 1] = 9
    assert class_map(scores).dtype == np.uint8 and class_map(scores).tolist() == [[0, 2], [1, 0]]


def test_to_picture_cuts_letterbox_padding_and_never_blends_ids():
    ids = np.zeros((10, 10), dtype=np.uint8)
    ids[:, :5] = 7  # the picture fills the left half; the rest is padding
    assert set(np.unique(to_picture(ids, 4, 8, Geometry(0.5, 1.0)))) == {7}
    ids[:, 2:5] = 9
    resized = to_picture(ids, 30, 7, Geometry(0.5, 1.0))
    assert resized.shape == (7, 30) and set(np.unique(resized)) == {7, 9}


def test_zone_shares_are_exact_on_a_picture_with_known_regions():
    """200x120 picture: left half sky (1), right half road (2), a car (3) at columns 40..79, rows 30..89."""
    ids = np.ones((120, 200), dtype=np.uint8)
    ids[:, 100:] = 2
    ids[30:90, 40:80] = 3
    labels = ["background", "sky", "road", "car"]
    polygons = {
        "left": [(0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0)],
        "car": [(0.2, 0.25), (0.4, 0.25), (0.4, 0.75), (0.2, 0.75)],
        "middle": [(0.25, 0.0), (0.75, 0.0), (0.75, 1.0), (0.25, 1.0)],
        # concave L: the bottom band under the car, plus the strip right of it up to the top
        "ell": [(0.0, 0.75), (0.6, 0.75), (0.6, 0.0), (0.8, 0.0), (0.8, 1.0), (0.0, 1.0)],
        "everything": [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)],
    }
    shares = zone_shares(ids, {name: zone_mask(p, 200, 120) for name, p in polygons.items()}, labels)
    assert shares["left"] == {"sky": (12000 - 2400) / 12000, "car": 2400 / 12000}
    assert shares["car"] == {"car": 1.0}
    assert shares["middle"] == {"road": 6000 / 12000, "sky": (6000 - 1800) / 12000, "car": 1800 / 12000}
    ell_pixels = 30 * 120 + 40 * 120  # bottom band 120 wide x 30 high + strip 40 wide x 120 high
    assert shares["ell"] == {"road": (20 * 30 + 40 * 120) / ell_pixels, "sky": (100 * 30) / ell_pixels}
    assert shares["everything"] == class_shares(ids, labels)
    assert sum(shares["middle"].values()) == pytest.approx(1.0, abs=1e-12)


def test_zone_without_pixels_and_bad_zones():
    ids = np.zeros((10, 10), dtype=np.uint8)
    sliver = zone_mask([(0.0, 0.0), (0.04, 0.0), (0.04, 0.04)], 10, 10)  # smaller than a pixel's centre
    assert zone_shares(ids, {"sliver": sliver}, ["background"]) == {"sliver": {}}
    with pytest.raises(ValueError, match="at least 3"):
        zone_mask([(0.0, 0.0), (1.0, 1.0)], 10, 10)
    with pytest.raises(ValueError, match="does not match"):
        zone_shares(ids, {"wrong": np.ones((5, 5), dtype=bool)}, [])
