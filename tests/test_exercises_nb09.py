"""Notebook 09's checks pass right answers and name the usual wrong ones."""

from __future__ import annotations

import math

import pytest

from dpcn_lite.exercises import ExerciseError, nb09
from dpcn_lite.results import t_interval

PAPER = {"DPCN": 66.7, "without SAM": 65.4, "without FFM": 64.7, "without DCM": 64.5}


def stub(*args):
    raise NotImplementedError("Exercise: write it")


def right_interval(a, b):
    seeds = sorted(set(a) & set(b))
    interval = t_interval([a[s] - b[s] for s in seeds])
    return interval.mean, interval.low, interval.high


def normal_interval(a, b):  # population std and 1.96: too narrow for a few seeds
    d = [a[s] - b[s] for s in sorted(set(a) & set(b))]
    mean = sum(d) / len(d)
    half = 1.96 * math.sqrt(sum((x - mean) ** 2 for x in d) / len(d)) / math.sqrt(len(d))
    return mean, mean - half, mean + half


def unpaired_interval(a, b):  # means of every seed each row has: not paired
    mean = sum(a.values()) / len(a) - sum(b.values()) / len(b)
    return mean, mean - 1, mean + 1


def right_effects(table, full_row):
    changes = {row: round(v - table[full_row], 1) for row, v in table.items() if row != full_row}
    return dict(sorted(changes.items(), key=lambda item: item[1]))


def test_right_answers_pass(capsys):
    nb09.check_fusion_channels(lambda config: config.fusion_channels)
    nb09.check_paired_interval(right_interval)
    nb09.check_module_effects(right_effects, PAPER, "DPCN")
    assert capsys.readouterr().out.count("✓") == 3


@pytest.mark.parametrize(("answer", "words"), [
    (lambda c: 4 * c.channels + 4, "expected"),  # the paper's number for every switch
    (lambda c: c.channels * (len(c.dcm_kernels) + 1) + len(c.sam_windows) + 1, "DCM off"),  # ignores the switches
    (lambda c: float(c.fusion_channels), "return an int"),
    (stub, "not done yet"),
])
def test_wrong_fusion_channels_are_named(answer, words):
    with pytest.raises(ExerciseError, match=words):
        nb09.check_fusion_channels(answer)


@pytest.mark.parametrize(("answer", "words"), [
    (normal_interval, "normal interval"),
    (unpaired_interval, "pairing by seed"),
    (lambda a, b: right_interval(a, b)[:2], "tuple"),
    (stub, "not done yet"),
])
def test_wrong_intervals_are_named(answer, words):
    with pytest.raises(ExerciseError, match=words):
        nb09.check_paired_interval(answer)


@pytest.mark.parametrize(("answer", "words"), [
    (lambda t, f: {r: -v for r, v in right_effects(t, f).items()}, "signs are flipped"),
    (lambda t, f: dict(reversed(list(right_effects(t, f).items()))), "wrong order"),
    (lambda t, f: {**right_effects(t, f), f: 0.0}, "leave the full model out"),
    (stub, "not done yet"),
])
def test_wrong_effects_are_named(answer, words):
    with pytest.raises(ExerciseError, match=words):
        nb09.check_module_effects(answer, PAPER, "DPCN")
