"""Command line of the moment search engine.

    python -m course_lib.search index VIDEO_DIR --out INDEX_DIR [--encoder video|tiny|ViT-B-32] [--fps 0.5]
    python -m course_lib.search query INDEX_DIR "a red circle moves left" [MORE QUERIES] -k 5 [--json]

``--encoder`` is ``video`` (the committed video-text encoder ``data/video_clip.safetensors``, the
default, which embeds each 2-s clip from its k frames and samples k frames per clip, so ``--fps``
does not apply to it), ``tiny`` (the committed tiny CLIP, a frame encoder) or an open_clip name.
Stage 2 is chapter 5's committed COREBA when it was trained on the encoder's features (the video
encoder's), else the training-free baseline (:func:`course_lib.localisers.committed_localiser`).

``index`` is resumable (re-run it after a crash or Ctrl-C: finished videos are skipped). Every
file that cannot be indexed (unreadable or not a video, a FIFO, a dangling link or a link loop, a
name that is not valid UTF-8) is skipped and named, by its own path, in the summary printed at the
end. Several ``index`` and ``query`` runs may use one index folder at once (see
:mod:`course_lib.search.engine`); each waits at most ``--lock-timeout`` seconds for the others.

Exit codes: 0 when at least one video of VIDEO_DIR is indexed (or the queries were answered);
1 when none could be indexed, or on an error of the index folder (another process holding its lock
past the timeout, a full disk, another encoder's index), with a one-line message and no traceback;
2 for bad arguments (e.g. ``-k 0`` or ``--videos 0``: both must be positive integers) or weights
that cannot be downloaded offline; 130 when interrupted (Ctrl-C).

``query`` prints a table per query, or with ``--json`` a JSON list
``[{"query": ..., "results": [{"rank", "vid", "path", "start", "end", "score", ...}]}]``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def positive_int(text: str) -> int:
    """argparse type of a count that must be at least 1 (0 is refused, never read as a default)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _add_lock_timeout(parser: argparse.ArgumentParser) -> None:
    """The ``--lock-timeout`` option (seconds to wait for another process using the folder)."""
    from course_lib.search.build import LOCK_TIMEOUT_S

    parser.add_argument(
        "--lock-timeout",
        type=float,
        default=LOCK_TIMEOUT_S,
        help=f"seconds to wait while another process writes the index (default {LOCK_TIMEOUT_S:g})",
    )


