"""Exercise checkers: compare a learner's function with the reference on random inputs.

Every exercise in the notebooks is followed by a call such as
``ch00.check_cosine_similarity_matrix(cosine_similarity_matrix)``, which runs::

    check(cosine_similarity_matrix, reference.cosine_similarity_matrix,
          cosine_similarity_matrix_inputs, name="Exercise 0.1: cosine_similarity_matrix")

:func:`check` runs both functions on ``n`` random inputs and compares the outputs (type, shape,
dtype, values). The inputs come from a public, seeded *input maker*
``maker(seed=0, trial=0) -> tuple of positional arguments`` that regenerates exactly trial
``trial`` of seed ``seed`` (each trial draws from its own generator, :func:`trial_rng`).

On success :func:`check` prints one friendly line; on a mismatch it raises
:class:`ExerciseError` (an ``AssertionError``) that says, in plain words, what was expected versus
what came back, and ends with one line to paste into the notebook that reruns the failing case::

    from course_lib.exercises import ch00; args = ch00.cosine_similarity_matrix_inputs(seed=0, trial=0); forgot_to_normalise(*args)

A function that still raises ``NotImplementedError`` (an untouched stub) is reported as "not
attempted yet" without failing, so a learner can run the rest of the notebook. The learner's
function is always called positionally, in the order of the exercise's signature.
"""

from __future__ import annotations

import inspect
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

MAX_LINE = 300  # longest descriptive line of a failure message, in characters
MAX_INPUT = 360  # longest one-line description of a trial's inputs
MAX_REPR = 80  # longest repr of a single value inside a message
N_VALUES = 3  # how many values of an array a description shows


class InputMaker(Protocol):
    """A seeded input maker: ``maker(seed=0, trial=0)`` returns the positional arguments."""

    def __call__(self, seed: int = 0, trial: int = 0) -> tuple:
        """Return the arguments of trial ``trial`` of seed ``seed``, always the same ones."""
        ...


class ExerciseError(AssertionError):
    """The learner's function disagrees with the reference; the message says how."""


def trial_rng(seed: int, trial: int) -> np.random.Generator:
    """The random generator of one trial: every (seed, trial) pair has its own stream.

    Args:
        seed: seed of the whole check.
        trial: trial number, from 0.

    Returns:
        ``np.random.default_rng([seed, trial])``, so trial ``t`` can be redrawn on its own.
    """
    return np.random.default_rng([seed, trial])


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
        student_fn: the learner's implementation, called positionally.
        reference_fn: the course's reference implementation, called the same way.
        input_maker: public seeded maker ``(seed, trial) -> tuple`` of positional arguments.
            Called afresh for each function (inputs are never shared, so an in-place
            modification by one function cannot fool the other).
        name: exercise label shown in messages, e.g. ``"Exercise 2.1: sinkhorn_log"``.
        n: number of random trials (``trial = 0 .. n - 1``).
        atol: absolute tolerance for floating-point values (as in ``numpy.allclose``).
        rtol: relative tolerance for floating-point values.
        seed: seed of the inputs, so a failure repeats exactly.
        check_dtype: also require the same dtype for arrays and tensors.

    Returns:
        ``True`` when all trials agree, ``False`` when the exercise is not attempted yet.

    Raises:
        ExerciseError: on the first disagreement; the message ends with a reproduction line.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    for trial in range(n):
        # 1. the reference's answer, on its own copy of the inputs
        expected = reference_fn(*draw_inputs(input_maker, seed, trial))
        # 2. the learner's answer on a fresh copy; a crash is a failed check
        args = draw_inputs(input_maker, seed, trial)
        try:
            got = student_fn(*args)
        except NotImplementedError:
            print(f"[TODO] {name}: not attempted yet - the notebook continues with the reference.")
            return False
        except Exception as error:
            problem = explain_exception(error, student_fn, reference_fn, len(args))
            raise _failure(name, problem, student_fn, input_maker, seed, trial) from error
        # 3. compare and explain the first difference
        problem = compare(expected, got, atol=atol, rtol=rtol, check_dtype=check_dtype)
        if problem is not None:
            raise _failure(name, problem, student_fn, input_maker, seed, trial)
    print(f"[OK] {name}: matches the reference on {n} random inputs.")
    return True


