"""Evaluation on real test episodes: original-resolution labels, ignore pixels, ΣI/ΣU per class, seeds."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from dpcn_lite.config import get_preset, resolve_config
from dpcn_lite.evaluate import evaluate, evaluate_seeds
from dpcn_lite.experiment import episodes_for_config
from dpcn_lite.feature_cache import FeatureCache
from dpcn_lite.model import DPCN


class AlwaysForeground(nn.Module):
    """Predicts foreground everywhere: its IoU can be counted from the labels alone."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))

    def forward(self, query_image, support_images, support_masks):
        logits = torch.zeros(query_image.shape[0], 2, *query_image.shape[-2:])
        logits[:, 1] = 1.0
        return type("Output", (), {"logits": logits})


@pytest.fixture(scope="module")
def cfg():
    return resolve_config("tiny", synthetic_images_per_class=4, model_overrides={"train_layer4": False})


def test_always_foreground_scores_foreground_pixels_over_valid_pixels(cfg) -> None:
    episodes = episodes_for_config(cfg, "test", seed=0, episodes=12)
    result = evaluate(AlwaysForeground(), episodes, batch_size=5, progress=False)
    foreground: dict[int, int] = {}
    valid: dict[int, int] = {}
    for i in range(len(episodes)):
        episode = episodes[i]
        label = episode["query_label_original"]
        c = episode["class_id"]
        foreground[c] = foreground.get(c, 0) + int((label == 1).sum())
        valid[c] = valid.get(c, 0) + int((label != 255).sum())
    expected = {str(c): foreground[c] / valid[c] for c in foreground}
    assert {c: v for c, v in result["per_class_IoU"].items() if c in expected} == pytest.approx(expected)
    assert result["mIoU"] == pytest.approx(sum(expected.values()) / len(expected))
    # background is never predicted: its IoU is 0, so FB-IoU is half the pooled foreground IoU
    assert result["bg_IoU"] == 0.0
    assert result["FB-IoU"] == pytest.approx(sum(foreground.values()) / sum(valid.values()) / 2)
    assert result["episodes"] == 12 and result["shots"] == 1 and result["fold"] == 0
    # foreground everywhere fills every hole pixel and the whole body; fold 0 has holed classes
    assert result["hole_fill"] == 1.0 and result["body_fill"] == 1.0 and result["hole_episodes"] > 0


def test_feature_cache_evaluation_matches_the_full_model(cfg) -> None:
    torch.manual_seed(0)
    model = DPCN(get_preset("tiny", train_layer4=False)).eval()
    episodes = episodes_for_config(cfg, "test", seed=1, episodes=6)
    direct = evaluate(model, episodes, batch_size=3, progress=False)
    cached = evaluate(model, episodes, batch_size=3, progress=False,
                      feature_cache=FeatureCache(model, dtype=torch.float32))
    assert cached["per_class_IoU"] == pytest.approx(direct["per_class_IoU"], abs=1e-9, nan_ok=True)
    assert cached["FB-IoU"] == pytest.approx(direct["FB-IoU"])


def test_several_seeds_report_mean_and_std_in_percent(cfg) -> None:
    result = evaluate_seeds(AlwaysForeground(), lambda seed: episodes_for_config(cfg, "test", seed=seed, episodes=5),
                            seeds=[0, 1, 2], batch_size=5, progress=False)
    per_seed = [r["mIoU"] for r in result["per_seed"]]
    assert result["mIoU"] == pytest.approx(sum(per_seed) / 3)
    assert result["mIoU_std"] == pytest.approx(torch.tensor(per_seed, dtype=torch.float64).std().item())
    assert result["eval_seeds"] == [0, 1, 2] and result["units"] == "percent"
    assert 0 < result["mIoU"] <= 100


