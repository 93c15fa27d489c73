"""The main job's factories: a TrainConfig becomes a source, episodes at the model's size and normalisation, a model."""

from __future__ import annotations

import pytest
import torch

from data_utils.folds import fold_classes
from data_utils.transforms import EFFICIENTNET_LITE_NORMALIZATION
from dpcn_lite.baselines import PriorMaskSegmenter, PrototypeSegmenter
from dpcn_lite.config import MODEL_NAMES, get_preset, resolve_config
from dpcn_lite.experiment import episodes_for_config, evaluate_on_test, make_source
from dpcn_lite.model import DPCN, HEADS, build_model


@pytest.fixture(scope="module")
def cfg():
    return resolve_config("tiny", fold=1, synthetic_images_per_class=4)


def test_the_source_is_rendered_at_the_presets_image_size(cfg) -> None:
    source = make_source(cfg)
    assert source.image_size == cfg.model_config().image_size == 64
    assert source.num_images("test") == 4 * 20
    assert source.num_images("train") == 4 * 20 + 200 * 10  # categories: 200 generated classes, 10 images each
    assert source.benchmark.tag == "categories-v2"


def test_runs_of_one_process_share_the_rendered_images_of_a_source(cfg) -> None:
    """Two runs on the same images reuse one source (its rendering cache); other images get their own."""
    source = make_source(cfg)
    source.load("train-00003")
    again = make_source(resolve_config("tiny", fold=2, seed=5, synthetic_images_per_class=4))
    assert again is source and "train-00003" in again._cache  # fold and seed do not change the pictures
    other = make_source(resolve_config("tiny", fold=1, synthetic_images_per_class=5))
    assert other is not source and other.num_images("test") == 5 * 20


def test_test_episodes_are_the_folds_novel_classes_and_train_episodes_the_others(cfg) -> None:
    test = episodes_for_config(cfg, "test", seed=0, episodes=5)
    train = episodes_for_config(cfg, "train", seed=0, episodes=5)
    assert test.classes == fold_classes("synthetic", 1, "test")
    # the named base classes, then categories' generated training classes
    assert train.classes == fold_classes("synthetic", 1, "train") + list(range(21, 221))
    assert test[0]["query_image"].shape == (3, 64, 64) and test[0]["support_images"].shape == (1, 3, 64, 64)


def test_no_episode_count_means_one_pass_over_the_pool(cfg) -> None:
    """Training: PFENet's epoch, each training image once; testing: one episode per (image, class) pair."""
    train = episodes_for_config(cfg, "train", seed=0, episodes=None)
    assert train.per_image and len(train) == len(train.images) > 5
    test = episodes_for_config(cfg, "test", seed=0, episodes=None)
    assert not test.per_image and len(test) == len(test.pairs) > 5


def test_episodes_use_the_normalisation_of_the_configs_backbone() -> None:
    cfg = resolve_config("cpu", synthetic_images_per_class=2)
    episode = episodes_for_config(cfg, "test", seed=0, episodes=1)[0]
    image, _ = make_source(cfg).load(episode["query_id"])
    mean = torch.tensor(EFFICIENTNET_LITE_NORMALIZATION.mean)[:, None, None]
    std = torch.tensor(EFFICIENTNET_LITE_NORMALIZATION.std)[:, None, None]
    expected = (torch.from_numpy(image).permute(2, 0, 1) / 255.0 - mean) / std
    assert torch.allclose(episode["query_image"], expected, atol=1e-5)


def test_build_model_knows_every_model_name() -> None:
    assert tuple(HEADS) == MODEL_NAMES
    config = get_preset("tiny")
    for name, kind in zip(MODEL_NAMES, (DPCN, PrototypeSegmenter, PriorMaskSegmenter)):
        assert type(build_model(name, config)) is kind
    with pytest.raises(ValueError, match="dpcn"):
        build_model("unet", config)


def test_evaluation_defaults_to_the_configs_episodes_and_seeds() -> None:
    cfg = resolve_config("tiny", fold=1, synthetic_images_per_class=4, eval_episodes=3, eval_seeds=(0, 1))
    torch.manual_seed(0)
    metrics = evaluate_on_test(DPCN(cfg.model_config()), cfg, progress=False)
    assert metrics["episodes"] == 3 and metrics["eval_seeds"] == [0, 1] and metrics["fold"] == 1
    assert 0.0 <= metrics["mIoU"] <= 100.0
