"""The three task views of the toy world, plus cheap single-frame samples.

* :func:`retrieval_pairs` - trimmed clips with one caption each (text-to-video retrieval,
  MSR-VTT-like); no two clips of a call share the (colour, shape, action, scene) content.
* :func:`moment_records` - untrimmed videos with one query per distinct event, in the
  QVHighlights jsonl format (windows, clip ids, three annotators' saliency).
* :func:`corpus` - a collection where one query is relevant in many videos, with graded
  relevance 1-4 per (query, video, window), TVR-Ranking-like.
* :func:`frame_samples` - (vid, t, scene, visible objects) for training a frame encoder.

Records hold exactly the contract fields; ``with_attributes=True`` adds an ``"attributes"``
key with the canonical :class:`~course_lib.toyworld.spec.Attributes` (strip it before writing
official files).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from course_lib.toyworld.captions import describe_event
from course_lib.toyworld.labels import relevance, saliency_labels
from course_lib.toyworld.motion import object_tracks
from course_lib.toyworld.script import Event, VideoSpec, clip_content_order, video_spec
from course_lib.toyworld.spec import (
    COLOURS,
    NOVEL_COMBOS,
    SPLITS,
    Attributes,
    ToyWorldError,
    check_positive,
    check_seed,
    check_split,
    make_vid,
    stable_seed,
)

#: qid = draw offset + video index * QIDS_PER_VIDEO + rank of the query within its video,
#: where the draw offset separates splits and seeds so qids are unique across all of them
#: (as in QVHighlights, whose qids are unique over train/val/test).
QIDS_PER_VIDEO = 1000
MAX_VIDEOS_PER_DRAW = 10_000


def moment_qid(split: str, seed: int, video_index: int, rank: int) -> int:
    """The qid of the ``rank``-th query of video ``video_index`` in draw (split, seed).

    Train with seed 0 gets qids ``0 ..``; every other (split, seed) pair gets its own block
    of ``MAX_VIDEOS_PER_DRAW * QIDS_PER_VIDEO`` ids.
    """
    draw = seed * len(SPLITS) + SPLITS.index(split)
    return (draw * MAX_VIDEOS_PER_DRAW + video_index) * QIDS_PER_VIDEO + rank


def _check_args(split: str, n: int, seed: int, n_name: str) -> None:
    """Validate the arguments every view takes."""
    check_split(split)
    check_positive(n_name, n)
    check_seed(seed)


def retrieval_pairs(split: str, n: int, seed: int = 0, with_attributes: bool = False) -> list[dict]:
    """Trimmed clips (8-16 s) with one caption each, all with distinct described content.

    Args:
        split: One of :data:`~course_lib.toyworld.spec.SPLITS`.
        n: Number of pairs (at most the split's number of distinct contents).
        seed: Which random draw of contents and clips.
        with_attributes: Add the canonical ``"attributes"`` of each caption.

    Returns:
        ``[{"pair_id", "vid", "caption", "duration"}, ...]`` with ``pair_id = 0 .. n-1``.

    Raises:
        ToyWorldError: bad split / n / seed, or ``n`` above the number of distinct contents.
    """
    _check_args(split, n, seed, "n")
    available = len(clip_content_order(split, seed))
    if n > available:
        raise ToyWorldError(
            f"n={n} retrieval pairs requested but split {split!r} has only {available} distinct "
            "(colour, shape, action, scene) contents"
        )
    pairs = []
    for i in range(n):
        vid = make_vid(split, "c", seed, i)
        spec = video_spec(vid)
        e = spec.events[spec.main_event]
        rng = np.random.default_rng(stable_seed("caption", vid))
        caption = describe_event(e.colour, e.shape, e.action, spec.scene, rng, with_scene=True)
        pair = {"pair_id": i, "vid": vid, "caption": caption, "duration": spec.duration}
        if with_attributes:
            pair["attributes"] = Attributes(*e.combo, spec.scene)
        pairs.append(pair)
    return pairs


def queried_events(spec: VideoSpec) -> dict[tuple[str, str, str], list[Event]]:
    """The events a video's queries ask about, grouped by (colour, shape, action).

    Args:
        spec: The video's script.

    Returns:
        Ordered by first occurrence; each value lists the occurrences (several when the
        event repeats). In ``test_novel`` only novel combinations are queried.
    """
    groups: dict[tuple[str, str, str], list[Event]] = {}
    for e in spec.events:
        if spec.split != "test_novel" or e.combo in NOVEL_COMBOS:
            groups.setdefault(e.combo, []).append(e)
    return groups


def videos_showing(attributes: Attributes, vids: Iterable[str]) -> set[str]:
    """The toy videos among ``vids`` that show an event a query with these attributes describes.

    A video counts when its scene is the query's scene and one of its events has the query's
    (colour, shape, action). This is the "right video" of a moment-search query: a result naming
    any of these videos found what the query asks for, not only the query's source video.

    Args:
        attributes: the query's canonical attributes (``with_attributes=True`` records).
        vids: toy video ids to check.

    Returns:
        The subset of ``vids`` showing the event.
    """
    combo = (attributes.colour, attributes.shape, attributes.action)
    specs = [video_spec(vid) for vid in vids]
    return {
        spec.vid
        for spec in specs
        if spec.scene == attributes.scene and any(e.combo == combo for e in spec.events)
    }


def _moment_record(spec: VideoSpec, qid: int, events: list[Event], attrs: bool) -> dict:
    """One QVHighlights record for the occurrences of one event."""
    rng = np.random.default_rng(stable_seed("query", spec.vid, events[0].combo))
    clip_ids, scores = saliency_labels(spec, events)
    rec = {
        "qid": qid,
        "query": describe_event(*events[0].combo, spec.scene, rng),
        "vid": spec.vid,
        "duration": spec.duration,
        "relevant_windows": [[float(e.start), float(e.end)] for e in events],
        "relevant_clip_ids": clip_ids,
        "saliency_scores": scores,
    }
    if attrs:
        rec["attributes"] = Attributes(*events[0].combo, spec.scene)
    return rec


def moment_records(
    split: str, n_videos: int, seed: int = 0, with_attributes: bool = False
) -> list[dict]:
    """QVHighlights-format records for ``n_videos`` untrimmed videos (30-150 s).

    Args:
        split: One of :data:`~course_lib.toyworld.spec.SPLITS`.
        n_videos: Number of videos (``toy-{split}-m{seed}-00000`` onwards).
        seed: Which random draw of videos.
        with_attributes: Add the canonical ``"attributes"`` of each query.

    Returns:
        One record per distinct event of each video, with exactly the fields ``qid, query,
        vid, duration, relevant_windows, relevant_clip_ids, saliency_scores``;
        qids come from :func:`moment_qid`: unique across splits and seeds, and independent
        of ``n_videos``.
    """
    _check_args(split, n_videos, seed, "n_videos")
    if n_videos > MAX_VIDEOS_PER_DRAW:
        raise ToyWorldError(f"n_videos={n_videos} exceeds {MAX_VIDEOS_PER_DRAW} per split and seed")
    records = []
    for i in range(n_videos):
        spec = video_spec(make_vid(split, "m", seed, i))
        for rank, events in enumerate(queried_events(spec).values()):
            qid = moment_qid(split, seed, i, rank)
            records.append(_moment_record(spec, qid, events, with_attributes))
    return records


def _corpus_contents(specs: list[VideoSpec], n_queries: int | None, rng) -> list:
    """Distinct (colour, shape, action, scene) contents to query, optionally subsampled."""
    contents = sorted({(*combo, s.scene) for s in specs for combo in queried_events(s)})
    if n_queries is not None:
        check_positive("n_queries", n_queries)
        if n_queries > len(contents):
            raise ToyWorldError(
                f"n_queries={n_queries} but the corpus holds only {len(contents)} distinct events"
            )
        keep = np.sort(rng.choice(len(contents), size=n_queries, replace=False))
        contents = [contents[i] for i in keep]
    return contents


def corpus(
    split: str,
    n_videos: int,
    seed: int = 0,
    n_queries: int | None = None,
    with_attributes: bool = False,
) -> dict:
    """A TVR-Ranking-like corpus: queries with graded relevance in many videos.

    Queries always name a scene. A moment is every occurrence of an event whose colour,
    shape and action match the query, in any video; its relevance (1-4) drops when the scene
    differs or the event is only partly inside the video (see :mod:`course_lib.toyworld.labels`).

    Args:
        split: One of :data:`~course_lib.toyworld.spec.SPLITS`.
        n_videos: Number of untrimmed videos (the same as :func:`moment_records` uses).
        seed: Which random draw of videos.
        n_queries: Number of queries; ``None`` = one per distinct event content in the corpus.
        with_attributes: Add the canonical ``"attributes"`` to each query.

    Returns:
        ``{"videos": [{"vid", "duration"}], "queries": [{"qid", "query", "relevant_moments":
        [{"vid", "duration", "window", "relevance"}]}]}``, moments sorted by relevance
        (descending), then vid and start.
    """
    _check_args(split, n_videos, seed, "n_videos")
    specs = [video_spec(make_vid(split, "m", seed, i)) for i in range(n_videos)]
    by_combo: dict[tuple[str, str, str], list[tuple[VideoSpec, Event]]] = {}
    for s in specs:
        for combo, events in queried_events(s).items():
            by_combo.setdefault(combo, []).extend((s, e) for e in events)
    rng = np.random.default_rng(stable_seed("corpus", split, seed, n_videos))
    queries = []
    for qid, content in enumerate(_corpus_contents(specs, n_queries, rng)):
        q_rng = np.random.default_rng(stable_seed("corpus-query", split, seed, content))
        moments = [
            {
                "vid": s.vid,
                "duration": s.duration,
                "window": [float(e.start), float(e.end)],
                "relevance": relevance(content[3], s.scene, e),
            }
            for s, e in by_combo[content[:3]]
        ]
        moments.sort(key=lambda m: (-m["relevance"], m["vid"], m["window"][0]))
        query = {
            "qid": qid,
            "query": describe_event(*content, q_rng, with_scene=True),
            "relevant_moments": moments,
        }
        if with_attributes:
            query["attributes"] = Attributes(*content)
        queries.append(query)
    videos = [{"vid": s.vid, "duration": s.duration} for s in specs]
    return {"videos": videos, "queries": queries}


def frame_samples(split: str, n: int, seed: int = 0, per_video: int = 4) -> list[dict]:
    """Single-frame samples with what they show, for training a frame encoder (cheap).

    Args:
        split: One of :data:`~course_lib.toyworld.spec.SPLITS`.
        n: Number of samples; ``per_video`` consecutive samples share an untrimmed video.
        seed: Which random draw of videos (same videos as :func:`moment_records`).
        per_video: Samples per video.

    Returns:
        ``[{"vid", "t", "scene", "objects": [(colour, shape), ...], "events": [(colour,
        shape, action), ...]}]``; ``render_frame(vid, t)`` draws the frame, ``objects`` are
        the visible ones, ``events`` the actions running at ``t``.
    """
    _check_args(split, n, seed, "n")
    check_positive("per_video", per_video)
    samples = []
    for i in range((n + per_video - 1) // per_video):
        spec = video_spec(make_vid(split, "m", seed, i))
        rng = np.random.default_rng(stable_seed("frames", spec.vid))
        times = np.round(rng.uniform(0.0, spec.duration, size=per_video), 2)
        tr = object_tracks(spec, times)
        for j, t in enumerate(times[: n - len(samples)]):
            visible = [
                (COLOURS[int(tr.colour_idx[k, j])], o.shape)
                for k, o in enumerate(spec.objects)
                if tr.alpha[k, j] >= 0.5
            ]
            running = [e.combo for e in spec.events if e.nominal_start <= t < e.nominal_end]
            samples.append(
                {
                    "vid": spec.vid,
                    "t": float(t),
                    "scene": spec.scene,
                    "objects": visible,
                    "events": running,
                }
            )
    return samples
