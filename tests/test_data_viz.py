"""Episode and gallery pictures are drawn, saved as PNG and return nothing."""

from __future__ import annotations

import matplotlib
import numpy as np
from PIL import Image

from data_utils.datasets import episodes_for_dataset
from data_utils.synthetic import SyntheticSource
from data_utils.transforms import IMAGENET_NORMALIZATION
from dpcn_lite.viz import display_image
from dpcn_lite.viz.episodes import dim_outside, show_class_gallery, show_episode

matplotlib.use("Agg")


def test_show_episode_and_gallery_write_pngs(tmp_path):
    source = SyntheticSource(image_size=64, images_per_class={"train": 6, "test": 4})
    episode = episodes_for_dataset("synthetic", fold=1, split="test", shots=2, image_size=64, episodes=2, source=source)[0]
    assert show_episode(episode, class_names=source.classes, path=tmp_path / "ep.png") is None
    assert show_class_gallery(source, path=tmp_path / "gallery.png") is None
    for name in ("ep.png", "gallery.png"):
        with Image.open(tmp_path / name) as img:
            assert img.format == "PNG" and img.size[0] > 200


def test_display_helpers_undo_normalisation_and_dim_background():
    source = SyntheticSource(image_size=64, images_per_class={"train": 6, "test": 4})
    episode = episodes_for_dataset("synthetic", fold=0, split="test", shots=1, image_size=64, episodes=1,
                                   source=source)[0]
    shown = display_image(episode["query_image"], IMAGENET_NORMALIZATION.mean, IMAGENET_NORMALIZATION.std)
    original, _ = source.load(episode["query_id"])
    assert shown.shape == (64, 64, 3) and np.allclose(shown, original / 255.0, atol=1e-5)
    assert np.allclose(display_image(original), original / 255.0)  # a uint8 picture is only rescaled
    image = np.ones((4, 4, 3), np.float32)
    mask = np.zeros((4, 4), np.uint8)
    mask[0, 0] = 1
    dimmed = dim_outside(image, mask, factor=0.5)
    assert dimmed[0, 0].tolist() == [1, 1, 1] and dimmed[1, 1].tolist() == [0.5, 0.5, 0.5]
