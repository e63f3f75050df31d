"""Shared helpers of the exercise tests: a stub that is not yet written, a checker's failure text."""

from collections.abc import Callable

import pytest

from course_lib.checks import ExerciseError


def stub(*args):
    """An exercise as the student copy ships it: not written yet."""
    raise NotImplementedError("exercise")


def failure(checker: Callable, wrong: Callable) -> str:
    """The message of ``checker(wrong)``, which must fail."""
    with pytest.raises(ExerciseError) as info:
        checker(wrong)
    return str(info.value)
