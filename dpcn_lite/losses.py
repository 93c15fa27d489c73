"""DPCN's training objective (paper §3.7): L = L_seg(s -> q) + lambda * L_seg(q -> s), all of it in this file.

* Main loss (:func:`segmentation_loss`): 2-class cross-entropy on the upsampled logits, 255 ignored (PFENet
  convention; equals BCE on the foreground probability).
* Reverse loss (:func:`reverse_loss`, PANet's alignment idea): the query and the argmax of its prediction act as a
  1-shot support, each support image becomes a query, and the prediction is scored against the support's own label.
  Episodes whose predicted foreground is empty are skipped (nothing to learn a prototype from).
* Their sum (:func:`episode_objective`), what ``FewShotSegmenter.loss`` returns and the loop back-propagates.

The objective needs only a way to segment: ``segment(query_features, support_features, support_masks, output_hw)``
returning logits (``FewShotSegmenter.forward_features`` without the intermediates), so it works for every head.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from data_utils.validation import IGNORE_INDEX
from dpcn_lite.backbones import BackboneFeatures, EpisodeFeatures

Segment = Callable[[BackboneFeatures, BackboneFeatures, torch.Tensor, tuple[int, int]], torch.Tensor]
"""(query features ``B x ...``, support features ``B x K x ...``, support masks ``B x K x H x W``, output size) ->
logits ``B x 2 x H x W``."""


def segmentation_loss(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Cross-entropy of ``logits`` Bx2xHxW against ``labels`` BxHxW in {0, 1, ignore_index}.

    A batch whose labels are all ignored gives 0 (still attached to the graph) instead of PyTorch's NaN.
    """
    if labels.shape[-2:] != logits.shape[-2:]:
        raise ValueError(f"Labels of size {tuple(labels.shape[-2:])} do not match logits {tuple(logits.shape[-2:])}.")
    labels = labels.long()
    if not bool((labels != ignore_index).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits, labels, ignore_index=ignore_index)


def predicted_support_masks(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Hard masks for the reverse pass: argmax of ``logits`` (BxH xW, no gradient) and which are non-empty (B,)."""
    masks = logits.detach().argmax(dim=1)
    return masks, masks.flatten(1).any(dim=1)


def reverse_loss(segment: Segment, features: EpisodeFeatures, logits: torch.Tensor, support_masks: torch.Tensor,
                 ignore_index: int = IGNORE_INDEX) -> tuple[torch.Tensor, int]:
    """Query + its predicted mask as a 1-shot support; each support image as a query (PANet's alignment).

    Returns the loss and how many episodes entered it (those with a non-empty predicted mask).
    """
    predicted, non_empty = predicted_support_masks(logits)
    if not bool(non_empty.any()):
        return logits.sum() * 0.0, 0
    k = support_masks.shape[1]
    keep = non_empty.nonzero().flatten()

    def as_support(t: torch.Tensor) -> torch.Tensor:  # B x ... -> (b'K) x 1 x ...
        return t[keep].repeat_interleave(k, dim=0)[:, None]

    def as_queries(t: torch.Tensor) -> torch.Tensor:  # B x K x ... -> (b'K) x ...
        return t[keep].flatten(0, 1)

    reverse_query = BackboneFeatures(as_queries(features.support.mid), as_queries(features.support.high))
    reverse_support = BackboneFeatures(as_support(features.query.mid), as_support(features.query.high))
    labels = as_queries(support_masks)
    reverse_logits = segment(reverse_query, reverse_support, as_support(predicted), tuple(labels.shape[-2:]))
    return segmentation_loss(reverse_logits, labels, ignore_index), int(keep.numel())


def episode_objective(segment: Segment, features: EpisodeFeatures, query_mask: torch.Tensor,
                      support_masks: torch.Tensor, *, reverse_weight: float = 1.0,
                      ignore_index: int = IGNORE_INDEX) -> dict[str, Any]:
    """L = main + lambda x reverse on an episode batch's backbone features (paper §3.7, lambda = ``reverse_weight``).

    Returns ``loss`` (to backpropagate), ``main`` and ``reverse`` (detached), ``logits`` (B x 2 x H x W) and
    ``reverse_episodes`` (how many episodes entered the reverse loss).
    """
    logits = segment(features.query, features.support, support_masks, tuple(query_mask.shape[-2:]))
    main = segmentation_loss(logits, query_mask, ignore_index)
    reverse = main.new_zeros(())
    used = 0
    if reverse_weight > 0:
        reverse, used = reverse_loss(segment, features, logits, support_masks, ignore_index)
    total = main + reverse_weight * reverse
    return {"loss": total, "main": main.detach(), "reverse": reverse.detach(), "logits": logits,
            "reverse_episodes": used}
