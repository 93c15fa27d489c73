"""DPCN's training objective (paper §3.7): L = L_seg(s -> q) + lambda * L_seg(q -> s).

* Main loss: 2-class cross-entropy on the upsampled logits, 255 ignored (PFENet convention; equals BCE on the
  foreground probability).
* Reverse loss (PANet's alignment idea): the query and the argmax of its prediction act as a 1-shot support, each
  support image becomes a query, and the prediction is scored against the support's own label. Episodes whose
  predicted foreground is empty are skipped (nothing to learn a prototype from).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def segmentation_loss(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = 255) -> torch.Tensor:
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
