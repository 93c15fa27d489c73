"""Benchmark v2 ('categories'): deterministic, folds kept apart, generated classes unlike the named ones, class
appearance, hole pixels from the generator's geometry. (Tests shared with version 1, such as the support-blind
"biggest object" rule, are parametrised over both in test_data_synthetic.py.)"""

from __future__ import annotations

import colorsys
import dataclasses

import numpy as np
import pytest

from data_utils.folds import SYNTHETIC_CLASSES
from data_utils.synthetic import (BENCHMARKS, SHAPES, GeneratedShape, SyntheticSource, get_benchmark, make_layout,
                                  render_holes)
from data_utils.synthetic.benchmarks import ClassStyle, resembles_named_shape, resembles_named_style

V2 = get_benchmark("categories")


@pytest.fixture(scope="module")
def source() -> SyntheticSource:
    return SyntheticSource(image_size=64, images_per_class={"train": 2, "test": 4}, cache_size=0, benchmark="categories")


def test_names_versions_and_a_clear_error_for_an_unknown_one():
    assert {b.tag for b in BENCHMARKS.values()} == {"shapes-v1", "categories-v2"}
    with pytest.raises(ValueError, match="categories"):
        get_benchmark("colours")


def test_same_id_same_pixels_in_any_order_and_any_instance(source):
    ids = ["train-00003", "train-00045", "train-01500", "test-00011"]  # named, generated, test
    first = {i: source.load(i) for i in ids}
    other = SyntheticSource(image_size=64, images_per_class={"train": 2, "test": 4}, cache_size=0,
                            benchmark="categories")
    for image_id in reversed(ids):
        image, label = other.load(image_id)
        assert np.array_equal(image, first[image_id][0]) and np.array_equal(label, first[image_id][1])


def test_generated_classes_train_in_every_fold_and_never_appear_at_test(source):
    generated = set(range(21, 21 + V2.generated_classes))
    assert source.num_classes == 20 + V2.generated_classes
    assert source.num_images("train") == 2 * 20 + V2.generated_classes * V2.images_per_generated_class
    for fold in range(4):
        train, test = set(source.fold_classes(fold, "train")), set(source.fold_classes(fold, "test"))
        assert not train & test and test <= set(range(1, 21))
        assert generated <= train and len(train - generated) == 15
    for image_id in source.image_ids("test"):
        present = set(np.unique(source.load_label(image_id))) - {0, 255}
        assert present and max(present) <= 20, image_id
    primaries = {source.layout(f"train-{j:05d}").primary_class for j in range(40, 40 + V2.generated_classes)}
    assert primaries == generated


def test_generated_classes_are_unlike_every_named_class():
    for shape, style in V2.generated:
        assert not resembles_named_shape(shape)
        assert not resembles_named_style(style, V2.named_styles)
    # ... and both checks can fail: a named shape, a rotated copy, a generated disk, a named appearance
    assert all(resembles_named_shape(named) for named in SHAPES.values())
    assert resembles_named_shape(lambda u, v: SHAPES["frame with gap"](v, -u))
    assert resembles_named_shape(GeneratedShape(base=("ellipse", 0, 0, 0.9, 0.9), bars=(), cuts=()))
    named = V2.named_styles[6]
    assert resembles_named_style(ClassStyle(named.hue + 0.01, named.texture), V2.named_styles)


def test_objects_wear_their_class_appearance_in_v2_only():
    def hue_error(benchmark: str) -> float:
        errors = []
        for j in range(60):
            for obj in make_layout(0, "test", j, 160, benchmark=benchmark).objects:
                hue = colorsys.rgb_to_hsv(*(c / 255 for c in obj.texture.color_a))[0]
                gap = abs(hue - V2.style(obj.class_id).hue) % 1.0
                errors.append(min(gap, 1 - gap))
                if benchmark == "categories":
                    assert obj.texture.kind == V2.style(obj.class_id).texture
        return float(np.mean(errors))

    assert hue_error("categories") < V2.hue_jitter + 0.005
    assert hue_error("shapes") > 0.15


def test_hole_pixels_lie_inside_the_outline_and_outside_the_shape(source):
    holed = [c for c in range(1, 21) if SYNTHETIC_CLASSES[c - 1] in ("ring", "square frame", "grid")]
    found = 0
    for class_id in holed:
        for image_id in source.class_index("test")[class_id]:
            holes = source.holes(image_id, class_id)
            label = source.load_label(image_id)
            assert not (holes & (label == class_id)).any()
            found += int(holes.sum() > 0)
    assert found >= 3
    for image_id in source.class_index("test")[1]:  # a disk has no hole
        assert not source.holes(image_id, 1).any()


def test_a_generated_class_with_cuts_has_holes():
    cut = next(i for i, (shape, _) in enumerate(V2.generated) if shape.cuts) + 21
    layout = make_layout(0, "train", 0, 96, benchmark="categories", images_per_class=1)
    # the image's last object, relabelled as that generated class
    obj = dataclasses.replace(layout.objects[-1], class_id=cut, shape=V2.shape(cut))
    relabelled = dataclasses.replace(layout, objects=(obj,))
    assert render_holes(relabelled, 96, cut).sum() > 0


def test_named_classes_share_seven_hues_but_no_two_share_an_appearance():
    """(A colour-only classifier is tested with version 1's in test_data_synthetic.py.)"""
    styles = {(s.hue, s.texture) for s in V2.named_styles}
    assert len(styles) == 20 and len({s.hue for s in V2.named_styles}) == 7
