"""Tests for the exercise checker: a right implementation passes, wrong ones fail clearly."""

import numpy as np
import pytest
import torch

from course_lib.checks import ExerciseError, check, compare, trial_rng


def reference_cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(a, dim=-1) @ torch.nn.functional.normalize(b, dim=-1).T


def right_cosine(a, b):
    return (a / a.norm(dim=1, keepdim=True)) @ (b / b.norm(dim=1, keepdim=True)).T


def transposed_cosine(a, b):
    return right_cosine(a, b).T


def unnormalised(a, b):
    return a @ b.T


def make_inputs(seed=0, trial=0):
    rng = trial_rng(seed, trial)
    n, m, d = rng.integers(2, 6), rng.integers(2, 6), rng.integers(3, 8)
    while m == n:
        m = rng.integers(2, 6)
    return (
        torch.tensor(rng.normal(size=(n, d)), dtype=torch.float32),
        torch.tensor(rng.normal(size=(m, d)), dtype=torch.float32),
    )


def test_right_implementation_passes(capsys):
    assert check(right_cosine, reference_cosine, make_inputs, name="Exercise 0.1: cosine") is True
    assert "[OK] Exercise 0.1: cosine" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("wrong", "words"),
    [(transposed_cosine, "should have shape"), (unnormalised, "differs at")],
)
def test_wrong_implementation_explains_itself(wrong, words):
    with pytest.raises(ExerciseError) as info:
        check(wrong, reference_cosine, make_inputs, name="Exercise 0.1: cosine")
    message = str(info.value)
    assert words in message
    assert "Exercise 0.1: cosine" in message
    assert "trial 0" in message and "tensor(shape=" in message
    assert message.splitlines()[-1].endswith(
        f"make_inputs(seed=0, trial=0); {wrong.__name__}(*args)"
    )


def test_stub_is_reported_not_failed(capsys):
    def stub(a, b):
        raise NotImplementedError("Exercise 0.1: cosine")

    assert check(stub, reference_cosine, make_inputs, name="Exercise 0.1: cosine") is False
    assert "not attempted yet" in capsys.readouterr().out


def test_crash_in_student_code_is_a_failed_check():
    def crashes(a, b):
        return a @ b  # wrong inner dimensions

    with pytest.raises(ExerciseError, match="raised RuntimeError"):
        check(crashes, reference_cosine, make_inputs, name="cos")


def test_dtype_and_type_mismatch_are_named():
    assert "dtype" in compare(np.zeros(3), np.zeros(3, dtype=np.float32), atol=0, rtol=0)
    assert "numpy array" in compare(np.zeros(3), torch.zeros(3), atol=0, rtol=0)
    assert (
        compare(np.zeros(3), np.zeros(3, dtype=np.float32), atol=0, rtol=0, check_dtype=False)
        is None
    )


def test_nested_containers_and_scalars():
    assert compare({"r1": 1.0, "mr": (2, 3)}, {"r1": 1.0, "mr": (2, 3)}, atol=0, rtol=0) is None
    problem = compare({"r1": 1.0, "mr": (2, 3)}, {"r1": 1.0, "mr": (2, 4)}, atol=0, rtol=0)
    assert "output['mr'][1]" in problem and "should be 3" in problem
    assert "NaN" in compare(1.0, float("nan"), atol=1e-6, rtol=0)
    assert "keys" in compare({"a": 1}, {"b": 1}, atol=0, rtol=0)


def test_inputs_are_drawn_fresh_for_each_function():
    def in_place_student(a, b):
        a.mul_(0)  # destroys its input
        return reference_cosine(torch.ones_like(b[:1]), b)

    # the reference sees an untouched copy, so the student is judged on its own output
    with pytest.raises(ExerciseError):
        check(in_place_student, reference_cosine, make_inputs, name="cos", n=3)
