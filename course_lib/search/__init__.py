"""The capstone: a moment search engine over a folder of video files.

Modules:

* :mod:`~course_lib.search.build` -- streaming, resumable clip-feature extraction (manifest,
  atomic per-video cache, skipped-file summary);
* :mod:`~course_lib.search.engine` -- :class:`MomentSearch` (build / load / add / search), with a
  pluggable moment localiser (:mod:`course_lib.localisers`: the training-free baseline by default,
  chapter 5's COREBA model with :class:`~course_lib.localisers.CorebaLocaliser`);
* ``python -m course_lib.search`` -- the command line (``index`` and ``query``).

The names below are imported on first use (PEP 562 module ``__getattr__``): importing the package,
as ``python -m course_lib.search --help`` does, loads neither torch nor faiss.

Example:
    >>> engine = MomentSearch.build("my_videos/", "my_index/")
    >>> engine.search("a red circle moves left", k=5)
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public name -> the submodule that defines it.
_EXPORTS = {
    "VIDEO_EXTENSIONS": "build",
    "BuildSummary": "build",
    "IndexMismatchError": "build",
    "NothingIndexedError": "build",
    "VideoFeatures": "build",
    "VideoItem": "build",
    "discover_videos": "build",
    "extract_video": "build",
    "iter_sampled_frames": "build",
    "RESULT_COLUMNS": "engine",
    "MomentSearch": "engine",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import the submodule that defines ``name`` on first access and return ``name``.

    Args:
        name: a public name of the package (see ``__all__``).

    Returns:
        The object, also cached as a package attribute for later accesses.

    Raises:
        AttributeError: ``name`` is not a public name of the package.
    """
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    # import the defining submodule, then cache the name on the package
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """Module attributes plus the lazily imported public names."""
    return sorted(set(globals()) | set(__all__))
