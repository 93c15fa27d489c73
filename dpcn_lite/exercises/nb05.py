"""Checks for notebook 05 (FFM): the module's forward pass, the object/background gain, the split of its logit.

Each check runs the learner's function on small seeded inputs, compares it with the library
(:class:`dpcn_lite.modules.ffm.FeatureFilteringModule`) or with a value computed here, prints one ``✓`` line when it
agrees and raises :class:`~dpcn_lite.exercises.ExerciseError` with a hint when it does not.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from dpcn_lite.exercises import call_answer as _call, ExerciseError, expect, expect_close, passed
from dpcn_lite.modules.ffm import FeatureFilteringModule

__all__ = ["check_ffm_module", "check_logit_parts", "check_object_background_gain"]


def _pair(got: Any, what: str, order: str) -> tuple[Any, Any]:
    expect(isinstance(got, tuple | list) and len(got) == 2, f"{what}: return two tensors, {order}.")
    return got[0], got[1]


def _ffm_inputs(channels: int = 6, height: int = 5, width: int = 7) -> dict[str, Any]:
    """Two episodes; the second one's pseudo mask is all zeros (SAM sees nothing: only x_p reaches the conv)."""
    generator = torch.Generator().manual_seed(5)
    conv = nn.Conv2d(channels, 1, 3, padding=1)
    with torch.no_grad():
        conv.weight.copy_(0.3 * torch.randn(conv.weight.shape, generator=generator))
        conv.bias.fill_(0.7)
    query = torch.relu(torch.randn(2, channels, height, width, generator=generator))
    prototype = torch.randn(2, channels, generator=generator)
    pseudo_mask = torch.rand(2, 1, height, width, generator=generator)
    pseudo_mask[1] = 0.0
    return {"query": query, "prototype": prototype, "pseudo_mask": pseudo_mask, "conv": conv}


def check_ffm_module(answer: type[nn.Module]) -> None:
    """``answer`` is an FFM class: built as ``answer(C, 3)`` with a ``mask_conv``, its forward(query, prototype,
    pseudo_mask) must return (x~_q, M_pse^r) as the library's :class:`FeatureFilteringModule` does."""
    what = "FeatureFilteringModule.forward"
    data = _ffm_inputs()
    channels = data["query"].shape[1]
    library = FeatureFilteringModule(channels).eval()
    library.mask_conv.load_state_dict(data["conv"].state_dict())
    with torch.no_grad():
        filtered_ref, refined_ref = library(data["query"], data["prototype"], data["pseudo_mask"])
    try:
        module = answer(channels, 3).eval()
        module.load_state_dict(library.state_dict())
    except (RuntimeError, TypeError, AttributeError) as error:
        raise ExerciseError(f"{what}: building the module as {getattr(answer, '__name__', 'it')}({channels}, 3) and "
                            f"loading the library's weights failed ({type(error).__name__}: {error}). Keep __init__ "
                            "as given: one Conv2d(channels, 1, kernel_size) named mask_conv.") from None
    got = _call(module, data["query"].clone(), data["prototype"].clone(), data["pseudo_mask"].clone(),
                what=what, hint="x_p is the prototype broadcast to B x C x h x w: prototype[:, :, None, None].")
    filtered, refined = _pair(got, what, "(x~_q, M_pse^r)")
    if isinstance(filtered, torch.Tensor) and filtered.dim() == 4 and filtered.shape[1] == 1:
        raise ExerciseError(f"{what}: the first tensor has 1 channel; return (x~_q, M_pse^r) in that order.")
    if isinstance(refined, torch.Tensor) and refined.shape == refined_ref.shape:
        expect(bool(((refined > 0) & (refined < 1)).all()),
               f"{what}: M_pse^r has values outside (0, 1); did you apply the sigmoid to the convolution's output?")
    expect_close(refined, refined_ref, what=f"{what}, M_pse^r",
                 hint="M_pse^r = sigmoid(mask_conv(x_q * M_pse^0 + x_p)): gate the query with the pseudo mask and "
                      "add the expanded prototype, both BEFORE the convolution.")
    if isinstance(filtered, torch.Tensor) and filtered.shape == filtered_ref.shape:
        expect(not torch.allclose(filtered, data["query"] * refined_ref, atol=1e-5),
               f"{what}, x~_q: you returned x_q * M_pse^r; FFM keeps a residual: x~_q = x_q * M_pse^r + x_q.")
    expect_close(filtered, filtered_ref, what=f"{what}, x~_q",
                 hint="x~_q = x_q * M_pse^r + x_q (the refined mask, 1 channel, broadcasts over the C channels).")
    passed("FeatureFilteringModule: M_pse^r and x~_q agree with the library's module")


