"""k-shot fusion of per-shot predictions: the alternatives of the paper's Table 7, for any head.

The paper's own k-shot rule (``kshot_fusion="pool"``) lives inside DPCN's head: the foreground vectors of all shots
are pooled into one set of dynamic kernels, SAM maps and prototypes are averaged over shots. The other modes run the
head once per shot, as K one-shot episodes (:func:`one_shot_episodes`), and fuse the K predictions here:

* ``mask_avg``: average the per-shot foreground probabilities;
* ``vote`` (HSNet): a pixel is foreground when at least half as many shots vote for it as the pixel with the most
  votes (votes = per-shot argmax);
* ``or``: foreground when any shot says so; the probability is the maximum over shots (same argmax).

The fused probability p is returned as logits (log(1 - p), log p), so argmax and softmax keep their meaning.
"""

from __future__ import annotations

import torch

FUSED_PROBABILITY_EPS = 1e-6
"""Fused probabilities are clamped to [eps, 1 - eps] before the log, so the logits stay finite."""


def per_shot(t: torch.Tensor) -> torch.Tensor:
    """Support-side tensor ``B x K x ...`` -> ``(BK) x 1 x ...``: each shot becomes the one support of an episode."""
    return t.flatten(0, 1)[:, None]


def repeat_per_shot(t: torch.Tensor, shots: int) -> torch.Tensor:
    """Query-side tensor ``B x ...`` -> ``(BK) x ...``: the query repeated once per shot, matching :func:`per_shot`."""
    return t.repeat_interleave(shots, dim=0)


def fuse_probabilities(probabilities: torch.Tensor, mode: str) -> torch.Tensor:
    """``B x K x h x w`` per-shot foreground probabilities -> ``B x h x w`` fused foreground probability."""
    if mode == "mask_avg":
        return probabilities.mean(dim=1)
    if mode == "or":
        return probabilities.max(dim=1).values
    if mode == "vote":
        votes = (probabilities > 0.5).float().sum(dim=1)
        most = votes.flatten(1).max(dim=1).values.clamp(min=1.0)[:, None, None]
        return (votes / most >= 0.5).float()
    raise ValueError(f"Unknown kshot_fusion {mode!r}.")


def fuse_shot_logits(logits: torch.Tensor, shots: int, mode: str,
                     intermediates: dict[str, torch.Tensor]) -> torch.Tensor:
    """Per-shot logits ``(BK) x 2 x h x w`` -> fused logits ``B x 2 x h x w``; stores ``shot_probabilities``."""
    probabilities = logits.softmax(dim=1)[:, 1].view(-1, shots, *logits.shape[-2:])
    fused = fuse_probabilities(probabilities, mode)
    intermediates["shot_probabilities"] = probabilities
    fused = fused.clamp(FUSED_PROBABILITY_EPS, 1 - FUSED_PROBABILITY_EPS)
    return torch.stack([torch.log1p(-fused), torch.log(fused)], dim=1)
