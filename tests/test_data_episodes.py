"""Episodes: the contract of docs/architecture.md, reproducibility across processes, protocol rules."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from data_utils.datasets import episodes_for_dataset
from data_utils.episodes import EpisodeDataset, binarize, collate_episodes
from data_utils.synthetic import SyntheticSource
from data_utils.validation import DataError

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"image_size": 64, "images_per_class": {"train": 8, "test": 6}}

_LIST_SCRIPT = """
import json
from data_utils.episodes import EpisodeDataset
from data_utils.synthetic import SyntheticSource
src = SyntheticSource(image_size=64, images_per_class={"train": 8, "test": 6})
ds = EpisodeDataset(src, fold=2, split="test", shots=2, episodes=40, seed=7)
print(json.dumps([[s.query_id, s.class_id, list(s.support_ids)] for s in ds.episode_list()]))
"""


@pytest.fixture(scope="module")
def source() -> SyntheticSource:
    return SyntheticSource(**SMALL)


def _list_in_subprocess(hash_seed: str) -> list:
    env = dict(os.environ, PYTHONHASHSEED=hash_seed)
    out = subprocess.run([sys.executable, "-c", _LIST_SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout)


def test_same_seed_gives_identical_test_episodes_in_two_separate_processes(source):
    first, second = _list_in_subprocess("1"), _list_in_subprocess("12345")
    assert first == second
    here = EpisodeDataset(source, fold=2, split="test", shots=2, episodes=40, seed=7).episode_list()
    assert first == [[s.query_id, s.class_id, list(s.support_ids)] for s in here]
    other_seed = EpisodeDataset(source, fold=2, split="test", shots=2, episodes=40, seed=8).episode_list()
    assert [s.query_id for s in other_seed] != [q for q, _, _ in first]


def test_episode_rules_supports_distinct_not_query_and_class_in_fold(source):
    for split in ("test", "train"):
        ds = EpisodeDataset(source, fold=1, split=split, shots=3, episodes=60, seed=0)
        allowed = set(source.fold_classes(1, split))
        index = source.class_index(split)
        for spec in ds.episode_list():
            assert spec.class_id in allowed
            assert len(set(spec.support_ids)) == 3 and spec.query_id not in spec.support_ids
            assert spec.query_id in index[spec.class_id]
            assert all(s in index[spec.class_id] for s in spec.support_ids)


def test_test_episodes_visit_every_pair_before_repeating(source):
    ds = EpisodeDataset(source, fold=0, split="test", shots=1, episodes=1000, seed=0)
    n_pairs = len(ds.pairs)
    first_round = [(s.query_id, s.class_id) for s in ds.episode_list()[:n_pairs]]
    assert len(set(first_round)) == n_pairs


def test_training_episodes_change_with_epoch_but_not_on_reread(source):
    ds = EpisodeDataset(source, fold=0, split="train", shots=1, episodes=30, seed=3)
    epoch0 = ds.episode_list()
    assert ds.episode_list() == epoch0
    ds.set_epoch(1)
    assert ds.episode_list() != epoch0


def test_episode_dict_matches_the_contract(source):
    ds = episodes_for_dataset("synthetic", fold=0, split="test", shots=2, image_size=48, episodes=4, source=source)
    ep = ds[0]
    assert ep["query_image"].shape == (3, 48, 48) and ep["query_image"].dtype == torch.float32
    assert ep["query_mask"].shape == (48, 48) and ep["query_mask"].dtype == torch.int64
    assert ep["support_images"].shape == (2, 3, 48, 48) and ep["support_images"].dtype == torch.float32
    assert ep["support_masks"].shape == (2, 48, 48) and ep["support_masks"].dtype == torch.int64
    assert isinstance(ep["class_id"], int) and isinstance(ep["query_id"], str)
    assert isinstance(ep["support_ids"], list) and all(isinstance(s, str) for s in ep["support_ids"])
    assert ep["query_label_original"].shape == (64, 64) and ep["query_label_original"].dtype == torch.int64
    assert ep["query_valid_hw"] == (48, 48)
    for key in ("query_mask", "support_masks", "query_label_original"):
        assert set(ep[key].unique().tolist()) <= {0, 1, 255}
    # the original label is the binarised source label
    _, label = source.load(ep["query_id"])
    assert np.array_equal(ep["query_label_original"].numpy(), binarize(label, ep["class_id"]).astype(np.int64))
    assert (ep["support_masks"] == 1).flatten(1).any(1).all()  # every support shows its object

    batch = collate_episodes([ds[0], ds[1], ds[2]])
    assert batch["query_image"].shape == (3, 3, 48, 48) and batch["support_masks"].shape == (3, 2, 48, 48)
    assert batch["class_id"].dtype == torch.int64 and batch["class_id"].shape == (3,)
    assert isinstance(batch["query_label_original"], list) and len(batch["query_label_original"]) == 3
    assert len(batch["query_valid_hw"]) == 3

    train = episodes_for_dataset("synthetic", fold=0, split="train", shots=1, image_size=48, episodes=4, source=source)
    ep = train[0]
    assert "query_label_original" not in ep and ep["support_images"].shape == (1, 3, 48, 48)


def test_binarize_turns_other_classes_into_background_and_keeps_ignore():
    label = np.array([[0, 3, 5], [255, 3, 12]], np.uint8)
    assert binarize(label, 3).tolist() == [[0, 1, 0], [255, 1, 0]]


def test_novel_class_objects_become_background_in_training_episodes(source):
    ds = EpisodeDataset(source, fold=0, split="train", shots=1, episodes=50, seed=0)
    novel = set(source.fold_classes(0, "test"))
    checked = 0
    for i in range(50):
        spec = ds.spec(i)
        _, label = source.load(spec.query_id)
        present = novel & set(np.unique(label).tolist())
        if present:
            ep = ds[i]
            novel_pixels = torch.from_numpy(np.isin(label, list(present)))
            assert (ep["query_mask"][novel_pixels] == 0).all()
            checked += 1
    assert checked > 0


def test_shots_below_one_and_too_few_images_are_clear_errors(source):
    with pytest.raises(ValueError, match="shots"):
        EpisodeDataset(source, fold=0, split="test", shots=0)
    tiny = SyntheticSource(image_size=64, images_per_class=1)
    with pytest.raises(DataError, match="at least 51 usable images"):
        EpisodeDataset(tiny, fold=0, split="test", shots=50)


def test_unknown_fold_split_or_class_are_clear_errors(source):
    with pytest.raises(ValueError, match="fold"):
        EpisodeDataset(source, fold=7, split="test", shots=1)
    with pytest.raises(ValueError, match="split"):
        EpisodeDataset(source, fold=0, split="val", shots=1)
    with pytest.raises(ValueError, match="unknown class"):
        EpisodeDataset(source, fold=0, split="test", shots=1, classes=[0, 21])
