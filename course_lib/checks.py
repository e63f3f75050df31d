"""Exercise checkers: compare a learner's function with the reference on random inputs.

Every exercise in the notebooks is followed by a call such as::

    check(cosine_similarity_matrix, reference.cosine_similarity_matrix,
          make_inputs, name="Exercise 0.1: cosine_similarity_matrix")

:func:`check` runs both functions on ``n`` random inputs drawn by ``input_maker`` and compares
the outputs (type, shape, dtype, values). On success it prints one friendly line; on a mismatch
it raises :class:`ExerciseError` (an ``AssertionError``) that says, in plain words, which input
failed and what was expected versus what came back. A function that still raises
``NotImplementedError`` (an untouched stub) is reported as "not attempted yet" without failing,
so a learner can run the rest of the notebook.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

InputMaker = Callable[[np.random.Generator], Any]


class ExerciseError(AssertionError):
    """The learner's function disagrees with the reference; the message says how."""


def check(
    student_fn: Callable,
    reference_fn: Callable,
    input_maker: InputMaker,
    *,
    name: str,
    n: int = 20,
    atol: float = 1e-5,
    rtol: float = 1e-4,
    seed: int = 0,
    check_dtype: bool = True,
) -> bool:
    """Run ``student_fn`` and ``reference_fn`` on ``n`` random inputs and compare the results.

    Args:
        student_fn: the learner's implementation.
        reference_fn: the course's reference implementation.
        input_maker: ``rng -> args``; returns a tuple of positional args, a dict of keyword
            args, or a single argument. Called afresh for each trial (inputs are never shared,
            so an in-place modification by one function cannot fool the other).
        name: exercise label shown in messages, e.g. ``"Exercise 2.1: sinkhorn_log"``.
        n: number of random trials.
        atol, rtol: tolerances for floating-point values (as in ``numpy.allclose``).
        seed: seed of the input generator, so a failure repeats exactly.
        check_dtype: also require the same dtype for arrays and tensors.

    Returns:
        ``True`` when all trials agree, ``False`` when the exercise is not attempted yet.

    Raises:
        ExerciseError: on the first disagreement, naming the trial and the inputs.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    for trial in range(n):
        # 1. draw the same input twice, once for each function
        expected = _call(reference_fn, input_maker(np.random.default_rng([seed, trial])))
        try:
            got = _call(student_fn, input_maker(np.random.default_rng([seed, trial])))
        except NotImplementedError:
            print(f"[TODO] {name}: not attempted yet - the notebook continues with the reference.")
            return False
        except Exception as error:  # a crash in the learner's code is a failed check
            inputs = describe(input_maker(np.random.default_rng([seed, trial])))
            raise ExerciseError(
                f"{name}: your function raised {type(error).__name__}: {error}\n"
                f"  on trial {trial + 1} with input {inputs}"
            ) from error
        # 2. compare and explain the first difference
        problem = compare(expected, got, atol=atol, rtol=rtol, check_dtype=check_dtype)
        if problem is not None:
            inputs = describe(input_maker(np.random.default_rng([seed, trial])))
            raise ExerciseError(f"{name}: {problem}\n  on trial {trial + 1} with input {inputs}")
    print(f"[OK] {name}: matches the reference on {n} random inputs.")
    return True


def _call(fn: Callable, args: Any) -> Any:
    """Call ``fn`` with a tuple (positional), dict (keyword) or single argument."""
    if isinstance(args, tuple):
        return fn(*args)
    if isinstance(args, dict):
        return fn(**args)
    return fn(args)


def compare(
    expected: Any,
    got: Any,
    *,
    atol: float,
    rtol: float,
    check_dtype: bool = True,
    where: str = "output",
) -> str | None:
    """Describe the first difference between ``expected`` and ``got``; ``None`` if they agree.

    Handles torch tensors, numpy arrays, Python scalars, and (nested) tuples, lists and dicts.
    """
    # 1. tensors and arrays: type, shape, dtype, values
    if _is_array(expected):
        return _compare_arrays(
            expected, got, atol=atol, rtol=rtol, check_dtype=check_dtype, where=where
        )
    # 2. containers: same kind, same length/keys, then element by element
    if isinstance(expected, Mapping):
        if not isinstance(got, Mapping):
            return f"the {where} should be a dict but is a {type(got).__name__}"
        if set(expected) != set(got):
            return f"the {where} should have keys {sorted(expected)} but has {sorted(got)}"
        items = [(expected[k], got[k], f"{where}[{k!r}]") for k in expected]
        return _compare_items(items, atol, rtol, check_dtype)
    if isinstance(expected, (tuple, list)):
        if not isinstance(got, (tuple, list)):
            return (
                f"the {where} should be a {type(expected).__name__} but is a {type(got).__name__}"
            )
        if len(expected) != len(got):
            return f"the {where} should have {len(expected)} items but has {len(got)}"
        items = [(e, g, f"{where}[{i}]") for i, (e, g) in enumerate(zip(expected, got))]
        return _compare_items(items, atol, rtol, check_dtype)
    # 3. scalars
    return _compare_scalars(expected, got, atol=atol, rtol=rtol, where=where)


def _compare_items(
    items: Sequence[tuple[Any, Any, str]], atol: float, rtol: float, check_dtype: bool
) -> str | None:
    """Compare pairs in order and return the first problem found."""
    for exp, got, where in items:
        problem = compare(exp, got, atol=atol, rtol=rtol, check_dtype=check_dtype, where=where)
        if problem is not None:
            return problem
    return None


def _is_array(value: Any) -> bool:
    """True for numpy arrays and torch tensors (torch imported only if already loaded)."""
    if isinstance(value, np.ndarray):
        return True
    return type(value).__module__.startswith("torch") and hasattr(value, "detach")


def _to_numpy(value: Any) -> np.ndarray:
    """Tensor or array to a numpy array (on CPU, detached)."""
    if isinstance(value, np.ndarray):
        return value
    return value.detach().cpu().numpy()


def _compare_arrays(
    expected: Any, got: Any, *, atol: float, rtol: float, check_dtype: bool, where: str
) -> str | None:
    """Type, shape, dtype and value comparison for arrays/tensors."""
    kind = "torch tensor" if not isinstance(expected, np.ndarray) else "numpy array"
    if not _is_array(got) or isinstance(got, np.ndarray) != isinstance(expected, np.ndarray):
        return f"the {where} should be a {kind} but is a {type(got).__name__}"
    exp, out = _to_numpy(expected), _to_numpy(got)
    if exp.shape != out.shape:
        return f"the {where} should have shape {tuple(exp.shape)} but has shape {tuple(out.shape)}"
    if check_dtype and exp.dtype != out.dtype:
        return f"the {where} should have dtype {exp.dtype} but has dtype {out.dtype}"
    if exp.dtype == bool or not np.issubdtype(exp.dtype, np.number):
        mismatch = exp != out
    else:
        if np.isnan(out.astype(float)).any() and not np.isnan(exp.astype(float)).any():
            return f"the {where} contains NaN values where the reference has none"
        mismatch = ~np.isclose(
            out.astype(float), exp.astype(float), atol=atol, rtol=rtol, equal_nan=True
        )
    if mismatch.any():
        index = tuple(int(i) for i in np.argwhere(mismatch)[0])
        return (
            f"the {where} differs at {mismatch.sum()} of {mismatch.size} positions; "
            f"first at index {index}: expected {_fmt(exp[index])}, got {_fmt(out[index])}"
        )
    return None


def _compare_scalars(
    expected: Any, got: Any, *, atol: float, rtol: float, where: str
) -> str | None:
    """Numbers compare with tolerance; anything else must be equal."""
    if isinstance(expected, (bool, np.bool_)) or not isinstance(expected, (int, float, np.number)):
        return None if expected == got else f"the {where} should be {expected!r} but is {got!r}"
    if _is_array(got):
        got_np = _to_numpy(got)
        if got_np.size != 1:
            return f"the {where} should be a single number but has shape {tuple(got_np.shape)}"
        got = got_np.item()
    if not isinstance(got, (int, float, np.number)) or isinstance(got, bool):
        return f"the {where} should be a number but is a {type(got).__name__}"
    if math.isnan(float(got)) and not math.isnan(float(expected)):
        return f"the {where} is NaN but should be {_fmt(expected)}"
    if not math.isclose(float(got), float(expected), abs_tol=atol, rel_tol=rtol):
        return f"the {where} should be {_fmt(expected)} but is {_fmt(got)}"
    return None


def _fmt(value: Any) -> str:
    """Short human-readable number."""
    try:
        return f"{float(value):.6g}"
    except (TypeError, ValueError):
        return repr(value)


def describe(args: Any) -> str:
    """One-line description of an input: shapes and dtypes for arrays, values for small things."""
    if isinstance(args, tuple):
        return "(" + ", ".join(describe(a) for a in args) + ")"
    if isinstance(args, dict):
        return "{" + ", ".join(f"{k}={describe(v)}" for k, v in args.items()) + "}"
    if _is_array(args):
        arr = _to_numpy(args)
        kind = "array" if isinstance(args, np.ndarray) else "tensor"
        return f"{kind}(shape={tuple(arr.shape)}, dtype={arr.dtype})"
    if isinstance(args, (list, tuple)) and len(args) > 6:
        return f"{type(args).__name__} of {len(args)} items"
    text = repr(args)
    return text if len(text) <= 80 else text[:77] + "..."
