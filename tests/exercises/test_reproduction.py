"""Failure messages of every chapter's checkers end with one line that reruns the failing case.

For one planted bug per chapter module the test takes the last line of the message, runs it as
a notebook cell would (in a namespace holding only the learner's function) and checks that it
gives back the very output the message reported. Wrong signatures, crashes and long reprs
(models, tables) give one-line descriptions.
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from course_lib.checks import (
    ExerciseError,
    check,
    compare,
    describe,
    reproduction_line,
    short_repr,
    trial_rng,
)
from course_lib.exercises import ch00, ch00b, ch01, ch02, ch03, ch04, ch05, ch06, ch07

MODULES = [ch00, ch00b, ch01, ch02, ch03, ch04, ch05, ch06, ch07]
MAX_MESSAGE_LINE = 450  # the longest line a failure message may have
LINE = re.compile(
    r"^from course_lib\.exercises import (ch\w+); "
    r"args = \1\.(\w+)_inputs\(seed=(\d+), trial=(\d+)\); (\w+)\(\*args\)$"
)


# ----------------------------------------------------------------------------- helpers
def run_cell(source: str, namespace: dict[str, Any]) -> Any:
    """Run ``source`` as a notebook cell: execute its statements, return the last expression.

    Args:
        source: one or more statements; the last one must be an expression.
        namespace: the cell's globals (the learner's functions).

    Returns:
        The value of the last expression, as the notebook would display it.
    """
    # 1. every statement but the last
    *body, last = ast.parse(source).body
    assert isinstance(last, ast.Expr), "a reproduction line ends with a call"
    exec(compile(ast.Module(body=body, type_ignores=[]), "<cell>", "exec"), namespace)
    # 2. the last expression, whose value the cell shows
    return eval(compile(ast.Expression(last.value), "<cell>", "eval"), namespace)


def failure_message(checker: Callable, fn: Callable) -> str:
    """The ExerciseError message of ``checker(fn)`` (which must fail)."""
    with pytest.raises(ExerciseError) as info:
        checker(fn)
    return str(info.value)


def assert_well_formed(message: str, fn_name: str) -> re.Match:
    """Three short lines, no multi-line repr, and a reproduction line calling ``fn_name``."""
    lines = message.split("\n")
    assert len(lines) == 3, message
    assert "\n  (" not in message and "\n (" not in message  # no module repr spread over lines
    assert max(len(line) for line in lines) <= MAX_MESSAGE_LINE, message
    assert lines[1].endswith("to rerun it, paste the next line into a cell:")
    match = LINE.match(lines[-1])
    assert match is not None, lines[-1]
    assert match.group(5) == fn_name
    return match


def redraw(match: re.Match) -> tuple:
    """The inputs a reproduction line draws, from its chapter, maker, seed and trial."""
    module = {m.__name__.rsplit(".", 1)[1]: m for m in MODULES}[match.group(1)]
    maker = getattr(module, f"{match.group(2)}_inputs")
    return maker(seed=int(match.group(3)), trial=int(match.group(4)))


# ----------------------------------------------------------------------------- planted bugs
def cosine_forgot_to_normalise(a, b):
    """Exercise 0.1 without the normalisation."""
    return a @ b.T


def window_to_clip_ids(st, ed):
    """Exercise 0b.1, off by one: a window ending on a clip edge also gets the next clip."""
    return list(range(int(st // 2), int(ed // 2) + 1))


def info_nce_loss(image_feats, text_feats, logit_scale):
    """Exercise 1.1 in one direction only (image -> text)."""
    logits = logit_scale.exp() * image_feats @ text_feats.T
    return torch.nn.functional.cross_entropy(logits, torch.arange(len(logits)))


def isa_aggregate(sims, W, tau, mask=None):
    """Exercise 2.1 masking only the first softmax: padded decoys leak into the second."""
    logits = sims / tau
    if mask is not None:
        logits = logits.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(torch.softmax(logits, dim=-1) @ W / tau, dim=-1)
    return (weights * sims).sum(-1)


def temporal_iou_matrix(spans1, spans2):
    """Exercise 3.3 without ``max(0, .)``: disjoint windows get a negative IoU."""
    inter = np.minimum(spans1[:, None, 1], spans2[None, :, 1]) - np.maximum(
        spans1[:, None, 0], spans2[None, :, 0]
    )
    length1, length2 = spans1[:, 1] - spans1[:, 0], spans2[:, 1] - spans2[:, 0]
    return inter / (length1[:, None] + length2[None, :] - inter)


def balanced_cross_attention(video, text, text_mask, balance):
    """Exercise 4.1 forgetting the padding mask: garbage at padded words leaks in."""
    keys = torch.cat([text, balance[None].expand(len(text), -1, -1)], dim=1)
    weights = (video @ keys.transpose(1, 2) / math.sqrt(video.shape[-1])).softmax(-1)
    return weights @ keys, weights


def recurrent_alignment(cfc, n_turns, video, video_mask, text, text_mask):
    """Exercise 5.1 off by one: N_r - 1 turns."""
    for _ in range(n_turns - 1):
        out = cfc(video, video_mask, text, text_mask)
        video, text = video + out.fine, text + out.tv
    return video, text


def merge_into_proposals(vids, starts, ends, scores, segment_len, max_gap):
    """Exercise 6.2 off by one: holes of ``max_gap + 1`` segments are bridged too."""
    return ch06.merge_into_proposals(vids, starts, ends, scores, segment_len, max_gap + 1)


def sliding_window_starts(n_clips, window, overlap):
    """Exercise 7.1 without the last window aligned with the end of the video."""
    return list(range(0, max(n_clips - window, 0) + 1, window - overlap))


@dataclass(frozen=True)
class Planted:
    """A checker, a buggy learner function, and how the checker compares outputs."""

    checker: Callable
    wrong: Callable
    reference: Callable
    atol: float = 1e-5
    rtol: float = 1e-4
    check_dtype: bool = True


PLANTED = {
    "ch00": Planted(
        ch00.check_cosine_similarity_matrix,
        cosine_forgot_to_normalise,
        ch00.cosine_similarity_matrix,
    ),
    "ch00b": Planted(ch00b.check_window_to_clip_ids, window_to_clip_ids, ch00b.window_to_clip_ids),
    "ch01": Planted(ch01.check_info_nce_loss, info_nce_loss, ch01.info_nce_loss),
    "ch02": Planted(ch02.check_isa_aggregate, isa_aggregate, ch02.isa_aggregate, atol=1e-6),
    "ch03": Planted(
        ch03.check_temporal_iou_matrix,
        temporal_iou_matrix,
        ch03.temporal_iou_matrix,
        check_dtype=False,
    ),
    "ch04": Planted(
        ch04.check_balanced_cross_attention,
        balanced_cross_attention,
        ch04.balanced_cross_attention,
    ),
    "ch05": Planted(
        ch05.check_recurrent_alignment,
        recurrent_alignment,
        ch05.recurrent_alignment,
        atol=1e-4,
    ),
    "ch06": Planted(
        ch06.check_merge_into_proposals, merge_into_proposals, ch06.merge_into_proposals
    ),
    "ch07": Planted(
        ch07.check_sliding_window_starts, sliding_window_starts, ch07.sliding_window_starts
    ),
}


def test_every_chapter_module_has_a_planted_bug():
    assert sorted(PLANTED) == sorted(m.__name__.rsplit(".", 1)[1] for m in MODULES)


@pytest.mark.parametrize("chapter", sorted(PLANTED))
def test_reproduction_line_gives_the_reported_wrong_output(chapter):
    case = PLANTED[chapter]
    message = failure_message(case.checker, case.wrong)
    match = assert_well_formed(message, case.wrong.__name__)
    # 1. the last line, run as a cell with only the learner's function defined
    with torch.no_grad():
        got = run_cell(message.splitlines()[-1], {case.wrong.__name__: case.wrong})
        expected = case.reference(*redraw(match))
    # 2. the rerun output differs from the reference exactly as the message said
    problem = compare(expected, got, atol=case.atol, rtol=case.rtol, check_dtype=case.check_dtype)
    assert problem is not None
    assert message.splitlines()[0].endswith(f": {problem}")
    assert f"on trial {match.group(4)} with input" in message


def test_isa_single_softmax_mask_shows_the_subtle_values():
    """The course's example: a difference in the third digit, found again from the line."""
    message = failure_message(ch02.check_isa_aggregate, isa_aggregate)
    reported = re.search(
        r"first at index (\(.*?\)): expected (\S+), got (\S+)$", message.splitlines()[0]
    )
    assert reported is not None, message
    index, expected, got = (
        eval(reported.group(1)),
        float(reported.group(2)),
        float(reported.group(3)),
    )
    assert expected != pytest.approx(got, abs=1e-6)
    rerun = run_cell(message.splitlines()[-1], {"isa_aggregate": isa_aggregate})
    assert rerun[index].item() == pytest.approx(got, rel=1e-5)


