"""The tiny CLIP architecture, registered with open_clip's own model-config registry.

open_clip builds every model from a JSON config (``embed_dim``, ``vision_cfg``, ``text_cfg``)
found in its registry; :func:`open_clip.add_model_config` adds a JSON file to it. We keep the
config as a Python dict here (the single source of truth), write it to the cache directory as
``<TINY_MODEL_NAME>.json`` when asked, and register that file. After
:func:`register_tiny_config`, ``open_clip.create_model(TINY_MODEL_NAME)`` works like any built-in.

The base tiny model sees 64x64 frames cut into 16x16 patches (a 4x4 grid: 16 patch tokens + 1 CLS
token; the default training recipe, minutes on a CPU) and reads captions of at most 32 BPE tokens
with open_clip's standard tokenizer (vocabulary 49,408). :func:`tiny_variant` gives the same
architecture with other patch sizes; the committed checkpoint ``data/tiny_clip.safetensors`` is
``TinyCLIP-Toy-ViT-8-64`` (8x8 patches, the improved recipe), and the checkpoint's metadata names
its architecture, so :meth:`course_lib.clip.ClipEncoder.tiny` builds whichever it was trained as.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

TINY_MODEL_NAME = "TinyCLIP-Toy-ViT-16-64"

TINY_CONFIG: dict[str, Any] = {
    "embed_dim": 128,
    "vision_cfg": {
        "image_size": 64,
        "patch_size": 16,
        "width": 128,
        "layers": 4,
        "head_width": 32,
        "mlp_ratio": 2.0,
    },
    "text_cfg": {
        "context_length": 32,
        "vocab_size": 49408,
        "width": 128,
        "heads": 4,
        "layers": 3,
        "mlp_ratio": 2.0,
    },
}


def tiny_config() -> dict[str, Any]:
    """A fresh copy of the tiny architecture config (safe to modify)."""
    return copy.deepcopy(TINY_CONFIG)


def tiny_variant(patch_size: int) -> tuple[str, dict[str, Any]]:
    """Name and config of the tiny architecture with another patch size (same naming scheme).

    Args:
        patch_size: side of the square image patches (must divide 64).

    Returns:
        ``(name, config)``; equal to ``(TINY_MODEL_NAME, TINY_CONFIG)`` for patch 16.
    """
    config = tiny_config()
    config["vision_cfg"]["patch_size"] = int(patch_size)
    image_size = config["vision_cfg"]["image_size"]
    if patch_size <= 0 or image_size % patch_size:
        raise ValueError(f"patch_size {patch_size} must divide the image size {image_size}")
    return f"TinyCLIP-Toy-ViT-{patch_size}-{image_size}", config


def register_config(name: str, config: dict[str, Any], config_dir: Path | None = None) -> str:
    """Register an open_clip model config under ``name`` (idempotent).

    Args:
        name: model name (also the JSON file's stem, which open_clip uses).
        config: open_clip model config (``embed_dim``, ``vision_cfg``, ``text_cfg``).
        config_dir: where to write the JSON file; default ``cache_dir("open_clip_configs")``.

    Returns:
        ``name``, usable with ``open_clip.create_model`` / ``get_tokenizer``.
    """
    import open_clip

    from course_lib.env import cache_dir
    from course_lib.files import atomic_write

    # 1. already registered with the same content: nothing to do
    if name in open_clip.list_models() and open_clip.get_model_config(name) == config:
        return name
    # 2. write the JSON file open_clip's registry reads, atomically
    folder = Path(config_dir) if config_dir is not None else cache_dir("open_clip_configs")
    path = folder / f"{name}.json"
    with atomic_write(path, "w") as handle:
        json.dump(config, handle, indent=2)
    # 3. add it to open_clip's registry (rescans its config paths)
    open_clip.add_model_config(path)
    return name


def register_tiny_config(name: str = TINY_MODEL_NAME, config_dir: Path | None = None) -> str:
    """Register the tiny config with open_clip (idempotent).

    Args:
        name: model name to register under (also the JSON file's stem, which open_clip uses).
        config_dir: where to write the JSON file; default ``cache_dir("open_clip_configs")``.

    Returns:
        The registered model name, usable with ``open_clip.create_model`` / ``get_tokenizer``.
    """
    return register_config(name, TINY_CONFIG, config_dir)