def _gain_reference(refined: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    gains = []
    for mask, label in zip(refined[:, 0], labels):
        gains.append((1 + mask[label == 1]).mean() / (1 + mask[label == 0]).mean())
    return torch.stack(gains)


def check_object_background_gain(answer: Callable[..., Any]) -> None:
    """``answer(refined, labels)``: per episode, mean of 1 + M_pse^r on the object over its mean on the background."""
    what = "object_background_gain"
    generator = torch.Generator().manual_seed(7)
    b, h, w = 3, 6, 6
    refined = torch.rand(b, 1, h, w, generator=generator) * 0.5
    labels = torch.zeros(b, h, w, dtype=torch.long)
    labels[0, 1:3, 1:4] = 1  # objects of different sizes: pooling over the batch would weight them differently
    labels[1, 2:6, 0:5] = 1
    labels[2, 0, 0] = 1
    labels[:, 5, 5] = 255  # ignored cells with a bright mask: they are neither object nor background
    refined[:, 0, 5, 5] = 0.99
    refined[0, 0, 1:3, 1:4] += 0.4
    hint = ("compare 1 + M_pse^r (the factor x~_q = x_q * (1 + M_pse^r) applies) averaged over the cells labelled 1 "
            "with its average over the cells labelled 0, one episode at a time; cells labelled 255 count as neither.")
    got = _call(answer, refined.clone(), labels.clone(), what=what, hint=hint)
    if isinstance(got, torch.Tensor) and got.dim() == 0:
        raise ExerciseError(f"{what}: got one number; return one gain per episode (a tensor of shape ({b},)).")
    expect_close(got, _gain_reference(refined, labels), what=what, hint=hint)
    closed = torch.zeros(1, 1, h, w)
    got_closed = _call(answer, closed, labels[:1].clone(), what=what, hint=hint)
    expect_close(got_closed, torch.ones(1), what=f"{what} of a closed gate (M_pse^r = 0 everywhere)",
                 hint="with M_pse^r = 0 the filtered feature is x_q itself: the gain must be exactly 1. " + hint)
    perfect = (labels[:1] == 1).float()[:, None]
    got_perfect = _call(answer, perfect, labels[:1].clone(), what=what, hint=hint)
    expect_close(got_perfect, torch.full((1,), 2.0), what=f"{what} of a perfect gate (M_pse^r = the object)",
                 hint="the object is doubled, the background kept: the gain must be exactly 2. " + hint)
    passed("object_background_gain: right per episode, 1 for a closed gate, 2 for a perfect one")


def check_logit_parts(answer: Callable[..., Any]) -> None:
    """``answer(query, prototype, pseudo_mask, conv)``: (conv(x_q * M_pse^0) with bias, conv(x_p) without bias)."""
    what = "logit_parts"
    data = _ffm_inputs()
    conv = data["conv"]
    with torch.no_grad():
        from_query_ref = conv(data["query"] * data["pseudo_mask"])
        expanded = data["prototype"][:, :, None, None].expand_as(data["query"])
        from_prototype_ref = F.conv2d(expanded, conv.weight, bias=None, padding=conv.padding)
        refined_ref = FeatureFilteringModule(data["query"].shape[1]).eval()
        refined_ref.mask_conv.load_state_dict(conv.state_dict())
        refined_ref = refined_ref(data["query"], data["prototype"], data["pseudo_mask"])[1]
    hint = ("the query part is conv(x_q * M_pse^0), bias included; the prototype part is the convolution of x_p with "
            "conv.weight, bias=None and padding=conv.padding, so that the two parts add up to conv's output.")
    got = _call(answer, data["query"].clone(), data["prototype"].clone(), data["pseudo_mask"].clone(), conv,
                what=what, hint=hint)
    from_query, from_prototype = _pair(got, what, "(query part, prototype part)")
    expect_close(from_query, from_query_ref, what=f"{what}, query part", hint=hint)
    if isinstance(from_prototype, torch.Tensor) and from_prototype.shape == from_prototype_ref.shape:
        expect(not torch.allclose(from_prototype, from_prototype_ref + conv.bias.detach(), atol=1e-5),
               f"{what}, prototype part: it includes the bias, which the query part already holds; "
               "use F.conv2d(x_p, conv.weight, bias=None, padding=conv.padding).")
    expect_close(from_prototype, from_prototype_ref, what=f"{what}, prototype part", hint=hint)
    expect_close(torch.sigmoid(from_query + from_prototype), refined_ref, what=f"{what}, sigmoid of the sum",
                 hint="the sigmoid of the two parts' sum must be FFM's M_pse^r.")
    passed("logit_parts: the two parts add up to FFM's logit, the bias counted once")
