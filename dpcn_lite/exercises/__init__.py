"""Checks for the course's exercises: one call per check cell, a clear verdict, a hint that says what to look at.

Each notebook's checks live in their own module (``dpcn_lite.exercises.nb03`` for notebook 03, ...). A check takes
the student's function (or answer), runs it on small fixed inputs, and compares it with the library's own version or
with a known value. It prints one line starting with ``✓`` when the answer is right, and raises
:class:`ExerciseError` (an ``AssertionError``) naming what differs when it is wrong, so a wrong answer stops the
notebook at the cell that checks it instead of three cells later. A stub that still raises ``NotImplementedError``
is reported as "not done yet", not as a bug.

The checks are library code so that tests can feed them right and wrong answers (``tests/test_exercises_*.py``):
a check that cannot fail checks nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

__all__ = ["ExerciseError", "call_answer", "expect", "expect_close", "matches", "name_mistake", "passed", "run_answer"]


class ExerciseError(AssertionError):
    """A check found a wrong answer; the message says what differs and what to look at."""


def passed(what: str) -> None:
    """Report a right answer (the one line a check cell prints)."""
    print(f"✓ {what}")


def run_answer(answer: Callable[..., Any], *args: Any, what: str, **kwargs: Any) -> Any:
    """Call the student's ``answer``; a stub still raising ``NotImplementedError`` becomes a "not done yet" message."""
    try:
        return answer(*args, **kwargs)
    except NotImplementedError as stub:
        raise ExerciseError(f"{what}: not done yet. Replace the `raise NotImplementedError` line in the exercise cell "
                            f"with your code, run that cell, then this one. ({stub})") from None


ANSWER_ERRORS = (ArithmeticError, LookupError, RuntimeError, TypeError, ValueError)
"""What a wrong answer typically raises (numpy's LinAlgError is a ValueError); anything else is a bug of the check."""


def call_answer(answer: Callable[..., Any], *args: Any, what: str, hint: str, **kwargs: Any) -> Any:
    """:func:`run_answer` without autograd; an error raised inside the answer becomes an :class:`ExerciseError` that
    names it and adds ``hint``."""
    try:
        with torch.no_grad():
            return run_answer(answer, *args, what=what, **kwargs)
    except ExerciseError:
        raise
    except ANSWER_ERRORS as error:
        raise ExerciseError(f"{what}: your function raised {type(error).__name__}: {error}. Hint: {hint}") from None


def matches(got: Any, expected: torch.Tensor, atol: float = 1e-5) -> bool:
    """True when ``got`` is a tensor of ``expected``'s shape with the same values (to float tolerance)."""
    return (isinstance(got, torch.Tensor) and tuple(got.shape) == tuple(expected.shape)
            and bool(torch.allclose(got.detach().to(expected.dtype), expected, atol=atol, rtol=1e-4)))


def name_mistake(got: Any, mistakes: list[tuple[torch.Tensor, str]], what: str) -> None:
    """Raise the message of the first known wrong answer that ``got`` equals (a mistake recognised by its result)."""
    for wrong, message in mistakes:
        if matches(got, wrong):
            raise ExerciseError(f"{what}: {message}")


def expect(condition: bool, message: str) -> None:
    """Raise :class:`ExerciseError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise ExerciseError(message)


def expect_close(got: Any, expected: torch.Tensor, *, what: str, hint: str = "", atol: float = 1e-5,
                 rtol: float = 1e-4) -> None:
    """``got`` must be a tensor of ``expected``'s shape with the same values (to float tolerance).

    The message names the first thing that differs (type, shape, NaN, largest difference and where) and adds ``hint``.
    """
    tail = f" Hint: {hint}" if hint else ""
    expect(isinstance(got, torch.Tensor), f"{what}: expected a torch.Tensor, got {type(got).__name__}.{tail}")
    expect(tuple(got.shape) == tuple(expected.shape),
           f"{what}: shape {tuple(got.shape)}, expected {tuple(expected.shape)}.{tail}")
    got = got.detach().to(expected.dtype)
    expect(not bool(torch.isnan(got).any()) or bool(torch.isnan(expected).any()),
           f"{what}: the result holds NaN (a division by zero?).{tail}")
    if not torch.allclose(got, expected, atol=atol, rtol=rtol, equal_nan=True):
        diff = (got - expected).abs().nan_to_num(0.0)
        where = tuple(int(i) for i in torch.unravel_index(diff.argmax(), diff.shape))
        raise ExerciseError(f"{what}: values differ; largest difference {diff.max().item():.4g} at index {where} "
                            f"(got {got[where].item():.4g}, expected {expected[where].item():.4g}).{tail}")
