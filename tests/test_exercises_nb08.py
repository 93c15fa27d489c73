"""Notebook 08's exercise checks pass the library's answers and name the usual wrong ones."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dpcn_lite.exercises import ExerciseError, nb08
from dpcn_lite.kshot import fuse_probabilities


def stub(*args, **kwargs):
    raise NotImplementedError("Exercise: write it")


# --- Exercise 1: pooled_prototypes --------------------------------------------------------------------------------


def pooled_position_major(support, soft_masks, size):  # the shots interleaved pixel by pixel
    selected = soft_masks[:, 0] > 0.5
    vectors = support.permute(2, 3, 0, 1)[selected.permute(1, 2, 0)]
    return F.adaptive_avg_pool1d(vectors.t()[None], size)[0]


def pooled_at_or_above_half(support, soft_masks, size):  # >= 0.5 counts the boundary as foreground
    vectors = support.permute(0, 2, 3, 1)[soft_masks[:, 0] >= 0.5]
    return F.adaptive_avg_pool1d(vectors.t()[None], size)[0]


def pooled_first_shot_only(support, soft_masks, size):
    return nb08.pooled_prototypes_reference(support[:1], soft_masks[:1], size)


def pooled_channels_last(support, soft_masks, size):  # forgot the transpose: size x C
    return nb08.pooled_prototypes_reference(support, soft_masks, size).t()


def test_check_pooled_prototypes_passes_the_library(capsys: pytest.CaptureFixture[str]) -> None:
    nb08.check_pooled_prototypes(nb08.pooled_prototypes_reference)
    assert capsys.readouterr().out.startswith("✓ pooled_prototypes")


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        (stub, "not done yet"),
        (pooled_position_major, "shot after shot"),
        (pooled_at_or_above_half, "exactly 0.5 is not foreground"),
        (pooled_first_shot_only, "values differ"),
        (pooled_channels_last, "shape"),
        (nb08.averaged_prototypes_reference, "ALL shots"),
    ],
)
def test_check_pooled_prototypes_names_wrong_answers(answer, words: str) -> None:
    with pytest.raises(ExerciseError, match=words):
        nb08.check_pooled_prototypes(answer)


# --- Exercise 2: averaged_prototypes ------------------------------------------------------------------------------


def averaged_by_sum(support, soft_masks, size):
    return nb08.averaged_prototypes_reference(support, soft_masks, size) * support.shape[0]


def averaged_map_prototype(support, soft_masks, size):  # the masked-average prototype, one vector per shot
    hard = (soft_masks > 0.5).float()
    return ((support * hard).sum(dim=(-2, -1)) / hard.sum(dim=(-2, -1))).mean(dim=0)


def test_check_averaged_prototypes_passes_the_library(capsys: pytest.CaptureFixture[str]) -> None:
    nb08.check_averaged_prototypes(nb08.averaged_prototypes_reference)
    assert capsys.readouterr().out.startswith("✓ averaged_prototypes")


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        (stub, "not done yet"),
        (nb08.pooled_prototypes_reference, "this is the pooled version"),
        (averaged_by_sum, "mean over the K shots"),
        (averaged_map_prototype, "shape"),
    ],
)
def test_check_averaged_prototypes_names_wrong_answers(answer, words: str) -> None:
    with pytest.raises(ExerciseError, match=words):
        nb08.check_averaged_prototypes(answer)


# --- Exercise 3: fuse_probabilities -------------------------------------------------------------------------------


def fuse_over_episodes(probabilities, mode):  # reduces dim 0 (the episodes) for the average
    if mode == "mask_avg":
        return probabilities.mean(dim=0)
    return probabilities.max(dim=1).values


def fuse_max_tuple(probabilities, mode):  # forgot .values
    return probabilities.mean(dim=1) if mode == "mask_avg" else probabilities.max(dim=1)


def fuse_hard_union(probabilities, mode):  # OR of thresholded masks: no longer a probability
    return probabilities.mean(dim=1) if mode == "mask_avg" else (probabilities > 0.5).any(dim=1).float()


def test_check_fuse_probabilities_passes_the_library(capsys: pytest.CaptureFixture[str]) -> None:
    nb08.check_fuse_probabilities(fuse_probabilities)
    assert capsys.readouterr().out.startswith("✓ fuse_probabilities")


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        (stub, "not done yet"),
        (fuse_over_episodes, "not dim 0"),
        (fuse_max_tuple, r"take \.values"),
        (fuse_hard_union, "keeps a probability"),
    ],
)
def test_check_fuse_probabilities_names_wrong_answers(answer, words: str) -> None:
    with pytest.raises(ExerciseError, match=words):
        nb08.check_fuse_probabilities(answer)


# --- Exercise 4: vote ---------------------------------------------------------------------------------------------


def vote_half_of_shots(probabilities):  # half of K instead of half of the largest count
    votes = (probabilities > 0.5).float().sum(dim=1)
    return (votes / probabilities.shape[1] >= 0.5).float()


def vote_batch_max(probabilities):  # the largest count of the whole batch
    votes = (probabilities > 0.5).float().sum(dim=1)
    return (votes / votes.max().clamp(min=1.0) >= 0.5).float()


def vote_at_half(probabilities):  # a probability of exactly 0.5 counted as a vote
    votes = (probabilities >= 0.5).float().sum(dim=1)
    most = votes.flatten(1).max(dim=1).values.clamp(min=1.0)
    return (votes / most[:, None, None] >= 0.5).float()


def vote_ratio_not_mask(probabilities):  # returned the vote ratio (NaN where nobody votes)
    votes = (probabilities > 0.5).float().sum(dim=1)
    return votes / votes.flatten(1).max(dim=1).values[:, None, None]


def test_check_vote_passes_the_library(capsys: pytest.CaptureFixture[str]) -> None:
    nb08.check_vote(lambda p: fuse_probabilities(p, "vote"))
    assert capsys.readouterr().out.startswith("✓ vote")


def test_vote_cases_tell_the_rules_apart() -> None:
    right = fuse_probabilities(nb08.vote_cases(), "vote")
    assert right[1].sum() == 5 and right[0].sum() == 4 and right[2].sum() == 0
    for wrong in (vote_half_of_shots, vote_batch_max, vote_at_half):
        assert not torch.equal(wrong(nb08.vote_cases()), right), wrong.__name__


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        (stub, "not done yet"),
        (vote_half_of_shots, "not the number of shots K"),
        (vote_batch_max, "not over the whole batch"),
        (vote_at_half, r"> 0\.5 \(not >= 0\.5\)"),
        (vote_ratio_not_mask, "Clamp that count"),
    ],
)
def test_check_vote_names_wrong_answers(answer, words: str) -> None:
    with pytest.raises(ExerciseError, match=words):
        nb08.check_vote(answer)


# --- Exercise 5: mean_iou -----------------------------------------------------------------------------------------


def mean_iou_right(episodes, class_ids):
    sums = {}
    for class_id, intersection, union in episodes:
        i, u = sums.get(class_id, (0, 0))
        sums[class_id] = (i + intersection, u + union)
    ious = [i / u for c, (i, u) in sums.items() if c in class_ids and u > 0]
    return sum(ious) / len(ious)


def mean_iou_of_ratios(episodes, class_ids):  # per class, the mean of per-episode IoUs
    per_class = {}
    for class_id, intersection, union in episodes:
        if union:
            per_class.setdefault(class_id, []).append(intersection / union)
    return sum(sum(v) / len(v) for v in per_class.values()) / len(per_class)


def mean_iou_missing_class_as_zero(episodes, class_ids):
    present = mean_iou_right(episodes, class_ids)
    scored = {c for c, _, u in episodes if u}
    return present * len(scored) / len(class_ids)


def mean_iou_over_episodes(episodes, class_ids):  # one ΣI/ΣU over all episodes: the foreground IoU, not mIoU
    return sum(e[1] for e in episodes) / sum(e[2] for e in episodes)


def test_check_mean_iou_passes_a_right_answer(capsys: pytest.CaptureFixture[str]) -> None:
    nb08.check_mean_iou(mean_iou_right)
    assert capsys.readouterr().out.startswith("✓ mean_iou")


@pytest.mark.parametrize("answer", [mean_iou_of_ratios, mean_iou_missing_class_as_zero, mean_iou_over_episodes])
def test_check_mean_iou_names_wrong_answers(answer) -> None:
    with pytest.raises(ExerciseError, match=r"ΣI/ΣU, not the mean of per-episode IoUs"):
        nb08.check_mean_iou(answer)


def test_check_mean_iou_reports_a_stub_and_a_non_number() -> None:
    with pytest.raises(ExerciseError, match="not done yet"):
        nb08.check_mean_iou(stub)
    with pytest.raises(ExerciseError, match="expected a number"):
        nb08.check_mean_iou(lambda episodes, class_ids: {"mIoU": 0.5})