def draw_inputs(input_maker: InputMaker, seed: int, trial: int) -> tuple:
    """Draw trial ``trial`` of seed ``seed`` and make sure it is a tuple of positional args.

    Args:
        input_maker: a seeded input maker.
        seed: seed of the check.
        trial: trial number, from 0.

    Returns:
        The positional arguments of that trial.

    Raises:
        TypeError: the maker returned something else than a tuple (a bug in the course).
    """
    args = input_maker(seed=seed, trial=trial)
    if not isinstance(args, tuple):
        raise TypeError(
            f"input makers must return a tuple of positional arguments, "
            f"{_maker_name(input_maker)} returned a {type(args).__name__}"
        )
    return args


# ----------------------------------------------------------------------------- failure messages
def _failure(
    name: str,
    problem: str,
    student_fn: Callable,
    input_maker: InputMaker,
    seed: int,
    trial: int,
) -> ExerciseError:
    """The error for a failed trial: problem, input summary, then the reproduction line."""
    # 1. the problem, capped to one line of sensible length
    head = one_line(f"{name}: {problem}", MAX_LINE)
    # 2. the trial and a summary of its inputs (drawn afresh: the learner may have changed them)
    inputs = describe_inputs(draw_inputs(input_maker, seed, trial), MAX_INPUT)
    where = f"  on trial {trial} with input {inputs}; to rerun it, paste the next line into a cell:"
    # 3. the reproduction line, last, so that it can be copied as it is
    line = reproduction_line(input_maker, seed, trial, call_name(student_fn))
    return ExerciseError(f"{head}\n{where}\n{line}")


def reproduction_line(input_maker: InputMaker, seed: int, trial: int, fn_name: str) -> str:
    """One line of Python that redraws a trial's inputs and calls the learner's function on them.

    Args:
        input_maker: the seeded maker of the check.
        seed: seed of the check.
        trial: the failing trial.
        fn_name: name of the learner's function in the notebook.

    Returns:
        e.g. ``from course_lib.exercises import ch02; args = ch02.isa_aggregate_inputs(seed=0,
        trial=7); isa_aggregate(*args)``.
    """
    imports, maker = _maker_reference(input_maker)
    return f"{imports}args = {maker}(seed={seed}, trial={trial}); {fn_name}(*args)"


def _maker_reference(input_maker: InputMaker) -> tuple[str, str]:
    """``(import statement or "", expression)`` naming the maker from a notebook cell."""
    module = getattr(input_maker, "__module__", None) or "__main__"
    qualname = _maker_name(input_maker)
    # a maker defined in the notebook itself, or inside a function, is reached by its bare name
    if module == "__main__" or "<locals>" in qualname:
        return "", qualname.rpartition(".")[2]
    package, _, leaf = module.rpartition(".")
    if not package:
        return f"import {module}; ", f"{module}.{qualname}"
    return f"from {package} import {leaf}; ", f"{leaf}.{qualname}"


def _maker_name(input_maker: Callable) -> str:
    """Qualified name of a maker (its type's name for callable objects)."""
    return getattr(input_maker, "__qualname__", None) or type(input_maker).__name__


def call_name(fn: Callable) -> str:
    """The name a learner calls ``fn`` by: its ``__name__``, or ``your_function`` for a lambda."""
    name = getattr(fn, "__name__", "")
    return name if name.isidentifier() else "your_function"


def explain_exception(
    error: Exception, student_fn: Callable, reference_fn: Callable, n_args: int
) -> str:
    """Describe a crash of the learner's function in one line.

    A ``TypeError`` raised because the function cannot take the exercise's positional arguments
    (a wrong signature) names the expected signature; anything else quotes the error.

    Args:
        error: what the learner's function raised.
        student_fn: the learner's function.
        reference_fn: the reference (its parameter names give the expected signature).
        n_args: number of positional arguments passed.

    Returns:
        A one-line description, without the exercise name.
    """
    # 1. a signature that cannot bind the positional arguments
    mismatch = signature_mismatch(student_fn, n_args) if isinstance(error, TypeError) else None
    if mismatch is not None:
        expected = expected_signature(reference_fn, call_name(student_fn), n_args)
        return (
            f"your function cannot be called with the exercise's {n_args} positional "
            f"arguments ({mismatch}); the expected signature is {expected}"
        )
    # 2. any other crash: type and the first line of the message (later lines may hold reprs)
    lines = str(error).strip().splitlines()
    if not lines:  # e.g. a bare ``assert``
        return f"your function raised {type(error).__name__}"
    text = lines[0] + (" ..." if len(lines) > 1 else "")
    return f"your function raised {type(error).__name__}: {one_line(text, MAX_REPR * 2)}"