# ----------------------------------------------------------------------------- signatures
def balanced_without_mask_argument(video, text, balance):
    """Exercise 4.1 with a missing parameter."""
    return ch04.balanced_cross_attention(
        video, text, torch.ones(text.shape[:2], dtype=bool), balance
    )


def recurrent_with_other_names(block, turns, v, v_mask, t, t_mask):
    """A right answer whose parameters are named differently from the stub's."""
    return ch05.recurrent_alignment(block, turns, v, v_mask, t, t_mask)


def test_wrong_signature_names_the_expected_one_in_one_line():
    message = failure_message(ch04.check_balanced_cross_attention, balanced_without_mask_argument)
    assert_well_formed(message, "balanced_without_mask_argument")
    first = message.splitlines()[0]
    assert "cannot be called with the exercise's 4 positional arguments" in first
    assert first.endswith(
        "the expected signature is balanced_without_mask_argument(video, text, text_mask, balance)"
    )
    namespace = {"balanced_without_mask_argument": balanced_without_mask_argument}
    with pytest.raises(TypeError):  # the line reproduces the error as well
        run_cell(message.splitlines()[-1], namespace)


def test_learner_parameter_names_do_not_matter(capsys):
    """Checkers call the learner's function positionally, never with keyword arguments."""
    ch05.check_recurrent_alignment(recurrent_with_other_names)
    assert capsys.readouterr().out == (
        "[OK] Exercise 5.1: recurrent_alignment: matches the reference on 20 random inputs.\n"
    )


