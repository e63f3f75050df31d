"""Interactive (ipywidgets) and static views of moment search results (capstone).

* :func:`search_widget` - a search box; each result is a row with a thumbnail strip of the
  moment and a timeline of the whole video (saliency curve, the moment shaded); a play control
  (``ipywidgets.Play`` + ``Image``) steps through the frames of the selected moment.
* :func:`show_results` - the same content as a matplotlib figure plus an HTML table, for places
  where widgets cannot render (no IPython kernel, exported notebooks, nbval). It is used
  automatically when :func:`static_mode` is true: no kernel, or ``COURSE_STATIC_WIDGETS=1``.

Both take any engine with ``search(query, k)``, ``frames(vid, start, end)``,
``saliency(vid, query)`` and ``video_info(vid)`` (:class:`course_lib.search.MomentSearch`).
"""

from __future__ import annotations

import html
import io
import os
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

STATIC_ENV = "COURSE_STATIC_WIDGETS"
_TRUE = {"1", "true", "yes", "on"}


def static_mode() -> bool:
    """True when widgets cannot render: ``COURSE_STATIC_WIDGETS=1`` or no IPython kernel."""
    if os.environ.get(STATIC_ENV, "").strip().lower() in _TRUE:
        return True
    try:
        from IPython import get_ipython
    except ImportError:
        return True
    shell = get_ipython()
    return shell is None or getattr(shell, "kernel", None) is None


# ----------------------------------------------------------------------------- pictures
def montage(frames: np.ndarray, max_frames: int = 8, gap: int = 2) -> np.ndarray:
    """Up to ``max_frames`` evenly spaced frames side by side (uint8 (h, W, 3), white gaps)."""
    frames = np.asarray(frames)
    if len(frames) == 0:
        return np.full((8, 8, 3), 255, np.uint8)
    pick = np.unique(np.linspace(0, len(frames) - 1, min(max_frames, len(frames))).round())
    h, w = frames.shape[1:3]
    out = np.full((h, len(pick) * (w + gap) - gap, 3), 255, np.uint8)
    for i, j in enumerate(pick.astype(int)):
        out[:, i * (w + gap) : i * (w + gap) + w] = frames[j]
    return out


def to_png(image: np.ndarray, scale: int = 1) -> bytes:
    """PNG bytes of a uint8 (H, W, 3) image, optionally enlarged ``scale`` times (nearest)."""
    from PIL import Image

    img = Image.fromarray(np.ascontiguousarray(image))
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _draw_timeline(ax, saliency: np.ndarray, duration: float, start: float, end: float) -> None:
    """Saliency curve over the whole video with the moment shaded."""
    times = (np.arange(len(saliency)) + 0.5) * (duration / max(len(saliency), 1))
    ax.axvspan(start, end, color="tab:orange", alpha=0.35, lw=0)
    ax.plot(times, saliency, color="tab:blue", lw=1)
    ax.set_xlim(0, duration)
    ax.set_yticks([])
    ax.tick_params(labelsize=7)


