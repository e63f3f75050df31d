"""Fault injection, class "unsafe hint" of issue #21: no error suggests ``weights_only=False``.

torch's weights-only unpickler refuses a file holding other Python objects than tensors, and its
message advises to retry with ``weights_only=False``, which would run code from the file. Cases: a
checkpoint and a training run's resume state that hold such an object, and random bytes as a
torch file. The course error names the file and the unpickler's reason, and neither it nor the
exception chained to it repeats torch's advice.
"""

from __future__ import annotations

import traceback

import pytest
import torch
from fault_helpers import saved_run

from course_lib.clip.checkpoint import load_state_dict
from course_lib.datasets import safe_read
from course_lib.errors import CheckpointError
from course_lib.files import write_manifest
from course_lib.training.checkpoint import STATE_FILE, load_training_state


def torch_advice(error: BaseException) -> list[str]:
    """torch's unsafe advice found anywhere a user sees of an exception (chained ones included)."""
    shown = "".join(traceback.format_exception_only(type(error), error))
    context = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
    if context is not None:
        shown += "".join(traceback.format_exception(type(context), context, None))
    advice = ("weights_only=False", "weights_only` set to `False", "likely succeed", "safe_globals")
    return [text for text in advice if text in shown]


class _NotATensor:
    """A Python object the weights-only unpickler refuses."""


def test_unpickling_errors_never_suggest_weights_only_false(tmp_path):
    checkpoint = tmp_path / "model.pt"
    torch.save({"w": torch.ones(2), "extra": _NotATensor()}, checkpoint)
    write_manifest(checkpoint)
    with pytest.raises(CheckpointError, match="not a plain tensor file") as refused:
        load_state_dict(checkpoint)
    assert str(checkpoint) in str(refused.value) and "_NotATensor" in str(refused.value)
    assert torch_advice(refused.value) == []
    # the resume state of a training run goes through the same loader
    model, optimizer, scheduler = saved_run(tmp_path)
    torch.save({"epoch": 0, "payload": _NotATensor()}, tmp_path / STATE_FILE)
    with pytest.raises(CheckpointError, match="not a plain tensor file") as refused:
        load_training_state(tmp_path, model, optimizer, scheduler)
    assert torch_advice(refused.value) == []


def test_random_bytes_as_a_torch_file_are_refused_with_the_unpicklers_reason(tmp_path):
    state = tmp_path / STATE_FILE
    state.write_bytes(b"garbage" * 10)
    with pytest.raises(CheckpointError, match=r"\(Unsupported operand \d+\)") as refused:
        safe_read.load_torch_file(state, "training state")
    assert str(state) in str(refused.value) and torch_advice(refused.value) == []
