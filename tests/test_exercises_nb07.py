"""Notebook 07's exercise checks: a right answer passes; typical wrong answers and an unfinished stub are named."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from dpcn_lite.backbones import BackboneFeatures
from dpcn_lite.exercises import ExerciseError, nb07
from dpcn_lite.modules.prototypes import expand_prototype


def stub(*args, **kwargs):
    raise NotImplementedError("Exercise: write it")


# --- the fusion -------------------------------------------------------------------------------------------------------


def fuse_right(x_v, x_h, x_s, prototype, activation_maps, refined_mask):
    grid = x_v.shape[-2:]
    x_p = prototype[:, :, None, None].expand(-1, -1, *grid)
    return torch.cat([x_v, x_h, x_s, x_p, activation_maps, refined_mask], dim=1)


def fuse_prototype_first(x_v, x_h, x_s, prototype, activation_maps, refined_mask):
    return torch.cat([expand_prototype(prototype, tuple(x_v.shape[-2:])), x_v, x_h, x_s, activation_maps,
                      refined_mask], dim=1)


def fuse_without_mask(x_v, x_h, x_s, prototype, activation_maps, refined_mask):
    return torch.cat([x_v, x_h, x_s, expand_prototype(prototype, tuple(x_v.shape[-2:])), activation_maps], dim=1)


def fuse_unbroadcast(x_v, x_h, x_s, prototype, activation_maps, refined_mask):
    return torch.cat([x_v, x_h, x_s, prototype, activation_maps, refined_mask], dim=1)


def test_fusion_right_answer_passes(capsys) -> None:
    nb07.check_fusion(fuse_right)
    assert capsys.readouterr().out.startswith("✓ fuse")


@pytest.mark.parametrize("answer, words", [
    (fuse_prototype_first, "the order is"),
    (fuse_without_mask, r"expected 4C \+ 4"),
    (fuse_unbroadcast, "give it the grid's h x w first"),
    (stub, "not done yet"),
])
def test_fusion_wrong_answers_are_named(answer, words) -> None:
    with pytest.raises(ExerciseError, match=words):
        nb07.check_fusion(answer)


# --- the two losses ---------------------------------------------------------------------------------------------------


def two_losses_right(segment, features, query_mask, support_masks, reverse_weight=1.0):
    logits = segment(features.query, features.support, support_masks, tuple(query_mask.shape[-2:]))
    main = F.cross_entropy(logits, query_mask, ignore_index=255)
    predicted = logits.argmax(dim=1)
    keep = predicted.flatten(1).any(dim=1).nonzero().flatten()
    reverse = main.new_zeros(())
    if len(keep):
        reverse_query = BackboneFeatures(features.support.mid[keep, 0], features.support.high[keep, 0])
        reverse_support = BackboneFeatures(features.query.mid[keep, None], features.query.high[keep, None])
        labels = support_masks[keep, 0]
        reverse_logits = segment(reverse_query, reverse_support, predicted[keep, None], tuple(labels.shape[-2:]))
        reverse = F.cross_entropy(reverse_logits, labels, ignore_index=255)
    return main, reverse, main + reverse_weight * reverse


def two_losses_no_ignore(segment, features, query_mask, support_masks, reverse_weight=1.0):
    main, reverse, _ = two_losses_right(segment, features, query_mask, support_masks, reverse_weight)
    logits = segment(features.query, features.support, support_masks, tuple(query_mask.shape[-2:]))
    main = F.cross_entropy(logits, query_mask.clamp(max=1))  # 255 counted as foreground
    return main, reverse, main + reverse_weight * reverse


def two_losses_crash_on_255(segment, features, query_mask, support_masks, reverse_weight=1.0):
    logits = segment(features.query, features.support, support_masks, tuple(query_mask.shape[-2:]))
    F.cross_entropy(logits, query_mask)  # PyTorch refuses the label 255
    raise AssertionError("unreachable")


def two_losses_no_skip(segment, features, query_mask, support_masks, reverse_weight=1.0):
    logits = segment(features.query, features.support, support_masks, tuple(query_mask.shape[-2:]))
    main = F.cross_entropy(logits, query_mask, ignore_index=255)
    predicted = logits.argmax(dim=1)
    reverse_query = BackboneFeatures(features.support.mid[:, 0], features.support.high[:, 0])
    reverse_support = BackboneFeatures(features.query.mid[:, None], features.query.high[:, None])
    reverse_logits = segment(reverse_query, reverse_support, predicted[:, None], tuple(query_mask.shape[-2:]))
    reverse = F.cross_entropy(reverse_logits, support_masks[:, 0], ignore_index=255)
    return main, reverse, main + reverse_weight * reverse


def two_losses_no_weight(segment, features, query_mask, support_masks, reverse_weight=1.0):
    main, reverse, _ = two_losses_right(segment, features, query_mask, support_masks, reverse_weight)
    return main, reverse, main + reverse


def test_two_losses_right_answer_passes(capsys) -> None:
    nb07.check_two_losses(two_losses_right)
    assert capsys.readouterr().out.startswith("✓ two_losses")


@pytest.mark.parametrize("answer, words", [
    (two_losses_no_ignore, "main loss"),
    (two_losses_crash_on_255, "ignore_index=255"),
    (two_losses_no_skip, "skip the episodes whose predicted mask is empty"),
    (two_losses_no_weight, "lambda = 0.5"),
    (stub, "not done yet"),
])
def test_two_losses_wrong_answers_are_named(answer, words) -> None:
    with pytest.raises(ExerciseError, match=words):
        nb07.check_two_losses(answer)


# --- the poly schedule ------------------------------------------------------------------------------------------------


def poly_right(base_lr, iteration, max_iterations, power=0.9):
    return base_lr * (1 - min(iteration, max_iterations) / max_iterations) ** power


def poly_power_inside(base_lr, iteration, max_iterations, power=0.9):
    return base_lr * (1 - (min(iteration, max_iterations) / max_iterations) ** power)


def poly_off_by_one(base_lr, iteration, max_iterations, power=0.9):
    return base_lr * (1 - min(iteration + 1, max_iterations) / max_iterations) ** power


def poly_unclamped(base_lr, iteration, max_iterations, power=0.9):
    return float(torch.tensor(1 - iteration / max_iterations, dtype=torch.float64) ** power * base_lr)


def test_poly_right_answer_passes(capsys) -> None:
    nb07.check_poly_lr(poly_right)
    assert capsys.readouterr().out.startswith("✓ poly_lr")


@pytest.mark.parametrize("answer, words", [
    (poly_power_inside, "the power applies to the whole bracket"),
    (poly_off_by_one, "iteration 0 gives base_lr"),
    (poly_unclamped, "clamp the iteration"),
    (stub, "not done yet"),
])
def test_poly_wrong_answers_are_named(answer, words) -> None:
    with pytest.raises(ExerciseError, match=words):
        nb07.check_poly_lr(answer)


# --- the protocol -----------------------------------------------------------------------------------------------------


def protocol_right(counts, class_ids, fold_classes):
    inter = {c: 0 for c in fold_classes}
    union = {c: 0 for c in fold_classes}
    fg_i = fg_u = bg_i = bg_u = 0
    for episode, c in zip(counts, class_ids):
        inter[c] += episode.fg_intersection
        union[c] += episode.fg_union
        fg_i, fg_u = fg_i + episode.fg_intersection, fg_u + episode.fg_union
        bg_i, bg_u = bg_i + episode.bg_intersection, bg_u + episode.bg_union
    per_class = {c: inter[c] / union[c] if union[c] else math.nan for c in fold_classes}
    scored = [v for v in per_class.values() if not math.isnan(v)]
    return {"per_class": per_class, "mIoU": sum(scored) / len(scored), "FB-IoU": (fg_i / fg_u + bg_i / bg_u) / 2}


def protocol_mean_of_ratios(counts, class_ids, fold_classes):
    result = protocol_right(counts, class_ids, fold_classes)
    for c in fold_classes:
        ious = [e.fg_intersection / e.fg_union for e, k in zip(counts, class_ids) if k == c]
        result["per_class"][c] = sum(ious) / len(ious) if ious else math.nan
    return result


def protocol_empty_class_zero(counts, class_ids, fold_classes):
    result = protocol_right(counts, class_ids, fold_classes)
    result["per_class"] = {c: 0.0 if math.isnan(v) else v for c, v in result["per_class"].items()}
    result["mIoU"] = sum(result["per_class"].values()) / len(fold_classes)
    return result


def protocol_fb_foreground_only(counts, class_ids, fold_classes):
    result = protocol_right(counts, class_ids, fold_classes)
    result["FB-IoU"] = sum(e.fg_intersection for e in counts) / sum(e.fg_union for e in counts)
    return result


def test_protocol_right_answer_passes(capsys) -> None:
    nb07.check_protocol_scores(protocol_right)
    assert capsys.readouterr().out.startswith("✓ protocol_scores")


@pytest.mark.parametrize("answer, words", [
    (protocol_mean_of_ratios, "mean of the episodes' IoUs"),
    (protocol_empty_class_zero, "has no episode, so its IoU is NaN"),
    (protocol_fb_foreground_only, "FB-IoU"),
    (stub, "not done yet"),
])
def test_protocol_wrong_answers_are_named(answer, words) -> None:
    with pytest.raises(ExerciseError, match=words):
        nb07.check_protocol_scores(answer)
