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


def _grid_rows(n: int) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        mask = np.zeros((32, 32), dtype=np.int64)
        mask[8:24, 8:24] = 1
        rows.append({"support_image": rng.random((32, 32, 3)), "support_mask": mask,
                     "query_image": rng.random((32, 32, 3)), "query_mask": mask,
                     "predictions": {"DPCN": mask, "prototype": 1 - mask},
                     "ious": {"DPCN": i / n if i else float("nan"), "prototype": 0.5}, "caption": f"episode {i}"})
    return rows


def test_prediction_grid_sorts_by_the_first_model_and_keeps_the_worst(tmp_path, monkeypatch) -> None:
    from dpcn_lite.viz import training

    drawn = []
    real = training.overlay_mask
    monkeypatch.setattr(training, "overlay_mask", lambda image, mask: drawn.append(image) or real(image, mask))
    rows = _grid_rows(9)
    path = tmp_path / "grid.png"
    assert training.plot_prediction_grid(rows, models=("DPCN", "prototype"), count=4, path=path) is None
    assert path.read_bytes()[:8] == PNG_MAGIC
    shown = [next(i for i, row in enumerate(rows) if row["support_image"] is image) for image in drawn[::4]]
    assert shown == [8, 5, 3, 0]  # best first, evenly spaced ranks, the NaN episode (no IoU) last
    with pytest.raises(KeyError, match="prototype"):
        training.plot_prediction_grid([{**rows[0], "ious": {"DPCN": 0.5}}], models=("DPCN", "prototype"))
    with pytest.raises(ValueError, match="no episodes"):
        training.plot_prediction_grid([])


def test_prediction_grid_png_stays_small(tmp_path) -> None:
    """Textured pictures (stripes and noise, like the synthetic benchmark's) compress badly as plain PNG; the grid
    writes a palette PNG a few times smaller, so 12 rows stay within a notebook cell's budget."""
    import matplotlib.pyplot as plt
    from PIL import Image

    from dpcn_lite.viz import finish
    from dpcn_lite.viz.training import plot_prediction_grid

    rng = np.random.default_rng(1)
    rows = _grid_rows(12)
    stripes = (np.sin(np.arange(32) / 2.0)[None, :, None] + 1) / 2
    for row in rows:
        for key in ("support_image", "query_image"):
            row[key] = np.clip(0.6 * stripes * rng.random(3) + 0.2 * rng.random((32, 32, 3)), 0, 1)
    path = tmp_path / "grid.png"
    plot_prediction_grid(rows, models=("DPCN", "prototype"), path=path)
    with Image.open(path) as image:
        assert image.mode == "P" and image.height > image.width  # a palette; one row per episode
        size = image.size
    plain = tmp_path / "plain.png"
    fig = plt.figure(figsize=(size[0] / 72, size[1] / 72), dpi=72)
    fig.figimage(np.asarray(Image.open(path).convert("RGB")))
    finish(fig, plain)
    assert path.stat().st_size < 0.6 * plain.stat().st_size
    assert path.stat().st_size < 250_000


def test_image_prediction_figure(tmp_path) -> None:
    from types import SimpleNamespace

    from dpcn_lite.viz.training import plot_image_prediction

    mask = np.zeros((30, 50), dtype=np.uint8)
    mask[5:20, 10:30] = 1
    prediction = SimpleNamespace(support_image=np.full((40, 60, 3), 120, np.uint8), support_mask=np.pad(mask, 5),
                                 query_image=np.full((30, 50, 3), 200, np.uint8), mask=mask,
                                 probability=mask.astype(np.float32) * 0.9)
    path = tmp_path / "own.png"
    assert plot_image_prediction(prediction, path, title="DPCN") is None
    assert path.read_bytes()[:8] == PNG_MAGIC
