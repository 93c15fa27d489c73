"""The exercise checks' common verdicts: right answers pass, each kind of wrong answer is named."""

from __future__ import annotations

import pytest
import torch

from dpcn_lite.exercises import ExerciseError, expect, expect_close, passed, run_answer


def test_a_right_answer_passes_and_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    expect_close(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0 + 1e-7]), what="p")
    passed("p matches")
    assert capsys.readouterr().out == "✓ p matches\n"


@pytest.mark.parametrize(
    ("got", "words"),
    [
        ([1.0, 2.0], "expected a torch.Tensor"),
        (torch.ones(3), "shape (3,), expected (2,)"),
        (torch.tensor([float("nan"), 2.0]), "NaN"),
        (torch.tensor([1.0, 2.5]), "largest difference 0.5 at index (1,)"),
    ],
)
def test_each_kind_of_wrong_answer_is_named(got: object, words: str) -> None:
    with pytest.raises(ExerciseError, match="hint: look") as caught:
        expect_close(got, torch.tensor([1.0, 2.0]), what="the prototype", hint="hint: look")
    assert words in str(caught.value) and str(caught.value).startswith("the prototype:")


def test_a_stub_is_reported_as_not_done_yet() -> None:
    def stub() -> None:
        raise NotImplementedError("Exercise: write it")

    with pytest.raises(ExerciseError, match="MAP: not done yet"):
        run_answer(stub, what="MAP")
    assert run_answer(lambda x: x + 1, 1, what="MAP") == 2


def test_expect_is_an_assertion() -> None:
    with pytest.raises(AssertionError, match="because"):
        expect(False, "because")
    expect(True, "never shown")
