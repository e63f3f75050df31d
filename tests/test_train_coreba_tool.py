"""tools/train_coreba.py: the ablation's shards split the grid and their results merge."""

import argparse
import json

import pytest
from conftest import load_script


@pytest.fixture(scope="module")
def tool():
    return load_script("tools/train_coreba.py")


def test_parse_shard(tool):
    assert tool.parse_shard("1/3") == (1, 3)
    for bad in ["3/3", "-1/2", "x", "1/0", "1-2"]:
        with pytest.raises(argparse.ArgumentTypeError, match="shard"):
            tool.parse_shard(bad)


@pytest.mark.parametrize("count", [1, 2, 3])
def test_shards_cover_the_grid_exactly_once(tool, count):
    positions = range(31)  # 10 variants x 3 seeds + 1
    owners = [[i for i in range(count) if tool.in_shard(p, (i, count))] for p in positions]
    assert all(len(o) == 1 for o in owners)
    assert all(tool.in_shard(p, None) for p in positions)


def test_results_of_every_shard_file_are_read(tool, tmp_path):
    rows = {
        "coreba_ablation_runs.jsonl": [{"key": "a", "test": 1}],
        "coreba_ablation_runs.0of2.jsonl": [{"key": "b", "test": 2}],
        "coreba_ablation_runs.1of2.jsonl": [{"key": "c", "test": 3}, {"key": "a", "test": 1}],
        "unrelated.jsonl": [{"key": "z", "test": 0}],
    }
    for name, lines in rows.items():
        (tmp_path / name).write_text("".join(json.dumps(r) + "\n" for r in lines))
    files = tool.runs_files(tmp_path)
    assert [f.name for f in files] == sorted(n for n in rows if n.startswith("coreba"))
    assert sorted(tool.load_done(files)) == ["a", "b", "c"]


def test_committed_results_come_from_the_committed_tiny_clip():
    """Every committed file computed on tiny-CLIP features names the checkpoint it used."""
    import pandas as pd

    from course_lib.clip.checkpoint import read_manifest
    from course_lib.env import data_dir

    sha = read_manifest(data_dir() / "tiny_clip.safetensors")
    info = json.loads((data_dir() / "coreba_toy.json").read_text())
    assert info["clip_identity"].split("|")[1] == sha
    ablation = pd.read_csv(data_dir() / "coreba_ablation.csv", dtype={"clip weights": str})
    assert set(ablation["clip weights"]) == {sha[:16]}
    for name in ("corpus_eval.csv", "corpus_eval_coreba.csv", "corpus_eval_coreba_exhaustive.csv"):
        table = pd.read_csv(data_dir() / "bench" / name, dtype={"clip_weights": str})
        assert set(table["clip_weights"]) == {sha[:16]}, name
