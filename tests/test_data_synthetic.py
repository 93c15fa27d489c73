"""The synthetic benchmark, version 1 ('shapes'): deterministic, well-formed labels, structure that matters.

The layout, labels and ignore band are shared with version 2, tested in test_data_synthetic_benchmarks.py."""

from __future__ import annotations

import numpy as np
import pytest

from data_utils.folds import SYNTHETIC_CLASSES
from data_utils.synthetic import SHAPES, SyntheticSource, make_layout


@pytest.fixture(scope="module")
def source() -> SyntheticSource:
    return SyntheticSource(image_size=64, images_per_class={"train": 3, "test": 2}, cache_size=0, benchmark="shapes")


def test_same_id_gives_identical_pixels_in_any_order_and_any_instance(source):
    ids = ["train-00007", "test-00011", "train-00000"]
    first = [source.load(i) for i in ids]
    other = SyntheticSource(image_size=64, images_per_class={"train": 3, "test": 2}, benchmark="shapes")
    for image_id, (img, lab) in zip(reversed(ids), reversed(first)):
        img2, lab2 = other.load(image_id)
        assert np.array_equal(img, img2) and np.array_equal(lab, lab2)


def test_seed_and_split_change_the_images(source):
    a_img, _ = source.load("train-00001")
    b_img, _ = SyntheticSource(image_size=64, seed=1, images_per_class=3, benchmark="shapes").load("train-00001")
    c_img, _ = source.load("test-00001")
    assert not np.array_equal(a_img, b_img)
    assert not np.array_equal(a_img, c_img)


def test_train_and_test_pools_are_disjoint_images(source):
    train = {source.load(i)[0].tobytes() for i in source.image_ids("train")}
    test = {source.load(i)[0].tobytes() for i in source.image_ids("test")}
    assert len(train) == 60 and len(test) == 40 and train.isdisjoint(test)


@pytest.mark.parametrize("size", [64, 160])
def test_image_and_label_format_and_ignore_band(size):
    src = SyntheticSource(image_size=size, images_per_class=1, benchmark="shapes")
    img, lab = src.load("train-00004")
    assert img.shape == (size, size, 3) and img.dtype == np.uint8
    assert lab.shape == (size, size) and lab.dtype == np.uint8
    values = set(np.unique(lab).tolist())
    assert values <= set(range(21)) | {255}
    assert 255 in values and 0 in values and 5 in values  # primary class of image 4 is class 5
    # the ignore band separates classes: no pixel of one class touches a pixel of another class horizontally
    left, right = lab[:, :-1].astype(int), lab[:, 1:].astype(int)
    touching = (left != right) & (left != 255) & (right != 255)
    assert not touching.any()


def test_every_image_has_its_primary_class_plus_distractors():
    src = SyntheticSource(image_size=96, images_per_class=2, benchmark="shapes")
    for j in range(40):
        layout = src.layout(f"train-{j:05d}")
        classes = [o.class_id for o in layout.objects]
        assert layout.primary_class == j % 20 + 1
        assert 1 <= classes.count(layout.primary_class) <= 2
        assert 1 <= sum(c != layout.primary_class for c in classes) <= 3


def test_textures_and_colours_are_not_tied_to_class():
    # over many objects, every class uses several texture kinds: colour/texture cannot identify a class
    kinds: dict[int, set[str]] = {}
    for j in range(200):
        for obj in make_layout(0, "train", j, 160, benchmark="shapes").objects:
            kinds.setdefault(obj.class_id, set()).add(obj.texture.kind)
    assert all(len(k) >= 4 for k in kinds.values())


def test_holed_and_solid_twins_differ_only_inside():
    # the holes/slots are real: the holed shape is a strict subset of its solid twin
    u, v = np.meshgrid(np.linspace(-1, 1, 101), np.linspace(-1, 1, 101))
    for holed, solid in [("ring", "disk"), ("square frame", "solid square"), ("cross with hole", "cross"),
                         ("triangle with hole", "triangle"), ("ring with slot", "ring"),
                         ("frame with gap", "square frame")]:
        h, s = SHAPES[holed](u, v), SHAPES[solid](u, v)
        assert not (h & ~s).any(), holed
        assert (s & ~h).sum() > 0.05 * s.sum(), holed
    assert list(SHAPES) == list(SYNTHETIC_CLASSES)


def test_class_index_applies_the_scaled_pixel_rule(source):
    assert source.min_pixels == round(2048 * (64 / 473) ** 2)
    index = source.class_index("train")
    assert set(index) == set(range(1, 21))
    for class_id, ids in list(index.items())[:5]:
        for image_id in ids:
            assert (source.load_label(image_id) == class_id).sum() >= source.min_pixels
    # an image absent from a class's list has fewer pixels of it than the threshold
    missing = [i for i in source.image_ids("train") if i not in index[1]]
    assert all((source.load_label(i) == 1).sum() < source.min_pixels for i in missing)


def test_bad_ids_and_sizes_are_clear_errors(source):
    with pytest.raises(ValueError, match="unknown synthetic image id"):
        source.load("val-00001")
    with pytest.raises(ValueError, match="unknown synthetic image id"):
        source.load("train-99999")
    with pytest.raises(ValueError, match="image_size"):
        SyntheticSource(image_size=8, benchmark="shapes")


def centroid_accuracy(benchmark: str, split: str, images: int) -> float:
    """Nearest-centroid classification of objects by their mean colour: fit on ``images`` images, test on the next."""

    def objects(first: int):
        return [(o.class_id, (np.array(o.texture.color_a) + np.array(o.texture.color_b)) / 2)
                for j in range(first, first + images)
                for o in make_layout(0, split, j, 160, benchmark=benchmark).objects if o.class_id <= 20]

    fit, held_out = objects(0), objects(images)
    centroids = np.stack([np.mean([c for k, c in fit if k == cls], axis=0) for cls in range(1, 21)])
    assert len(held_out) > 2 * images
    return float(np.mean([int(np.argmin(np.linalg.norm(centroids - colour, axis=1))) + 1 == cls
                          for cls, colour in held_out]))


def test_mean_colour_of_an_object_does_not_tell_its_class():
    """v1: a nearest-centroid classifier on objects' mean colours is near chance (1/20): colour is no shortcut.
    v2: each of its 7 hues is shared by up to 3 named classes (only hue and texture together name one), so the same
    classifier is right for about a third of the objects (60 % if every class had a hue of its own)."""
    assert centroid_accuracy("shapes", "train", 600) < 0.12
    assert centroid_accuracy("categories", "test", 400) < 0.45


@pytest.mark.parametrize("benchmark", ["shapes", "categories"])
def test_size_does_not_give_the_target_away(benchmark: str):
    """Over the episode pool, "segment the biggest object" (blind to the support) must score poorly, so a model can
    only find the target through the support. (Small distractors with a primary-class-only pool scored 0.99; one
    shared scale over all qualifying pairs scores 0.34 at 160 px.)"""
    src = SyntheticSource(image_size=64, images_per_class={"train": 1, "test": 10}, cache_size=0, benchmark=benchmark)
    scores = []
    for class_id, image_ids in src.class_index("test").items():
        for image_id in image_ids:
            label = src.load_label(image_id)
            valid = label != 255
            areas = np.bincount(label[valid].ravel(), minlength=21)[1:21]
            biggest = int(np.argmax(areas)) + 1
            target, guess = (label == class_id) & valid, (label == biggest) & valid
            scores.append((target & guess).sum() / (target | guess).sum())
    assert len(scores) > 250
    assert 0.2 < np.mean(scores) < 0.5
