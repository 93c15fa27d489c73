"""Checks for notebook 09 (ablations): reading an ablation as the paper states it, and as paired seeds allow.

``check_fusion_channels`` compares the learner's count of x_out's channels with :attr:`DPCNConfig.fusion_channels`
over every switch combination; ``check_paired_interval`` compares a paired 95 % t-interval with
:func:`dpcn_lite.results.t_interval`; ``check_module_effects`` checks the ranking of the paper's Table 3.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

from dpcn_lite.exercises import call_answer as _call, ExerciseError, expect, passed
from dpcn_lite.model_config import DPCNConfig
from dpcn_lite.results import t_interval

__all__ = ["check_fusion_channels", "check_module_effects", "check_paired_interval"]


def check_fusion_channels(answer: Callable[[DPCNConfig], int]) -> None:
    """``answer(config) -> int``: channels of x_out for any switches (SAM, FFM, DCM, kernel shapes, windows, C)."""
    what = "fusion_channels"
    hint = ("x_out concatenates the query branches (one C-channel response per DCM kernel shape, or the filtered "
            "query once without DCM), the prototype broadcast (C), one activation map per SAM window and, with FFM, "
            "the refined pseudo mask (1).")
    tried = 0
    for sam, ffm, dcm in itertools.product((True, False), repeat=3):
        for kernels in (("v", "h", "s"), ("s",), ("v", "h")):
            for channels, windows in ((64, ((5, 1), (3, 3), (1, 5))), (256, ((1, 1),))):
                config = DPCNConfig(channels=channels, use_sam=sam, use_ffm=ffm, use_dcm=dcm, dcm_kernels=kernels,
                                    sam_windows=windows, pretrained=False)
                got = _call(answer, config, what=what, hint=hint)
                expect(isinstance(got, int) and not isinstance(got, bool),
                       f"{what}: return an int, got {type(got).__name__}.")
                expected = config.fusion_channels
                switches = (f"C = {channels}, SAM {'on' if sam else 'off'} ({len(windows)} windows), "
                            f"FFM {'on' if ffm else 'off'}, DCM {'on (' + '+'.join(kernels) + ')' if dcm else 'off'}")
                expect(got == expected, f"{what}: {got} channels for {switches}; expected {expected}. Hint: {hint}")
                tried += 1
    passed(f"{what} matches the model's x_out width for all {tried} switch combinations (4C + 4 for the paper's)")


def check_paired_interval(answer: Callable[[dict[int, float], dict[int, float]], tuple[float, float, float]]) -> None:
    """``answer(a, b) -> (mean, low, high)`` of a[seed] − b[seed] over the seeds both have, 95 % t, n − 1 df."""
    what = "paired_interval"
    hint = ("pair by seed (only seeds in both), take the differences d, then mean(d) ± t(0.975, n − 1) · s / √n "
            "with s the sample standard deviation (divide by n − 1); t for 2 to 4 degrees of freedom is 4.303, "
            "3.182, 2.776.")
    cases = [
        ({0: 71.2, 1: 67.6, 2: 68.9}, {0: 75.5, 1: 75.2, 2: 74.5, 3: 70.0}),  # seed 3 only in b: left out
        ({0: 68.0, 1: 67.6, 2: 68.9, 3: 64.4}, {0: 57.1, 1: 56.6, 2: 58.0, 3: 57.1}),
        ({4: 1.0, 7: 3.0, 9: 2.0, 11: 6.0, 12: 2.5}, {12: 0.5, 11: 1.0, 9: 1.5, 7: 0.0, 4: 2.0}),  # unsorted keys
    ]
    for a, b in cases:
        got = _call(answer, a, b, what=what, hint=hint)
        expect(isinstance(got, tuple) and len(got) == 3, f"{what}: return a tuple (mean, low, high), got {got!r}.")
        seeds = sorted(set(a) & set(b))
        reference = t_interval([a[s] - b[s] for s in seeds])
        expected = (reference.mean, reference.low, reference.high)
        if not all(math.isclose(float(g), e, abs_tol=2e-3) for g, e in zip(got, expected)):
            diffs = [a[s] - b[s] for s in seeds]
            mean = sum(diffs) / len(diffs)
            population = math.sqrt(sum((d - mean) ** 2 for d in diffs) / len(diffs))
            half = 1.96 * population / math.sqrt(len(diffs))
            normal = (mean - half, mean + half)
            if not math.isclose(float(got[0]), mean, abs_tol=2e-3):
                raise ExerciseError(f"{what}: mean {float(got[0]):.3f}, expected {mean:.3f} for seeds {seeds}: are "
                                    f"you pairing by seed and skipping seeds that only one row has? Hint: {hint}")
            if math.isclose(float(got[1]), normal[0], abs_tol=2e-3):
                raise ExerciseError(f"{what}: that is the normal interval with the population std; with "
                                    f"{len(diffs)} seeds use t with {len(diffs) - 1} degrees of freedom and the "
                                    "sample std. Hint: " + hint)
            raise ExerciseError(f"{what}: ({', '.join(f'{float(g):.3f}' for g in got)}), expected "
                                f"({', '.join(f'{e:.3f}' for e in expected)}) for seeds {seeds}. Hint: {hint}")
    passed(f"{what} gives the paired 95 % t-interval (checked on {len(cases)} pairs of rows)")


def check_module_effects(answer: Callable[[dict[str, float], str], dict[str, float]],
                         paper_table: dict[str, float], full_row: str) -> None:
    """``answer(table, full_row)``: every other row's change from the full model, rounded, most harmful first."""
    what = "module_effects"
    hint = "subtract the full model's score from each other row, round to 0.1, sort by the change (most negative first)"
    got = _call(answer, dict(paper_table), full_row, what=what, hint=hint)
    expected = {row: round(value - paper_table[full_row], 1) for row, value in paper_table.items() if row != full_row}
    expected = dict(sorted(expected.items(), key=lambda item: item[1]))
    expect(isinstance(got, dict), f"{what}: return a dict {{row: change}}, got {type(got).__name__}.")
    expect(full_row not in got, f"{what}: leave the full model out (its change is 0 by definition).")
    expect(set(got) == set(expected), f"{what}: rows {sorted(got)}, expected {sorted(expected)}.")
    wrong = {row: got[row] for row in expected if not math.isclose(got[row], expected[row], abs_tol=1e-9)}
    if wrong:
        signs = all(math.isclose(got[row], -expected[row], abs_tol=1e-9) for row in expected)
        raise ExerciseError(f"{what}: " + ("the signs are flipped: row − full, not full − row. " if signs else
                                           f"wrong changes {wrong}. ") + f"Hint: {hint}")
    expect(list(got) == list(expected), f"{what}: right values, wrong order {list(got)}; put the largest loss "
                                        f"first: {list(expected)}.")
    passed(f"{what} ranks the paper's removals: {', '.join(f'{r} {v:+.1f}' for r, v in got.items())}")