def test_every_seed_averages_one_class_set_and_the_missing_classes_are_named(cfg) -> None:
    """5 episodes over 5 classes: some seeds miss a class. Each seed must then average the same classes."""
    episodes = {seed: episodes_for_config(cfg, "test", seed=seed, episodes=4) for seed in range(6)}
    seen = {seed: {e.class_id for e in ds.episode_list()} for seed, ds in episodes.items()}
    seeds = [s for s in seen if seen[s] != seen[0]][:1] + [0]
    assert len(seeds) == 2, "the fixture needs two seeds that cover different classes"
    result = evaluate_seeds(AlwaysForeground(), lambda seed: episodes[seed], seeds=seeds, batch_size=4,
                            progress=False)
    common = seen[seeds[0]] & seen[seeds[1]]
    assert result["classes_without_episodes"] == sorted(set(map(int, result["per_class_IoU"])) - common)
    for run in result["per_seed"]:
        scored = [run["per_class_IoU"][str(c)] for c in sorted(common)]
        assert run["mIoU"] == pytest.approx(sum(scored) / len(scored))
    assert all(result["per_class_IoU"][str(c)] is None for c in result["classes_without_episodes"])


def test_training_episodes_are_refused(cfg) -> None:
    with pytest.raises(ValueError, match="test-split"):
        evaluate(AlwaysForeground(), episodes_for_config(cfg, "train", seed=0, episodes=2), progress=False)


def test_foreign_supports_keep_the_query_and_swap_in_another_class() -> None:
    from data_utils.datasets import episodes_for_dataset
    from dpcn_lite.evaluate import ForeignSupports

    episodes = episodes_for_dataset("synthetic", fold=0, split="test", shots=2, image_size=64, episodes=12,
                             images_per_class=3, cache_size=0)
    foreign = ForeignSupports(episodes)
    specs = episodes.episode_list()
    assert len(foreign) == len(episodes) and foreign.classes == episodes.classes
    for i in range(len(foreign)):
        mine, swapped, partner = episodes[i], foreign[i], episodes[foreign.partner[i]]
        assert specs[foreign.partner[i]].class_id != specs[i].class_id
        assert torch.equal(swapped["query_image"], mine["query_image"]) and swapped["class_id"] == mine["class_id"]
        assert torch.equal(swapped["query_label_original"], mine["query_label_original"])
        assert swapped["support_ids"] == partner["support_ids"]
        assert torch.equal(swapped["support_masks"], partner["support_masks"])


def test_a_support_blind_model_scores_the_same_with_foreign_supports() -> None:
    """The control separates models: a head that ignores the support is unaffected, a prototype head is not."""
    from data_utils.datasets import episodes_for_dataset
    from dpcn_lite.baselines import PrototypeSegmenter
    from dpcn_lite.evaluate import ForeignSupports, evaluate

    class SupportBlind(PrototypeSegmenter):
        def head(self, inputs, intermediates):
            return torch.stack([inputs.query_mid.mean(1), inputs.query_mid[:, 0]], dim=1)

    torch.manual_seed(0)
    blind, prototype = SupportBlind("tiny").eval(), PrototypeSegmenter("tiny").eval()
    episodes = episodes_for_dataset("synthetic", fold=0, split="test", shots=1, image_size=64, episodes=20,
                             images_per_class=3, cache_size=0, normalization=blind.normalization)
    foreign = ForeignSupports(episodes)
    same = evaluate(blind, episodes, progress=False), evaluate(blind, foreign, progress=False)
    assert same[0]["mIoU"] == same[1]["mIoU"] and same[0]["FB-IoU"] == same[1]["FB-IoU"]
    true_support, foreign_support = evaluate(prototype, episodes, progress=False), evaluate(prototype, foreign, progress=False)
    assert true_support["FB-IoU"] != foreign_support["FB-IoU"]


# ---------------------------------------------------------------------------------------------------------------
# Multi-scale testing
# ---------------------------------------------------------------------------------------------------------------


def _tiny_dpcn(**overrides) -> DPCN:
    torch.manual_seed(0)
    return DPCN(get_preset("tiny", train_layer4=False, **overrides)).eval()


def _reference(model, episodes) -> dict:
    """Single-scale evaluation written out: the model's logits, cropped, upsampled to the label, larger logit wins."""
    from dpcn_lite.metrics import FewShotIoU, prediction_at_original_size

    metric = FewShotIoU(episodes.classes)
    with torch.no_grad():
        for i in range(len(episodes)):
            episode = episodes[i]
            logits = model(episode["query_image"][None], episode["support_images"][None],
                           episode["support_masks"][None]).logits[0]
            label = episode["query_label_original"]
            metric.update(prediction_at_original_size(logits, episode["query_valid_hw"], label.shape[-2:]), label,
                          int(episode["class_id"]))
    return metric.compute()


