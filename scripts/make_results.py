"""Generate RESULTS.md, the course's measured figures, from the committed result files in data/.

The page is built from files only (nothing is trained, evaluated or timed here):

* chapter 1: ``data/tiny_clip_history.json`` (the tiny CLIP's training record);
* chapter 5: ``data/coreba_toy*.json`` (COREBA checkpoints: val/test metrics, the training-free
  baseline's test metrics, sizes, times, the command that wrote them) and
  ``data/coreba_ablation*.csv`` (the ablation grid);
* chapter 6: ``data/bench/corpus_eval*.csv`` (corpus moment retrieval) and
  ``data/bench/index_scale.csv`` (faiss indexes at scale).

The output is deterministic: files are read in sorted order, every number is printed with a
fixed number of decimals and the page holds no timestamp, so ``--check`` can compare it with the
committed RESULTS.md byte for byte.

Usage (from the repository root)::

    python scripts/make_results.py            # write RESULTS.md (atomically)
    python scripts/make_results.py --check    # exit 1 if RESULTS.md differs from what it would write
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from data_index import INDEX_NAME, parse_index

from course_lib.errors import CheckpointError
from course_lib.files import atomic_write, read_manifest

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO / "data"
DEFAULT_OUT = REPO / "RESULTS.md"

#: Shown for a value a file does not record, or records as NaN (an undefined metric).
MISSING = "—"
#: The metrics of the chapter-5 headline table.
HEADLINE_METRICS = ("MR-full-mAP", "HL-min-VeryGood-mAP", "HL-min-VeryGood-Hit1")
#: Columns of the chapter-5 headline table.
HEADLINE_HEADER = ("file", "encoder", "metric", "COREBA test", "baseline test", "difference")
#: Indexes of index_scale.csv that are exact references, not approximate indexes.
EXACT_INDEXES = ("dense_numpy", "dense_torch", "flat")
#: Recall@100 an approximate index must reach to count (the chapter-6 target).
RECALL_TARGET = 0.95


# --- formatting ------------------------------------------------------------------------------


def fmt(value: Any, digits: int = 2) -> str:
    """Format one measured value for a table cell.

    Args:
        value: a number, string, bool or missing value (None, NaN); numpy scalars are accepted.
        digits: decimals of a float.

    Returns:
        The cell text: floats with exactly ``digits`` decimals, integers as they are, missing
        values and NaN as :data:`MISSING`.
    """
    if hasattr(value, "item"):
        value = value.item()
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def recorded(value: Any) -> str:
    """Format a setting exactly as the file records it (no rounding).

    Args:
        value: a JSON value (number, bool, list, string ...).

    Returns:
        Strings unchanged, everything else in JSON notation (``0.001``, ``true``, ``[0.5, 0.15]``).
    """
    return value if isinstance(value, str) else json.dumps(value)


def signed(value: float) -> str:
    """Format a difference of two metrics with its sign.

    Args:
        value: the difference.

    Returns:
        ``+1.23`` / ``-1.23`` (two decimals), or :data:`MISSING` for NaN.
    """
    return MISSING if math.isnan(value) else f"{value:+.2f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> str:
    """A GitHub markdown table: text columns first (left-aligned), then numbers (right-aligned).

    Args:
        header: column titles.
        rows: cell texts, one sequence per row, as long as ``header``.
        left: how many leading columns are left-aligned.

    Returns:
        The table's lines joined by newlines (no trailing newline).
    """

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    rule = "|" + "|".join([":---"] * left + ["---:"] * (len(header) - left)) + "|"
    return "\n".join([line(header), rule] + [line(row) for row in rows])


def source_line(files: Sequence[str], command: str | None) -> str:
    """The sentence under a table that names its files and the command that wrote them.

    Args:
        files: repository-relative paths of the files the table reads.
        command: the producing command, or None when no file or document records one.

    Returns:
        One markdown line.
    """
    names = ", ".join(f"`{name}`" for name in files)
    made = f"`{command}`" if command else "not recorded"
    return f"Source: {names}; command: {made}."


# --- reading ---------------------------------------------------------------------------------


def read_json(path: Path) -> dict[str, Any]:
    """Read a result json (NaN allowed, as Python's json writes it).

    Args:
        path: the file.

    Returns:
        The decoded object.
    """
    return json.loads(path.read_text(encoding="utf-8"))


def index_commands(data_dir: Path) -> dict[str, str]:
    """The command that produced each file, from the "produced by" column of ``data/README.md``.

    Args:
        data_dir: the data directory.

    Returns:
        File path relative to ``data_dir`` -> command; empty when the folder has no index.
    """
    index = data_dir / INDEX_NAME
    if not index.is_file():
        return {}
    return {row.file: row.command for row in parse_index(index.read_text(encoding="utf-8"))}


def relative(path: Path, data_dir: Path) -> str:
    """The path as the page names it: ``data/<path inside the data directory>``.

    Args:
        path: a file under ``data_dir``.
        data_dir: the data directory the page is generated from.

    Returns:
        E.g. ``data/bench/index_scale.csv`` (the same for a copy of data/ elsewhere).
    """
    return "data/" + path.relative_to(data_dir).as_posix()


#: the committed encoders whose clip features the results read, by checkpoint file
COMMITTED_ENCODERS = {
    "tiny_clip.safetensors": "tiny CLIP",
    "video_clip.safetensors": "video encoder",
}


def committed_digest(data_dir: Path, checkpoint: str) -> str | None:
    """The SHA256 of a committed checkpoint, from its manifest (``X.sha256``).

    Args:
        data_dir: the data directory.
        checkpoint: the file name, e.g. ``tiny_clip.safetensors``.

    Returns:
        The hex digest, or None when the manifest is missing or malformed.
    """
    try:
        return read_manifest(data_dir / checkpoint)
    except CheckpointError:
        return None


def weights_of(identity: str) -> str:
    """The encoder weights hash (first 16 hex digits) in a feature identity or a CSV cell.

    Args:
        identity: ``name|sha256|size`` as COREBA jsons store it, or a bare (prefix of a) hash.

    Returns:
        The first 16 hex digits of the weights' SHA256.
    """
    parts = identity.split("|")
    return (parts[1] if len(parts) > 1 else parts[0])[:16]


# --- header and provenance ------------------------------------------------------------------


def header_section() -> str:
    """The page's title and how to read and refresh it.

    Returns:
        Markdown text.
    """
    return "\n".join(
        [
            "# Results",
            "",
            "Measured figures of the course, generated by `python scripts/make_results.py` "
            "(`make results`) from the committed result files under `data/` only. Do not edit "
            "this page by hand: `python scripts/make_results.py --check` fails when it differs "
            "from what the files say. Every table names the files it reads and the command that "
            "wrote them (quoted from the file where it records one). Metrics are in percent, "
            f"as the official scripts print them, rounded to two decimals; {MISSING} marks a "
            "value a file does not record, or records as NaN (undefined).",
            "",
        ]
    )


def weights_rows(data_dir: Path, runs: dict[str, dict[str, Any]]) -> list[tuple[str, str]]:
    """The encoder weights every result file says it was computed with.

    Args:
        data_dir: the data directory.
        runs: :func:`load_runs` output.

    Returns:
        ``(file, weights hash prefix)`` pairs, sorted by file.
    """
    rows = [(name, weights_of(run["clip_identity"])) for name, run in runs.items()
            if run.get("clip_identity")]  # fmt: skip
    columns = {"coreba_ablation*.csv": "clip weights", "bench/corpus_eval*.csv": "clip_weights"}
    for pattern, column in columns.items():
        for path in sorted(data_dir.glob(pattern)):
            frame = pd.read_csv(path, dtype={column: str})
            for value in sorted(set(frame[column].dropna())):
                rows.append((relative(path, data_dir), weights_of(value)))
    return sorted(rows)


def provenance_section(data_dir: Path, runs: dict[str, dict[str, Any]]) -> str:
    """Which tiny CLIP each result was computed with, compared with the committed one.

    Args:
        data_dir: the data directory.
        runs: :func:`load_runs` output.

    Returns:
        Markdown text.
    """
    digests = {name: committed_digest(data_dir, file) for file, name in COMMITTED_ENCODERS.items()}
    committed = {digest[:16]: name for name, digest in digests.items() if digest}
    rows = [[name, f"`{weights}`", committed.get(weights, "no")]
            for name, weights in weights_rows(data_dir, runs)]  # fmt: skip
    table = markdown_table(["file", "encoder weights", "committed encoder"], rows, left=3)
    found = ", ".join(f"{name} `{digest[:16]}`" if digest else f"{name} not found"
                      for name, digest in digests.items())  # fmt: skip
    return "\n".join(
        [
            "## Which encoder the results used",
            "",
            "Every later result reads clip features of a committed encoder. Weights are named by the "
            "first 16 hex digits of their SHA256; the last column names the committed checkpoint "
            f"they match (`data/tiny_clip.sha256`, `data/video_clip.sha256`: {found}), or says no.",
            "",
            table,
            "",
        ]
    )


# --- chapter 1 -------------------------------------------------------------------------------


def tiny_clip_rows(history: dict[str, Any], window: int = 100) -> list[list[str]]:
    """The tiny CLIP's training settings and record as table rows.

    Args:
        history: the decoded ``tiny_clip_history.json``.
        window: how many logged steps the first/last loss means average.

    Returns:
        ``[setting, value]`` rows: every ``train_config`` key (sorted), then the wall time,
        the number of logged steps and the mean loss of the first and last ``window`` steps.
    """
    config = history.get("train_config", {})
    rows = [[f"`{key}`", recorded(config[key])] for key in sorted(config)]
    loss = history.get("loss", [])
    rows.append(["wall time (s)", fmt(history.get("seconds"), 1)])
    rows.append(["logged steps", fmt(len(loss))])
    if loss:
        first, last = loss[:window], loss[-window:]
        rows.append([f"mean loss, first {len(first)} steps", fmt(sum(first) / len(first), 3)])
        rows.append([f"mean loss, last {len(last)} steps", fmt(sum(last) / len(last), 3)])
    return rows


def chapter1_section(data_dir: Path) -> str:
    """Chapter 1: the committed tiny CLIP.

    Args:
        data_dir: the data directory.

    Returns:
        Markdown text (a pointer to notebook 01 only, when the history file is missing).
    """
    lines = [
        "## Chapter 1: the tiny CLIP",
        "",
        "No committed file records the tiny CLIP's test quality (colour, shape and scene "
        "accuracy, text-to-frame R@1): notebook 01 computes it with `evaluate_toy` on held-out "
        "test frames and prints it next to the targets and to chance (section 3 of "
        "`solutions/01_clip_features.ipynb`), and compares the first, default recipe "
        "(`data/tiny_clip_default_recipe.safetensors`) in section 4.",
        "",
    ]
    path = data_dir / "tiny_clip_history.json"
    if not path.is_file():
        return "\n".join(lines)
    history = read_json(path)
    lines += ["Training record of `data/tiny_clip.safetensors`:", ""]
    lines += [markdown_table(["setting", "value"], tiny_clip_rows(history)), ""]
    command = index_commands(data_dir).get("tiny_clip.safetensors")
    lines += [source_line([relative(path, data_dir)], command), ""]
    if history.get("note"):
        lines += ["The file's note:", "", f"> {history['note']}", ""]
    return "\n".join(lines + video_clip_lines(data_dir))


def video_clip_lines(data_dir: Path) -> list[str]:
    """Chapter 1's video encoder: its validation figures and settings from ``video_clip.json``.

    Args:
        data_dir: the data directory.

    Returns:
        Markdown lines (none when the record is missing).
    """
    path = data_dir / "video_clip.json"
    if not path.is_file():
        return []
    record = read_json(path)
    config = dict(record.get("training_config", {}))
    tower = config.pop("tower", {})
    val = record.get("val_metrics", {})
    rows = [[f"`{k}`", fmt(int(v) if k.startswith("n_") else v, 3)] for k, v in val.items()]
    settings = [[f"`{key}`", recorded(config[key])] for key in sorted(config)]
    settings += [[f"`tower.{key}`", recorded(tower[key])] for key in sorted(tower)]
    return [
        "### The video encoder (`data/video_clip.safetensors`)",
        "",
        "Validation figures recorded at export (text-to-clip attribute accuracy, compositions, "
        "localisation AUC inside relevant videos, video retrieval AUC; "
        "`course_lib.experiments.ch01_video_encoder.evaluate` on 20 val videos of draw 0); "
        "notebook 01 section 8 and `benchmarks/probe_clip_features.py` measure the test split.",
        "",
        markdown_table(["figure", "val"], rows),
        "",
        markdown_table(["setting", "value"], settings),
        "",
        source_line([relative(path, data_dir)], index_commands(data_dir).get("video_clip.json")),
        "",
    ]


# --- chapter 5 -------------------------------------------------------------------------------


def encoder_of(run: dict[str, Any]) -> str:
    """The committed encoder whose clip features a COREBA checkpoint was trained on.

    Args:
        run: a decoded ``coreba_toy*.json``.

    Returns:
        Its ``encoder`` (``video`` or ``tiny``), ``tiny`` when the file records none.
    """
    return run.get("encoder") or "tiny"


def load_runs(data_dir: Path) -> dict[str, dict[str, Any]]:
    """Every committed COREBA result json, by page name.

    Args:
        data_dir: the data directory.

    Returns:
        ``{"data/coreba_toy.json": {...}, ...}`` in sorted order.
    """
    paths = sorted(data_dir.glob("coreba_toy*.json"))
    return {relative(path, data_dir): read_json(path) for path in paths}


def metric(run: dict[str, Any], block: str, name: str) -> float:
    """One metric of a COREBA result json.

    Args:
        run: the decoded json.
        block: ``test_metrics``, ``baseline_test_metrics`` ...
        name: the metric, e.g. ``MR-full-mAP``.

    Returns:
        Its value, NaN when the file does not record it.
    """
    value = (run.get(block) or {}).get(name)  # a block recorded as null: not measured
    return math.nan if value is None else float(value)


def headline_rows(runs: dict[str, dict[str, Any]]) -> list[list[str]]:
    """COREBA against the training-free baselines on the headline metrics.

    Args:
        runs: :func:`load_runs` output.

    Returns:
        One row per (file, headline metric).
    """
    rows = []
    for name, run in runs.items():
        for key in HEADLINE_METRICS:
            model = metric(run, "test_metrics", key)
            base = metric(run, "baseline_test_metrics", key)
            rows.append(
                [f"`{name}`", encoder_of(run), key, fmt(model), fmt(base), signed(model - base)]
            )
    return rows


def setup_rows(runs: dict[str, dict[str, Any]]) -> list[list[str]]:
    """Sizes, times and weights of each COREBA checkpoint, one row per quantity.

    Args:
        runs: :func:`load_runs` output.

    Returns:
        Rows whose cells after the first are the files' values, in ``runs`` order.
    """

    def field(label: str, get: Callable[[dict[str, Any]], Any], digits: int = 1) -> list[str]:
        return [label] + [fmt(get(run), digits) for run in runs.values()]

    return [
        field("encoder", encoder_of),
        *[field(f"{split} videos", lambda r, s=split: r.get("sizes", {}).get(f"{s}_videos"))
          for split in ("train", "val", "test")],
        *[field(f"{split} queries", lambda r, s=split: r.get("n_queries", {}).get(s))
          for split in ("train", "val", "test")],
        field("epochs", lambda r: r.get("sizes", {}).get("epochs")),
        field("selected epoch (0-based, on val)", lambda r: r.get("epoch")),
        field("parameters", lambda r: r.get("parameters")),
        field("torch threads", lambda r: r.get("torch_threads")),
        field("train seconds (whole run)", lambda r: r.get("train_seconds")),
        field("seconds of the last call", lambda r: r.get("call_seconds")),
        field("train_cpu_seconds (last call)", lambda r: r.get("train_cpu_seconds")),
        field("encoder weights", lambda r: weights_of(r.get("clip_identity") or "") or None),
    ]  # fmt: skip


def metric_rows(run: dict[str, Any], blocks: Sequence[str]) -> list[list[str]]:
    """Every metric of the given blocks of one COREBA json, sorted by metric name.

    Args:
        run: the decoded json.
        blocks: the metric blocks to show, one column each (absent blocks are skipped by the
            caller).

    Returns:
        ``[metric, value per block]`` rows.
    """
    names = sorted({key for block in blocks for key in run.get(block, {})})
    return [[name] + [fmt(metric(run, block, name)) for block in blocks] for name in names]


#: Column titles of the metric blocks of a COREBA json.
BLOCK_TITLES = {
    "metrics": "COREBA val (selected epoch)",
    "test_metrics": "COREBA test",
    "baseline_test_metrics": "baseline test",
}


def run_detail(name: str, run: dict[str, Any]) -> str:
    """All metrics of one COREBA checkpoint with the command that trained it.

    Args:
        name: the file's page name.
        run: the decoded json.

    Returns:
        Markdown text: a heading, the table and its source line.
    """
    blocks = [block for block in BLOCK_TITLES if run.get(block) is not None]  # null: not measured
    table = markdown_table(["metric"] + [BLOCK_TITLES[b] for b in blocks], metric_rows(run, blocks))
    command = (run.get("command") or "").strip() or None
    return "\n".join(
        [
            f"### `{name}` ({encoder_of(run)} encoder)",
            "",
            table,
            "",
            source_line([name], command),
            "",
        ]
    )


def ablation_command(frame: pd.DataFrame, name: str) -> str | None:
    """The command that writes an ablation CSV, rebuilt from the sizes the CSV records.

    Args:
        frame: the CSV.
        name: its file name; only ``coreba_ablation.csv`` is rebuilt.

    Returns:
        The command, or None for another ablation file. Rows with unequal seed counts (a grid
        stopped early) come from ``--finished-only`` after the runs that finished.
    """
    if name != "coreba_ablation.csv":
        return None
    trained = frame.loc[frame["seeds"] > 0, "seeds"]  # the reference row has no seeds
    videos = int(frame["train videos"].iloc[0])
    epochs = int(frame["epochs"].iloc[0])
    command = (
        f"python scripts/train_coreba.py --ablation --seeds {int(trained.max())} "
        f"--train-videos {videos} --epochs {epochs}"
    )
    return command if trained.nunique() == 1 else command + " --finished-only"


def ablation_rows(frame: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """The ablation CSV as ``mean ± std`` cells, rows in the file's order.

    Args:
        frame: the CSV.

    Returns:
        The header and the rows.
    """
    metrics = [col[: -len(" mean")] for col in frame.columns if col.endswith(" mean")]
    header = ["group", "variant", "seeds"] + metrics + ["parameters", "train seconds"]
    rows = []
    for _, row in frame.iterrows():
        cells = [fmt(row["group"]), fmt(row["variant"]), fmt(row["seeds"], 0)]
        cells += [f"{fmt(row[f'{m} mean'])} ± {fmt(row[f'{m} std'])}" for m in metrics]
        cells += [fmt(row["parameters"], 0), fmt(row["train seconds"], 0)]
        rows.append(cells)
    return header, rows


def ablation_section(path: Path, data_dir: Path) -> str:
    """One ablation CSV as a table, with its fixed settings and command.

    Args:
        path: the CSV.
        data_dir: the data directory.

    Returns:
        Markdown text.
    """
    frame = pd.read_csv(path, dtype={"clip weights": str})
    header, rows = ablation_rows(frame)
    fixed = [
        f"{col} {', '.join(sorted({fmt(v, 0) for v in frame[col].dropna()}))}"
        for col in ("train videos", "epochs", "d")
        if col in frame.columns
    ]
    name = relative(path, data_dir)
    return "\n".join(
        [
            f"### Ablation (`{name}`)",
            "",
            "Test metrics, mean ± std over seeds (each run selected on val); "
            f"{'; '.join(fixed)}. The reference row is the training-free baseline (one run).",
            "",
            markdown_table(header, rows, left=2),
            "",
            source_line([name], ablation_command(frame, path.name)),
            "",
        ]
    )


def chapter5_section(data_dir: Path, runs: dict[str, dict[str, Any]]) -> str:
    """Chapter 5: the committed COREBA checkpoints and the ablation grid.

    Args:
        data_dir: the data directory.
        runs: :func:`load_runs` output.

    Returns:
        Markdown text.
    """
    lines = ["## Chapter 5: COREBA on the toy world", ""]
    if runs:
        names = list(runs)
        lines += [
            "Test metrics of each committed checkpoint next to the chapter-3 training-free "
            "baseline on the same test split and clip features (differences: COREBA minus "
            "baseline). "
            f"{MISSING} in a metric table: the file records NaN (for an MR length bucket, "
            "`MR-short/middle/long-mAP`: no ground-truth moment of that length in the split).",
            "",
            markdown_table(HEADLINE_HEADER, headline_rows(runs), left=3),
            "",
            "Sizes and times of the runs (seconds of wall time on the CPU, every epoch of the "
            "run, resumed calls included):",
            "",
            markdown_table(["quantity"] + [f"`{n}`" for n in names], setup_rows(runs)),
            "",
        ]
        lines += [run_detail(name, run) for name, run in runs.items()]
    lines += [ablation_section(p, data_dir) for p in sorted(data_dir.glob("coreba_ablation*.csv"))]
    return "\n".join(lines)


# --- chapter 6 -------------------------------------------------------------------------------


#: Rows of a corpus-evaluation table printed without decimals.
COUNT_ROWS = ("n_videos", "n_queries", "top_k_videos")


def corpus_table(frame: pd.DataFrame) -> str:
    """A corpus-evaluation CSV transposed: one column per pipeline, one row per quantity.

    Args:
        frame: the CSV (column ``pipeline`` names the rows of the file).

    Returns:
        The markdown table (the ``clip_weights`` column is left to the provenance table).
    """
    shown = [c for c in frame.columns if c not in ("pipeline", "clip_weights")]
    rows = [[c] + [fmt(v, 0 if c in COUNT_ROWS else 2) for v in frame[c]] for c in shown]
    return markdown_table(["quantity"] + [str(p) for p in frame["pipeline"]], rows)


def corpus_section(path: Path, data_dir: Path) -> str:
    """One corpus-evaluation CSV with its command.

    Args:
        path: the CSV.
        data_dir: the data directory.

    Returns:
        Markdown text.
    """
    frame = pd.read_csv(path, dtype={"clip_weights": str})
    name = relative(path, data_dir)
    return "\n".join(
        [
            f"### `{name}`",
            "",
            corpus_table(frame),
            "",
            source_line(
                [name], index_commands(data_dir).get(path.relative_to(data_dir).as_posix())
            ),
            "",
        ]
    )


def best_settings(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (n, dim) and index: the exact references and one setting of each approximate index.

    For an approximate index the setting shown is the fastest at batch 1 among those that
    reach recall@100 >= :data:`RECALL_TARGET`, or its highest-recall setting when none does.

    Args:
        frame: ``index_scale.csv``.

    Returns:
        The chosen rows, sorted by n, dim, then exact references first and index name.
    """
    exact = frame[frame["index"].isin(EXACT_INDEXES)].assign(below=False)
    approx = frame[~frame["index"].isin(EXACT_INDEXES)]
    approx = approx.assign(below=approx["recall_at_100"] < RECALL_TARGET)
    # settings that reach the target first, the fastest of them; otherwise the highest recall
    approx = approx.assign(order=approx["b1_ms"].where(~approx["below"], -approx["recall_at_100"]))
    approx = approx.sort_values(["n", "dim", "index", "below", "order"], kind="stable")
    chosen = approx.groupby(["n", "dim", "index"], sort=False).head(1).drop(columns="order")
    out = pd.concat([exact, chosen])
    rank = {name: i for i, name in enumerate(EXACT_INDEXES)}
    out["rank"] = out["index"].map(lambda i: rank.get(i, len(rank)))
    return out.sort_values(["n", "dim", "rank", "index"], kind="stable")


def index_rows(chosen: pd.DataFrame) -> list[list[str]]:
    """Table rows of :func:`best_settings` output.

    Args:
        chosen: the selected rows.

    Returns:
        Cells: n, dim, index, setting, recall@100, batch-1 and batch-500 ms per query, speed-up
        over Flat at batch 1, build seconds, index size in MB (10^6 bytes), Flat's ratio to
        the dense matmul.
    """
    rows = []
    for r in chosen.itertuples(index=False):
        setting = MISSING if pd.isna(r.param) else f"{r.param}={fmt(r.value, 0)}"
        if r.below:
            setting += " (below target)"
        size = MISSING if pd.isna(r.index_bytes) else fmt(r.index_bytes / 1e6, 1)
        rows.append(
            [fmt(r.n), fmt(r.dim), str(r.index), setting, fmt(r.recall_at_100, 3), fmt(r.b1_ms, 3),
             fmt(r.b500_ms, 3), fmt(r.b1_speedup_vs_flat, 1), fmt(r.build_s, 2), size,
             fmt(r.ratio_to_matmul, 2)]
        )  # fmt: skip
    return rows


def index_section(path: Path, data_dir: Path) -> str:
    """The faiss index benchmark, one chosen setting per index.

    Args:
        path: ``index_scale.csv``.
        data_dir: the data directory.

    Returns:
        Markdown text.
    """
    frame = pd.read_csv(path)
    name = relative(path, data_dir)
    header = ["n", "dim", "index", "setting", "recall@100", "batch-1 ms", "batch-500 ms",
              "batch-1 speed-up vs flat", "build s", "index MB", "flat / dense matmul"]  # fmt: skip
    return "\n".join(
        [
            f"### Segment index at scale (`{name}`)",
            "",
            "Per collection size n and dimension, the exact references (dense numpy / torch "
            "matmul + top-k, faiss Flat) and, for each approximate index, the fastest setting "
            f"at batch 1 with recall@100 >= {RECALL_TARGET} against Flat, or its highest-recall "
            "setting when none reaches it (marked). Times are milliseconds per query; every "
            f"setting is in the CSV ({len(frame)} rows).",
            "",
            markdown_table(header, index_rows(best_settings(frame)), left=4),
            "",
            source_line(
                [name], index_commands(data_dir).get(path.relative_to(data_dir).as_posix())
            ),
            "",
        ]
    )


def chapter6_section(data_dir: Path) -> str:
    """Chapter 6: corpus moment retrieval and the segment index at scale.

    Args:
        data_dir: the data directory.

    Returns:
        Markdown text.
    """
    bench = data_dir / "bench"
    lines = [
        "## Chapter 6: searching a collection",
        "",
        "Corpus moment retrieval on the toy test corpus: `vcmr_rK_iouT` is VCMR R@K at "
        "temporal IoU T and `ndcgK_iouT` NDCG@K at IoU T (percent); `ms_per_query` is the wall "
        "time per query of each pipeline, measured in the same run; `alpha` is the stage-1 "
        "weight fitted on the validation corpus.",
        "",
    ]
    lines += [corpus_section(p, data_dir) for p in sorted(bench.glob("corpus_eval*.csv"))]
    index_csv = bench / "index_scale.csv"
    if index_csv.is_file():
        lines.append(index_section(index_csv, data_dir))
    return "\n".join(lines)


def other_chapters_section() -> str:
    """Where the figures of the chapters without committed result files come from.

    Returns:
        Markdown text.
    """
    return "\n".join(
        [
            "## Other chapters",
            "",
            "Chapters 0, 2, 3, 4 and 7 commit no result files: their notebooks in `solutions/` "
            "compute and print their figures when they run, and the tests check them (the "
            "capstone's top-3 hit rate, for example, in notebook 07 and its test). The chapter-3 "
            "training-free baseline appears above as the baseline of chapter 5.",
            "",
        ]
    )


# --- page and command line -------------------------------------------------------------------


def render(data_dir: Path = DEFAULT_DATA) -> str:
    """The whole RESULTS.md text generated from one data directory.

    Args:
        data_dir: a directory laid out like the repository's ``data/``.

    Returns:
        The page, ending with exactly one newline.
    """
    runs = load_runs(data_dir)
    parts = [
        header_section(),
        provenance_section(data_dir, runs),
        chapter1_section(data_dir),
        chapter5_section(data_dir, runs),
        chapter6_section(data_dir),
        other_chapters_section(),
    ]
    return "\n".join(parts).rstrip("\n") + "\n"


def check(page: str, out: Path) -> int:
    """Compare the generated page with the file on disk.

    Args:
        page: the generated text.
        out: the committed page.

    Returns:
        0 when they are equal, 1 otherwise (a message and the first lines of the diff go to
        stderr).
    """
    if not out.is_file():
        print(f"{out} is missing: run `python scripts/make_results.py`.", file=sys.stderr)
        return 1
    current = out.read_text(encoding="utf-8")
    if current == page:
        return 0
    diff = difflib.unified_diff(
        current.splitlines(), page.splitlines(), str(out), "generated", lineterm="", n=0
    )
    shown = list(diff)[:20]
    print(f"{out} is out of date with the result files: run `python scripts/make_results.py`"
          " (make results).", *shown, sep="\n", file=sys.stderr)  # fmt: skip
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    """Write RESULTS.md, or with ``--check`` compare it with what would be written.

    Args:
        argv: command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0, or 1 when ``--check`` finds a difference.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="result files (data/)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the page (RESULTS.md)")
    parser.add_argument("--check", action="store_true", help="exit 1 if the page is out of date")
    args = parser.parse_args(argv)
    page = render(args.data)
    if args.check:
        return check(page, args.out)
    with atomic_write(args.out, "w") as handle:
        handle.write(page)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