def signature_mismatch(fn: Callable, n_args: int) -> str | None:
    """Why ``fn`` cannot be called with ``n_args`` positional arguments; ``None`` if it can.

    Args:
        fn: the function to inspect (wrappers made with ``functools.wraps`` show the original).
        n_args: number of positional arguments.

    Returns:
        The binding error (e.g. ``"missing a required argument: 'balance'"``) or ``None`` (also
        when the signature cannot be inspected).
    """
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    try:
        signature.bind(*range(n_args))  # placeholders: only the count matters
    except TypeError as error:
        return str(error)
    return None


def expected_signature(reference_fn: Callable, fn_name: str, n_args: int) -> str:
    """``fn_name(p1, p2, ...)`` with the names of the reference's first ``n_args`` parameters."""
    try:
        params = list(inspect.signature(reference_fn).parameters)[:n_args]
    except (TypeError, ValueError):
        params = [f"arg{i}" for i in range(n_args)]
    return f"{fn_name}({', '.join(params)})"


def one_line(text: str, limit: int) -> str:
    """``text`` on one line (runs of whitespace collapsed), cut to ``limit`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


# ----------------------------------------------------------------------------- comparison
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

    Args:
        expected: the reference's output.
        got: the learner's output.
        atol: absolute tolerance for floating-point values.
        rtol: relative tolerance for floating-point values.
        check_dtype: also require the same dtype for arrays and tensors.
        where: name of the compared part, used in the message (``output[0]``...).

    Returns:
        A one-line description of the first difference, or ``None``.
    """
    # 1. tensors and arrays: type, shape, dtype, values
    if _is_array(expected):
        return _compare_arrays(
            expected, got, atol=atol, rtol=rtol, check_dtype=check_dtype, where=where
        )
    # 2. containers: same kind, same length/keys, then element by element
    if isinstance(expected, Mapping):
        return _compare_mappings(expected, got, atol, rtol, check_dtype, where)
    if isinstance(expected, (tuple, list)):
        return _compare_sequences(expected, got, atol, rtol, check_dtype, where)
    # 3. scalars
    return _compare_scalars(expected, got, atol=atol, rtol=rtol, where=where)


def _compare_mappings(
    expected: Mapping, got: Any, atol: float, rtol: float, check_dtype: bool, where: str
) -> str | None:
    """Same keys, then value by value."""
    if not isinstance(got, Mapping):
        return f"the {where} should be a dict but is a {type(got).__name__}"
    if set(expected) != set(got):
        keys = short_repr(sorted(got, key=repr))
        return f"the {where} should have keys {short_repr(sorted(expected))} but has {keys}"
    items = [(expected[k], got[k], f"{where}[{k!r}]") for k in expected]
    return _compare_items(items, atol, rtol, check_dtype)


def _compare_sequences(
    expected: Sequence, got: Any, atol: float, rtol: float, check_dtype: bool, where: str
) -> str | None:
    """Same kind (tuple or list) and length, then item by item."""
    if not isinstance(got, (tuple, list)):
        return f"the {where} should be a {type(expected).__name__} but is a {type(got).__name__}"
    if len(expected) != len(got):
        return f"the {where} should have {len(expected)} items but has {len(got)}"
    items = [(e, g, f"{where}[{i}]") for i, (e, g) in enumerate(zip(expected, got))]
    return _compare_items(items, atol, rtol, check_dtype)


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
        if not _plain_equal(expected, got):
            return f"the {where} should be {short_repr(expected)} but is {short_repr(got)}"
        return None
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


def _plain_equal(expected: Any, got: Any) -> bool:
    """``expected == got`` as one bool; an array or table never equals a plain value."""
    try:
        return not _is_array(got) and bool(expected == got)
    except (TypeError, ValueError):  # e.g. a pandas Series, whose truth value is ambiguous
        return False


