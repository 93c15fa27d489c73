"""The activation plots draw real PNG files from a model's intermediates and return None."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from dpcn_lite.config import get_preset  # noqa: E402
from dpcn_lite.model import DPCN  # noqa: E402
from dpcn_lite.utils import seed_everything  # noqa: E402
from dpcn_lite.viz import activations as act  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_pca_rgb_separates_two_regions() -> None:
    features = torch.zeros(5, 4, 4)
    features[:, :, :2] = torch.randn(5, 1, 1)
    rgb = act.pca_rgb(features)
    assert rgb.shape == (4, 4, 3) and rgb.min() >= 0 and rgb.max() <= 1
    assert np.abs(rgb[:, 0] - rgb[:, 3]).sum() > 0.5 and np.allclose(rgb[:, 0], rgb[:, 1])


def test_every_plot_writes_a_png(tmp_path) -> None:
    seed_everything(0)
    model = DPCN(get_preset("tiny")).eval()
    query = torch.randn(1, 3, 64, 64)
    masks = torch.zeros(1, 1, 64, 64, dtype=torch.long)
    masks[..., 16:48, 16:40] = 1
    out = model(query, torch.randn(1, 1, 3, 64, 64), masks, return_intermediates=True)
    inter = out.intermediates
    image = act.display_image(query[0], *model.normalization)
    features = model.extract_features(query)
    calls = {
        "pca": lambda p: act.plot_feature_pca({"mid": features.mid[0], "high": features.high[0]}, image, path=p),
        "sam": lambda p: act.plot_activation_maps(inter, query_image=image, path=p),
        "pseudo": lambda p: act.plot_pseudo_masks(inter, query_image=image, query_mask=masks[0, 0].numpy(), path=p),
        "kernels": lambda p: act.plot_kernels(inter, channels=4, path=p),
        "responses": lambda p: act.plot_branch_responses(inter, path=p),
        "prediction": lambda p: act.plot_prediction(out.logits, query_image=image, query_mask=masks[0, 0].numpy(),
                                                    path=p),
    }
    for name, call in calls.items():
        path = tmp_path / f"{name}.png"
        assert call(path) is None
        assert path.read_bytes()[:8] == PNG_MAGIC, name


def test_missing_intermediates_are_explained() -> None:
    with pytest.raises(KeyError, match="use_sam"):
        act.plot_activation_maps({})
    with pytest.raises(KeyError, match="use_dcm"):
        act.plot_kernels({})