def test_the_default_scale_gives_exactly_the_single_scale_result(cfg) -> None:
    model = _tiny_dpcn()
    episodes = episodes_for_config(cfg, "test", seed=2, episodes=6)
    default = evaluate(model, episodes, batch_size=3, progress=False)
    explicit = evaluate(model, episodes, batch_size=3, progress=False, scales=(1.0,))
    reference = _reference(model, episodes)
    for key in ("per_class_IoU", "FB-IoU", "fg_IoU", "bg_IoU"):
        assert explicit[key] == default[key] and explicit[key] == pytest.approx(reference[key], nan_ok=True)
    # Two copies of scale 1 go through the averaging path and must not move a single pixel either.
    doubled = evaluate(model, episodes, batch_size=3, progress=False, scales=(1, 1.0))
    assert doubled["per_class_IoU"] == pytest.approx(default["per_class_IoU"], abs=0, nan_ok=True)


@pytest.mark.parametrize("mask_support_high, cached", [(False, False), (True, False), (True, True)])
def test_multi_scale_resizes_the_query_only_and_averages_the_logits(cfg, mask_support_high: bool,
                                                                    cached: bool) -> None:
    from dpcn_lite.evaluate import episode_logits
    from data_utils.episodes import collate_episodes

    model = _tiny_dpcn(mask_support_high=mask_support_high)
    episodes = episodes_for_config(cfg, "test", seed=3, episodes=4)
    sizes = []
    model.backbone.register_forward_hook(lambda module, inputs, output: sizes.append(tuple(inputs[0].shape)))
    cache = FeatureCache(model, dtype=torch.float32) if cached else None
    result = evaluate(model, episodes, batch_size=2, progress=False, scales=(0.75, 1.0), feature_cache=cache)
    assert 0.0 <= result["mIoU"] <= 1.0 and 0.0 <= result["FB-IoU"] <= 1.0 and result["episodes"] == 4
    scaled = [s for s in sizes if s[-2:] == (48, 48)]
    assert len(scaled) == 2 and all(s[0] == 2 for s in scaled)  # 2 batches of 2 queries at 0.75 x 64; supports never
    # The averaged logits are the mean of each scale's logits, upsampled to the input grid.
    batch = collate_episodes([episodes[0], episodes[1]])
    with torch.no_grad():
        both = episode_logits(model, batch, torch.device("cpu"), (0.75, 1.0), cache)
        small = episode_logits(model, batch, torch.device("cpu"), (0.75,), cache)
        full = episode_logits(model, batch, torch.device("cpu"), (1.0,), cache)
    assert both.shape == full.shape == (2, 2, 64, 64) and not torch.allclose(small, full)
    torch.testing.assert_close(both, (small + full) / 2)


def test_scales_must_be_positive_and_at_most_4(cfg) -> None:
    from data_utils.errors import BadArgumentError

    episodes = episodes_for_config(cfg, "test", seed=0, episodes=2)
    for scales in [(0.0,), (-0.5, 1.0), (4.5,), (), (float("nan"),), "1.0", (True,)]:
        with pytest.raises(BadArgumentError, match="scale"):
            evaluate(AlwaysForeground(), episodes, progress=False, scales=scales)
    assert evaluate(_tiny_dpcn(), episodes, progress=False, scales=(4.0,))["episodes"] == 2


def test_evaluate_seeds_passes_the_scales_to_every_seed(cfg) -> None:
    model = _tiny_dpcn()
    make = lambda seed: episodes_for_config(cfg, "test", seed=seed, episodes=3)  # noqa: E731
    multi = evaluate_seeds(model, make, seeds=[0, 1], batch_size=3, progress=False, scales=(0.5, 1.0))
    single = [evaluate(model, make(seed), batch_size=3, progress=False, scales=(0.5, 1.0)) for seed in (0, 1)]
    assert [r["FB-IoU"] for r in multi["per_seed"]] == pytest.approx([100 * r["FB-IoU"] for r in single])
    plain = evaluate(model, make(0), batch_size=3, progress=False)
    assert plain["FB-IoU"] != single[0]["FB-IoU"]  # the scales change the result, so dropping them would show
    with pytest.raises(ValueError, match="scale"):
        evaluate_seeds(model, make, seeds=[0], progress=False, scales=(5.0,))
