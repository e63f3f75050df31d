"""The capstone: a moment search engine over a folder of video files.

Modules:

* :mod:`~course_lib.search.build` -- streaming, resumable clip-feature extraction (manifest,
  atomic per-video cache, skipped-file summary);
* :mod:`~course_lib.search.localisers` -- pluggable moment localisers (training-free baseline by
  default, chapter 5's COREBA model with :class:`CorebaLocaliser`) and sliding windows for videos
  longer than the localiser's window;
* :mod:`~course_lib.search.engine` -- :class:`MomentSearch` (build / load / add / search);
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
from course_lib.search.localisers import (
    BaselineLocaliser,
    CorebaLocaliser,
    FunctionLocaliser,
    Localiser,
    Query,
    localise_long,
    saliency_curve,
    window_starts,
)

__all__ = [
    "RESULT_COLUMNS",
    "VIDEO_EXTENSIONS",
    "BaselineLocaliser",
    "BuildSummary",
    "CorebaLocaliser",
    "FunctionLocaliser",
    "IndexMismatchError",
    "Localiser",
    "MomentSearch",
    "NothingIndexedError",
    "Query",
    "VideoFeatures",
    "VideoItem",
    "discover_videos",
    "extract_video",
    "iter_sampled_frames",
    "localise_long",
    "saliency_curve",
    "window_starts",
]
