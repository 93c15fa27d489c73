"""Training from cached backbone features is the same computation as training through the frozen backbone."""

from __future__ import annotations

import pytest
import torch

from data_utils.episodes import collate_episodes
from dpcn_lite.config import get_preset, resolve_config
from dpcn_lite.experiment import episodes_for_config, source_key
from dpcn_lite.feature_cache import FeatureCache
from dpcn_lite.model import DPCN


@pytest.fixture(scope="module")
def batch() -> dict:
    cfg = resolve_config("tiny", synthetic_images_per_class=3, model_overrides={"train_layer4": False})
    episodes = episodes_for_config(cfg, "train", seed=0, episodes=3)
    return collate_episodes([episodes[i] for i in range(3)])


def frozen_model(**overrides) -> DPCN:
    torch.manual_seed(0)
    return DPCN(get_preset("tiny", train_layer4=False, **overrides)).train()


@pytest.mark.parametrize("mask_support_high", [False, True])
def test_cached_features_give_the_same_loss_and_gradients_as_the_backbone(batch: dict, mask_support_high: bool) -> None:
    """The cache stores the features of the images alone; with ``mask_support_high`` the model makes the support's
    layer4 again from the cached layer3 and the episode's mask, so one cache serves every mask."""
    model = frozen_model(mask_support_high=mask_support_high)
    cache = FeatureCache(model, dtype=torch.float32)

    torch.manual_seed(1)  # the same dropout masks in both passes
    through_backbone = model.loss(batch)
    through_backbone["loss"].backward()
    expected_grads = [p.grad.clone() for p in model.parameters() if p.requires_grad]
    model.zero_grad()

    features = cache.episode_features(batch)
    torch.manual_seed(1)
    from_cache = model.loss(batch, features=features)
    from_cache["loss"].backward()
    assert from_cache["loss"].item() == pytest.approx(through_backbone["loss"].item(), rel=1e-6)
    assert from_cache["main"].item() == pytest.approx(through_backbone["main"].item(), rel=1e-6)
    for expected, p in zip(expected_grads, (p for p in model.parameters() if p.requires_grad)):
        torch.testing.assert_close(p.grad, expected, rtol=1e-5, atol=1e-6)


def test_each_image_runs_through_the_backbone_once(batch: dict) -> None:
    model = frozen_model()
    cache = FeatureCache(model)
    calls = []
    model.backbone.register_forward_hook(lambda module, inputs, output: calls.append(inputs[0].shape[0]))
    cache.episode_features(batch)
    unique_ids = set(batch["query_id"]) | {i for ids in batch["support_ids"] for i in ids}
    assert sum(calls) == len(unique_ids)
    assert len(cache) == len(unique_ids)
    calls.clear()
    features = cache.episode_features(batch)
    assert calls == []  # second time: all hits
    assert cache.hits == 2 * len(batch["query_id"]) and features.support.mid.dim() == 5


def test_float16_storage_changes_the_loss_only_slightly(batch: dict) -> None:
    model = frozen_model().eval()
    exact = model.loss(batch, features=FeatureCache(model, torch.float32).episode_features(batch))["main"]
    half = model.loss(batch, features=FeatureCache(model, torch.float16).episode_features(batch))["main"]
    assert half.item() == pytest.approx(exact.item(), rel=1e-2)


def test_a_trainable_backbone_cannot_be_cached() -> None:
    with pytest.raises(ValueError, match="frozen backbone"):
        FeatureCache(DPCN(get_preset("tiny", train_layer4=True)))


def test_lookup_of_an_unseen_image_is_a_clear_error() -> None:
    with pytest.raises(KeyError, match="not cached"):
        FeatureCache(frozen_model()).lookup(["train-00000"])


def test_a_cache_refuses_images_of_another_benchmark_size_or_dataset() -> None:
    v2 = source_key(resolve_config("cpu"))
    keys = {v2, source_key(resolve_config("cpu", synthetic_benchmark="shapes")),
            source_key(resolve_config("tiny", model_overrides={"train_layer4": False})),
            source_key(resolve_config("cpu", synthetic_images_per_class=4)), source_key(resolve_config("cpu", "pascal"))}
    assert len(keys) == 5 and "categories-v2" in v2
    cache = FeatureCache(frozen_model(), key=v2)
    assert cache.check_key(v2) is cache
    with pytest.raises(ValueError, match="shapes-v1"):
        cache.check_key(source_key(resolve_config("cpu", synthetic_benchmark="shapes")))
    unnamed = FeatureCache(frozen_model())
    unnamed.check_key(v2)  # an unnamed cache takes the first key it is checked against ...
    with pytest.raises(ValueError, match="Use a fresh cache"):
        unnamed.check_key(source_key(resolve_config("cpu", synthetic_benchmark="shapes")))  # ... and keeps it


def test_a_cache_refuses_another_backbone_or_storage_type() -> None:
    key = source_key(resolve_config("cpu"))
    cache = FeatureCache(frozen_model(), dtype=torch.float16, key=key)
    assert "tiny_cnn (random init) as torch.float16" in cache.identity and "rendering seed 0" in cache.identity
    cache.check_key(key, frozen_model(), torch.float16)  # another instance of the same backbone is fine
    with pytest.raises(ValueError, match="float32"):
        cache.check_key(key, dtype=torch.float32)
    other = frozen_model()
    other.config = other.config.replace(backbone="resnet18")  # a config naming another backbone
    with pytest.raises(ValueError, match="resnet18"):
        cache.check_key(key, other)


def test_an_image_id_with_other_pixels_is_refused_not_served_stale() -> None:
    """The same id at another image size, or another rendering, must never get the stored features."""
    from data_utils.synthetic import SyntheticSource

    model = frozen_model()
    cache = FeatureCache(model, dtype=torch.float32)
    def image(size: int, seed: int) -> torch.Tensor:
        picture = SyntheticSource(image_size=size, seed=seed, images_per_class=2).load("train-00001")[0]
        return torch.from_numpy(picture).permute(2, 0, 1).float()[None] / 255
    cache.add(["train-00001"], image(64, 0))
    cache.add(["train-00001"], image(64, 0))  # the same pixels: a hit
    assert len(cache) == 1
    with pytest.raises(ValueError, match="other pixels.*stale"):
        cache.add(["train-00001"], image(48, 0))  # another image size
    with pytest.raises(ValueError, match="other pixels"):
        cache.add(["train-00001"], image(64, 1))  # another rendering seed
