"""Bad input gets a clear error (or a documented conversion), on real files written in tmp_path."""

from __future__ import annotations

import numpy as np
import pytest
import PIL.Image
from data_fixtures import save_palette_png, write_pascal_fixture, write_png_16bit_rgb
from PIL import Image

from data_utils.episodes import EpisodeDataset
from data_utils.pascal import PascalSource, derive_pascal_lists
from data_utils.validation import DataError, check_pair, read_label, read_rgb_image

VOC = "VOCdevkit/VOC2012"


def _jpeg(path, h=32, w=40, mode="RGB"):
    rng = np.random.default_rng(0)
    shape = (h, w, 3) if mode == "RGB" else (h, w)
    Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8)).save(path)
    return path


def test_truncated_jpeg_is_reported_as_truncated(tmp_path):
    path = _jpeg(tmp_path / "a.jpg", 64, 64)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="truncated or corrupt"):
        read_rgb_image(path)


def test_non_image_file_is_reported(tmp_path):
    path = tmp_path / "b.jpg"
    path.write_bytes(b"this is not a jpeg at all")
    with pytest.raises(DataError, match="not a readable image"):
        read_rgb_image(path)


def test_grayscale_is_replicated_to_rgb(tmp_path):
    grey = np.arange(32 * 40, dtype=np.uint32).reshape(32, 40) % 251
    path = tmp_path / "g.png"
    Image.fromarray(grey.astype(np.uint8)).save(path)
    rgb = read_rgb_image(path)
    assert rgb.shape == (32, 40, 3) and rgb.dtype == np.uint8
    assert all(np.array_equal(rgb[..., c], grey) for c in range(3))


def test_rgba_drops_alpha_and_keeps_colour(tmp_path):
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = 200, 100, 50, 0  # fully transparent
    path = tmp_path / "t.png"
    Image.fromarray(rgba).save(path)
    rgb = read_rgb_image(path)
    assert rgb.shape == (8, 8, 3) and (rgb == [200, 100, 50]).all()


def test_16_bit_image_and_mask_are_rejected(tmp_path):
    path = tmp_path / "deep.png"
    Image.fromarray(np.full((8, 8), 40000, np.uint16)).save(path)
    assert Image.open(path).mode.startswith("I")
    with pytest.raises(DataError, match="16-bit"):
        read_rgb_image(path)
    with pytest.raises(DataError, match="16-bit"):
        read_label(path, 20)


def test_16_bit_colour_png_is_rejected_although_pillow_calls_it_rgb(tmp_path):
    """Pillow opens a 16-bit-per-channel RGB PNG as mode "RGB" and keeps only the high byte of each sample."""
    pixels = np.zeros((6, 5, 3), np.uint16)
    pixels[..., 0], pixels[..., 1], pixels[..., 2] = 0x1234, 0xABCD, 0x00FF
    path = write_png_16bit_rgb(tmp_path / "deep_rgb.png", pixels)
    with Image.open(path) as img:
        img.load()
        assert img.mode == "RGB" and img.getpixel((0, 0)) == (0x12, 0xAB, 0x00)  # silently reduced to 8 bits
    with pytest.raises(DataError, match="16-bit PNG"):
        read_rgb_image(path)
    Image.fromarray((pixels >> 8).astype(np.uint8)).save(tmp_path / "ok.png")  # the 8-bit one still reads
    assert read_rgb_image(tmp_path / "ok.png")[0, 0].tolist() == [0x12, 0xAB, 0x00]


@pytest.mark.parametrize("limit", [300, 1000], ids=["error (over twice the limit)", "warning (over the limit)"])
def test_decompression_bomb_is_a_data_error(tmp_path, monkeypatch, limit):
    path = _jpeg(tmp_path / "big.png", 32, 40)  # 1,280 pixels
    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", limit)
    with pytest.raises(DataError, match=f"decompression-bomb limit PIL.Image.MAX_IMAGE_PIXELS = {limit}"):
        read_rgb_image(path)
    with pytest.raises(DataError, match="decompression-bomb"):
        read_label(path, 20)


def test_colour_coded_mask_is_rejected(tmp_path):
    path = tmp_path / "rgb_mask.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(path)
    with pytest.raises(DataError, match="Colour-coded"):
        read_label(path, 20)


def test_mask_values_outside_the_class_range_are_rejected(tmp_path):
    label = np.zeros((8, 8), np.uint8)
    label[0, 0], label[1, 1], label[2, 2] = 21, 255, 20
    path = tmp_path / "m.png"
    save_palette_png(label, path)
    with pytest.raises(DataError, match=r"values \[21\] outside the class range 0..20"):
        read_label(path, 20)
    label[0, 0] = 3
    save_palette_png(label, path)
    assert read_label(path, 20)[2, 2] == 20


def test_image_and_mask_size_mismatch_is_rejected(tmp_path):
    write_pascal_fixture(tmp_path)
    derive_pascal_lists(tmp_path)
    save_palette_png(np.zeros((10, 10), np.uint8), tmp_path / VOC / "SegmentationClassAug" / "2007_000001.png")
    with pytest.raises(DataError, match="differs from label size"):
        PascalSource(root=tmp_path).load("2007_000001")
    with pytest.raises(DataError, match="differs"):
        check_pair(np.zeros((4, 5, 3), np.uint8), np.zeros((5, 4), np.uint8))


def test_corrupt_dataset_file_surfaces_when_loading_an_episode(tmp_path):
    write_pascal_fixture(tmp_path)
    derive_pascal_lists(tmp_path)
    source = PascalSource(root=tmp_path)
    source.class_index("test")
    jpg = tmp_path / VOC / "JPEGImages" / "2007_000003.jpg"
    jpg.write_bytes(jpg.read_bytes()[:200])
    ds = EpisodeDataset(source, fold=0, split="test", shots=1, episodes=12, classes=[1])
    with pytest.raises(DataError, match="2007_000003.jpg is truncated or corrupt"):
        for i in range(len(ds)):
            ds[i]


def test_unknown_class_id(tmp_path):
    write_pascal_fixture(tmp_path)
    derive_pascal_lists(tmp_path)
    with pytest.raises(ValueError, match="unknown class"):
        PascalSource(root=tmp_path).class_name(21)
