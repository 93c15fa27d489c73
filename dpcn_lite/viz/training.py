"""Figures of a training run: the loss and learning-rate curves, and predictions next to the ground truth."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


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
