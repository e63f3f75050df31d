"""The capstone: a moment search engine over a folder of video files.

Modules:

* :mod:`~course_lib.search.build` -- streaming, resumable clip-feature extraction (manifest,
  atomic per-video cache, skipped-file summary);
* :mod:`~course_lib.search.engine` -- :class:`MomentSearch` (build / load / add / search), with a
  pluggable moment localiser (:mod:`course_lib.localisers`: the training-free baseline by default,
  chapter 5's COREBA model with :class:`~course_lib.localisers.CorebaLocaliser`);
* ``python -m course_lib.search`` -- the command line (``index`` and ``query``).

Example:
    >>> engine = MomentSearch.build("my_videos/", "my_index/")
    >>> engine.search("a red circle moves left", k=5)
"""

from course_lib.search.build import (
    VIDEO_EXTENSIONS,
    BuildSummary,
    IndexMismatchError,
    NothingIndexedError,
    VideoFeatures,
    VideoItem,
    discover_videos,
    extract_video,
    iter_sampled_frames,
)
from course_lib.search.engine import RESULT_COLUMNS, MomentSearch

__all__ = [
    "RESULT_COLUMNS",
    "VIDEO_EXTENSIONS",
    "BuildSummary",
    "IndexMismatchError",
    "MomentSearch",
    "NothingIndexedError",
    "VideoFeatures",
    "VideoItem",
    "discover_videos",
    "extract_video",
    "iter_sampled_frames",
]
