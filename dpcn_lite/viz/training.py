"""Figures of a training run: the loss and learning-rate curves, predictions next to the ground truth, several
models' predictions on the same episodes sorted by IoU, and one episode of your own images."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dpcn_lite.viz import finish, overlay_mask


def plot_training_curves(history: Sequence[dict], path: str | Path | None = None, title: str = "") -> None:
    """Loss (total, main, reverse) and learning rate per epoch, from the rows of ``history.jsonl``."""
    import matplotlib.pyplot as plt

    if not history:
        raise ValueError("history is empty: nothing was trained yet.")
    epochs = [row["epoch"] for row in history]
    fig, (ax_loss, ax_lr) = plt.subplots(1, 2, figsize=(9, 3.2), dpi=100)
    for key, style in (("loss", "-"), ("main", "--"), ("reverse", ":")):
        if key in history[0]:
            ax_loss.plot(epochs, [row[key] for row in history], style, marker="o", markersize=3, label=key)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("training loss (epoch mean)")
    ax_loss.legend(frameon=False)
    ax_loss.grid(alpha=0.3)
    ax_lr.plot(epochs, [row["lr"] for row in history], color="0.3", marker="o", markersize=3)
    ax_lr.set_xlabel("epoch")
    ax_lr.set_ylabel("learning rate (end of epoch)")
    ax_lr.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    finish(fig, path)


def plot_predictions(
    rows: Sequence[dict],
    path: str | Path | None = None,
    title: str = "",
) -> None:
    """One row per episode: support (with mask), query with ground truth, query with prediction.

    Each row is a dict with ``support_image`` (H×W×3 in [0, 1]), ``support_mask``, ``query_image``, ``query_mask``,
    ``prediction`` (0/1, same size as the query) and optionally ``caption`` (e.g. the class name and the episode IoU).
    """
    import matplotlib.pyplot as plt

    if not rows:
        raise ValueError("no episodes to draw")
    fig, axes = plt.subplots(len(rows), 3, figsize=(7.5, 2.5 * len(rows)), dpi=100, squeeze=False)
    for r, row in enumerate(rows):
        panels = (
            (overlay_mask(row["support_image"], row["support_mask"]), "support + mask"),
            (overlay_mask(row["query_image"], row["query_mask"]), "query + ground truth"),
            (overlay_mask(row["query_image"], row["prediction"]), "query + prediction"),
        )
        for c, (image, label) in enumerate(panels):
            axes[r, c].imshow(image)
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
            if r == 0:
                axes[r, c].set_title(label, fontsize=9)
        if row.get("caption"):
            axes[r, 0].set_ylabel(row["caption"], fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    finish(fig, path)


def finish_compact(fig, path: str | Path | None = None, colors: int = 256) -> None:
    """Like :func:`dpcn_lite.viz.finish`, for figures full of photographs or textures: the PNG is reduced to a palette
    of ``colors`` colours (no dithering), which keeps it 3-4 times smaller at no visible cost. Shown inline (as PNG
    through IPython) when no ``path`` is given; the figure is always closed."""
    import io

    import matplotlib.pyplot as plt
    from PIL import Image

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=fig.dpi, bbox_inches="tight")
    plt.close(fig)
    buffer.seek(0)
    with Image.open(buffer) as image:
        palette = image.convert("RGB").quantize(colors=colors, method=Image.Quantize.MEDIANCUT,
                                                dither=Image.Dither.NONE)
    out = io.BytesIO()
    palette.save(out, format="PNG", optimize=True)
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(out.getvalue())
        return
    from IPython.display import Image as ShownImage, display

    display(ShownImage(data=out.getvalue(), format="png"))


def _rank_spread(order: list[int], count: int | None) -> list[int]:
    """``count`` items of ``order`` at evenly spaced ranks, the first and the last always among them."""
    if count is None or count >= len(order):
        return order
    if count < 2:
        raise ValueError("count must be at least 2 (the best and the worst episode)")
    picks = np.linspace(0, len(order) - 1, count).round().astype(int)
    return [order[i] for i in picks]


def plot_prediction_grid(
    rows: Sequence[dict],
    models: Sequence[str] = ("DPCN", "baseline"),
    count: int | None = None,
    path: str | Path | None = None,
    title: str = "",
    panel_size: float = 1.3,
    dpi: int = 72,
) -> None:
    """Several models' predictions on the same episodes, one row per episode, sorted by the first model's IoU.

    Each row is a dict with ``support_image`` and ``query_image`` (H×W×3 in [0, 1]), ``support_mask`` and
    ``query_mask`` ({0, 1, 255}), ``predictions`` (model name -> 0/1 mask of the query's size), ``ious`` (model name
    -> that episode's foreground IoU, a fraction; NaN when nothing was counted) and optionally ``caption``, written
    beside the row (e.g. the class name and the episode's rank; without one, the rank among ``rows``). Columns: support with its mask, query with the ground truth, then each model's prediction with its
    IoU. Rows run from the first model's best episode to its worst (NaN last); with ``count``, that many rows are
    taken at evenly spaced ranks, the best and the worst always included, so failures are never left out.
    """
    import matplotlib.pyplot as plt

    if not rows:
        raise ValueError("no episodes to draw")
    if not models:
        raise ValueError("name at least one model")
    for row in rows:
        missing = [m for m in models if m not in row.get("predictions", {}) or m not in row.get("ious", {})]
        if missing:
            raise KeyError(f"a row has no prediction or IoU for {missing}; each row needs 'predictions' and 'ious' "
                           f"for every model in {list(models)}")

    def key(index: int) -> float:
        iou = float(rows[index]["ious"][models[0]])
        return -math.inf if math.isnan(iou) else iou

    order = sorted(range(len(rows)), key=key, reverse=True)
    shown = _rank_spread(order, count)
    columns = 2 + len(models)
    fig, axes = plt.subplots(len(shown), columns, figsize=(panel_size * columns + 0.6, panel_size * len(shown) + 0.5),
                             dpi=dpi, squeeze=False)
    for r, index in enumerate(shown):
        row = rows[index]
        panels = [(overlay_mask(row["support_image"], row["support_mask"]), "support + mask"),
                  (overlay_mask(row["query_image"], row["query_mask"]), "query + truth")]
        for model in models:
            iou = float(row["ious"][model])
            panels.append((overlay_mask(row["query_image"], row["predictions"][model]),
                           "IoU n/a" if math.isnan(iou) else f"IoU {100 * iou:.0f}"))
        for c, (image, label) in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(image)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel(label if c >= 2 else "", fontsize=7, labelpad=1)
            if r == 0:
                ax.set_title(label if c < 2 else models[c - 2], fontsize=8)
        axes[r, 0].set_ylabel(row.get("caption") or f"#{order.index(index) + 1} of {len(rows)}", fontsize=7)
    top = 1.0
    if title:
        fig.suptitle(title, fontsize=9)
        top -= 0.3 / fig.get_figheight()  # room for the title above the column titles
    fig.tight_layout(pad=0.3, h_pad=0.2, w_pad=0.2, rect=(0.0, 0.0, 1.0, top))
    finish_compact(fig, path)


def plot_image_prediction(prediction, path: str | Path | None = None, title: str = "") -> None:
    """One episode of your own images: support with its mask, query, foreground probability, predicted mask.

    ``prediction`` has ``support_image``, ``support_mask``, ``query_image`` (uint8 or [0, 1] pictures and 0/1 masks
    at their original sizes), ``probability`` and ``mask`` (the query's size), e.g. a
    :class:`dpcn_lite.predict.Prediction`.
    """
    import matplotlib.pyplot as plt

    from dpcn_lite.viz import ACTIVATION_CMAP

    query = np.asarray(prediction.query_image, dtype=np.float32)
    query = query / 255.0 if query.max() > 1.0 else query
    share = 100 * float(np.mean(prediction.mask))
    panels = [(overlay_mask(prediction.support_image, prediction.support_mask), "support + its mask", None),
              (query, "query", None),
              (np.asarray(prediction.probability), "P(object)", ACTIVATION_CMAP),
              (overlay_mask(query, prediction.mask), f"predicted mask ({share:.0f}% of pixels)", None)]
    aspect = max(np.asarray(p).shape[0] / np.asarray(p).shape[1] for p, _, _ in panels)  # height / width
    panel = 2.4
    fig, axes = plt.subplots(1, 4, figsize=(4 * panel, panel * aspect + (0.75 if title else 0.45)), dpi=90)
    for ax, (picture, label, cmap) in zip(axes, panels):
        if cmap is None:
            ax.imshow(picture)
        else:
            ax.imshow(picture, cmap=cmap, vmin=0.0, vmax=1.0)
        ax.set_title(label, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    finish_compact(fig, path)