# ----------------------------------------------------------------------------- crashes and reprs
def cfc_forward(vt_block, tv_block, sa_block, video, video_mask, text, text_mask):
    """A crash whose message holds a multi-line module repr."""
    raise RuntimeError(f"cannot use {vt_block}")


def top_k_hit_rate(results, relevant, k):
    """Exercise 7.2 reading a column that does not exist."""
    return float(results["ranks"].min() <= k)


@pytest.mark.parametrize(
    ("checker", "fn", "error"),
    [
        (ch04.check_cfc_forward, cfc_forward, RuntimeError),
        (ch07.check_top_k_hit_rate, top_k_hit_rate, KeyError),
    ],
)
def test_crash_is_one_line_and_reproducible(checker, fn, error):
    message = failure_message(checker, fn)
    assert_well_formed(message, fn.__name__)
    assert f"your function raised {error.__name__}" in message.splitlines()[0]
    assert "(attention):" not in message  # the module repr is cut at its first line
    with pytest.raises(error):
        run_cell(message.splitlines()[-1], {fn.__name__: fn})


def test_models_and_tables_are_summarised_in_inputs():
    message = failure_message(ch04.check_cfc_forward, cfc_forward)
    assert "AttentionBlock(600 parameters)" in message.splitlines()[1]
    message = failure_message(ch07.check_top_k_hit_rate, top_k_hit_rate)
    assert "DataFrame(shape=" in message.splitlines()[1]


