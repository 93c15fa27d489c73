"""COCO-20i on fixture files in the real COCO 2014 layout (JPEGs + instances JSON read by pycocotools)."""

from __future__ import annotations

import numpy as np
import pytest
from data_fixtures import COCO_IMAGES, write_coco_fixture

from data_utils.coco import CocoSource, write_coco_labels
from data_utils.datasets import episodes_for_dataset
from data_utils.validation import DataError, DatasetNotFoundError


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco")
    write_coco_fixture(root)
    for split in ("train", "test"):
        write_coco_labels(root, split, progress=False)
    return root


def test_lists_hold_annotated_images_only(root):
    source = CocoSource(root=root)
    assert source.image_ids("train") == ["COCO_train2014_000000000001", "COCO_train2014_000000000002",
                                         "COCO_train2014_000000000004"]
    assert source.image_ids("test") == sorted(COCO_IMAGES["val2014"])


def test_label_maps_use_contiguous_ids_overlaps_and_crowd_rules(root):
    label = CocoSource(root=root).load_label("COCO_train2014_000000000001")
    assert label.shape == (80, 100) and label.dtype == np.uint8
    # person (category 1) -> 1; dog (category 18) -> 17, painted over the larger person; crowd -> 255
    assert label[15, 15] == 1 and label[25, 25] == 17
    assert (label[20:40, 20:40] == 17).mean() > 0.9
    assert (label[60:74, 70:94] == 255).all()
    toothbrush = CocoSource(root=root).load_label("COCO_train2014_000000000002")
    assert set(np.unique(toothbrush).tolist()) == {0, 80}  # category id 90 -> class 80


def test_2048_pixel_rule(root):
    index = CocoSource(root=root).class_index("test")
    # the 40x40 airplane of image 12 is below the rule, its 50x50 person is above
    assert index[5] == ["COCO_val2014_000000000011", "COCO_val2014_000000000013"]
    assert index[1] == ["COCO_val2014_000000000012"]
    train = CocoSource(root=root).class_index("train")
    assert train[17] == []  # the 400-pixel dog does not count


def test_interleaved_is_the_default_and_consecutive_is_an_option(root):
    assert CocoSource(root=root).fold_classes(0)[:4] == [1, 5, 9, 13]
    assert CocoSource(root=root, coco_split="consecutive").fold_classes(0)[:4] == [1, 2, 3, 4]
    with pytest.raises(ValueError, match="coco_split"):
        CocoSource(root=root, coco_split="fwb")


def test_episodes_on_coco(root):
    ds = episodes_for_dataset("coco", fold=0, split="test", shots=1, image_size=48, episodes=4, root=str(root),
                       classes=[5])
    ep = ds[0]
    assert ep["class_id"] == 5 and ep["query_label_original"].shape == (80, 100)
    assert ep["query_image"].shape == (3, 48, 48) and ep["support_masks"].shape == (1, 48, 48)


def test_missing_coco_names_the_prepare_command(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="python -m data_utils.prepare coco"):
        CocoSource(root=tmp_path)
    with pytest.raises(DatasetNotFoundError, match="python -m data_utils.prepare coco"):
        write_coco_labels(tmp_path, "train")


def test_coco_labels_need_their_images(tmp_path):
    write_coco_fixture(tmp_path)
    (tmp_path / "coco/train2014/COCO_train2014_000000000002.jpg").unlink()
    with pytest.raises(DataError, match=r"1 of 3 COCO train2014 images .*COCO_train2014_000000000002\.jpg.*"
                                        r"python -m data_utils\.prepare coco --root"):
        write_coco_labels(tmp_path, "train", progress=False)


def test_a_coco_image_deleted_after_prepare_names_the_command(tmp_path):
    write_coco_fixture(tmp_path)
    write_coco_labels(tmp_path, "test", progress=False)
    (tmp_path / "coco/val2014/COCO_val2014_000000000012.jpg").unlink()
    with pytest.raises(DatasetNotFoundError, match=f"python -m data_utils.prepare coco --root {tmp_path}"):
        CocoSource(root=tmp_path).load("COCO_val2014_000000000012")
