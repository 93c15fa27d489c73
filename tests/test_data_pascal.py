"""PASCAL-5i on fixture files in the real VOC/SBD layout: list derivation, 2,048-pixel rule, loading, episodes, and
derived files that notice when they are stale or cut short."""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import pytest
from data_fixtures import (PASCAL_IMAGES, SBD_TRAIN, SBD_TRAIN_NOVAL, VOC_TRAIN, VOC_VAL, box_label, save_palette_png,
                           write_pascal_fixture)

from data_utils.datasets import episodes_for_dataset
from data_utils.episodes import EpisodeDataset
from data_utils.pascal import PascalSource, derive_pascal_lists
from data_utils.validation import DataError, DatasetNotFoundError


@pytest.fixture()
def root(tmp_path):
    write_pascal_fixture(tmp_path)
    derive_pascal_lists(tmp_path)
    return tmp_path


def test_lists_follow_the_pfenet_protocol(root):
    lists_dir = root / "lists" / "pascal"
    train = lists_dir.joinpath("train.txt").read_text().split()
    test = lists_dir.joinpath("test.txt").read_text().split()
    # (VOC train ∪ SBD train_noval) minus VOC val, no duplicates, sorted; test = VOC val
    assert train == sorted((set(VOC_TRAIN) | set(SBD_TRAIN_NOVAL)) - set(VOC_VAL))
    assert train == ["2007_000001", "2007_000002", "2008_000005"]
    assert test == ["2007_000003", "2007_000004", "2008_000006", "2008_000007"]


def test_sbd_train_txt_is_not_the_training_list(root):
    """PFENet trains on SBD's train_noval.txt: an id only in SBD's train.txt stays out (its files exist), and an id of
    VOC val stays out even when an SBD list names it."""
    train = (root / "lists/pascal/train.txt").read_text().split()
    assert "2008_000008" in SBD_TRAIN and "2008_000008" not in SBD_TRAIN_NOVAL
    assert (root / "VOCdevkit/VOC2012/SegmentationClassAug/2008_000008.png").is_file()
    assert "2008_000008" not in train
    assert "2007_000003" in SBD_TRAIN_NOVAL and "2007_000003" in VOC_VAL and "2007_000003" not in train
    assert len(train) == len(set(train))  # train_noval's repeated id is listed once


def test_a_missing_train_noval_list_names_the_prepare_command(tmp_path):
    write_pascal_fixture(tmp_path)
    (tmp_path / "benchmark_RELEASE/dataset/train_noval.txt").unlink()
    command = f"python -m data_utils.prepare pascal --root {tmp_path}"
    with pytest.raises(DatasetNotFoundError, match=f"(?s)train_noval.*{command}"):
        derive_pascal_lists(tmp_path)


def test_2048_pixel_rule_decides_which_images_count_for_a_class(root):
    source = PascalSource(root=root)
    train = source.class_index("train")
    assert train[1] == ["2007_000001", "2008_000005"]  # 2007_000002 holds 1,600 aeroplane pixels only
    assert train[15] == []  # the 400-pixel person does not count
    test = source.class_index("test")
    assert test[1] == ["2007_000003", "2007_000004", "2008_000007"] and test[3] == ["2008_000006"]
    assert test[2] == []
    # the index is written next to the lists and reused
    assert (root / "lists" / "pascal" / "class_index_test.json").is_file()
    assert PascalSource(root=root).class_index("test") == test


def test_load_returns_class_indices_from_palette_pngs(root):
    image, label = PascalSource(root=root).load("2008_000005")
    h, w, boxes = PASCAL_IMAGES["2008_000005"]
    assert image.shape == (h, w, 3) and image.dtype == np.uint8
    assert np.array_equal(label, box_label(h, w, boxes))  # indices, not palette colours; 255 outline kept


