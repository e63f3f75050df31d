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


def assert_checkers_follow_notebook(solution, checkers: list[Callable], capsys) -> None:
    """Each checker names its exercise as the student notebook's stub does ("Exercise N.M: f").

    Args:
        solution: path of the solution notebook whose exercises the checkers check, in order.
        checkers: the chapter's checkers, in the notebook's order.
        capsys: pytest's output capture (a checker prints "[TODO] <label>: not attempted").
    """
    import re

    from course_lib.authoring.make_student import make_student_notebook

    _, exercises = make_student_notebook(solution)
    labels = [f"Exercise {e.number}: {e.name}" for e in exercises]
    names = []
    for checker in checkers:
        checker(stub)
        names.append(re.search(r"\[TODO\] (.*?): not attempted", capsys.readouterr().out).group(1))
    assert names == labels