def _parser() -> argparse.ArgumentParser:
    """Argument parser with the ``index`` and ``query`` sub-commands."""
    parser = argparse.ArgumentParser(
        prog="python -m course_lib.search", description="Moment search over video files."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    idx = sub.add_parser("index", help="index a folder of videos (resumable)")
    idx.add_argument("video_dir", help="folder of video files (searched recursively)")
    idx.add_argument("--out", required=True, help="index folder to create or resume")
    idx.add_argument(
        "--encoder",
        default="video",
        help="'video' (committed video-text clip encoder, k frames per 2-s clip; the default), "
        "'tiny' (committed tiny CLIP, a frame encoder) or an open_clip name, e.g. ViT-B-32",
    )
    idx.add_argument("--pretrained", default="openai", help="pretrained tag or weights file")
    idx.add_argument(
        "--fps",
        type=float,
        default=0.5,
        help="frames sampled per second (>= 0.5; --encoder video samples its own k per clip)",
    )
    idx.add_argument("--batch-size", type=positive_int, default=64, help="frames per encoder pass")
    idx.add_argument("--index-kind", default="flat", choices=("flat", "ivf", "ivfpq", "hnsw"))
    idx.add_argument("--device", default=None, help="cpu, cuda, mps (default: auto)")
    idx.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    idx.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads")
    _add_lock_timeout(idx)
    qry = sub.add_parser("query", help="search an index")
    qry.add_argument("index_dir", help="index folder written by `index`")
    qry.add_argument("queries", nargs="+", help="one or more sentences")
    qry.add_argument("-k", type=positive_int, default=10, help="moments per query")
    qry.add_argument(
        "--videos",
        type=positive_int,
        default=None,
        help="videos localised in stage 2 (default: the engine's top_k_videos, 10)",
    )
    qry.add_argument("--json", action="store_true", help="machine-readable output")
    qry.add_argument("--device", default=None, help="cpu, cuda, mps (default: auto)")
    qry.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads")
    _add_lock_timeout(qry)
    return parser


def _encoder(name: str, pretrained: str, device: str | None):
    """The encoder ``--encoder`` names.

    Args:
        name: ``tiny`` (committed tiny CLIP), ``video`` (committed video-text clip encoder) or
            an open_clip model name.
        pretrained: open_clip pretrained tag or weights file (open_clip names only).
        device: torch device, None for automatic.

    Returns:
        A ``ClipEncoder`` or, for ``video``, a ``VideoClipEncoder``.

    Raises:
        OfflineError: pretrained weights that cannot be downloaded.
        CheckpointError: a committed checkpoint is missing or fails its hash check.
    """
    from course_lib.clip import ClipEncoder
    from course_lib.search.build import encoder_from_spec

    if name in ("tiny", "video"):  # the committed checkpoints, as a manifest names them
        return encoder_from_spec(name, device=device, progress=False)
    return ClipEncoder.pretrained(name, pretrained, device=device, progress=False)


def cmd_index(args: argparse.Namespace) -> int:
    """``index``: build or resume an index; print the summary."""
    from pathlib import Path

    from course_lib.corpus.index import IndexConfig
    from course_lib.search.build import NothingIndexedError, printable
    from course_lib.search.engine import MomentSearch

    if not Path(args.video_dir).is_dir():
        print(f"error: {args.video_dir} is not a folder", file=sys.stderr)
        return EXIT_USAGE
    encoder = _encoder(args.encoder, args.pretrained, args.device)
    try:
        engine = MomentSearch.build(
            args.video_dir,
            args.out,
            encoder=encoder,
            index_config=IndexConfig(kind=args.index_kind),
            fps=args.fps,
            batch_size=args.batch_size,
            progress=not args.no_progress,
            lock_timeout=args.lock_timeout,
        )
    except NothingIndexedError as exc:
        print(f"error: {printable(str(exc))}", file=sys.stderr)
        return EXIT_FAILED
    print(engine.summary.format())
    print(f"index: {args.out} ({len(engine.vids)} videos, {engine.index.ntotal} segments)")
    return EXIT_OK


def _rows(results) -> list[dict]:
    """Result rows as JSON-friendly dicts (no thumbnail array)."""
    cols = ["rank", "vid", "path", "start", "end", "score", "video_score", "moment_score"]
    return [
        {c: (v.item() if hasattr(v, "item") else v) for c, v in zip(cols, row)}
        for row in results[cols].itertuples(index=False)
    ]


def cmd_query(args: argparse.Namespace) -> int:
    """``query``: search an index, print a table (or JSON) per query."""
    from course_lib.search.engine import MomentSearch

    engine = MomentSearch.load(
        args.index_dir, encoder=_load_encoder(args), lock_timeout=args.lock_timeout
    )
    out = []
    for text in args.queries:
        res = engine.search(text, k=args.k, top_k_videos=args.videos, thumbnails=False)
        if args.json:
            out.append({"query": text, "results": _rows(res)})
            continue
        print(f"query: {text}")
        table = res[["rank", "vid", "start", "end", "score"]].copy()
        print(table.to_string(index=False, float_format=lambda x: f"{x:.2f}"))
        print()
    if args.json:
        print(json.dumps(out, indent=1))
    return EXIT_OK


def _load_encoder(args: argparse.Namespace):
    """Encoder for ``query``: recreated from the manifest, on the requested device."""
    if args.device is None:
        return None
    from course_lib.search.build import encoder_from_spec, read_manifest

    manifest = read_manifest(args.index_dir)
    spec = (manifest or {}).get("encoder", {}).get("spec")
    return encoder_from_spec(spec, device=args.device, progress=False) if spec else None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (errors are one line on stderr, no traceback)."""
    from course_lib.errors import CourseError, OfflineError
    from course_lib.search.build import printable

    args = _parser().parse_args(argv)
    if args.threads is not None:
        import torch

        torch.set_num_threads(max(1, args.threads))
    try:
        return cmd_index(args) if args.command == "index" else cmd_query(args)
    except OfflineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (CourseError, OSError, ValueError) as exc:  # OSError: also a full disk, no permission
        print(f"error: {printable(str(exc))}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(
            "\ninterrupted: finished videos are kept; run the same command again to resume",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
