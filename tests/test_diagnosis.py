"""The diagnosis: its AUC, its two untrained rules, the training fit episodes, the oracle's classes, and one run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from data_utils.episodes import EpisodeDataset
from data_utils.synthetic import SyntheticSource
from dpcn_lite.backbones import BackboneFeatures
from dpcn_lite.config import get_preset, resolve_config
from dpcn_lite.diagnosis import ColourRule, UntrainedPrototypeRule, diagnose, roc_auc
from dpcn_lite.experiment import episodes_for_config


def test_roc_auc_is_the_probability_that_a_positive_outscores_a_negative():
    assert roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert roc_auc(np.array([1, 1, 0, 0]), np.array([0.1, 0.2, 0.8, 0.9])) == 0.0
    assert roc_auc(np.array([0, 1, 0, 1]), np.array([0.5, 0.5, 0.5, 0.5])) == 0.5
    assert roc_auc(np.array([0, 1, 1]), np.array([0.3, 0.2, 0.4])) == 0.5
    with pytest.raises(ValueError, match="both"):
        roc_auc(np.array([1, 1]), np.array([0.1, 0.2]))


def test_the_untrained_rule_matches_raw_features_without_any_learning():
    rule = UntrainedPrototypeRule(get_preset("tiny", train_layer4=False)).eval()
    c = rule.backbone.mid_channels
    fg, bg = torch.zeros(c), torch.zeros(c)
    fg[0], bg[1] = 1.0, 1.0
    support = bg.view(1, 1, c, 1, 1).repeat(1, 1, 1, 8, 8)
    support[0, 0, :, :4, :] = fg.view(c, 1, 1)  # top half is the object
    mask = torch.zeros(1, 1, 64, 64, dtype=torch.int64)
    mask[..., :32, :] = 1
    query = bg.view(1, c, 1, 1).repeat(1, 1, 8, 8)
    query[0, :, :, 4:] = fg.view(c, 1, 1)  # right half is the object
    high = torch.zeros(1, 1, rule.backbone.high_channels, 8, 8)
    out = rule.forward_features(BackboneFeatures(query, high[:, 0]), BackboneFeatures(support, high), mask, (64, 64))
    prediction = out.logits.argmax(1)[0]
    assert prediction[:, 40:].all() and not prediction[:, :24].any()
    with torch.no_grad():  # no learnable weight takes part: scrambling the head's reductions changes nothing
        for p in rule.reduce_query.parameters():
            p.normal_()
    again = rule.forward_features(BackboneFeatures(query, high[:, 0]), BackboneFeatures(support, high), mask, (64, 64))
    assert torch.equal(again.logits, out.logits)


def test_the_colour_rule_finds_a_red_object_on_grey():
    query = torch.full((1, 3, 16, 16), 0.5)
    query[0, :, 4:8, 4:8] = torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1)
    support = torch.full((1, 1, 3, 16, 16), 0.5)
    support[0, 0, :, 10:14, 2:6] = torch.tensor([0.9, 0.1, 0.0]).view(3, 1, 1)
    mask = torch.zeros(1, 1, 16, 16, dtype=torch.int64)
    mask[0, 0, 10:14, 2:6] = 1
    prediction = ColourRule()(query, support, mask).logits.argmax(1)[0]
    expected = torch.zeros(16, 16, dtype=torch.int64)
    expected[4:8, 4:8] = 1
    assert torch.equal(prediction, expected)


def test_fixed_training_episodes_carry_labels_and_the_oracle_trains_on_novel_classes_too():
    source = SyntheticSource(image_size=64, images_per_class={"train": 3, "test": 2}, benchmark="categories")
    fit = EpisodeDataset(source, 0, "train", 1, 5, classes=[6, 7], fixed=True)
    assert fit.episode_list() == fit.episode_list() and "query_label_original" in fit[0]
    assert "query_label_original" not in EpisodeDataset(source, 0, "train", 1, 5)[0]
    cfg = resolve_config("tiny", synthetic_benchmark="categories", synthetic_images_per_class=3)
    plain = episodes_for_config(cfg, "train", seed=0, episodes=8, source=source)
    oracle = episodes_for_config(resolve_config("tiny", synthetic_benchmark="categories", synthetic_images_per_class=3,
                                                train_on_novel=True), "train", seed=0, episodes=8, source=source)
    assert set(oracle.classes) - set(plain.classes) == {1, 2, 3, 4, 5}


def test_diagnose_reports_every_number_for_a_small_run():
    cfg = resolve_config("tiny", synthetic_benchmark="categories", synthetic_images_per_class=3,
                         epochs=1, episodes_per_epoch=4, model_overrides={"train_layer4": False})
    logged = []
    reports = diagnose(cfg, ("prototype",), seeds=(0, 1), episodes=12, base_episodes=6, fit_episodes=6,
                       progress=False, log=lambda line: None, on_report=logged.append)
    assert logged == reports and [r["train"]["seed"] for r in reports] == [0, 1]
    report = reports[0]
    assert report["benchmark"] == "categories-v2"
    assert 0.0 <= report["raw_auc_mid"] <= 1.0 and 0.0 <= report["raw_auc_high"] <= 1.0
    row = report["prototype"]
    for key in ("fit", "base", "novel", "foreign", "oracle"):
        assert 0.0 <= row[key]["mIoU"] <= 100.0
    assert set(row["base"]["per_class"]) <= {str(c) for c in range(6, 21)}
    assert set(row["novel"]["per_class"]) <= {"1", "2", "3", "4", "5"}
    json.dumps(report)
    quick = diagnose(cfg, ("prototype",), oracle=False, novel_only=True, episodes=12, progress=False,
                     log=lambda line: None)
    assert set(quick[0]["prototype"]) == {"novel"}
