"""A tiny fake QVHighlights release in the exact layout, for tests and the GPU appendix notebook.

:func:`write_fake_release` writes the files :mod:`course_lib.qvhighlights.release` reads, with the
real release's names, keys and feature widths (CLIP 512, SlowFast 2304, CLIP text 512) and tiny
random features, so ``python -m course_lib.qvhighlights train|predict|eval`` runs end to end on a
CPU in seconds::

    highlight_{train,val,test}_release.jsonl   8 / 3 / 2 queries (test: no label fields)
    clip_features/{vid}.npz                    "features" (T, 512)
    slowfast_features/{vid}.npz                "features" (T, 2304), non-negative (post-ReLU)
    clip_text_features/qid{qid}.npz            "last_hidden_state" (L, 512)

It holds the release's quirks the input pipeline must handle: the *76-row quirk* (SlowFast one
row longer than CLIP for a 150-s video, above ``max_v_l = 75``), a short video whose streams
differ by a row below ``max_v_l``, a query longer than ``max_q_l = 32`` tokens, a record with two
windows, and unlabelled test records. The numbers mean nothing (random features): the metrics of
a model trained on it only show that every step runs.

:func:`write_small_config` writes the shipped COREBA settings with a narrow model and two epochs
on the CPU, so a whole run takes seconds.
"""

from __future__ import annotations

import json
import math
import os
import random
from pathlib import Path

import numpy as np

from course_lib.datasets.features import save_query_features, save_video_features
from course_lib.qvhighlights.config import DEFAULT_CONFIG
from course_lib.qvhighlights.release import ANNOTATION_FILE, STREAM_FOLDERS, TEXT_FOLDER

#: vid: (duration in s, CLIP rows, SlowFast rows); vids follow the release's
#: ``{youtube_id}_{start}_{end}`` form.
VIDEOS: dict[str, tuple[int, int, int]] = {
    "quirkA_0.0_150.0": (150, 75, 76),  # the 76-row quirk
    "shortB_10.0_50.0": (40, 20, 21),  # streams differ below max_v_l
    "midC_0.0_100.0": (100, 50, 50),
    "valD_30.0_90.0": (60, 30, 30),
    "testE_0.0_150.0": (150, 75, 75),
}
#: split: [(qid, vid, windows or None for an unlabelled test record, query tokens)]
QUERIES: dict[str, list[tuple[int, str, list[list[int]] | None, int]]] = {
    "train": [
        (1, "quirkA_0.0_150.0", [[10, 30]], 12),
        (2, "quirkA_0.0_150.0", [[100, 150]], 40),  # 40 tokens: cut to max_q_l = 32
        (3, "shortB_10.0_50.0", [[0, 8], [20, 26]], 9),
        (4, "shortB_10.0_50.0", [[30, 40]], 7),
        (5, "midC_0.0_100.0", [[50, 64]], 15),
        (6, "midC_0.0_100.0", [[2, 12]], 10),
        (7, "quirkA_0.0_150.0", [[60, 70]], 8),
        (8, "midC_0.0_100.0", [[80, 100]], 11),
    ],
    "val": [
        (11, "valD_30.0_90.0", [[12, 24]], 9),
        (12, "valD_30.0_90.0", [[40, 60]], 13),
        (13, "quirkA_0.0_150.0", [[20, 40]], 10),
    ],
    "test": [(21, "testE_0.0_150.0", None, 8), (22, "valD_30.0_90.0", None, 11)],
}


def moment_record(qid: int, vid: str, windows: list | None, rng: random.Random) -> dict:
    """One QVHighlights record; with labels (the windows' 2-s clip ids, 3 random annotator scores
    per clip) unless ``windows`` is None (a test record)."""
    record = {"qid": qid, "query": f"query number {qid}", "vid": vid, "duration": VIDEOS[vid][0]}
    if windows is not None:
        ids = sorted({c for st, ed in windows for c in range(st // 2, math.ceil(ed / 2))})
        scores = [[rng.randint(0, 4) for _ in range(3)] for _ in ids]
        record |= {"relevant_windows": windows, "relevant_clip_ids": ids, "saliency_scores": scores}
    return record


def write_fake_release(
    root: str | os.PathLike, annotations_sub: str = "", features_sub: str = "", seed: int = 0
) -> Path:
    """Write the fake release under ``root`` (module docstring); the same files for one seed.

    Args:
        root: the release folder (created).
        annotations_sub: sub-folder of the jsonl files (``"data"``: moment_detr's checkout).
        features_sub: sub-folder of the feature folders (``"features"``: what
            ``moment_detr_features.tar.gz`` unpacks to).
        seed: seeds the saliency scores and the features.

    Returns:
        ``root`` as a Path.
    """
    root = Path(root)
    rng, np_rng = random.Random(seed), np.random.default_rng(seed)
    # 1. the annotation files and one query-token file per query
    for split, queries in QUERIES.items():
        path = root / annotations_sub / ANNOTATION_FILE.format(split=split)
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = [json.dumps(moment_record(q, v, w, rng)) for q, v, w, _ in queries]
        path.write_text("\n".join(lines) + "\n")
        for qid, _, _, n_tokens in queries:
            tokens = np_rng.normal(size=(n_tokens, 512))
            save_query_features(root / features_sub / TEXT_FOLDER, qid, tokens)
    # 2. both video streams of every video (SlowFast is post-ReLU: non-negative)
    for vid, (_, n_clip, n_slowfast) in VIDEOS.items():
        clip = np_rng.normal(size=(n_clip, 512))
        slowfast = np.abs(np_rng.normal(size=(n_slowfast, 2304)))
        save_video_features(root / features_sub / STREAM_FOLDERS["clip"], vid, clip)
        save_video_features(root / features_sub / STREAM_FOLDERS["slowfast"], vid, slowfast)
    return root


def write_small_config(path: str | os.PathLike, **training) -> Path:
    """The shipped COREBA config with a narrow model (d 32, 4 heads) and 2 CPU epochs.

    Args:
        path: the json file to write.
        **training: further fields of the ``training`` section (``epochs=3``, ``seed=1`` ...).

    Returns:
        ``path`` as a Path.
    """
    data = json.loads(DEFAULT_CONFIG.read_text())
    data["model"] |= {"d": 32, "n_heads": 4, "dim_feedforward": 64}
    data["training"] |= {"epochs": 2, "batch_size": 4, "num_workers": 0, "progress": False}
    data["training"] |= training
    path = Path(path)
    path.write_text(json.dumps(data, indent=2))
    return path