def test_test_episodes_on_pascal_keep_the_original_size_label(root):
    ds = episodes_for_dataset("pascal", fold=0, split="test", shots=1, image_size=64, episodes=6, root=str(root),
                       classes=[1])
    for i in range(6):
        ep = ds[i]
        assert ep["class_id"] == 1 and ep["query_id"] not in ep["support_ids"]
        h, w, _ = PASCAL_IMAGES[ep["query_id"]]
        assert ep["query_label_original"].shape == (h, w)
        assert ep["query_image"].shape == (3, 64, 64)
        assert ep["query_valid_hw"] == (51, 64)
        assert set(ep["query_label_original"].unique().tolist()) <= {0, 1, 255}


def test_too_few_images_for_k_shots_is_a_clear_error(root):
    with pytest.raises(DataError, match="at least 4 usable images"):
        EpisodeDataset(PascalSource(root=root), fold=0, split="test", shots=3)


def test_missing_data_names_the_prepare_command(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="python -m data_utils.prepare pascal"):
        PascalSource(root=tmp_path)
    write_pascal_fixture(tmp_path)  # data present but lists not derived yet
    with pytest.raises(DatasetNotFoundError, match="python -m data_utils.prepare pascal"):
        PascalSource(root=tmp_path).image_ids("train")


def test_missing_mask_for_a_listed_image_is_an_error(tmp_path):
    write_pascal_fixture(tmp_path)
    (tmp_path / "VOCdevkit/VOC2012/SegmentationClassAug/2008_000005.png").unlink()
    with pytest.raises(DataError, match="lack a JPEG or a SegmentationClassAug mask"):
        derive_pascal_lists(tmp_path)


def test_the_class_index_follows_an_edited_mask(root):
    """Same threshold, same image count, one mask edited: the stored index must not be reused."""
    assert PascalSource(root=root).class_index("train")[1] == ["2007_000001", "2008_000005"]
    mask = root / "VOCdevkit/VOC2012/SegmentationClassAug/2007_000002.png"
    before = mask.stat()
    save_palette_png(box_label(80, 100, [(1, 10, 10, 50, 50)]), mask)  # the aeroplane grows past 2,048 pixels
    os.utime(mask, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))  # even on a coarse clock
    assert PascalSource(root=root).class_index("train")[1] == ["2007_000001", "2007_000002", "2008_000005"]
    assert PascalSource(root=root, min_pixels=3000).class_index("train")[1] == []  # the threshold is part of the key


def test_a_truncated_class_index_is_rebuilt_with_a_warning(root, caplog):
    expected = PascalSource(root=root).class_index("test")
    path = root / "lists/pascal/class_index_test.json"
    path.write_text(path.read_text()[:40])
    with caplog.at_level(logging.WARNING, logger="data_utils.lists"):
        assert PascalSource(root=root).class_index("test") == expected
    assert "class_index_test.json is unreadable" in caplog.text
    assert json.loads(path.read_text())["num_images"] == 4  # rewritten whole


def test_a_truncated_list_names_the_command_that_rewrites_it(root):
    lists = root / "lists" / "pascal"
    assert lists.joinpath("train.count").read_text() == "3\n"
    text = lists.joinpath("train.txt").read_text()
    lists.joinpath("train.txt").write_text(text[: text.rindex("2008")])  # the last line lost
    with pytest.raises(DataError, match=f"holds 2 ids but train.count says 3.*python -m data_utils.prepare pascal "
                                        f"--root {root} --skip-download"):
        PascalSource(root=root).image_ids("train")
    lists.joinpath("train.txt").write_text(text[:-5])  # cut in the middle of the last id: the count alone matches
    with pytest.raises(DataError, match="truncated"):
        PascalSource(root=root).image_ids("train")
    derive_pascal_lists(root)  # the named command's work: the list is whole again
    assert PascalSource(root=root).image_ids("train") == ["2007_000001", "2007_000002", "2008_000005"]


def test_an_image_deleted_after_prepare_names_the_command_that_fetches_it(root):
    (root / "VOCdevkit/VOC2012/JPEGImages/2008_000005.jpg").unlink()
    with pytest.raises(DatasetNotFoundError, match=f"python -m data_utils.prepare pascal --root {root}"):
        PascalSource(root=root).load("2008_000005")