def _fmt(value: Any, digits: int = 6) -> str:
    """Short human-readable number with ``digits`` significant digits (booleans as ``True``)."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    try:
        return f"{float(value):.{digits}g}"
    except (TypeError, ValueError):
        return short_repr(value)


# ----------------------------------------------------------------------------- descriptions
def describe_inputs(args: tuple, limit: int) -> str:
    """:func:`describe` of positional arguments, cut at an argument boundary to ``limit`` chars.

    Args:
        args: the positional arguments of one trial.
        limit: longest description; arguments that do not fit are replaced by ``...``.

    Returns:
        e.g. ``(tensor(shape=(2, 3), dtype=float32, values [...]), 0.1, ...)``.
    """
    parts = [describe(a) for a in args]
    # keep whole arguments while the description (with a closing ", ...)") fits
    kept: list[str] = []
    for i, part in enumerate(parts):
        tail = ")" if i == len(parts) - 1 else ", ...)"
        if len("(" + ", ".join([*kept, part]) + tail) > limit:
            return one_line("(" + ", ".join([*kept, "..."]) + ")", limit)
        kept.append(part)
    return "(" + ", ".join(kept) + ")"


def describe(args: Any) -> str:
    """One-line description of an input: shapes, dtypes and a few values for arrays and tensors,
    a summary for models, tables and long collections, the value itself for small things.

    Args:
        args: a tuple of positional arguments, or a single value.

    Returns:
        A description without line breaks; each part is short (tuples list all their parts).
    """
    # 1. positional arguments (and tuple values): one description per item
    if isinstance(args, tuple):
        return "(" + ", ".join(describe(a) for a in args) + ")"
    # 2. arrays and tensors: shape, dtype, first values
    if _is_array(args):
        return _describe_array(args)
    # 3. a short one-line repr is the best description; long collections show their first items
    text = _stable_repr(args)
    if "\n" not in text and len(text) <= MAX_REPR:
        return text
    if isinstance(args, (list, dict, set)) and args:
        return _describe_collection(args)
    return short_repr(args)


def _describe_array(value: Any) -> str:
    """``tensor(shape=(2, 3), dtype=float32, values [0.1, -2, 0.3, ...])``."""
    arr = _to_numpy(value)
    kind = "array" if isinstance(value, np.ndarray) else "tensor"
    shown = ", ".join(_fmt(v, digits=4) for v in arr.ravel()[:N_VALUES].tolist())
    more = ", ..." if arr.size > N_VALUES else ""
    return f"{kind}(shape={tuple(arr.shape)}, dtype={arr.dtype}, values [{shown}{more}])"


def _describe_collection(value: list | dict | set) -> str:
    """``list of 17 items ['video0', 'video2', 'video1', ...]`` (each item cut short)."""
    if isinstance(value, dict):
        items = [f"{_cut(k)}: {_cut(v)}" for k, v in list(value.items())[:N_VALUES]]
    else:
        ordered = sorted(value, key=repr) if isinstance(value, set) else value  # stable order
        items = [_cut(v) for v in ordered[:N_VALUES]]
    more = ", ..." if len(value) > N_VALUES else ""
    left, right = "[]" if isinstance(value, list) else "{}"
    return f"{type(value).__name__} of {len(value)} items {left}{', '.join(items)}{more}{right}"


def _cut(value: Any) -> str:
    """A very short repr, for items inside a collection."""
    return one_line(short_repr(value), MAX_REPR // 2)


def short_repr(value: Any) -> str:
    """A one-line repr of at most ``MAX_REPR`` characters; multi-line reprs are summarised.

    Args:
        value: anything.

    Returns:
        ``repr(value)`` when it is one line; otherwise a summary such as
        ``CFCBlock(1,234 parameters)`` or ``DataFrame(shape=(12, 4))``; cut to ``MAX_REPR``.
    """
    if _is_array(value):
        return one_line(_describe_array(value), MAX_REPR)
    text = _stable_repr(value)
    return one_line(summarise(value) if "\n" in text else text, MAX_REPR)


def _stable_repr(value: Any) -> str:
    """``repr``, the same in every run: sets sorted, no memory address (``<X object at 0x..>``)."""
    if isinstance(value, (set, frozenset)) and value:
        return "{" + ", ".join(sorted(repr(v) for v in value)) + "}"
    if type(value).__repr__ is object.__repr__:
        return summarise(value)
    return repr(value)


def summarise(value: Any) -> str:
    """Type name plus what sizes it: parameter count for models, shape or length otherwise.

    Args:
        value: an object whose repr is too long (a model, a table...).

    Returns:
        e.g. ``AttentionBlock(592 parameters)``, ``DataFrame(shape=(12, 4))``, ``Foo(...)``.
    """
    kind = type(value).__name__
    torch = sys.modules.get("torch")  # never import torch just to describe a value
    if torch is not None and isinstance(value, torch.nn.Module):
        return f"{kind}({sum(p.numel() for p in value.parameters()):,} parameters)"
    shape = getattr(value, "shape", None)
    if isinstance(shape, tuple):
        return f"{kind}(shape={shape})"
    if hasattr(value, "__len__"):
        return f"{kind}(length {len(value)})"
    return f"{kind}(...)"
