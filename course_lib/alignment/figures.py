"""Figures for the COREBA chapters: the CFC data-flow diagram and VT attention heatmaps.

Plotting only (matplotlib / seaborn are imported inside the functions, so importing this module
costs nothing); the numbers come from :func:`course_lib.alignment.attention_to_balance_tokens`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# (x, y) centres of the diagram's boxes, in axes units of a 12 x 5 canvas
_BOXES = {
    "video": (0.9, 3.7, "$F'_v$\nvideo clips\n(T x d)", "#cfe2f3"),
    "text": (0.9, 1.3, "$\\tilde F_t=[F'_t;B]$\nwords + balance\n(L+$L_b$ x d)", "#fce5cd"),
    "vt": (3.4, 3.7, "VT-block\n(coarse, eq. 2)\nQ: video  K,V: text", "#d9ead3"),
    "tv": (3.4, 1.3, "TV-block\n(eq. 2)\nQ: text  K,V: video", "#d9ead3"),
    "sa_v": (5.9, 3.7, "self-attention\n(eq. 3)", "#ead1dc"),
    "sa_t": (5.9, 1.3, "self-attention\n(eq. 4)", "#ead1dc"),
    "avg_v": (8.0, 3.7, "$\\tilde F_{vt}=\\frac{1}{2}(F_{vt}+SA)$", "#fff2cc"),
    "avg_t": (8.0, 1.3, "$\\tilde F_{tv}=\\frac{1}{2}(F_{tv}+SA)$", "#fff2cc"),
    "fine": (10.6, 2.5, "VT-block again\n(fine, eq. 5)\n$\\to F_{fine}$", "#d9ead3"),
}
_ARROWS = [
    ("video", "vt", "queries"),
    ("text", "vt", "keys/values"),
    ("text", "tv", "queries"),
    ("video", "tv", "keys/values"),
    ("vt", "sa_v", "$F_{vt}$"),
    ("tv", "sa_t", "$F_{tv}$"),
    ("sa_v", "avg_v", ""),
    ("sa_t", "avg_t", ""),
    ("avg_v", "fine", "queries"),
    ("avg_t", "fine", "keys/values"),
]


def draw_cfc_diagram(ax=None):
    """Draw the data flow of one CFC block (COREBA eqs. 1-5) with matplotlib boxes and arrows.

    Shared weights are drawn as dashed links: the two self-attentions are one module, and the
    fine pass reuses the coarse VT-block.

    Args:
        ax: matplotlib Axes; a new 12 x 4.6 inch figure when None.

    Returns:
        The matplotlib Figure.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    if ax is None:
        _, ax = plt.subplots(figsize=(12, 4.6))
    w, h = 1.9, 1.15
    for x, y, label, colour in _BOXES.values():
        ax.add_patch(
            FancyBboxPatch(
                (x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.05", fc=colour, ec="0.3"
            )
        )
        ax.text(x, y, label, ha="center", va="center", fontsize=8.5)
    for src, dst, label in _ARROWS:
        (x0, y0), (x1, y1) = _BOXES[src][:2], _BOXES[dst][:2]
        start, end = (x0 + w / 2, y0), (x1 - w / 2, y1)
        ax.annotate("", end, start, arrowprops=dict(arrowstyle="->", color="0.2", lw=1.2))
        if label:
            t = 0.5 if y0 == y1 else 0.72  # labels of crossing arrows sit near their target
            mx, my = start[0] + t * (end[0] - start[0]), start[1] + t * (end[1] - start[1])
            ax.text(mx, my + 0.12, label, ha="center", fontsize=7, color="0.25")
    # shared weights: one self-attention module; the fine pass reuses the VT-block
    sa_v, sa_t, vt, fine = _BOXES["sa_v"], _BOXES["sa_t"], _BOXES["vt"], _BOXES["fine"]
    ax.plot([sa_v[0], sa_t[0]], [sa_v[1] - h / 2, sa_t[1] + h / 2], "--", color="purple")
    ax.text(sa_v[0] + 0.1, 2.5, "one module,\nshared weights", fontsize=7.5, color="purple")
    ax.annotate(
        "",
        (fine[0], fine[1] + h / 2),
        (vt[0], vt[1] + h / 2),
        arrowprops=dict(arrowstyle="->", ls="--", color="green", connectionstyle="arc3,rad=-0.25"),
    )
    ax.text(7.0, 4.95, "same VT weights", fontsize=7.5, color="green", ha="center")
    ax.set_xlim(-0.2, 11.8)
    ax.set_ylim(0.3, 5.3)
    ax.axis("off")
    ax.set_title("One CFC block: coarse alignment, shared self-attention, fine alignment")
    return ax.figure


def plot_attention_map(
    weights: np.ndarray,
    token_labels: Sequence[str],
    relevant_clips: Sequence[int] = (),
    ax=None,
    title: str | None = None,
    vmax: float | None = None,
):
    """Heatmap of a VT attention map: tokens (rows) x clips (columns), relevant clips marked.

    Args:
        weights: (T, K) attention of T clips over K keys (words, then balance tokens).
        token_labels: K row labels.
        relevant_clips: clip indices of the ground-truth moment (outlined in black).
        ax: matplotlib Axes (new figure when None).
        title: optional title.
        vmax: colour-scale maximum (share it between maps to compare them).

    Returns:
        The matplotlib Figure.
    """
    import matplotlib.pyplot as plt
    import seaborn as sns
    from matplotlib.patches import Rectangle

    weights = np.asarray(weights, dtype=float)
    if weights.shape[1] != len(token_labels):
        raise ValueError(f"{weights.shape[1]} keys but {len(token_labels)} token labels")
    if ax is None:
        _, ax = plt.subplots(figsize=(10, 0.28 * len(token_labels) + 1.2))
    sns.heatmap(weights.T, ax=ax, cmap="viridis", vmin=0.0, vmax=vmax, cbar_kws={"pad": 0.01})
    ax.set_yticks(np.arange(len(token_labels)) + 0.5)
    ax.set_yticklabels(token_labels, rotation=0, fontsize=7)
    step = max(1, weights.shape[0] // 15)
    ax.set_xticks(np.arange(0, weights.shape[0], step) + 0.5)
    ax.set_xticklabels([str(i) for i in range(0, weights.shape[0], step)], fontsize=7, rotation=0)
    ax.set_xlabel("clip (2 s each)")
    for start, stop in _runs(sorted(set(relevant_clips))):
        box = Rectangle((start, 0), stop - start, len(token_labels), fill=False, ec="white", lw=1.5)
        ax.add_patch(box)
    if title:
        ax.set_title(title, fontsize=9)
    return ax.figure


def _runs(indices: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted indices -> ``[(start, stop), ...]`` of consecutive runs (stop exclusive)."""
    runs: list[tuple[int, int]] = []
    for i in indices:
        if runs and runs[-1][1] == i:
            runs[-1] = (runs[-1][0], i + 1)
        else:
            runs.append((i, i + 1))
    return runs
