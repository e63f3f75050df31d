"""SHA256-verified checkpoints: safetensors (preferred) or ``torch.load(weights_only=True)``.

A committed checkpoint ``data/NAME.safetensors`` comes with a manifest ``data/NAME.sha256`` in
``sha256sum`` format (``<hex>  NAME.safetensors``), so ``sha256sum -c data/NAME.sha256`` checks
it from a shell too. Loading refuses a file whose hash differs from the manifest. This is the
convention of every weights file in the course (COREBA checkpoints too, see
:mod:`course_lib.training.checkpoint`); the manifest functions live in :mod:`course_lib.files`
and are re-exported here (:func:`manifest_path`, :func:`write_manifest`, :func:`read_manifest`,
:func:`verify_sha256`) for the code that imports them from this module.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from course_lib.datasets.safe_read import load_torch_file, short_repr
from course_lib.errors import CheckpointError
from course_lib.files import (
    atomic_write,
    manifest_path,
    read_manifest,
    verify_manifest,
    verify_sha256,
    write_manifest,
)

__all__ = [
    "load_state_dict",
    "manifest_path",
    "read_manifest",
    "save_state_dict",
    "verify_manifest",
    "verify_sha256",
    "write_manifest",
]


def save_state_dict(
    state: dict[str, torch.Tensor],
    path: str | os.PathLike,
    metadata: dict[str, str] | None = None,
    dtype: torch.dtype | None = torch.float16,
) -> str:
    """Save tensors as safetensors atomically (floating tensors cast to ``dtype``), write manifest.

    Args:
        state: tensors to store (e.g. ``model.state_dict()``).
        path: destination ``*.safetensors`` file.
        metadata: string key/values stored in the safetensors header.
        dtype: floating-point storage type (``None`` keeps each tensor's own dtype).

    Returns:
        The hex SHA256 of the written file.
    """
    from safetensors.torch import save

    # 1. contiguous CPU copies in the storage dtype
    tensors = {}
    for key, value in state.items():
        value = value.detach().cpu()
        if dtype is not None and value.is_floating_point():
            value = value.to(dtype)
        tensors[key] = value.contiguous()
    # 2. serialise in memory, then write atomically
    blob = save(tensors, metadata=metadata or {})
    with atomic_write(path, "wb") as handle:
        handle.write(blob)
    return write_manifest(path)


def load_state_dict(
    path: str | os.PathLike, expected_sha256: str | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Load a verified checkpoint as float32 tensors.

    Args:
        path: ``*.safetensors`` file, or a ``torch.save`` file (loaded with ``weights_only=True``:
            a file holding other Python objects than tensors and plain containers is refused).
        expected_sha256: hash to check; ``None`` reads the manifest next to the file.

    Returns:
        ``(state_dict, metadata)``; metadata is empty for torch files.

    Raises:
        CheckpointError: missing file or manifest, hash mismatch, an unreadable file, a torch
            file that is not a plain tensor file, or content that is not a dict of tensors.
    """
    path = Path(path)
    # 1. the hash check comes first: a tampered file is never parsed
    if expected_sha256 is None:
        verify_manifest(path)
    else:
        verify_sha256(path, expected_sha256)
    if path.suffix == ".safetensors":
        state, metadata = _read_safetensors(path)
    else:
        state, metadata = load_torch_file(path, "checkpoint", CheckpointError), {}
    _check_tensor_dict(state, path)
    # 2. compute in float32 whatever the storage precision
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    return state, metadata


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file (CheckpointError naming it if unreadable)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
            state = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except Exception as error:  # a parse error after a correct hash: incompatible format
        raise CheckpointError(f"checkpoint {path} could not be read: {error}") from error
    return state, metadata


def _check_tensor_dict(state: object, path: Path) -> None:
    """Refuse a loaded checkpoint that is not a dict of tensors (e.g. a list, or a number)."""
    if not isinstance(state, dict):
        raise CheckpointError(
            f"checkpoint {path} holds {type(state).__name__}, expected a dict of named tensors"
        )
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"checkpoint {path}: entry {short_repr(key)} is {type(value).__name__}, "
                "expected a tensor"
            )
