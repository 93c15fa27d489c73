"""PFENet's training epoch (``EpisodeDataset(per_image=True)``): each eligible image once, its class drawn among its
eligible training classes, new but reproducible epochs, the same lists in every process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from data_fixtures import MULTI_CLASS_IMAGES, MULTI_MIN_PIXELS, MultiClassSource

from data_utils.episodes import EpisodeDataset

ROOT = Path(__file__).resolve().parents[1]
FOLD0_TRAIN_CLASSES = set(range(6, 21))  # PASCAL fold 0 tests on classes 1..5

_EPOCH_SCRIPT = """
import json
from data_fixtures import MultiClassSource
from data_utils.episodes import EpisodeDataset
ds = EpisodeDataset(MultiClassSource(), fold=0, split="train", shots=2, episodes=None, seed=5, per_image=True)
ds.set_epoch(3)
print(json.dumps([[s.query_id, s.class_id, list(s.support_ids)] for s in ds.episode_list()]))
"""


def _eligible() -> dict[str, set[int]]:
    """Each image's eligible training classes, worked out from the fixture's box sizes (not by the code under test)."""
    out = {}
    for image_id, boxes in MULTI_CLASS_IMAGES.items():
        classes = {c for c, side in boxes if side * side >= MULTI_MIN_PIXELS and c in FOLD0_TRAIN_CLASSES}
        if classes:
            out[image_id] = classes
    return out


def _epoch(seed: int = 0, epoch: int = 0, shots: int = 1) -> list:
    ds = EpisodeDataset(MultiClassSource(), fold=0, split="train", shots=shots, episodes=None, seed=seed,
                        per_image=True)
    ds.set_epoch(epoch)
    return ds.episode_list()


def test_one_epoch_holds_each_eligible_training_image_exactly_once():
    eligible = _eligible()
    assert len(eligible) == 30 and sum(len(c) > 1 for c in eligible.values()) == 30  # several classes per image
    ds = EpisodeDataset(MultiClassSource(), fold=0, split="train", shots=1, episodes=None, seed=0, per_image=True)
    assert len(ds) == len(eligible)
    specs = ds.episode_list()
    assert Counter(s.query_id for s in specs) == Counter(set(eligible))  # no image twice, none left out
    by_pairs = EpisodeDataset(MultiClassSource(), fold=0, split="train", shots=1, episodes=None, seed=0)
    assert len(by_pairs) == sum(map(len, eligible.values())) == 60  # the default pass: one episode per pair


def test_the_class_is_one_of_the_images_eligible_training_classes():
    eligible = _eligible()
    index = MultiClassSource().class_index("train")
    drawn: dict[str, set[int]] = {}
    for epoch in range(8):
        for spec in _epoch(seed=1, epoch=epoch, shots=2):
            assert spec.class_id in eligible[spec.query_id]  # never a novel class, never one below 2,048 px
            assert spec.query_id not in spec.support_ids and len(set(spec.support_ids)) == 2
            assert all(s in index[spec.class_id] for s in spec.support_ids)
            drawn.setdefault(spec.query_id, set()).add(spec.class_id)
    assert sum(len(v) > 1 for v in drawn.values()) > 20  # drawn among the classes, not always the first


def test_two_epochs_differ_and_each_is_reproducible():
    first, second = _epoch(seed=2, epoch=0), _epoch(seed=2, epoch=1)
    assert [s.query_id for s in first] != [s.query_id for s in second]  # a new order
    classes = [{s.query_id: s.class_id for s in epoch} for epoch in (first, second)]
    assert classes[0] != classes[1]  # new classes too
    assert _epoch(seed=2, epoch=1) == second and _epoch(seed=2, epoch=0) == first  # a fresh dataset agrees
    ds = EpisodeDataset(MultiClassSource(), fold=0, split="train", shots=1, episodes=None, seed=2, per_image=True)
    ds.set_epoch(1)
    ds.set_epoch(0)
    assert ds.episode_list() == first and [ds.spec(i) for i in reversed(range(len(ds)))] == first[::-1]
    assert _epoch(seed=3, epoch=0) != first


def test_per_image_epochs_are_the_same_in_separate_processes():
    expected = [[s.query_id, s.class_id, list(s.support_ids)] for s in _epoch(seed=5, epoch=3, shots=2)]
    hash_seed = "1" if os.environ.get("PYTHONHASHSEED") != "1" else "4242"  # another string hashing than ours
    env = dict(os.environ, PYTHONHASHSEED=hash_seed,
               PYTHONPATH=os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", _EPOCH_SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
                         check=True)
    assert json.loads(out.stdout) == expected


def test_per_image_refuses_other_lengths_and_the_fixed_test_list():
    source = MultiClassSource()
    with pytest.raises(ValueError, match="each of the 30 eligible images once"):
        EpisodeDataset(source, fold=0, split="train", shots=1, episodes=100, per_image=True)
    assert len(EpisodeDataset(source, fold=0, split="train", shots=1, episodes=30, per_image=True)) == 30
    with pytest.raises(ValueError, match="per_image"):
        EpisodeDataset(source, fold=0, split="test", shots=1, episodes=None, per_image=True)
    with pytest.raises(ValueError, match="episodes must be >= 1"):
        EpisodeDataset(source, fold=0, split="train", shots=1, episodes=0, per_image=True)