def timeline_png(saliency: np.ndarray, duration: float, start: float, end: float) -> bytes:
    """PNG of one result's timeline (the widget's per-row picture)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 0.9), dpi=80)
    ax = fig.add_axes((0.02, 0.3, 0.96, 0.65))
    _draw_timeline(ax, saliency, duration, start, end)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _label(row: Any) -> str:
    """One result as text: rank, video, span, score."""
    return f"#{row.rank} {row.vid}  {row.start:.1f}-{row.end:.1f} s  score {row.score:.3f}"


def results_figure(engine, results, query: str):
    """A matplotlib Figure: one row per result (thumbnail strip | saliency timeline).

    Built without pyplot, so it is not shown twice in a notebook.
    """
    from matplotlib.figure import Figure

    n = max(len(results), 1)
    fig = Figure(figsize=(10, 1.3 * n + 0.4), dpi=80)
    grid = fig.add_gridspec(n, 2, width_ratios=(1.1, 2.0), hspace=0.9, wspace=0.05)
    fig.suptitle(f"query: {query}", fontsize=10)
    q = engine.encode_query(query)
    for i, row in enumerate(results.itertuples()):
        frames, _ = engine.frames(row.vid, row.start, row.end)
        left, right = fig.add_subplot(grid[i, 0]), fig.add_subplot(grid[i, 1])
        left.imshow(montage(frames))
        left.set_axis_off()
        left.set_title(_label(row), fontsize=8, loc="left")
        duration = float(engine.video_info(row.vid)["duration"])
        _draw_timeline(right, engine.saliency(row.vid, q), duration, row.start, row.end)
        if i == n - 1:
            right.set_xlabel("time (s); curve = saliency, shaded = moment", fontsize=8)
    return fig


def results_html(results, query: str) -> str:
    """An HTML table of the results (text only, so notebook output comparisons stay stable)."""
    rows = "".join(
        f"<tr><td>{r.rank}</td><td>{html.escape(str(r.vid))}</td><td>{r.start:.1f}</td>"
        f"<td>{r.end:.1f}</td><td>{r.score:.3f}</td></tr>"
        for r in results.itertuples()
    )
    return (
        f"<p><b>query:</b> {html.escape(query)}</p><table><tr><th>rank</th><th>video</th>"
        f"<th>start (s)</th><th>end (s)</th><th>score</th></tr>{rows}</table>"
    )


@dataclass
class StaticResults:
    """Static search results: the DataFrame, a matplotlib figure and an HTML table.

    In a notebook, displaying it shows the figure and then the table.
    """

    query: str
    results: Any
    figure: Any
    html: str

    def _ipython_display_(self) -> None:
        from IPython.display import HTML, display

        display(self.figure)
        display(HTML(self.html))

    def __repr__(self) -> str:
        return f"StaticResults(query={self.query!r}, n={len(self.results)})"


def show_results(engine, query: str, k: int = 5) -> StaticResults:
    """Search and render the results statically (figure + HTML table).

    Args:
        engine: a :class:`~course_lib.search.MomentSearch`.
        query: the sentence.
        k: results.

    Returns:
        A :class:`StaticResults` (displays itself in a notebook).
    """
    results = engine.search(query, k=k)
    return StaticResults(
        query, results, results_figure(engine, results, query), results_html(results, query)
    )


# ----------------------------------------------------------------------------- widget
#: Result rows start with a label column of this width, so that their timelines line up.
LABEL_LAYOUT = {"width": "330px", "flex": "0 0 330px"}


def _player(engine):
    """Play control + image showing the frames of the selected moment."""
    import ipywidgets as w

    image = w.Image(format="png", width=256, height=256)
    play = w.Play(value=0, min=0, max=0, step=1, interval=400, description="play")
    slider = w.IntSlider(value=0, min=0, max=0, description="frame", readout=False)
    caption = w.HTML()
    w.jslink((play, "value"), (slider, "value"))
    state: dict[str, Any] = {
        "frames": np.zeros((1, 8, 8, 3), np.uint8),
        "times": [0.0],
        "label": "",
    }

    def show(change=None) -> None:
        i = int(slider.value)
        frame = state["frames"][i]
        image.value = to_png(frame, scale=max(1, 256 // max(frame.shape[:2])))
        caption.value = f"{html.escape(state['label'])} &nbsp; t = {state['times'][i]:.1f} s"

    def select(row: Any, _button=None) -> None:
        frames, times = engine.frames(row.vid, row.start, row.end)
        state.update(frames=frames, times=times, label=_label(row))
        play.value = slider.value = 0
        play.max = slider.max = len(frames) - 1
        show()

    slider.observe(show, names="value")
    box = w.VBox([w.HBox([w.Label("play the moment"), play, slider]), image, caption])
    return box, select


def search_widget(engine, query: str | None = None, k: int = 5):
    """An interactive search box over a :class:`~course_lib.search.MomentSearch`.

    Each result row: label and a "show" button, the video's timeline (saliency curve, moment
    shaded), and the moment's thumbnail strip. The player below steps through the selected
    moment's frames. Where widgets cannot render (:func:`static_mode`), returns
    :func:`show_results` for ``query`` instead.

    Args:
        engine: the search engine.
        query: an initial query (searched at once).
        k: number of results.

    Returns:
        An ``ipywidgets.VBox`` (with ``.run_search()`` and ``.result_rows``), or
        :class:`StaticResults` in static mode.
    """
    if static_mode():
        if query is None:
            raise ValueError("widgets cannot render here: pass query= for a static result view")
        return show_results(engine, query, k)
    import ipywidgets as w

    text = w.Text(
        value=query or "",
        placeholder="describe a moment",
        description="query",
        continuous_update=False,
    )
    k_box = w.BoundedIntText(value=k, min=1, max=50, description="k", layout={"width": "120px"})
    button = w.Button(description="search", icon="search")
    status = w.HTML()
    rows = w.VBox()
    player, select = _player(engine)

    def run_search(_=None) -> None:
        if not text.value.strip():
            status.value = "<i>type a query</i>"
            return
        res = engine.search(text.value, k=int(k_box.value))
        q = engine.encode_query(text.value)
        status.value = f"{len(res)} moments for <b>{html.escape(text.value)}</b>"
        children = []
        for row in res.itertuples():
            frames, _ = engine.frames(row.vid, row.start, row.end)
            duration = float(engine.video_info(row.vid)["duration"])
            sal = engine.saliency(row.vid, q)
            show = w.Button(description="show", icon="play", layout={"width": "80px"})
            show.on_click(partial(select, row))
            # fixed-width label column, then the timeline, then the (variable-length) strip,
            # so the timelines of all rows line up
            label = w.VBox([w.HTML(html.escape(_label(row))), show], layout=LABEL_LAYOUT)
            children.append(
                w.HBox(
                    [
                        label,
                        w.Image(value=timeline_png(sal, duration, row.start, row.end)),
                        w.Image(value=to_png(montage(frames), scale=2), format="png"),
                    ]
                )
            )
        rows.children = children
        if len(res):
            select(next(res.itertuples()))

    button.on_click(run_search)
    text.observe(run_search, names="value")  # continuous_update=False: fires on Enter
    box = w.VBox([w.HBox([text, k_box, button]), status, rows, player])
    box.run_search = run_search  # for scripts and tests
    box.result_rows = rows
    if query:
        run_search()
    return box
