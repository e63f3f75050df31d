"""The toy world: a deterministic, seedable generator of videos of coloured shapes.

Coloured shapes on textured scene backgrounds perform actions over time; template captions
describe the events with synonyms and paraphrases. One world yields three task views:
trimmed clips + captions (:func:`retrieval_pairs`), untrimmed videos + QVHighlights records
(:func:`moment_records`) and a graded-relevance corpus (:func:`corpus`). A video is fully
determined by its id (``toy-{split}-{kind}{seed}-{index:05d}``, see
:mod:`course_lib.toyworld.spec`), so :func:`render` regenerates its frames anywhere.

Modules: ``spec`` (vocabularies, ids, held-out combinations), ``script`` (what happens in a
video), ``motion`` (object states over time), ``shapes`` and ``scenes`` (masks and
backgrounds), ``render`` (pixels), ``captions`` (template grammar), ``labels`` (saliency and
relevance), ``views`` (the task views).
"""

from course_lib.toyworld.captions import describe_attributes, describe_event, describe_frame
from course_lib.toyworld.motion import object_tracks, visible_objects
from course_lib.toyworld.render import frame_times, render, render_frame
from course_lib.toyworld.script import Event, ObjectSpec, VideoSpec, video_spec
from course_lib.toyworld.spec import (
    ACTIONS,
    COLOUR_RGB,
    COLOURS,
    NOVEL_COMBOS,
    SCENES,
    SHAPES,
    SPLITS,
    Attributes,
    ToyWorldError,
    combo_allowed,
    make_vid,
    parse_vid,
)
from course_lib.toyworld.views import (
    corpus,
    frame_samples,
    moment_records,
    retrieval_pairs,
    videos_showing,
)

__all__ = [
    "ACTIONS",
    "COLOUR_RGB",
    "COLOURS",
    "NOVEL_COMBOS",
    "SCENES",
    "SHAPES",
    "SPLITS",
    "Attributes",
    "Event",
    "ObjectSpec",
    "ToyWorldError",
    "VideoSpec",
    "combo_allowed",
    "corpus",
    "describe_attributes",
    "describe_event",
    "describe_frame",
    "frame_samples",
    "frame_times",
    "make_vid",
    "moment_records",
    "object_tracks",
    "parse_vid",
    "render",
    "render_frame",
    "retrieval_pairs",
    "video_spec",
    "videos_showing",
    "visible_objects",
]