def test_short_repr_and_describe_stay_on_one_short_line():
    block = ch04.cfc_forward_inputs(seed=0, trial=0)[0]
    table = pd.DataFrame({"a": range(50), "b": range(50)})
    for value in (
        block,
        table,
        torch.zeros(100, 100),
        list(range(1000)),
        {f"k{i}": i for i in range(99)},
    ):
        for text in (short_repr(value), describe(value)):
            assert "\n" not in text and len(text) <= 120, text
    assert short_repr(table) == "DataFrame(shape=(50, 2))"
    assert describe(torch.arange(5)) == "tensor(shape=(5,), dtype=int64, values [0, 1, 2, ...])"
    assert describe({"b", "a"}) == "{'a', 'b'}"  # sets in a fixed order
    problem = compare("R1", pd.Series([1, 2]), atol=0, rtol=0)  # no ambiguous truth value
    assert problem == "the output should be 'R1' but is Series(shape=(2,))"


def test_best_assignment_line_calls_the_learners_function():
    """The checker wraps the learner's function; the line still calls the learner's own."""

    def best_assignment(cost):
        return np.arange(len(cost))  # the identity: rarely optimal

    message = failure_message(ch03.check_best_assignment, best_assignment)
    match = assert_well_formed(message, "best_assignment")
    assignment = run_cell(message.splitlines()[-1], {"best_assignment": best_assignment})
    (cost,) = redraw(match)
    reported = float(re.search(r"but is (\S+)$", message.splitlines()[0]).group(1))
    assert ch03.assignment_cost(cost, assignment) == pytest.approx(reported, rel=1e-5)


# ----------------------------------------------------------------------------- input makers
def comparable(value: Any) -> Any:
    """A value that ``compare`` can check for equality (models by their weights)."""
    if isinstance(value, torch.nn.Module):
        return [t.clone() for t in value.state_dict().values()]
    if isinstance(value, pd.DataFrame):
        return value.to_dict("list")
    if type(value).__repr__ is object.__repr__:
        return describe(value)  # e.g. a search index: compared by its summary
    return value


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__.rsplit(".", 1)[1])
def test_every_checker_has_a_public_seeded_input_maker(module):
    checkers = [name for name in vars(module) if name.startswith("check_")]
    assert checkers
    for name in checkers:
        maker = getattr(module, name.removeprefix("check_") + "_inputs")
        first, again = maker(seed=0, trial=3), maker(seed=0, trial=3)
        assert isinstance(first, tuple)
        pairs = [(comparable(a), comparable(b)) for a, b in zip(first, again)]
        assert all(compare(a, b, atol=0, rtol=0) is None for a, b in pairs)


def test_check_draws_each_trial_from_its_maker():
    """``check`` sees exactly what ``maker(seed, trial)`` returns, trial by trial."""
    seen = []

    def record(*args):
        seen.append(args)
        return 0

    check(record, lambda *args: 0, ch00b.window_to_clip_ids_inputs, name="x", n=5, seed=3)
    assert seen == [ch00b.window_to_clip_ids_inputs(seed=3, trial=t) for t in range(5)]


def test_maker_outside_a_module_is_named_bare():
    def local_inputs(seed=0, trial=0):
        return (float(trial_rng(seed, trial).integers(10)),)

    assert (
        reproduction_line(local_inputs, 0, 2, "f")
        == "args = local_inputs(seed=0, trial=2); f(*args)"
    )


def test_maker_must_return_a_tuple():
    with pytest.raises(TypeError, match="tuple of positional arguments"):
        check(abs, abs, lambda seed, trial: 1.0, name="x")
