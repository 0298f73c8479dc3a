"""Input tensors: raw pixels for uint8 models, shifted for int8, normalized for float; letterbox geometry."""

from __future__ import annotations

import numpy as np
import pytest

from edged.detect.preprocess import InputSpec, prepare


def spec(dtype, scale=0.0, zero_point=0, size=(300, 300)) -> InputSpec:
    return InputSpec.from_detail({"shape": [1, size[1], size[0], 3], "dtype": dtype,
                                  "quantization": (scale, zero_point)})


def test_uint8_model_gets_the_raw_pixels_and_stretch_fills_the_tensor():
    image = np.random.default_rng(1).integers(0, 256, (300, 300, 3), dtype=np.uint8)
    tensor, geometry = prepare(image, spec(np.uint8, 1 / 128, 128))
    assert tensor.dtype == np.uint8 and np.array_equal(tensor, image)
    assert (geometry.content_width, geometry.content_height) == (1.0, 1.0)
    stretched, geometry = prepare(np.zeros((341, 512, 3), np.uint8), spec(np.uint8, 1 / 128, 128))
    assert stretched.shape == (300, 300, 3) and (geometry.content_width, geometry.content_height) == (1.0, 1.0)


def test_int8_and_float_models_get_the_same_pixels_in_their_own_units():
    image = np.array([[[0, 128, 255]]], dtype=np.uint8)
    int8, _ = prepare(image, spec(np.int8, 1 / 128, 0, size=(1, 1)))
    assert int8.dtype == np.int8 and int8.tolist() == [[[-128, 0, 127]]]
    floats, _ = prepare(image, spec(np.float32, size=(1, 1)))
    assert floats.dtype == np.float32
    np.testing.assert_allclose(floats, [[[-1.0, 0.5 / 127.5, 1.0]]])


def test_letterbox_keeps_the_aspect_ratio_and_records_the_content_fraction():
    image = np.full((341, 512, 3), 200, dtype=np.uint8)
    tensor, geometry = prepare(image, spec(np.uint8, 1 / 128, 128), "letterbox")
    assert geometry.content_width == 1.0 and geometry.content_height == pytest.approx(200 / 300)
    assert (tensor[:200] == 200).all() and (tensor[200:] == 0).all()  # picture on top, padding below


def test_not_an_rgb_image_is_refused():
    with pytest.raises(ValueError, match="RGB uint8"):
        prepare(np.zeros((10, 10), np.uint8), spec(np.uint8))
