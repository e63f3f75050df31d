"""The chapter map of the course: one table used by notebook 00 and the README.

:data:`CHAPTERS` are the chapters in reading order (notebook 00 draws and lists them);
:data:`APPENDICES` are notebooks outside that path (notebook 00 and the README list both).
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass


@dataclass(frozen=True)
class Chapter:
    """One notebook of the course."""

    number: str
    title: str
    builds: str  # what the learner builds, in a few words
    modules: str  # course_lib modules it introduces


CHAPTERS: tuple[Chapter, ...] = (
    Chapter("00", "Welcome and setup", "environment check, exercise mechanics", "env, checks"),
    Chapter(
        "00b",
        "The toy world",
        "synthetic videos, queries, windows, saliency",
        "toyworld, video, datasets",
    ),
    Chapter(
        "01", "CLIP features", "a tiny CLIP, a video encoder that sees actions, caching", "clip"
    ),
    Chapter(
        "02", "Coarse-to-fine similarity", "UCoFiA: 3 granularities, ISA, Sinkhorn", "similarity"
    ),
    Chapter(
        "03",
        "Moments and metrics",
        "span coding, IoU / gIoU, mAP, HIT@1, Hungarian matching",
        "spans, metrics, grounding",
    ),
    Chapter(
        "04", "Balance tokens and CFC", "COREBA cross-attention with balance tokens", "alignment"
    ),
    Chapter(
        "05", "Recurrent alignment", "COREBA RAM, training, joint MR + HD", "alignment, training"
    ),
    Chapter(
        "06",
        "Searching a collection",
        "faiss segment index, two-stage retrieval, score fusion, VCMR R@K",
        "corpus",
    ),
    Chapter(
        "07",
        "Your moment search engine",
        "index video files (video encoder + COREBA), query, widget",
        "search, widgets",
    ),
)


#: Notebooks outside the reading order: recipes for real data, after the chapters.
APPENDICES: tuple[Chapter, ...] = (
    Chapter(
        "A1",
        "Reproduce COREBA on QVHighlights on a GPU",
        "fetch the release, train / predict / eval with one command each",
        "qvhighlights",
    ),
)


def draw_course_map(ax=None):
    """Draw the chapters as boxes connected in reading order; returns the matplotlib Figure.

    Args:
        ax: optional matplotlib Axes to draw into.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    # 1. a canvas with one column per chapter, two rows (snake layout keeps boxes readable)
    if ax is None:
        fig, ax = plt.subplots(figsize=(13, 4.6))
    else:
        fig = ax.figure
    per_row = 5
    centres = [(i % per_row * 2.4 + 1.1, 2.6 if i < per_row else 0.8) for i in range(len(CHAPTERS))]
    colours = plt.get_cmap("viridis")
    # 2. one rounded box per chapter with its number, title and what it builds
    for i, (chapter, (x, y)) in enumerate(zip(CHAPTERS, centres)):
        colour = colours(0.15 + 0.7 * i / len(CHAPTERS))
        ax.add_patch(
            FancyBboxPatch(
                (x - 1.0, y - 0.6),
                2.0,
                1.2,
                boxstyle="round,pad=0.05",
                facecolor=colour,
                alpha=0.25,
                edgecolor=colour,
            )
        )
        title = textwrap.fill(f"{chapter.number}  {chapter.title}", 22)
        ax.text(x, y + 0.3, title, ha="center", va="center", fontsize=8.5, weight="bold")
        ax.text(
            x, y - 0.22, textwrap.fill(chapter.builds, 26), ha="center", va="center", fontsize=7
        )
    # 3. arrows in reading order
    for (x0, y0), (x1, y1) in zip(centres, centres[1:]):
        start, end = (
            ((x0 + 1.0, y0), (x1 - 1.0, y1)) if y0 == y1 else ((x0, y0 - 0.6), (x1 + 0.2, y1 + 0.6))
        )
        ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=12, color="0.4"))
    ax.set_xlim(0, per_row * 2.4)
    ax.set_ylim(0, 3.4)
    ax.axis("off")
    ax.set_title("Coarse-to-Fine Video Moment Search: the course map")
    return fig
